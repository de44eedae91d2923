"""An in-process fake of the Telegram Bot API over real HTTP, for tests and benchmarks.

The bot under test talks to it through the real python-telegram-bot stack::

    async with FakeTelegram(token=TOKEN) as fake:
        app = ApplicationBuilder().token(TOKEN).base_url(fake.api_url)
              .base_file_url(fake.file_url).build()

It answers where a bot depends on Telegram's behaviour, with Telegram's wording: HTML
parse mode exactly as TDLib parses it (see telegram_html), the 4096 UTF-16 unit limit,
blocked users, kicked bots, group migrations, flood limits with 429 and `retry_after`,
long polling with `offset` confirmation and the 409 conflicts of two pollers or of a set
webhook. Tests drive users through `send_text` and friends, inspect what the bot sent with
`sent_messages`, and inject faults with `fail_next` and `stall`. The server listens on
127.0.0.1 only, on an ephemeral port.

Flood limits are sliding windows over accepted messages (sendMessage): globally
`global_rate` per second, per private chat `private_rate` per second, per group or channel
`group_per_minute` per minute; `scale` multiplies every rate (and shortens the windows), so
benchmarks can run at a multiple of Telegram's speed. Telegram lets private chats burst a
little above 1/s, so the enforced private window allows `private_burst` messages in any
`private_burst / private_rate` seconds (3 in 3 s by default) while `flood_violations()`
checks the strict nominal rate. A rejected chat (or the global limit) stays closed for the
`retry_after` it was told, divided by `scale`, as Telegram penalises early retries.
"""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import itertools
import json
import math
import re
import socket
import time
from collections import Counter, defaultdict, deque
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Any
from urllib.parse import urlsplit

import aiohttp
from aiohttp import web

from .telegram_html import (
    USER_ENTITY_TYPES,
    EmptyTextError,
    Entity,
    EntityParseError,
    FormattedText,
    TextError,
    checked_link,
    find_bot_commands,
    normalize,
    parse_html,
    utf16_len,
)

DEFAULT_TOKEN = "123456789:AAFakeTelegramTokenForTests_0123456789"
MAX_TEXT_LENGTH = 4096
MAX_CALLBACK_TEXT_LENGTH = 200
MAX_INLINE_RESULTS = 50
UPDATE_TYPES = frozenset(
    {"message", "edited_message", "channel_post", "edited_channel_post", "business_connection",
     "business_message", "edited_business_message", "deleted_business_messages",
     "message_reaction", "message_reaction_count", "inline_query", "chosen_inline_result",
     "callback_query", "shipping_query", "pre_checkout_query", "purchased_paid_media", "poll",
     "poll_answer", "my_chat_member", "chat_member", "chat_join_request", "chat_boost",
     "removed_chat_boost"}
)  # fmt: skip
# What Telegram sends when allowed_updates was never set (or set to []).
DEFAULT_UPDATE_TYPES = UPDATE_TYPES - {"chat_member", "message_reaction", "message_reaction_count"}
CHAT_ACTIONS = frozenset(
    {"typing", "upload_photo", "record_video", "upload_video", "record_voice", "upload_voice",
     "upload_document", "choose_sticker", "find_location", "record_video_note",
     "upload_video_note"}
)  # fmt: skip
MEMBER_STATUSES = frozenset({"creator", "administrator", "member", "left", "kicked"})
_BUTTON_ACTIONS = frozenset(
    {"url", "callback_data", "web_app", "login_url", "switch_inline_query",
     "switch_inline_query_current_chat", "switch_inline_query_chosen_chat", "copy_text",
     "callback_game", "pay"}
)  # fmt: skip
_INLINE_RESULT_TYPES = frozenset(
    {"article", "photo", "gif", "mpeg4_gif", "video", "audio", "voice", "document", "location",
     "venue", "contact", "game", "sticker"}
)  # fmt: skip
_TOKEN = re.compile(r"\d+:[\w-]+")
_INTEGER = re.compile(r"\s*-?\d+")
_COMMAND = re.compile(r"[a-z0-9_]{1,32}")
_SECRET_TOKEN = re.compile(r"[A-Za-z0-9_-]{1,256}")
_GROUP_ANONYMOUS_BOT = {
    "id": 1087968824, "is_bot": True, "first_name": "Group", "username": "GroupAnonymousBot",
}  # fmt: skip
_NGINX_PAGE = (
    "<html>\r\n<head><title>{status} {phrase}</title></head>\r\n<body>\r\n"
    "<center><h1>{status} {phrase}</h1></center>\r\n<hr><center>nginx</center>\r\n"
    "</body>\r\n</html>\r\n"
)
_NOT_MODIFIED = (
    "message is not modified: specified new message content and reply markup are exactly "
    "the same as a current content and reply markup of the message"
)
_QUERY_TOO_OLD = "query is too old and response timeout expired or query ID is invalid"

JSON = dict[str, Any]


class _ApiError(Exception):
    """An error answer: raised by method handlers, turned into Telegram's error JSON."""

    def __init__(self, code: int, description: str, parameters: JSON | None = None) -> None:
        super().__init__(description)
        self.code = code
        self.description = description
        self.parameters = parameters

    def response(self) -> web.Response:
        payload: JSON = {"ok": False, "error_code": self.code, "description": self.description}
        if self.parameters:
            payload["parameters"] = self.parameters
        return _json_response(self.code, payload)


def _json_response(status: int, payload: JSON) -> web.Response:
    body = json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode()
    return web.Response(status=status, body=body, content_type="application/json")


def _bad_request(description: str) -> _ApiError:
    return _ApiError(400, f"Bad Request: {description}")


@dataclass
class FakeUser:
    id: int
    first_name: str
    last_name: str | None = None
    username: str | None = None
    language_code: str | None = None

    def to_api(self, *, with_language: bool = False) -> JSON:
        """The User object; Telegram adds language_code only where the user acts."""
        data: JSON = {"id": self.id, "is_bot": False, "first_name": self.first_name}
        if self.last_name:
            data["last_name"] = self.last_name
        if self.username:
            data["username"] = self.username
        if with_language and self.language_code:
            data["language_code"] = self.language_code
        return data


@dataclass
class FakeChat:
    """A chat as the fake sees it; for private chats `id` is the user's id."""

    id: int
    type: str  # private, group, supergroup, channel
    title: str | None = None
    username: str | None = None
    members: dict[int, str] = field(default_factory=dict)  # user id -> member status
    bot_status: str = "member"  # the bot's status in groups and channels
    bot_can_post: bool = False  # channels: the bot is an administrator allowed to post
    blocked: bool = False  # private chats: the user blocked the bot
    migrated_to: int | None = None
    next_message_id: int = 1
    messages: dict[int, JSON] = field(default_factory=dict)  # live messages by id


@dataclass
class SentMessage:
    """One message the bot sent, kept up to date by edits and deletion."""

    chat_id: int
    message_id: int
    text: str  # as Telegram stores it: markup parsed, cleaned and trimmed
    html: str  # the `text` parameter exactly as received
    entities: list[JSON]
    parse_mode: str | None
    reply_markup: JSON | None
    link_preview_options: JSON | None
    disable_web_page_preview: bool | None
    reply_to_message_id: int | None
    params: JSON  # every parameter as received (strings when sent as form data)
    message: JSON  # the Message object as the bot last got it
    sent_at: float  # time.monotonic() when accepted
    edit_count: int = 0
    deleted: bool = False


@dataclass
class CallbackAnswer:
    callback_query_id: str
    text: str | None
    show_alert: bool
    url: str | None
    cache_time: int | None


@dataclass
class InlineAnswer:
    inline_query_id: str
    query: str
    results: list[JSON]
    cache_time: int | None
    is_personal: bool
    next_offset: str | None
    button: JSON | None


@dataclass
class Webhook:
    url: str
    secret_token: str | None = None
    max_connections: int = 40
    ip_address: str | None = None
    last_error_date: int | None = None
    last_error_message: str | None = None


@dataclass
class FakeStats:
    """Counters for assertions and benchmark reports."""

    requests: Counter[str] = field(default_factory=Counter)  # API calls by method
    sent: int = 0  # messages accepted by sendMessage
    sent_by_chat: Counter[int] = field(default_factory=Counter)
    flood_429: int = 0  # requests rejected by the enforced flood limits
    flood_429_global: int = 0  # of which by the global limit
    flood_429_by_chat: Counter[int] = field(default_factory=Counter)  # by per-chat limits
    injected_failures: int = 0  # answers from fail_next
    errors_by_code: Counter[int] = field(default_factory=Counter)  # every error answer


@dataclass(frozen=True)
class Window:
    """At most `limit` events in any `period` seconds, like Telegram's flood counters."""

    limit: int
    period: float

    @classmethod
    def for_rate(cls, per_second: float, base: float, scale: float, burst: int = 1) -> Window:
        """The window allowing `per_second` on average, counted over `base` seconds."""
        limit = max(1, math.floor(per_second * base + 1e-9))  # 20/60*60 may be 19.999...
        return cls(limit * burst, limit * burst / per_second / scale)

    def wait(self, times: list[float], now: float) -> float:
        """Seconds until one more event fits (0 when it fits now); `times` is sorted."""
        start = bisect.bisect_right(times, now - self.period)
        inside = len(times) - start
        if inside < self.limit:
            return 0.0
        return times[start + inside - self.limit] + self.period - now

    def most_in_any_window(self, times: list[float]) -> int:
        most = first = 0
        for last, moment in enumerate(times):
            while moment - times[first] >= self.period:
                first += 1
            most = max(most, last - first + 1)
        return most


@dataclass(frozen=True)
class ObservedRates:
    global_max: int  # most messages accepted in any window of global_window.period
    global_window: Window
    per_chat: dict[int, int]  # most messages to each chat in any window of its nominal size
    chat_windows: dict[int, Window]  # the nominal (strict) window of each chat


@dataclass
class _Fault:
    status: int
    description: str | None
    retry_after: int | None
    remaining: int

    def response(self) -> web.Response:
        if self.description is None and self.status in (502, 503, 504):
            phrase = HTTPStatus(self.status).phrase  # nginx answers these, in HTML
            page = _NGINX_PAGE.format(status=self.status, phrase=phrase)
            return web.Response(status=self.status, text=page, content_type="text/html")
        parameters = {"retry_after": self.retry_after} if self.retry_after else None
        if self.description is not None:
            description = self.description
        elif self.status == 429:
            description = f"Too Many Requests: retry after {self.retry_after}"
        else:
            description = HTTPStatus(self.status).phrase
        return _ApiError(self.status, description, parameters).response()


@dataclass
class _Poll:
    """A getUpdates request waiting for updates."""

    wake: asyncio.Event = field(default_factory=asyncio.Event)
    superseded: bool = False


class _Signal:
    """Wakes everyone waiting for 'something changed'."""

    def __init__(self) -> None:
        self.event = asyncio.Event()

    def fire(self) -> None:
        self.event.set()
        self.event = asyncio.Event()


class _Params:
    """Method parameters from a query string, form, multipart or JSON body.

    Form values are strings and objects come JSON-encoded (as PTB sends them); the Bot API
    accepts both shapes everywhere, and so do these accessors.
    """

    def __init__(self, values: JSON) -> None:
        self.values = values

    def text(self, name: str) -> str | None:
        value = self.values.get(name)
        if value is None or isinstance(value, str):
            return value
        if isinstance(value, bool):
            return "true" if value else "false"
        return json.dumps(value) if isinstance(value, dict | list) else str(value)

    def integer(self, name: str) -> int | None:
        """Like TDLib's to_integer: leading digits count ("10.5" is 10)."""
        value = self.values.get(name)
        if value is None or value == "":
            return None
        if isinstance(value, int | float) and not isinstance(value, bool):
            return int(value)
        match = _INTEGER.match(value) if isinstance(value, str) else None
        if match is None:
            raise _bad_request(f'field "{name}" must be a valid Number')
        return int(match.group())

    def flag(self, name: str) -> bool:
        value = self.values.get(name)
        if isinstance(value, bool):
            return value
        return str(value).strip().lower() in ("true", "1")

    def obj(self, name: str) -> JSON | None:
        return self._decoded(name, dict, "object")

    def array(self, name: str) -> list[Any] | None:
        return self._decoded(name, list, "array")

    def _decoded(self, name: str, kind: type, noun: str) -> Any:
        value = self.values.get(name)
        if value is None or value == "":
            return None
        if isinstance(value, str):
            try:
                value = json.loads(value)
            except ValueError:
                raise _bad_request(f"can't parse {name} JSON {noun}") from None
        if not isinstance(value, kind):
            raise _bad_request(f"can't parse {name} JSON {noun}")
        return value

    def chat_ref(self, name: str = "chat_id") -> int | str:
        return _chat_ref(self.values.get(name), name)


def _chat_ref(value: Any, name: str = "chat_id") -> int | str:
    """A chat id or @username, as Telegram accepts them."""
    if value is None or value == "":
        raise _bad_request(f"{name} is empty")
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    text = str(value).strip()
    if re.fullmatch(r"-?\d+", text):
        return int(text)
    if text.startswith("@") and len(text) > 1:
        return text
    raise _bad_request("chat not found")


async def _read_params(request: web.Request) -> JSON:
    values: JSON = dict(request.query)
    if not request.body_exists:
        return values
    if request.content_type == "application/json":
        try:
            body = json.loads(await request.read() or b"{}")
        except ValueError:
            raise _bad_request("can't parse JSON object") from None
        if not isinstance(body, dict):
            raise _bad_request("can't parse JSON object")
        values.update(body)
    else:
        values.update(await request.post())  # files stay aiohttp FileField objects
    return values


class FakeTelegram:
    """A fake Bot API server; `async with FakeTelegram() as fake:` runs it."""

    def __init__(
        self,
        token: str = DEFAULT_TOKEN,
        *,
        bot_username: str = "fake_bot",
        bot_first_name: str = "Fake Bot",
        supports_inline_queries: bool = True,
        global_rate: float = 30.0,
        private_rate: float = 1.0,
        private_burst: int = 3,
        group_per_minute: float = 20.0,
        scale: float = 1.0,
        enforce_limits: bool = True,
        strict_html_entities: bool = False,
    ) -> None:
        if not _TOKEN.fullmatch(token):
            raise ValueError("a bot token looks like 123456:ABC-def")
        self.token = token
        self.bot_id = int(token.split(":", 1)[0])
        self.bot_username = bot_username
        self.bot_first_name = bot_first_name
        self.supports_inline_queries = supports_inline_queries
        self.scale = scale
        self.enforce_limits = enforce_limits
        self.strict_html_entities = strict_html_entities
        self.global_window = Window.for_rate(global_rate, 1.0, scale)
        self.private_window = Window.for_rate(private_rate, 1.0, scale)
        self.private_enforced_window = Window.for_rate(private_rate, 1.0, scale, private_burst)
        self.group_window = Window.for_rate(group_per_minute / 60, 60.0, scale)

        self.users: dict[int, FakeUser] = {}
        self.chats: dict[int, FakeChat] = {}
        self.stats = FakeStats()
        self.callback_answers: list[CallbackAnswer] = []
        self.inline_answers: list[InlineAnswer] = []
        self.chat_actions: list[tuple[int, str]] = []
        self.webhook: Webhook | None = None

        self._sent: list[SentMessage] = []
        self._sent_index: dict[tuple[int, int], SentMessage] = {}
        self._commands: dict[tuple[tuple[Any, ...], str], list[JSON]] = {}
        self._updates: deque[JSON] = deque()
        self._next_update_id = 1
        self._allowed_updates = DEFAULT_UPDATE_TYPES
        self._poll: _Poll | None = None
        self._open_callbacks: set[str] = set()
        self._open_inline_queries: dict[str, str] = {}  # id -> query text
        self._query_ids = itertools.count(4_242_000_000_000_000_001)
        self._send_times: defaultdict[int, list[float]] = defaultdict(list)
        self._global_send_times: list[float] = []
        self._penalties: dict[int | None, float] = {}  # chat id (None: global) -> until
        self._faults: defaultdict[str, deque[_Fault]] = defaultdict(deque)
        self._stall: tuple[float, str | None] = (0.0, None)
        self._changed = _Signal()
        self._closing = asyncio.Event()
        self._runner: web.AppRunner | None = None
        self._port: int | None = None
        handlers: list[tuple[str, Callable[[_Params], Awaitable[Any]]]] = [
            ("getMe", self._get_me),
            ("getUpdates", self._get_updates),
            ("setWebhook", self._set_webhook),
            ("deleteWebhook", self._delete_webhook),
            ("getWebhookInfo", self._get_webhook_info),
            ("sendMessage", self._send_message),
            ("editMessageText", self._edit_message_text),
            ("deleteMessage", self._delete_message),
            ("answerCallbackQuery", self._answer_callback_query),
            ("answerInlineQuery", self._answer_inline_query),
            ("setMyCommands", self._set_my_commands),
            ("getMyCommands", self._get_my_commands),
            ("deleteMyCommands", self._delete_my_commands),
            ("getChat", self._get_chat),
            ("getChatMember", self._get_chat_member),
            ("getChatAdministrators", self._get_chat_administrators),
            ("sendChatAction", self._send_chat_action),
            ("close", self._true),
            ("logOut", self._true),
        ]
        # Telegram matches method names case-insensitively.
        self._methods = {name.lower(): (name, handler) for name, handler in handlers}

    # -- lifecycle -------------------------------------------------------------------------

    async def __aenter__(self) -> FakeTelegram:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()

    async def start(self) -> None:
        self._closing.clear()
        app = web.Application()
        app.router.add_route("*", "/bot{token}/{method}", self._handle)
        app.router.add_route("*", "/file/bot{token}/{path:.*}", self._no_file)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0)
        await self._runner.setup()
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.bind(("127.0.0.1", 0))  # loopback only, ephemeral port
        self._port = sock.getsockname()[1]
        await web.SockSite(self._runner, sock).start()

    async def stop(self) -> None:
        """Stop serving; waiting long polls and stalls end at once."""
        self._closing.set()
        if self._poll is not None:
            self._poll.wake.set()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    @property
    def url(self) -> str:
        if self._port is None:
            raise RuntimeError("the fake Telegram server is not running")
        return f"http://127.0.0.1:{self._port}"

    @property
    def api_url(self) -> str:
        """For `base_url`: PTB appends the token."""
        return f"{self.url}/bot"

    @property
    def file_url(self) -> str:
        """For `base_file_url` (no files are served)."""
        return f"{self.url}/file/bot"

    # -- chats and users -------------------------------------------------------------------

    def add_user(
        self,
        user_id: int,
        first_name: str | None = None,
        *,
        last_name: str | None = None,
        username: str | None = None,
        language_code: str | None = None,
    ) -> FakeUser:
        """Create a user, or update the given fields of a known one."""
        if user_id <= 0:
            raise ValueError("user ids are positive")
        user = self.users.get(user_id)
        if user is None:
            user = self.users[user_id] = FakeUser(user_id, first_name or f"User {user_id}")
        elif first_name is not None:
            user.first_name = first_name
        user.last_name = last_name or user.last_name
        user.username = username or user.username
        user.language_code = language_code or user.language_code
        return user

    def add_private_chat(
        self,
        user_id: int,
        first_name: str | None = None,
        *,
        last_name: str | None = None,
        username: str | None = None,
        language_code: str | None = None,
    ) -> FakeChat:
        """A private chat with a user who has started the bot."""
        self.add_user(user_id, first_name, last_name=last_name, username=username,
                      language_code=language_code)
        return self.chats.setdefault(user_id, FakeChat(user_id, "private"))

    def add_group(
        self,
        chat_id: int,
        title: str,
        *,
        kind: str = "group",
        admins: Mapping[int, str] | None = None,
        members: Iterable[int] = (),
        username: str | None = None,
        bot_status: str = "member",
    ) -> FakeChat:
        """A group or supergroup with the bot in it; `admins` maps user ids to
        "creator" or "administrator"."""
        if kind not in ("group", "supergroup"):
            raise ValueError('kind is "group" or "supergroup"')
        return self._add_shared_chat(chat_id, kind, title, username, admins, members, bot_status)

    def add_channel(
        self,
        chat_id: int,
        title: str,
        *,
        bot_can_post: bool = True,
        username: str | None = None,
        admins: Mapping[int, str] | None = None,
        members: Iterable[int] = (),
    ) -> FakeChat:
        """A channel with the bot as administrator, allowed to post or not."""
        chat = self._add_shared_chat(chat_id, "channel", title, username, admins, members,
                                     "administrator")
        chat.bot_can_post = bot_can_post
        return chat

    def _add_shared_chat(
        self,
        chat_id: int,
        kind: str,
        title: str,
        username: str | None,
        admins: Mapping[int, str] | None,
        members: Iterable[int],
        bot_status: str,
    ) -> FakeChat:
        if chat_id >= 0:
            raise ValueError("group and channel ids are negative")
        if bot_status not in MEMBER_STATUSES:
            raise ValueError(f"unknown member status {bot_status!r}")
        chat = FakeChat(chat_id, kind, title=title, username=username, bot_status=bot_status)
        for user_id in members:
            self.add_user(user_id)
            chat.members[user_id] = "member"
        for user_id, status in (admins or {}).items():
            if status not in ("creator", "administrator"):
                raise ValueError('admins map user ids to "creator" or "administrator"')
            self.add_user(user_id)
            chat.members[user_id] = status
        self.chats[chat_id] = chat
        return chat

    def block(self, chat_id: int) -> None:
        """The user blocks the bot, or the bot is kicked from the group or channel."""
        chat = self.chats[chat_id]
        if chat.type == "private":
            chat.blocked = True
        else:
            chat.bot_status = "kicked"

    def migrate(self, chat_id: int, new_chat_id: int) -> FakeChat:
        """Upgrade a group to a supergroup; the old id then answers with ChatMigrated."""
        old = self.chats[chat_id]
        if old.type != "group" or old.migrated_to is not None:
            raise ValueError("only a basic group can be migrated, once")
        if new_chat_id in self.chats or new_chat_id >= 0:
            raise ValueError("the supergroup needs a new negative id")
        new = FakeChat(new_chat_id, "supergroup", title=old.title, members=dict(old.members),
                       bot_status=old.bot_status)
        self.chats[new_chat_id] = new
        old.migrated_to = new_chat_id
        return new

    # -- what the bot did ------------------------------------------------------------------

    def sent_messages(self, chat_id: int | None = None) -> list[SentMessage]:
        """Messages the bot sent, oldest first (deleted ones included, marked)."""
        return [m for m in self._sent if chat_id is None or m.chat_id == chat_id]

    async def wait_for_messages(
        self, chat_id: int | None, count: int, timeout: float = 5.0
    ) -> list[SentMessage]:
        """Wait until the bot has sent at least `count` messages to the chat (any chat
        for None); returns all of them."""
        await self.wait_until(lambda: len(self.sent_messages(chat_id)) >= count, timeout,
                              f"{count} message(s) to chat {chat_id}")
        return self.sent_messages(chat_id)

    async def wait_until(
        self, predicate: Callable[[], bool], timeout: float = 5.0, what: str = "condition"
    ) -> None:
        """Wait until `predicate()` holds; it is re-checked after every API call and
        injected update. Raises TimeoutError naming `what`."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while not predicate():
            remaining = deadline - loop.time()
            if remaining <= 0:
                raise TimeoutError(f"timed out after {timeout}s waiting for {what}")
            event = self._changed.event  # taken now, so a change before the wait counts
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(event.wait(), remaining)

    @property
    def pending_updates(self) -> list[JSON]:
        """Updates not yet confirmed by the bot (getUpdates offset) or delivered."""
        return list(self._updates)

    def commands(self, scope: JSON | None = None, language_code: str = "") -> list[JSON]:
        """The commands set for exactly this scope and language, as getMyCommands."""
        return list(self._commands.get((self._scope_key(scope), language_code), []))

    def max_observed_rates(self) -> ObservedRates:
        """The densest traffic seen, counted in the nominal (strict) windows."""
        windows = {chat_id: self._nominal_window(chat_id) for chat_id in self._send_times}
        return ObservedRates(
            global_max=self.global_window.most_in_any_window(self._global_send_times),
            global_window=self.global_window,
            per_chat={chat_id: windows[chat_id].most_in_any_window(times)
                      for chat_id, times in self._send_times.items()},
            chat_windows=windows,
        )

    def flood_violations(self) -> list[str]:
        """Every nominal flood limit the accepted traffic exceeded (empty: none)."""
        rates = self.max_observed_rates()
        found = []
        if rates.global_max > self.global_window.limit:
            found.append(f"global: {rates.global_max} messages within "
                         f"{self.global_window.period:g}s (limit {self.global_window.limit})")
        for chat_id, most in rates.per_chat.items():
            window = rates.chat_windows[chat_id]
            if most > window.limit:
                found.append(f"chat {chat_id}: {most} messages within {window.period:g}s "
                             f"(limit {window.limit})")
        return found

    # -- fault injection -------------------------------------------------------------------

    def fail_next(
        self,
        method: str,
        status: int,
        description: str | None = None,
        count: int = 1,
        retry_after: int | None = None,
    ) -> None:
        """Answer the next `count` calls of `method` with this error instead.

        Without a description: 429 says "Too Many Requests: retry after N" (N defaults to
        1), 502-504 come as nginx's HTML page, as Telegram's front end sends them, and other
        codes use the HTTP reason phrase.
        """
        if status == 429 and retry_after is None:
            retry_after = 1
        self._faults[method.lower()].append(_Fault(status, description, retry_after, count))

    def stall(self, seconds: float, method: str | None = None) -> None:
        """Delay every answer (or one method's) by `seconds` until `stall(0)`."""
        self._stall = (seconds, method.lower() if method else None)

    # -- updates from users ----------------------------------------------------------------

    def push_update(self, update: Mapping[str, Any]) -> JSON | None:
        """Queue a raw update (one update type key; update_id is assigned). Returns it,
        or None when allowed_updates excludes its type, as Telegram then drops it."""
        kinds = [key for key in update if key != "update_id"]
        if len(kinds) != 1:
            raise ValueError("an update has exactly one update type field")
        if kinds[0] not in self._allowed_updates:
            return None
        queued = {"update_id": self._next_update_id, kinds[0]: update[kinds[0]]}
        self._next_update_id += 1
        self._updates.append(queued)
        if self._poll is not None:
            self._poll.wake.set()
        self._changed.fire()
        return queued

    def send_text(
        self,
        chat_id: int,
        text: str,
        *,
        from_user: int | None = None,
        language_code: str | None = None,
        reply_to_message_id: int | None = None,
    ) -> JSON:
        """A user writes `text` in a chat; returns the Message. An unknown positive id
        is a new private chat. Commands get bot_command entities as Telegram marks them."""
        if not text:
            raise ValueError("Telegram users cannot send empty messages")
        chat = self.chats.get(chat_id)
        if chat is None and chat_id > 0:
            chat = self.add_private_chat(chat_id)
        if chat is None or chat.type == "channel":
            raise ValueError(f"no private chat or group {chat_id}; channels: send_channel_post")
        if chat.type == "private":
            user_id = chat.id
        else:
            user_id = from_user if from_user is not None else self._some_member(chat)
            if chat.members.get(user_id, "left") in ("left", "kicked"):
                chat.members[user_id] = "member"
        user = self.add_user(user_id, language_code=language_code)
        extra: JSON = {"text": text}
        if commands := find_bot_commands(text):
            extra["entities"] = [entity.to_api() for entity in commands]
        if reply_to_message_id is not None:
            extra["reply_to_message"] = _without_reply(chat.messages[reply_to_message_id])
        message = self._new_message(chat, user.to_api(with_language=True), None, extra)
        self.push_update({"message": message})
        return message

    def send_channel_post(self, chat_id: int, text: str) -> JSON:
        """A channel administrator posts `text`; returns the Message."""
        chat = self.chats[chat_id]
        if chat.type != "channel":
            raise ValueError(f"chat {chat_id} is not a channel")
        extra: JSON = {"text": text}
        if commands := find_bot_commands(text):
            extra["entities"] = [entity.to_api() for entity in commands]
        message = self._new_message(chat, None, self._chat_object(chat), extra)
        self.push_update({"channel_post": message})
        return message

    def send_callback_query(self, user_id: int, chat_id: int, message_id: int, data: str) -> JSON:
        """A user presses an inline button with `data` under a message; returns the
        CallbackQuery (answer it with its id)."""
        message = self.chats[chat_id].messages.get(message_id)
        if message is None:
            raise ValueError(f"no live message {message_id} in chat {chat_id}")
        query_id = str(next(self._query_ids))
        self._open_callbacks.add(query_id)
        query = {
            "id": query_id,
            "from": self.add_user(user_id).to_api(with_language=True),
            "message": dict(message),
            "chat_instance": str(abs(chat_id) * 7919 % 10**18),
            "data": data,
        }
        self.push_update({"callback_query": query})
        return query

    def send_inline_query(
        self, user_id: int, query: str, *, offset: str = "", chat_type: str | None = "sender"
    ) -> JSON:
        """A user types `@bot query`; returns the InlineQuery."""
        query_id = str(next(self._query_ids))
        self._open_inline_queries[query_id] = query
        inline_query: JSON = {
            "id": query_id,
            "from": self.add_user(user_id).to_api(with_language=True),
            "query": query,
            "offset": offset,
        }
        if chat_type is not None:
            inline_query["chat_type"] = chat_type
        self.push_update({"inline_query": inline_query})
        return inline_query

    def send_my_chat_member(
        self,
        chat_id: int,
        new_status: str,
        *,
        from_user: int | None = None,
        old_status: str | None = None,
        can_post_messages: bool | None = None,
    ) -> JSON:
        """The bot's status in a chat changes (a user blocks it, it is added, promoted or
        kicked); applies the change and returns the ChatMemberUpdated."""
        chat = self.chats[chat_id]
        allowed = ("member", "kicked") if chat.type == "private" else MEMBER_STATUSES
        if new_status not in allowed:
            raise ValueError(f"status {new_status!r} is not possible in a {chat.type} chat")
        old_status = old_status or self._bot_status(chat)
        old_member = self._member_object(chat, self._bot_user(), old_status)
        if chat.type == "private":
            chat.blocked = new_status == "kicked"
            actor = chat.id
        else:
            chat.bot_status = new_status
            if can_post_messages is not None:
                chat.bot_can_post = can_post_messages
            actor = from_user if from_user is not None else self._some_member(chat)
        update = {
            "chat": self._chat_object(chat),
            "from": self.add_user(actor).to_api(with_language=True),
            "date": int(time.time()),
            "old_chat_member": old_member,
            "new_chat_member": self._member_object(chat, self._bot_user(), new_status),
        }
        self.push_update({"my_chat_member": update})
        return update

    def send_migration(
        self, chat_id: int, new_chat_id: int, *, from_user: int | None = None
    ) -> tuple[JSON, JSON]:
        """Upgrade a group to a supergroup with the service messages Telegram sends:
        `migrate_to_chat_id` in the old group, `migrate_from_chat_id` in the new one."""
        old = self.chats[chat_id]
        actor = from_user if from_user is not None else self._some_member(old)
        new = self.migrate(chat_id, new_chat_id)
        to_message = self._new_message(old, self.add_user(actor).to_api(with_language=True),
                                       None, {"migrate_to_chat_id": new_chat_id})
        from_message = self._new_message(new, dict(_GROUP_ANONYMOUS_BOT),
                                         self._chat_object(new), {"migrate_from_chat_id": chat_id})
        self.push_update({"message": to_message})
        self.push_update({"message": from_message})
        return to_message, from_message

    async def deliver_webhook(self, timeout: float = 5.0) -> int:
        """POST pending updates, one per request, to the webhook (127.0.0.1 only), with
        the secret token header when set. Stops at the first failure, which getWebhookInfo
        then reports; returns how many were delivered."""
        hook = self.webhook
        if hook is None:
            raise RuntimeError("no webhook is set")
        if urlsplit(hook.url).hostname != "127.0.0.1":
            raise RuntimeError("the fake only delivers webhooks to 127.0.0.1")
        headers = {}
        if hook.secret_token:
            headers["X-Telegram-Bot-Api-Secret-Token"] = hook.secret_token
        delivered = 0
        client_timeout = aiohttp.ClientTimeout(total=timeout)
        async with aiohttp.ClientSession(timeout=client_timeout) as session:
            while self._updates:
                error = None
                try:
                    async with session.post(hook.url, json=self._updates[0],
                                            headers=headers) as response:
                        if not 200 <= response.status < 300:
                            error = (f"Wrong response from the webhook: {response.status} "
                                     f"{response.reason}")
                except (aiohttp.ClientError, TimeoutError) as exc:
                    error = f"Connection failed: {exc.__class__.__name__}"
                if error is not None:
                    hook.last_error_date, hook.last_error_message = int(time.time()), error
                    break
                self._updates.popleft()
                delivered += 1
        self._changed.fire()
        return delivered

    # -- HTTP ------------------------------------------------------------------------------

    async def _handle(self, request: web.Request) -> web.Response:
        token = request.match_info["token"]
        if not _TOKEN.fullmatch(token):
            return _ApiError(404, "Not Found").response()
        if token != self.token:
            return _ApiError(401, "Unauthorized").response()
        entry = self._methods.get(request.match_info["method"].lower())
        if entry is None:
            return _ApiError(404, "Not Found").response()
        name, handler = entry
        self.stats.requests[name] += 1
        self._changed.fire()  # waiters may watch for a request arriving, e.g. a long poll
        try:
            params = _Params(await _read_params(request))
            delay, stalled_method = self._stall
            if delay > 0 and stalled_method in (None, name.lower()):
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._closing.wait(), delay)
            fault = self._take_fault(name)
            if fault is not None:
                self.stats.injected_failures += 1
                self.stats.errors_by_code[fault.status] += 1
                return fault.response()
            result = await handler(params)
        except _ApiError as error:
            self.stats.errors_by_code[error.code] += 1
            return error.response()
        finally:
            self._changed.fire()
        return _json_response(200, {"ok": True, "result": result})

    async def _no_file(self, request: web.Request) -> web.Response:
        return _ApiError(404, "Not Found").response()

    def _take_fault(self, method: str) -> _Fault | None:
        queue = self._faults.get(method.lower())
        if not queue:
            return None
        fault = queue[0]
        fault.remaining -= 1
        if fault.remaining <= 0:
            queue.popleft()
        return fault

    # -- objects ---------------------------------------------------------------------------

    def _bot_user(self) -> JSON:
        return {"id": self.bot_id, "is_bot": True, "first_name": self.bot_first_name,
                "username": self.bot_username}

    def _user_object(self, user_id: int) -> JSON | None:
        user = self.users.get(user_id)
        return None if user is None else user.to_api()

    def _chat_object(self, chat: FakeChat) -> JSON:
        data: JSON = {"id": chat.id}
        if chat.type == "private":
            user = self.users[chat.id]
            data["first_name"] = user.first_name
            if user.last_name:
                data["last_name"] = user.last_name
            if user.username:
                data["username"] = user.username
        else:
            data["title"] = chat.title
            if chat.username:
                data["username"] = chat.username
        data["type"] = chat.type
        return data

    def _chat_full_info(self, chat: FakeChat) -> JSON:
        gifts = chat.type == "private"
        return {
            **self._chat_object(chat),
            "accent_color_id": 0,
            "max_reaction_count": 11,
            "accepted_gift_types": {
                "unlimited_gifts": gifts, "limited_gifts": gifts, "unique_gifts": gifts,
                "premium_subscription": gifts, "gifts_from_channels": gifts,
            },
        }  # fmt: skip

    def _bot_status(self, chat: FakeChat) -> str:
        if chat.type == "private":
            return "kicked" if chat.blocked else "member"
        return chat.bot_status

    def _member_object(self, chat: FakeChat, user: JSON, status: str) -> JSON:
        """A ChatMember of the right subclass with every field Telegram sends."""
        if status == "creator":
            return {"status": "creator", "user": user, "is_anonymous": False}
        if status == "kicked":
            return {"status": "kicked", "user": user, "until_date": 0}
        if status != "administrator":
            return {"status": status, "user": user}
        member: JSON = {
            "status": "administrator", "user": user, "can_be_edited": False,
            "is_anonymous": False, "can_manage_chat": True, "can_delete_messages": True,
            "can_manage_video_chats": True, "can_restrict_members": True,
            "can_promote_members": False, "can_change_info": True, "can_invite_users": True,
            "can_post_stories": True, "can_edit_stories": True, "can_delete_stories": True,
        }  # fmt: skip
        if chat.type == "channel":
            can_post = chat.bot_can_post if user["id"] == self.bot_id else True
            member.update(can_post_messages=can_post, can_edit_messages=can_post)
        else:
            member["can_pin_messages"] = True
            if chat.type == "supergroup":
                member["can_manage_topics"] = False
        return member

    def _some_member(self, chat: FakeChat) -> int:
        """Who acts in a group when a test does not say: the creator, else an admin, else
        any member."""
        for wanted in ("creator", "administrator", "member"):
            for user_id, status in chat.members.items():
                if status == wanted:
                    return user_id
        raise ValueError(f"chat {chat.id} has no members; pass from_user")

    def _new_message(
        self, chat: FakeChat, sender: JSON | None, sender_chat: JSON | None, extra: JSON
    ) -> JSON:
        message: JSON = {"message_id": chat.next_message_id}
        chat.next_message_id += 1
        if sender is not None:
            message["from"] = sender
        if sender_chat is not None:
            message["sender_chat"] = sender_chat
        message["chat"] = self._chat_object(chat)
        message["date"] = int(time.time())
        message.update(extra)
        chat.messages[message["message_id"]] = message
        return message

    # -- checks ----------------------------------------------------------------------------

    def _chat(self, ref: int | str) -> FakeChat:
        """Resolve a chat id or @username as Telegram does for bots."""
        if isinstance(ref, str):
            name = ref[1:].lower()
            chat = next((c for c in self.chats.values()
                         if c.type != "private" and (c.username or "").lower() == name), None)
        else:
            chat = self.chats.get(ref)
        if chat is None:
            if isinstance(ref, int) and ref in self.users:
                raise _ApiError(403, "Forbidden: bot can't initiate conversation with a user")
            raise _bad_request("chat not found")
        if chat.migrated_to is not None:
            raise _ApiError(400, "Bad Request: group chat was upgraded to a supergroup chat",
                            {"migrate_to_chat_id": chat.migrated_to})
        return chat

    def _check_member(self, chat: FakeChat) -> None:
        if chat.type != "private" and chat.bot_status in ("kicked", "left"):
            verb = "was kicked from" if chat.bot_status == "kicked" else "is not a member of"
            raise _ApiError(403, f"Forbidden: bot {verb} the {chat.type} chat")

    def _check_can_send(self, chat: FakeChat) -> None:
        if chat.blocked:
            raise _ApiError(403, "Forbidden: bot was blocked by the user")
        self._check_member(chat)
        if chat.type == "channel" and not chat.bot_can_post:
            raise _bad_request("need administrator rights in the channel chat")

    def _format(
        self,
        raw: str | None,
        parse_mode: str | None,
        entities: Any,
        too_long: str = "message is too long",
    ) -> FormattedText:
        """The text as Telegram stores it, or the error Telegram gives for it."""
        if not raw:
            raise _bad_request("message text is empty")
        mode = (parse_mode or "").lower()
        try:
            if mode == "html":
                parsed = parse_html(raw, resolve_user=self._user_object,
                                    strict_entities=self.strict_html_entities)
            elif mode in ("", "none"):
                parsed = FormattedText(raw, self._given_entities(entities))
            elif mode in ("markdown", "markdownv2"):
                raise _ApiError(501, f"Not Implemented: the fake Telegram server does not "
                                     f"parse {parse_mode}, only HTML")
            else:
                raise _bad_request("unsupported parse_mode")
            formatted = normalize(parsed.text, parsed.entities)
        except EntityParseError as error:
            raise _bad_request(f"can't parse entities: {error}") from None
        except EmptyTextError:
            raise _bad_request("message text is empty") from None
        except TextError as error:
            message = str(error)
            raise _bad_request(message[:1].lower() + message[1:]) from None
        if utf16_len(formatted.text) > MAX_TEXT_LENGTH:
            raise _bad_request(too_long)
        return formatted

    def _given_entities(self, items: Any) -> list[Entity]:
        """The `entities` parameter; types Telegram detects itself are ignored."""
        if items is None:
            return []
        if isinstance(items, str):
            try:
                items = json.loads(items)
            except ValueError:
                raise _bad_request("can't parse entities JSON object") from None
        if not isinstance(items, list) or not all(isinstance(i, dict) for i in items):
            raise _bad_request("can't parse entities JSON object")
        entities = []
        for item in items:
            kind = item.get("type")
            if kind not in USER_ENTITY_TYPES:
                continue
            try:
                entity = Entity(kind, int(item["offset"]), int(item["length"]))
            except (KeyError, TypeError, ValueError):
                raise _bad_request("can't parse MessageEntity: offset and length must be "
                                   "Numbers") from None
            if kind == "text_link":
                entity.url = checked_link(str(item.get("url") or ""))
                if entity.url is None:
                    raise _bad_request("wrong HTTP URL specified")
            elif kind == "text_mention":
                user_id = (item.get("user") or {}).get("id")
                entity.user = self._user_object(user_id) if isinstance(user_id, int) else None
                if entity.user is None:
                    raise _bad_request("user not found")
            elif kind == "custom_emoji":
                entity.custom_emoji_id = str(item.get("custom_emoji_id") or "")
                if not entity.custom_emoji_id.lstrip("-").isdigit():
                    raise _bad_request("invalid custom emoji identifier specified")
            elif kind == "pre":
                entity.language = item.get("language") or None
            entities.append(entity)
        return entities

    def _reply_markup(self, markup: JSON | None, *, inline_only: bool = False) -> JSON | None:
        """Validate reply_markup; returns the inline keyboard Telegram echoes, if any."""
        if markup is None:
            return None
        keyboard = markup.get("inline_keyboard")
        if keyboard is None:
            if inline_only or not {"keyboard", "remove_keyboard", "force_reply"} & markup.keys():
                raise _bad_request("can't parse reply keyboard markup JSON object")
            return None
        if not isinstance(keyboard, list) or not all(isinstance(row, list) for row in keyboard):
            raise _bad_request("can't parse inline keyboard JSON object")
        for button in itertools.chain.from_iterable(keyboard):
            if not isinstance(button, dict) or not isinstance(button.get("text"), str):
                raise _bad_request('can\'t parse inline keyboard button: Field "text" must be '
                                   "of type String")
            if len(_BUTTON_ACTIONS & button.keys()) != 1:
                raise _bad_request("can't parse inline keyboard button: Text buttons are "
                                   "unallowed in the inline keyboard")
            data = button.get("callback_data")
            if data is not None and not 1 <= len(str(data).encode()) <= 64:
                raise _bad_request("BUTTON_DATA_INVALID")
            url = button.get("url")
            if url is not None and checked_link(str(url)) is None:
                raise _bad_request(f"inline keyboard button URL '{url}' is invalid: "
                                   "Wrong HTTP URL")
        return {"inline_keyboard": keyboard}

    def _flood_check(self, chat: FakeChat) -> None:
        """Admit one message to `chat` under the flood limits, or answer 429."""
        now = time.monotonic()
        chat_times = self._send_times[chat.id]
        if self.enforce_limits:
            window = self.private_enforced_window if chat.type == "private" else self.group_window
            for key, times, limit in ((chat.id, chat_times, window),
                                      (None, self._global_send_times, self.global_window)):
                wait = max(self._penalties.get(key, 0.0) - now, limit.wait(times, now))
                if wait > 0:
                    retry_after = max(1, math.ceil(wait))
                    self._penalties[key] = max(self._penalties.get(key, 0.0),
                                               now + retry_after / self.scale)
                    self.stats.flood_429 += 1
                    if key is None:
                        self.stats.flood_429_global += 1
                    else:
                        self.stats.flood_429_by_chat[key] += 1
                    raise _ApiError(429, f"Too Many Requests: retry after {retry_after}",
                                    {"retry_after": retry_after})
        chat_times.append(now)
        self._global_send_times.append(now)

    def _nominal_window(self, chat_id: int) -> Window:
        return self.private_window if chat_id > 0 else self.group_window

    def _scope_key(self, scope: JSON | None) -> tuple[Any, ...]:
        scope = scope or {"type": "default"}
        kind = scope.get("type")
        if kind in ("default", "all_private_chats", "all_group_chats", "all_chat_administrators"):
            return (kind,)
        if kind not in ("chat", "chat_administrators", "chat_member"):
            raise _bad_request("unsupported bot command scope type")
        chat = self._chat(_chat_ref(scope.get("chat_id")))
        if kind != "chat_member":
            return kind, chat.id
        user_id = scope.get("user_id")
        if not isinstance(user_id, int) or user_id not in self.users:
            raise _bad_request("user not found")
        return kind, chat.id, user_id

    def _command_key(self, params: _Params) -> tuple[tuple[Any, ...], str]:
        language = params.text("language_code") or ""
        if language and not re.fullmatch(r"[a-z]{2}", language):
            raise _bad_request("invalid language code specified")
        return self._scope_key(params.obj("scope")), language

    # -- methods ---------------------------------------------------------------------------

    async def _true(self, params: _Params) -> bool:
        return True

    async def _get_me(self, params: _Params) -> JSON:
        return {
            **self._bot_user(),
            "can_join_groups": True,
            "can_read_all_group_messages": False,
            "supports_inline_queries": self.supports_inline_queries,
            "can_connect_to_business": False,
            "has_main_web_app": False,
        }

    async def _get_updates(self, params: _Params) -> list[JSON]:
        """Long polling: confirm updates below `offset`, then wait up to `timeout` seconds
        for one. A newer getUpdates ends an older waiting one with 409, as on Telegram."""
        if self.webhook is not None:
            raise _ApiError(409, "Conflict: can't use getUpdates method while webhook is "
                                 "active; use deleteWebhook to delete the webhook first")
        limit = min(max(params.integer("limit") or 100, 1), 100)
        timeout = max(params.integer("timeout") or 0, 0)
        allowed = params.array("allowed_updates")
        if allowed is not None:
            self._allowed_updates = frozenset(allowed) & UPDATE_TYPES or DEFAULT_UPDATE_TYPES
        offset = params.integer("offset")
        if offset is not None and offset < 0:
            while len(self._updates) > -offset:
                self._updates.popleft()
        elif offset is not None:
            while self._updates and self._updates[0]["update_id"] < offset:
                self._updates.popleft()
        if self._poll is not None:
            self._poll.superseded = True
            self._poll.wake.set()
        poll = self._poll = _Poll()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        try:
            while not self._updates and not self._closing.is_set():
                remaining = deadline - loop.time()
                if remaining <= 0:
                    break
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(poll.wake.wait(), remaining)
                poll.wake.clear()
                if poll.superseded:
                    raise _ApiError(409, "Conflict: terminated by other getUpdates request; "
                                         "make sure that only one bot instance is running")
        finally:
            if self._poll is poll:
                self._poll = None
        return list(itertools.islice(self._updates, limit))

    async def _set_webhook(self, params: _Params) -> bool:
        url = params.text("url") or ""
        if url:
            parts = urlsplit(url)
            local = parts.hostname == "127.0.0.1"  # plain http allowed for local tests only
            if parts.scheme != "https" and not (local and parts.scheme == "http"):
                raise _bad_request("bad webhook: An HTTPS URL must be provided for webhook")
            if not local and (parts.port or 443) not in (80, 88, 443, 8443):
                raise _bad_request("bad webhook: Webhook can be set up only on ports 80, 88, "
                                   "443 or 8443")
        secret = params.text("secret_token")
        if secret is not None and not _SECRET_TOKEN.fullmatch(secret):
            raise _bad_request("secret token contains unallowed characters")
        allowed = params.array("allowed_updates")
        if allowed is not None:
            self._allowed_updates = frozenset(allowed) & UPDATE_TYPES or DEFAULT_UPDATE_TYPES
        if params.flag("drop_pending_updates"):
            self._updates.clear()
        self.webhook = Webhook(url, secret, params.integer("max_connections") or 40,
                               params.text("ip_address")) if url else None
        return True

    async def _delete_webhook(self, params: _Params) -> bool:
        if params.flag("drop_pending_updates"):
            self._updates.clear()
        self.webhook = None
        return True

    async def _get_webhook_info(self, params: _Params) -> JSON:
        hook = self.webhook
        info: JSON = {"url": hook.url if hook else "", "has_custom_certificate": False,
                      "pending_update_count": len(self._updates)}
        if hook is not None:
            info["max_connections"] = hook.max_connections
            if hook.ip_address:
                info["ip_address"] = hook.ip_address
            if hook.last_error_date is not None:
                info["last_error_date"] = hook.last_error_date
                info["last_error_message"] = hook.last_error_message
            if self._allowed_updates != DEFAULT_UPDATE_TYPES:
                info["allowed_updates"] = sorted(self._allowed_updates)
        return info

    async def _send_message(self, params: _Params) -> JSON:
        chat = self._chat(params.chat_ref())
        self._check_can_send(chat)
        raw_text = params.text("text")
        parse_mode = params.text("parse_mode")
        formatted = self._format(raw_text, parse_mode, params.values.get("entities"))
        markup = params.obj("reply_markup")
        echoed_markup = self._reply_markup(markup)
        link_preview = params.obj("link_preview_options")
        reply_parameters = params.obj("reply_parameters") or {}
        reply_to_id = reply_parameters.get("message_id") or params.integer("reply_to_message_id")
        reply_to = None
        if reply_to_id is not None:
            reply_to = chat.messages.get(int(reply_to_id))
            may_skip = reply_parameters.get("allow_sending_without_reply") or params.flag(
                "allow_sending_without_reply")
            if reply_to is None and not may_skip:
                raise _bad_request("message to be replied not found")
        self._flood_check(chat)

        extra: JSON = {}
        if reply_to is not None:
            extra["reply_to_message"] = _without_reply(reply_to)
        extra["text"] = formatted.text
        entities = [entity.to_api() for entity in formatted.entities]
        if entities:
            extra["entities"] = entities
        if echoed_markup is not None:
            extra["reply_markup"] = echoed_markup
        if chat.type == "channel":
            message = self._new_message(chat, None, self._chat_object(chat), extra)
        else:
            message = self._new_message(chat, self._bot_user(), None, extra)
        preview_flag = params.values.get("disable_web_page_preview")
        record = SentMessage(
            chat_id=chat.id, message_id=message["message_id"], text=formatted.text,
            html=raw_text or "", entities=entities, parse_mode=parse_mode,
            reply_markup=markup, link_preview_options=link_preview,
            disable_web_page_preview=None if preview_flag is None else params.flag(
                "disable_web_page_preview"),
            reply_to_message_id=None if reply_to is None else reply_to["message_id"],
            params=dict(params.values), message=message, sent_at=time.monotonic(),
        )  # fmt: skip
        self._sent.append(record)
        self._sent_index[chat.id, record.message_id] = record
        self.stats.sent += 1
        self.stats.sent_by_chat[chat.id] += 1
        return message

    async def _edit_message_text(self, params: _Params) -> JSON:
        if params.text("inline_message_id"):
            raise _bad_request("MESSAGE_ID_INVALID")  # inline messages are not modelled
        chat = self._chat(params.chat_ref())
        self._check_can_send(chat)
        message_id = params.integer("message_id")
        if message_id is None:
            raise _bad_request("message identifier is not specified")
        message = chat.messages.get(message_id)
        if message is None:
            raise _bad_request("message to edit not found")
        record = self._sent_index.get((chat.id, message_id))
        if record is None:
            raise _bad_request("message can't be edited")
        raw_text = params.text("text")
        formatted = self._format(raw_text, params.text("parse_mode"),
                                 params.values.get("entities"))
        markup = params.obj("reply_markup")
        echoed_markup = self._reply_markup(markup, inline_only=True)
        entities = [entity.to_api() for entity in formatted.entities]
        if (message["text"], message.get("entities", []), message.get("reply_markup")) == (
            formatted.text, entities, echoed_markup
        ):
            raise _bad_request(_NOT_MODIFIED)
        message["text"] = formatted.text
        message.pop("entities", None)
        message.pop("reply_markup", None)
        if entities:
            message["entities"] = entities
        if echoed_markup is not None:
            message["reply_markup"] = echoed_markup
        message["edit_date"] = int(time.time())
        record.text, record.html, record.entities = formatted.text, raw_text or "", entities
        record.parse_mode, record.reply_markup = params.text("parse_mode"), markup
        record.edit_count += 1
        return message

    async def _delete_message(self, params: _Params) -> bool:
        chat = self._chat(params.chat_ref())
        self._check_member(chat)
        message_id = params.integer("message_id")
        if message_id is None or message_id not in chat.messages:
            raise _bad_request("message to delete not found")
        record = self._sent_index.get((chat.id, message_id))
        is_admin = chat.bot_status in ("administrator", "creator")
        if record is None and chat.type != "private" and not is_admin:
            raise _bad_request("message can't be deleted")
        del chat.messages[message_id]
        if record is not None:
            record.deleted = True
        return True

    async def _answer_callback_query(self, params: _Params) -> bool:
        query_id = params.text("callback_query_id") or ""
        if query_id not in self._open_callbacks:
            raise _bad_request(_QUERY_TOO_OLD)
        text = params.text("text")
        if text is not None and utf16_len(text) > MAX_CALLBACK_TEXT_LENGTH:
            raise _bad_request("MESSAGE_TOO_LONG")
        self._open_callbacks.discard(query_id)
        self.callback_answers.append(CallbackAnswer(
            query_id, text or None, params.flag("show_alert"), params.text("url"),
            params.integer("cache_time"),
        ))  # fmt: skip
        return True

    async def _answer_inline_query(self, params: _Params) -> bool:
        query_id = params.text("inline_query_id") or ""
        if query_id not in self._open_inline_queries:
            raise _bad_request(_QUERY_TOO_OLD)
        results = params.array("results")
        if results is None:
            raise _bad_request("can't parse results JSON array")
        if len(results) > MAX_INLINE_RESULTS:
            raise _bad_request("RESULTS_TOO_MUCH")
        seen: set[str] = set()
        for result in results:
            if not isinstance(result, dict):
                raise _bad_request("can't parse inline query result: expected an Object")
            result_id = str(result.get("id") or "")
            if not 1 <= len(result_id.encode()) <= 64:
                raise _bad_request("RESULT_ID_INVALID")
            if result_id in seen:
                raise _bad_request("RESULT_ID_DUPLICATE")
            seen.add(result_id)
            kind = result.get("type")
            if kind not in _INLINE_RESULT_TYPES:
                raise _bad_request(f'can\'t parse inline query result: Result type "{kind}" is '
                                   "not supported")
            content = result.get("input_message_content")
            if kind == "article":
                if not isinstance(result.get("title"), str):
                    raise _bad_request('can\'t parse inline query result: Field "title" must be '
                                       "of type String")
                if not isinstance(content, dict):
                    raise _bad_request('can\'t parse inline query result: Field '
                                       '"input_message_content" must be of type Object')
            if isinstance(content, dict) and "message_text" in content:
                self._format(str(content["message_text"]), content.get("parse_mode"),
                             content.get("entities"), too_long="MESSAGE_TOO_LONG")
            if result.get("reply_markup") is not None:
                self._reply_markup(result["reply_markup"], inline_only=True)
        query = self._open_inline_queries.pop(query_id)
        self.inline_answers.append(InlineAnswer(
            query_id, query, results, params.integer("cache_time"), params.flag("is_personal"),
            params.text("next_offset"), params.obj("button"),
        ))  # fmt: skip
        return True

    async def _set_my_commands(self, params: _Params) -> bool:
        commands = params.array("commands")
        if commands is None:
            raise _bad_request("can't parse commands JSON array")
        if len(commands) > 100:
            raise _bad_request("too many commands specified")
        cleaned = []
        for command in commands:
            name = command.get("command") if isinstance(command, dict) else None
            description = command.get("description") if isinstance(command, dict) else None
            if not isinstance(name, str) or not _COMMAND.fullmatch(name):
                raise _bad_request("BOT_COMMAND_INVALID")
            if not isinstance(description, str) or not 1 <= len(description.strip()) <= 256:
                raise _bad_request("BOT_COMMAND_DESCRIPTION_INVALID")
            cleaned.append({"command": name, "description": description.strip()})
        key = self._command_key(params)
        if cleaned:
            self._commands[key] = cleaned
        else:
            self._commands.pop(key, None)
        return True

    async def _get_my_commands(self, params: _Params) -> list[JSON]:
        return list(self._commands.get(self._command_key(params), []))

    async def _delete_my_commands(self, params: _Params) -> bool:
        self._commands.pop(self._command_key(params), None)
        return True

    async def _get_chat(self, params: _Params) -> JSON:
        chat = self._chat(params.chat_ref())
        self._check_member(chat)
        return self._chat_full_info(chat)

    async def _get_chat_member(self, params: _Params) -> JSON:
        chat = self._chat(params.chat_ref())
        self._check_member(chat)
        user_id = params.integer("user_id")
        if user_id == self.bot_id:
            return self._member_object(chat, self._bot_user(), self._bot_status(chat))
        user = self._user_object(user_id) if user_id is not None else None
        if user is None or (chat.type == "private" and user_id != chat.id):
            raise _bad_request("user not found")
        status = "member" if chat.type == "private" else chat.members.get(user["id"], "left")
        return self._member_object(chat, user, status)

    async def _get_chat_administrators(self, params: _Params) -> list[JSON]:
        chat = self._chat(params.chat_ref())
        self._check_member(chat)
        if chat.type == "private":
            raise _bad_request("there are no administrators in the private chat")
        admins = [
            self._member_object(chat, self.users[user_id].to_api(), status)
            for wanted in ("creator", "administrator")
            for user_id, status in chat.members.items()
            if status == wanted
        ]
        if chat.bot_status == "administrator":
            admins.append(self._member_object(chat, self._bot_user(), "administrator"))
        return admins

    async def _send_chat_action(self, params: _Params) -> bool:
        chat = self._chat(params.chat_ref())
        self._check_can_send(chat)
        action = params.text("action") or ""
        if action not in CHAT_ACTIONS:
            raise _bad_request("wrong parameter action in request")
        self.chat_actions.append((chat.id, action))
        return True


def _without_reply(message: JSON) -> JSON:
    """A message as embedded in reply_to_message (Telegram does not nest further)."""
    return {key: value for key, value in message.items() if key != "reply_to_message"}
