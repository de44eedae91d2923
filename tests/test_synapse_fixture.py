"""The Synapse fixture itself: reachable, usable with matrix-nio, rate limits as documented."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from nio import (
    AsyncClient,
    AsyncClientConfig,
    JoinResponse,
    KeysUploadResponse,
    RoomCreateResponse,
    RoomInviteResponse,
    RoomMessageText,
    RoomSendError,
    RoomSendResponse,
    SyncResponse,
)

from tests.fakes.synapse import (
    RegisteredUser,
    SynapseServer,
    synapse_server,  # noqa: F401
    unique_localpart,
)

# Fail fast instead of nio's default of sleeping and retrying on 429s and timeouts.
PLAIN = AsyncClientConfig(encryption_enabled=False, max_limit_exceeded=0, max_timeouts=0)


@asynccontextmanager
async def nio_client(
    server: SynapseServer, user: RegisteredUser, config: AsyncClientConfig = PLAIN
) -> AsyncIterator[AsyncClient]:
    """A logged-in nio client that is always closed, even when the test fails."""
    client = AsyncClient(server.url, user.user_id, config=config)
    client.access_token = user.access_token
    client.user_id = user.user_id
    client.device_id = user.device_id
    try:
        yield client
    finally:
        await client.close()


def text(body: str) -> dict[str, str]:
    return {"msgtype": "m.text", "body": body}


async def send_burst(
    client: AsyncClient, room_id: str, count: int
) -> list[RoomSendResponse | RoomSendError]:
    """Send up to `count` messages back to back, stopping at the first rejection.

    Stopping matters: Synapse holds every rejected request for 0.5 s before answering 429.
    """
    responses: list[RoomSendResponse | RoomSendError] = []
    for i in range(count):
        resp = await client.room_send(
            room_id, "m.room.message", text(f"burst {i}"), uuid.uuid4().hex
        )
        responses.append(resp)
        if is_limited(resp):
            break
    return responses


def is_limited(resp: RoomSendResponse | RoomSendError) -> bool:
    return isinstance(resp, RoomSendError) and resp.status_code == "M_LIMIT_EXCEEDED"


def test_versions(synapse_server: SynapseServer) -> None:  # noqa: F811
    versions = synapse_server.request("GET", "/_matrix/client/versions")
    assert "v1.1" in versions["versions"]
    assert synapse_server.url.startswith("http://127.0.0.1:")


async def test_two_users_exchange_a_message(synapse_server: SynapseServer) -> None:  # noqa: F811
    alice = synapse_server.register_user(unique_localpart("alice"), "alice-pw")
    bob = synapse_server.register_user(unique_localpart("bob"), "bob-pw")
    async with nio_client(synapse_server, alice) as a, nio_client(synapse_server, bob) as b:
        created = await a.room_create(name="fixture test")
        assert isinstance(created, RoomCreateResponse), created
        room_id = created.room_id
        assert isinstance(await a.room_invite(room_id, bob.user_id), RoomInviteResponse)
        assert isinstance(await b.join(room_id), JoinResponse)

        sent = await a.room_send(room_id, "m.room.message", text("hello bob"), uuid.uuid4().hex)
        assert isinstance(sent, RoomSendResponse), sent

        synced = await b.sync(timeout=0, full_state=True)
        assert isinstance(synced, SyncResponse), synced
        events = synced.rooms.join[room_id].timeline.events
        messages = [(e.sender, e.body) for e in events if isinstance(e, RoomMessageText)]
        assert (alice.user_id, "hello bob") in messages


async def test_default_message_ratelimit_only_for_ratelimited_users(
    synapse_server: SynapseServer,  # noqa: F811
) -> None:
    free = synapse_server.register_user(unique_localpart("free"))
    limited = synapse_server.register_user(unique_localpart("limited"), ratelimited=True)
    async with (
        nio_client(synapse_server, free) as f,
        nio_client(synapse_server, limited) as lim,
    ):
        room = await lim.room_create()
        assert isinstance(room, RoomCreateResponse), room
        limited_burst = await send_burst(lim, room.room_id, 20)
        rejected = limited_burst[-1]
        assert isinstance(rejected, RoomSendError), limited_burst
        assert rejected.status_code == "M_LIMIT_EXCEEDED"
        assert rejected.transport_response is not None
        assert rejected.transport_response.status == 429
        assert rejected.retry_after_ms is not None and rejected.retry_after_ms > 0
        assert len(limited_burst) <= 11  # Synapse's default burst_count is 10

        room = await f.room_create()
        assert isinstance(room, RoomCreateResponse), room
        free_burst = await send_burst(f, room.room_id, 20)
        assert len(free_burst) == 20
        assert all(isinstance(r, RoomSendResponse) for r in free_burst), free_burst

        # The helper for the opposite direction: back to Synapse's default limit.
        synapse_server.restore_ratelimit(free.user_id)
        assert is_limited((await send_burst(f, room.room_id, 20))[-1])
        synapse_server.lift_ratelimit(free.user_id)
        free_again = await send_burst(f, room.room_id, 20)
        assert all(isinstance(r, RoomSendResponse) for r in free_again), free_again


async def test_device_keys_upload(
    synapse_server: SynapseServer,  # noqa: F811
    tmp_path: Path,
) -> None:
    user = synapse_server.register_user(unique_localpart("crypto"))
    config = AsyncClientConfig(encryption_enabled=True, max_limit_exceeded=0, max_timeouts=0)
    client = AsyncClient(synapse_server.url, user.user_id, store_path=str(tmp_path), config=config)
    try:
        client.restore_login(user.user_id, user.device_id, user.access_token)
        uploaded = await client.keys_upload()
        assert isinstance(uploaded, KeysUploadResponse), uploaded
        assert uploaded.signed_curve25519_count > 0
    finally:
        await client.close()


async def test_restart_keeps_port_data_and_tokens(
    synapse_server: SynapseServer,  # noqa: F811
) -> None:
    user = synapse_server.register_user(unique_localpart("survivor"))
    url, pid = synapse_server.url, synapse_server.pid

    async with nio_client(synapse_server, user) as client:
        await synapse_server.arestart()
        synced = await client.sync(timeout=0)
        assert isinstance(synced, SyncResponse), synced

    assert (synapse_server.url, synapse_server.running) == (url, True)
    assert synapse_server.pid != pid
    whoami = synapse_server.request(
        "GET", "/_matrix/client/v3/account/whoami", token=user.access_token
    )
    assert whoami["user_id"] == user.user_id
    assert whoami["device_id"] == user.device_id
