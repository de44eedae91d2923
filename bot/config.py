"""Typed configuration from `config.yaml`, validated with pydantic.

Every problem names the key it concerns; secrets are `SecretStr`, so they never show in
a repr, a log line or an error message.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Annotated, Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
)

from bot.languages import normalise_language

MATRIX_USER_ID = re.compile(r"^@[a-z0-9._=\-/+]+:[A-Za-z0-9.\-]+(:\d+)?$")
BOT_TOKEN = re.compile(r"\d+:[A-Za-z0-9_-]{20,}")
ENV_OVERRIDES = {
    "TELEGRAM_TOKEN": ("telegram", "token"),
    "MATRIX_ACCESS_TOKEN": ("matrix", "access_token"),
    "MATRIX_PASSWORD": ("matrix", "password"),
}


class ConfigError(Exception):
    """A configuration problem; the message names the file and key, never a secret."""


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Organisers(_Section):
    telegram: list[int] = Field(default_factory=list)
    matrix: list[str] = Field(default_factory=list)

    @field_validator("matrix")
    @classmethod
    def _matrix_ids(cls, value: list[str]) -> list[str]:
        for user_id in value:
            if not MATRIX_USER_ID.match(user_id):
                raise ValueError(f"{user_id!r} is not a Matrix user id like @name:server")
        return value


class Webhook(_Section):
    url: str
    listen: str = "127.0.0.1"
    port: Annotated[int, Field(ge=1, le=65535)] = 8443
    secret_token: SecretStr | None = None


class TelegramConfig(_Section):
    token: SecretStr | None = None
    base_url: str = "https://api.telegram.org/bot"
    webhook: Webhook | None = None
    rate: Annotated[float, Field(gt=0, le=1000)] = 25.0
    allow_paid_broadcast: bool = False
    paid_rate: Annotated[float, Field(gt=0, le=1000)] = 1000.0

    @field_validator("token")
    @classmethod
    def _token_shape(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and not BOT_TOKEN.fullmatch(value.get_secret_value()):
            raise ValueError("does not look like a bot token from @BotFather (digits:letters)")
        return value


class MatrixConfig(_Section):
    homeserver: str | None = None
    user_id: str | None = None
    access_token: SecretStr | None = None
    password: SecretStr | None = None
    device_id: str | None = None
    store: Path = Path("data/matrix")
    allowed_inviters: list[str] = Field(default_factory=list)
    encryption: bool = False
    command_prefix: Annotated[str, Field(min_length=1, max_length=3)] = "!"
    # Messages per second the bot sends at most (replies and broadcasts together); the
    # homeserver's own limits are honoured on top of this through its 429 answers.
    rate: Annotated[float, Field(gt=0, le=1000)] = 50.0
    # Commands that arrived while the bot was down are answered when at most this old.
    backlog_cutoff_seconds: Annotated[float, Field(ge=0)] = 300.0

    @field_validator("homeserver")
    @classmethod
    def _homeserver_url(cls, value: str | None) -> str | None:
        if value is not None and not re.match(r"^https?://[^\s/]+", value):
            raise ValueError("must be a URL like https://matrix.example.org")
        return value.rstrip("/") if value else value

    @field_validator("user_id")
    @classmethod
    def _user_id(cls, value: str | None) -> str | None:
        if value is not None and not MATRIX_USER_ID.match(value):
            raise ValueError("must be a Matrix user id like @bot:example.org")
        return value

    @property
    def enabled(self) -> bool:
        return bool(self.homeserver and self.user_id and (self.access_token or self.password))


class Config(_Section):
    language: str = "en"
    statements: Path = Path("statements")
    database: Path = Path("data/bot.sqlite3")
    timezone: str = "UTC"
    organisers: Organisers = Field(default_factory=Organisers)
    telegram: TelegramConfig = Field(default_factory=TelegramConfig)
    matrix: MatrixConfig = Field(default_factory=MatrixConfig)

    @field_validator("language")
    @classmethod
    def _language(cls, value: str) -> str:
        code = normalise_language(value)
        if code is None:
            raise ValueError(f"{value!r} is not a language code such as en, de, fr or no")
        return code

    @field_validator("timezone")
    @classmethod
    def _timezone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"{value!r} is not a time zone such as UTC or Europe/Berlin") from None
        return value

    @property
    def telegram_enabled(self) -> bool:
        return self.telegram.token is not None

    def secrets(self) -> list[str]:
        """Every secret value, for the log filter that keeps them out of logs."""
        values = [self.telegram.token, self.matrix.access_token, self.matrix.password]
        if self.telegram.webhook and self.telegram.webhook.secret_token:
            values.append(self.telegram.webhook.secret_token)
        return [v.get_secret_value() for v in values if v is not None]


def _apply_env(data: dict[str, Any], environ: dict[str, str]) -> None:
    for var, (section, key) in ENV_OVERRIDES.items():
        if environ.get(var):
            block = data.setdefault(section, {}) or {}
            if not isinstance(block, dict):
                raise ConfigError(f"{section}: must be a mapping")
            block[key] = environ[var]
            data[section] = block


def _resolve_paths(config: Config, base: Path) -> Config:
    """Relative paths are relative to the config file, not to the working directory."""
    def rel(path: Path) -> Path:
        return path if path.is_absolute() else base / path

    return config.model_copy(
        update={
            "statements": rel(config.statements),
            "database": rel(config.database),
            "matrix": config.matrix.model_copy(update={"store": rel(config.matrix.store)}),
        }
    )


def _describe(error: ValidationError, source: str) -> str:
    lines = []
    for item in error.errors():
        key = ".".join(str(part) for part in item["loc"]) or "(top level)"
        message = item["msg"].removeprefix("Value error, ")
        if item["type"] == "extra_forbidden":
            message = "unknown key (check its spelling)"
        lines.append(f"{source}: {key}: {message}")
    return "\n".join(lines)


def load_config(path: Path, environ: dict[str, str] | None = None) -> Config:
    """Read, override from the environment, validate; raise ConfigError naming the key."""
    environ = dict(os.environ) if environ is None else environ
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8")) if path.exists() else {}
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read: {exc.__class__.__name__}") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark else ""
        raise ConfigError(f"{path}: not valid YAML{where}") from None
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: must be a mapping of keys to values")
    _apply_env(raw, environ)
    try:
        config = Config.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(_describe(exc, str(path))) from None
    return _resolve_paths(config, path.resolve().parent)
