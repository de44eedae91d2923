"""Round-trip latency of the Matrix adapter, against a bare matrix-nio bot.

Starts its own Synapse (tests/fakes/synapse.py), then one person sends `!statement fr`
to this bot's MatrixAdapter and to a bare matrix-nio bot that answers with fixed notices
of the same size, alternating between the two so that drift hits both alike. Prints the
median and p99 of "command sent → last reply part received" and their ratio; the goal
is that the adapter (storage, handlers, rendering, flood control) costs at most 10 %.

    python bench/matrix_latency.py [--rounds 50]
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import math
import statistics
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from nio import (  # noqa: E402
    AsyncClient,
    AsyncClientConfig,
    MatrixRoom,
    RoomCreateResponse,
    RoomMessageText,
    RoomSendResponse,
    SyncResponse,
)

from bot.adapters.matrix import MatrixAdapter, as_reply  # noqa: E402
from bot.app import App  # noqa: E402
from bot.config import Config, MatrixConfig  # noqa: E402
from bot.protocol import ChatRef, Request  # noqa: E402
from bot.render.matrix import render_parts  # noqa: E402
from handlers import handle_request  # noqa: E402
from tests.fakes.synapse import RegisteredUser, SynapseServer, unique_localpart  # noqa: E402

COMMAND = "!statement fr"
WARM_UP = 3
TIMEOUT = 30.0
PLAIN = AsyncClientConfig(encryption_enabled=False)


def client_for(server: SynapseServer, account: RegisteredUser) -> AsyncClient:
    client = AsyncClient(server.url, account.user_id, config=PLAIN)
    client.restore_login(account.user_id, account.device_id, account.access_token)
    return client


def percentile(values: list[float], share: float) -> float:
    """Nearest-rank percentile: p99 of 50 values is the largest."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(share * len(ordered)) - 1)]


class BareBot:
    """The baseline: answers each command at once with precomputed contents."""

    def __init__(self, client: AsyncClient, contents: list[dict[str, Any]]) -> None:
        self.client = client
        self.contents = contents
        client.add_event_callback(self._on_text, RoomMessageText)

    async def _on_text(self, room: MatrixRoom, event: RoomMessageText) -> None:
        if event.body == COMMAND:
            for content in self.contents:
                await self.client.room_send(room.room_id, "m.room.message",
                                            as_reply(content, event.event_id))


class Person:
    """Sends commands and notes when each reply part arrives, syncing in the background."""

    def __init__(self, client: AsyncClient) -> None:
        self.client = client
        self.arrivals: defaultdict[str, list[float]] = defaultdict(list)
        self.changed = asyncio.Condition()

    async def listen(self) -> None:
        timeline = {"room": {"timeline": {"limit": 100}}}
        while True:
            response = await self.client.sync(timeout=30_000, sync_filter=timeline)
            if not isinstance(response, SyncResponse):
                continue
            now = time.perf_counter()
            for info in response.rooms.join.values():
                for event in info.timeline.events:
                    relation = event.source.get("content", {}).get("m.relates_to") or {}
                    target = (relation.get("m.in_reply_to") or {}).get("event_id")
                    if target:
                        self.arrivals[target].append(now)
            async with self.changed:
                self.changed.notify_all()

    async def round_trip(self, room_id: str, parts: int) -> float:
        started = time.perf_counter()
        response = await self.client.room_send(room_id, "m.room.message",
                                               {"msgtype": "m.text", "body": COMMAND})
        assert isinstance(response, RoomSendResponse), response
        async with self.changed:
            await asyncio.wait_for(self.changed.wait_for(
                lambda: len(self.arrivals[response.event_id]) >= parts), TIMEOUT)
        return self.arrivals[response.event_id][parts - 1] - started


async def reply_contents(app: App) -> list[dict[str, Any]]:
    """What the adapter sends for the command, so the baseline sends as many bytes."""
    request = Request(ChatRef("matrix", "!bench", "group"), "@bench:localhost", COMMAND)
    replies = await handle_request(app.context("!"), request)
    return [part for reply in replies for part in render_parts(reply.blocks)]


async def room_with(person: Person, user_id: str) -> str:
    response = await person.client.room_create(invite=[user_id])
    assert isinstance(response, RoomCreateResponse), response
    return response.room_id


async def adapter_joins(adapter: MatrixAdapter, room_id: str) -> None:
    """The adapter accepts the person's invite on its own."""
    async def joined() -> None:
        while room_id not in adapter.client.rooms:
            await asyncio.sleep(0.02)

    await asyncio.wait_for(joined(), TIMEOUT)


async def measure(server: SynapseServer, workdir: Path, rounds: int) -> None:
    accounts = [await server.aregister_user(unique_localpart(name))
                for name in ("adapter", "bare", "person")]
    adapter_account, bare_account, person_account = accounts
    config = Config(statements=ROOT / "statements", database=workdir / "bot.sqlite3",
                    matrix=MatrixConfig(homeserver=server.url, user_id=adapter_account.user_id,
                                        access_token=adapter_account.access_token,
                                        device_id=adapter_account.device_id,
                                        store=workdir / "matrix",
                                        allowed_inviters=[person_account.user_id]))
    app = await App.start(config)
    adapter = MatrixAdapter(app)
    bare = client_for(server, bare_account)
    person = Person(client_for(server, person_account))
    tasks: list[asyncio.Task[Any]] = []
    try:
        contents = await reply_contents(app)
        await adapter.start()
        rooms = {"MatrixAdapter": await room_with(person, adapter.user_id),
                 "bare matrix-nio": await room_with(person, bare_account.user_id)}
        await adapter_joins(adapter, rooms["MatrixAdapter"])
        await bare.join(rooms["bare matrix-nio"])
        await bare.sync()  # the baseline starts after its join, like the adapter
        BareBot(bare, contents)
        tasks = [asyncio.create_task(bare.sync_forever(timeout=30_000)),
                 asyncio.create_task(person.listen())]
        samples = await alternate(person, rooms, len(contents), rounds)
        report(samples, len(contents), sum(len(str(c["body"]).encode()) for c in contents),
               rounds)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await adapter.stop()
        await app.close()
        await bare.close()
        await person.client.close()


async def alternate(person: Person, rooms: dict[str, str], parts: int,
                    rounds: int) -> dict[str, list[float]]:
    samples: dict[str, list[float]] = {name: [] for name in rooms}
    order = list(rooms)
    for number in range(WARM_UP + rounds):
        for name in order if number % 2 else reversed(order):
            seconds = await person.round_trip(rooms[name], parts)
            if number >= WARM_UP:
                samples[name].append(seconds)
    return samples


def report(samples: dict[str, list[float]], parts: int, body_bytes: int, rounds: int) -> None:
    print(f"Matrix round trip for {COMMAND!r}: {parts} part(s), {body_bytes} bytes of body, "
          f"{rounds} commands each")
    print(f"{'':18}{'median':>10}{'p99':>10}")
    for name, values in samples.items():
        print(f"{name:18}{statistics.median(values) * 1000:>8.1f}ms"
              f"{percentile(values, 0.99) * 1000:>8.1f}ms")
    ours, bare = samples["MatrixAdapter"], samples["bare matrix-nio"]
    median_ratio = statistics.median(ours) / statistics.median(bare)
    p99_ratio = percentile(ours, 0.99) / percentile(bare, 0.99)
    print(f"{'ratio':18}{median_ratio:>10.2f}{p99_ratio:>10.2f}   (goal: at most 1.10)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=50, help="commands per bot")
    rounds = parser.parse_args().rounds
    logging.basicConfig(level=logging.WARNING)
    with tempfile.TemporaryDirectory(prefix="matrix-bench-") as workdir:
        server = SynapseServer(Path(workdir) / "synapse")
        server.start()
        try:
            asyncio.run(measure(server, Path(workdir), rounds))
        finally:
            server.stop()


if __name__ == "__main__":
    main()
