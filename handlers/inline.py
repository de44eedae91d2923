"""Inline offers (`@bot fr`, `@bot demands de`): which texts to offer for a query.

Platform-neutral: the Telegram adapter turns offers into inline results and fits them
to its size limit.
"""

from __future__ import annotations

from dataclasses import dataclass

from bot.catalog import Translation
from bot.document import Document
from bot.languages import language_name, normalise_language
from bot.protocol import Request
from handlers.context import Call, Context
from handlers.statements import demands_blocks, statement_blocks

MAX_OFFERS = 50
DEMANDS_WORDS = {"demands", "demand", "forderungen", "revendications", "krav"}
STATEMENT_WORDS = {"statement", "text", "erklärung", "déclaration", "erklæring"}


@dataclass(frozen=True)
class Offer:
    id: str
    title: str
    description: str
    blocks: Document
    source: str  # linked when the text has to be shortened to fit


def inline_offers(ctx: Context, request: Request) -> list[Offer]:
    """Statements and demands matching the query's words, newest first."""
    hint = normalise_language(request.language_hint) if request.language_hint else None
    ui = ctx.translator.ui_language(hint, ctx.config.language)
    call = Call(ctx, request, "inline", request.text.split(), request.text, None, ui,
                ctx.translator(ui))
    kinds = {"statement", "demands"}
    languages: set[str] = set()
    statement_ids: set[str] = set()
    for token in call.args[:4]:
        word = token.casefold()
        if word in DEMANDS_WORDS:
            kinds = {"demands"}
        elif word in STATEMENT_WORDS:
            kinds = {"statement"}
        elif (statement := ctx.catalog.find(word)) is not None:
            statement_ids.add(statement.id)
        elif (language := normalise_language(word, ctx.offered_languages)) is not None:
            languages.add(language)
        else:
            return []
    if not languages and not statement_ids:
        languages = {hint or ctx.config.language}
    translations: list[Translation] = [
        t for s in ctx.catalog.newest_first() if not statement_ids or s.id in statement_ids
        for t in sorted(s.translations.values(), key=lambda t: t.language)
        if not languages or t.language in languages
    ]
    offers: list[Offer] = []
    _ = call._
    for t in translations:
        label = f"{t.title} ({language_name(t.language, ui)})"
        if "statement" in kinds:
            offers.append(Offer(f"statement:{t.statement_id}:{t.language}",
                                _("Statement: {title}", title=label), t.organisation,
                                statement_blocks(call, t), t.source))
        if "demands" in kinds:
            offers.append(Offer(f"demands:{t.statement_id}:{t.language}",
                                _("Demands: {title}", title=label),
                                "; ".join(t.demands)[:200], demands_blocks(call, t), t.source))
    return offers[:MAX_OFFERS]
