"""What a handler can reach: config, catalog, storage and UI translations."""

from __future__ import annotations

from dataclasses import dataclass

from bot.catalog import Catalog
from bot.config import Config
from bot.i18n import UI_LANGUAGES, Translate, Translator
from bot.outbox import Outbox
from bot.protocol import Request
from bot.storage import ChatRow, Storage


@dataclass
class Context:
    config: Config
    catalog: Catalog
    storage: Storage
    translator: Translator
    outbox: Outbox
    command_prefix: str = "/"

    @property
    def offered_languages(self) -> list[str]:
        """Languages a person can choose: those with statements or a translated UI."""
        return sorted({*self.catalog.languages, *UI_LANGUAGES})


@dataclass
class Call:
    """One command being handled: the request, its arguments and the chat's settings."""

    ctx: Context
    request: Request
    name: str
    args: list[str]
    rest: str  # the text after the command name, newlines kept (broadcast texts need them)
    chat: ChatRow | None
    ui: str
    _: Translate

    def ngettext(self, singular: str, plural: str, count: int, **values: object) -> str:
        """A message with plural forms, counted in the UI language."""
        return self.ctx.translator.plural(self.ui, singular, plural, count, **values)

    @property
    def prefix(self) -> str:
        return self.ctx.command_prefix

    def usage(self) -> str:
        """How this command is typed, from its declaration in the registry."""
        from handlers.registry import COMMANDS

        spec = COMMANDS[self.name]
        return self.cmd(spec.name, spec.usage) if spec.usage else self.cmd(spec.name)

    def cmd(self, name: str, *args: str) -> str:
        """A command as the person would type it on this platform."""
        return " ".join([f"{self.prefix}{name}", *args])
