"""/statement and /demands: a statement's full text or its demands, in a language."""

from __future__ import annotations

from bot import compose
from bot.catalog import Statement, Translation
from bot.document import Block, italic, para
from bot.languages import language_name, resolve_language
from bot.protocol import Reply
from handlers.arguments import ArgumentError, language_list, parse_target
from handlers.context import Call
from handlers.registry import N_, command


def statement_blocks(call: Call, translation: Translation) -> tuple[Block, ...]:
    return compose.statement_blocks(translation, call._("Source:"))


def demands_blocks(call: Call, translation: Translation) -> tuple[Block, ...]:
    return compose.demands_blocks(translation, call._("Source:"))


async def _choose(call: Call) -> tuple[Translation, list[Block]] | Reply:
    """The translation to send, plus notes when a fallback language was used."""
    _ = call._
    try:
        target = parse_target(call)
    except ArgumentError as error:
        return error.reply
    catalog = call.ctx.catalog
    chat_language = call.chat.language if call.chat else None
    hint = call.request.language_hint
    default = call.ctx.config.language
    statement: Statement | None = target.statement
    available = statement.languages if statement else catalog.languages
    resolution = resolve_language(target.language, chat_language, hint, default, available)
    notes: list[Block] = []
    if statement is None:
        translation = catalog.newest_in(resolution.code)
        if translation is None:
            return Reply((
                para(_("There is no statement in {language} yet.",
                       language=f"{language_name(resolution.code, call.ui)} ({resolution.code})")),
                para(_("Statements are available in: {languages}.",
                       languages=language_list(call, catalog.languages))),
            ))
        return translation, notes
    if resolution.code not in statement.translations:
        if target.language:
            return Reply((
                para(_("The statement {id} is not available in {language}.",
                       id=statement.id,
                       language=f"{language_name(resolution.code, call.ui)} ({resolution.code})")),
                para(_("This statement is available in: {languages}.",
                       languages=language_list(call, statement.languages))),
            ))
        fallback = statement.languages[0]
        notes.append(para(italic(_("Not available in {language}; here it is in {fallback}.",
                                   language=language_name(resolution.code, call.ui),
                                   fallback=language_name(fallback, call.ui)))))
        return statement.translations[fallback], notes
    return statement.translations[resolution.code], notes


@command("statement", "[ID] [LANG]",
         N_("the full text of a statement (the newest one in your language by default)"),
         aliases=("text",))
async def statement_command(call: Call) -> list[Reply]:
    chosen = await _choose(call)
    if isinstance(chosen, Reply):
        return [chosen]
    translation, notes = chosen
    return [Reply((*notes, *statement_blocks(call, translation)))]


@command("demands", "[ID] [LANG]", N_("only the demands of a statement, as a list"))
async def demands_command(call: Call) -> list[Reply]:
    chosen = await _choose(call)
    if isinstance(chosen, Reply):
        return [chosen]
    translation, notes = chosen
    return [Reply((*notes, *demands_blocks(call, translation)))]
