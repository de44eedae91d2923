"""Matrix message content: plain `body` plus `org.matrix.custom.html` with the spec's tags."""

from __future__ import annotations

import json
from collections.abc import Sequence
from html import escape
from typing import Any

from bot.document import Block, Heading, Inline, Link, ListBlock, Quote, Styled, Text
from bot.render.plain import render_plain
from bot.render.split import split_document

# Synapse rejects events over 65,536 bytes; keep room for relations and signatures.
EVENT_CONTENT_LIMIT = 60_000
_TAGS = {"bold": "strong", "italic": "em", "underline": "u", "strike": "del", "code": "code"}


def _inline(nodes: Sequence[Inline]) -> str:
    out: list[str] = []
    for node in nodes:
        if isinstance(node, Text):
            out.append(escape(node.text, quote=False).replace("\n", "<br>"))
        elif isinstance(node, Link):
            out.append(f'<a href="{escape(node.url, quote=True)}">{_inline(node.children)}</a>')
        elif isinstance(node, Styled):
            tag = _TAGS[node.style]
            out.append(f"<{tag}>{_inline(node.children)}</{tag}>")
    return "".join(out)


def _block(block: Block) -> str:
    if isinstance(block, ListBlock):
        items = "".join(f"<li>{_inline(item)}</li>" for item in block.items)
        if block.ordered:
            start = f' start="{block.start}"' if block.start != 1 else ""
            return f"<ol{start}>{items}</ol>"
        return f"<ul>{items}</ul>"
    text = _inline(block.inlines)
    if isinstance(block, Heading):
        return f"<h4>{text}</h4>"
    if isinstance(block, Quote):
        return f"<blockquote>{text}</blockquote>"
    return f"<p>{text}</p>"


def render_content(blocks: Sequence[Block], msgtype: str = "m.notice") -> dict[str, Any]:
    return {
        "msgtype": msgtype,
        "body": render_plain(blocks),
        "format": "org.matrix.custom.html",
        "formatted_body": "".join(_block(b) for b in blocks),
    }


def content_size(content: dict[str, Any]) -> int:
    """Bytes of the content as JSON, the way the homeserver measures the event."""
    return len(json.dumps(content, ensure_ascii=False).encode("utf-8"))


def render_parts(
    blocks: Sequence[Block], msgtype: str = "m.notice", limit: int = EVENT_CONTENT_LIMIT
) -> list[dict[str, Any]]:
    """Event contents split at block boundaries, each under the size limit."""
    parts = split_document(blocks, lambda p: content_size(render_content(p, msgtype)), limit)
    return [render_content(p, msgtype) for p in parts]
