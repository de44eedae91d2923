"""Run the configured platforms (and the console) together in one process."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal

from bot.app import App
from bot.config import Config

log = logging.getLogger(__name__)


async def serve(config: Config, console: bool) -> None:
    """Start every configured adapter; stop on SIGINT/SIGTERM, or at the console's EOF
    when the console is all there is."""
    app = await App.start(config)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stop.set)
    adapters = []
    try:
        if config.telegram_enabled:
            from bot.adapters.telegram import TelegramAdapter

            adapters.append(TelegramAdapter(app))
        if config.matrix.enabled:
            from bot.adapters.matrix import MatrixAdapter

            adapters.append(MatrixAdapter(app))
        for adapter in adapters:
            await adapter.start()
        waits = [asyncio.create_task(stop.wait(), name="stop-signal")]
        if console:
            from bot.adapters.console import run_console

            console_task = asyncio.create_task(run_console(app), name="console")
            if not adapters:
                waits.append(console_task)
        _done, pending = await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
        for task in pending:
            task.cancel()
    finally:
        for adapter in reversed(adapters):
            try:
                await adapter.stop()
            except Exception:
                log.exception("error while stopping %s", type(adapter).__name__)
        await app.close()
