"""Telegram's HTML subset (b, i, u, s, a, code, pre, blockquote) and its 4096-unit limit."""

from __future__ import annotations

from collections.abc import Sequence
from html import escape

from bot.document import Block, Heading, Inline, Link, ListBlock, Quote, Styled, Text
from bot.render.plain import list_marker
from bot.render.split import split_document

MESSAGE_LIMIT = 4096
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
    """The text Telegram keeps after parsing `render_html(blocks)`: what its limit counts."""
    return "\n\n".join(_block(b, False) for b in blocks).strip()


def render_parts(blocks: Sequence[Block], limit: int = MESSAGE_LIMIT) -> list[str]:
    """HTML messages, each within Telegram's limit and parseable on its own."""
    parts = split_document(blocks, lambda part: utf16_len(visible_text(part)), limit)
    return [html for html in (render_html(p) for p in parts) if html]
