"""Flood control shared by replies and broadcasts: a global pace, per-chat windows,
pauses from 429 answers, and priority for replies to people over broadcast traffic.
"""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict, deque
from collections.abc import AsyncIterator, Hashable
from contextlib import asynccontextmanager
from enum import IntEnum

from aiolimiter import AsyncLimiter

# Per-chat windows are kept a little wider than the platform's, so a message that is
# delayed on the way does not make two arrive inside one of the platform's windows.
WINDOW_MARGIN = 1.1
MAX_TRACKED_CHATS = 100_000


class Priority(IntEnum):
    REPLY = 0  # an answer to someone who is waiting
    BULK = 1  # broadcast traffic


class SlidingWindow:
    """At most `limit` events in any `period` seconds (Telegram counts per window)."""

    def __init__(self, limit: int, period: float) -> None:
        self.limit = limit
        self.period = period
        self._times: deque[float] = deque()
        self._lock = asyncio.Lock()

    def delay(self, now: float) -> float:
        while self._times and now - self._times[0] >= self.period:
            self._times.popleft()
        if len(self._times) < self.limit:
            return 0.0
        return self._times[0] + self.period - now

    async def acquire(self) -> None:
        async with self._lock:  # FIFO per chat keeps the parts of a message in order
            while (wait := self.delay(time.monotonic())) > 0:
                await asyncio.sleep(wait)
            self._times.append(time.monotonic())

    @property
    def idle(self) -> bool:
        return not self._lock.locked() and self.delay(time.monotonic()) == 0.0


class FloodControl:
    """Decides when a message may go: call `slot(chat, kind, priority)` around each send.

    The global pace is a leaky bucket (aiolimiter) with no burst, so the platform never
    sees more than `rate` messages in a second. Bulk senders queue for it one at a time,
    so a reply waits for at most one broadcast message, never for the whole backlog.
    """

    def __init__(self, rate: float, chat_limits: dict[str, tuple[int, float]]) -> None:
        self.rate = rate
        self.chat_limits = chat_limits
        self._global = AsyncLimiter(1, 1 / rate)
        self._bulk_turn = asyncio.Lock()
        self._no_replies_waiting = asyncio.Event()
        self._no_replies_waiting.set()
        self._replies_waiting = 0
        self._chats: OrderedDict[Hashable, SlidingWindow] = OrderedDict()
        self._paused_until: dict[Hashable, float] = {}

    def _window(self, chat: Hashable, kind: str) -> SlidingWindow | None:
        if kind not in self.chat_limits:
            return None
        window = self._chats.get(chat)
        if window is None:
            limit, period = self.chat_limits[kind]
            window = self._chats[chat] = SlidingWindow(limit, period * WINDOW_MARGIN)
            if len(self._chats) > MAX_TRACKED_CHATS:
                self._forget_idle_chats()
        else:
            self._chats.move_to_end(chat)
        return window

    def _forget_idle_chats(self) -> None:
        for key in [k for k, w in list(self._chats.items())[: len(self._chats) // 2] if w.idle]:
            del self._chats[key]

    def pause(self, chat: Hashable, seconds: float) -> None:
        """A 429 for this chat: hold its messages, and only its messages, for `seconds`."""
        until = time.monotonic() + seconds
        self._paused_until[chat] = max(until, self._paused_until.get(chat, 0.0))

    async def _wait_pause(self, chat: Hashable) -> None:
        while (until := self._paused_until.get(chat)) is not None:
            remaining = until - time.monotonic()
            if remaining <= 0:
                self._paused_until.pop(chat, None)
                return
            await asyncio.sleep(remaining)

    async def _global_turn(self, priority: Priority) -> None:
        if priority is Priority.REPLY:
            self._replies_waiting += 1
            self._no_replies_waiting.clear()
            try:
                await self._global.acquire()
            finally:
                self._replies_waiting -= 1
                if not self._replies_waiting:
                    self._no_replies_waiting.set()
            return
        async with self._bulk_turn:
            await self._no_replies_waiting.wait()
            await self._global.acquire()

    @asynccontextmanager
    async def slot(
        self, chat: Hashable, kind: str, priority: Priority = Priority.REPLY
    ) -> AsyncIterator[None]:
        await self._wait_pause(chat)
        window = self._window(chat, kind)
        if window is not None:
            await window.acquire()
        await self._global_turn(priority)
        yield
