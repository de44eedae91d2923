"""Run the configured platforms (and the console) together in one process."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from typing import Any

from bot.adapters.console import ConsoleAdapter
from bot.app import App
from bot.broadcasting import BroadcastRunner
from bot.config import Config

log = logging.getLogger(__name__)

CONSOLE_DRAIN_SECONDS = 10.0


def platform_adapters(app: App) -> list[Any]:
    adapters: list[Any] = []
    if app.config.telegram_enabled:
        from bot.adapters.telegram import TelegramAdapter

        adapters.append(TelegramAdapter(app))
    if app.config.matrix.enabled:
        from bot.adapters.matrix import MatrixAdapter

        adapters.append(MatrixAdapter(app))
    return adapters


async def serve(config: Config, console: bool) -> None:
    """Start every configured adapter and the broadcast runner; stop on SIGINT/SIGTERM,
    or at the console's end of input when the console is all there is."""
    app = await App.start(config)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stop.set)
    adapters = platform_adapters(app)
    terminal = ConsoleAdapter(app) if console else None
    everyone = [*adapters, *([terminal] if terminal else [])]
    runner = BroadcastRunner(app, {a.platform: a for a in everyone},
                             {a.platform: a for a in everyone})
    started: list[Any] = []
    try:
        for adapter in adapters:
            await adapter.start()
            started.append(adapter)
        await runner.start()
        waits = [asyncio.create_task(stop.wait(), name="stop-signal")]
        if terminal is not None:
            console_task = asyncio.create_task(terminal.run(), name="console")
            if not adapters:
                waits.append(console_task)
        _done, pending = await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
        for task in pending:
            task.cancel()
        if terminal is not None and not adapters and not stop.is_set():
            await runner.drain({terminal.platform}, CONSOLE_DRAIN_SECONDS)
    finally:
        await runner.stop()
        for adapter in reversed(started):
            try:
                await adapter.stop()
            except Exception:
                log.exception("error while stopping %s", type(adapter).__name__)
        await app.close()
