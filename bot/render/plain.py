"""Plain-text rendering: the console, Matrix's `body`, and what Telegram shows after parsing."""

from __future__ import annotations

from collections.abc import Iterable

from bot.document import Block, Heading, Inline, Link, ListBlock, Quote, Text

BULLET = "•"


def list_marker(block: ListBlock, index: int) -> str:
    """The visible marker of a list item, shared by all renderers that draw lists as text."""
    return f"{block.start + index}." if block.ordered else BULLET


def render_inline(nodes: Iterable[Inline], show_urls: bool = True) -> str:
    out: list[str] = []
    for node in nodes:
        if isinstance(node, Text):
            out.append(node.text)
        elif isinstance(node, Link):
            label = render_inline(node.children, show_urls)
            out.append(label if not show_urls or label == node.url else f"{label} ({node.url})")
        else:
            out.append(render_inline(node.children, show_urls))
    return "".join(out)


def render_block(block: Block, show_urls: bool = True) -> str:
    if isinstance(block, ListBlock):
        return "\n".join(
            f"{list_marker(block, i)} {render_inline(item, show_urls)}"
            for i, item in enumerate(block.items)
        )
    text = render_inline(block.inlines, show_urls)
    if isinstance(block, Quote):
        return "\n".join(f"> {line}" for line in text.split("\n"))
    if isinstance(block, Heading):
        return text
    return text


def render_plain(blocks: Iterable[Block], show_urls: bool = True) -> str:
    """Blocks separated by blank lines; link targets shown after their label."""
    return "\n\n".join(render_block(b, show_urls) for b in blocks).strip()
