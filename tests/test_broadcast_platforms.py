"""Broadcasts on the real platform stacks: python-telegram-bot against the fake Bot API
(tests/fakes/telegram_api.py) and matrix-nio against a real Synapse (tests/fakes/synapse.py).

The fake's flood limits and the bot's flood control run SCALE times Telegram's pace, so a
broadcast to hundreds of chats takes a second or two; the fake records every limit that
the accepted traffic exceeded. The crash test runs the bot as its own process and kills
it with SIGKILL in the middle of a broadcast. One test drives the dispatcher with an
in-memory platform, to catch a row being started twice while the queue is re-read.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import os
import random
import signal
import sqlite3
import sys
import time
from collections.abc import AsyncIterator, Callable, Iterable
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from nio import AsyncClient, AsyncClientConfig, RoomMessageNotice
from pydantic import SecretStr

from bot import outbox as outbox_module
from bot.adapters.matrix import MatrixAdapter
from bot.adapters.telegram import TelegramAdapter
from bot.adapters.telegram_limiter import telegram_flood_control
from bot.app import App
from bot.broadcasting import BroadcastRunner
from bot.config import Config, MatrixConfig, Organisers, TelegramConfig, load_config
from bot.protocol import Outcome
from tests.conftest import ROOT, STATEMENTS
from tests.fakes.synapse import (  # noqa: F401  (synapse_server is a fixture)
    RegisteredUser,
    SynapseServer,
    synapse_server,
    unique_localpart,
)
from tests.fakes.telegram_api import DEFAULT_TOKEN, FakeTelegram, SentMessage, _ApiError, _Params
from tests.test_matrix import Person

TOKEN = DEFAULT_TOKEN
SCALE = 10.0  # the fake's limits and the bot's flood control run 10 times Telegram's pace
RATE = 25 * SCALE  # the bot's global rate: Telegram's default 25/s, scaled like the fake
WAIT = 20.0  # longest wait for anything to happen
ORGANISER = 900
VARIANTS = {"fr": "Rassemblement samedi", "de": "Kundgebung am Samstag", "en": "Rally on Saturday"}
VARIANTS_TEXT = "\n".join(f"[{lang}] {text}" for lang, text in VARIANTS.items())


def expected_text(language: str) -> str:
    """A subscriber's variant: its own language's, else the default language's (en)."""
    return VARIANTS.get(language, VARIANTS["en"])


@pytest.fixture(autouse=True)
def _timedelta_periods(monkeypatch: pytest.MonkeyPatch) -> None:
    """PTB's opt-in to timedelta periods, without its deprecation warnings."""
    monkeypatch.setenv("PTB_TIMEDELTA", "true")


@pytest.fixture
async def fake() -> AsyncIterator[FakeTelegram]:
    async with FakeTelegram(token=TOKEN, scale=SCALE) as fake:
        fake.add_private_chat(ORGANISER, "Olga", language_code="en")
        yield fake


@dataclass
class Bot:
    app: App
    runner: BroadcastRunner
    telegram: TelegramAdapter | None
    matrix: MatrixAdapter | None


@asynccontextmanager
async def running(config: Config, report_interval: float = 0.2) -> AsyncIterator[Bot]:
    """The App with its configured adapters and the broadcast runner, as `main.py run`
    wires them; everything is stopped and closed afterwards, whatever happens."""
    async with AsyncExitStack() as stack:
        app = await App.start(config)
        stack.push_async_callback(app.close)
        telegram = matrix = None
        if config.telegram_enabled:
            flood = telegram_flood_control(config.telegram.rate, SCALE)
            telegram = TelegramAdapter(app, flood, poll_timeout=1)
            stack.push_async_callback(telegram.stop)
            await telegram.start()
        if config.matrix.enabled:
            matrix = MatrixAdapter(app, max_backoff=1.0)
            stack.push_async_callback(matrix.stop)
            await matrix.start()
            await asyncio.wait_for(matrix.ready.wait(), WAIT)
        adapters: dict[str, Any] = {a.platform: a for a in (telegram, matrix) if a is not None}
        runner = BroadcastRunner(app, adapters, adapters, report_interval=report_interval)
        stack.push_async_callback(runner.stop)
        await runner.start()
        yield Bot(app, runner, telegram, matrix)


def config_for(tmp_path: Path, fake: FakeTelegram | None = None, rate: float = RATE,
               matrix: MatrixConfig | None = None) -> Config:
    telegram = (TelegramConfig(token=SecretStr(TOKEN), base_url=fake.api_url, rate=rate)
                if fake else TelegramConfig())
    return Config(statements=STATEMENTS, database=tmp_path / "bot.sqlite3",
                  organisers=Organisers(telegram=[ORGANISER]), telegram=telegram,
                  matrix=matrix or MatrixConfig())


async def ask(fake: FakeTelegram, chat_id: int, text: str) -> SentMessage:
    """`text` written in a chat; the bot's next message there."""
    before = len(fake.sent_messages(chat_id))
    fake.send_text(chat_id, text)
    return (await fake.wait_for_messages(chat_id, before + 1, WAIT))[before]


def status_messages(fake: FakeTelegram, broadcast_id: int = 1) -> list[SentMessage]:
    """Messages showing the broadcast's state: first its status message, which the bot
    keeps editing, then any answers to /report or /cancel."""
    return [m for m in fake.sent_messages(ORGANISER)
            if m.text.startswith(f"Broadcast #{broadcast_id}:")]


def final_report(fake: FakeTelegram, broadcast_id: int = 1) -> str | None:
    """The status message's text, once it shows the broadcast's end."""
    shown = status_messages(fake, broadcast_id)
    if shown and ("finished" in shown[0].text or "cancelled" in shown[0].text):
        return shown[0].text
    return None


def delivered(fake: FakeTelegram, chats: Iterable[int]) -> int:
    return sum(fake.stats.sent_by_chat[chat] for chat in chats)


async def subscribe(app: App, platform: str, chats: dict[Any, str]) -> None:
    for chat, language in chats.items():
        kind = "private" if platform == "matrix" or int(chat) > 0 else "group"
        await app.storage.subscribe(platform, str(chat), kind, language)


async def eventually(check: Callable[[], Any], what: str, timeout: float = WAIT) -> None:
    """Poll an async `check` until it returns something true."""
    async def poll() -> None:
        while not await check():
            await asyncio.sleep(0.05)

    try:
        await asyncio.wait_for(poll(), timeout)
    except TimeoutError:
        raise AssertionError(f"timed out after {timeout}s waiting for {what}") from None


async def ended(app: App, broadcast_id: int) -> bool:
    broadcast = await app.outbox.get(broadcast_id)
    return broadcast is not None and broadcast.status in ("done", "cancelled")


async def deliveries(app: App) -> dict[tuple[str, str, int], tuple[str, str | None, int]]:
    """Every delivery row as (platform, chat, part) -> (status, reason, attempts)."""
    async with app.storage.db.execute(
        "SELECT platform, chat_id, part, status, reason, attempts FROM deliveries"
    ) as cursor:
        return {(p, c, n): (s, r, a) for p, c, n, s, r, a in await cursor.fetchall()}


# -- Matrix people -------------------------------------------------------------------------


def matrix_config(server: SynapseServer, account: RegisteredUser, tmp_path: Path,
                  password: bool = False) -> MatrixConfig:
    credentials: dict[str, Any] = (
        {"password": SecretStr(account.password)} if password else
        {"access_token": SecretStr(account.access_token), "device_id": account.device_id})
    return MatrixConfig(homeserver=server.url, user_id=account.user_id,
                        store=tmp_path / "matrix-store",
                        allowed_inviters=[f"@friend-*:{server.server_name}"], **credentials)


async def friend(server: SynapseServer, tmp_path: Path, stack: AsyncExitStack) -> Person:
    """Someone on Matrix whose invites the bot accepts."""
    account = await server.aregister_user(unique_localpart("friend"))
    store = tmp_path / f"person-{account.device_id}"
    store.mkdir()
    client = AsyncClient(server.url, account.user_id, store_path=str(store),
                         config=AsyncClientConfig(encryption_enabled=False,
                                                  store_sync_tokens=False))
    stack.push_async_callback(client.close)
    client.restore_login(account.user_id, account.device_id, account.access_token)
    person = Person(client)
    await person.sync()
    return person


async def rooms_with(person: Person, bot_user: str, count: int) -> list[str]:
    rooms = [await person.create_room(bot_user) for _ in range(count)]
    for room in rooms:
        await person.wait_for_membership(room, bot_user, "join")
    return rooms


def notices(person: Person, room: str, sender: str) -> list[RoomMessageNotice]:
    return [event for room_id, event in person.events
            if room_id == room and event.sender == sender
            and isinstance(event, RoomMessageNotice)]


# -- one broadcast, two platforms ------------------------------------------------------------


async def test_one_broadcast_reaches_telegram_and_matrix_each_in_its_language(
    fake: FakeTelegram, synapse_server: SynapseServer, tmp_path: Path  # noqa: F811
) -> None:
    languages = ["fr", "de", "en", "no", "es"]  # no and es have no variant: en
    telegram: dict[int, str] = {}
    for n in range(150):
        fake.add_private_chat(5000 + n)
        telegram[5000 + n] = languages[n % len(languages)]
    for n in range(8):
        fake.add_group(-6000 - n, f"Group {n}")
        telegram[-6000 - n] = languages[n % len(languages)]
    for n in range(4):
        fake.add_channel(-1007000 - n, f"Channel {n}")
        telegram[-1007000 - n] = languages[n % len(languages)]
    account = await synapse_server.aregister_user(unique_localpart("bot"))
    config = config_for(tmp_path, fake, matrix=matrix_config(synapse_server, account, tmp_path))
    async with AsyncExitStack() as stack:
        person = await friend(synapse_server, tmp_path, stack)
        bot = await stack.enter_async_context(running(config))
        room_languages = ["fr", "de", "es"]
        matrix = dict(zip(await rooms_with(person, account.user_id, 3), room_languages,
                          strict=True))
        await subscribe(bot.app, "telegram", telegram)
        await subscribe(bot.app, "matrix", matrix)

        preview = await ask(fake, ORGANISER, f"/broadcast {VARIANTS_TEXT}")
        assert f"It will reach {len(telegram) + len(matrix)} chats" in preview.text
        fake.send_text(ORGANISER, "/confirm 1")
        await fake.wait_until(lambda: final_report(fake) is not None, WAIT, "the final report")

        def every_room_served() -> bool | None:
            return True if all(notices(person, room, account.user_id) for room in matrix) \
                else None

        await person.until(every_room_served)

    for chat, language in telegram.items():
        assert [m.text for m in fake.sent_messages(chat)] == [expected_text(language)], chat
    for room, language in matrix.items():
        assert [e.body for e in notices(person, room, account.user_id)] == [
            expected_text(language)]
    [status] = status_messages(fake)
    assert status.edit_count >= 2  # progress while it ran, then the final report
    total = len(telegram) + len(matrix)
    assert "finished" in status.text and f"Sent: {total}" in status.text
    assert "Failed: 0" in status.text and "Pending: 0" in status.text
    assert fake.flood_violations() == []
    assert fake.stats.flood_429 == 0


# -- crashes -------------------------------------------------------------------------------


@asynccontextmanager
async def bot_process(config: Path, log: Path) -> AsyncIterator[asyncio.subprocess.Process]:
    """`python main.py --config CONFIG run` as its own process; stopped with SIGTERM (then
    SIGKILL) by its pid afterwards unless the test killed it already."""
    env = {k: v for k, v in os.environ.items() if "proxy" not in k.lower()}
    env["PTB_TIMEDELTA"] = "true"
    with log.open("ab") as output:
        process = await asyncio.create_subprocess_exec(
            sys.executable, "main.py", "--config", str(config), "run", cwd=ROOT, env=env,
            stdin=asyncio.subprocess.DEVNULL, stdout=output, stderr=output)
    try:
        yield process
    finally:
        if process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(process.pid, signal.SIGTERM)
            try:
                await asyncio.wait_for(process.wait(), 10)
            except TimeoutError:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(process.pid, signal.SIGKILL)
                await process.wait()


async def test_a_bot_killed_mid_broadcast_resumes_it_losing_nothing(
    fake: FakeTelegram, tmp_path: Path
) -> None:
    chats = range(10_001, 10_301)
    for chat in chats:
        fake.add_private_chat(chat)
    config_path = tmp_path / "config.yaml"
    config_path.write_text(yaml.safe_dump({
        "statements": str(STATEMENTS), "database": str(tmp_path / "bot.sqlite3"),
        "organisers": {"telegram": [ORGANISER]},
        "telegram": {"token": TOKEN, "base_url": fake.api_url, "rate": 100},
    }), encoding="utf-8")
    app = await App.start(load_config(config_path, environ={}))
    try:
        await subscribe(app, "telegram", dict.fromkeys(chats, "en"))
        broadcast = await app.outbox.create("telegram", str(ORGANISER), str(ORGANISER), "text",
                                            {"variants": {"*": "Rally"}, "languages": None})
        assert await app.outbox.confirm(broadcast.id)
    finally:
        await app.close()

    log = tmp_path / "bot.log"

    async def until(check: Callable[[], bool], what: str) -> None:
        try:
            await fake.wait_until(check, WAIT, what)
        except TimeoutError as error:  # show what the bot said
            raise AssertionError(f"{error}\n{log.read_text(errors='replace')[-3000:]}") from None

    async with bot_process(config_path, log) as first:
        await until(lambda: delivered(fake, chats) >= 100, "100 messages")
        first.kill()  # SIGKILL: no chance to record anything more
        await first.wait()
    at_crash = delivered(fake, chats)
    assert at_crash < len(chats)

    async with bot_process(config_path, log):
        await until(lambda: final_report(fake) is not None, "the final report")
    counts = [fake.stats.sent_by_chat[chat] for chat in chats]
    duplicated = sum(1 for count in counts if count > 1)
    assert min(counts) == 1 and max(counts) <= 2
    assert duplicated <= 3, f"{duplicated} chats got it twice"  # those in flight at the kill
    [status] = status_messages(fake)  # the restarted bot went on editing the same message
    assert "finished" in status.text and f"Sent: {len(chats)}" in status.text
    with contextlib.closing(sqlite3.connect(tmp_path / "bot.sqlite3")) as db:
        assert db.execute("SELECT status, count(*) FROM deliveries GROUP BY status").fetchall() \
            == [("sent", len(chats))]
        assert db.execute("SELECT status FROM broadcasts").fetchall() == [("done",)]
    assert fake.flood_violations() == []


async def test_matrix_resends_after_a_crash_are_stored_once(
    synapse_server: SynapseServer, tmp_path: Path  # noqa: F811
) -> None:
    """The state a SIGKILL leaves behind when Synapse had accepted every message but none
    was recorded yet: all rows pending again. The restarted bot, on the same device
    (its login is kept in the store), sends each again with the same transaction id,
    and Synapse answers with the event it already has instead of posting a second."""
    account = await synapse_server.aregister_user(unique_localpart("bot"))
    config = Config(statements=STATEMENTS, database=tmp_path / "bot.sqlite3",
                    matrix=matrix_config(synapse_server, account, tmp_path, password=True))
    sent = "SELECT id, message_id FROM deliveries WHERE status='sent' ORDER BY id"
    async with AsyncExitStack() as stack:
        person = await friend(synapse_server, tmp_path, stack)
        async with running(config) as bot:
            db = bot.app.storage.db
            rooms = await rooms_with(person, account.user_id, 3)
            await subscribe(bot.app, "matrix", dict.fromkeys(rooms, "en"))
            broadcast = await bot.app.outbox.create("console", "operator", "console", "text",
                                                    {"variants": {"*": "Rally"},
                                                     "languages": None})
            await bot.app.outbox.confirm(broadcast.id)
            await eventually(lambda: ended(bot.app, broadcast.id), "the broadcast")
            async with db.execute(sent) as cursor:
                first_events = await cursor.fetchall()
            await db.execute("UPDATE deliveries SET status='pending', sent_at=NULL,"
                             " message_id=NULL")
            await db.execute("UPDATE broadcasts SET status='running', finished_at=NULL")
        async with running(config) as restarted:
            await eventually(lambda: ended(restarted.app, broadcast.id), "the second run")
            async with restarted.app.storage.db.execute(sent) as cursor:
                assert await cursor.fetchall() == first_events  # the same events
        # A second copy would have come before these, in each room's timeline.
        markers = {room: await person.say(room, "restarted", "m.notice") for room in rooms}
        await person.until(lambda: True if all(
            any(e.event_id == markers[r] for _, e in person.events) for r in rooms) else None)
    assert len(first_events) == len(rooms)
    for room in rooms:
        assert [e.body for e in notices(person, room, account.user_id)] == ["Rally"]


# -- the dispatcher's bookkeeping ------------------------------------------------------------


class SlowPlatform:
    """Takes a while per message, and fails each chat's first attempt now and then: the
    dispatcher keeps re-reading the queue while many rows are in flight."""

    platform = "console"

    def __init__(self) -> None:
        self.delivered: dict[str, int] = {}
        self.failed_once: set[str] = set()

    async def send_part(self, chat_id: str, content: str, delivery_id: int) -> Outcome:
        await asyncio.sleep(random.uniform(0, 0.02))
        if int(chat_id) % 7 == 0 and chat_id not in self.failed_once:
            self.failed_once.add(chat_id)
            return Outcome(False, "network: timed out", chat_id, permanent=False)
        self.delivered[chat_id] = self.delivered.get(chat_id, 0) + 1
        return Outcome(True, chat_id=chat_id, message_id=str(delivery_id))


async def test_rows_in_flight_are_never_started_twice(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(outbox_module, "BACKOFF", 0.01)
    app = await App.start(config_for(tmp_path))
    try:
        chats = [str(n) for n in range(1, 301)]
        await subscribe(app, "console", dict.fromkeys(chats, "en"))
        platform = SlowPlatform()
        runner = BroadcastRunner(app, {"console": platform}, {}, concurrency=8)
        await runner.start()
        try:
            broadcast = await app.outbox.create("console", "operator", "console", "text",
                                                {"variants": {"*": "Rally"},
                                                 "languages": None})
            await app.outbox.confirm(broadcast.id)
            await eventually(lambda: ended(app, broadcast.id), "the broadcast")
        finally:
            await runner.stop()
    finally:
        await app.close()
    assert platform.delivered == dict.fromkeys(chats, 1)


# -- failures ------------------------------------------------------------------------------


class FaultyTelegram(FakeTelegram):
    """The fake, plus chats where every message meets a server error."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.broken: set[int] = set()

    async def _send_message(self, params: _Params) -> dict[str, Any]:
        if params.chat_ref() in self.broken:
            raise _ApiError(500, "Internal Server Error")
        return await super()._send_message(params)


async def test_faults_end_in_delivery_or_a_reason_and_never_stall_the_broadcast(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(outbox_module, "MAX_ATTEMPTS", 3)
    monkeypatch.setattr(outbox_module, "BACKOFF", 0.05)
    ok = [*range(20_001, 20_061), *range(-21_001, -21_007)]
    blocked, kicked, migrated, missing, no_rights, broken = (
        [20_100, 20_101, 20_102], [-21_100], {-21_200: -1_021_200, -21_201: -1_021_201},
        20_300, -1_021_400, 20_400)
    async with FaultyTelegram(token=TOKEN, scale=SCALE) as fake:
        fake.add_private_chat(ORGANISER)
        for chat in [*ok, *blocked, *kicked, *migrated, broken]:
            if chat > 0:
                fake.add_private_chat(chat)
            else:
                fake.add_group(chat, "Group")
        fake.add_channel(no_rights, "Channel", bot_can_post=False)
        for chat in [*blocked, *kicked]:
            fake.block(chat)
        for old, new in migrated.items():
            fake.migrate(old, new)
        fake.broken.add(broken)
        everyone = [*ok, *blocked, *kicked, *migrated, missing, no_rights, broken]
        async with running(config_for(tmp_path, fake)) as bot:
            app = bot.app
            await subscribe(app, "telegram", dict.fromkeys(everyone, "en"))
            broadcast = await app.outbox.create("telegram", str(ORGANISER), str(ORGANISER),
                                                "text", {"variants": {"*": "Rally"},
                                                         "languages": None})
            fake.fail_next("sendMessage", 429, count=4, retry_after=1)
            fake.fail_next("sendMessage", 502, count=3)
            fake.fail_next("sendMessage", 503, description="Service Unavailable", count=2)
            await app.outbox.confirm(broadcast.id)
            await fake.wait_until(lambda: delivered(fake, ok) >= 20, WAIT, "20 messages")
            fake.stall(0.5, "sendMessage")  # every answer slow for a while
            await asyncio.sleep(0.8)
            fake.stall(0)
            await fake.wait_until(lambda: final_report(fake) is not None, WAIT, "the end")
            rows = await deliveries(app)
            report = await app.outbox.report(broadcast.id)
            storage = app.storage
            gone = {chat: await storage.get_subscription("telegram", str(chat))
                    for chat in [*blocked, *kicked, missing]}
            moved = {new: await storage.get_subscription("telegram", str(new))
                     for new in migrated.values()}

    assert fake.stats.injected_failures == 9  # every injected fault was met, and overcome
    for chat in ok:
        assert len(fake.sent_messages(chat)) == 1, chat
    for old, new in migrated.items():
        assert fake.sent_messages(old) == [] and len(fake.sent_messages(new)) == 1
        assert rows["telegram", str(old), 0][0] == "sent"
        subscription = moved[new]
        assert subscription is not None and subscription.active
    for chat in [*blocked, *kicked]:
        status, reason, _ = rows["telegram", str(chat), 0]
        assert status == "failed" and reason and reason.startswith("blocked"), reason
    for chat, subscription in gone.items():
        assert subscription is not None and not subscription.active, chat
    assert rows["telegram", str(missing), 0][:2] == ("failed", "rejected: Chat not found")
    status, reason, _ = rows["telegram", str(no_rights), 0]
    assert status == "failed" and reason and "administrator rights" in reason
    assert rows["telegram", str(broken), 0] == ("failed", "network: Internal Server Error", 3)
    assert report is not None and report.broadcast.status == "done"
    assert report.counts == {"sent": len(ok) + len(migrated),
                             "failed": len(blocked) + len(kicked) + 3}
    assert fake.stats.flood_429 == 0  # the only 429s were the injected ones
    assert fake.flood_violations() == []


# -- priority ------------------------------------------------------------------------------


async def test_a_reply_to_a_person_overtakes_the_broadcast_backlog(
    fake: FakeTelegram, tmp_path: Path
) -> None:
    chats = range(30_001, 31_201)  # about five seconds' worth at the scaled rate
    for chat in chats:
        fake.add_private_chat(chat)
    person = 555
    fake.add_private_chat(person, "Pat", language_code="fr")
    async with running(config_for(tmp_path, fake)) as bot:
        outbox = bot.app.outbox
        await subscribe(bot.app, "telegram", dict.fromkeys(chats, "en"))
        broadcast = await outbox.create("telegram", str(ORGANISER), str(ORGANISER), "text",
                                        {"variants": {"*": "Rally"}, "languages": None})
        await outbox.confirm(broadcast.id)
        await fake.wait_until(lambda: delivered(fake, chats) >= 200, WAIT, "200 messages")
        latencies = []
        for round_ in range(1, 4):
            asked = time.monotonic()
            fake.send_text(person, "/statement fr")
            [*_, reply] = await fake.wait_for_messages(person, round_, WAIT)
            latencies.append(time.monotonic() - asked)
            assert reply.text.startswith("Non à la répression")
            assert await outbox.pending_count({"telegram"}) > 400  # still a long backlog
            await asyncio.sleep(0.2)
        await outbox.cancel(broadcast.id)
    assert max(latencies) < 1.0, latencies  # the backlog is 4 s long at this point
    assert fake.flood_violations() == []
    assert fake.stats.flood_429 == 0


# -- schedule and cancel -------------------------------------------------------------------


async def test_a_scheduled_broadcast_starts_on_time_and_cancelling_keeps_the_rest_unsent(
    fake: FakeTelegram, synapse_server: SynapseServer, tmp_path: Path  # noqa: F811
) -> None:
    chats = range(40_001, 40_101)
    for chat in chats:
        fake.add_private_chat(chat)
    account = await synapse_server.aregister_user(unique_localpart("bot"))
    config = config_for(tmp_path, fake, rate=25,  # Telegram's own pace: 4 s for 100 chats
                        matrix=matrix_config(synapse_server, account, tmp_path))
    async with AsyncExitStack() as stack:
        person = await friend(synapse_server, tmp_path, stack)
        bot = await stack.enter_async_context(running(config))
        rooms = await rooms_with(person, account.user_id, 2)
        await subscribe(bot.app, "telegram", dict.fromkeys(chats, "de"))
        await subscribe(bot.app, "matrix", dict(zip(rooms, ["fr", "de"], strict=True)))

        start = dt.datetime.now(dt.UTC).replace(microsecond=0) + dt.timedelta(seconds=3)
        preview = await ask(fake, ORGANISER,
                            f"/broadcast at {start:%Y-%m-%dT%H:%M:%S} {VARIANTS_TEXT}")
        assert "Scheduled for" in preview.text
        assert "scheduled for" in (await ask(fake, ORGANISER, "/confirm 1")).text
        await asyncio.sleep(max(0.0, start.timestamp() - time.time() - 0.5))
        assert delivered(fake, chats) == 0 and not any(
            notices(person, room, account.user_id) for room in rooms)

        await fake.wait_until(lambda: delivered(fake, chats) >= 15, WAIT, "15 messages")
        assert time.time() >= start.timestamp()
        cancelled = await ask(fake, ORGANISER, "/cancel 1")
        assert "cancelled" in cancelled.text and "Not sent (cancelled):" in cancelled.text
        at_cancel = delivered(fake, chats)
        await fake.wait_until(lambda: final_report(fake) is not None, WAIT, "the final report")
        await asyncio.sleep(1.0)  # anything still to come would come now

        def both_rooms() -> bool | None:
            return True if all(notices(person, room, account.user_id) for room in rooms) \
                else None

        await person.until(both_rooms)
        rows = await deliveries(bot.app)
        report = await bot.app.outbox.report(1)

    sent_chats = {chat for chat in chats if fake.stats.sent_by_chat[chat]}
    assert at_cancel <= len(sent_chats) <= at_cancel + 3  # a few were already on their way
    assert len(sent_chats) < len(chats)
    assert all(fake.stats.sent_by_chat[chat] <= 1 for chat in chats)
    for chat in chats:
        expected = "sent" if chat in sent_chats else "cancelled"
        assert rows["telegram", str(chat), 0][0] == expected, chat
    for room, language in zip(rooms, ["fr", "de"], strict=True):
        assert [e.body for e in notices(person, room, account.user_id)] == [
            expected_text(language)]
        assert rows["matrix", room, 0][0] == "sent"
    assert all(m.text == VARIANTS["de"] for chat in sent_chats
               for m in fake.sent_messages(chat))
    assert report is not None and report.counts == {
        "sent": len(sent_chats) + len(rooms), "cancelled": len(chats) - len(sent_chats)}
    status, _cancel_reply = status_messages(fake)
    assert "cancelled" in status.text
    assert f"Not sent (cancelled): {len(chats) - len(sent_chats)}" in status.text
    assert f"Sent: {len(sent_chats) + len(rooms)}" in status.text
    assert fake.flood_violations() == []
