"""The Telegram adapter end to end: the real python-telegram-bot stack against the fake Bot
API server (tests/fakes/telegram_api.py) over HTTP on 127.0.0.1.

The fake parses HTML as Telegram does and rejects what Telegram rejects, so every message
it recorded is one Telegram would have shown; each test's bot is checked for that at the
end. Whether something did *not* happen is checked by order: one chat's updates are
answered in the order they came, so once a later command's answer is there, an earlier
one that was going to be answered would have been.
"""

from __future__ import annotations

import asyncio
import io
import logging
import shutil
import socket
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
from pydantic import SecretStr
from telegram import MessageEntity

from bot import compose
from bot.adapters.telegram import TelegramAdapter, entities_as_markdown
from bot.adapters.telegram_limiter import telegram_flood_control
from bot.app import App
from bot.broadcasting import BroadcastRunner
from bot.config import Config, Organisers, TelegramConfig
from bot.config import Webhook as WebhookConfig
from bot.document import para
from bot.i18n import UI_LANGUAGES
from bot.logs import REDACTED, setup_logging
from bot.markdown import parse_markdown
from bot.render.plain import render_plain
from handlers.registry import COMMANDS
from tests.conftest import STATEMENTS
from tests.fakes.telegram_api import DEFAULT_TOKEN, FakeTelegram, SentMessage
from tests.fakes.telegram_html import normalize, parse_html, utf16_len

TOKEN = DEFAULT_TOKEN
SCALE = 10.0  # the fake's limits and the bot's flood control run 10 times Telegram's pace
WAIT = 5.0  # longest wait for any one answer
USER, GERMAN, ORGANISER = 1001, 1002, 1003  # private chats; Ada's client is in English
CREATOR, ADMIN, MEMBER = 2001, 2002, 2003
GROUP, GROUP_2, SUPERGROUP = -4001, -4002, -1004003
NEW_SUPERGROUP, NEW_SUPERGROUP_2 = -1004011, -1004012
CHANNEL, QUIET_CHANNEL = -1005001, -1005002
LONG_ID = "long-read-on-the-strikes-in-the-oil-fields-of-west-kazakhstan"
LONG_SOURCE = "https://example.org/long-read"


@pytest.fixture(autouse=True)
def _timedelta_periods(monkeypatch: pytest.MonkeyPatch) -> None:
    """PTB's opt-in to timedelta periods, without its deprecation warnings."""
    monkeypatch.setenv("PTB_TIMEDELTA", "true")


@asynccontextmanager
async def fake_telegram(scale: float = SCALE) -> AsyncIterator[FakeTelegram]:
    """The fake Bot API with this module's people, groups and channels."""
    async with FakeTelegram(token=TOKEN, scale=scale) as fake:
        fake.add_private_chat(USER, "Ada", language_code="en")
        fake.add_private_chat(GERMAN, "Bertha", language_code="de")
        fake.add_private_chat(ORGANISER, "Olga", language_code="en")
        people = {CREATOR: "creator", ADMIN: "administrator"}
        fake.add_group(GROUP, "Group", admins=people, members=[MEMBER])
        fake.add_group(GROUP_2, "Second group", admins=people, members=[MEMBER])
        fake.add_group(SUPERGROUP, "Super", kind="supergroup", admins=people, members=[MEMBER])
        fake.add_channel(CHANNEL, "News", admins={CREATOR: "creator"})
        fake.add_channel(QUIET_CHANNEL, "Quiet", bot_can_post=False, admins={CREATOR: "creator"})
        fake.add_private_chat(CREATOR, "Chris", language_code="en")
        yield fake


@pytest.fixture
async def fake() -> AsyncIterator[FakeTelegram]:
    async with fake_telegram() as fake:
        yield fake


@asynccontextmanager
async def running(fake: FakeTelegram, tmp_path: Path, statements: Path = STATEMENTS,
                  webhook: WebhookConfig | None = None,
                  scale: float = SCALE) -> AsyncIterator[TelegramAdapter]:
    """The App and its TelegramAdapter, connected to the fake; always stopped and closed."""
    config = Config(statements=statements, database=tmp_path / "bot.sqlite3",
                    organisers=Organisers(telegram=[ORGANISER]),
                    telegram=TelegramConfig(token=TOKEN, base_url=fake.api_url, webhook=webhook))
    app = await App.start(config)
    try:
        flood = telegram_flood_control(config.telegram.rate * scale, scale)
        adapter = TelegramAdapter(app, flood, poll_timeout=1)
        try:
            await adapter.start()
            yield adapter
        finally:
            await adapter.stop()
    finally:
        await app.close()
    assert_every_message_parsed(fake)


def assert_every_message_parsed(fake: FakeTelegram) -> None:
    """What the bot sent was HTML that parses, within the limit, without link previews."""
    for sent in fake.sent_messages():
        assert sent.parse_mode == "HTML", sent.html
        message = parse_html(sent.html)
        assert normalize(message.text, message.entities).text == sent.text
        assert utf16_len(sent.text) <= 4096
        assert sent.link_preview_options == {"is_disabled": True}


@pytest.fixture
async def bot(fake: FakeTelegram, tmp_path: Path) -> AsyncIterator[TelegramAdapter]:
    async with running(fake, tmp_path) as adapter:
        yield adapter


@pytest.fixture
def long_statements(tmp_path: Path) -> Path:
    """The real statements plus an old one, in English and German, far longer than one
    message and with an id as long as ids may be."""
    folder = tmp_path / "statements"
    shutil.copytree(STATEMENTS, folder)
    paragraphs = [f"Paragraph {n}: workers & students <united> 🚩 “never” divided. " * 7
                  for n in range(1, 15)]
    (folder / LONG_ID).mkdir()
    for language, title in (("en", "A long read"), ("de", "Ein langer Text")):
        (folder / LONG_ID / f"{language}.md").write_text(
            f'---\ntitle: "{title}"\ndate: 2020-01-01\norganisation: "Test Union"\n'
            f'source: "{LONG_SOURCE}"\nsignatories: []\ndemands:\n  - "First"\n'
            '  - "Second"\n---\n\n' + "\n\n".join(p.strip() for p in paragraphs)
            + "\n\n- First\n- Second\n", encoding="utf-8")
    return folder


async def ask(fake: FakeTelegram, chat_id: int, text: str, count: int = 1,
              from_user: int | None = None) -> list[SentMessage]:
    """`text` written in a chat; the bot's next `count` messages there."""
    before = len(fake.sent_messages(chat_id))
    fake.send_text(chat_id, text, from_user=from_user)
    return (await fake.wait_for_messages(chat_id, before + count, WAIT))[before:]


async def post(fake: FakeTelegram, channel: int, text: str) -> SentMessage:
    before = len(fake.sent_messages(channel))
    fake.send_channel_post(channel, text)
    return (await fake.wait_for_messages(channel, before + 1, WAIT))[before]


async def eventually(check: Callable[[], Awaitable[bool]], what: str) -> None:
    """Wait (bounded) until an update the bot handles in the background has had its effect."""
    deadline = time.monotonic() + WAIT
    while not await check():
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out waiting for {what}")
        await asyncio.sleep(0.02)


def same_text(a: str, b: str) -> bool:
    """Equal up to whitespace: parts are cut at paragraph boundaries or spaces."""
    return a.split() == b.split()


def numbered(text: str) -> list[str]:
    return [line for line in text.splitlines() if line[:1].isdigit() and ". " in line]


# -- private chats -----------------------------------------------------------------------------


async def test_private_chat_commands(fake: FakeTelegram, bot: TelegramAdapter) -> None:
    [statement] = await ask(fake, USER, "/statement fr")
    french = bot.app.catalog.statements["kazakhstan-repression"].translations["fr"]
    expected = render_plain(compose.statement_blocks(french, "Source:"), show_urls=False)
    assert same_text(statement.text, expected)
    assert statement.text.startswith("Non à la répression du peuple !")
    title = statement.entities[0]
    assert title["type"] == "bold" and statement.text[:title["length"]] == french.title
    assert statement.entities[-1]["url"] == french.source

    [demands] = await ask(fake, USER, "/demands de")
    assert len(numbered(demands.text)) == 8
    assert numbered(demands.text)[0] == (
        "1. Solidarität mit denjenigen, die sich gegen die Diktatur in Kasachstan erheben!")

    [unknown_language] = await ask(fake, USER, "/statement xx")
    assert "“xx”" in unknown_language.text
    for code in ("de", "en", "fr", "no"):
        assert f"{code} (" in unknown_language.text

    [unknown] = await ask(fake, USER, "/nosuchcommand")
    assert unknown.text == "Unknown command /nosuchcommand. Send /help to see the commands."
    [hint] = await ask(fake, USER, "hello there")
    assert hint.text == "Commands start with /. Send /help to see them."
    assert all(m.reply_to_message_id is None for m in fake.sent_messages(USER))


async def test_a_statement_longer_than_a_message_arrives_in_parts(
    fake: FakeTelegram, tmp_path: Path, long_statements: Path
) -> None:
    async with running(fake, tmp_path, long_statements) as bot:
        long_read = bot.app.catalog.statements[LONG_ID].translations["en"]
        expected = render_plain(compose.statement_blocks(long_read, "Source:"), show_urls=False)
        assert utf16_len(expected) > 4096
        parts = await ask(fake, USER, f"/statement {LONG_ID} en", count=2)
        await ask(fake, USER, "/help")  # answered after every part of the statement
    sent = fake.sent_messages(USER)
    assert len(sent) == 3 and sent[:2] == parts
    assert same_text(" ".join(p.text for p in parts), expected)
    assert parts[0].text.startswith("A long read")
    assert parts[1].text.endswith(f"Source: {LONG_SOURCE}")
    assert all(utf16_len(p.text) <= 4096 for p in parts)


async def test_deep_links_open_statements_and_demands(
    fake: FakeTelegram, bot: TelegramAdapter
) -> None:
    [statement] = await ask(fake, USER, "/start statement-fr")
    [direct] = await ask(fake, USER, "/statement fr")
    assert statement.text == direct.text and statement.entities == direct.entities
    [demands] = await ask(fake, USER, "/start demands-de")
    assert len(numbered(demands.text)) == 8
    [welcome] = await ask(fake, USER, "/start")
    assert welcome.text.startswith("Welcome!")


async def test_the_users_language_is_the_hint_and_language_stores_the_chats(
    fake: FakeTelegram, bot: TelegramAdapter
) -> None:
    german, french = bot.app.translator("de"), bot.app.translator("fr")
    intro = "This bot shares solidarity statements in several languages, ready to forward."
    [help_de] = await ask(fake, GERMAN, "/help")
    assert help_de.text.startswith(german(intro)) and german(intro) != intro
    [changed] = await ask(fake, GERMAN, "/language français")
    assert "(fr)" in changed.text
    [help_fr] = await ask(fake, GERMAN, "/help")
    assert help_fr.text.startswith(french(intro))
    chat = await bot.app.storage.get_chat("telegram", str(GERMAN))
    assert chat is not None and (chat.kind, chat.language) == ("private", "fr")


# -- groups and channels ---------------------------------------------------------------------


async def test_group_commands_for_this_bot_are_answered_with_a_quote(
    fake: FakeTelegram, bot: TelegramAdapter
) -> None:
    fake.send_text(SUPERGROUP, "/statement@otherbot fr", from_user=MEMBER)
    fake.send_text(SUPERGROUP, "just talking", from_user=MEMBER)
    fake.send_text(SUPERGROUP, "/nosuchcommand@fake_bot", from_user=MEMBER)
    command = fake.send_text(SUPERGROUP, "/statement@fake_bot fr", from_user=MEMBER)
    [answer] = await fake.wait_for_messages(SUPERGROUP, 1, WAIT)
    assert answer.text.startswith("Non à la répression du peuple !")
    assert answer.reply_to_message_id == command["message_id"]
    command = fake.send_text(GROUP, "/demands de", from_user=ADMIN)
    [answer] = await fake.wait_for_messages(GROUP, 1, WAIT)
    assert len(numbered(answer.text)) == 8
    assert answer.reply_to_message_id == command["message_id"]
    assert len(fake.sent_messages(SUPERGROUP)) == 1


async def test_channel_posts_are_commands_from_its_admins(
    fake: FakeTelegram, bot: TelegramAdapter
) -> None:
    subscribed = await post(fake, CHANNEL, "/subscribe fr")
    assert subscribed.text.startswith("Subscribed") and "French (fr)" in subscribed.text
    subscription = await bot.app.storage.get_subscription("telegram", str(CHANNEL))
    assert subscription is not None and (subscription.active, subscription.language) == (
        True, "fr")
    statement = await post(fake, CHANNEL, "/statement@fake_bot fr")
    assert statement.text.startswith("Non à la répression du peuple !")
    assert statement.message["sender_chat"]["id"] == CHANNEL
    unsubscribed = await post(fake, CHANNEL, "/unsubscribe")
    assert unsubscribed.text.startswith("Unsubscribed")
    assert await bot.app.storage.get_subscription("telegram", str(CHANNEL)) is None


async def test_without_the_post_right_the_bot_tells_the_admin_who_added_it(
    fake: FakeTelegram, bot: TelegramAdapter
) -> None:
    fake.send_my_chat_member(QUIET_CHANNEL, "administrator", from_user=CREATOR,
                             old_status="left", can_post_messages=False)
    [note] = await fake.wait_for_messages(CREATOR, 1, WAIT)
    assert "“Quiet”" in note.text and "“Post messages”" in note.text
    fake.send_channel_post(QUIET_CHANNEL, "/statement fr")  # cannot be answered, no crash
    await fake.wait_until(lambda: fake.stats.errors_by_code[400] == 1, WAIT, "a refused post")
    fake.send_my_chat_member(QUIET_CHANNEL, "administrator", from_user=CREATOR,
                             can_post_messages=True)
    answer = await post(fake, QUIET_CHANNEL, "/demands de")
    assert len(numbered(answer.text)) == 8
    assert len(fake.sent_messages(CREATOR)) == 1  # promoted with the right: nothing to say


# -- inline mode and the command menu --------------------------------------------------------


def inline_texts(fake: FakeTelegram, query: str) -> list[str]:
    [answer] = [a for a in fake.inline_answers if a.query == query]
    texts = []
    for result in answer.results:
        content = result["input_message_content"]
        assert content["parse_mode"] == "HTML"
        assert content["link_preview_options"] == {"is_disabled": True}
        message = parse_html(content["message_text"])
        text = normalize(message.text, message.entities).text
        assert utf16_len(text) <= 4096
        texts.append(text)
    return texts


async def inline(fake: FakeTelegram, user: int, query: str) -> list[str]:
    fake.send_inline_query(user, query)
    await fake.wait_until(lambda: any(a.query == query for a in fake.inline_answers), WAIT,
                          f"the answer to the inline query {query!r}")
    return inline_texts(fake, query)


async def test_inline_queries_offer_statements_and_demands(
    fake: FakeTelegram, bot: TelegramAdapter
) -> None:
    statement, demands = await inline(fake, USER, "fr")
    assert statement.startswith("Non à la répression du peuple !")
    assert len(numbered(demands)) == 5
    [german_demands] = await inline(fake, USER, "demands de")
    assert len(numbered(german_demands)) == 8
    answers = {a.query: a for a in fake.inline_answers}
    assert answers["fr"].is_personal  # titles follow the user's language
    assert [r["title"] for r in answers["demands de"].results] == [
        "Demands: Internationale Solidarität mit dem Aufstand in Kasachstan (German)"]
    assert await inline(fake, USER, "nonsense words") == []


async def test_inline_results_too_long_for_a_message_end_with_a_link(
    fake: FakeTelegram, tmp_path: Path, long_statements: Path
) -> None:
    async with running(fake, tmp_path, long_statements):
        statement, demands, _, _ = await inline(fake, GERMAN, LONG_ID)
    assert statement.startswith("Ein langer Text") and statement.endswith("… Ganzen Text lesen")
    [answer] = fake.inline_answers
    html = answer.results[0]["input_message_content"]["message_text"]
    assert html.endswith(f'<a href="{LONG_SOURCE}">Ganzen Text lesen</a>')
    assert demands.endswith(f"{LONG_SOURCE}")  # short enough: whole, with its source
    assert len({r["id"] for r in answer.results}) == 4  # ids too long to send are hashed


async def test_command_menus_in_every_ui_language(fake: FakeTelegram, bot: TelegramAdapter) -> None:
    public = [spec for spec in COMMANDS.values() if not spec.organiser_only]
    for language in ("", *UI_LANGUAGES):
        _ = bot.app.translator(language or "en")
        assert fake.commands(None, language) == [
            {"command": spec.name, "description": _(spec.summary)} for spec in public]
    descriptions = {fake.commands(None, lang)[0]["description"] for lang in UI_LANGUAGES}
    assert len(descriptions) == len(UI_LANGUAGES)  # translated, not English four times
    assert fake.stats.requests["setMyCommands"] == 1 + len(UI_LANGUAGES)


# -- permissions, removal, migration ---------------------------------------------------------


async def test_only_group_admins_change_the_subscription(
    fake: FakeTelegram, bot: TelegramAdapter
) -> None:
    storage = bot.app.storage
    [refusal] = await ask(fake, GROUP, "/subscribe fr", from_user=MEMBER)
    assert refusal.text == "Sorry, only this chat's administrators can change its subscription."
    assert await storage.get_subscription("telegram", str(GROUP)) is None
    [done] = await ask(fake, GROUP, "/subscribe fr", from_user=CREATOR)
    assert done.text.startswith("Subscribed")
    [done] = await ask(fake, GROUP, "/unsubscribe", from_user=ADMIN)
    assert done.text.startswith("Unsubscribed")
    assert fake.stats.requests["getChatMember"] == 3
    [refusal] = await ask(fake, GROUP, "/subscribe", from_user=MEMBER)
    [done] = await ask(fake, GROUP, "/subscribe de", from_user=CREATOR)
    assert refusal.text.startswith("Sorry") and done.text.startswith("Subscribed")
    assert fake.stats.requests["getChatMember"] == 3  # cached
    subscription = await storage.get_subscription("telegram", str(GROUP))
    assert subscription is not None and subscription.language == "de"


async def test_removed_kicked_or_blocked_chats_are_deactivated(
    fake: FakeTelegram, bot: TelegramAdapter
) -> None:
    storage = bot.app.storage
    for chat in (GROUP, SUPERGROUP, USER, GERMAN):
        await storage.subscribe("telegram", str(chat), "group" if chat < 0 else "private", "en")
    fake.send_my_chat_member(GROUP, "kicked", from_user=CREATOR)
    fake.send_my_chat_member(SUPERGROUP, "left", from_user=CREATOR)
    fake.send_my_chat_member(USER, "kicked")  # Ada blocks the bot

    async def gone(chat: int, reason: str) -> bool:
        subscription = await storage.get_subscription("telegram", str(chat))
        assert subscription is not None
        return not subscription.active and subscription.deactivated_reason == reason

    await eventually(lambda: gone(GROUP, "removed from chat"), "the kick to be recorded")
    await eventually(lambda: gone(SUPERGROUP, "removed from chat"), "leaving to be recorded")
    await eventually(lambda: gone(USER, "blocked"), "the block to be recorded")

    fake.block(GERMAN)  # no update this time: the bot learns it from the 403
    sends = fake.stats.requests["sendMessage"]
    outcome = await bot.send_part(str(GERMAN), "<b>Rally</b> on Saturday", 1)
    assert (outcome.ok, outcome.chat_gone, outcome.permanent) == (False, True, True)
    assert outcome.reason and outcome.reason.startswith("blocked")
    assert fake.stats.requests["sendMessage"] == sends + 1  # tried once, not again
    assert await gone(GERMAN, "blocked")
    assert await storage.active_subscriptions("telegram") == []


async def test_migration_service_message_moves_language_and_subscription(
    fake: FakeTelegram, bot: TelegramAdapter, caplog: pytest.LogCaptureFixture
) -> None:
    storage = bot.app.storage
    await ask(fake, GROUP, "/language de", from_user=CREATOR)
    await ask(fake, GROUP, "/subscribe", from_user=CREATOR)
    fake.send_migration(GROUP, NEW_SUPERGROUP, from_user=CREATOR)

    async def moved() -> bool:
        return await storage.get_subscription("telegram", str(NEW_SUPERGROUP)) is not None

    await eventually(moved, "the migration to be followed")
    subscription = await storage.get_subscription("telegram", str(NEW_SUPERGROUP))
    chat = await storage.get_chat("telegram", str(NEW_SUPERGROUP))
    assert subscription is not None and (subscription.active, subscription.language) == (
        True, "de")
    assert chat is not None and chat.language == "de"
    assert await storage.get_chat("telegram", str(GROUP)) is None
    [answer] = await ask(fake, NEW_SUPERGROUP, "/unsubscribe", from_user=CREATOR)
    assert answer.text == bot.app.translator("de")(
        "Unsubscribed: this chat will no longer receive calls.")
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]  # both messages


async def test_chat_migrated_errors_are_followed(fake: FakeTelegram, bot: TelegramAdapter) -> None:
    storage = bot.app.storage
    await storage.subscribe("telegram", str(GROUP), "group", "fr")
    fake.migrate(GROUP, NEW_SUPERGROUP)  # no service message reached the bot
    command = fake.send_text(GROUP, "/demands de", from_user=MEMBER)  # sent just before
    [answer] = await fake.wait_for_messages(NEW_SUPERGROUP, 1, WAIT)
    assert len(numbered(answer.text)) == 8 and answer.reply_to_message_id is None
    assert command["chat"]["id"] == GROUP and fake.sent_messages(GROUP) == []
    subscription = await storage.get_subscription("telegram", str(NEW_SUPERGROUP))
    assert subscription is not None and subscription.active

    fake.migrate(GROUP_2, NEW_SUPERGROUP_2)
    outcome = await bot.send_part(str(GROUP_2), "<b>Rally</b> on Saturday", 7)
    assert outcome.ok and outcome.chat_id == str(NEW_SUPERGROUP_2)
    [delivered] = fake.sent_messages(NEW_SUPERGROUP_2)
    assert delivered.text == "Rally on Saturday"


async def test_a_broadcast_reaches_chats_and_learns_of_blocks_and_migrations(
    fake: FakeTelegram, bot: TelegramAdapter
) -> None:
    storage = bot.app.storage
    for chat, language in ((USER, "en"), (GERMAN, "de"), (GROUP, "fr")):
        await storage.subscribe("telegram", str(chat), "group" if chat < 0 else "private",
                                language)
    fake.block(GERMAN)
    fake.migrate(GROUP, NEW_SUPERGROUP)
    runner = BroadcastRunner(bot.app, {"telegram": bot}, {"telegram": bot}, report_interval=0.05)
    await runner.start()
    try:
        [preview] = await ask(fake, ORGANISER, "/broadcast all **Rally** on Saturday <3 & more")
        assert "Rally on Saturday <3 & more" in preview.text
        assert preview.reply_markup is not None
        send = preview.reply_markup["inline_keyboard"][0][0]
        assert send["callback_data"] == "/confirm 1"
        fake.send_callback_query(ORGANISER, ORGANISER, preview.message_id, send["callback_data"])
        [at_ada] = await fake.wait_for_messages(USER, 1, WAIT)
        [at_group] = await fake.wait_for_messages(NEW_SUPERGROUP, 1, WAIT)
        assert at_ada.text == at_group.text == "Rally on Saturday <3 & more"
        assert at_ada.entities == [{"type": "bold", "offset": 0, "length": 5}]
        await fake.wait_until(
            lambda: any("finished" in m.text and "Failed: 1" in m.text
                        for m in fake.sent_messages(ORGANISER)), WAIT, "the final report")
    finally:
        await runner.stop()
    assert len(fake.callback_answers) == 1
    active = await storage.active_subscriptions("telegram")
    assert {s.chat_id for s in active} == {str(USER), str(NEW_SUPERGROUP)}
    blocked = await storage.get_subscription("telegram", str(GERMAN))
    assert blocked is not None and blocked.deactivated_reason == "blocked"


# -- flood control and failures --------------------------------------------------------------


async def test_bursts_stay_within_the_limits_and_are_answered_in_order(tmp_path: Path) -> None:
    """At a gentler scale than the others: a private chat's nominal window is then 250 ms
    and the bot's 275 ms, so a busy machine's jitter does not count as a violation."""
    commands = ["/statement fr", "/demands de", "/help", "/languages", "/statements",
                "/demands no"]
    async with fake_telegram(scale=4.0) as fake:
        async with running(fake, tmp_path, scale=4.0):
            for text in commands:
                fake.send_text(USER, text)
            for index, text in enumerate(commands * 3):  # 18 of a group's 20 a minute
                fake.send_text(SUPERGROUP, text, from_user=(CREATOR, ADMIN, MEMBER)[index % 3])
            private = await fake.wait_for_messages(USER, len(commands), WAIT)
            group = await fake.wait_for_messages(SUPERGROUP, 3 * len(commands), WAIT)
        assert fake.flood_violations() == []
        assert fake.stats.flood_429 == 0
    assert private[0].text.startswith("Non à la répression") and len(numbered(private[1].text)) == 8
    assert private[2].text.startswith("This bot shares")
    assert [m.text for m in group[:len(commands)]] == [m.text for m in private]
    assert [m.reply_to_message_id for m in group] == sorted(
        m.reply_to_message_id or 0 for m in group)


async def test_a_group_burst_past_its_limit_is_paced(tmp_path: Path) -> None:
    scale = 60.0  # a group's minute lasts one second
    async with FakeTelegram(token=TOKEN, scale=scale) as fake:
        fake.add_group(SUPERGROUP, "Super", kind="supergroup", admins={CREATOR: "creator"})
        async with running(fake, tmp_path, scale=scale):
            for _ in range(25):
                fake.send_text(SUPERGROUP, "/demands de")
            sent = await fake.wait_for_messages(SUPERGROUP, 25, WAIT)
        assert sent[20].sent_at - sent[0].sent_at >= 1.0  # the 21st waited for the window
        assert fake.flood_violations() == []
        assert fake.stats.flood_429 == 0


async def test_a_429_is_waited_out(fake: FakeTelegram, bot: TelegramAdapter) -> None:
    fake.fail_next("sendMessage", 429, retry_after=1)
    started = time.monotonic()
    [answer] = await ask(fake, USER, "/demands de")
    assert time.monotonic() - started >= 0.9
    assert len(numbered(answer.text)) == 8
    assert fake.stats.injected_failures == 1
    assert fake.flood_violations() == []


async def test_network_errors_are_retried_and_the_bot_keeps_serving(
    fake: FakeTelegram, bot: TelegramAdapter
) -> None:
    fake.fail_next("sendMessage", 502)
    [answer] = await ask(fake, USER, "/demands de")
    assert len(numbered(answer.text)) == 8
    fake.fail_next("getUpdates", 502)
    [answer] = await ask(fake, USER, "/statement fr")
    assert answer.text.startswith("Non à la répression")
    fake.fail_next("sendMessage", 400, "Bad Request: something unexpected")
    fake.send_text(USER, "/help")  # this answer is lost, and only this one
    [answer] = await ask(fake, USER, "/demands de")
    assert len(numbered(answer.text)) == 8
    assert fake.stats.injected_failures == 3


async def test_user_input_with_markup_characters_is_escaped(
    fake: FakeTelegram, bot: TelegramAdapter
) -> None:
    [answer] = await ask(fake, USER, "/statement <b>&amp;")
    assert answer.text.startswith("“<b>&amp;” is neither a statement nor a language I know.")
    [answer] = await ask(fake, USER, '/language <i>"x"</i>')
    assert answer.text.startswith('I don\'t know the language “<i>"x"</i>”.')
    [answer] = await ask(fake, GROUP, "/subscribe <a&lt;", from_user=CREATOR)
    assert answer.text.startswith("I don't know the language “<a&lt;”.")
    [answer] = await ask(fake, USER, "<script>alert('&')</script>")
    assert answer.text.startswith("Commands start with /.")
    assert dict(fake.stats.errors_by_code) == {}  # nothing was rejected


def test_an_organisers_formatting_is_kept_as_markdown() -> None:
    text = "/broadcast 😀 Rally *now* at the square, 5_pm"
    entities = (MessageEntity("bot_command", 0, 10), MessageEntity("bold", 14, 5),
                MessageEntity("text_link", 33, 6, url="https://e.org/a_(b)"),
                MessageEntity("code", 41, 4))  # offsets in UTF-16 units, the emoji is 2
    markdown = entities_as_markdown(text, entities)
    assert markdown == ("/broadcast 😀 **Rally** \\*now\\* at the [square](<https://e.org/a_(b)>), "
                        "`5_pm`")
    document = parse_markdown(markdown.removeprefix("/broadcast "))
    assert render_plain(document) == "😀 Rally *now* at the square (https://e.org/a_(b)), 5_pm"


# -- webhook and logs ------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


async def test_webhook_mode(fake: FakeTelegram, tmp_path: Path) -> None:
    port = free_port()
    secret = "s3cret-Token_1"
    hook = WebhookConfig(url=f"http://127.0.0.1:{port}/telegram/hook", port=port,
                         secret_token=SecretStr(secret))
    async with running(fake, tmp_path, webhook=hook):
        assert fake.webhook is not None
        assert (fake.webhook.url, fake.webhook.secret_token) == (hook.url, secret)
        fake.send_text(USER, "/demands de")
        fake.webhook.secret_token = "wrong"
        assert await fake.deliver_webhook() == 0  # PTB refuses it: nothing is answered
        assert "403" in (fake.webhook.last_error_message or "")
        fake.webhook.secret_token = secret
        assert await fake.deliver_webhook() == 1
        [answer] = await fake.wait_for_messages(USER, 1, WAIT)
    assert len(numbered(answer.text)) == 8
    assert fake.stats.requests["getUpdates"] == 0


async def test_tokens_never_appear_in_logs(fake: FakeTelegram, tmp_path: Path) -> None:
    root, httpx = logging.getLogger(), logging.getLogger("httpx")
    saved = root.handlers[:], root.level, httpx.level
    output = io.StringIO()
    try:
        setup_logging([TOKEN], level=logging.DEBUG)
        handler = root.handlers[0]
        assert isinstance(handler, logging.StreamHandler)
        handler.setStream(output)
        httpx.setLevel(logging.DEBUG)  # even with every request URL logged
        async with running(fake, tmp_path) as bot:
            await ask(fake, USER, "/statement fr")
            fake.fail_next("getUpdates", 502)
            fake.fail_next("sendMessage", 400, "Bad Request: chat not found")
            fake.send_text(USER, "/help")
            await ask(fake, USER, "/demands de")
            await bot.show_status(str(USER), "999", (para("status"),))
    finally:
        root.handlers[:] = saved[0]
        root.setLevel(saved[1])
        httpx.setLevel(saved[2])
    logged = output.getvalue()
    assert "getUpdates" in logged and REDACTED in logged  # request lines were there
    assert TOKEN not in logged and TOKEN.split(":")[1] not in logged
