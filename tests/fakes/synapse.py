"""A real Synapse homeserver for the Matrix tests, run as a subprocess on 127.0.0.1.

Why a real server rather than a fake: the Matrix side of the bot depends on behaviour that is
hard to imitate faithfully (sync tokens, membership rules, rate limiting with `retry_after_ms`,
end-to-end key upload), so the tests talk to the homeserver that production talks to.

How it runs: `SynapseServer.start()` writes a small YAML config into a temporary directory
(SQLite database, one plain-HTTP `client` listener on a free loopback port, no federation
listener, no key servers, no metrics, no presence, no URL previews), starts
`python -m synapse.app.homeserver -c <config>` in its own session and waits until
`/_matrix/client/versions` answers. Synapse generates its signing key on the first start
(it does so for any missing key file); restarts reuse the key, database and port.
`stop()` sends SIGTERM to that one process id, waits 10 s, then sends SIGKILL. An `atexit`
hook and, on Linux, a parent-death signal (set when started from the main thread or by
`arestart()`) make sure an aborted or killed test run leaves no homeserver behind.
Rooms are created with Synapse 1.163's default room version, 12.

Rate limits: every limiter except `rc_message` is raised far beyond anything a test does.
`rc_message` keeps Synapse's default (0.2 messages/s, burst 10) so that one test can watch a
real `M_LIMIT_EXCEEDED`; `register_user()` lifts it for each new user through the admin
`override_ratelimit` API (an override of 0 disables *all* per-user limiters for that user)
unless `ratelimited=True` is passed. For a rate-limited user, creating a room also counts
against the message burst.

Timings on the 2-core development machine: the first start (fresh SQLite schema and signing
key) takes 1.5-2 s, `restart()` 1.2-1.6 s (Synapse exits on SIGTERM within 0.05 s; the rest is
mostly importing Synapse, ~1.4 s on its own), registering a user plus lifting its rate limit
about 20 ms. A 429 costs 0.5 s: Synapse holds every rejected request that long before answering.

Blocking calls: the admin helpers use `urllib` and block the caller for a few
milliseconds. Synapse runs in another process, so calling them from an async test cannot
deadlock; `aregister_user()` and `arestart()` run them in a worker thread for code that
must not block its event loop (e.g. while a client keeps syncing across a restart).
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import ctypes
import hashlib
import hmac
import itertools
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

SERVER_NAME = "localhost"
HOST = "127.0.0.1"
START_TIMEOUT = 60.0
STOP_TIMEOUT = 10.0
REQUEST_TIMEOUT = 30.0

# Far above anything a test does; applied to every limiter except `rc_message`.
_UNLIMITED = {"per_second": 10_000, "burst_count": 100_000}

# urllib would otherwise honour http_proxy/https_proxy from the environment, even for loopback.
_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))

_localpart_counter = itertools.count(1)


def unique_localpart(prefix: str = "user") -> str:
    """A localpart no other call in this run returns, so tests sharing a server never clash."""
    return f"{prefix.lower()}-{next(_localpart_counter)}-{secrets.token_hex(3)}"


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def _tail(path: Path, lines: int = 40) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return f"<{path.name}: missing>"
    return f"--- {path.name} ---\n" + "\n".join(text.splitlines()[-lines:])


# Resolved in the parent: preexec_fn runs between fork() and exec(), where loading is unsafe.
_PRCTL: Any = None
if sys.platform.startswith("linux"):
    with contextlib.suppress(OSError, AttributeError):
        _PRCTL = ctypes.CDLL(None, use_errno=True).prctl
_PR_SET_PDEATHSIG = 1
_SIGTERM = int(signal.SIGTERM)


def _die_with_parent() -> None:
    """Ask Linux to SIGTERM the child when the thread that started it dies (pytest killed)."""
    _PRCTL(_PR_SET_PDEATHSIG, _SIGTERM)


# Asynchronous restarts run here rather than in the event loop's executor: that one's threads
# end with each test's loop, and the parent-death signal fires when the *thread* that
# started the child ends, not only when the process does.
_SPAWNER = ThreadPoolExecutor(max_workers=1, thread_name_prefix="synapse-spawner")


def _lives_until_exit() -> bool:
    thread = threading.current_thread()
    return thread is threading.main_thread() or thread.name.startswith("synapse-spawner")


class SynapseError(RuntimeError):
    """Synapse failed to start, or answered an admin/client call with an error."""

    def __init__(self, message: str, status: int | None = None, body: Any = None) -> None:
        super().__init__(message)
        self.status = status
        self.body = body


@dataclass(frozen=True)
class RegisteredUser:
    """A user registered through the admin API, already logged in on one device."""

    user_id: str
    access_token: str
    device_id: str
    password: str


class SynapseServer:
    """One Synapse process bound to 127.0.0.1, with its config and data in `base_dir`."""

    def __init__(self, base_dir: Path, port: int | None = None) -> None:
        self.base_dir = Path(base_dir)
        self.port = port or _free_port()
        self.server_name = SERVER_NAME
        self.registration_shared_secret = secrets.token_hex(32)
        self.config_path = self.base_dir / "homeserver.yaml"
        self.log_path = self.base_dir / "homeserver.log"  # Synapse's own logging (WARNING+)
        self.output_path = self.base_dir / "stdout.log"  # the process's stdout and stderr
        self.last_start_seconds: float | None = None
        self._process: subprocess.Popen[bytes] | None = None
        self._admin: RegisteredUser | None = None

    @property
    def url(self) -> str:
        """Base URL for clients, e.g. `AsyncClient(server.url, user_id)`."""
        return f"http://{HOST}:{self.port}"

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process else None

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    # -- configuration -----------------------------------------------------------------------

    def _config(self) -> dict[str, Any]:
        d = self.base_dir
        return {
            "server_name": self.server_name,
            "public_baseurl": f"{self.url}/",
            "pid_file": str(d / "homeserver.pid"),
            "signing_key_path": str(d / "signing.key"),
            "log_config": str(d / "log_config.yaml"),
            "media_store_path": str(d / "media_store"),
            "database": {"name": "sqlite3", "args": {"database": str(d / "homeserver.db")}},
            "listeners": [
                {
                    "port": self.port,
                    "bind_addresses": [HOST],
                    "type": "http",
                    "tls": False,
                    "x_forwarded": False,
                    "resources": [{"names": ["client"], "compress": False}],
                }
            ],
            # No federation: no federation listener, nobody to federate with, no key servers.
            "federation_domain_whitelist": [],
            "trusted_key_servers": [],
            "suppress_key_server_warning": True,
            "registration_shared_secret": self.registration_shared_secret,
            "macaroon_secret_key": secrets.token_hex(32),
            "form_secret": secrets.token_hex(32),
            "enable_registration": False,
            "report_stats": False,
            "enable_metrics": False,
            "use_frozen_dicts": False,
            "presence": {"enabled": False},
            "url_preview_enabled": False,
            # Password hashing is the slowest part of registration; 4 is bcrypt's minimum.
            "bcrypt_rounds": 4,
            # `rc_message` is deliberately absent: Synapse's default applies (see module doc).
            "rc_registration": _UNLIMITED,
            "rc_registration_token_validity": _UNLIMITED,
            "rc_login": {
                "address": _UNLIMITED,
                "account": _UNLIMITED,
                "failed_attempts": _UNLIMITED,
            },
            "rc_joins": {"local": _UNLIMITED, "remote": _UNLIMITED},
            "rc_joins_per_room": _UNLIMITED,
            "rc_invites": {
                "per_room": _UNLIMITED,
                "per_user": _UNLIMITED,
                "per_issuer": _UNLIMITED,
            },
            "rc_third_party_invite": _UNLIMITED,
            "rc_3pid_validation": _UNLIMITED,
            "rc_admin_redaction": _UNLIMITED,
            "rc_room_creation": _UNLIMITED,
            "rc_key_requests": _UNLIMITED,
            "rc_media_create": _UNLIMITED,
            "rc_presence": {"per_user": _UNLIMITED},
            "rc_delayed_event_mgmt": _UNLIMITED,
            "rc_reports": _UNLIMITED,
            "rc_user_directory": _UNLIMITED,
            "rc_profile": _UNLIMITED,
        }

    def _log_config(self) -> dict[str, Any]:
        return {
            "version": 1,
            "formatters": {
                "precise": {"format": "%(asctime)s %(name)s:%(lineno)d %(levelname)s %(message)s"}
            },
            "handlers": {
                "file": {
                    "class": "logging.FileHandler",
                    "filename": str(self.log_path),
                    "formatter": "precise",
                    "encoding": "utf-8",
                }
            },
            "root": {"level": "WARNING", "handlers": ["file"]},
            "disable_existing_loggers": False,
        }

    def _write_config(self) -> None:
        """Written once; restarts keep the secrets, so existing access tokens stay valid."""
        if self.config_path.exists():
            return
        self.base_dir.mkdir(parents=True, exist_ok=True)
        (self.base_dir / "log_config.yaml").write_text(
            yaml.safe_dump(self._log_config(), sort_keys=False)
        )
        self.config_path.write_text(yaml.safe_dump(self._config(), sort_keys=False))

    # -- process lifecycle -------------------------------------------------------------------

    def start(self, timeout: float = START_TIMEOUT) -> None:
        """Start Synapse and return once it serves the client API; raise with its log if not."""
        if self.running:
            raise SynapseError(f"Synapse is already running (pid {self.pid})")
        self._write_config()
        started = time.monotonic()
        preexec = _die_with_parent if _PRCTL is not None and _lives_until_exit() else None
        with self.output_path.open("ab") as output:
            self._process = subprocess.Popen(
                [sys.executable, "-m", "synapse.app.homeserver", "-c", str(self.config_path)],
                cwd=self.base_dir,
                stdin=subprocess.DEVNULL,
                stdout=output,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # Ctrl-C in the terminal must not reach it first
                preexec_fn=preexec,
            )
        atexit.register(self.stop)
        try:
            self._wait_until_ready(started + timeout)
        except BaseException:
            self.stop()
            raise
        self.last_start_seconds = time.monotonic() - started

    def _wait_until_ready(self, deadline: float) -> None:
        assert self._process is not None
        while True:
            code = self._process.poll()
            if code is not None:
                raise SynapseError(
                    f"Synapse exited with status {code} during start-up\n" + self._logs()
                )
            try:
                self.request("GET", "/_matrix/client/versions", timeout=2)
                return
            except (OSError, ValueError, SynapseError):
                pass
            if time.monotonic() > deadline:
                raise SynapseError(f"Synapse did not answer on {self.url} in time\n" + self._logs())
            time.sleep(0.1)

    def _logs(self) -> str:
        return _tail(self.output_path) + "\n" + _tail(self.log_path)

    def stop(self) -> None:
        """SIGTERM the process by its pid, SIGKILL it after 10 s; safe to call twice."""
        atexit.unregister(self.stop)
        process, self._process = self._process, None
        if process is None:
            return
        if process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(process.pid, signal.SIGTERM)
            try:
                process.wait(STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(process.pid, signal.SIGKILL)
                process.wait()

    def restart(self, timeout: float = START_TIMEOUT) -> None:
        """The homeserver goes away and comes back: same port, database, keys and tokens."""
        self.stop()
        self.start(timeout)

    async def arestart(self, timeout: float = START_TIMEOUT) -> None:
        """`restart()` without blocking the event loop (e.g. while a client keeps syncing)."""
        await asyncio.get_running_loop().run_in_executor(_SPAWNER, self.restart, timeout)

    # -- HTTP --------------------------------------------------------------------------------

    def request(
        self,
        method: str,
        path: str,
        body: Any = None,
        token: str | None = None,
        timeout: float = REQUEST_TIMEOUT,
    ) -> Any:
        """One JSON request to this server (and nothing else); errors raise `SynapseError`."""
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(self.url + path, data=data, method=method)
        req.add_header("Content-Type", "application/json")
        if token is not None:
            req.add_header("Authorization", f"Bearer {token}")
        try:
            with _OPENER.open(req, timeout=timeout) as resp:
                raw = resp.read()
        except urllib.error.HTTPError as exc:
            raw = exc.read()
            try:
                payload: Any = json.loads(raw)
            except ValueError:
                payload = raw.decode(errors="replace")
            raise SynapseError(
                f"{method} {path} -> {exc.code}: {payload}", exc.code, payload
            ) from None
        return json.loads(raw) if raw else None

    # -- users -------------------------------------------------------------------------------

    def register_user(
        self,
        localpart: str,
        password: str | None = None,
        admin: bool = False,
        ratelimited: bool = False,
        *,
        displayname: str | None = None,
        device_id: str | None = None,
    ) -> RegisteredUser:
        """Register and log in a user via the shared-secret admin API.

        Unless `ratelimited`, the user's rate limits are lifted at once, so that tests
        sending many events in a burst are not throttled by Synapse's defaults.
        """
        password = password or secrets.token_urlsafe(12)
        nonce = self.request("GET", "/_synapse/admin/v1/register")["nonce"]
        mac = hmac.new(self.registration_shared_secret.encode(), digestmod=hashlib.sha1)
        for part in (nonce, localpart, password):
            mac.update(part.encode())
            mac.update(b"\x00")
        mac.update(b"admin" if admin else b"notadmin")
        body: dict[str, Any] = {
            "nonce": nonce,
            "username": localpart,
            "password": password,
            "admin": admin,
            "mac": mac.hexdigest(),
        }
        if displayname is not None:
            body["displayname"] = displayname
        if device_id is not None:
            body["device_id"] = device_id
        result = self.request("POST", "/_synapse/admin/v1/register", body)
        user = RegisteredUser(
            user_id=result["user_id"],
            access_token=result["access_token"],
            device_id=result["device_id"],
            password=password,
        )
        if not ratelimited:
            self.lift_ratelimit(user.user_id, token=user.access_token if admin else None)
        return user

    async def aregister_user(
        self,
        localpart: str,
        password: str | None = None,
        admin: bool = False,
        ratelimited: bool = False,
        **kwargs: Any,
    ) -> RegisteredUser:
        """`register_user()` in a worker thread, for code that must not block its loop."""
        return await asyncio.to_thread(
            self.register_user, localpart, password, admin, ratelimited, **kwargs
        )

    @property
    def admin(self) -> RegisteredUser:
        """A server admin, registered on first use, for the admin API calls below."""
        if self._admin is None:
            self._admin = self.register_user(unique_localpart("fixture-admin"), admin=True)
        return self._admin

    def _override_path(self, user_id: str) -> str:
        return f"/_synapse/admin/v1/users/{urllib.parse.quote(user_id)}/override_ratelimit"

    def lift_ratelimit(self, user_id: str, token: str | None = None) -> None:
        """Exempt `user_id` from per-user rate limits (Synapse treats 0 as "unlimited")."""
        self.request(
            "POST",
            self._override_path(user_id),
            {"messages_per_second": 0, "burst_count": 0},
            token=token or self.admin.access_token,
        )

    def restore_ratelimit(self, user_id: str) -> None:
        """Remove the override, so `user_id` is subject to Synapse's default limits again."""
        self.request("DELETE", self._override_path(user_id), token=self.admin.access_token)


class _SessionServer:
    """The one server of this process, however many modules import the fixture.

    pytest caches a session fixture per *definition*: if both conftest.py and a test module
    import `synapse_server`, there are two definitions, and without this they would start two
    homeservers. Reference counting stops the server when the last definition is torn down.
    """

    server: SynapseServer | None = None
    users = 0

    @classmethod
    def acquire(cls, tmp_path_factory: pytest.TempPathFactory) -> SynapseServer:
        if cls.server is None:
            server = SynapseServer(tmp_path_factory.mktemp("synapse"))
            server.start()
            cls.server = server
        cls.users += 1
        return cls.server

    @classmethod
    def release(cls) -> None:
        cls.users -= 1
        if cls.users == 0 and cls.server is not None:
            cls.server.stop()
            cls.server = None


@pytest.fixture(scope="session")
def synapse_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SynapseServer]:
    """One homeserver for the whole session; stopped (by pid) when the session ends."""
    server = _SessionServer.acquire(tmp_path_factory)
    try:
        yield server
    finally:
        _SessionServer.release()
