"""Reading `[ID] [LANG]` arguments, with replies that say what was not understood."""

from __future__ import annotations

from dataclasses import dataclass

from bot.catalog import Statement
from bot.document import para
from bot.languages import language_name, normalise_language
from bot.protocol import Reply
from handlers.context import Call


@dataclass
class Target:
    statement: Statement | None = None
    language: str | None = None


class ArgumentError(Exception):
    """Carries the reply explaining the bad argument."""

    def __init__(self, reply: Reply) -> None:
        super().__init__("bad argument")
        self.reply = reply


def language_list(call: Call, codes: list[str]) -> str:
    """`de (Deutsch), en (English)`: codes with their names in the UI language."""
    return ", ".join(f"{c} ({language_name(c, call.ui)})" for c in codes)


def parse_target(call: Call, allow_statement: bool = True) -> Target:
    """Classify each argument as a statement or a language; raise naming the first bad one."""
    _ = call._
    catalog = call.ctx.catalog
    target = Target()
    if len(call.args) > (2 if allow_statement else 1):
        raise ArgumentError(Reply((para(_("Too many arguments. Usage: {usage}",
                                          usage=call.usage())),)))
    for token in call.args:
        statement = catalog.find(token) if allow_statement else None
        if statement is not None and target.statement is None:
            target.statement = statement
            continue
        language = normalise_language(token, call.ctx.offered_languages)
        if language is not None and target.language is None:
            target.language = language
            continue
        raise ArgumentError(unknown_argument(call, token, allow_statement))
    return target


def unknown_argument(call: Call, token: str, allow_statement: bool) -> Reply:
    _ = call._
    shown = token[:40]
    blocks = [para(_("I don't know the language “{token}”.", token=shown)
                   if not allow_statement else
                   _("“{token}” is neither a statement nor a language I know.", token=shown))]
    blocks.append(para(_("Languages: {languages}.",
                         languages=language_list(call, call.ctx.catalog.languages))))
    if allow_statement:
        ids = ", ".join(s.id for s in call.ctx.catalog.newest_first())
        blocks.append(para(_("Statements: {ids}.", ids=ids)))
    return Reply(tuple(blocks))
