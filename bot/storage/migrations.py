"""Numbered schema migrations; `PRAGMA user_version` records the last one applied.

Append new steps, never edit old ones: a database at any earlier version upgrades by
running the steps after its version, each in its own transaction.
"""

from __future__ import annotations

MIGRATIONS: tuple[str, ...] = (
    # 1: chats with their language, and their subscriptions to pushes.
    """
    CREATE TABLE chats (
        platform   TEXT NOT NULL,
        chat_id    TEXT NOT NULL,
        kind       TEXT NOT NULL,
        language   TEXT,
        created_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
        PRIMARY KEY (platform, chat_id)
    );
    CREATE TABLE subscriptions (
        platform          TEXT NOT NULL,
        chat_id           TEXT NOT NULL,
        language          TEXT NOT NULL,
        active            INTEGER NOT NULL DEFAULT 1,
        subscribed_by     TEXT,
        subscribed_at     TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
        deactivated_at    TEXT,
        deactivated_reason TEXT,
        PRIMARY KEY (platform, chat_id),
        FOREIGN KEY (platform, chat_id) REFERENCES chats (platform, chat_id)
            ON UPDATE CASCADE ON DELETE CASCADE
    );
    CREATE INDEX subscriptions_active ON subscriptions (active, platform, language);
    """,
    # 2: organisers added at runtime; broadcasts, their rendered parts per platform and
    # subscription language, and one delivery row per recipient and part (the outbox).
    """
    CREATE TABLE organisers (
        platform TEXT NOT NULL,
        user_id  TEXT NOT NULL,
        added_by TEXT,
        added_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
        PRIMARY KEY (platform, user_id)
    );
    CREATE TABLE broadcasts (
        id              INTEGER PRIMARY KEY,
        author_platform TEXT NOT NULL,
        author_id       TEXT NOT NULL,
        origin_chat     TEXT NOT NULL,
        kind            TEXT NOT NULL,
        payload         TEXT NOT NULL,
        status          TEXT NOT NULL DEFAULT 'draft',
        scheduled_at    REAL,
        created_at      REAL NOT NULL,
        started_at      REAL,
        finished_at     REAL,
        status_message  TEXT
    );
    CREATE INDEX broadcasts_status ON broadcasts (status, scheduled_at);
    CREATE TABLE broadcast_parts (
        broadcast_id INTEGER NOT NULL REFERENCES broadcasts (id) ON DELETE CASCADE,
        platform     TEXT NOT NULL,
        language     TEXT NOT NULL,
        part         INTEGER NOT NULL,
        content      TEXT NOT NULL,
        PRIMARY KEY (broadcast_id, platform, language, part)
    );
    CREATE TABLE deliveries (
        id           INTEGER PRIMARY KEY,
        broadcast_id INTEGER NOT NULL REFERENCES broadcasts (id) ON DELETE CASCADE,
        platform     TEXT NOT NULL,
        chat_id      TEXT NOT NULL,
        language     TEXT NOT NULL,
        part         INTEGER NOT NULL,
        status       TEXT NOT NULL DEFAULT 'pending',
        reason       TEXT,
        attempts     INTEGER NOT NULL DEFAULT 0,
        not_before   REAL NOT NULL DEFAULT 0,
        sent_at      REAL,
        message_id   TEXT,
        UNIQUE (broadcast_id, platform, chat_id, part)
    );
    CREATE INDEX deliveries_queue ON deliveries (platform, status, id);
    CREATE INDEX deliveries_chat_pending ON deliveries (platform, chat_id, id)
        WHERE status = 'pending';
    """,
    # 3: platform bookkeeping: key/value state (sync tokens) and handled event ids.
    """
    CREATE TABLE state (
        key   TEXT PRIMARY KEY,
        value TEXT NOT NULL
    );
    CREATE TABLE handled_events (
        platform   TEXT NOT NULL,
        event_id   TEXT NOT NULL,
        handled_at REAL NOT NULL,
        PRIMARY KEY (platform, event_id)
    );
    CREATE INDEX handled_events_age ON handled_events (handled_at);
    """,
)

LATEST = len(MIGRATIONS)
