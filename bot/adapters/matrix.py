"""Matrix adapter on matrix-nio: room messages in, neutral requests, notices out.

Commands (`!statement fr`) are answered in every room the bot is in, DMs included, as
`m.notice` replies to the command that mention nobody. Only `m.text` from others is
answered, never notices or the bot's own events, so two bots cannot talk in a loop.
Invites are accepted from `matrix.allowed_inviters` only; room upgrades are followed.
The sync token is stored: after a restart nothing is answered twice, commands sent while
the bot was down are answered if younger than `matrix.backlog_cutoff_seconds`, and what
was said before the bot's very first start is never answered.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import secrets
import time
from collections import defaultdict
from collections.abc import Coroutine, Iterable
from fnmatch import fnmatchcase
from typing import Any

from aiohttp import ClientError
from nio import (
    ErrorResponse,
    JoinResponse,
    MegolmEvent,
    RoomMessageText,
    RoomSendResponse,
    RoomUpgradeEvent,
    SyncError,
    SyncResponse,
)
from nio.events import Event

from bot.app import App
from bot.document import Document
from bot.flood import FloodControl, Priority
from bot.protocol import ChatKind, ChatRef, Outcome, Reply, Request
from bot.render.matrix import render_parts
from handlers import handle_request
from handlers.router import clean_text

from .matrix_client import Backoff, create_client, http_status, log_in, persist, rate_limit_wait
from .matrix_e2ee import UndecryptedEvents, arrived_sessions, trust_new_devices

log = logging.getLogger(__name__)

PLATFORM = "matrix"
SYNC_TIMEOUT_MS = 30_000
SEND_ATTEMPTS = 12
MEMBERSHIP_ATTEMPTS = 8
STOP_GRACE_SECONDS = 10.0
MIN_DEDUP_HORIZON_SECONDS = 86_400.0
SYNC_FILTER = {
    "room": {"timeline": {"limit": 50}, "ephemeral": {"not_types": ["*"]}},
    "presence": {"not_types": ["*"]},
}
CREATE, POWER_LEVELS = "m.room.create", "m.room.power_levels"


def inviter_allowed(user_id: str, patterns: Iterable[str]) -> bool:
    """`matrix.allowed_inviters` patterns (`@*:example.org`) against the full user id."""
    return any(fnmatchcase(user_id, pattern) for pattern in patterns)


def creators_privileged(room_version: str) -> bool:
    """From room version 12 on, creators outrank every power level (MSC4289)."""
    return room_version.isdigit() and int(room_version) >= 12


def _level(value: Any, default: int) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        return default


def may_manage(sender: str, create: dict[str, Any], power_levels: dict[str, Any] | None) -> bool:
    """Whether `sender` may change the room's subscription: a power level of at least
    `state_default` (the power to change the room's settings), or being a creator in a
    room version where creators outrank everyone."""
    content = create.get("content", {})
    creator = content.get("creator", create.get("sender"))
    creators = {create.get("sender"), *content.get("additional_creators", [])}
    if creators_privileged(str(content.get("room_version", "1"))) and sender in creators:
        return True
    if power_levels is None:  # no power levels event: the creator alone has 100
        levels: dict[str, Any] = {"users": {creator: 100}}
    else:
        levels = power_levels.get("content", {})
    users = levels.get("users") or {}
    level = _level(users.get(sender, levels.get("users_default", 0)), 0)
    return level >= _level(levels.get("state_default", 50), 50)


def transaction_id(event_id: str, reply: int, part: int) -> str:
    """The same for every attempt at one reply part, so a retried send never duplicates."""
    digest = hashlib.sha256(f"{event_id}\n{reply}\n{part}".encode()).hexdigest()
    return f"statementbot.{digest[:40]}"


def as_reply(content: dict[str, Any], event_id: str) -> dict[str, Any]:
    """A reply to `event_id` that mentions (and so pings) nobody."""
    return {**content, "m.relates_to": {"m.in_reply_to": {"event_id": event_id}},
            "m.mentions": {}}


def is_edit(event: Event) -> bool:
    relation = event.source.get("content", {}).get("m.relates_to") or {}
    return relation.get("rel_type") == "m.replace"


class MatrixAdapter:
    platform = PLATFORM

    def __init__(self, app: App, flood: FloodControl | None = None, *,
                 sync_timeout_ms: int = SYNC_TIMEOUT_MS, max_backoff: float = 60.0) -> None:
        config = app.config.matrix
        if not config.enabled or config.user_id is None:
            raise ValueError("matrix is not configured (homeserver, user_id and a credential)")
        self.app = app
        self.config = config
        self.user_id: str = config.user_id
        self.ctx = app.context(config.command_prefix)
        self.flood = flood or FloodControl(config.rate, {})
        self.sync_timeout_ms = sync_timeout_ms
        self.max_backoff = max_backoff
        self.client = create_client(config)
        self.ready = asyncio.Event()  # set once the first sync is through
        self._undecrypted = UndecryptedEvents(config.backlog_cutoff_seconds)
        self._room_state: dict[str, dict[str, dict[str, Any]]] = {}
        self._room_turns: defaultdict[str, asyncio.Lock] = defaultdict(asyncio.Lock)
        self._busy: set[str] = set()  # invites and upgrades being acted on
        self._unreadable_rooms: set[str] = set()  # encrypted, with encryption off
        self._tasks: set[asyncio.Task[None]] = set()
        self._sync_task: asyncio.Task[None] | None = None
        self._txn_scope = ""  # this database's, for broadcast transaction ids (see start)
        logging.getLogger("nio").setLevel(logging.WARNING)  # nio logs every event at INFO

    @property
    def _token_key(self) -> str:
        return f"matrix:next_batch:{self.user_id}"

    # running ---------------------------------------------------------------

    async def start(self) -> None:
        """Log in (waiting while the homeserver is unreachable), then sync in the
        background; returns once syncing has started."""
        await log_in(self.client, self.config, self.max_backoff)
        horizon = max(2 * self.config.backlog_cutoff_seconds, MIN_DEDUP_HORIZON_SECONDS)
        await self.app.storage.forget_events_before(time.time() - horizon)
        self._txn_scope = await self._broadcast_txn_scope()
        since = await self.app.storage.get_state(self._token_key)
        self._sync_task = asyncio.create_task(self._sync_forever(since), name="matrix-sync")
        log.info("Matrix: serving as %s (device %s)", self.user_id, self.client.device_id)

    async def stop(self) -> None:
        """Stop syncing, give replies under way a moment to finish, close the client."""
        if self._sync_task is not None:
            self._sync_task.cancel()
            await asyncio.gather(self._sync_task, return_exceptions=True)
        if self._tasks:
            _done, pending = await asyncio.wait(set(self._tasks), timeout=STOP_GRACE_SECONDS)
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)
        await self.client.close()

    async def _broadcast_txn_scope(self) -> str:
        """A random name kept in the database: delivery ids start again at 1 in a new
        database, and the homeserver would take `broadcast.1` for a re-send of an old
        message (and drop it) if the same device had used that transaction id before."""
        key = "matrix:txn_scope"
        scope = await self.app.storage.get_state(key)
        if scope is None:
            scope = secrets.token_hex(6)
            await self.app.storage.set_state(key, scope)
        return scope

    async def _sync_forever(self, since: str | None) -> None:
        """Sync until cancelled; a failed sync backs off (with jitter, capped) and retries.

        The first sync asks for the full state, since nio keeps room state in memory
        only. Without a stored token this is the bot's very first start: that sync's
        timelines are history from before the bot served here, and are not answered.
        """
        backoff = Backoff(cap=self.max_backoff)
        while True:
            first = not self.ready.is_set()
            failure = await self._sync_once(first, since if first else None,
                                            answer=since is not None or not first)
            if failure is not None:
                delay = rate_limit_wait(failure) or backoff.next_delay()
                log.warning("Matrix: sync failed (%s); retrying in %.1fs", failure, delay)
                await asyncio.sleep(delay)
                continue
            backoff.reset()
            if first:
                self.ready.set()
                log.info("Matrix: synced; in %d rooms", len(self.client.rooms))

    async def _sync_once(self, first: bool, since: str | None,
                         answer: bool) -> ErrorResponse | None:
        """One sync and everything it brings; returns what went wrong, if anything."""
        try:
            response = await self.client.sync(
                timeout=0 if first else self.sync_timeout_ms, sync_filter=SYNC_FILTER,
                since=since, full_state=first or None)
            if isinstance(response, SyncError):
                return response
            await self._process(response, answer)
            await self.app.storage.set_state(self._token_key, response.next_batch)
            await self._keep_encryption_going()
        except (ClientError, TimeoutError) as error:
            return ErrorResponse(f"network: {type(error).__name__}")
        except Exception:  # a bug must not end the bot's only sync loop
            log.exception("Matrix: handling a sync failed")
            return ErrorResponse("internal error")
        return None

    def _spawn(self, work: Coroutine[Any, Any, None]) -> None:
        """Act on an event in the background, so a slow send never holds up syncing."""
        task = asyncio.create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._finished)

    def _finished(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("Matrix: handling an event failed", exc_info=task.exception())

    # incoming --------------------------------------------------------------

    async def _process(self, response: SyncResponse, answer: bool) -> None:
        for room_id in response.rooms.invite:
            self._on_invite(room_id)
        for room_id in response.rooms.leave:
            await self._on_leave(room_id)
        for room_id, info in response.rooms.join.items():
            events = (*info.state, *info.timeline.events)
            self._remember_state(room_id, events)
            for event in events:
                if isinstance(event, RoomUpgradeEvent) and event.replacement_room:
                    self._on_upgrade(room_id, event.replacement_room)
            if answer:
                for event in info.timeline.events:
                    await self._on_timeline_event(room_id, event)
        if self.client.olm is not None:
            sessions = arrived_sessions(response.to_device_events)
            for room_id, event in self._undecrypted.decrypt(self.client, sessions):
                self._consider(room_id, event)

    async def _on_timeline_event(self, room_id: str, event: Event) -> None:
        if not isinstance(event, MegolmEvent):
            self._consider(room_id, event)
        elif event.sender == self.user_id or not self._is_recent(event):
            return
        elif self.client.olm is None:
            if room_id not in self._unreadable_rooms:
                self._unreadable_rooms.add(room_id)
                log.warning("Matrix: a room is encrypted but matrix.encryption is off; its "
                            "messages cannot be read")
        else:  # nio could not decrypt it: its key has not arrived yet
            await self._undecrypted.keep(self.client, event)

    def _consider(self, room_id: str, event: Event) -> None:
        if self._wants_answer(room_id, event):
            self._spawn(self._answer(room_id, event))

    def _wants_answer(self, room_id: str, event: Event) -> bool:
        """Recent m.text from someone else: a command, or anything in a DM (which gets
        help). Notices are never answered, so bots do not answer each other."""
        if not isinstance(event, RoomMessageText) or event.sender == self.user_id:
            return False
        if is_edit(event) or not self._is_recent(event):
            return False
        prefix = self.ctx.command_prefix
        return self._chat_kind(room_id) == "private" or clean_text(event.body).startswith(prefix)

    def _is_recent(self, event: Event) -> bool:
        """Younger than the backlog cutoff (by the homeserver's clock against ours)."""
        cutoff = time.time() - self.config.backlog_cutoff_seconds
        return event.server_timestamp >= cutoff * 1000

    async def _answer(self, room_id: str, event: RoomMessageText) -> None:
        async with self._room_turns[room_id]:  # answers leave in the order commands came
            if not await self.app.storage.claim_event(PLATFORM, event.event_id):
                return
            replies = await handle_request(self.ctx, self._request(room_id, event))
            await self.send_replies(room_id, replies, reply_to=event.event_id)

    def _request(self, room_id: str, event: RoomMessageText) -> Request:
        kind = self._chat_kind(room_id)

        async def can_manage() -> bool:
            return self._can_manage(room_id, event.sender, kind)

        return Request(ChatRef(PLATFORM, room_id, kind), event.sender, event.body,
                       can_manage_chat=can_manage)

    def _chat_kind(self, room_id: str) -> ChatKind:
        """A DM is a room with exactly the bot and one other person."""
        room = self.client.rooms.get(room_id)
        return "private" if room is not None and room.joined_count == 2 else "group"

    def _can_manage(self, room_id: str, sender: str, kind: ChatKind) -> bool:
        if kind == "private":
            return True
        state = self._room_state.get(room_id, {})
        create = state.get(CREATE)
        if create is None:
            log.warning("Matrix: no m.room.create seen for a room; refusing to change it")
            return False
        return may_manage(sender, create, state.get(POWER_LEVELS))

    def _remember_state(self, room_id: str, events: Iterable[Event]) -> None:
        """Keep the raw create and power-levels events: nio models neither room version
        12's creators nor a missing `state_default`."""
        for event in events:
            source = getattr(event, "source", None) or {}
            if source.get("type") in (CREATE, POWER_LEVELS) and source.get("state_key") == "":
                self._room_state.setdefault(room_id, {})[source["type"]] = source

    # membership --------------------------------------------------------------

    def _on_invite(self, room_id: str) -> None:
        if room_id in self._busy:
            return
        room = self.client.invited_rooms.get(room_id)
        self._busy.add(room_id)
        self._spawn(self._answer_invite(room_id, room.inviter if room else None))

    async def _answer_invite(self, room_id: str, inviter: str | None) -> None:
        try:
            if inviter is not None and inviter_allowed(inviter, self.config.allowed_inviters):
                if await self._join(room_id, "joining a room"):
                    log.info("Matrix: joined a room on %s's invite", inviter)
                return
            log.info("Matrix: declined an invite from %s (not in matrix.allowed_inviters)",
                     inviter)
            await persist("declining an invite", lambda: self.client.room_leave(room_id),
                          attempts=MEMBERSHIP_ATTEMPTS, max_backoff=self.max_backoff)
        finally:
            self._busy.discard(room_id)

    async def _join(self, room_id: str, what: str) -> bool:
        response = await persist(what, lambda: self.client.join(room_id),
                                 attempts=MEMBERSHIP_ATTEMPTS, max_backoff=self.max_backoff)
        if not isinstance(response, JoinResponse):
            log.warning("Matrix: %s failed: %s", what, response)
        return isinstance(response, JoinResponse)

    async def _on_leave(self, room_id: str) -> None:
        """Left, kicked or banned: the room's subscription cannot be served any more."""
        self._room_state.pop(room_id, None)
        if await self.app.storage.deactivate_subscription(PLATFORM, room_id, "left the room"):
            log.info("Matrix: no longer in a subscribed room; its subscription is paused")

    def _on_upgrade(self, old: str, new: str) -> None:
        if old in self._busy:
            return
        self._busy.add(old)
        self._spawn(self._follow_upgrade(old, new))

    async def _follow_upgrade(self, old: str, new: str) -> None:
        """Join the replacement room, move language and subscription, leave the old one."""
        try:
            if not await self._join(new, "joining an upgraded room"):
                log.warning("Matrix: a room was upgraded and its new room cannot be joined; "
                            "invite the bot there")
                return
            if await self.app.storage.move_chat(PLATFORM, old, new):
                log.info("Matrix: followed a room upgrade; language and subscription moved")
            await persist("leaving an upgraded room", lambda: self.client.room_leave(old),
                          attempts=MEMBERSHIP_ATTEMPTS, max_backoff=self.max_backoff)
        finally:
            self._busy.discard(old)

    # encryption --------------------------------------------------------------

    async def _keep_encryption_going(self) -> None:
        """What nio's sync_forever does between syncs: upload and fetch keys, send
        queued to-device messages; then trust the devices seen for the first time."""
        client = self.client
        if client.olm is None:
            return
        try:
            if client.should_upload_keys:
                await client.keys_upload()
            if client.should_query_keys:
                await client.keys_query()
            if client.should_claim_keys:
                await client.keys_claim(client.get_users_for_key_claiming())
            await client.send_to_device_messages()
        except (ClientError, TimeoutError) as error:
            log.warning("Matrix: exchanging encryption keys failed (%s); retrying after the "
                        "next sync", type(error).__name__)
        trust_new_devices(client)

    # outgoing ----------------------------------------------------------------

    async def send_replies(self, room_id: str, replies: list[Reply], reply_to: str) -> None:
        """Each reply as one or more notices, in order. Actions are not shown: the
        reply's text already names their commands."""
        for number, reply in enumerate(replies):
            for part, content in enumerate(render_parts(reply.blocks)):
                outcome = await self.deliver(
                    room_id, as_reply(content, reply_to),
                    txn_id=transaction_id(reply_to, number, part), priority=Priority.REPLY)
                if not outcome.ok:
                    log.error("Matrix: a reply could not be sent: %s", outcome.reason)
                    return

    async def send_part(self, chat_id: str, content: str, delivery_id: int) -> Outcome:
        """A broadcast part. Its transaction id is the delivery's, so a part re-sent after
        a crash is stored once by the homeserver: no duplicates on Matrix."""
        return await self.deliver(chat_id, json.loads(content),
                                  txn_id=f"broadcast.{self._txn_scope}.{delivery_id}",
                                  priority=Priority.BULK)

    async def show_status(self, chat_id: str, message_id: str | None,
                          blocks: Document) -> str | None:
        """Send the broadcast's status notice once, then replace it with edits."""
        content = render_parts(blocks)[0]
        stamp = hashlib.sha256(json.dumps(content, sort_keys=True).encode()).hexdigest()[:16]
        if message_id is None:
            outcome = await self.deliver(chat_id, content,
                                         txn_id=f"status.{self._txn_scope}.{stamp}",
                                         priority=Priority.REPLY)
            return outcome.message_id
        edit = {
            **content, "body": f"* {content['body']}", "m.new_content": content,
            "m.relates_to": {"rel_type": "m.replace", "event_id": message_id},
        }
        outcome = await self.deliver(chat_id, edit, txn_id=f"status.{message_id}.{stamp}",
                                     priority=Priority.REPLY)
        if not outcome.ok:
            log.warning("Matrix: could not update a status message: %s", outcome.reason)
        return message_id

    async def deliver(self, room_id: str, content: dict[str, Any], *, txn_id: str,
                      priority: Priority) -> Outcome:
        """Send one event content (from `render_parts`) through the flood control.

        `txn_id` makes retries idempotent: the homeserver stores the event once however
        often it is sent. 429s are waited out as the server asks; network and server
        errors back off; after SEND_ATTEMPTS the failure is returned, never dropped.
        """
        await self.ready.wait()  # the rooms are known after the first sync
        room = self.client.rooms.get(room_id)
        if room is None:
            return Outcome(False, "not in this room", room_id, chat_gone=True)
        if room.encrypted and self.client.olm is None:
            return Outcome(False, "encrypted room, and matrix.encryption is off", room_id)

        async def send() -> RoomSendResponse | ErrorResponse:
            async with self.flood.slot(room_id, "room", priority):
                return await self.client.room_send(room_id, "m.room.message", content,
                                                   tx_id=txn_id, ignore_unverified_devices=True)

        response = await persist("sending to a room", send, attempts=SEND_ATTEMPTS,
                                 max_backoff=self.max_backoff,
                                 on_rate_limit=lambda seconds: self.flood.pause(room_id, seconds))
        if isinstance(response, RoomSendResponse):
            return Outcome(True, chat_id=room_id, message_id=response.event_id)
        return await self._failed(room_id, response)

    async def _failed(self, room_id: str, error: ErrorResponse) -> Outcome:
        if error.status_code == "M_FORBIDDEN":  # not in the room, or not allowed to speak
            await self.app.storage.deactivate_subscription(PLATFORM, room_id, "forbidden")
            return Outcome(False, f"forbidden: {error.message}", room_id, chat_gone=True)
        status = http_status(error)
        permanent = status is not None and 400 <= status < 500 and status not in (401, 429)
        return Outcome(False, str(error), room_id, permanent=permanent)
