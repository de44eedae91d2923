"""Drains one platform's part of the outbox through its adapter.

Chats are served concurrently (the adapter's flood control paces them); the rows of one
chat go one after another, so the parts of a message arrive in order. One bad chat only
ever occupies one worker, and its retries wait in the database, not in a worker.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Protocol

from bot.outbox import Delivery, Outbox
from bot.protocol import Outcome

log = logging.getLogger(__name__)

BATCH = 500
IDLE_WAIT = 1.0


class PartSender(Protocol):
    """What an adapter offers the dispatcher: send one stored part to one chat."""

    async def send_part(self, chat_id: str, content: str, delivery_id: int) -> Outcome: ...


class Dispatcher:
    def __init__(self, outbox: Outbox, platform: str, sender: PartSender,
                 concurrency: int = 32) -> None:
        self.outbox = outbox
        self.platform = platform
        self.sender = sender
        self.slots = asyncio.Semaphore(concurrency)
        self.busy_chats: set[str] = set()
        self.tasks: set[asyncio.Task[None]] = set()
        # set when a broadcast starts or a worker finishes: there may be rows to take
        self.wakeup = outbox.listen()

    async def run(self) -> None:
        """Forever: take the pending rows in order and hand each chat to a worker.

        Each pass walks the queue by id; a chat whose earlier row is still in flight is
        skipped and comes round in the next pass. A pass that starts nothing waits.
        """
        cursor, started = 0, 0
        while True:
            self.wakeup.clear()
            rows = await self.outbox.next_batch(self.platform, cursor, BATCH)
            if rows:
                cursor = rows[-1].id
                started += await self._start_chats(rows)
                continue
            if not started:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self.wakeup.wait(), IDLE_WAIT)
            cursor, started = 0, 0

    async def _start_chats(self, rows: list[Delivery]) -> int:
        started = 0
        for chat_id, chat_rows in _by_chat(rows).items():
            if chat_id in self.busy_chats:
                continue
            await self.slots.acquire()
            self.busy_chats.add(chat_id)
            task = asyncio.create_task(self._serve_chat(chat_id, chat_rows))
            self.tasks.add(task)
            task.add_done_callback(self.tasks.discard)
            started += 1
        return started

    async def _serve_chat(self, chat_id: str, rows: list[Delivery]) -> None:
        try:
            for delivery in rows:
                try:
                    outcome = await self.sender.send_part(chat_id, delivery.content, delivery.id)
                except Exception as error:  # an adapter bug must not stall the broadcast
                    log.exception("%s: sending delivery %d failed", self.platform, delivery.id)
                    outcome = Outcome(False, f"error: {type(error).__name__}", permanent=False)
                await self.outbox.record(self.platform, delivery, outcome)
                if not outcome.ok:
                    break  # later parts wait until this one is through
                chat_id = outcome.chat_id or chat_id
        finally:
            self.busy_chats.discard(rows[0].chat_id)
            self.slots.release()
            self.wakeup.set()

    async def stop(self) -> None:
        for task in list(self.tasks):
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)


def _by_chat(rows: list[Delivery]) -> dict[str, list[Delivery]]:
    grouped: dict[str, list[Delivery]] = {}
    for row in rows:
        grouped.setdefault(row.chat_id, []).append(row)
    return grouped
