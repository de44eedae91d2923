"""Markdown (CommonMark via markdown-it-py) to the document model.

Statement bodies and organisers' broadcast texts are Markdown; parsing them once into
blocks lets each platform renderer emit only the markup it supports.
"""

from __future__ import annotations

from markdown_it import MarkdownIt
from markdown_it.token import Token

from bot.document import (
    Block,
    Document,
    Heading,
    Inline,
    Link,
    ListBlock,
    Paragraph,
    Quote,
    Styled,
    Text,
)

_md = MarkdownIt("commonmark", {"html": False, "linkify": False}).enable("strikethrough")

_STYLE_OPEN = {"strong_open": "bold", "em_open": "italic", "s_open": "strike"}
_STYLE_CLOSE = {"strong_close", "em_close", "s_close", "link_close"}


def parse_markdown(source: str) -> Document:
    """Parse Markdown into blocks; unsupported constructs degrade to plain paragraphs."""
    tokens = _md.parse(source)
    blocks: list[Block] = []
    list_stack: list[tuple[bool, int, list[tuple[Inline, ...]]]] = []
    in_quote = 0
    pending_heading = False
    for tok in tokens:
        kind = tok.type
        if kind in ("bullet_list_open", "ordered_list_open"):
            start = int(tok.attrGet("start") or 1)
            list_stack.append((kind == "ordered_list_open", start, []))
        elif kind in ("bullet_list_close", "ordered_list_close"):
            ordered, start, items = list_stack.pop()
            if list_stack:  # nested list: flatten its items into the parent list
                list_stack[-1][2].extend(items)
            else:
                blocks.append(ListBlock(tuple(items), ordered=ordered, start=start))
        elif kind == "blockquote_open":
            in_quote += 1
        elif kind == "blockquote_close":
            in_quote -= 1
        elif kind == "heading_open":
            pending_heading = True
        elif kind == "inline":
            nodes = _inline(tok.children or [])
            if list_stack:
                list_stack[-1][2].append(nodes)
            elif pending_heading:
                blocks.append(Heading(nodes))
            elif in_quote:
                blocks.append(Quote(nodes))
            else:
                blocks.append(Paragraph(nodes))
            pending_heading = False
        elif kind in ("fence", "code_block"):
            text = tok.content.rstrip("\n")
            blocks.append(Paragraph((Styled("code", (Text(text),)),)))
    return tuple(b for b in blocks if not _is_empty(b))


def _is_empty(block: Block) -> bool:
    if isinstance(block, ListBlock):
        return not block.items
    return not block.inlines


def _inline(tokens: list[Token]) -> tuple[Inline, ...]:
    """Build nested inlines from markdown-it's flat open/close token stream."""
    stack: list[tuple[str, str, list[Inline]]] = [("root", "", [])]
    for tok in tokens:
        kind = tok.type
        if kind in _STYLE_OPEN:
            stack.append((_STYLE_OPEN[kind], "", []))
        elif kind == "link_open":
            stack.append(("link", str(tok.attrGet("href") or ""), []))
        elif kind in _STYLE_CLOSE:
            style, href, children = stack.pop()
            node: Inline = (
                Link(href, tuple(children)) if style == "link" else Styled(style, tuple(children))  # type: ignore[arg-type]
            )
            stack[-1][2].append(node)
        elif kind == "code_inline":
            stack[-1][2].append(Styled("code", (Text(tok.content),)))
        elif kind == "softbreak":
            stack[-1][2].append(Text(" "))
        elif kind == "hardbreak":
            stack[-1][2].append(Text("\n"))
        elif tok.content:
            stack[-1][2].append(Text(tok.content))
    while len(stack) > 1:  # unbalanced input: keep the text, drop the markup
        _, _, children = stack.pop()
        stack[-1][2].extend(children)
    return _merge_text(stack[0][2])


def _merge_text(nodes: list[Inline]) -> tuple[Inline, ...]:
    merged: list[Inline] = []
    for node in nodes:
        if isinstance(node, Text) and merged and isinstance(merged[-1], Text):
            merged[-1] = Text(merged[-1].text + node.text)
        else:
            merged.append(node)
    return tuple(merged)
