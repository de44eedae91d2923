"""Telegram's HTML subset (b, i, u, s, a, code, pre, blockquote) and its 4096-unit limit."""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache
from html import escape

from bot.document import Block, Heading, Inline, Link, ListBlock, Quote, Styled, Text
from bot.render.plain import list_marker
from bot.render.split import split_document

MESSAGE_LIMIT = 4096
# Besides whitespace, what Telegram removes or counts as nothing when it rejects a message
# as empty: zero-width and filler characters, direction marks, three combining marks.
_NOTHING = frozenset("\u180e\u200b\u200c\u200d\u200e\u200f\u202a\u202b\u202c\u202d\u202e"
                     "\u2800\ufeff\ufffc\u0333\u033f\u030a")
_TAGS = {"bold": "b", "italic": "i", "underline": "u", "strike": "s", "code": "code"}


def utf16_len(text: str) -> int:
    """Length as Telegram counts it: UTF-16 code units."""
    return len(text.encode("utf-16-le")) // 2


def _inline(nodes: Sequence[Inline], html: bool) -> str:
    out: list[str] = []
    for node in nodes:
        if isinstance(node, Text):
            out.append(escape(node.text, quote=False) if html else node.text)
        elif isinstance(node, Link):
            inner = _inline(node.children, html)
            out.append(f'<a href="{escape(node.url, quote=True)}">{inner}</a>' if html else inner)
        elif isinstance(node, Styled):
            inner = _inline(node.children, html)
            tag = _TAGS[node.style]
            out.append(f"<{tag}>{inner}</{tag}>" if html and inner else inner)
    return "".join(out)


def _block(block: Block, html: bool) -> str:
    if isinstance(block, ListBlock):
        return "\n".join(
            f"{list_marker(block, i)} {_inline(item, html)}" for i, item in enumerate(block.items)
        )
    text = _inline(block.inlines, html)
    if isinstance(block, Heading) and html:
        return f"<b>{text}</b>"
    if isinstance(block, Quote) and html:
        return f"<blockquote>{text}</blockquote>"
    return text


def render_html(blocks: Sequence[Block]) -> str:
    return "\n\n".join(_block(b, True) for b in blocks).strip()


def visible_text(blocks: Sequence[Block]) -> str:
    """The text of `render_html(blocks)` without markup, which its limit counts. Not
    trimmed: Telegram keeps spaces at the start of a tag, so this is never shorter than
    the text Telegram keeps."""
    return "\n\n".join(_block(b, False) for b in blocks)


def is_blank(text: str) -> bool:
    """Whether Telegram would refuse `text` as empty ("message text is empty")."""
    return all(c.isspace() or c in _NOTHING or ord(c) < 32 or 0xE0000 <= ord(c) <= 0xE007F
               for c in text)


def render_parts(blocks: Sequence[Block], limit: int = MESSAGE_LIMIT) -> list[str]:
    """HTML messages, each within Telegram's limit and parseable on its own; parts with
    nothing visible in them are left out, as Telegram would reject them."""
    return list(_render_parts(tuple(blocks), limit))


@lru_cache(maxsize=256)
def _render_parts(blocks: tuple[Block, ...], limit: int) -> tuple[str, ...]:
    """Cached: the same few statements are asked for again and again, and under a burst
    of commands the time spent splitting them adds up in everyone's wait."""
    parts = split_document(blocks, lambda part: utf16_len(visible_text(part)), limit)
    return tuple(render_html(p) for p in parts if not is_blank(visible_text(p)))
