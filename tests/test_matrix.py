"""The Matrix adapter against a real Synapse (tests/fakes/synapse.py) on 127.0.0.1.

People are plain matrix-nio clients that remember every event they sync. Whether
something did *not* happen is checked by order: the bot answers one room's commands in
the order they came, so once the answer to a later command is there, an earlier
command that was going to be answered would have been.
"""

from __future__ import annotations

import asyncio
import re
import stat
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack
from pathlib import Path
from types import SimpleNamespace
from typing import Any, TypeVar

import pytest
from nio import (
    AsyncClient,
    AsyncClientConfig,
    EncryptionError,
    ErrorResponse,
    MegolmEvent,
    RoomCreateResponse,
    RoomMemberEvent,
    RoomMessageText,
    RoomPreset,
    RoomSendResponse,
    SyncResponse,
)
from nio.events import Event

from bot.adapters.matrix import (
    MatrixAdapter,
    as_reply,
    inviter_allowed,
    may_manage,
    transaction_id,
)
from bot.adapters.matrix_client import (
    CREDENTIALS_FILE,
    is_transient,
    rate_limit_wait,
    read_session,
)
from bot.adapters.matrix_e2ee import UndecryptedEvents
from bot.app import App
from bot.config import Config, MatrixConfig
from bot.render.plain import render_plain
from tests.conftest import STATEMENTS
from tests.fakes.synapse import (  # noqa: F401  (synapse_server is a fixture)
    RegisteredUser,
    SynapseServer,
    synapse_server,
    unique_localpart,
)

WAIT = 20.0
# Synapse's default timeline limit (10) would hide replies when many arrive at once.
PERSON_FILTER = {"room": {"timeline": {"limit": 200}}}
T = TypeVar("T")


async def within(seconds: float, found: Callable[[], Awaitable[T | None]]) -> T:
    """Poll `found` until it returns something, for at most `seconds`."""
    async def poll() -> T:
        while (result := await found()) is None:
            await asyncio.sleep(0.05)
        return result

    return await asyncio.wait_for(poll(), seconds)


def replied_to(event: Event) -> str | None:
    relation = event.source.get("content", {}).get("m.relates_to") or {}
    return (relation.get("m.in_reply_to") or {}).get("event_id")


def numbered_items(text: str) -> list[str]:
    return re.findall(r"^\d+\. (.+)$", text, re.M)


class Person:
    """Someone in Matrix, on a plain nio client that keeps every event it synced."""

    def __init__(self, client: AsyncClient) -> None:
        self.client = client
        self.events: list[tuple[str, Event]] = []

    @property
    def user_id(self) -> str:
        return self.client.user_id

    async def sync(self) -> None:
        response = await self.client.sync(timeout=300, sync_filter=PERSON_FILTER)
        assert isinstance(response, SyncResponse), response
        for room_id, info in response.rooms.join.items():
            self.events.extend((room_id, event) for event in info.timeline.events)
        if self.client.olm is not None:
            if self.client.should_upload_keys:
                await self.client.keys_upload()
            if self.client.should_query_keys:
                await self.client.keys_query()

    async def until(self, found: Callable[[], T | None], timeout: float = WAIT) -> T:
        """Sync until `found()` returns something (not None), for at most `timeout`."""
        async def check() -> T | None:
            result = found()
            if result is None:
                await self.sync()
            return result

        return await within(timeout, check)

    async def create_room(self, *invite: str, public: bool = False,
                          encrypted: bool = False) -> str:
        state = [{"type": "m.room.encryption", "state_key": "",
                  "content": {"algorithm": "m.megolm.v1.aes-sha2"}}] if encrypted else []
        response = await self.client.room_create(
            invite=invite, initial_state=state,
            preset=RoomPreset.public_chat if public else RoomPreset.private_chat)
        assert isinstance(response, RoomCreateResponse), response
        return response.room_id

    async def say(self, room_id: str, body: str, msgtype: str = "m.text") -> str:
        response = await self.client.room_send(room_id, "m.room.message",
                                               {"msgtype": msgtype, "body": body},
                                               ignore_unverified_devices=True)
        assert isinstance(response, RoomSendResponse), response
        return response.event_id

    def replies_to(self, event_id: str) -> list[Event]:
        return [event for _, event in self.events if replied_to(event) == event_id]

    async def wait_for_reply(self, event_id: str, timeout: float = WAIT) -> Event:
        """Wait until a notice replying to `event_id` arrives; return the first one."""
        return await self.until(lambda: next(iter(self.replies_to(event_id)), None), timeout)

    def membership(self, room_id: str, user_id: str) -> str | None:
        """The latest membership of `user_id` in `room_id` that this person saw."""
        changes = [event.membership for room, event in self.events
                   if room == room_id and isinstance(event, RoomMemberEvent)
                   and event.state_key == user_id]
        return changes[-1] if changes else None

    async def wait_for_membership(self, room_id: str, user_id: str, membership: str) -> None:
        await self.until(lambda: True if self.membership(room_id, user_id) == membership
                         else None)


class Scene:
    """Registers people and bots for one test, and stops and closes all of them after."""

    def __init__(self, server: SynapseServer, tmp_path: Path, cleanup: AsyncExitStack) -> None:
        self.server = server
        self.tmp_path = tmp_path
        self.cleanup = cleanup  # runs every clean-up, last first, even if one fails
        self.people = 0

    async def account(self, prefix: str, ratelimited: bool = False) -> RegisteredUser:
        return await self.server.aregister_user(unique_localpart(prefix),
                                                ratelimited=ratelimited)

    async def person(self, prefix: str = "friend", encrypted: bool = False,
                     account: RegisteredUser | None = None) -> Person:
        account = account or await self.account(prefix)
        self.people += 1
        store = self.tmp_path / f"person-{self.people}"
        store.mkdir()
        client = AsyncClient(self.server.url, account.user_id, store_path=str(store),
                             config=AsyncClientConfig(encryption_enabled=encrypted,
                                                      store_sync_tokens=False))
        self.cleanup.push_async_callback(client.close)
        client.restore_login(account.user_id, account.device_id, account.access_token)
        person = Person(client)
        await person.sync()
        return person

    def config(self, bot: RegisteredUser, *, password: bool = False, **matrix: Any) -> Config:
        credentials = ({"password": bot.password} if password else
                       {"access_token": bot.access_token, "device_id": bot.device_id})
        settings = {"homeserver": self.server.url, "user_id": bot.user_id,
                    "store": self.tmp_path / f"store-{bot.user_id}",
                    "allowed_inviters": [f"@friend-*:{self.server.server_name}"],
                    **credentials, **matrix}
        return Config(statements=STATEMENTS, database=self.tmp_path / f"{bot.user_id}.sqlite3",
                      matrix=MatrixConfig(**settings))

    async def app(self, config: Config) -> App:
        app = await App.start(config)
        self.cleanup.push_async_callback(app.close)
        return app

    async def start(self, app: App) -> MatrixAdapter:
        adapter = MatrixAdapter(app, max_backoff=1.0)
        self.cleanup.push_async_callback(adapter.stop)  # stopping twice is harmless
        await adapter.start()
        await asyncio.wait_for(adapter.ready.wait(), WAIT)
        return adapter

    async def bot(self, ratelimited: bool = False, **matrix: Any) -> MatrixAdapter:
        account = await self.account("bot", ratelimited)
        return await self.start(await self.app(self.config(account, **matrix)))

    async def room_with(self, person: Person, bot: MatrixAdapter, **options: bool) -> str:
        room_id = await person.create_room(bot.user_id, **options)
        await person.wait_for_membership(room_id, bot.user_id, "join")
        return room_id


@pytest.fixture
async def scene(synapse_server: SynapseServer,  # noqa: F811
                tmp_path: Path) -> AsyncIterator[Scene]:
    async with AsyncExitStack() as cleanup:
        yield Scene(synapse_server, tmp_path, cleanup)


# the rules, without a homeserver ---------------------------------------------------


def test_inviter_patterns_match_the_whole_user_id() -> None:
    patterns = ["@*:example.org", "@alice:other.org"]
    assert inviter_allowed("@bob:example.org", patterns)
    assert inviter_allowed("@alice:other.org", patterns)
    assert not inviter_allowed("@bob:other.org", patterns)
    assert not inviter_allowed("@bob:example.org.evil", patterns)
    assert not inviter_allowed("@bob:example.org", [])


def _create(sender: str, version: str, **content: Any) -> dict[str, Any]:
    return {"type": "m.room.create", "sender": sender,
            "content": {"room_version": version, **content}}


def _levels(**content: Any) -> dict[str, Any]:
    return {"type": "m.room.power_levels", "content": content}


def test_managing_needs_state_default_or_being_a_privileged_creator() -> None:
    levels = _levels(users={"@mod:x": 50, "@low:x": 49}, state_default=50)
    v12 = _create("@creator:x", "12", additional_creators=["@co:x"])
    assert may_manage("@creator:x", v12, levels)
    assert may_manage("@co:x", v12, levels)
    assert may_manage("@mod:x", v12, levels)
    assert not may_manage("@low:x", v12, levels)
    assert not may_manage("@anyone:x", v12, levels)
    v11 = _create("@creator:x", "11")  # creators are ordinary members here
    assert not may_manage("@creator:x", v11, levels)
    assert may_manage("@creator:x", v11, _levels(users={"@creator:x": 100}))
    assert not may_manage("@someone:x", v11, _levels(users_default=10))  # state_default 50
    assert may_manage("@someone:x", v11, _levels(users_default=10, state_default=10))
    assert may_manage("@creator:x", v11, None) and not may_manage("@someone:x", v11, None)


def test_replies_mention_nobody_and_retries_reuse_the_transaction_id() -> None:
    content = as_reply({"msgtype": "m.notice", "body": "x"}, "$command")
    assert content["m.relates_to"] == {"m.in_reply_to": {"event_id": "$command"}}
    assert content["m.mentions"] == {}
    assert transaction_id("$command", 0, 1) == transaction_id("$command", 0, 1)
    assert len({transaction_id("$command", 0, 0), transaction_id("$command", 0, 1),
                transaction_id("$command", 1, 0), transaction_id("$other", 0, 0)}) == 4


def _answer(status: int, errcode: str | None, headers: dict[str, str] | None = None,
            **fields: Any) -> ErrorResponse:
    response = ErrorResponse("error", errcode, **fields)
    response.transport_response = SimpleNamespace(status=status,  # type: ignore[assignment]
                                                  headers=headers or {})
    return response


def test_429_waits_as_long_as_the_server_asks() -> None:
    assert rate_limit_wait(_answer(429, "M_LIMIT_EXCEEDED", retry_after_ms=1500)) == 1.5
    assert rate_limit_wait(_answer(429, None, {"Retry-After": "3"})) == 3.0
    assert rate_limit_wait(_answer(403, "M_FORBIDDEN")) is None
    assert is_transient(ErrorResponse("network: ClientConnectorError"))
    assert is_transient(_answer(502, None))
    assert not is_transient(_answer(403, "M_FORBIDDEN"))


class KeylessClient:
    """Just enough of nio's client to ask for room keys and decrypt once they came."""

    def __init__(self) -> None:
        self.outgoing_key_requests: dict[str, object] = {}
        self.has_key = False

    async def request_room_key(self, event: MegolmEvent) -> None:
        self.outgoing_key_requests[event.session_id] = event

    def decrypt_event(self, event: MegolmEvent) -> Event:
        if not self.has_key:
            raise EncryptionError("no session")
        return RoomMessageText.from_dict({
            "type": "m.room.message", "event_id": event.event_id, "sender": event.sender,
            "origin_server_ts": event.server_timestamp,
            "content": {"msgtype": "m.text", "body": "!demands de"}})


async def test_an_unreadable_message_is_answered_once_its_key_arrives() -> None:
    event = MegolmEvent.from_dict({
        "type": "m.room.encrypted", "event_id": "$secret", "sender": "@friend:x",
        "room_id": "!room", "origin_server_ts": int(time.time() * 1000),
        "content": {"algorithm": "m.megolm.v1.aes-sha2", "ciphertext": "AwgA",
                    "sender_key": "key", "session_id": "session", "device_id": "DEVICE"}})
    client, waiting = KeylessClient(), UndecryptedEvents(max_age_seconds=300)
    await waiting.keep(client, event)  # type: ignore[arg-type]
    assert "session" in client.outgoing_key_requests
    assert waiting.decrypt(client, {"session"}) == []  # type: ignore[arg-type]
    client.has_key = True
    assert waiting.decrypt(client, {"other session"}) == []  # type: ignore[arg-type]
    [(room_id, readable)] = waiting.decrypt(client, {"session"})  # type: ignore[arg-type]
    assert room_id == "!room" and readable.body == "!demands de"
    assert waiting.decrypt(client, {"session"}) == []  # type: ignore[arg-type]


# against Synapse ---------------------------------------------------------------------


async def test_invites_are_accepted_only_from_allowed_inviters(scene: Scene) -> None:
    bot = await scene.bot()
    friend, stranger = await scene.person("friend"), await scene.person("stranger")
    welcome = await friend.create_room(bot.user_id)
    unwelcome = await stranger.create_room(bot.user_id)
    await friend.wait_for_membership(welcome, bot.user_id, "join")
    await stranger.wait_for_membership(unwelcome, bot.user_id, "leave")


async def test_statement_fr_arrives_whole_as_a_notice_reply_that_pings_nobody(
    scene: Scene,
) -> None:
    bot = await scene.bot()
    friend = await scene.person()
    room = await scene.room_with(friend, bot)
    command = await friend.say(room, "!statement fr")
    reply = await friend.wait_for_reply(command)
    content = reply.source["content"]
    statement = bot.app.catalog.statements["kazakhstan-repression"].translations["fr"]
    assert content["msgtype"] == "m.notice"
    assert content["m.mentions"] == {}
    assert content["body"].startswith("Non à la répression du peuple !")
    assert render_plain(statement.body) in content["body"]
    assert statement.source in content["body"]
    assert content["format"] == "org.matrix.custom.html"
    assert "<p>" in content["formatted_body"]
    assert len(friend.replies_to(command)) == 1


async def test_demands_and_unknown_languages_are_answered(scene: Scene) -> None:
    bot = await scene.bot()
    friend = await scene.person()
    room = await scene.room_with(friend, bot)
    demands = await friend.say(room, "!demands no")
    unknown = await friend.say(room, "!statement xx")
    assert len(numbered_items((await friend.wait_for_reply(demands)).body)) == 4
    answer = (await friend.wait_for_reply(unknown)).body
    assert "xx" in answer
    for code in ("de", "en", "fr", "no"):
        assert re.search(rf"\b{code} \(", answer), code


async def test_notices_are_never_answered(scene: Scene) -> None:
    bot = await scene.bot()
    friend = await scene.person()
    room = await scene.room_with(friend, bot)
    notice = await friend.say(room, "!statement fr", msgtype="m.notice")
    command = await friend.say(room, "!demands no")
    await friend.wait_for_reply(command)
    assert friend.replies_to(notice) == []


async def test_only_room_managers_may_subscribe_a_group_room(scene: Scene) -> None:
    bot = await scene.bot()
    creator, member = await scene.person(), await scene.person("member")
    room = await creator.create_room(bot.user_id, public=True)
    assert not isinstance(await member.client.join(room), ErrorResponse)
    await creator.wait_for_membership(room, bot.user_id, "join")
    await creator.wait_for_membership(room, member.user_id, "join")
    storage = bot.app.storage

    refused = await member.say(room, "!subscribe fr")
    assert "administrators" in (await member.wait_for_reply(refused)).body
    assert await storage.get_subscription("matrix", room) is None

    accepted = await creator.say(room, "!subscribe fr")
    await creator.wait_for_reply(accepted)
    subscription = await storage.get_subscription("matrix", room)
    assert subscription is not None and subscription.active and subscription.language == "fr"
    chat = await storage.get_chat("matrix", room)
    assert chat is not None and chat.kind == "group"

    direct = await scene.room_with(creator, bot)
    await creator.wait_for_reply(await creator.say(direct, "!subscribe de"))
    chat = await storage.get_chat("matrix", direct)
    assert chat is not None and chat.kind == "private"
    assert (await storage.get_subscription("matrix", direct)).language == "de"  # type: ignore[union-attr]


async def test_a_restart_answers_what_came_while_down_once_and_never_the_old_backlog(
    scene: Scene,
) -> None:
    account = await scene.account("bot")
    friend = await scene.person()
    room = await friend.create_room(account.user_id)
    bot_as_before = await scene.person(account=account)  # the account, before the bot ran
    assert not isinstance(await bot_as_before.client.join(room), ErrorResponse)
    history = await friend.say(room, "!demands no")

    app = await scene.app(scene.config(account, password=True))
    first = await scene.start(app)
    before = await friend.say(room, "!demands no")
    await friend.wait_for_reply(before)
    await first.stop()

    while_down = await friend.say(room, "!demands no")
    second = await scene.start(app)
    await friend.wait_for_reply(while_down)
    after = await friend.say(room, "!demands no")
    await friend.wait_for_reply(after)

    counts = [len(friend.replies_to(e)) for e in (history, before, while_down, after)]
    assert counts == [0, 1, 1, 1]
    assert second.client.device_id == first.client.device_id  # logged in once
    credentials = scene.config(account, password=True).matrix.store / CREDENTIALS_FILE
    assert stat.S_IMODE(credentials.stat().st_mode) == 0o600


async def test_a_revoked_stored_login_is_replaced_on_the_same_device(scene: Scene) -> None:
    account = await scene.account("bot")
    config = scene.config(account, password=True)
    app = await scene.app(config)
    first = await scene.start(app)
    await first.stop()
    revoked = read_session(config.matrix)
    assert revoked is not None
    await asyncio.to_thread(scene.server.request, "POST", "/_matrix/client/v3/logout", {},
                            revoked.access_token)
    second = await scene.start(app)
    renewed = read_session(config.matrix)
    assert renewed is not None and renewed.access_token != revoked.access_token
    assert second.client.device_id == renewed.device_id == revoked.device_id


async def test_a_room_upgrade_takes_the_subscription_along(scene: Scene) -> None:
    bot = await scene.bot()
    friend = await scene.person()
    old = await scene.room_with(friend, bot, public=True)
    await friend.wait_for_reply(await friend.say(old, "!subscribe de"))

    upgrade = await asyncio.to_thread(
        scene.server.request, "POST", f"/_matrix/client/v3/rooms/{old}/upgrade",
        {"new_version": "12"}, friend.client.access_token)
    new = upgrade["replacement_room"]

    async def moved() -> bool | None:
        subscription = await bot.app.storage.get_subscription("matrix", new)
        return True if subscription and subscription.language == "de" else None

    await within(WAIT, moved)
    assert await bot.app.storage.get_subscription("matrix", old) is None
    command = await friend.say(new, "!demands de")
    assert len(numbered_items((await friend.wait_for_reply(command)).body)) == 8


async def test_an_encrypted_room_works_end_to_end(scene: Scene) -> None:
    bot = await scene.bot(encryption=True)
    friend = await scene.person(encrypted=True)
    room = await scene.room_with(friend, bot, encrypted=True)
    command = await friend.say(room, "!demands de")
    reply = await friend.wait_for_reply(command)
    assert reply.decrypted
    assert reply.source["content"]["msgtype"] == "m.notice"
    assert len(numbered_items(reply.body)) == 8


async def test_a_rate_limited_bot_delays_replies_but_loses_none(scene: Scene) -> None:
    bot = await scene.bot(ratelimited=True)
    friend = await scene.person()
    room = await scene.room_with(friend, bot)
    started = time.monotonic()
    commands = [await friend.say(room, "!demands no") for _ in range(15)]

    def all_answered() -> bool | None:
        return True if all(friend.replies_to(c) for c in commands) else None

    await friend.until(all_answered, timeout=60)
    assert [len(friend.replies_to(c)) for c in commands] == [1] * 15
    assert time.monotonic() - started > 4  # Synapse really did hold some back


async def test_the_bot_survives_the_homeserver_going_away(scene: Scene) -> None:
    bot = await scene.bot()
    friend = await scene.person()
    room = await scene.room_with(friend, bot)
    await scene.server.arestart()
    command = await friend.say(room, "!demands no")
    assert len(numbered_items((await friend.wait_for_reply(command)).body)) == 4
