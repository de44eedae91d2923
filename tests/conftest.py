"""Shared fixtures: an App on a temporary database, and a console session to drive it."""

from __future__ import annotations

import io
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from bot.adapters.console import ConsoleAdapter
from bot.app import App
from bot.config import Config

ROOT = Path(__file__).resolve().parent.parent
STATEMENTS = ROOT / "statements"


@pytest.fixture
def config(tmp_path: Path) -> Config:
    return Config(statements=STATEMENTS, database=tmp_path / "bot.sqlite3")


@pytest.fixture
async def app(config: Config) -> AsyncIterator[App]:
    app = await App.start(config)
    try:
        yield app
    finally:
        await app.close()


class ConsoleSession:
    """Feeds lines to the real console adapter and returns what it printed."""

    def __init__(self, app: App) -> None:
        self.app = app

    async def run(self, *lines: str | bytes) -> str:
        data = b"".join((line if isinstance(line, bytes) else line.encode()) + b"\n"
                        for line in lines)
        out = io.StringIO()
        await ConsoleAdapter(self.app, out).run(io.BytesIO(data))
        return out.getvalue()


@pytest.fixture
def console(app: App) -> ConsoleSession:
    return ConsoleSession(app)
