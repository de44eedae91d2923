"""Contract of the fake Telegram server against the real python-telegram-bot stack.

Every success answer must parse with PTB's de_json into the right class without leftover
fields (nothing in api_kwargs), and every error must raise the PTB exception a real
Telegram answer raises. The HTML parser is checked against cases from TDLib's own tests.
"""

from __future__ import annotations

import asyncio
import datetime as dtm
import html
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from hypothesis import given, settings
from hypothesis import strategies as st
from telegram import (
    Bot,
    BotCommand,
    BotCommandScopeChat,
    ChatFullInfo,
    ChatMemberAdministrator,
    ChatMemberBanned,
    ChatMemberLeft,
    ChatMemberMember,
    ChatMemberOwner,
    InlineKeyboardButton,
    InlineKeyboardMarkup,
    InlineQueryResultArticle,
    InputTextMessageContent,
    Message,
    MessageEntity,
    TelegramObject,
    Update,
    User,
)
from telegram.constants import ParseMode
from telegram.error import (
    BadRequest,
    ChatMigrated,
    Conflict,
    EndPointNotFound,
    Forbidden,
    InvalidToken,
    NetworkError,
    RetryAfter,
    TimedOut,
)
from telegram.ext import ApplicationBuilder, CommandHandler, ContextTypes

from tests.fakes.telegram_api import DEFAULT_TOKEN, FakeTelegram
from tests.fakes.telegram_html import EntityParseError, parse_html, utf16_len

TOKEN = DEFAULT_TOKEN
USER = 1001
CREATOR, ADMIN, MEMBER, STRANGER = 2002, 2003, 2004, 2005
GROUP, SUPERGROUP, CHANNEL = -2001, -1002003, -1003004


@asynccontextmanager
async def connected(fake: FakeTelegram, token: str = TOKEN) -> AsyncIterator[Bot]:
    async with Bot(token, base_url=fake.api_url, base_file_url=fake.file_url) as bot:
        yield bot


@pytest.fixture
async def fake() -> AsyncIterator[FakeTelegram]:
    async with FakeTelegram(token=TOKEN) as fake:
        fake.add_private_chat(USER, "Ada", username="ada", language_code="fr")
        fake.add_group(GROUP, "Group", admins={CREATOR: "creator", ADMIN: "administrator"},
                       members=[MEMBER])
        fake.add_group(SUPERGROUP, "Super", kind="supergroup", admins={CREATOR: "creator"},
                       username="super_group", bot_status="administrator")
        fake.add_channel(CHANNEL, "News", username="news_channel")
        fake.add_user(STRANGER, "Stranger")
        yield fake


@pytest.fixture
async def bot(fake: FakeTelegram) -> AsyncIterator[Bot]:
    async with connected(fake) as bot:
        yield bot


@pytest.fixture
def timedelta_periods(monkeypatch: pytest.MonkeyPatch) -> None:
    """PTB's own opt-in: RetryAfter.retry_after as a timedelta, without deprecation noise."""
    monkeypatch.setenv("PTB_TIMEDELTA", "true")


def assert_understood(obj: object, path: str = "result") -> None:
    """Every field the fake sent is one PTB models (none ended up in api_kwargs)."""
    if isinstance(obj, tuple | list):
        for index, item in enumerate(obj):
            assert_understood(item, f"{path}[{index}]")
        return
    if not isinstance(obj, TelegramObject):
        return
    assert not obj.api_kwargs, f"{path}: fields unknown to PTB: {dict(obj.api_kwargs)}"
    for cls in type(obj).__mro__:
        for name in getattr(cls, "__slots__", ()):
            if not name.startswith("_") and name != "api_kwargs":
                assert_understood(getattr(obj, name, None), f"{path}.{name}")


def entities_of(message: Message) -> list[tuple[Any, ...]]:
    return [(e.type, e.offset, e.length, e.url or e.language) for e in message.entities]


# -- success answers -------------------------------------------------------------------------


async def test_get_me_is_a_complete_user(bot: Bot) -> None:
    me = await bot.get_me()
    assert isinstance(me, User)
    assert (me.id, me.is_bot, me.username) == (123456789, True, "fake_bot")
    assert_understood(me)


async def test_html_message_has_telegrams_entities_in_utf16(bot: Bot, fake: FakeTelegram) -> None:
    markup = (
        '😀 <b>bold <i>both</i></b> <u>u</u> <s>s</s> <tg-spoiler>sp</tg-spoiler> <code>c</code>'
        '\n<pre><code class="language-python">x = 1</code></pre>\n'
        '<a href="Example.ORG/p?q=1">link</a> &lt;&amp;&gt; &#128512;'
        "<blockquote>q</blockquote><blockquote expandable>e</blockquote>  \n"
    )
    message = await bot.send_message(USER, markup, parse_mode=ParseMode.HTML)
    assert message.text == "😀 bold both u s sp c\nx = 1\nlink <&> 😀qe"
    assert entities_of(message) == [
        ("bold", 3, 5, None),  # split at the nested italic, as TDLib does
        ("bold", 8, 4, None),
        ("italic", 8, 4, None),
        ("underline", 13, 1, None),
        ("strikethrough", 15, 1, None),
        ("spoiler", 17, 2, None),
        ("code", 20, 1, None),
        ("pre", 22, 5, "python"),
        ("text_link", 28, 4, "http://example.org/p?q=1"),
        ("blockquote", 39, 1, None),
        ("expandable_blockquote", 40, 1, None),
    ]
    assert_understood(message)
    [sent] = fake.sent_messages(USER)
    # PTB reads back exactly what was sent (its to_dict adds four False service flags).
    assert {k: v for k, v in message.to_dict().items() if v is not False} == sent.message
    assert (sent.html, sent.parse_mode, sent.text) == (markup, "HTML", message.text)
    assert message.from_user.id == bot.id and message.chat.type == "private"


async def test_plain_text_is_taken_literally(bot: Bot) -> None:
    message = await bot.send_message(USER, "<b>not bold</b> &amp;")
    assert (message.text, message.entities) == ("<b>not bold</b> &amp;", ())


async def test_explicit_entities_are_kept(bot: Bot, fake: FakeTelegram) -> None:
    entity = MessageEntity(MessageEntity.BOLD, 0, 4)
    message = await bot.send_message(USER, "Bold text", entities=[entity])
    assert message.entities == (entity,)
    assert fake.sent_messages(USER)[0].entities == [{"type": "bold", "offset": 0, "length": 4}]


async def test_message_ids_and_senders_per_chat(bot: Bot) -> None:
    first = await bot.send_message(USER, "one")
    second = await bot.send_message(USER, "two")
    in_group = await bot.send_message(GROUP, "group")
    post = await bot.send_message("@news_channel", "post")
    assert (first.message_id, second.message_id, in_group.message_id) == (1, 2, 1)
    assert in_group.from_user.id == bot.id and in_group.chat.type == "group"
    assert post.from_user is None and post.sender_chat.id == CHANNEL
    assert_understood([first, in_group, post])


async def test_reply_and_inline_keyboard_are_echoed(bot: Bot, fake: FakeTelegram) -> None:
    incoming = fake.send_text(USER, "hello")
    keyboard = InlineKeyboardMarkup([[InlineKeyboardButton("Go", callback_data="go")]])
    message = await bot.send_message(USER, "answer", reply_markup=keyboard,
                                     reply_to_message_id=incoming["message_id"])
    assert message.reply_markup == keyboard
    assert message.reply_to_message.text == "hello"
    assert_understood(message)
    assert fake.sent_messages(USER)[0].reply_to_message_id == incoming["message_id"]
    with pytest.raises(BadRequest, match="Message to be replied not found"):
        await bot.send_message(USER, "x", reply_to_message_id=999)
    too_long = InlineKeyboardMarkup([[InlineKeyboardButton("Go", callback_data="x" * 65)]])
    with pytest.raises(BadRequest, match="Button_data_invalid"):
        await bot.send_message(USER, "x", reply_markup=too_long)


async def test_text_is_cleaned_and_trimmed_like_telegram(bot: Bot) -> None:
    message = await bot.send_message(USER, "\n  <b>hi</b>\tthere\r\n  \n", parse_mode="HTML")
    assert message.text == "hi there"
    assert entities_of(message) == [("bold", 0, 2, None)]


async def test_edit_and_delete(bot: Bot, fake: FakeTelegram) -> None:
    message = await bot.send_message(USER, "draft")
    edited = await bot.edit_message_text("<i>final</i>", USER, message.message_id,
                                         parse_mode="HTML")
    assert (edited.text, edited.edit_date is not None) == ("final", True)
    assert_understood(edited)
    [record] = fake.sent_messages(USER)
    assert (record.text, record.html, record.edit_count) == ("final", "<i>final</i>", 1)
    with pytest.raises(BadRequest, match="Message is not modified"):
        await bot.edit_message_text("<i>final</i>", USER, message.message_id, parse_mode="HTML")
    with pytest.raises(BadRequest, match="Message to edit not found"):
        await bot.edit_message_text("x", USER, 999)
    incoming = fake.send_text(USER, "mine")
    with pytest.raises(BadRequest, match="Message can't be edited"):
        await bot.edit_message_text("x", USER, incoming["message_id"])
    assert await bot.delete_message(USER, message.message_id) is True
    assert record.deleted
    with pytest.raises(BadRequest, match="Message to delete not found"):
        await bot.delete_message(USER, message.message_id)
    with pytest.raises(BadRequest, match="Message can't be deleted"):
        await bot.delete_message(GROUP, fake.send_text(GROUP, "hi")["message_id"])


async def test_chat_members_have_the_right_classes(bot: Bot, fake: FakeTelegram) -> None:
    fake.chats[GROUP].members[STRANGER] = "kicked"
    expected = {CREATOR: ChatMemberOwner, ADMIN: ChatMemberAdministrator,
                MEMBER: ChatMemberMember, STRANGER: ChatMemberBanned, USER: ChatMemberLeft}
    for user_id, cls in expected.items():
        member = await bot.get_chat_member(GROUP, user_id)
        assert type(member) is cls and member.user.id == user_id
        assert_understood(member)
    own = await bot.get_chat_member(CHANNEL, bot.id)
    assert isinstance(own, ChatMemberAdministrator) and own.can_post_messages
    admins = await bot.get_chat_administrators(SUPERGROUP)
    assert [type(a) for a in admins] == [ChatMemberOwner, ChatMemberAdministrator]
    assert admins[1].user.id == bot.id
    assert_understood(admins)
    with pytest.raises(BadRequest, match="User not found"):
        await bot.get_chat_member(GROUP, 999)
    with pytest.raises(BadRequest, match="There are no administrators in the private chat"):
        await bot.get_chat_administrators(USER)


async def test_get_chat_returns_full_info(bot: Bot) -> None:
    for ref, kind in ((USER, "private"), (GROUP, "group"), ("@super_group", "supergroup"),
                      (CHANNEL, "channel")):
        chat = await bot.get_chat(ref)
        assert isinstance(chat, ChatFullInfo) and chat.type == kind
        assert_understood(chat)
    assert (await bot.get_chat(USER)).first_name == "Ada"


async def test_chat_action(bot: Bot, fake: FakeTelegram) -> None:
    assert await bot.send_chat_action(USER, "typing") is True
    assert fake.chat_actions == [(USER, "typing")]
    with pytest.raises(BadRequest, match="Wrong parameter action in request"):
        await bot.send_chat_action(USER, "dancing")


async def test_commands_are_kept_per_scope_and_language(bot: Bot, fake: FakeTelegram) -> None:
    assert await bot.set_my_commands([BotCommand("start", "Start")]) is True
    chat_scope = BotCommandScopeChat(GROUP)
    await bot.set_my_commands([BotCommand("hilfe", "Hilfe")], scope=chat_scope,
                              language_code="de")
    assert await bot.get_my_commands() == (BotCommand("start", "Start"),)
    assert await bot.get_my_commands(scope=chat_scope) == ()
    german = await bot.get_my_commands(scope=chat_scope, language_code="de")
    assert german == (BotCommand("hilfe", "Hilfe"),)
    assert_understood(german)
    assert fake.commands({"type": "chat", "chat_id": GROUP}, "de") == [
        {"command": "hilfe", "description": "Hilfe"}
    ]
    assert await bot.delete_my_commands() is True
    assert await bot.get_my_commands() == ()
    with pytest.raises(BadRequest, match="Bot_command_invalid"):
        await bot.set_my_commands([BotCommand("Start", "Start")])


async def test_close_and_log_out(bot: Bot) -> None:
    assert await bot.close() is True
    assert await bot.log_out() is True


# -- updates ---------------------------------------------------------------------------------


async def test_updates_of_every_kind_parse(bot: Bot, fake: FakeTelegram) -> None:
    message = fake.send_text(USER, "/start@fake_bot hello")
    fake.send_text(GROUP, "/statement-fr de", from_user=MEMBER)
    fake.send_channel_post(CHANNEL, "news")
    fake.send_callback_query(USER, USER, message["message_id"], "press")
    fake.send_inline_query(USER, "query")
    fake.send_my_chat_member(USER, "kicked")
    fake.send_my_chat_member(CHANNEL, "administrator", from_user=CREATOR)
    fake.send_migration(GROUP, -1009990001)

    updates = await bot.get_updates(timeout=0)
    assert_understood(updates)
    assert [u.update_id for u in updates] == list(range(1, 10))
    command, group_message, post, callback, inline, blocked, promoted, moved, arrived = updates
    assert command.message.entities == (MessageEntity(MessageEntity.BOT_COMMAND, 0, 15),)
    assert command.message.from_user.language_code == "fr"
    assert group_message.message.entities == (MessageEntity(MessageEntity.BOT_COMMAND, 0, 10),)
    assert group_message.message.from_user.id == MEMBER
    assert post.channel_post.sender_chat.id == CHANNEL
    assert (callback.callback_query.data, callback.callback_query.message.text) == (
        "press", "/start@fake_bot hello")
    assert inline.inline_query.query == "query"
    assert blocked.my_chat_member.new_chat_member.status == "kicked"
    assert isinstance(promoted.my_chat_member.new_chat_member, ChatMemberAdministrator)
    assert moved.message.migrate_to_chat_id == -1009990001
    assert (arrived.message.chat.id, arrived.message.migrate_from_chat_id) == (-1009990001, GROUP)

    assert await bot.get_updates(offset=updates[-1].update_id + 1, timeout=0) == ()
    assert fake.pending_updates == []


async def test_push_update_takes_raw_dicts(bot: Bot, fake: FakeTelegram) -> None:
    raw = {"message": {"message_id": 77, "date": 1, "chat": {"id": USER, "type": "private"},
                       "text": "raw"}}
    assert fake.push_update(raw)["update_id"] == 1
    [update] = await bot.get_updates(timeout=0)
    assert update.message.text == "raw"


async def test_long_poll_waits_and_wakes(bot: Bot, fake: FakeTelegram) -> None:
    loop = asyncio.get_running_loop()
    poll = asyncio.create_task(bot.get_updates(timeout=5))
    await fake.wait_until(lambda: fake.stats.requests["getUpdates"] == 1, 2)
    started = loop.time()
    fake.send_text(USER, "wake up")
    [update] = await asyncio.wait_for(poll, 2)
    assert update.message.text == "wake up" and loop.time() - started < 1

    started = loop.time()
    assert await bot.get_updates(offset=update.update_id + 1, timeout=1) == ()
    assert loop.time() - started >= 0.9


async def test_second_poller_terminates_the_first(bot: Bot, fake: FakeTelegram) -> None:
    first = asyncio.create_task(bot.get_updates(timeout=5))
    await fake.wait_until(lambda: fake.stats.requests["getUpdates"] == 1, 2)
    async with connected(fake) as second_instance:  # PTB polls on one connection per Bot
        assert await second_instance.get_updates(timeout=0) == ()
    with pytest.raises(Conflict, match="terminated by other getUpdates request"):
        await asyncio.wait_for(first, 2)


async def test_allowed_updates_filter_new_updates(bot: Bot, fake: FakeTelegram) -> None:
    await bot.get_updates(timeout=0, allowed_updates=["message"])
    fake.send_inline_query(USER, "dropped")
    assert fake.pending_updates == []
    fake.send_text(USER, "kept")
    [update] = await bot.get_updates(timeout=0)
    assert update.message.text == "kept"


async def test_webhook_delivery(bot: Bot, fake: FakeTelegram) -> None:
    received: list[tuple[dict[str, Any], str | None]] = []
    status = 200

    async def endpoint(request: web.Request) -> web.Response:
        received.append((await request.json(),
                         request.headers.get("X-Telegram-Bot-Api-Secret-Token")))
        return web.Response(status=status)

    app = web.Application()
    app.router.add_post("/hook", endpoint)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        port = runner.addresses[0][1]
        url = f"http://127.0.0.1:{port}/hook"
        with pytest.raises(BadRequest, match="Bad webhook: an https url must be provided"):
            await bot.set_webhook("http://example.org/hook")
        assert await bot.set_webhook(url, secret_token="s3cret") is True
        info = await bot.get_webhook_info()
        assert (info.url, info.pending_update_count) == (url, 0)
        assert_understood(info)
        with pytest.raises(Conflict, match="webhook is active"):
            await bot.get_updates(timeout=0)

        fake.send_text(USER, "via webhook")
        assert await fake.deliver_webhook() == 1
        [(update, secret)] = received
        assert (update["message"]["text"], secret) == ("via webhook", "s3cret")

        status = 500
        fake.send_text(USER, "refused")
        assert await fake.deliver_webhook() == 0
        info = await bot.get_webhook_info()
        assert info.pending_update_count == 1
        assert info.last_error_message == (
            "Wrong response from the webhook: 500 Internal Server Error")

        assert await bot.delete_webhook(drop_pending_updates=True) is True
        assert await bot.get_updates(timeout=0) == ()
    finally:
        await runner.cleanup()


async def test_application_polls_and_replies(fake: FakeTelegram) -> None:
    """The real Application: polling, a CommandHandler, a reply, a clean shutdown."""

    async def start(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        language = update.effective_user.language_code
        await update.effective_chat.send_message(f"<b>Hi</b> ({language})", parse_mode="HTML")

    app = (ApplicationBuilder().token(TOKEN).base_url(fake.api_url)
           .base_file_url(fake.file_url).build())
    app.add_handler(CommandHandler("start", start))
    async with app:
        await app.start()
        await app.updater.start_polling(timeout=dtm.timedelta(seconds=1))
        fake.send_text(USER, "/start@fake_bot")
        [reply] = await fake.wait_for_messages(USER, 1)
        await app.updater.stop()
        await app.stop()
    assert (reply.text, reply.entities) == ("Hi (fr)", [{"type": "bold", "offset": 0, "length": 2}])
    assert fake.pending_updates == []
    assert fake.flood_violations() == []


async def test_wait_for_messages_is_bounded(fake: FakeTelegram) -> None:
    with pytest.raises(TimeoutError, match="1 message"):
        await fake.wait_for_messages(USER, 1, timeout=0.05)


# -- errors ----------------------------------------------------------------------------------


@pytest.mark.parametrize(("markup", "error"), [
    ("Hello, world<div>x</div>", 'unsupported start tag "div" at byte offset 12'),
    ("Grüße <b>x", 'can\'t find end tag corresponding to start tag "b"'),
    ("a < b", 'unsupported start tag "" at byte offset 2'),
    ("<b>x</i>", 'unmatched end tag at byte offset 4, expected "</b>", found "</i>"'),
    ("x</b>", "unexpected end tag at byte offset 1"),
    ("<b", "unclosed start tag at byte offset 0"),
    ("<span>x</span>", 'tag "span" must have class "tg-spoiler" at byte offset 0'),
])  # fmt: skip
async def test_bad_html_is_rejected(bot: Bot, markup: str, error: str) -> None:
    with pytest.raises(BadRequest) as caught:
        await bot.send_message(USER, markup, parse_mode="HTML")
    assert caught.value.message == f"Can't parse entities: {error}"


async def test_unknown_named_entities_stay_literal_unless_strict(bot: Bot) -> None:
    message = await bot.send_message(USER, "a&nbsp;b", parse_mode="HTML")
    assert message.text == "a&nbsp;b"  # what Telegram shows
    async with FakeTelegram(token=TOKEN, strict_html_entities=True) as strict:
        strict.add_private_chat(USER)
        async with connected(strict) as strict_bot:
            with pytest.raises(BadRequest, match="unsupported html entity"):
                await strict_bot.send_message(USER, "a&nbsp;b", parse_mode="HTML")


async def test_length_limits_count_utf16_after_parsing(bot: Bot) -> None:
    await bot.send_message(USER, "<b>" + "a" * 4096 + "</b>", parse_mode="HTML")
    await bot.send_message(USER, "😀" * 2048)
    with pytest.raises(BadRequest, match=r"^Message is too long$"):
        await bot.send_message(USER, "😀" * 2049)  # 2049 characters, 4098 UTF-16 units
    with pytest.raises(BadRequest, match=r"^Message text is empty$"):
        await bot.send_message(USER, "<b> </b>\n", parse_mode="HTML")
    with pytest.raises(BadRequest, match="Unsupported parse_mode"):
        await bot.send_message(USER, "x", parse_mode="BBCode")


async def test_unreachable_chats(bot: Bot, fake: FakeTelegram) -> None:
    with pytest.raises(BadRequest, match=r"^Chat not found$"):
        await bot.send_message(-999, "x")
    with pytest.raises(Forbidden, match="bot can't initiate conversation with a user"):
        await bot.send_message(MEMBER, "x")
    fake.block(USER)
    with pytest.raises(Forbidden, match=r"^Forbidden: bot was blocked by the user$"):
        await bot.send_message(USER, "x")
    fake.block(GROUP)
    with pytest.raises(Forbidden, match=r"^Forbidden: bot was kicked from the group chat$"):
        await bot.send_message(GROUP, "x")
    fake.chats[CHANNEL].bot_can_post = False
    with pytest.raises(BadRequest, match=r"^Need administrator rights in the channel chat$"):
        await bot.send_message(CHANNEL, "x")
    fake.send_my_chat_member(CHANNEL, "left", from_user=CREATOR)
    with pytest.raises(Forbidden, match="bot is not a member of the channel chat"):
        await bot.send_message(CHANNEL, "x")
    fake.send_my_chat_member(USER, "member")
    assert (await bot.send_message(USER, "welcome back")).text == "welcome back"


async def test_migrated_group(bot: Bot, fake: FakeTelegram) -> None:
    fake.migrate(GROUP, -1007770001)
    with pytest.raises(ChatMigrated) as caught:
        await bot.send_message(GROUP, "x")
    assert caught.value.new_chat_id == -1007770001
    message = await bot.send_message(caught.value.new_chat_id, "moved")
    assert (message.chat.type, message.chat.title) == ("supergroup", "Group")


async def test_callback_query_answers(bot: Bot, fake: FakeTelegram) -> None:
    message = await bot.send_message(USER, "pick")
    query = fake.send_callback_query(USER, USER, message.message_id, "a")
    assert await bot.answer_callback_query(query["id"], "done") is True
    assert fake.callback_answers[0].text == "done"
    with pytest.raises(BadRequest, match="Query is too old"):
        await bot.answer_callback_query(query["id"])
    second = fake.send_callback_query(USER, USER, message.message_id, "b")
    with pytest.raises(BadRequest, match="Message_too_long"):
        await bot.answer_callback_query(second["id"], "x" * 201)


async def test_inline_query_answers(bot: Bot, fake: FakeTelegram) -> None:
    def article(index: int, text: str) -> InlineQueryResultArticle:
        content = InputTextMessageContent(text, parse_mode="HTML")
        return InlineQueryResultArticle(str(index), f"Result {index}", content)

    query = fake.send_inline_query(USER, "statement")
    with pytest.raises(BadRequest, match="Results_too_much"):
        await bot.answer_inline_query(query["id"], [article(i, "x") for i in range(51)])
    with pytest.raises(BadRequest, match="Message_too_long"):
        await bot.answer_inline_query(query["id"], [article(1, "x" * 4097)])
    with pytest.raises(BadRequest, match="Can't parse entities"):
        await bot.answer_inline_query(query["id"], [article(1, "<p>x</p>")])
    assert await bot.answer_inline_query(query["id"], [article(1, "<b>ok</b>")]) is True
    [answer] = fake.inline_answers
    assert (answer.query, answer.results[0]["title"]) == ("statement", "Result 1")


async def test_flood_limit_per_private_chat(
    bot: Bot, fake: FakeTelegram, timedelta_periods: None
) -> None:
    for index in range(3):  # the documented burst tolerance
        await bot.send_message(USER, f"burst {index}")
    with pytest.raises(RetryAfter) as caught:
        await bot.send_message(USER, "one too many")
    assert caught.value.retry_after >= dtm.timedelta(seconds=1)
    assert (fake.stats.flood_429, fake.stats.flood_429_by_chat[USER]) == (1, 1)
    assert fake.max_observed_rates().per_chat[USER] == 3
    assert fake.flood_violations() == ["chat 1001: 3 messages within 1s (limit 1)"]


async def test_flood_limit_per_group(bot: Bot, fake: FakeTelegram, timedelta_periods: None) -> None:
    for index in range(20):
        await bot.send_message(SUPERGROUP, f"message {index}")
    with pytest.raises(RetryAfter) as caught:
        await bot.send_message(SUPERGROUP, "21st")
    assert dtm.timedelta(seconds=59) <= caught.value.retry_after <= dtm.timedelta(seconds=60)


async def test_global_flood_limit_and_scale(timedelta_periods: None) -> None:
    async with FakeTelegram(token=TOKEN, global_rate=5, scale=2) as fake:
        for user_id in range(1, 7):
            fake.add_private_chat(user_id)
        async with connected(fake) as bot:
            for user_id in range(1, 6):
                await bot.send_message(user_id, "hi")
            with pytest.raises(RetryAfter):
                await bot.send_message(6, "hi")
            assert fake.stats.flood_429_global == 1
            await asyncio.sleep(0.6)  # the 1 s window and the 1 s penalty, halved
            await bot.send_message(6, "hi")
            assert fake.stats.sent == 6


async def test_limits_can_be_observed_without_enforcing() -> None:
    async with FakeTelegram(token=TOKEN, enforce_limits=False) as fake:
        fake.add_private_chat(USER)
        async with connected(fake) as bot:
            for _ in range(5):
                await bot.send_message(USER, "fast")
        assert fake.stats.flood_429 == 0
        assert fake.flood_violations() == ["chat 1001: 5 messages within 1s (limit 1)"]


async def test_injected_failures(bot: Bot, fake: FakeTelegram, timedelta_periods: None) -> None:
    fake.fail_next("sendMessage", 500, count=2)
    for _ in range(2):
        with pytest.raises(NetworkError, match="Internal Server Error") as caught:
            await bot.send_message(USER, "x")
        assert not isinstance(caught.value, BadRequest)
    assert (await bot.send_message(USER, "x")).text == "x"

    fake.fail_next("sendMessage", 502)
    with pytest.raises(NetworkError, match=r"Bad Gateway \(502\)"):
        await bot.send_message(USER, "x")
    fake.fail_next("sendMessage", 429, retry_after=7)
    with pytest.raises(RetryAfter) as caught_retry:
        await bot.send_message(USER, "x")
    assert caught_retry.value.retry_after == dtm.timedelta(seconds=7)
    assert fake.stats.injected_failures == 4 and fake.stats.flood_429 == 0

    fake.stall(1.0, "getMe")
    with pytest.raises(TimedOut):
        await bot.get_me(read_timeout=0.2)
    fake.stall(0)
    assert (await bot.get_me()).username == "fake_bot"


async def test_tokens_methods_and_body_encodings(bot: Bot, fake: FakeTelegram) -> None:
    with pytest.raises(EndPointNotFound):
        await bot.do_api_request("sendTelepathy")
    with pytest.raises(InvalidToken):
        async with connected(fake, "123456789:wrong"):
            pass

    keyboard = {"inline_keyboard": [[{"text": "Go", "callback_data": "go"}]]}
    async with aiohttp.ClientSession() as session:
        async with session.post(f"{fake.url}/bot123456789:wrong/getMe") as response:
            assert (response.status, await response.json()) == (
                401, {"ok": False, "error_code": 401, "description": "Unauthorized"})
        async with session.get(f"{fake.api_url}{TOKEN}/sendTelepathy") as response:
            assert (response.status, await response.json()) == (
                404, {"ok": False, "error_code": 404, "description": "Not Found"})
        as_json = {"chat_id": USER, "text": "json", "reply_markup": keyboard}
        async with session.post(f"{fake.api_url}{TOKEN}/sendMessage", json=as_json) as response:
            assert (await response.json())["result"]["reply_markup"] == keyboard
        as_form = {"chat_id": str(USER), "text": "form", "reply_markup": json.dumps(keyboard)}
        async with session.post(f"{fake.api_url}{TOKEN}/SENDMESSAGE", data=as_form) as response:
            assert (await response.json())["result"]["reply_markup"] == keyboard


# -- the HTML parser on its own -------------------------------------------------------------

# From TDLib's test/message_entities.cpp (check_parse_html).
@pytest.mark.parametrize(("markup", "text", "entities"), [
    ("&ge;&lt;&gt;&amp;&quot;&laquo;&#12345678;", '&ge;<>&"&laquo;&#12345678;', []),
    ("🏟 🏟<i>🏟 &gt;<b aba   =   caba>&lt🏟</b></i>", "🏟 🏟🏟 ><🏟",
     [("italic", 5, 7), ("bold", 9, 3)]),
    ("<a>telegram.org </a>", "telegram.org ", []),
    ("<a>telegram.org</a>", "telegram.org", [("text_link", 0, 12)]),
    ("🏟 🏟&lt;<pre  >🏟 🏟&lt;</>", "🏟 🏟<🏟 🏟<", [("pre", 6, 6)]),
    ('<blockquote   expandable=false>a&lt;<pre  >b;</></>', "a<b;",
     [("expandable_blockquote", 0, 4), ("pre", 2, 2)]),
])  # fmt: skip
def test_parser_matches_tdlib(markup: str, text: str, entities: list[tuple[str, int, int]]) -> None:
    parsed = parse_html(markup)
    assert parsed.text == text
    assert [(e.type, e.offset, e.length) for e in parsed.entities] == entities


@pytest.mark.parametrize(("markup", "error"), [
    ("🏟 🏟&lt;<i    aba  =  190azAz-.,", "Unexpected end of name token at byte offset 27"),
    ('🏟 🏟&lt;<i    aba  =  "&lt;&gt;&quot;>', "Unclosed start tag at byte offset 13"),
    ("🏟 🏟&lt;<i>a</i   ", "Unclosed end tag at byte offset 17"),
    ("&#xDFDF;", "Text contains invalid Unicode characters after decoding HTML entities, "
                 "check for unmatched surrogate code units"),
])  # fmt: skip
def test_parser_errors_match_tdlib(markup: str, error: str) -> None:
    with pytest.raises(EntityParseError) as caught:
        parse_html(markup)
    assert str(caught.value) == error


@settings(max_examples=300, deadline=None)
@given(st.text(st.characters(codec="utf-8", exclude_characters="\0")))
def test_escaped_text_parses_back_to_itself(text: str) -> None:
    parsed = parse_html(html.escape(text))
    assert (parsed.text, parsed.entities) == (text, [])
    assert utf16_len(parsed.text) == len(text.encode("utf-16-le")) // 2
