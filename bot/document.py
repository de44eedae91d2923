"""A small, platform-neutral document model.

Handlers build replies from these blocks instead of markup strings, so every renderer
escapes text itself: user and statement text can never inject markup on any platform.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Style = Literal["bold", "italic", "underline", "strike", "code"]


@dataclass(frozen=True)
class Text:
    text: str


@dataclass(frozen=True)
class Styled:
    style: Style
    children: tuple[Inline, ...]


@dataclass(frozen=True)
class Link:
    url: str
    children: tuple[Inline, ...]


Inline = Text | Styled | Link


@dataclass(frozen=True)
class Paragraph:
    inlines: tuple[Inline, ...]


@dataclass(frozen=True)
class Heading:
    inlines: tuple[Inline, ...]


@dataclass(frozen=True)
class Quote:
    inlines: tuple[Inline, ...]


@dataclass(frozen=True)
class ListBlock:
    items: tuple[tuple[Inline, ...], ...]
    ordered: bool = False
    start: int = 1


Block = Paragraph | Heading | Quote | ListBlock
Document = tuple[Block, ...]

InlineLike = str | Inline


def inlines(*parts: InlineLike) -> tuple[Inline, ...]:
    """Turn strings and inlines into a tuple of inlines; strings become plain text."""
    return tuple(Text(p) if isinstance(p, str) else p for p in parts if p != "")


def para(*parts: InlineLike) -> Paragraph:
    return Paragraph(inlines(*parts))


def heading(*parts: InlineLike) -> Heading:
    return Heading(inlines(*parts))


def bold(*parts: InlineLike) -> Styled:
    return Styled("bold", inlines(*parts))


def italic(*parts: InlineLike) -> Styled:
    return Styled("italic", inlines(*parts))


def code(text: str) -> Styled:
    return Styled("code", (Text(text),))


def link(url: str, *parts: InlineLike) -> Link:
    return Link(url, inlines(*parts) if parts else (Text(url),))
