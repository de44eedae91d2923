"""The durable broadcast outbox in SQLite.

A broadcast is a draft until an organiser confirms it. Starting it renders its text once
per platform and subscription language and writes one delivery row per recipient and
message part, all in one transaction; dispatchers then drain the rows in order. A row
is pending until the platform accepted it, so a crash loses nothing: after a restart the
rows still pending are sent (the one in flight to a chat may be sent twice on Telegram).
"""

from __future__ import annotations

import asyncio
import json
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from bot.catalog import Catalog
from bot.compose import demands_blocks, statement_blocks
from bot.document import Document
from bot.i18n import Translator
from bot.markdown import parse_markdown
from bot.protocol import Outcome
from bot.render import matrix, telegram
from bot.render.plain import render_plain
from bot.storage import Storage

ANY_LANGUAGE = "*"
# A passing failure (network, 5xx, timeout) is retried after BACKOFF * 2^attempts seconds
# (capped, with jitter) until MAX_ATTEMPTS; then the row fails with the last reason.
MAX_ATTEMPTS = 6
BACKOFF = 1.0
MAX_BACKOFF = 300.0
SENT_BATCH = 500  # sent rows written in one statement at most (4 values each)

# How each platform stores a broadcast's parts: the exact text or JSON it will send.
PartRenderer = Callable[[Document], list[str]]
RENDERERS: dict[str, PartRenderer] = {
    "telegram": telegram.render_parts,
    "matrix": lambda doc: [json.dumps(c, ensure_ascii=False) for c in matrix.render_parts(doc)],
    "console": lambda doc: [render_plain(doc)],
}


@dataclass(frozen=True)
class Broadcast:
    id: int
    author_platform: str
    author_id: str
    origin_chat: str
    kind: str  # "text" or "announce"
    payload: dict[str, Any]
    status: str  # draft, scheduled, running, done, cancelled
    scheduled_at: float | None
    created_at: float
    started_at: float | None
    finished_at: float | None
    status_message: str | None

    @property
    def languages(self) -> list[str] | None:
        """The subscription languages it is for; None for all."""
        return self.payload.get("languages")


@dataclass(frozen=True)
class Delivery:
    id: int
    broadcast_id: int
    chat_id: str
    part: int
    content: str
    attempts: int


@dataclass
class Report:
    broadcast: Broadcast
    recipients: int = 0
    counts: dict[str, int] = field(default_factory=dict)  # messages by status
    failures: dict[str, int] = field(default_factory=dict)  # failed messages by reason
    last_sent: float | None = None

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    @property
    def pending(self) -> int:
        return self.counts.get("pending", 0)

    @property
    def rate(self) -> float:
        """Messages per second from the start to the latest message sent."""
        sent = self.counts.get("sent", 0)
        started = self.broadcast.started_at
        if not sent or started is None or self.last_sent is None:
            return 0.0
        return sent / max(self.last_sent - started, 1e-3)

    @property
    def elapsed(self) -> float:
        started = self.broadcast.started_at
        if started is None:
            return 0.0
        return (self.broadcast.finished_at or time.time()) - started


@dataclass(frozen=True)
class Audience:
    """Who a broadcast would reach: recipients per (platform, language), and who not."""

    reached: dict[tuple[str, str], int]
    unreached: dict[tuple[str, str], int]


class Outbox:
    def __init__(self, storage: Storage, catalog: Catalog, translator: Translator,
                 default_language: str) -> None:
        self.storage = storage
        self.catalog = catalog
        self.translator = translator
        self.default_language = default_language
        self._listeners: list[asyncio.Event] = []
        self._cancelled: set[int] = set()  # so workers stop sending what was cancelled
        self._newly_cancelled: list[int] = []  # for the status messages' final report
        # sent rows waiting to be written: (id, sent_at, message_id, attempts, waiter)
        self._sent: list[tuple[int, float, str | None, int, asyncio.Future[None]]] = []
        self._writer: asyncio.Task[None] | None = None

    def listen(self) -> asyncio.Event:
        """An event set whenever there is new work (a broadcast started or cancelled)."""
        event = asyncio.Event()
        self._listeners.append(event)
        return event

    def _notify(self) -> None:
        for event in self._listeners:
            event.set()

    def is_cancelled(self, broadcast_id: int) -> bool:
        """Cancelled while its rows were on their way to a worker."""
        return broadcast_id in self._cancelled

    def take_cancelled(self) -> list[int]:
        """Broadcasts cancelled since the last call."""
        taken, self._newly_cancelled = self._newly_cancelled, []
        return taken

    @property
    def db(self) -> Any:
        return self.storage.db

    # content ---------------------------------------------------------------

    def document_for(self, broadcast: Broadcast, language: str) -> Document | None:
        """What a subscriber in `language` receives: their variant, else the default
        language's, else nothing."""
        default = self.default_language
        if broadcast.kind == "announce":
            statement = self.catalog.statements.get(broadcast.payload["statement"])
            if statement is None:
                return None
            translation = statement.translations.get(language) or statement.translations.get(
                default)
            if translation is None:
                return None
            ui = self.translator.ui_language(translation.language, default)
            build = demands_blocks if broadcast.payload.get("demands") else statement_blocks
            return build(translation, self.translator(ui)("Source:"))
        variants: dict[str, str] = broadcast.payload["variants"]
        text = variants.get(language) or variants.get(default) or variants.get(ANY_LANGUAGE)
        return parse_markdown(text) if text else None

    # drafts and lifecycle --------------------------------------------------

    async def create(self, author_platform: str, author_id: str, origin_chat: str, kind: str,
                     payload: dict[str, Any], scheduled_at: float | None = None) -> Broadcast:
        cursor = await self.db.execute(
            "INSERT INTO broadcasts (author_platform, author_id, origin_chat, kind, payload,"
            " scheduled_at, created_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
            (author_platform, author_id, origin_chat, kind, json.dumps(payload), scheduled_at,
             time.time()),
        )
        broadcast = await self.get(int(cursor.lastrowid))
        assert broadcast is not None
        return broadcast

    async def get(self, broadcast_id: int) -> Broadcast | None:
        async with self.db.execute(
            "SELECT id, author_platform, author_id, origin_chat, kind, payload, status,"
            " scheduled_at, created_at, started_at, finished_at, status_message"
            " FROM broadcasts WHERE id=?", (broadcast_id,),
        ) as cursor:
            row = await cursor.fetchone()
        if row is None:
            return None
        return Broadcast(*row[:5], json.loads(row[5]), *row[6:])

    async def latest(self) -> Broadcast | None:
        async with self.db.execute(
            "SELECT id FROM broadcasts WHERE status != 'draft' ORDER BY id DESC LIMIT 1"
        ) as cursor:
            row = await cursor.fetchone()
        return await self.get(row[0]) if row else None

    async def _subscriber_groups(self, broadcast: Broadcast) -> list[tuple[str, str, int]]:
        async with self.db.execute(
            "SELECT platform, language, count(*) FROM subscriptions WHERE active=1"
            " GROUP BY platform, language ORDER BY platform, language"
        ) as cursor:
            rows = await cursor.fetchall()
        wanted = broadcast.languages
        return [(p, lang, n) for p, lang, n in rows if wanted is None or lang in wanted]

    async def audience(self, broadcast: Broadcast) -> Audience:
        reached: dict[tuple[str, str], int] = {}
        unreached: dict[tuple[str, str], int] = {}
        for platform, language, count in await self._subscriber_groups(broadcast):
            target = reached if self.document_for(broadcast, language) is not None else unreached
            target[(platform, language)] = count
        return Audience(reached, unreached)

    async def confirm(self, broadcast_id: int) -> Broadcast | None:
        """Draft to scheduled (future time) or running (now); None if not a draft."""
        broadcast = await self.get(broadcast_id)
        if broadcast is None or broadcast.status != "draft":
            return None
        if broadcast.scheduled_at is not None and broadcast.scheduled_at > time.time():
            await self.db.execute("UPDATE broadcasts SET status='scheduled' WHERE id=?",
                                  (broadcast_id,))
            self._notify()
        else:
            await self.start(broadcast_id)
        return await self.get(broadcast_id)

    async def start(self, broadcast_id: int) -> int:
        """Render the parts and write every delivery row in one transaction."""
        broadcast = await self.get(broadcast_id)
        if broadcast is None or broadcast.status not in ("draft", "scheduled"):
            return 0
        groups = await self._subscriber_groups(broadcast)
        parts: list[tuple[int, str, str, int, str]] = []
        for platform, language, _count in groups:
            renderer = RENDERERS.get(platform)
            document = self.document_for(broadcast, language)
            if renderer is None or document is None:
                continue
            for index, content in enumerate(renderer(document)):
                parts.append((broadcast_id, platform, language, index, content))
        await self.db.execute("BEGIN IMMEDIATE")
        try:
            await self.db.executemany(
                "INSERT INTO broadcast_parts (broadcast_id, platform, language, part, content)"
                " VALUES (?, ?, ?, ?, ?)", parts)
            cursor = await self.db.execute(
                "INSERT INTO deliveries (broadcast_id, platform, chat_id, language, part)"
                " SELECT p.broadcast_id, s.platform, s.chat_id, s.language, p.part"
                " FROM subscriptions s JOIN broadcast_parts p ON p.broadcast_id = ?"
                " AND p.platform = s.platform AND p.language = s.language"
                " WHERE s.active = 1 ORDER BY s.platform, s.chat_id, p.part",
                (broadcast_id,),
            )
            created = cursor.rowcount
            await self.db.execute(
                "UPDATE broadcasts SET status='running', started_at=? WHERE id=?",
                (time.time(), broadcast_id))
            await self.db.execute("COMMIT")
        except BaseException:
            await self.db.execute("ROLLBACK")
            raise
        self._notify()
        return created

    async def cancel(self, broadcast_id: int) -> Broadcast | None:
        """Stop a draft, scheduled or running broadcast; unsent rows are kept as cancelled."""
        broadcast = await self.get(broadcast_id)
        if broadcast is None or broadcast.status in ("done", "cancelled"):
            return None
        await self.db.execute("BEGIN IMMEDIATE")
        try:
            await self.db.execute(
                "UPDATE broadcasts SET status='cancelled', finished_at=? WHERE id=?",
                (time.time(), broadcast_id))
            await self.db.execute(
                "UPDATE deliveries SET status='cancelled'"
                " WHERE broadcast_id=? AND status='pending'", (broadcast_id,))
            await self.db.execute("COMMIT")
        except BaseException:
            await self.db.execute("ROLLBACK")
            raise
        self._cancelled.add(broadcast_id)
        self._newly_cancelled.append(broadcast_id)
        self._notify()
        return await self.get(broadcast_id)

    async def due(self, now: float | None = None) -> list[int]:
        async with self.db.execute(
            "SELECT id FROM broadcasts WHERE status='scheduled' AND scheduled_at <= ?"
            " ORDER BY scheduled_at, id", (now or time.time(),),
        ) as cursor:
            return [row[0] for row in await cursor.fetchall()]

    async def next_due_time(self) -> float | None:
        async with self.db.execute(
            "SELECT min(scheduled_at) FROM broadcasts WHERE status='scheduled'"
        ) as cursor:
            row = await cursor.fetchone()
        return row[0] if row else None

    async def running(self) -> list[Broadcast]:
        async with self.db.execute(
            "SELECT id FROM broadcasts WHERE status='running' ORDER BY id"
        ) as cursor:
            ids = [row[0] for row in await cursor.fetchall()]
        return [b for b in [await self.get(i) for i in ids] if b is not None]

    async def finish_completed(self) -> list[int]:
        """Mark running broadcasts with nothing pending as done; returns their ids."""
        async with self.db.execute(
            "SELECT b.id FROM broadcasts b WHERE b.status='running' AND NOT EXISTS"
            " (SELECT 1 FROM deliveries d WHERE d.broadcast_id=b.id AND d.status='pending')"
        ) as cursor:
            ids = [row[0] for row in await cursor.fetchall()]
        for broadcast_id in ids:
            await self.db.execute(
                "UPDATE broadcasts SET status='done', finished_at=? WHERE id=?",
                (time.time(), broadcast_id))
        return ids

    async def pending_count(self, platforms: set[str]) -> int:
        """Deliveries of running broadcasts still to go to `platforms`."""
        marks = ",".join("?" * len(platforms))
        async with self.db.execute(
            "SELECT count(*) FROM deliveries d JOIN broadcasts b ON b.id = d.broadcast_id"
            f" WHERE d.status = 'pending' AND b.status = 'running' AND d.platform IN ({marks})",
            tuple(sorted(platforms)),
        ) as cursor:
            row = await cursor.fetchone()
        return int(row[0]) if row else 0

    async def set_status_message(self, broadcast_id: int, message_id: str) -> None:
        await self.db.execute("UPDATE broadcasts SET status_message=? WHERE id=?",
                              (message_id, broadcast_id))

    # deliveries ------------------------------------------------------------

    async def next_batch(self, platform: str, after_id: int, limit: int) -> list[Delivery]:
        """Pending rows that may go now, in order; a chat's later rows wait for its earlier."""
        async with self.db.execute(
            "SELECT d.id, d.broadcast_id, d.chat_id, d.part, p.content, d.attempts"
            " FROM deliveries d"
            " JOIN broadcasts b ON b.id = d.broadcast_id AND b.status = 'running'"
            " JOIN broadcast_parts p ON p.broadcast_id = d.broadcast_id"
            " AND p.platform = d.platform AND p.language = d.language AND p.part = d.part"
            " WHERE d.platform = ? AND d.status = 'pending' AND d.id > ? AND d.not_before <= ?"
            " AND NOT EXISTS (SELECT 1 FROM deliveries e WHERE e.platform = d.platform"
            " AND e.chat_id = d.chat_id AND e.status = 'pending' AND e.id < d.id)"
            " ORDER BY d.id LIMIT ?",
            (platform, after_id, time.time(), limit),
        ) as cursor:
            return [Delivery(*row) for row in await cursor.fetchall()]

    async def record(self, platform: str, delivery: Delivery, outcome: Outcome) -> None:
        """Store what happened to one delivery; returns once it is stored.

        Sent rows are written together: while one write is under way the next ones
        gather, and go in one statement (one database round trip for many rows when
        busy, as soon as possible when not). Failures schedule a retry, or fail the row
        for good; a chat that moved (a migrated group) takes its pending rows along, and
        a chat that is gone fails its other pending rows, which could not arrive either.
        """
        if outcome.ok and not (outcome.chat_id and outcome.chat_id != delivery.chat_id):
            future = asyncio.get_running_loop().create_future()
            self._sent.append((delivery.id, time.time(), outcome.message_id,
                               delivery.attempts + 1, future))
            if self._writer is None:
                self._writer = asyncio.create_task(self._write_sent())
            await asyncio.shield(future)  # a cancelled worker leaves the write to finish
            return
        await self._record_one(platform, delivery, outcome)

    async def _write_sent(self) -> None:
        """Write the sent rows gathered so far, then those gathered meanwhile, until no
        row waits; every waiter hears how its write went."""
        try:
            while self._sent:
                batch, self._sent = self._sent[:SENT_BATCH], self._sent[SENT_BATCH:]
                values = ",".join("(?, ?, ?, ?)" for _ in batch)
                try:
                    await self.db.execute(
                        "UPDATE deliveries SET status='sent', sent_at=v.column2,"
                        " message_id=v.column3, attempts=v.column4"
                        f" FROM (VALUES {values}) AS v WHERE deliveries.id = v.column1",
                        [value for row in batch for value in row[:4]])
                except Exception as error:
                    for *_, future in batch:
                        future.set_exception(error)
                except BaseException:  # cancelled (the loop is ending): nobody will write
                    for *_, future in [*batch, *self._sent]:
                        future.cancel()
                    self._sent = []
                    raise
                else:
                    for *_, future in batch:
                        future.set_result(None)
        finally:
            self._writer = None

    async def flush(self) -> None:
        """Wait until every recorded row is written (before closing the database)."""
        if self._writer is not None:
            await asyncio.gather(self._writer, return_exceptions=True)

    async def _record_one(self, platform: str, delivery: Delivery, outcome: Outcome) -> None:
        now = time.time()
        attempts = delivery.attempts + 1
        if outcome.ok:
            await self.db.execute(
                "UPDATE deliveries SET status='sent', sent_at=?, message_id=?, attempts=?"
                " WHERE id=?", (now, outcome.message_id, attempts, delivery.id))
        elif outcome.permanent or attempts >= MAX_ATTEMPTS:
            await self.db.execute(
                "UPDATE deliveries SET status='failed', reason=?, attempts=? WHERE id=?",
                (outcome.reason, attempts, delivery.id))
        else:
            delay = min(MAX_BACKOFF, BACKOFF * 2.0 ** attempts) * random.uniform(0.5, 1.0)
            await self.db.execute(
                "UPDATE deliveries SET attempts=?, not_before=?, reason=? WHERE id=?",
                (attempts, now + delay, outcome.reason, delivery.id))
        chat = delivery.chat_id
        if outcome.chat_id and outcome.chat_id != chat:
            await self._follow(platform, chat, outcome.chat_id)
            chat = outcome.chat_id
        if outcome.chat_gone:
            await self.db.execute(
                "UPDATE deliveries SET status='failed', reason=?"
                " WHERE platform=? AND chat_id=? AND status='pending'",
                (outcome.reason, platform, chat))

    async def _follow(self, platform: str, old_chat: str, new_chat: str) -> None:
        """A migrated chat: its remaining rows go to the new id (unless the new id has
        its own copy already, as a subscriber in its own right)."""
        await self.db.execute(
            "UPDATE OR IGNORE deliveries SET chat_id=? WHERE platform=? AND chat_id=?"
            " AND status='pending'", (new_chat, platform, old_chat))
        await self.db.execute(
            "UPDATE deliveries SET status='failed', reason='migrated (already queued)'"
            " WHERE platform=? AND chat_id=? AND status='pending'", (platform, old_chat))

    async def report(self, broadcast_id: int) -> Report | None:
        broadcast = await self.get(broadcast_id)
        if broadcast is None:
            return None
        report = Report(broadcast)
        async with self.db.execute(
            "SELECT status, coalesce(reason, ''), count(*), max(sent_at)"
            " FROM deliveries WHERE broadcast_id=? GROUP BY status, reason",
            (broadcast_id,),
        ) as cursor:
            rows: Sequence[Any] = await cursor.fetchall()
        for status, reason, count, last in rows:
            report.counts[status] = report.counts.get(status, 0) + count
            if status == "failed":
                report.failures[reason or "unknown"] = count
            if last is not None:
                report.last_sent = max(last, report.last_sent or last)
        async with self.db.execute(
            "SELECT count(*) FROM (SELECT DISTINCT platform, chat_id FROM deliveries"
            " WHERE broadcast_id=?)", (broadcast_id,),
        ) as cursor:
            row = await cursor.fetchone()
        report.recipients = int(row[0]) if row else 0
        return report
