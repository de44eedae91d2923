"""Turn a Request into a command call, and every failure into a helpful reply."""

from __future__ import annotations

import logging
import re

from bot.document import para
from bot.languages import normalise_language
from bot.protocol import Reply, Request
from handlers import broadcast, chat_settings, info, statements  # noqa: F401  (registers)
from handlers.context import Call, Context
from handlers.permissions import is_organiser
from handlers.registry import find_command

log = logging.getLogger(__name__)

MAX_COMMAND_CHARS = 10_000
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f\ufffe\uffff]")
_COMMAND = re.compile(r"(\S*)\s*(.*)\Z", re.S)


def clean_text(text: str) -> str:
    """Drop control characters (binary input) but keep newlines and tabs."""
    return _CONTROL.sub("", text).strip()


def parse_command(text: str, prefix: str) -> tuple[str, str] | None:
    """(name, rest) when `text` starts with the prefix, else None."""
    if not text.startswith(prefix):
        return None
    match = _COMMAND.match(text[len(prefix):])
    assert match is not None  # the pattern matches any string
    return match.group(1).casefold(), match.group(2)


async def handle_request(ctx: Context, request: Request) -> list[Reply]:
    """Answer one message. Never raises: errors become a reply and a log entry."""
    chat = await ctx.storage.get_chat(request.chat.platform, request.chat.id)
    hint = normalise_language(request.language_hint) if request.language_hint else None
    ui = ctx.translator.ui_language(chat.language if chat else None, hint, ctx.config.language)
    _ = ctx.translator(ui)
    private = request.chat.kind == "private"
    text = clean_text(request.text)
    if len(text) > MAX_COMMAND_CHARS:
        return [Reply((para(_("That message is too long for a command ({length} characters; "
                              "at most {limit}).", length=len(text), limit=MAX_COMMAND_CHARS)),))]
    parsed = parse_command(text, ctx.command_prefix)
    if parsed is None or not parsed[0]:
        if not private:
            return []
        return [Reply((para(_("Commands start with {prefix}. Send {help} to see them.",
                              prefix=ctx.command_prefix, help=f"{ctx.command_prefix}help")),))]
    name, rest = parsed
    spec = find_command(name)
    if spec is None:
        if not private:
            return []
        return [Reply((para(_("Unknown command {command}. Send {help} to see the commands.",
                              command=f"{ctx.command_prefix}{name[:64]}",
                              help=f"{ctx.command_prefix}help")),))]
    call = Call(ctx, request, spec.name, rest.split(), rest, chat, ui, _)
    if spec.organiser_only and not await is_organiser(ctx, request):
        return [Reply((para(_("Sorry, only organisers can use {command}.",
                              command=call.cmd(spec.name))),))]
    try:
        return await spec.run(call)
    except Exception:
        log.exception("command %s failed in %s chat", spec.name, request.chat.platform)
        return [Reply((para(_("Sorry, something went wrong while handling {command}. "
                              "It has been logged; please try again later.",
                              command=call.cmd(spec.name))),))]
