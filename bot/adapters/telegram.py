"""Telegram adapter on python-telegram-bot: updates in, neutral requests, HTML replies out.

Private chats, groups (`/statement@bot fr`), channels (posts by the channel's admins),
inline mode and deep links. Replies go through the shared flood control; blocked chats
and migrated groups are followed in storage.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import math
import random
import re
import time
from collections import Counter
from collections.abc import Awaitable
from typing import Any
from urllib.parse import urlsplit

from telegram import (
    BotCommand,
    Chat,
    ChatMember,
    ChatMemberAdministrator,
    InlineKeyboardButton,
    InlineKeyboardMarkup,
    InlineQueryResultArticle,
    InputTextMessageContent,
    LinkPreviewOptions,
    Message,
    MessageEntity,
    ReplyParameters,
    Update,
)
from telegram.constants import ParseMode
from telegram.error import BadRequest, ChatMigrated, Forbidden, NetworkError, TelegramError
from telegram.ext import (
    Application,
    ApplicationBuilder,
    BaseUpdateProcessor,
    CallbackQueryHandler,
    ChatMemberHandler,
    CommandHandler,
    ContextTypes,
    InlineQueryHandler,
    MessageHandler,
    filters,
)

from bot.app import App
from bot.document import Block, Document, link, para
from bot.flood import FloodControl, Priority
from bot.i18n import UI_LANGUAGES, Translate
from bot.languages import normalise_language
from bot.protocol import Action, ChatKind, ChatRef, Outcome, Reply, Request
from bot.render import telegram as render
from bot.render.split import shorten_to_fit
from handlers import handle_request
from handlers.inline import Offer, inline_offers
from handlers.registry import COMMANDS

from .telegram_limiter import TelegramRateLimiter, telegram_flood_control

log = logging.getLogger(__name__)

PLATFORM = "telegram"
ADMIN_CACHE_SECONDS = 60.0
ADMIN_CACHE_SIZE = 10_000
SEND_ATTEMPTS = 5
MAX_CONCURRENT_UPDATES = 256
# HTTP connections to the Bot API: enough for the configured rate at a quarter-second
# round trip, at least 8. PTB's default pool of 256 lets one burst of commands open a
# hundred, and httpcore's bookkeeping, quadratic in the number of connections, then
# becomes the slowest part of answering. Waiting for a free connection is queueing, not
# a failure, hence the long pool timeout.
MIN_CONNECTIONS = 8
ROUND_TRIP_BUDGET = 0.25
POOL_TIMEOUT = 30.0
_ADMIN_STATUSES = {ChatMember.OWNER, ChatMember.ADMINISTRATOR}


def chat_kind(chat: Chat) -> ChatKind:
    if chat.type == Chat.PRIVATE:
        return "private"
    return "channel" if chat.type == Chat.CHANNEL else "group"


_MARKDOWN = {"bold": "**", "italic": "_", "strikethrough": "~~", "code": "`"}
_MARKDOWN_SPECIAL = re.compile(r"([\\`*_~])")


def entities_as_markdown(text: str, entities: tuple[MessageEntity, ...]) -> str:
    """The organiser's formatting (bold, italic, strike, code, links) as Markdown, the
    format broadcasts are stored in; other text is escaped so it stays literal."""
    if not any(e.type in _MARKDOWN or e.type == "text_link" for e in entities):
        return text
    units = text.encode("utf-16-le")

    def piece(start: int, end: int) -> str:  # Telegram offsets count UTF-16 code units
        return units[2 * start: 2 * end].decode("utf-16-le", errors="replace")

    def escape(plain: str) -> str:
        return _MARKDOWN_SPECIAL.sub(r"\\\1", plain)

    out, position = [], 0
    for entity in sorted(entities, key=lambda e: e.offset):
        if entity.offset < position:
            continue  # nested formatting: the outer entity wins
        out.append(escape(piece(position, entity.offset)))
        inner = piece(entity.offset, entity.offset + entity.length)
        if entity.type in _MARKDOWN:
            mark = _MARKDOWN[entity.type]
            out.append(f"{mark}{inner if entity.type == 'code' else escape(inner)}{mark}")
        elif entity.type == "text_link" and entity.url:
            out.append(f"[{escape(inner)}](<{entity.url}>)")  # <>: the URL may have ")"
        else:
            out.append(inner if entity.type == "bot_command" else escape(inner))
        position = entity.offset + entity.length
    out.append(escape(piece(position, len(units) // 2)))
    return "".join(out)


def command_text(message: Message) -> str:
    """The text as the handlers expect it: `@botname` removed from the command, and the
    sender's formatting kept as Markdown."""
    text = entities_as_markdown(message.text or "", tuple(message.entities))
    command = next((e for e in message.entities if e.type == "bot_command" and e.offset == 0),
                   None)
    if command is None:
        return text
    name = text[: command.length]
    return name.split("@", 1)[0] + text[command.length:]


def result_id(offer_id: str) -> str:
    """An inline result id: Telegram allows 64 bytes, and ids must differ, so a longer one
    (a long statement id) is replaced by its hash rather than cut."""
    data = offer_id.encode()
    return offer_id if len(data) <= 64 else hashlib.sha256(data).hexdigest()


class ChatOrderedUpdates(BaseUpdateProcessor):
    """Updates from different chats are handled concurrently, one chat's in the order they
    came, so a person who sends two commands gets the answers in that order."""

    def __init__(self, max_concurrent_updates: int = MAX_CONCURRENT_UPDATES) -> None:
        super().__init__(max_concurrent_updates)
        self._locks: dict[int, asyncio.Lock] = {}
        self._queued: Counter[int] = Counter()

    async def do_process_update(self, update: object, coroutine: Awaitable[Any]) -> None:
        chat = update.effective_chat if isinstance(update, Update) else None
        if chat is None:  # inline queries belong to no chat
            await coroutine
            return
        lock = self._locks.setdefault(chat.id, asyncio.Lock())
        self._queued[chat.id] += 1
        try:
            async with lock:
                await coroutine
        finally:
            self._queued[chat.id] -= 1
            if not self._queued[chat.id]:
                del self._queued[chat.id], self._locks[chat.id]

    async def initialize(self) -> None:
        """Nothing to set up."""

    async def shutdown(self) -> None:
        """Nothing to release."""


class TelegramAdapter:
    platform = PLATFORM

    def __init__(self, app: App, flood: FloodControl | None = None,
                 poll_timeout: float = 30.0) -> None:
        config = app.config.telegram
        if config.token is None:
            raise ValueError("telegram.token is not set")
        self.app = app
        self.config = config
        self.ctx = app.context("/")
        paid_rate = config.paid_rate if config.allow_paid_broadcast else None
        self.flood = flood or telegram_flood_control(config.rate, paid_rate=paid_rate)
        rate = max(config.rate, paid_rate or 0.0)  # the busiest pace the pool must carry
        self.poll_timeout = poll_timeout
        self._admins: dict[tuple[int, int], tuple[float, bool]] = {}
        # Both service messages of a migration (and a send meeting ChatMigrated) may move
        # the chat at once; storage.move_chat is one transaction, so one at a time.
        self._migrating = asyncio.Lock()
        self.application: Application[Any, Any, Any, Any, Any, Any] = (
            ApplicationBuilder()
            .token(config.token.get_secret_value())
            .base_url(config.base_url)
            .rate_limiter(TelegramRateLimiter(self.flood))
            .concurrent_updates(ChatOrderedUpdates())
            .connection_pool_size(max(MIN_CONNECTIONS, math.ceil(rate * ROUND_TRIP_BUDGET)))
            .pool_timeout(POOL_TIMEOUT)
            .build()
        )
        self._register()

    # set-up ----------------------------------------------------------------

    def _register(self) -> None:
        names = sorted({n for spec in COMMANDS.values() for n in (spec.name, *spec.aliases)})
        messages = filters.UpdateType.MESSAGE | filters.UpdateType.CHANNEL_POST
        add = self.application.add_handler
        add(CommandHandler(names, self._on_command, filters=messages))
        add(MessageHandler(filters.StatusUpdate.MIGRATE, self._on_migration))
        add(MessageHandler(filters.ChatType.PRIVATE & filters.UpdateType.MESSAGE & filters.TEXT,
                           self._on_command))
        add(InlineQueryHandler(self._on_inline_query))
        add(CallbackQueryHandler(self._on_button))
        add(ChatMemberHandler(self._on_my_chat_member, ChatMemberHandler.MY_CHAT_MEMBER))
        self.application.add_error_handler(self._on_error)

    async def start(self) -> None:
        """Connect (retrying while Telegram is unreachable), set the menus, start updates."""
        delay = 1.0
        while True:
            try:
                await self.application.initialize()
                break
            except (NetworkError, TimeoutError) as error:
                if isinstance(error, BadRequest):
                    raise
                log.warning("Telegram unreachable (%s); retrying in %.0fs", error, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 60.0)
        await self.set_command_menus()
        await self.application.start()
        updater = self.application.updater
        assert updater is not None
        webhook = self.config.webhook
        if webhook is None:
            await updater.start_polling(timeout=int(self.poll_timeout),
                                        allowed_updates=Update.ALL_TYPES)
        else:
            await updater.start_webhook(
                listen=webhook.listen, port=webhook.port, webhook_url=webhook.url,
                url_path=urlsplit(webhook.url).path.strip("/"),
                secret_token=(webhook.secret_token.get_secret_value()
                              if webhook.secret_token else None),
                allowed_updates=Update.ALL_TYPES,
            )
        log.info("Telegram: serving as @%s", self.application.bot.username)

    async def stop(self) -> None:
        updater = self.application.updater
        if updater is not None and updater.running:
            await updater.stop()
        if self.application.running:
            await self.application.stop()
        await self.application.shutdown()

    async def set_command_menus(self) -> None:
        """The command menu, in the default language and in each UI language."""
        bot = self.application.bot
        for language in (None, *UI_LANGUAGES):
            _ = self.app.translator(language or self.app.config.language)
            commands = [BotCommand(spec.name, _(spec.summary)[:256])
                        for spec in COMMANDS.values() if not spec.organiser_only]
            await bot.set_my_commands(commands, language_code=language)

    # incoming ----------------------------------------------------------------

    def _request(self, update: Update, text: str) -> Request | None:
        message, chat, user = update.effective_message, update.effective_chat, update.effective_user
        if chat is None:
            return None
        kind = chat_kind(chat)
        sender = str(user.id) if user else str(message.sender_chat.id) if (
            message and message.sender_chat) else ""

        async def can_manage() -> bool:
            return await self._can_manage(chat, kind, user.id if user else None, message)

        return Request(ChatRef(PLATFORM, str(chat.id), kind), sender, text,
                       user.language_code if user else None, can_manage)

    async def _on_command(self, update: Update, _context: ContextTypes.DEFAULT_TYPE) -> None:
        message = update.effective_message
        if message is None or message.text is None:
            return
        request = self._request(update, command_text(message))
        if request is None:
            return
        replies = await handle_request(self.ctx, request)
        reply_to = message.message_id if request.chat.kind == "group" else None
        await self.send_replies(request.chat.id, replies, reply_to=reply_to)

    async def _on_button(self, update: Update, _context: ContextTypes.DEFAULT_TYPE) -> None:
        """A button carries a command; pressing it is sending that command."""
        query = update.callback_query
        if query is None:
            return
        await query.answer()
        if not isinstance(query.data, str) or query.message is None:
            return
        request = self._request(update, query.data)
        if request is None:
            return
        await self.send_replies(request.chat.id, await handle_request(self.ctx, request))

    async def _on_inline_query(self, update: Update, _context: ContextTypes.DEFAULT_TYPE) -> None:
        query = update.inline_query
        if query is None:
            return
        request = Request(ChatRef(PLATFORM, str(query.from_user.id), "private"),
                          str(query.from_user.id), query.query, query.from_user.language_code)
        offers = inline_offers(self.ctx, request)
        results = [
            InlineQueryResultArticle(
                id=result_id(offer.id), title=offer.title, description=offer.description,
                input_message_content=InputTextMessageContent(
                    self._fit(offer, request.language_hint), parse_mode=ParseMode.HTML,
                    link_preview_options=LinkPreviewOptions(is_disabled=True)),
            )
            for offer in offers
        ]
        # Personal: titles and the default language follow the user's language_code.
        await query.answer(results, cache_time=300, is_personal=True)

    def _fit(self, offer: Offer, language: str | None) -> str:
        """One message: the whole text if it fits, else its start and a link to the rest."""
        _ = self._translate(language)
        tail: list[Block] = [para("… ", link(offer.source, _("Read the full text")))]
        blocks = shorten_to_fit(offer.blocks, tail,
                                lambda p: render.utf16_len(render.visible_text(p)),
                                render.MESSAGE_LIMIT)
        return render.render_html(blocks)

    def _translate(self, language_code: str | None) -> Translate:
        """UI messages in a Telegram user's language (`pt-br`, `nb`), else the default."""
        hint = normalise_language(language_code) if language_code else None
        translator = self.app.translator
        return translator(translator.ui_language(hint, self.app.config.language))

    async def _on_migration(self, update: Update, _context: ContextTypes.DEFAULT_TYPE) -> None:
        message = update.effective_message
        if message is None:
            return
        if message.migrate_to_chat_id:
            await self.follow_migration(message.chat.id, message.migrate_to_chat_id)
        elif message.migrate_from_chat_id:
            await self.follow_migration(message.migrate_from_chat_id, message.chat.id)

    async def follow_migration(self, old_id: int | str, new_id: int | str) -> None:
        async with self._migrating:
            moved = await self.app.storage.move_chat(PLATFORM, str(old_id), str(new_id))
        if moved:
            log.info("Telegram: group migrated to a supergroup; settings moved")

    async def _on_my_chat_member(self, update: Update,
                                 _context: ContextTypes.DEFAULT_TYPE) -> None:
        change = update.my_chat_member
        if change is None:
            return
        chat, member = change.chat, change.new_chat_member
        if member.status in (ChatMember.LEFT, ChatMember.BANNED):
            reason = "blocked" if chat.type == Chat.PRIVATE else "removed from chat"
            if await self.app.storage.deactivate_subscription(PLATFORM, str(chat.id), reason):
                log.info("Telegram: subscription deactivated (%s)", reason)
            return
        if chat.type == Chat.CHANNEL and not (
            isinstance(member, ChatMemberAdministrator) and member.can_post_messages
        ):
            await self._explain_missing_post_right(change.from_user.id,
                                                   change.from_user.language_code, chat)

    async def _explain_missing_post_right(self, user_id: int, language: str | None,
                                          chat: Chat) -> None:
        """Tell whoever added the bot to a channel which right it lacks to answer there."""
        _ = self._translate(language)
        text = _("I was added to the channel “{title}” but cannot post there. Please make me an "
                 "administrator with the right “Post messages”.", title=chat.title or "")
        outcome = await self.deliver(str(user_id), render.render_html((para(text),)))
        if not outcome.ok:
            log.warning("Telegram: bot lacks the 'Post messages' right in a channel and could "
                        "not tell the admin who added it (%s)", outcome.reason)

    async def _can_manage(self, chat: Chat, kind: ChatKind, user_id: int | None,
                          message: Message | None) -> bool:
        """Private chats manage themselves; channel posts come from admins; groups ask."""
        if kind != "group":
            return True
        if message is not None and message.sender_chat is not None:
            return message.sender_chat.id == chat.id  # anonymous admin posting as the group
        if user_id is None:
            return False
        key = (chat.id, user_id)
        cached = self._admins.get(key)
        if cached and time.monotonic() - cached[0] < ADMIN_CACHE_SECONDS:
            return cached[1]
        try:
            member = await self.application.bot.get_chat_member(chat.id, user_id)
        except TelegramError as error:
            log.warning("Telegram: could not check admin rights: %s", error)
            return False
        allowed = member.status in _ADMIN_STATUSES
        now = time.monotonic()
        if len(self._admins) >= ADMIN_CACHE_SIZE:
            self._admins = {k: v for k, v in self._admins.items()
                            if now - v[0] < ADMIN_CACHE_SECONDS}
        self._admins[key] = (now, allowed)
        return allowed

    async def _on_error(self, update: object, context: ContextTypes.DEFAULT_TYPE) -> None:
        log.error("Telegram: error while handling an update: %s", context.error,
                  exc_info=context.error)

    # outgoing ----------------------------------------------------------------

    async def send_replies(self, chat_id: str, replies: list[Reply],
                           reply_to: int | None = None) -> None:
        """Send each reply as one or more parts, in order; stop if the chat is gone."""
        for reply in replies:
            parts = render.render_parts(reply.blocks)
            for index, part in enumerate(parts):
                last = index == len(parts) - 1
                outcome = await self.deliver(
                    chat_id, part, preview=reply.link_preview,
                    buttons=reply.actions if last else (),
                    reply_to=reply_to if index == 0 else None,
                )
                if not outcome.ok:
                    log.log(logging.INFO if outcome.chat_gone else logging.WARNING,
                            "Telegram: a reply could not be sent (%s)", outcome.reason)
                    return
                chat_id = outcome.chat_id or chat_id

    async def send_part(self, chat_id: str, content: str, delivery_id: int) -> Outcome:
        """A broadcast part: lower priority than replies; the outbox schedules retries."""
        return await self.deliver(chat_id, content, priority=Priority.BULK, attempts=1,
                                  paid=self.config.allow_paid_broadcast)

    async def show_status(self, chat_id: str, message_id: str | None,
                          blocks: Document) -> str | None:
        """Send the broadcast's status message once, then edit it in place."""
        html = render.render_parts(blocks)[0]
        if message_id is not None:
            try:
                await self.application.bot.edit_message_text(
                    html, chat_id=int(chat_id), message_id=int(message_id),
                    parse_mode=ParseMode.HTML)
                return message_id
            except BadRequest as error:
                if "not modified" in error.message.lower():
                    return message_id
                if "not found" not in error.message.lower():
                    log.warning("Telegram: could not edit the status message: %s",
                                error.message)
                    return message_id
                # the organiser deleted it: post a new one below
            except TelegramError as error:
                log.warning("Telegram: could not edit the status message: %s", error)
                return message_id
        outcome = await self.deliver(chat_id, html)
        return outcome.message_id

    async def deliver(
        self, chat_id: str, html: str, *, priority: Priority = Priority.REPLY,
        preview: bool = False, buttons: tuple[Action, ...] = (), reply_to: int | None = None,
        attempts: int = SEND_ATTEMPTS, paid: bool = False,
    ) -> Outcome:
        """Send one message; follow a migration, record blocks, retry network errors.

        Following a migration uses none of the `attempts`, which are for network errors
        (a broadcast makes one, the outbox retries later)."""
        markup = InlineKeyboardMarkup(
            [[InlineKeyboardButton(a.label, callback_data=a.command[:64]) for a in buttons]]
        ) if buttons else None
        target, failures = chat_id, 0
        while True:
            try:
                message = await self.application.bot.send_message(
                    int(target), html, parse_mode=ParseMode.HTML,
                    link_preview_options=LinkPreviewOptions(is_disabled=not preview),
                    reply_markup=markup, rate_limit_args=priority,
                    allow_paid_broadcast=paid or None,
                    reply_parameters=ReplyParameters(reply_to, allow_sending_without_reply=True)
                    if reply_to else None,
                )
                return Outcome(True, chat_id=target, message_id=str(message.message_id))
            except ChatMigrated as error:
                if target != chat_id:  # a supergroup does not migrate again
                    return Outcome(False, "migrated twice", target)
                await self.follow_migration(target, error.new_chat_id)
                target = str(error.new_chat_id)
            except Forbidden as error:
                await self.app.storage.deactivate_subscription(PLATFORM, target, "blocked")
                return Outcome(False, f"blocked: {error.message}", target, chat_gone=True)
            except BadRequest as error:
                gone = "chat not found" in error.message.lower()
                if gone:
                    await self.app.storage.deactivate_subscription(PLATFORM, target,
                                                                   "chat not found")
                if "rights" in error.message.lower():
                    log.warning("Telegram: cannot post in a chat: %s (the bot needs the "
                                "'Post messages' administrator right)", error.message)
                return Outcome(False, f"rejected: {error.message}", target, chat_gone=gone)
            except NetworkError as error:  # includes TimedOut and 5xx answers
                failures += 1
                if failures == attempts:
                    return Outcome(False, f"network: {error.message}", target, permanent=False)
                await asyncio.sleep(min(30.0, 0.5 * 2 ** failures) * random.uniform(0.5, 1.0))
            except TelegramError as error:  # RetryAfter past the limiter's retries, and others
                return Outcome(False, f"error: {error.message}", target, permanent=False)
