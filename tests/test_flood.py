"""FloodControl on its own: per-chat windows, the global pace, priorities and pauses.

Times are real but short: the limits are set so that each test takes well under 3 s.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import Hashable

import pytest

from bot import flood as flood_module
from bot.flood import FloodControl, Priority, Withdrawn, still_wanted

LIMITS = {"private": (1, 0.1), "group": (3, 0.3)}


async def send(flood: FloodControl, chat: Hashable, kind: str = "room",
               priority: Priority = Priority.BULK, paid: bool = False) -> float:
    """Take a slot as a sender would; returns when the message would have left."""
    async with flood.slot(chat, kind, priority, paid):
        return time.monotonic()


def most_in_any_window(times: list[float], period: float) -> int:
    """Like the fake Telegram: events within (t - period, t] for each event t."""
    times = sorted(times)
    first, most = 0, 0
    for last, moment in enumerate(times):
        while moment - times[first] >= period:
            first += 1
        most = max(most, last - first + 1)
    return most


async def test_one_private_chat_gets_one_message_per_window_others_are_not_held() -> None:
    flood = FloodControl(1000, LIMITS)
    started = time.monotonic()
    own = await asyncio.gather(*(send(flood, 1, "private") for _ in range(4)))
    others = await asyncio.gather(*(send(flood, chat, "private") for chat in range(2, 6)))
    gaps = [b - a for a, b in itertools.pairwise(own)]
    assert min(gaps) >= 0.1 * flood_module.WINDOW_MARGIN - 0.002
    assert max(others) - started < 0.4  # the other chats did not wait for chat 1's window


async def test_a_group_gets_its_limit_per_window_and_no_more() -> None:
    flood = FloodControl(1000, LIMITS)
    times = await asyncio.gather(*(send(flood, -1, "group") for _ in range(7)))
    assert most_in_any_window(list(times), 0.3 * flood_module.WINDOW_MARGIN) == 3
    assert times[3] - times[0] >= 0.33 - 0.002


async def test_the_global_pace_is_never_exceeded_in_any_second_despite_a_busy_loop(
) -> None:
    """How close the pace comes to the rate is measured in bench/broadcast.py, not here."""
    rate, count = 100, 250
    flood = FloodControl(rate, {})

    async def busy_loop() -> None:  # other work holding the event loop now and then
        while True:
            time.sleep(0.004)
            await asyncio.sleep(0.01)

    hog = asyncio.create_task(busy_loop())
    try:
        started = time.monotonic()
        times = await asyncio.gather(*(send(flood, n) for n in range(count)))
    finally:
        hog.cancel()
    assert most_in_any_window(list(times), 1.0) <= rate
    assert max(times) - started >= (count - rate) / rate  # bursting would have been faster


async def test_replies_go_before_every_waiting_broadcast_message() -> None:
    flood = FloodControl(20, {})
    order: list[str] = []

    async def tagged(tag: str, priority: Priority) -> None:
        await send(flood, tag, priority=priority)
        order.append(tag)

    bulk = [asyncio.create_task(tagged(f"bulk{n}", Priority.BULK)) for n in range(6)]
    await asyncio.sleep(0.01)  # the bulk messages are queued now; the first has left
    reply = asyncio.create_task(tagged("reply", Priority.REPLY))
    await asyncio.gather(reply, *bulk)
    assert order.index("reply") <= 2  # behind at most the one whose turn had come
    assert [tag for tag in order if tag != "reply"] == [f"bulk{n}" for n in range(6)]


async def test_a_429_pauses_only_its_chat_unless_several_chats_get_one() -> None:
    flood = FloodControl(1000, LIMITS)
    flood.pause(1, 0.5)
    started = time.monotonic()
    other = await send(flood, 2, "private")
    paused = await send(flood, 1, "private")
    assert other - started < 0.05
    assert paused - started >= 0.5 - 0.01

    for chat in (3, 4, 5):  # three chats answered 429 within a second: the bot is too fast
        flood.pause(chat, 0.3)
    started = time.monotonic()
    held = await send(flood, 6, "private")
    assert held - started >= 0.3 - 0.01


async def test_paid_broadcasts_have_a_pace_of_their_own() -> None:
    flood = FloodControl(5, {}, paid_rate=1000)
    free = [asyncio.create_task(send(flood, n)) for n in range(5)]  # a second's worth
    await asyncio.sleep(0.01)
    started = time.monotonic()
    paid = await asyncio.gather(*(send(flood, n, paid=True) for n in range(50)))
    assert max(paid) - started < 0.3  # they did not wait behind the free pace
    assert not all(task.done() for task in free)
    for task in free:
        task.cancel()
    await asyncio.gather(*free, return_exceptions=True)


async def test_a_message_no_longer_wanted_when_its_turn_comes_is_withdrawn() -> None:
    flood = FloodControl(10, {})
    wanted = True
    token = still_wanted.set(lambda: wanted)
    try:
        await send(flood, 1)
        waiting = asyncio.create_task(send(flood, 2))
        await asyncio.sleep(0.01)
        wanted = False  # cancelled while waiting for its turn
        with pytest.raises(Withdrawn):
            await waiting
    finally:
        still_wanted.reset(token)
    await send(flood, 3)  # others go on


async def test_windows_of_idle_chats_are_forgotten() -> None:
    flood = FloodControl(100_000, {"private": (1, 0.01)})
    for chat in range(2000):
        await send(flood, chat, "private")
        if chat == 999:
            await asyncio.sleep(0.02)  # the first thousand chats' windows are all idle now
    assert len(flood._chats["private"]) <= 1001
