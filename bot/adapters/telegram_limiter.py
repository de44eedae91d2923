"""python-telegram-bot's rate-limiter hook, backed by the shared FloodControl.

Telegram's limits: about 30 messages/s overall, 1/s to one private chat, 20/minute to
one group or channel. Every request that posts a message waits for its slot; a 429 pauses
the chat it concerns and the request is tried again after `retry_after`. Paid broadcasts
(`allow_paid_broadcast`) are paced apart from everything else, at their own rate.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable, Coroutine
from typing import Any

from telegram.error import RetryAfter
from telegram.ext import BaseRateLimiter

from bot.flood import FloodControl, Priority

log = logging.getLogger(__name__)

# Methods that post or change a message count against the flood limits.
LIMITED = frozenset({
    "sendMessage", "editMessageText", "copyMessage", "forwardMessage", "sendPhoto",
    "sendDocument", "sendMediaGroup",
})


def retry_seconds(error: RetryAfter) -> float:
    value = error.retry_after
    return value.total_seconds() if isinstance(value, dt.timedelta) else float(value)


def chat_kind(chat_id: int | str) -> str:
    """Private chats have positive ids; groups and channels negative ones."""
    try:
        return "private" if int(chat_id) > 0 else "group"
    except (TypeError, ValueError):
        return "group"  # @channelusername


def telegram_flood_control(rate: float, scale: float = 1.0,
                           paid_rate: float | None = None) -> FloodControl:
    """Telegram's per-chat windows, optionally scaled (tests and benchmarks run faster).

    `rate` paces everything that is not a paid broadcast; `paid_rate` (when paid
    broadcasts are on) paces those, which Telegram does not count against `rate`."""
    return FloodControl(rate, {"private": (1, 1.0 / scale), "group": (20, 60.0 / scale)},
                        paid_rate)


class TelegramRateLimiter(BaseRateLimiter[Priority]):
    def __init__(self, flood: FloodControl, max_retries: int = 5) -> None:
        self.flood = flood
        self.max_retries = max_retries

    async def initialize(self) -> None:
        """Nothing to set up: FloodControl is created with the adapter."""

    async def shutdown(self) -> None:
        """Nothing to release."""

    async def process_request(
        self,
        callback: Callable[..., Coroutine[Any, Any, bool | dict[str, Any] | list[dict[str, Any]]]],
        args: Any,
        kwargs: dict[str, Any],
        endpoint: str,
        data: dict[str, Any],
        rate_limit_args: Priority | None,
    ) -> bool | dict[str, Any] | list[dict[str, Any]]:
        chat = data.get("chat_id")
        if endpoint not in LIMITED or chat is None:
            return await callback(*args, **kwargs)
        priority = rate_limit_args if rate_limit_args is not None else Priority.REPLY
        paid = bool(data.get("allow_paid_broadcast"))
        attempt = 0
        while True:
            async with self.flood.slot(chat, chat_kind(chat), priority, paid):
                try:
                    return await callback(*args, **kwargs)
                except RetryAfter as error:
                    attempt += 1
                    if attempt > self.max_retries:
                        raise
                    seconds = retry_seconds(error)
                    log.warning("429 for a chat: waiting %.1fs (attempt %d)", seconds, attempt)
                    self.flood.pause(chat, seconds)
