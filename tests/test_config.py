"""Configuration: documented defaults, environment overrides, errors that name the key."""

from __future__ import annotations

from pathlib import Path

import pytest

from bot.config import ConfigError, load_config
from tests.conftest import ROOT
from tests.test_console import run_main

TOKEN = "123456789:AAExampleExampleExampleExample_123"


def test_shipped_config_loads_with_console_defaults() -> None:
    config = load_config(ROOT / "config.yaml", environ={})
    assert config.language == "en"
    assert not config.telegram_enabled and not config.matrix.enabled
    assert config.statements == ROOT / "statements"


def test_environment_overrides_secrets(tmp_path: Path) -> None:
    path = tmp_path / "config.yaml"
    path.write_text("matrix: {homeserver: 'http://127.0.0.1:8008', user_id: '@bot:localhost'}\n")
    config = load_config(path, environ={"TELEGRAM_TOKEN": TOKEN, "MATRIX_PASSWORD": "pw"})
    assert config.telegram.token is not None
    assert config.telegram.token.get_secret_value() == TOKEN
    assert config.matrix.enabled
    assert TOKEN not in repr(config)


@pytest.mark.parametrize(("text", "key"), [
    ("language: klingon\n", "language"),
    ("organisers: {telegram: [alice]}\n", "organisers.telegram.0"),
    ("organisers: {matrix: [alice]}\n", "organisers.matrix"),
    ("matrix: {homeserver: 'ftp://x'}\n", "matrix.homeserver"),
    ("matrix: {command_prefix: ''}\n", "matrix.command_prefix"),
    ("telegram: {tokn: x}\n", "telegram.tokn"),
    ("timezone: Mars/Olympus\n", "timezone"),
    ("language: [\n", "not valid YAML"),
])
def test_bad_value_names_the_key(tmp_path: Path, text: str, key: str) -> None:
    path = tmp_path / "config.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as error:
        load_config(path, environ={})
    assert key in str(error.value)


def test_bad_config_exits_2_without_leaking_the_token(tmp_path: Path) -> None:
    path = tmp_path / "config.yaml"
    path.write_text(f"telegram: {{token: '{TOKEN}'}}\nlanguage: xx\n")
    result = run_main("--config", str(path), "check")
    assert result.returncode == 2
    assert "language" in result.stderr
    assert TOKEN not in result.stdout + result.stderr
    bad_token = "123:short"
    result = run_main("--config", str(path), "check", env={"TELEGRAM_TOKEN": bad_token})
    assert result.returncode == 2 and "telegram.token" in result.stderr
    assert bad_token not in result.stderr
