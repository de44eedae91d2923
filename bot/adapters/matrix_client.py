"""The Matrix client: its settings, retrying requests, and logging in.

With a password the bot logs in the first time only and keeps its device id and access
token in `matrix.store/credentials.json` (mode 0600), so restarts reuse the same device
and its encryption keys instead of piling up new devices on the account.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import random
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TypeVar

from aiohttp import ClientError
from nio import AsyncClient, AsyncClientConfig, ErrorResponse, LoginResponse, WhoamiResponse
from nio.responses import Response

from bot.config import MatrixConfig

log = logging.getLogger(__name__)

CREDENTIALS_FILE = "credentials.json"
DEVICE_NAME = "statement bot"
REQUEST_TIMEOUT = 60.0
DEFAULT_RETRY_AFTER = 5.0  # when a 429 does not say how long to wait

R = TypeVar("R", bound=Response)


class MatrixLoginError(RuntimeError):
    """The homeserver refused the configured credentials (the message names the key)."""


def create_client(config: MatrixConfig) -> AsyncClient:
    """A client that hands every 429 and network error back instead of handling them.

    In nio, `max_limit_exceeded=None` retries 429s forever inside the request, out of
    sight of the flood control, and `0` returns the first 429 as an error response; the
    latter lets `persist` pause the room and give up, logged, after many attempts.
    `max_timeouts=0` likewise raises connection errors at once, so the sync loop backs
    off with jitter and `stop()` is never stuck inside nio's own retries.
    """
    assert config.homeserver and config.user_id
    config.store.mkdir(mode=0o700, parents=True, exist_ok=True)
    return AsyncClient(
        config.homeserver, config.user_id, store_path=str(config.store),
        config=AsyncClientConfig(
            max_limit_exceeded=0, max_timeouts=0, request_timeout=REQUEST_TIMEOUT,
            encryption_enabled=config.encryption, store_sync_tokens=False,
        ),
    )


# retrying ------------------------------------------------------------------


class Backoff:
    """Exponential waits with jitter, capped: many clients coming back after an outage
    should not all knock at the same moment."""

    def __init__(self, first: float = 1.0, cap: float = 60.0) -> None:
        self.first = first
        self.cap = cap
        self.failures = 0

    def next_delay(self) -> float:
        delay = min(self.cap, self.first * 2 ** min(self.failures, 30))
        self.failures += 1
        return delay * random.uniform(0.5, 1.0)

    def reset(self) -> None:
        self.failures = 0


def http_status(response: Response) -> int | None:
    transport = response.transport_response
    return transport.status if transport is not None else None


def rate_limit_wait(response: Response) -> float | None:
    """Seconds the homeserver asks us to wait (429 M_LIMIT_EXCEEDED), else None."""
    if not isinstance(response, ErrorResponse):
        return None
    if response.status_code != "M_LIMIT_EXCEEDED" and http_status(response) != 429:
        return None
    if response.retry_after_ms:
        return response.retry_after_ms / 1000
    transport = response.transport_response
    header = transport.headers.get("Retry-After", "") if transport is not None else ""
    return float(header) if header.isdigit() else DEFAULT_RETRY_AFTER


def is_transient(response: Response) -> bool:
    """Worth trying again: no answer at all, or the server failed (5xx)."""
    if not isinstance(response, ErrorResponse):
        return False
    status = http_status(response)
    return status >= 500 if status is not None else response.status_code is None


async def persist(
    what: str, call: Callable[[], Awaitable[R]], *, attempts: int | None,
    max_backoff: float = 60.0, on_rate_limit: Callable[[float], None] | None = None,
) -> R | ErrorResponse:
    """Call until the homeserver gives a definite answer and return it.

    A 429 is waited out for as long as the server asks (`on_rate_limit` hears of it
    first); network errors and 5xx answers back off. After `attempts` tries (None:
    forever) the last answer is returned; a network error becomes an ErrorResponse.
    """
    backoff = Backoff(cap=max_backoff)
    attempt = 0
    while True:
        attempt += 1
        response: R | ErrorResponse
        try:
            response = await call()
        except (ClientError, TimeoutError) as error:
            response = ErrorResponse(f"network: {type(error).__name__}")
        wait = rate_limit_wait(response)
        if wait is not None and on_rate_limit is not None:
            on_rate_limit(wait)
        elif wait is None:
            if not is_transient(response):
                return response
            wait = backoff.next_delay()
        if attempts is not None and attempt >= attempts:
            return response
        log.warning("Matrix: %s: %s; trying again in %.1fs", what, response, wait)
        await asyncio.sleep(wait)


# logging in ----------------------------------------------------------------


@dataclass(frozen=True)
class Session:
    homeserver: str
    user_id: str
    device_id: str
    access_token: str


def read_session(config: MatrixConfig) -> Session | None:
    """The stored login, if it is for this homeserver and user."""
    path = config.store / CREDENTIALS_FILE
    try:
        session = Session(**json.loads(path.read_text(encoding="utf-8")))
    except FileNotFoundError:
        return None
    except (OSError, ValueError, TypeError) as error:
        log.warning("Matrix: ignoring unreadable %s (%s)", path, type(error).__name__)
        return None
    if (session.homeserver, session.user_id) != (config.homeserver, config.user_id):
        return None
    return session


def write_session(store: Path, session: Session) -> None:
    """Write atomically, readable by the bot's user only: it holds an access token."""
    path = store / CREDENTIALS_FILE
    temporary = path.with_suffix(".tmp")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as file:
        json.dump(asdict(session), file)
    os.chmod(temporary, 0o600)  # in case an older file existed with wider permissions
    os.replace(temporary, path)


async def log_in(client: AsyncClient, config: MatrixConfig, max_backoff: float = 60.0) -> None:
    """Give `client` a working login: the configured token, the stored one, or a fresh
    password login (on the stored device, so its encryption keys stay valid)."""
    if config.access_token is not None:
        client.access_token = config.access_token.get_secret_value()
        who = await persist("checking the access token", client.whoami, attempts=None,
                            max_backoff=max_backoff)
        if not isinstance(who, WhoamiResponse):
            raise MatrixLoginError(f"matrix.access_token: refused by the homeserver "
                                   f"({who.status_code})")
        _restore(client, config, who, config.device_id)
        return
    if config.password is None:
        raise MatrixLoginError("matrix: set access_token or password")
    saved = read_session(config)
    if saved is not None:
        client.access_token = saved.access_token
        who = await persist("checking the stored login", client.whoami, attempts=None,
                            max_backoff=max_backoff)
        if isinstance(who, WhoamiResponse):
            _restore(client, config, who, saved.device_id)
            return
        log.info("Matrix: the stored access token no longer works; logging in again")
        client.access_token, client.device_id = "", saved.device_id
    await _password_login(client, config, config.password.get_secret_value(), max_backoff)


def _restore(client: AsyncClient, config: MatrixConfig, who: WhoamiResponse,
             device_id: str | None) -> None:
    assert config.user_id
    if who.user_id != config.user_id:
        raise MatrixLoginError(f"matrix.user_id: the credentials are for {who.user_id}")
    device = who.device_id or device_id
    if device is None:
        raise MatrixLoginError("matrix.device_id: needed with this access token")
    client.restore_login(config.user_id, device, client.access_token)


async def _password_login(client: AsyncClient, config: MatrixConfig, password: str,
                          max_backoff: float) -> None:
    assert config.homeserver and config.user_id
    response = await persist("logging in", lambda: client.login(password, DEVICE_NAME),
                             attempts=None, max_backoff=max_backoff)
    if not isinstance(response, LoginResponse):
        raise MatrixLoginError(f"matrix.password: login refused ({response.status_code})")
    write_session(config.store, Session(config.homeserver, config.user_id, response.device_id,
                                        response.access_token))
    log.info("Matrix: logged in as a new device %s; the login is kept in %s",
             response.device_id, config.store)
