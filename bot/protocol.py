"""The neutral request and reply that flow between adapters and handlers.

Adapters translate platform updates into a Request and render Replies; handlers see
nothing platform-specific, so one grammar works on the console, Telegram and Matrix.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Literal

from bot.document import Document

ChatKind = Literal["private", "group", "channel"]


async def always_allowed() -> bool:
    return True


@dataclass(frozen=True)
class ChatRef:
    platform: str  # "console", "telegram", "matrix"
    id: str
    kind: ChatKind


@dataclass(frozen=True)
class Request:
    chat: ChatRef
    sender: str
    text: str
    language_hint: str | None = None
    # Whether the sender may change this chat's subscription (admin, moderator, DM owner).
    # Adapters supply the platform's check; it is only awaited when a command needs it.
    can_manage_chat: Callable[[], Awaitable[bool]] = field(default=always_allowed, compare=False)


@dataclass(frozen=True)
class Action:
    """A suggested follow-up command; Telegram shows it as a button, others as text."""

    label: str
    command: str


@dataclass(frozen=True)
class Outcome:
    """What became of one message sent to one chat (a reply part or a delivery)."""

    ok: bool
    reason: str | None = None  # why it failed: "blocked", "chat not found", "network: ..."
    chat_id: str | None = None  # where it went in the end (after following a migration)
    message_id: str | None = None
    permanent: bool = True  # False: worth trying again later
    chat_gone: bool = False  # blocked, kicked or deleted: nothing more can reach this chat


@dataclass(frozen=True)
class Reply:
    blocks: Document
    link_preview: bool = False
    actions: tuple[Action, ...] = ()
