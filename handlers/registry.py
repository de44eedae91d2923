"""Commands declared with their arguments and help, in the style of maubot's commands."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from bot.protocol import Reply
from handlers.context import Call

Handler = Callable[[Call], Awaitable[list[Reply]]]


def N_(message: str) -> str:
    """Mark a message for translation without translating it yet (gettext convention)."""
    return message


@dataclass(frozen=True)
class Command:
    name: str
    usage: str
    summary: str  # English msgid, translated when help is shown
    run: Handler
    organiser_only: bool = False
    aliases: tuple[str, ...] = ()


COMMANDS: dict[str, Command] = {}
_LOOKUP: dict[str, Command] = {}


def command(
    name: str, usage: str, summary: str, *, organiser_only: bool = False,
    aliases: tuple[str, ...] = (),
) -> Callable[[Handler], Handler]:
    def register(run: Handler) -> Handler:
        spec = Command(name, usage, summary, run, organiser_only, aliases)
        COMMANDS[name] = spec
        for key in (name, *aliases):
            _LOOKUP[key] = spec
        return run

    return register


def find_command(name: str) -> Command | None:
    return _LOOKUP.get(name.casefold())
