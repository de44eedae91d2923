"""The renderers: escaping, tags per platform, and splitting into messages that each fit.

Telegram parts are checked with the fake server's port of TDLib's HTML parser, so a part
that passes here is one Telegram accepts: it parses, it is not empty, and it is within the
limit as Telegram counts it (UTF-16 units of the parsed, normalised text).
"""

from __future__ import annotations

from collections.abc import Sequence
from html.parser import HTMLParser

from hypothesis import given, settings
from hypothesis import strategies as st

from bot.document import (
    Block,
    Heading,
    Inline,
    Link,
    ListBlock,
    Paragraph,
    Quote,
    Styled,
    Text,
    bold,
    code,
    heading,
    italic,
    link,
    para,
)
from bot.render import matrix, telegram
from bot.render.plain import render_plain
from bot.render.split import shorten_to_fit, split_document
from tests.fakes.telegram_html import FormattedText, normalize, parse_html, utf16_len

# What Telegram drops or shows as nothing: never counted when texts are compared.
_INVISIBLE = frozenset("\u180e\u200b\u200c\u200d\u200e\u200f\u202e\u2800\u3164\ufeff\ufffc"
                       "\u0333\u033f\u030a")


def parsed(html: str) -> FormattedText:
    """The message as Telegram stores it; raises as Telegram would reject it."""
    text = parse_html(html)
    return normalize(text.text, text.entities)


def visible(text: str) -> str:
    """The characters a reader sees, whitespace and invisible characters left out."""
    return "".join(c for c in text if not (c.isspace() or c in _INVISIBLE or ord(c) < 32
                                           or 0xE0000 <= ord(c) <= 0xE007F))


class _MatrixText(HTMLParser):
    """The text a Matrix client shows for formatted_body, list numbers and bullets too."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.pieces: list[str] = []
        self.lists: list[int | None] = []  # next number of each open <ol>; None for <ul>

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in ("ol", "ul"):
            start = dict(attrs).get("start") or "1"
            self.lists.append(int(start) if tag == "ol" else None)
        elif tag == "li" and self.lists:
            number = self.lists[-1]
            self.pieces.append(f"{number}. " if number is not None else "• ")
            if number is not None:
                self.lists[-1] = number + 1

    def handle_endtag(self, tag: str) -> None:
        if tag in ("ol", "ul"):
            self.lists.pop()

    def handle_data(self, data: str) -> None:
        self.pieces.append(data)


def html_text(html: str) -> str:
    parser = _MatrixText()
    parser.feed(html)
    parser.close()
    return "".join(parser.pieces)


def entity_types(html: str) -> list[tuple[str, str]]:
    message = parsed(html)
    units = message.text.encode("utf-16-le")
    return [(e.type, units[2 * e.offset: 2 * e.end].decode("utf-16-le"))
            for e in message.entities]


# -- Telegram HTML ----------------------------------------------------------------------------


def test_text_is_escaped_and_reads_back_unchanged() -> None:
    text = 'a < b && c > d "quoted" \'single\' &amp; </b> <script>'
    html = telegram.render_html((para(text),))
    assert html == ('a &lt; b &amp;&amp; c &gt; d "quoted" \'single\' &amp;amp; &lt;/b&gt; '
                    "&lt;script&gt;")
    assert parsed(html).text == text


def test_link_urls_are_escaped_inside_the_attribute() -> None:
    url = 'https://example.org/p?a=1&b="x"<y>'
    html = telegram.render_html((para("see ", link(url, "the <source>")),))
    assert html == ('see <a href="https://example.org/p?a=1&amp;b=&quot;x&quot;&lt;y&gt;">'
                    "the &lt;source&gt;</a>")
    message = parsed(html)
    assert message.text == "see the <source>"
    [entity] = message.entities
    assert entity.type == "text_link" and entity.url is not None
    assert 'a=1&b="x"<y>' in entity.url


def test_headings_are_bold_and_styles_use_telegram_tags() -> None:
    blocks = (heading("Title"), para(italic("i"), " ", code("x < 1"), " ", bold("b")),
              Paragraph((Styled("strike", (Text("s"),)), Styled("underline", (Text("u"),)))),
              Quote((Text("quoted"),)))
    html = telegram.render_html(blocks)
    assert html == ("<b>Title</b>\n\n<i>i</i> <code>x &lt; 1</code> <b>b</b>\n\n<s>s</s><u>u</u>"
                    "\n\n<blockquote>quoted</blockquote>")
    assert entity_types(html) == [("bold", "Title"), ("italic", "i"), ("code", "x < 1"),
                                  ("bold", "b"), ("strikethrough", "s"), ("underline", "u"),
                                  ("blockquote", "quoted")]


def test_lists_are_drawn_as_text_with_their_numbers() -> None:
    ordered = ListBlock(((Text("first"),), (bold("second"),)), ordered=True, start=3)
    html = telegram.render_html((ListBlock(((Text("a & b"),), (Text("c"),))), ordered))
    assert html == "• a &amp; b\n• c\n\n3. first\n4. <b>second</b>"
    assert parsed(html).text == "• a & b\n• c\n\n3. first\n4. second"


def test_empty_styles_leave_no_tags() -> None:
    assert telegram.render_html((para("a", Styled("bold", ()), "b"),)) == "ab"


def test_a_long_paragraph_splits_at_sentence_ends_with_formatting_kept() -> None:
    sentence = "Solidarity with the workers of the world. "
    blocks = (para(bold(sentence * 30)),)
    parts = telegram.render_parts(blocks, limit=300)
    assert len(parts) > 1
    for part in parts:
        message = parsed(part)
        assert utf16_len(message.text) <= 300
        assert message.text.endswith("world.")
        assert [e.type for e in message.entities] == ["bold"]


def test_an_item_too_long_for_one_message_keeps_its_number() -> None:
    long_item = " ".join(["word"] * 200)
    blocks = (ListBlock(((Text("short"),), (Text(long_item),), (Text("after"),)),
                        ordered=True, start=1),)
    texts = [parsed(p).text for p in telegram.render_parts(blocks, limit=300)]
    assert texts[0].startswith("1. short")
    assert any(t.startswith("2. word") for t in texts)
    assert texts[-1].endswith("3. after")


def test_parts_with_nothing_visible_are_not_sent() -> None:
    """Telegram rejects a message with only spaces or zero-width characters in it."""
    blocks = (para("x" * 50), para(bold("\u200b \u200b")), para("y" * 50))
    parts = telegram.render_parts(blocks, limit=50)
    assert [parsed(p).text for p in parts] == ["x" * 50, "y" * 50]
    assert telegram.render_parts((para(" \u200b\n"),)) == []


def test_spaces_at_the_start_of_a_tag_count_towards_the_limit() -> None:
    """Telegram trims spaces before the first entity only, so these ten stay."""
    parts = telegram.render_parts((para(bold(" " * 10 + "x" * 10)),), limit=12)
    assert all(utf16_len(parsed(p).text) <= 12 for p in parts)


def test_shorten_to_fit_ends_with_the_tail() -> None:
    blocks = [para(f"Paragraph {n}. " * 20) for n in range(30)]
    tail = [para("… ", link("https://example.org/full", "Read the full text"))]

    def measure(part: Sequence[Block]) -> int:
        return telegram.utf16_len(telegram.visible_text(part))

    short = shorten_to_fit(blocks, tail, measure, 4096)
    html = telegram.render_html(short)
    message = parsed(html)
    assert utf16_len(message.text) <= 4096 < measure(blocks)
    assert message.text.endswith("… Read the full text")
    assert message.entities[-1].url == "https://example.org/full"
    assert shorten_to_fit(blocks[:2], tail, measure, 4096) == blocks[:2]


# -- Matrix HTML ------------------------------------------------------------------------------


def test_matrix_uses_the_specs_tags_and_escapes() -> None:
    blocks = (heading("Title <1>"), para(bold("b"), italic("i"), code("c&d"), "line\nbreak"),
              Paragraph((Styled("strike", (Text("s"),)), Styled("underline", (Text("u"),)),
                         link('https://e.org/?a=1&b="2"', "l<i>nk"))),
              ListBlock(((Text("x"),), (Text("y"),)), ordered=True, start=5),
              ListBlock(((Text("& z"),),)), Quote((Text("q"),)))
    content = matrix.render_content(blocks)
    assert content["msgtype"] == "m.notice" and content["format"] == "org.matrix.custom.html"
    assert content["formatted_body"] == (
        "<h4>Title &lt;1&gt;</h4>"
        "<p><strong>b</strong><em>i</em><code>c&amp;d</code>line<br>break</p>"
        '<p><del>s</del><u>u</u><a href="https://e.org/?a=1&amp;b=&quot;2&quot;">l&lt;i&gt;nk</a>'
        "</p>"
        '<ol start="5"><li>x</li><li>y</li></ol><ul><li>&amp; z</li></ul>'
        "<blockquote>q</blockquote>")
    assert content["body"] == render_plain(blocks)
    assert content["body"].startswith("Title <1>\n\nbic&dline\nbreak\n\nsul<i>nk (https://e.org/")


def test_matrix_splits_a_huge_document_under_the_event_limit() -> None:
    blocks = tuple(para(f"Paragraph {n} with <markup> & “quotes”. " * 40) for n in range(60))
    parts = matrix.render_parts(blocks)
    assert len(parts) > 1
    assert all(matrix.content_size(p) <= matrix.EVENT_CONTENT_LIMIT for p in parts)
    assert visible("".join(p["body"] for p in parts)) == visible(render_plain(blocks))


# -- properties -------------------------------------------------------------------------------

CHARACTERS = st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00")
PIECES = st.one_of(
    st.text(CHARACTERS, max_size=12),
    st.sampled_from(["<", ">", "&", "&amp;", "&lt;", '"', "'", "</b>", "<b>", "\n", "\r\n",
                     " ", "  ", ". ", "! ", "… ", "\u200b", "\t", "😀", "👩‍👩‍👧", "𝕏",
                     "\U0001f1eb\U0001f1f7", "Solidarity", "workers", "word."]),
)
TEXTS = st.lists(PIECES, max_size=12).map("".join)
URLS = st.one_of(
    st.sampled_from(["https://example.org/a?b=1&c=2", 'http://x.org/"q"<>&', "example.org",
                     "javascript:alert(1)", "tg://user?id=1", "https://e.org/ü/😀"]),
    st.text(CHARACTERS, max_size=20),
)
STYLES = st.sampled_from(["bold", "italic", "underline", "strike", "code"])
INLINES: st.SearchStrategy[Inline] = st.recursive(
    TEXTS.map(Text),
    lambda children: st.one_of(
        st.builds(Styled, STYLES, st.lists(children, max_size=3).map(tuple)),
        st.builds(Link, URLS, st.lists(children, max_size=3).map(tuple)),
    ),
    max_leaves=8,
)
INLINE_RUNS = st.lists(INLINES, max_size=5).map(tuple)
BLOCKS: st.SearchStrategy[Block] = st.one_of(
    st.builds(Paragraph, INLINE_RUNS),
    st.builds(Heading, INLINE_RUNS),
    st.builds(Quote, INLINE_RUNS),
    st.builds(ListBlock, st.lists(INLINE_RUNS, min_size=1, max_size=5).map(tuple),
              st.booleans(), st.integers(0, 1000)),
)
DOCUMENTS = st.one_of(
    st.lists(BLOCKS, max_size=8).map(tuple),
    TEXTS.map(lambda text: (para(text),)),
)


def check_telegram_parts(blocks: Sequence[Block], limit: int) -> None:
    parts = telegram.render_parts(blocks, limit=limit)
    texts = []
    for part in parts:
        message = parsed(part)  # raises if Telegram would reject the part
        assert utf16_len(message.text) <= limit
        texts.append(message.text)
    assert visible("".join(texts)) == visible(telegram.visible_text(blocks))


@settings(max_examples=60, deadline=None)
@given(DOCUMENTS, st.integers(min_value=40, max_value=400))
def test_telegram_parts_parse_fit_and_rejoin(blocks: tuple[Block, ...], limit: int) -> None:
    check_telegram_parts(blocks, limit)


@settings(max_examples=10, deadline=None)
@given(st.lists(BLOCKS, min_size=1, max_size=6), st.integers(min_value=1, max_value=200))
def test_telegram_parts_at_the_real_limit(blocks: list[Block], copies: int) -> None:
    """Documents past 4096 units, split at Telegram's own limit."""
    check_telegram_parts(tuple(blocks) * copies, telegram.MESSAGE_LIMIT)


@settings(max_examples=60, deadline=None)
@given(DOCUMENTS, st.integers(min_value=1, max_value=20),
       st.integers(min_value=4000, max_value=20_000))
def test_matrix_parts_fit_and_rejoin(blocks: tuple[Block, ...], copies: int, limit: int) -> None:
    """Smaller limits than the real one, so that splitting happens (the smallest piece that
    cannot be cut, one character inside nested links, can take a few kB of markup)."""
    document = blocks * copies
    parts = matrix.render_parts(document, limit=limit)
    assert all(matrix.content_size(p) <= limit for p in parts)
    whole = matrix.render_content(document)["formatted_body"]
    assert visible("".join(html_text(p["formatted_body"]) for p in parts)) == visible(
        html_text(whole))


def test_split_document_keeps_blocks_whole_when_they_fit() -> None:
    blocks = [para("a" * 10), para("b" * 10), para("c" * 10)]
    parts = split_document(blocks, lambda p: len(telegram.visible_text(p)), 22)
    assert parts == [blocks[:2], blocks[2:]]
