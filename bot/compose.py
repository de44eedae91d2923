"""What a statement looks like as a document: full text, or title and demands.

Shared by the commands, inline mode and `/announce` broadcasts, so a statement reads the
same wherever it is sent.
"""

from __future__ import annotations

from babel.dates import format_date

from bot.catalog import Translation
from bot.document import Block, ListBlock, heading, inlines, italic, link, para


def _meta(translation: Translation) -> Block:
    date = format_date(translation.date, "long", locale=translation.language)
    return para(italic(f"{translation.organisation} · {date}"))


def _source(translation: Translation, source_label: str) -> Block:
    return para(source_label, " ", link(translation.source))


def statement_blocks(translation: Translation, source_label: str) -> tuple[Block, ...]:
    """Title, organisation and date, the text, and the source link."""
    return (
        heading(translation.title),
        _meta(translation),
        *translation.body,
        _source(translation, source_label),
    )


def demands_blocks(translation: Translation, source_label: str) -> tuple[Block, ...]:
    """Title and the numbered demands, one per line, then the source link."""
    items = tuple(inlines(d) for d in translation.demands)
    return (heading(translation.title), ListBlock(items, ordered=True),
            _source(translation, source_label))
