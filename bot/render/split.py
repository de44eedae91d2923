"""Split a document into messages that each fit a platform's size limit.

Splitting happens on the document model, never on markup, so a part can never cut a tag
or an entity in two: it prefers block boundaries, then sentence ends, then spaces, and
only cuts inside a word when a single word is longer than the limit.
"""

from __future__ import annotations

import re
from bisect import bisect_right
from collections.abc import Callable, Sequence
from dataclasses import replace

from bot.document import Block, Inline, Link, ListBlock, Paragraph, Styled, Text
from bot.render.plain import list_marker

Measure = Callable[[Sequence[Block]], int]

_SENTENCE_END = re.compile(r"(?<=[.!?…:;])[\"'»”’)\]]*\s+")
_SPACE = re.compile(r"\s+")

# A run is a piece of text with the chain of styles/links around it.
Mark = tuple[str, str]  # ("bold", "") or ("link", url)
Run = tuple[str, tuple[Mark, ...]]


def split_document(blocks: Sequence[Block], measure: Measure, limit: int) -> list[list[Block]]:
    """Greedily pack blocks into parts with `measure(part) <= limit`."""
    parts: list[list[Block]] = []
    current: list[Block] = []
    for block in blocks:
        if measure([*current, block]) <= limit:
            current.append(block)
            continue
        if current:
            parts.append(current)
            current = []
        if measure([block]) <= limit:
            current = [block]
            continue
        pieces = _split_block(block, measure, limit)
        parts.extend([piece] for piece in pieces[:-1])
        current = pieces[-1:]  # none when the block has no text, only markup
    if current:
        parts.append(current)
    return parts


def _split_block(block: Block, measure: Measure, limit: int) -> list[Block]:
    if isinstance(block, ListBlock):
        return _split_list(block, measure, limit)
    return _split_inline_block(block, measure, limit)


def _split_list(block: ListBlock, measure: Measure, limit: int) -> list[Block]:
    pieces: list[Block] = []
    start = 0
    while start < len(block.items):
        def chunk(end: int, s: int = start) -> ListBlock:
            return replace(block, items=block.items[s:end], start=block.start + s)

        end = _last_fitting(list(range(start + 1, len(block.items) + 1)),
                            lambda e: measure([chunk(e)]) <= limit)
        if end is None:  # one item alone is too long: split it as a paragraph, marker kept
            marker = f"{list_marker(block, start)} "
            item = Paragraph((Text(marker), *block.items[start]))
            pieces.extend(_split_inline_block(item, measure, limit, keep=len(marker)))
            start += 1
        else:
            pieces.append(chunk(end))
            start = end
    return pieces


def _split_inline_block(
    block: Block, measure: Measure, limit: int, keep: int = 0
) -> list[Block]:
    """Pieces cut at the last sentence end, else space, that fits; never within the
    first `keep` characters (a list item's marker stays with its text)."""
    runs = _flatten(block.inlines)  # type: ignore[union-attr]
    text = "".join(t for t, _ in runs)
    sentence_cuts = [m.end() for m in _SENTENCE_END.finditer(text)] + [len(text)]
    space_cuts = [m.end() for m in _SPACE.finditer(text)] + [len(text)]
    pieces: list[Block] = []
    start = _skip_space(text, 0)
    while start < len(text):
        def piece(end: int, s: int = start) -> Block:
            return replace(block, inlines=_rebuild(_slice(runs, s, end)))  # type: ignore[call-arg]

        def fits(end: int) -> bool:
            return measure([piece(end)]) <= limit

        end = None
        for cuts in (sentence_cuts, space_cuts):
            candidates = [c for c in cuts if c > max(start, keep)]
            end = _last_fitting(candidates, fits)
            if end is not None:
                break
        if end is None:
            end = _last_fitting(list(range(start + 1, len(text) + 1)), fits) or start + 1
        pieces.append(piece(end))
        start = _skip_space(text, end)
    return pieces


def _skip_space(text: str, index: int) -> int:
    while index < len(text) and text[index].isspace():
        index += 1
    return index


def _last_fitting(candidates: list[int], fits: Callable[[int], bool]) -> int | None:
    """The largest candidate that fits, assuming fitting is monotone (binary search)."""
    lo, hi = 0, len(candidates)
    while lo < hi:
        mid = (lo + hi) // 2
        if fits(candidates[mid]):
            lo = mid + 1
        else:
            hi = mid
    return candidates[lo - 1] if lo else None


def _flatten(nodes: Sequence[Inline], marks: tuple[Mark, ...] = ()) -> list[Run]:
    runs: list[Run] = []
    for node in nodes:
        if isinstance(node, Text):
            runs.append((node.text, marks))
        elif isinstance(node, Link):
            runs.extend(_flatten(node.children, (*marks, ("link", node.url))))
        else:
            runs.extend(_flatten(node.children, (*marks, (node.style, ""))))
    return runs


def _slice(runs: list[Run], start: int, end: int) -> list[Run]:
    """The runs covering text[start:end], with whitespace at both ends trimmed."""
    offsets = [0]
    for text, _ in runs:
        offsets.append(offsets[-1] + len(text))
    out: list[Run] = []
    first = max(bisect_right(offsets, start) - 1, 0)
    for i in range(first, len(runs)):
        lo, hi = offsets[i], offsets[i + 1]
        if lo >= end:
            break
        piece = runs[i][0][max(start - lo, 0): min(end, hi) - lo]
        if piece:
            out.append((piece, runs[i][1]))
    if out:
        out[0] = (out[0][0].lstrip(), out[0][1])
        out[-1] = (out[-1][0].rstrip(), out[-1][1])
    return [r for r in out if r[0]]


def _rebuild(runs: list[Run]) -> tuple[Inline, ...]:
    """Nest runs back into inlines, sharing a parent where consecutive runs share a mark."""
    out: list[Inline] = []
    i = 0
    while i < len(runs):
        text, marks = runs[i]
        if not marks:
            out.append(Text(text))
            i += 1
            continue
        head = marks[0]
        j = i
        while j < len(runs) and runs[j][1][:1] == (head,):
            j += 1
        inner = _rebuild([(t, m[1:]) for t, m in runs[i:j]])
        kind, url = head
        out.append(Link(url, inner) if kind == "link" else Styled(kind, inner))  # type: ignore[arg-type]
        i = j
    return tuple(out)


def shorten_to_fit(
    blocks: Sequence[Block], tail: Sequence[Block], measure: Measure, limit: int
) -> list[Block]:
    """The leading blocks that fit together with `tail` (e.g. a "read on" link)."""
    if measure(blocks) <= limit:
        return list(blocks)
    room = limit - measure(tail) - 2
    return [*split_document(blocks, measure, room)[0], *tail]
