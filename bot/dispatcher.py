"""Drains one platform's part of the outbox through its adapter.

Chats are served concurrently (the adapter's flood control paces them); the rows of one
chat go one after another, so the parts of a message arrive in order. One bad chat only
ever occupies one worker, and its retries wait in the database, not in a worker.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from typing import Protocol

from bot.flood import Withdrawn, still_wanted
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
                 concurrency: int = 32, on_idle: Callable[[], None] | None = None) -> None:
        self.outbox = outbox
        self.platform = platform
        self.sender = sender
        self.on_idle = on_idle  # told when the queue has run dry (for the final report)
        self.slots = asyncio.Semaphore(concurrency)
        self.busy_chats: set[str] = set()
        # Chats whose worker finished since the batch being started was read: that batch
        # may still hold their rows as pending although they were sent meanwhile.
        self.released_chats: set[str] = set()
        self.tasks: set[asyncio.Task[None]] = set()
        # set when a broadcast starts or a worker finishes: there may be rows to take
        self.wakeup = outbox.listen()

    async def run(self) -> None:
        """Forever: take the pending rows in order and hand each chat to a worker.

        Each pass walks the queue by id; a chat whose earlier row is still in flight is
        skipped and comes round in the next pass. A pass that starts nothing waits.
        """
        cursor, started, working = 0, 0, False
        while True:
            self.wakeup.clear()
            self.released_chats.clear()
            rows = await self.outbox.next_batch(self.platform, cursor, BATCH)
            if rows:
                cursor = rows[-1].id
                started += await self._start_chats(rows)
                working = True
                continue
            if not started:
                if working and not self.busy_chats:
                    working = False
                    if self.on_idle is not None:
                        self.on_idle()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self.wakeup.wait(), IDLE_WAIT)
            cursor, started = 0, 0

    async def _start_chats(self, rows: list[Delivery]) -> int:
        started = 0
        for chat_id, chat_rows in _by_chat(rows).items():
            if chat_id in self.busy_chats or chat_id in self.released_chats:
                continue
            await self.slots.acquire()
            if chat_id in self.released_chats:  # finished while this one waited for a slot
                self.slots.release()
                continue
            self.busy_chats.add(chat_id)
            task = asyncio.create_task(self._serve_chat(chat_id, chat_rows))
            self.tasks.add(task)
            task.add_done_callback(self.tasks.discard)
            started += 1
        return started

    async def _serve_chat(self, chat_id: str, rows: list[Delivery]) -> None:
        """Send a chat's rows in order; stop at the first that does not go through (its
        retry, and the later parts, wait in the database)."""
        served = {chat_id}
        try:
            for delivery in rows:
                outcome = await self._send(chat_id, delivery)
                if outcome is None:  # its broadcast was cancelled: the row says so already
                    break
                await self.outbox.record(self.platform, delivery, outcome)
                if outcome.chat_id and outcome.chat_id != chat_id:
                    chat_id = outcome.chat_id  # the chat moved; its later rows follow it
                    served.add(chat_id)
                    self.busy_chats.add(chat_id)
                if not outcome.ok:
                    break
        except Exception:  # e.g. the database: the rows stay pending and come round again
            log.exception("%s: serving a chat failed", self.platform)
        finally:
            self.busy_chats.difference_update(served)
            self.released_chats.update(served)
            self.slots.release()
            self.wakeup.set()

    async def _send(self, chat_id: str, delivery: Delivery) -> Outcome | None:
        """Send one row; None when its broadcast was cancelled before it could leave."""
        broadcast = delivery.broadcast_id
        if self.outbox.is_cancelled(broadcast):
            return None
        token = still_wanted.set(lambda: not self.outbox.is_cancelled(broadcast))
        try:
            return await self.sender.send_part(chat_id, delivery.content, delivery.id)
        except Withdrawn:
            return None
        except Exception as error:  # an adapter bug must not stall the broadcast
            log.exception("%s: sending delivery %d failed", self.platform, delivery.id)
            return Outcome(False, f"error: {type(error).__name__}", permanent=False)
        finally:
            still_wanted.reset(token)

    async def stop(self) -> None:
        for task in list(self.tasks):
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)


def _by_chat(rows: list[Delivery]) -> dict[str, list[Delivery]]:
    grouped: dict[str, list[Delivery]] = {}
    for row in rows:
        grouped.setdefault(row.chat_id, []).append(row)
    return grouped
