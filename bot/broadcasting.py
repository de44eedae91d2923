"""Runs broadcasts: one dispatcher per platform, the scheduler, and live progress.

While a broadcast runs, the organiser's status message is edited every few seconds with
the counts (few enough edits for Telegram's limits); at the end it shows the final report.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import Protocol

from bot.app import App
from bot.dispatcher import Dispatcher, PartSender
from bot.document import Document
from bot.outbox import Broadcast
from handlers.broadcast import report_blocks

log = logging.getLogger(__name__)

REPORT_INTERVAL = 5.0
SCHEDULER_TICK = 1.0


class StatusBoard(Protocol):
    """Shows a status message in a chat: sends it the first time, then edits it."""

    async def show_status(self, chat_id: str, message_id: str | None,
                          blocks: Document) -> str | None: ...


class BroadcastRunner:
    def __init__(self, app: App, senders: dict[str, PartSender],
                 boards: dict[str, StatusBoard], concurrency: int = 32,
                 report_interval: float = REPORT_INTERVAL) -> None:
        self.app = app
        self.boards = boards
        self.report_interval = report_interval
        self._wakeup = app.outbox.listen()
        # a dispatcher that ran dry wakes the reporter, so the final report comes at once
        self.dispatchers = [Dispatcher(app.outbox, platform, sender, concurrency,
                                       on_idle=self._wakeup.set)
                            for platform, sender in senders.items()]
        self._tasks: list[asyncio.Task[None]] = []
        self._reporting = asyncio.Lock()
        self._shown: dict[int, Document] = {}  # what each status message shows now
        self._settling: set[int] = set()  # ended in the last round: shown once more

    async def start(self) -> None:
        self._tasks = [asyncio.create_task(d.run(), name=f"dispatch-{d.platform}")
                       for d in self.dispatchers]
        self._tasks.append(asyncio.create_task(self._schedule(), name="broadcast-scheduler"))
        self._tasks.append(asyncio.create_task(self._report(), name="broadcast-progress"))

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        for dispatcher in self.dispatchers:
            await dispatcher.stop()
        await self.app.outbox.flush()

    async def _schedule(self) -> None:
        """Start scheduled broadcasts when their time comes (also after a restart)."""
        outbox = self.app.outbox
        while True:
            try:
                for broadcast_id in await outbox.due():
                    created = await outbox.start(broadcast_id)
                    log.info("scheduled broadcast #%d started: %d deliveries", broadcast_id,
                             created)
            except Exception:
                log.exception("scheduler failed; retrying")
            await asyncio.sleep(SCHEDULER_TICK)

    async def _report(self) -> None:
        """Edit each running broadcast's status message; show the final report at the end."""
        while True:
            try:
                await self.report_once()
            except Exception:
                log.exception("progress report failed; retrying")
            self._wakeup.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wakeup.wait(), self.report_interval)

    async def report_once(self) -> None:
        """Show every running broadcast's progress, and the final report of each that
        ended. An ended one is shown once more in the next round, for the messages that
        were already on their way when it was cancelled."""
        outbox = self.app.outbox
        async with self._reporting:  # one round at a time, so each final report is shown
            for broadcast in await outbox.running():
                await self._show(broadcast)
            ended = {*await outbox.finish_completed(), *outbox.take_cancelled()}
            for broadcast_id in sorted(ended | self._settling):
                broadcast = await outbox.get(broadcast_id)
                if broadcast is not None and broadcast.started_at is not None:
                    await self._show(broadcast)
            for broadcast_id in self._settling - ended:
                self._shown.pop(broadcast_id, None)
            self._settling = ended

    async def _show(self, broadcast: Broadcast) -> None:
        board = self.boards.get(broadcast.author_platform)
        if board is None:
            return
        report = await self.app.outbox.report(broadcast.id)
        if report is None:
            return
        chat = await self.app.storage.get_chat(broadcast.author_platform, broadcast.origin_chat)
        translator = self.app.translator
        ui = translator.ui_language(chat.language if chat else None, self.app.config.language)
        blocks = report_blocks(translator(ui), report)
        if self._shown.get(broadcast.id) == blocks:
            return  # an edit that changes nothing still counts against the limits
        message_id = await board.show_status(broadcast.origin_chat, broadcast.status_message,
                                             blocks)
        self._shown[broadcast.id] = blocks
        if message_id and message_id != broadcast.status_message:
            await self.app.outbox.set_status_message(broadcast.id, message_id)

    async def drain(self, platforms: set[str], timeout: float) -> None:
        """Wait (bounded) until nothing is pending for `platforms`, e.g. before exiting."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and await self.app.outbox.pending_count(platforms):
            await asyncio.sleep(0.05)
        await self.report_once()
