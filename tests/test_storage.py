"""SQLite storage: migrations from every version, and the chat settings it keeps."""

from __future__ import annotations

from pathlib import Path

import aiosqlite
import pytest

from bot.storage import Storage
from bot.storage.migrations import LATEST, MIGRATIONS


async def _database_at(path: Path, version: int) -> None:
    async with aiosqlite.connect(path) as db:
        for number in range(1, version + 1):
            await db.executescript(MIGRATIONS[number - 1])
        await db.execute(f"PRAGMA user_version = {version}")
        if version >= 1:
            await db.execute("INSERT INTO chats (platform, chat_id, kind, language)"
                             " VALUES ('telegram', '42', 'private', 'fr')")
            await db.execute("INSERT INTO subscriptions (platform, chat_id, language)"
                             " VALUES ('telegram', '42', 'fr')")
        await db.commit()


@pytest.mark.parametrize("version", range(LATEST + 1))
async def test_migrates_from_every_earlier_version_keeping_data(
    tmp_path: Path, version: int
) -> None:
    path = tmp_path / "bot.sqlite3"
    await _database_at(path, version)
    async with await Storage.open(path) as storage:
        async with storage.db.execute("PRAGMA user_version") as cursor:
            assert (await cursor.fetchone())[0] == LATEST
        async with storage.db.execute("PRAGMA journal_mode") as cursor:
            assert (await cursor.fetchone())[0] == "wal"
        if version >= 1:
            chat = await storage.get_chat("telegram", "42")
            assert chat is not None and chat.language == "fr"
            assert [s.chat_id for s in await storage.active_subscriptions()] == ["42"]
        await storage.set_state("k", "v")
        assert await storage.claim_event("matrix", "$e")
        assert await storage.organisers() == []


async def test_newer_database_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "bot.sqlite3"
    async with aiosqlite.connect(path) as db:
        await db.execute(f"PRAGMA user_version = {LATEST + 1}")
    with pytest.raises(RuntimeError, match="newer"):
        await Storage.open(path)


async def test_moving_a_chat_carries_language_and_subscription(tmp_path: Path) -> None:
    async with await Storage.open(tmp_path / "db.sqlite3") as storage:
        await storage.set_chat_language("telegram", "-1", "group", "de")
        await storage.subscribe("telegram", "-1", "group", "de", by="7")
        assert await storage.move_chat("telegram", "-1", "-100123")
        assert await storage.get_chat("telegram", "-1") is None
        chat = await storage.get_chat("telegram", "-100123")
        assert chat is not None and chat.language == "de"
        sub = await storage.get_subscription("telegram", "-100123")
        assert sub is not None and sub.active and sub.language == "de"


async def test_deactivated_subscription_keeps_its_reason(tmp_path: Path) -> None:
    async with await Storage.open(tmp_path / "db.sqlite3") as storage:
        await storage.subscribe("telegram", "5", "private", "en")
        assert await storage.deactivate_subscription("telegram", "5", "blocked")
        assert await storage.active_subscriptions() == []
        sub = await storage.get_subscription("telegram", "5")
        assert sub is not None and not sub.active and sub.deactivated_reason == "blocked"
        await storage.subscribe("telegram", "5", "private", "fr")  # resubscribing revives it
        assert [s.language for s in await storage.active_subscriptions()] == ["fr"]


async def test_an_event_is_claimed_once(tmp_path: Path) -> None:
    async with await Storage.open(tmp_path / "db.sqlite3") as storage:
        assert await storage.claim_event("matrix", "$a")
        assert not await storage.claim_event("matrix", "$a")
        assert await storage.claim_event("telegram", "$a")
