"""/start, /help, /statements and /languages: what the bot offers."""

from __future__ import annotations

from bot.document import Block, ListBlock, bold, code, heading, inlines, para
from bot.languages import language_name
from bot.protocol import Reply
from handlers.context import Call
from handlers.permissions import is_organiser
from handlers.registry import COMMANDS, N_, command
from handlers.statements import demands_blocks, statement_blocks

HELP_ORDER = ("statement", "demands", "statements", "languages", "language", "subscribe",
              "unsubscribe", "help", "start", "broadcast", "announce", "confirm", "cancel",
              "report", "organisers", "organiser")


def _help_blocks(call: Call, organiser: bool) -> tuple[Block, ...]:
    _ = call._
    items = []
    ordered = sorted(COMMANDS.values(), key=lambda c: HELP_ORDER.index(c.name)
                     if c.name in HELP_ORDER else len(HELP_ORDER))
    for spec in ordered:
        if spec.organiser_only and not organiser:
            continue
        usage = call.cmd(spec.name, *([spec.usage] if spec.usage else []))
        items.append(inlines(code(usage), " — ", _(spec.summary)))
    example = call.cmd("statement", "fr")
    return (
        para(_("This bot shares solidarity statements in several languages, ready to forward.")),
        ListBlock(tuple(items)),
        para(_("Example: {example}. ID is a statement from {statements}; LANG is a language "
               "code or name such as fr, de, norsk or English.",
               example=example, statements=call.cmd("statements"))),
    )


@command("help", "", N_("this help"))
async def help_command(call: Call) -> list[Reply]:
    return [Reply(_help_blocks(call, await is_organiser(call.ctx, call.request)))]


@command("start", "", N_("welcome and help"))
async def start_command(call: Call) -> list[Reply]:
    """Plain /start shows help; a deep-link payload such as `statement-fr` opens content."""
    if call.args:
        opened = _deep_link(call, call.args[0])
        if opened is not None:
            return opened
    return [Reply((heading(call._("Welcome!")),
                   *_help_blocks(call, await is_organiser(call.ctx, call.request))))]


def _deep_link(call: Call, payload: str) -> list[Reply] | None:
    """`statement-fr`, `demands-de`, `statement-<id>-<lang>` or `statement-<id>`."""
    kind, _sep, rest = payload.casefold().partition("-")
    if kind not in ("statement", "demands") or not rest:
        return None
    catalog = call.ctx.catalog
    statement_id, _sep, language = rest.rpartition("-")
    if statement_id and statement_id in catalog.statements:
        translation = catalog.statements[statement_id].translations.get(language)
    elif rest in catalog.statements:
        statement = catalog.statements[rest]
        translation = statement.translations.get(call.ui) or next(
            iter(statement.translations.values()))
    else:
        translation = catalog.newest_in(rest)
    if translation is None:
        return None
    build = statement_blocks if kind == "statement" else demands_blocks
    return [Reply(build(call, translation))]


@command("statements", "", N_("all statements and their languages"))
async def statements_command(call: Call) -> list[Reply]:
    _ = call._
    catalog = call.ctx.catalog
    items = []
    for statement in catalog.newest_first():
        translation = statement.translations.get(call.ui) or statement.translations[
            statement.languages[0]]
        items.append(inlines(
            bold(statement.id), f" — {translation.title} ({translation.organisation}, "
            f"{statement.date.isoformat()}) — ", ", ".join(statement.languages),
        ))
    if not items:
        return [Reply((para(_("No statements are loaded.")),))]
    return [Reply((
        para(_("Statements, newest first:")),
        ListBlock(tuple(items), ordered=True),
        para(_("Send {example} for one of them.",
               example=call.cmd("statement", "ID", "LANG"))),
    ))]


@command("languages", "", N_("the languages statements exist in"))
async def languages_command(call: Call) -> list[Reply]:
    _ = call._
    catalog = call.ctx.catalog
    items = []
    for code_ in catalog.languages:
        count = sum(1 for s in catalog.statements.values() if code_ in s.translations)
        items.append(inlines(
            bold(code_), f" — {language_name(code_)} / {language_name(code_, call.ui)} — ",
            call.ngettext("{count} statement", "{count} statements", count),
        ))
    return [Reply((
        para(_("Statements exist in these languages:")),
        ListBlock(tuple(items)),
        para(_("Set this chat's language with {example}.", example=call.cmd("language", "fr"))),
    ))]
