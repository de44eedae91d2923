"""SQLite storage (aiosqlite, WAL): chats, subscriptions, organisers and platform state."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

import aiosqlite

from bot.storage.migrations import LATEST, MIGRATIONS


@dataclass(frozen=True)
class ChatRow:
    platform: str
    chat_id: str
    kind: str
    language: str | None


@dataclass(frozen=True)
class Subscription:
    platform: str
    chat_id: str
    language: str
    active: bool
    deactivated_reason: str | None = None


async def migrate(db: aiosqlite.Connection) -> int:
    """Bring the schema to LATEST; returns the version the database was at before."""
    async with db.execute("PRAGMA user_version") as cursor:
        row = await cursor.fetchone()
    version = int(row[0]) if row else 0
    if version > LATEST:
        raise RuntimeError(
            f"database schema version {version} is newer than this bot knows ({LATEST})"
        )
    for number in range(version + 1, LATEST + 1):
        await db.executescript(
            f"BEGIN;\n{MIGRATIONS[number - 1]}\nPRAGMA user_version = {number};\nCOMMIT;"
        )
    return version


class Storage:
    """One connection per process; aiosqlite serialises access on its own thread."""

    def __init__(self, db: aiosqlite.Connection, path: Path) -> None:
        self.db = db
        self.path = path

    @classmethod
    async def open(cls, path: Path) -> Storage:
        if str(path) != ":memory:":
            path.parent.mkdir(parents=True, exist_ok=True)
        db = await aiosqlite.connect(path, isolation_level=None)
        try:
            await db.execute("PRAGMA journal_mode=WAL")
            await db.execute("PRAGMA synchronous=NORMAL")
            await db.execute("PRAGMA foreign_keys=ON")
            await db.execute("PRAGMA busy_timeout=5000")
            await migrate(db)
        except BaseException:
            await db.close()
            raise
        return cls(db, path)

    async def close(self) -> None:
        await self.db.close()

    async def __aenter__(self) -> Storage:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def fetchone(self, query: str, params: tuple[object, ...] = ()) -> Any | None:
        """The first row, in one round trip to aiosqlite's thread (not three)."""
        rows = await self.db.execute_fetchall(query, params)
        return next(iter(rows), None)

    # chats -----------------------------------------------------------------

    async def get_chat(self, platform: str, chat_id: str) -> ChatRow | None:
        row = await self.fetchone(
            "SELECT platform, chat_id, kind, language FROM chats WHERE platform=? AND chat_id=?",
            (platform, chat_id))
        return ChatRow(*row) if row else None

    async def ensure_chat(self, platform: str, chat_id: str, kind: str) -> None:
        await self.db.execute(
            "INSERT INTO chats (platform, chat_id, kind) VALUES (?, ?, ?)"
            " ON CONFLICT (platform, chat_id) DO UPDATE SET kind = excluded.kind",
            (platform, chat_id, kind),
        )

    async def set_chat_language(
        self, platform: str, chat_id: str, kind: str, language: str
    ) -> None:
        await self.db.execute(
            "INSERT INTO chats (platform, chat_id, kind, language) VALUES (?, ?, ?, ?)"
            " ON CONFLICT (platform, chat_id) DO UPDATE"
            " SET kind = excluded.kind, language = excluded.language",
            (platform, chat_id, kind, language),
        )

    async def move_chat(self, platform: str, old_id: str, new_id: str) -> bool:
        """Follow a chat to its new id (Telegram supergroup migration, Matrix room upgrade).

        Language and subscription move with it; if the new id already exists, its own
        settings win and the old chat is dropped. Returns whether anything moved.
        """
        if old_id == new_id:
            return False
        await self.db.execute("BEGIN IMMEDIATE")
        try:
            existing = await self.get_chat(platform, new_id)
            if existing is None:
                cursor = await self.db.execute(
                    "UPDATE chats SET chat_id=? WHERE platform=? AND chat_id=?",
                    (new_id, platform, old_id),
                )
                moved = cursor.rowcount > 0
            else:
                await self.db.execute(
                    "DELETE FROM chats WHERE platform=? AND chat_id=?", (platform, old_id)
                )
                moved = False
            await self.db.execute("COMMIT")
        except BaseException:
            await self.db.execute("ROLLBACK")
            raise
        return moved

    # subscriptions ---------------------------------------------------------

    async def subscribe(
        self, platform: str, chat_id: str, kind: str, language: str, by: str | None = None
    ) -> None:
        await self.ensure_chat(platform, chat_id, kind)
        await self.db.execute(
            "INSERT INTO subscriptions (platform, chat_id, language, subscribed_by)"
            " VALUES (?, ?, ?, ?) ON CONFLICT (platform, chat_id) DO UPDATE SET"
            " language = excluded.language, active = 1, subscribed_by = excluded.subscribed_by,"
            " subscribed_at = strftime('%Y-%m-%dT%H:%M:%fZ', 'now'),"
            " deactivated_at = NULL, deactivated_reason = NULL",
            (platform, chat_id, language, by),
        )

    async def get_subscription(self, platform: str, chat_id: str) -> Subscription | None:
        row = await self.fetchone(
            "SELECT platform, chat_id, language, active, deactivated_reason FROM subscriptions"
            " WHERE platform=? AND chat_id=?", (platform, chat_id))
        return Subscription(row[0], row[1], row[2], bool(row[3]), row[4]) if row else None

    async def unsubscribe(self, platform: str, chat_id: str) -> bool:
        """Remove an active subscription; False when there was none."""
        cursor = await self.db.execute(
            "DELETE FROM subscriptions WHERE platform=? AND chat_id=? AND active=1",
            (platform, chat_id),
        )
        return cursor.rowcount > 0

    async def deactivate_subscription(self, platform: str, chat_id: str, reason: str) -> bool:
        """Keep the row with its reason (blocked, kicked) instead of retrying forever."""
        cursor = await self.db.execute(
            "UPDATE subscriptions SET active=0, deactivated_reason=?,"
            " deactivated_at=strftime('%Y-%m-%dT%H:%M:%fZ', 'now')"
            " WHERE platform=? AND chat_id=? AND active=1",
            (reason, platform, chat_id),
        )
        return cursor.rowcount > 0

    async def active_subscriptions(self, platform: str | None = None) -> list[Subscription]:
        query = "SELECT platform, chat_id, language FROM subscriptions WHERE active=1"
        params: tuple[str, ...] = ()
        if platform:
            query += " AND platform=?"
            params = (platform,)
        rows = await self.db.execute_fetchall(query + " ORDER BY platform, chat_id", params)
        return [Subscription(p, c, lang, True) for p, c, lang in rows]

    # organisers ------------------------------------------------------------

    async def organisers(self) -> list[tuple[str, str]]:
        rows = await self.db.execute_fetchall(
            "SELECT platform, user_id FROM organisers ORDER BY platform, user_id")
        return [(p, u) for p, u in rows]

    async def add_organiser(self, platform: str, user_id: str, by: str) -> bool:
        cursor = await self.db.execute(
            "INSERT OR IGNORE INTO organisers (platform, user_id, added_by) VALUES (?, ?, ?)",
            (platform, user_id, by),
        )
        return cursor.rowcount > 0

    async def remove_organiser(self, platform: str, user_id: str) -> bool:
        cursor = await self.db.execute(
            "DELETE FROM organisers WHERE platform=? AND user_id=?", (platform, user_id)
        )
        return cursor.rowcount > 0

    # platform state --------------------------------------------------------

    async def get_state(self, key: str) -> str | None:
        row = await self.fetchone("SELECT value FROM state WHERE key=?", (key,))
        return str(row[0]) if row else None

    async def set_state(self, key: str, value: str) -> None:
        await self.db.execute(
            "INSERT INTO state (key, value) VALUES (?, ?)"
            " ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            (key, value),
        )

    async def claim_event(self, platform: str, event_id: str) -> bool:
        """Record an event as handled; False if it already was (so it is answered once)."""
        cursor = await self.db.execute(
            "INSERT OR IGNORE INTO handled_events (platform, event_id, handled_at)"
            " VALUES (?, ?, ?)",
            (platform, event_id, time.time()),
        )
        return cursor.rowcount > 0

    async def forget_events_before(self, timestamp: float) -> None:
        """Drop dedup records older than any event the platform could still redeliver."""
        await self.db.execute("DELETE FROM handled_events WHERE handled_at < ?", (timestamp,))
