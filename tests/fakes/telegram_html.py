"""Telegram's HTML parse mode and message-text normalisation, ported from TDLib.

Telegram does not parse `parse_mode=HTML` with an HTML parser but with a small tokenizer
(`parse_html` in TDLib's td/telegram/MessageEntity.cpp), then normalises text and entities
(`fix_formatted_text`): control characters become spaces, `\\r` disappears, entities are
merged, split and de-nested, and the text is trimmed. A fake that used a real HTML parser
would accept markup Telegram rejects and report different offsets, so this module follows
TDLib's algorithm step by step, including its error messages. Offsets and lengths are in
UTF-16 code units, as in the Bot API.

Deliberately not replicated: `tg-time` tags, automatic detection of URLs, mentions and
hashtags in outgoing text, and the 35000-byte pre-truncation (far above the 4096 limit).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any
from urllib.parse import urlsplit

SPLITTABLE = ("bold", "italic", "underline", "strikethrough", "spoiler")  # TDLib's flush order
BLOCKQUOTES = frozenset({"blockquote", "expandable_blockquote"})
PRE_LIKE = frozenset({"pre", "code"})
# Entity types a sender may set; others (mention, url, ...) are detected by Telegram itself.
USER_ENTITY_TYPES = frozenset(
    {*SPLITTABLE, *BLOCKQUOTES, *PRE_LIKE, "text_link", "text_mention", "custom_emoji"}
)
_PRIORITY = {
    "mention": 50, "hashtag": 50, "bot_command": 50, "url": 50, "email": 50, "cashtag": 50,
    "phone_number": 50, "bank_card_number": 50, "bold": 90, "italic": 91, "underline": 92,
    "strikethrough": 93, "spoiler": 94, "code": 20, "pre": 11, "text_link": 49,
    "text_mention": 49, "custom_emoji": 99, "blockquote": 0, "expandable_blockquote": 0,
}  # fmt: skip
_HTML_TAGS = frozenset(
    {"a", "b", "strong", "i", "em", "s", "strike", "del", "u", "ins", "tg-spoiler", "tg-emoji",
     "span", "pre", "code", "blockquote"}
)  # fmt: skip
_SIMPLE_TAGS = {
    "b": "bold", "strong": "bold", "i": "italic", "em": "italic", "u": "underline",
    "ins": "underline", "s": "strikethrough", "strike": "strikethrough", "del": "strikethrough",
    "tg-spoiler": "spoiler",
}  # fmt: skip
_NAMED_ENTITIES = {"lt": 0x3C, "gt": 0x3E, "amp": 0x26, "quot": 0x22}
_TAG_SPACE = " \t\r\n\0\v"  # TDLib's is_space; "\0" doubles as the end-of-text sentinel
_HEX = "0123456789abcdefABCDEF"
_LINK_SCHEMES = frozenset({"http", "https", "tg", "ton", "tonsite"})
_PLAIN_RUN = re.compile(r"[^&<]+")
_NAMED_ENTITY = re.compile(r"&[A-Za-z]+;?")
_USER_LINK = re.compile(r"tg://user\?id=(\d+)", re.IGNORECASE)
_HOST = re.compile(r"[\w.-]+")
_INT64 = re.compile(r"-?\d{1,19}")
# Characters TDLib's clean_input_string removes: line/paragraph separators and directional
# formatting (U+2028-U+202E) and three combining "vertical line" marks.
_REMOVED = frozenset("\u2028\u2029\u202a\u202b\u202c\u202d\u202e\u0333\u033f\u030a")
# strip_empty_characters: spaces of other widths count as spaces, these as nothing at all.
_SPACE_LIKE = frozenset(
    "\u1680\u180e\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007\u2008\u2009\u200a"
    "\u202f\u205f\u2800\u3000\ufffc"
)
_INVISIBLE = frozenset(" \n\u200b\u200c\u200d\u200e\u200f\u202e\ufeff\u00a0")
_UNCLEAN = re.compile("[\x00-\x09\x0b-\x1f\r\u2028-\u202e\u0333\u033f\u030a]")
_SURROGATE = re.compile("[\ud800-\udfff]")
_END = 1 << 62


class TextError(ValueError):
    """The text or its entities are invalid; the message is TDLib's wording."""


class EntityParseError(TextError):
    """`parse_mode` markup Telegram rejects ("can't parse entities: ...")."""


class EmptyTextError(TextError):
    """Nothing visible is left after parsing and trimming."""


@dataclass(slots=True)
class Entity:
    """A MessageEntity; `language` marks a `pre` entity as TDLib's PreCode."""

    type: str
    offset: int
    length: int
    url: str | None = None
    language: str | None = None
    custom_emoji_id: str | None = None
    user: dict[str, Any] | None = None

    @property
    def end(self) -> int:
        return self.offset + self.length

    def to_api(self) -> dict[str, Any]:
        """The entity as the Bot API serialises it."""
        data: dict[str, Any] = {"type": self.type, "offset": self.offset, "length": self.length}
        for key in ("url", "language", "custom_emoji_id", "user"):
            if (value := getattr(self, key)) is not None:
                data[key] = value
        return data


@dataclass(slots=True)
class FormattedText:
    text: str
    entities: list[Entity] = field(default_factory=list)


@dataclass(slots=True)
class _OpenTag:
    name: str
    argument: str
    offset: int  # UTF-16 offset in the decoded text
    char_index: int  # index in the decoded text, for `<a>` without href


def utf16_len(text: str) -> int:
    """Length in UTF-16 code units, the unit of every Bot API offset and limit."""
    return len(text.encode("utf-16-le", "surrogatepass")) // 2


def _units(char: str) -> int:
    return 2 if ord(char) > 0xFFFF else 1


def _ascii_lower(text: str) -> str:
    return "".join(c.lower() if c.isascii() else c for c in text)


def _byte_offset(source: str, index: int) -> int:
    return len(source[:index].encode("utf-8", "surrogatepass"))


def _sort_key(entity: Entity) -> tuple[int, int, int]:
    priority = 10 if entity.type == "pre" and entity.language else _PRIORITY[entity.type]
    return entity.offset, -entity.length, priority


def _decode_entity(s: str, pos: int) -> tuple[int, int] | None:
    """TDLib's decode_html_entity: (code point, position after it), or None to keep `&`."""
    end = pos + 1
    code = 0
    if s[end] == "#":
        end += 1
        if s[end] == "x":
            end += 1
            while s[end] in _HEX:
                code = code * 16 + int(s[end], 16)
                end += 1
        else:
            while s[end].isascii() and s[end].isdigit():
                code = code * 10 + int(s[end])
                end += 1
        if code == 0 or code >= 0x10FFFF or end - pos >= 10:
            return None
    else:
        while s[end].isascii() and s[end].isalpha():
            end += 1
        named = _NAMED_ENTITIES.get(s[pos + 1 : end])
        if named is None:
            return None
        code = named
    if s[end] == ";":
        end += 1
    return code, end


def parse_html(
    source: str,
    *,
    resolve_user: Callable[[int], dict[str, Any] | None] | None = None,
    strict_entities: bool = False,
) -> FormattedText:
    """Decode Telegram HTML into text and entities exactly as TDLib's parse_html does.

    `resolve_user` turns `tg://user?id=N` links into text_mention entities (without it, or for
    an unknown user, the link is dropped). Unknown named entities such as `&nbsp;` stay
    literal text, as on Telegram; `strict_entities` rejects them instead, to catch markup
    that would show verbatim.
    """
    if "\0" in source:
        raise EntityParseError("Text must not contain null bytes")
    s = source + "\0"  # the C string terminator the algorithm relies on
    size = len(source)
    out: list[str] = []
    entities: list[Entity] = []
    stack: list[_OpenTag] = []
    utf16 = 0
    has_surrogate = False

    def at(index: int) -> int:
        return _byte_offset(source, index)

    i = 0
    while i < size:
        char = s[i]
        if char == "&":
            decoded = _decode_entity(s, i)
            if decoded is not None:
                code, i = decoded
                has_surrogate |= 0xD800 <= code <= 0xDFFF
                out.append(chr(code))
                utf16 += 2 if code > 0xFFFF else 1
                continue
            if strict_entities and (named := _NAMED_ENTITY.match(source, i)):
                raise EntityParseError(
                    f'Unsupported HTML entity "{named.group()}" at byte offset {at(i)} '
                    "(strict mode of the fake; Telegram would show it verbatim)"
                )
        if char != "<":
            plain = _PLAIN_RUN.match(source, i + 1)  # copy plain text up to the next & or <
            run = source[i : plain.end() if plain else i + 1]
            out.append(run)
            utf16 += utf16_len(run)
            i += len(run)
            continue

        begin = i
        i += 1
        if s[i] != "/":
            while s[i] not in _TAG_SPACE and s[i] != ">":
                i += 1
            if s[i] == "\0":
                raise EntityParseError(f"Unclosed start tag at byte offset {at(begin)}")
            tag = _ascii_lower(s[begin + 1 : i])
            if tag not in _HTML_TAGS:
                raise EntityParseError(f'Unsupported start tag "{tag}" at byte offset {at(begin)}')
            argument = ""
            while s[i] != ">":
                while s[i] != "\0" and s[i] in _TAG_SPACE:
                    i += 1
                if s[i] == ">":
                    break
                name_begin = i
                while s[i] not in _TAG_SPACE and s[i] not in "=>/\"'":
                    i += 1
                attribute = s[name_begin:i]
                if not attribute:
                    raise EntityParseError(
                        f'Empty attribute name in the tag "{tag}" at byte offset {at(begin)}'
                    )
                while s[i] != "\0" and s[i] in _TAG_SPACE:
                    i += 1
                if s[i] != "=":
                    if s[i] == "\0":
                        raise EntityParseError(
                            f'Unclosed start tag "{tag}" at byte offset {at(begin)}'
                        )
                    if tag == "blockquote" and attribute == "expandable":
                        argument = "1"
                    continue
                i += 1
                while s[i] != "\0" and s[i] in _TAG_SPACE:
                    i += 1
                if s[i] == "\0":
                    raise EntityParseError(f'Unclosed start tag "{tag}" at byte offset {at(begin)}')
                if s[i] not in "'\"":
                    token_begin = i  # a name token: letters, digits, periods, hyphens
                    while s[i].isascii() and (s[i].isalnum() or s[i] in ".-"):
                        i += 1
                    value = _ascii_lower(s[token_begin:i])
                    if s[i] not in _TAG_SPACE and s[i] != ">":
                        raise EntityParseError(
                            f"Unexpected end of name token at byte offset {at(token_begin)}"
                        )
                else:
                    quote = s[i]
                    i += 1
                    chars: list[str] = []
                    while s[i] != quote and s[i] != "\0":
                        if s[i] == "&" and (decoded := _decode_entity(s, i)) is not None:
                            chars.append(chr(decoded[0]))
                            i = decoded[1]
                            continue
                        chars.append(s[i])
                        i += 1
                    if s[i] == quote:
                        i += 1
                    value = "".join(chars)
                if s[i] == "\0":
                    raise EntityParseError(f"Unclosed start tag at byte offset {at(begin)}")
                if tag == "a" and attribute == "href":
                    argument = value
                elif tag == "code" and attribute == "class" and value.startswith("language-"):
                    argument = value[9:]
                elif tag == "span" and attribute == "class" and value.startswith("tg-"):
                    argument = value[3:]
                elif tag == "tg-emoji" and attribute == "emoji-id":
                    argument = value
                elif tag == "blockquote" and attribute == "expandable":
                    argument = "1"
            if tag == "span" and argument != "spoiler":
                raise EntityParseError(
                    f'Tag "span" must have class "tg-spoiler" at byte offset {at(begin)}'
                )
            stack.append(_OpenTag(tag, argument, utf16, len(out)))
            i += 1
            continue

        if not stack:
            raise EntityParseError(f"Unexpected end tag at byte offset {at(begin)}")
        while s[i] not in _TAG_SPACE and s[i] != ">":
            i += 1
        end_tag = _ascii_lower(s[begin + 2 : i])
        while s[i] != "\0" and s[i] in _TAG_SPACE:
            i += 1
        if s[i] != ">":
            raise EntityParseError(f"Unclosed end tag at byte offset {at(begin)}")
        opened = stack.pop()
        if end_tag and end_tag != opened.name:
            raise EntityParseError(
                f'Unmatched end tag at byte offset {at(begin)}, expected "</{opened.name}>", '
                f'found "</{end_tag}>"'
            )
        i += 1
        if utf16 > opened.offset:
            content = "".join(out[opened.char_index :]) if opened.name == "a" else ""
            _close_tag(opened, utf16 - opened.offset, entities, content, resolve_user)

    if stack:
        raise EntityParseError(
            f'Can\'t find end tag corresponding to start tag "{stack[-1].name}"'
        )
    for entity in entities:
        if entity.type == "code":
            entity.language = None  # a language only counts inside <pre>
    if has_surrogate:
        raise EntityParseError(
            "Text contains invalid Unicode characters after decoding HTML entities, "
            "check for unmatched surrogate code units"
        )
    entities.sort(key=_sort_key)
    return FormattedText("".join(out), entities)

def _close_tag(
    opened: _OpenTag,
    length: int,
    entities: list[Entity],
    content: str,
    resolve_user: Callable[[int], dict[str, Any] | None] | None,
) -> None:
    """Turn a closed, non-empty tag into its entity (TDLib's end-tag branch)."""
    offset, name, argument = opened.offset, opened.name, opened.argument
    last = entities[-1] if entities else None
    same_range = last is not None and (last.offset, last.length) == (offset, length)
    if name in _SIMPLE_TAGS or name == "span":
        entities.append(Entity(_SIMPLE_TAGS.get(name, "spoiler"), offset, length))
    elif name == "tg-emoji":
        if not _INT64.fullmatch(argument) or not 0 < abs(int(argument)) < 1 << 63:
            raise EntityParseError("Invalid custom emoji identifier specified")
        entities.append(Entity("custom_emoji", offset, length, custom_emoji_id=str(int(argument))))
    elif name == "a":
        url = argument or content
        if match := _USER_LINK.fullmatch(url):
            user = resolve_user(int(match.group(1))) if resolve_user else None
            if user is not None:
                entities.append(Entity("text_mention", offset, length, user=dict(user)))
        elif (checked := checked_link(url)) is not None:
            entities.append(Entity("text_link", offset, length, url=checked))
    elif name == "pre":
        if last is not None and same_range and last.type == "code" and last.language:
            last.type = "pre"
        else:
            entities.append(Entity("pre", offset, length))
    elif name == "code":
        if last is not None and same_range and last.type == "pre" and argument:
            last.language = argument
        else:
            entities.append(Entity("code", offset, length, language=argument or None))
    else:  # blockquote
        kind = "expandable_blockquote" if argument else "blockquote"
        entities.append(Entity(kind, offset, length))


def checked_link(url: str) -> str | None:
    """Canonical form of a link Telegram accepts in text_link, or None (entity dropped).

    A simplified LinkManager::get_checked_link: without a scheme the link is http, only
    http(s), tg, ton and tonsite links pass, and web hosts are lower-cased and get a "/" path.
    """
    if not url or any(c.isspace() or ord(c) < 32 for c in url):
        return None
    scheme, colon, rest = url.partition(":")
    scheme = scheme.lower()
    if colon and scheme in ("tg", "ton", "tonsite") and rest:
        return f"{scheme}:{rest}"
    if not (colon and scheme in ("http", "https") and rest.startswith("//")):
        if "://" in url or (colon and scheme.isalpha() and not rest[:1].isdigit()):
            return None  # another protocol (ftp://, mailto:, javascript:, ...)
        scheme, rest = "http", f"//{url}"
    try:
        parts = urlsplit(f"{scheme}:{rest}")
        host = parts.hostname or ""
        _ = parts.port  # raises ValueError for an invalid port
    except ValueError:
        return None
    if not _HOST.fullmatch(host) or "." not in host.strip("."):
        return None
    query = f"?{parts.query}" if parts.query or "?" in rest else ""
    fragment = f"#{parts.fragment}" if parts.fragment else ""
    return f"{scheme}://{parts.netloc.lower()}{parts.path or '/'}{query}{fragment}"


def normalize(text: str, entities: list[Entity]) -> FormattedText:
    """TDLib's fix_formatted_text for an outgoing bot message.

    Cleans control characters (shifting entities), merges and splits entities, trims
    spaces and newlines, and raises EmptyTextError when nothing visible is left.
    """
    if _SURROGATE.search(text):
        raise TextError("Strings must be encoded in UTF-8")
    entities = _fix_entities([e for e in entities if not _is_empty(e)])
    text, entities = _clean(text, entities)
    entities = [e for e in entities if not _is_empty(e)]
    kept = text.rstrip(" \n")
    if not kept:
        raise EmptyTextError("Text must be non-empty")
    entities = _fix_entities(entities)

    end = utf16_len(kept)
    entities = [e for e in entities if e.offset < end]
    entities = [replace(e, length=end - e.offset) if e.end > end else e for e in entities]
    entities.sort(key=_sort_key)
    first = entities[0].offset if entities else len(kept)
    trim = 0
    while trim < first and kept[trim] in " \n":
        trim += 1
    text = kept[trim:]
    entities = [replace(e, offset=e.offset - trim) for e in entities]
    if _is_empty_string(text):
        raise EmptyTextError("Text must be non-empty")
    return FormattedText(text, entities)


def _is_empty(entity: Entity) -> bool:
    if entity.length <= 0:
        return True
    return entity.type == "text_link" and not entity.url


def _clean(text: str, entities: list[Entity]) -> tuple[str, list[Entity]]:
    """clean_input_string_with_entities: control characters to spaces, `\\r` and a few
    invisible characters removed, entity boundaries moved along."""
    size = utf16_len(text)
    for entity in entities:
        if entity.offset < 0 or entity.offset > 1_000_000:
            raise TextError(f"Receive an entity with incorrect offset {entity.offset}")
        if entity.length < 0 or entity.length > 1_000_000:
            raise TextError(f"Receive an entity with incorrect length {entity.length}")
        if entity.offset > size:
            raise TextError(
                f"Entity begins after the end of the text at UTF-16 offset {entity.offset}"
            )
        if entity.end > size:
            raise TextError(
                f"Entity beginning at UTF-16 offset {entity.offset} ends after the end of the "
                f"text at UTF-16 offset {entity.end}"
            )
    if not entities and not _UNCLEAN.search(text):
        return text, entities  # the common case: nothing to clean
    new_at = [-1] * (size + 1)  # old UTF-16 boundary -> new one; -1 inside a surrogate pair
    out: list[str] = []
    old = new = 0
    for char in text:
        new_at[old] = new
        width = _units(char)
        old += width
        if char == "\r" or char in _REMOVED:
            continue
        out.append(" " if ord(char) < 32 and char != "\n" else char)
        new += width
    new_at[old] = new
    moved: list[Entity] = []
    for entity in entities:
        start, stop = new_at[entity.offset], new_at[entity.end]
        if start < 0 or stop < 0:
            raise TextError("Entity begins or ends in a middle of a UTF-16 symbol")
        moved.append(replace(entity, offset=start, length=stop - start))
    return "".join(out), moved


def _is_empty_string(text: str) -> bool:
    """TDLib's is_empty_string on cleaned text: only spaces and invisible characters."""
    return all(
        c in _INVISIBLE or c in _SPACE_LIKE or 0xE0000 <= ord(c) <= 0xE007F for c in text
    )


def _fix_entities(entities: list[Entity]) -> list[Entity]:
    """fix_entities: continuous entities (code, pre, links, ...) may not nest or overlap,
    blockquotes may only contain them whole, and bold/italic/... are merged and split at
    every other entity's boundary and removed inside code and pre."""
    entities = sorted(entities, key=_sort_key)
    splittable = [e for e in entities if e.type in SPLITTABLE]
    blockquotes = [e for e in entities if e.type in BLOCKQUOTES]
    others = _remove_intersecting(
        [e for e in entities if e.type not in SPLITTABLE and e.type not in BLOCKQUOTES]
    )
    if blockquotes:
        blockquotes = _remove_intersecting(blockquotes)
        others = sorted(
            [*_remove_crossing_blockquotes(others, blockquotes), *blockquotes], key=_sort_key
        )
    if not splittable:
        return others
    return sorted([*others, *_split(splittable, others)], key=_sort_key)


def _remove_intersecting(entities: list[Entity]) -> list[Entity]:
    """Keep each entity only if it starts after all kept ones end (drops nested ones too)."""
    kept: list[Entity] = []
    last_end = 0
    for entity in entities:
        if entity.offset >= last_end:
            kept.append(entity)
            last_end = entity.end
    return kept


def _remove_crossing_blockquotes(
    entities: list[Entity], blockquotes: list[Entity]
) -> list[Entity]:
    kept: list[Entity] = []
    index = 0
    for entity in entities:
        while index < len(blockquotes) and blockquotes[index].end <= entity.offset:
            index += 1
        if index < len(blockquotes):
            quote = blockquotes[index]
            if quote.end < entity.end or entity.offset < quote.offset < entity.end:
                continue
        kept.append(entity)
    return kept


def _split(splittable: list[Entity], others: list[Entity]) -> list[Entity]:
    """split_entities: a direct port, state per splittable type."""
    begin = dict.fromkeys(SPLITTABLE, 0)
    end = dict.fromkeys(SPLITTABLE, 0)
    result: list[Entity] = []
    position = 0

    def flush(offset: int) -> None:
        for kind in SPLITTABLE:
            if end[kind] != 0 and begin[kind] < offset:
                if end[kind] <= offset:
                    result.append(Entity(kind, begin[kind], end[kind] - begin[kind]))
                    begin[kind] = end[kind] = 0
                else:
                    result.append(Entity(kind, begin[kind], offset - begin[kind]))
                    begin[kind] = offset

    def add_entities(end_offset: int) -> None:
        nonlocal position
        while position < len(splittable) and splittable[position].offset < end_offset:
            entity = splittable[position]
            kind = entity.type
            if end[kind] != 0 and entity.offset <= end[kind]:
                end[kind] = max(end[kind], entity.end)
            else:
                flush(entity.offset)
                begin[kind], end[kind] = entity.offset, entity.end
            position += 1
        flush(end_offset)

    stack: list[Entity] = []

    def add_offset(offset: int) -> None:
        while stack and offset >= stack[-1].end:
            emitted = len(result)
            add_entities(stack[-1].end)
            if stack[-1].type in PRE_LIKE:
                del result[emitted:]  # nothing is bold inside code or pre
            stack.pop()
        add_entities(offset)

    for other in others:
        add_offset(other.offset)
        stack.append(other)
    add_offset(_END)
    return result


def find_bot_commands(text: str) -> list[Entity]:
    """bot_command entities as Telegram marks them in incoming text (match_bot_commands):
    `/name` of 1-64 of [A-Za-z0-9_], optionally `@bot` of 3-32, not glued to a word."""
    found: list[Entity] = []
    size = len(text)
    i = text.find("/")
    while i != -1:
        if i > 0 and (_is_word(text[i - 1]) or text[i - 1] in "/<>"):
            i = text.find("/", i + 1)
            continue
        start = i
        i += 1
        name_begin = i
        while i < size and _is_command_char(text[i]):
            i += 1
        end = i
        valid = 1 <= i - name_begin <= 64
        if valid and i < size and text[i] == "@":
            i += 1
            mention_begin = i
            while i < size and _is_command_char(text[i]):
                i += 1
            valid = 3 <= i - mention_begin <= 32
            end = i
        following = text[i] if i < size else ""
        if valid and not (following and (_is_word(following) or following in "/<>")):
            offset = utf16_len(text[:start])
            found.append(Entity("bot_command", offset, utf16_len(text[start:end])))
        i = text.find("/", i)
    return found


def _is_word(char: str) -> bool:
    return char.isalnum() or char == "_"


def _is_command_char(char: str) -> bool:
    return char.isascii() and (char.isalnum() or char == "_")
