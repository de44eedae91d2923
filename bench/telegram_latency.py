"""Round-trip latency of the Telegram adapter, against a bare python-telegram-bot bot.

Each bot talks to its own fake Bot API server (tests/fakes/telegram_api.py) over HTTP on
127.0.0.1. The fakes enforce Telegram's flood limits, scaled up (`--scale`) so that this
load never reaches them, and the adapter's flood control is set to the same limits: what
is measured is what the adapter adds (storage, handlers, rendering, flood control
bookkeeping), not waiting for Telegram's pace. 100 users send `/statement fr` at once,
then, once every answer is in, `/demands de` at once; each user has one command
outstanding at a time. The bare bot is an Application with concurrent updates and two
CommandHandlers that send the very HTML parts the adapter sends. The two bots take turns
command by command, so that drift hits both alike and neither bot's idle HTTP connections
expire between its turns (httpx drops them after 5 s; reconnecting would then dominate).
A round trip is "update injected into the fake → last reply part accepted by the fake",
both on the fake's clock. Prints the median and p99 of each and their ratio; the goal is
at most 1.10.

    python bench/telegram_latency.py [--users 100] [--rounds 10] [--scale 1000]
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import math
import os
import statistics
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Callable, Coroutine
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, Protocol

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("PTB_TIMEDELTA", "true")

from telegram import LinkPreviewOptions, Update  # noqa: E402
from telegram.constants import ParseMode  # noqa: E402
from telegram.ext import Application, ApplicationBuilder, CommandHandler, ContextTypes  # noqa: E402

from bot.adapters.telegram import TelegramAdapter  # noqa: E402
from bot.adapters.telegram_limiter import telegram_flood_control  # noqa: E402
from bot.app import App  # noqa: E402
from bot.config import Config, TelegramConfig  # noqa: E402
from bot.protocol import ChatRef, Request  # noqa: E402
from bot.render.telegram import render_parts  # noqa: E402
from handlers import handle_request  # noqa: E402
from tests.fakes.telegram_api import DEFAULT_TOKEN, FakeTelegram  # noqa: E402

COMMANDS = ("/statement fr", "/demands de")
FIRST_USER = 10_000
WARM_UP = 1
TIMEOUT = 60.0
TELEGRAM_RATE = 30.0  # messages per second, Telegram's overall limit

Handler = Callable[[Update, ContextTypes.DEFAULT_TYPE], Coroutine[Any, Any, None]]


class Bot(Protocol):
    async def stop(self) -> None: ...


def percentile(values: list[float], share: float) -> float:
    """Nearest-rank percentile."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(share * len(ordered)) - 1)]


async def reply_parts(app: App) -> dict[str, list[str]]:
    """The HTML parts the adapter sends for each command, for the bare bot to send."""
    parts = {}
    for command in COMMANDS:
        request = Request(ChatRef("telegram", str(FIRST_USER), "private"), str(FIRST_USER),
                          command)
        replies = await handle_request(app.context("/"), request)
        parts[command] = [part for reply in replies for part in render_parts(reply.blocks)]
    return parts


class BareBot:
    """The baseline: python-telegram-bot answering with precomputed parts."""

    def __init__(self, fake: FakeTelegram, parts: dict[str, list[str]]) -> None:
        self.application: Application[Any, Any, Any, Any, Any, Any] = (
            ApplicationBuilder().token(fake.token).base_url(fake.api_url)
            .concurrent_updates(True).build())
        for command, texts in parts.items():
            name = command.split()[0].lstrip("/")
            self.application.add_handler(CommandHandler(name, self._answer(texts)))

    @staticmethod
    def _answer(texts: list[str]) -> Handler:
        async def answer(update: Update, _context: ContextTypes.DEFAULT_TYPE) -> None:
            assert update.effective_chat is not None
            for text in texts:
                await update.effective_chat.send_message(
                    text, parse_mode=ParseMode.HTML,
                    link_preview_options=LinkPreviewOptions(is_disabled=True))
        return answer

    async def start(self) -> None:
        await self.application.initialize()
        await self.application.start()
        assert self.application.updater is not None
        await self.application.updater.start_polling(timeout=30)

    async def stop(self) -> None:
        assert self.application.updater is not None
        await self.application.updater.stop()
        await self.application.stop()
        await self.application.shutdown()


async def phase(fake: FakeTelegram, users: list[int], command: str, parts: int) -> list[float]:
    """Every user sends `command` at once; each one's round trip once all are answered."""
    expected = fake.stats.sent + parts * len(users)
    sent_before = {user: fake.stats.sent_by_chat[user] for user in users}
    injected = {}
    for user in users:
        injected[user] = time.monotonic()
        fake.send_text(user, command)
    await fake.wait_until(lambda: fake.stats.sent >= expected, TIMEOUT, f"{expected} messages")
    samples = []
    for user in users:
        replies = fake.sent_messages(user)[sent_before[user]:]
        assert len(replies) == parts, (command, [reply.text[:40] for reply in replies])
        samples.append(replies[-1].sent_at - injected[user])
    return samples


@asynccontextmanager
async def fake_with_users(users: list[int], scale: float) -> AsyncIterator[FakeTelegram]:
    async with FakeTelegram(token=DEFAULT_TOKEN, scale=scale) as fake:
        for user in users:
            fake.add_private_chat(user, language_code="en")
        yield fake


async def measure(workdir: Path, user_count: int, rounds: int, scale: float) -> None:
    users = list(range(FIRST_USER, FIRST_USER + user_count))
    async with fake_with_users(users, scale) as ours, fake_with_users(users, scale) as theirs:
        config = Config(statements=ROOT / "statements", database=workdir / "bot.sqlite3",
                        telegram=TelegramConfig(token=DEFAULT_TOKEN, base_url=ours.api_url))
        app = await App.start(config)
        bots: list[Bot] = []
        try:
            parts = await reply_parts(app)
            adapter = TelegramAdapter(
                app, telegram_flood_control(TELEGRAM_RATE * scale, scale), poll_timeout=30)
            await adapter.start()
            bots.append(adapter)
            bare = BareBot(theirs, parts)
            await bare.start()
            bots.append(bare)
            fakes = {"TelegramAdapter": ours, "bare PTB": theirs}
            samples: dict[str, list[float]] = {name: [] for name in fakes}
            for number in range(WARM_UP + rounds):
                for command in COMMANDS:
                    order = list(fakes) if number % 2 else list(reversed(fakes))
                    for name in order:
                        values = await phase(fakes[name], users, command, len(parts[command]))
                        if number >= WARM_UP:
                            samples[name].extend(values)
        finally:
            for bot in reversed(bots):
                await bot.stop()
            await app.close()
        report(samples, parts, user_count, rounds, fakes)


def report(samples: dict[str, list[float]], parts: dict[str, list[str]], users: int,
           rounds: int, fakes: dict[str, FakeTelegram]) -> None:
    shapes = ", ".join(f"{command!r}: {len(texts)} part(s), {sum(len(t) for t in texts)} chars"
                       for command, texts in parts.items())
    print(f"Telegram round trip, {users} users at once, {rounds} rounds ({shapes})")
    print(f"{'':18}{'median':>10}{'p99':>10}{'429s':>7}  flood violations")
    for name, values in samples.items():
        fake = fakes[name]
        print(f"{name:18}{statistics.median(values) * 1000:>8.1f}ms"
              f"{percentile(values, 0.99) * 1000:>8.1f}ms{fake.stats.flood_429:>7}  "
              f"{fake.flood_violations() or 'none'}")
    ours, bare = samples["TelegramAdapter"], samples["bare PTB"]
    median_ratio = statistics.median(ours) / statistics.median(bare)
    p99_ratio = percentile(ours, 0.99) / percentile(bare, 0.99)
    print(f"{'ratio':18}{median_ratio:>10.2f}{p99_ratio:>10.2f}   (goal: at most 1.10)")


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--users", type=int, default=100, help="users sending at once")
    parser.add_argument("--rounds", type=int, default=10, help="measured rounds per bot")
    parser.add_argument("--scale", type=float, default=1000.0,
                        help="speed-up of Telegram's flood limits, for fake and adapter alike")
    arguments = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    with tempfile.TemporaryDirectory(prefix="telegram-bench-") as workdir:
        asyncio.run(measure(Path(workdir), arguments.users, arguments.rounds, arguments.scale))


if __name__ == "__main__":
    main()
