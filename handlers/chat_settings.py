"""/language, /subscribe and /unsubscribe: settings stored per chat."""

from __future__ import annotations

from bot.document import para
from bot.languages import language_name, resolve_language
from bot.protocol import Reply
from handlers.arguments import ArgumentError, language_list, parse_target
from handlers.context import Call
from handlers.registry import N_, command


def _named(code_: str, ui: str) -> str:
    return f"{language_name(code_, ui)} ({code_})"


@command("language", "LANG", N_("set this chat's language"), aliases=("lang",))
async def language_command(call: Call) -> list[Reply]:
    _ = call._
    try:
        target = parse_target(call, allow_statement=False)
    except ArgumentError as error:
        return [error.reply]
    if target.language is None:
        current = call.chat.language if call.chat and call.chat.language else None
        text = (_("This chat's language is {language}.", language=_named(current, call.ui))
                if current else _("This chat has no language set yet."))
        return [Reply((para(text), para(
            _("Change it with {command}.", command=call.cmd("language", "LANG")), " ",
            _("Languages: {languages}.",
              languages=language_list(call, call.ctx.offered_languages)))))]
    if target.language not in call.ctx.offered_languages:
        return [Reply((
            para(_("There is nothing in {language} yet.",
                   language=_named(target.language, call.ui))),
            para(_("Languages: {languages}.",
                   languages=language_list(call, call.ctx.offered_languages))),
        ))]
    chat = call.request.chat
    await call.ctx.storage.set_chat_language(chat.platform, chat.id, chat.kind, target.language)
    ui = call.ctx.translator.ui_language(target.language, call.ui)
    _ = call.ctx.translator(ui)
    return [Reply((para(_("This chat's language is now {language}.",
                          language=_named(target.language, ui))),))]


async def _refuse_unless_manager(call: Call) -> Reply | None:
    if await call.request.can_manage_chat():
        return None
    return Reply((para(call._("Sorry, only this chat's administrators can change its "
                              "subscription.")),))


@command("subscribe", "[LANG]", N_("receive organisers' calls in this chat"))
async def subscribe_command(call: Call) -> list[Reply]:
    _ = call._
    try:
        target = parse_target(call, allow_statement=False)
    except ArgumentError as error:
        return [error.reply]
    refusal = await _refuse_unless_manager(call)
    if refusal:
        return [refusal]
    offered = call.ctx.offered_languages
    resolution = resolve_language(target.language, call.chat.language if call.chat else None,
                                  call.request.language_hint, call.ctx.config.language, offered)
    if resolution.code not in offered:
        return [Reply((
            para(_("There is nothing in {language} yet.",
                   language=_named(resolution.code, call.ui))),
            para(_("Languages: {languages}.", languages=language_list(call, offered))),
        ))]
    chat = call.request.chat
    await call.ctx.storage.subscribe(chat.platform, chat.id, chat.kind, resolution.code,
                                     by=call.request.sender)
    return [Reply((
        para(_("Subscribed: this chat will receive organisers' calls in {language}.",
               language=_named(resolution.code, call.ui))),
        para(_("Send {command} to unsubscribe.", command=call.cmd("unsubscribe"))),
    ))]


@command("unsubscribe", "", N_("stop receiving calls in this chat"))
async def unsubscribe_command(call: Call) -> list[Reply]:
    _ = call._
    refusal = await _refuse_unless_manager(call)
    if refusal:
        return [refusal]
    chat = call.request.chat
    if await call.ctx.storage.unsubscribe(chat.platform, chat.id):
        return [Reply((para(_("Unsubscribed: this chat will no longer receive calls.")),))]
    return [Reply((para(_("This chat was not subscribed.")),
                   para(_("Send {command} to subscribe.", command=call.cmd("subscribe")))))]
