"""Flood control shared by replies and broadcasts: a global pace, per-chat windows,
pauses from 429 answers, and priority for replies to people over broadcast traffic.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import math
import time
from collections import OrderedDict, deque
from collections.abc import AsyncIterator, Callable, Hashable
from contextlib import asynccontextmanager
from contextvars import ContextVar
from enum import IntEnum

# Per-chat windows are kept a little wider than the platform's, so a message that is
# delayed on the way does not make two arrive inside one of the platform's windows.
WINDOW_MARGIN = 1.1
# How far a send may catch up with the pace when its timer fired late. Without it every
# late wake-up (asyncio sleeps in whole milliseconds) would be lost: at 250 messages/s,
# 1 ms late on each 4 ms step is a fifth of the rate.
TOLERANCE = 0.002
# 429s for this many different chats within GLOBAL_429_WINDOW seconds mean the bot as a
# whole is over the limit, so the global pace pauses too, not just those chats.
GLOBAL_429_CHATS = 3
GLOBAL_429_WINDOW = 1.0


# Set by whoever sends (the broadcast dispatcher) to say whether the message is still
# wanted: checked once a message's turn has come, just before it leaves, so a cancelled
# broadcast stops at once instead of sending everything that was waiting for its turn.
still_wanted: ContextVar[Callable[[], bool] | None] = ContextVar("still_wanted", default=None)


class Withdrawn(Exception):
    """The message was no longer wanted when its turn came; nothing was sent."""


class Priority(IntEnum):
    REPLY = 0  # an answer to someone who is waiting
    BULK = 1  # broadcast traffic


class SlidingWindow:
    """At most `limit` sends in any `period` seconds to one chat (Telegram counts per
    window). Sends to one chat take turns on `lock`, so each is stamped when it leaves
    and the parts of a message leave in order."""

    __slots__ = ("lock", "period", "times")

    def __init__(self, limit: int, period: float) -> None:
        self.period = period
        self.times: deque[float] = deque(maxlen=limit)
        self.lock = asyncio.Lock()

    def delay(self, now: float) -> float:
        if len(self.times) < (self.times.maxlen or 0):
            return 0.0
        return max(0.0, self.times[0] + self.period - now)

    def idle(self, now: float) -> bool:
        """Nobody sending and nothing left in the window: it can be forgotten."""
        return not self.lock.locked() and (not self.times or now - self.times[-1] >= self.period)


class Pace:
    """At most `rate` sends a second overall, handed out by priority, then in order.

    Turns follow a virtual schedule 1/rate apart (the generic cell rate algorithm), so a
    late timer does not lower the rate; `TOLERANCE` bounds how far a late send catches
    up. On top, no window of one second ever holds more than `rate` sends.
    """

    def __init__(self, rate: float) -> None:
        self.interval = 1.0 / rate
        self._due = 0.0  # the theoretical time of the next send
        # when the last `rate` sends went, each stamped again when its sender resumed
        self._last_second: deque[list[float]] = deque(maxlen=max(1, math.floor(rate)))
        self._held_until = 0.0
        self._waiting: list[tuple[int, int, asyncio.Future[list[float]]]] = []
        self._order = itertools.count()
        self._timer: asyncio.TimerHandle | None = None

    def _delay(self, now: float) -> float:
        delay = max(self._held_until, self._due - TOLERANCE) - now
        if len(self._last_second) == self._last_second.maxlen:
            delay = max(delay, self._last_second[0][0] + 1.0 - now)
        return delay

    def _depart(self, now: float) -> list[float]:
        self._due = max(self._due, now) + self.interval
        stamp = [now]
        self._last_second.append(stamp)
        return stamp

    def hold(self, seconds: float) -> None:
        """Send nothing for `seconds` (the platform said the bot as a whole is too fast)."""
        self._held_until = max(self._held_until, time.monotonic() + seconds)

    async def acquire(self, priority: Priority) -> None:
        now = time.monotonic()
        if not self._waiting and self._delay(now) <= 0:
            self._depart(now)
            return
        future: asyncio.Future[list[float]] = asyncio.get_running_loop().create_future()
        heapq.heappush(self._waiting, (priority, next(self._order), future))
        self._arm()
        stamp = await future
        stamp[0] = time.monotonic()  # it really leaves now, maybe later than granted

    def _arm(self) -> None:
        if self._timer is None and self._waiting:
            delay = max(0.0, self._delay(time.monotonic()))
            self._timer = asyncio.get_running_loop().call_later(delay, self._grant)

    def _grant(self) -> None:
        self._timer = None
        now = time.monotonic()
        while self._waiting:
            future = self._waiting[0][2]
            if future.done():  # its sender was cancelled while waiting
                heapq.heappop(self._waiting)
                continue
            if self._delay(now) > 0:
                break
            heapq.heappop(self._waiting)
            future.set_result(self._depart(now))
        self._arm()


class FloodControl:
    """Decides when a message may go: call `slot(chat, kind, priority)` around each send.

    The global pace lets replies to people go before any broadcast message that waits,
    so a reply never queues behind a broadcast's backlog. Paid broadcasts (Telegram's
    allow_paid_broadcast) have a pace of their own. Chat kinds without limits (Matrix
    rooms) only share the global pace. `chat_limits` maps a kind to (messages, seconds).
    """

    def __init__(self, rate: float, chat_limits: dict[str, tuple[int, float]],
                 paid_rate: float | None = None) -> None:
        self.chat_limits = chat_limits
        self._pace = Pace(rate)
        self._paid_pace = Pace(paid_rate) if paid_rate else self._pace
        # one LRU order per kind, whose windows share one period: the oldest goes idle first
        self._chats: dict[str, OrderedDict[Hashable, SlidingWindow]] = {
            kind: OrderedDict() for kind in chat_limits}
        self._paused_until: dict[Hashable, float] = {}
        self._recent_429s: deque[tuple[float, Hashable]] = deque()

    def _window(self, chat: Hashable, kind: str) -> SlidingWindow | None:
        chats = self._chats.get(kind)
        if chats is None:
            return None
        window = chats.get(chat)
        if window is not None:
            chats.move_to_end(chat)
            return window
        _forget_idle(chats)
        limit, period = self.chat_limits[kind]
        window = chats[chat] = SlidingWindow(limit, period * WINDOW_MARGIN)
        return window

    def pause(self, chat: Hashable, seconds: float) -> None:
        """A 429 for this chat: hold its messages, and only its messages, for `seconds`.

        429s for several chats at once concern the bot as a whole: then the global pace
        is held as well, instead of every other chat running into the same wall."""
        now = time.monotonic()
        self._paused_until[chat] = max(now + seconds, self._paused_until.get(chat, 0.0))
        recent = self._recent_429s
        recent.append((now, chat))
        while recent and now - recent[0][0] > GLOBAL_429_WINDOW:
            recent.popleft()
        if len({c for _, c in recent}) >= GLOBAL_429_CHATS:
            self._pace.hold(seconds)
            self._paid_pace.hold(seconds)

    async def _wait_pause(self, chat: Hashable) -> None:
        while (until := self._paused_until.get(chat)) is not None:
            remaining = until - time.monotonic()
            if remaining <= 0:
                self._paused_until.pop(chat, None)
                return
            await asyncio.sleep(remaining)

    @asynccontextmanager
    async def slot(self, chat: Hashable, kind: str, priority: Priority = Priority.REPLY,
                   paid: bool = False) -> AsyncIterator[None]:
        pace = self._paid_pace if paid else self._pace
        window = self._window(chat, kind)
        if window is None:
            await self._wait_pause(chat)
            await pace.acquire(priority)
            _check_wanted()
            yield
            return
        async with window.lock:  # held while sending: one message at a time per chat
            while True:
                await self._wait_pause(chat)
                wait = window.delay(time.monotonic())
                if wait <= 0:
                    break
                await asyncio.sleep(wait)
            await pace.acquire(priority)
            _check_wanted()
            window.times.append(time.monotonic())
            yield


def _check_wanted() -> None:
    wanted = still_wanted.get()
    if wanted is not None and not wanted():
        raise Withdrawn


def _forget_idle(chats: OrderedDict[Hashable, SlidingWindow]) -> None:
    """Drop the least recently used windows that no longer hold anything back, so a
    broadcast to 100,000 chats keeps only its last period's windows in memory."""
    now = time.monotonic()
    while chats:
        oldest = next(iter(chats.values()))
        if not oldest.idle(now):
            return
        chats.popitem(last=False)
