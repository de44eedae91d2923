"""The console adapter end to end: what an operator typing commands sees."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

from bot.render.plain import render_plain
from tests.conftest import ROOT, ConsoleSession


def numbered_items(output: str) -> list[str]:
    return re.findall(r"^\d+\. (.+)$", output, re.M)


async def test_statement_fr_prints_the_whole_french_statement(console: ConsoleSession) -> None:
    out = await console.run("/statement fr")
    statement = console.app.catalog.statements["kazakhstan-repression"].translations["fr"]
    assert out.startswith("Non à la répression du peuple !")
    assert render_plain(statement.body) in out
    assert "Ligue socialiste internationale · 8 janvier 2022" in out
    assert statement.source in out


async def test_demands_de_lists_the_eight_german_demands(console: ConsoleSession) -> None:
    out = await console.run("/demands de")
    items = numbered_items(out)
    assert len(items) == 8
    assert items[0] == (
        "Solidarität mit denjenigen, die sich gegen die Diktatur in Kasachstan erheben!")
    assert items[-1].startswith("Unterstützt den Aufbau einer unabhängigen Gewerkschaftsbewegung")


async def test_demands_nb_lists_the_four_norwegian_demands(console: ConsoleSession) -> None:
    out = await console.run("/demands nb")
    assert len(numbered_items(out)) == 4
    assert out.startswith("Solidaritet med de kjempende arbeiderne i Kasakhstan!")


async def test_unknown_language_is_explained_with_the_languages_there_are(
    console: ConsoleSession,
) -> None:
    out = await console.run("/statement xx")
    assert "xx" in out
    for code in ("de", "en", "fr", "no"):
        assert re.search(rf"\b{code} \(", out), code


async def test_statement_missing_in_a_language_names_the_languages_it_has(
    console: ConsoleSession,
) -> None:
    out = await console.run("/statement kazakhstan-uprising fr")
    assert "kazakhstan-uprising" in out and "French (fr)" in out
    assert "de (German), en (English)" in out


async def test_language_names_and_regions_are_understood(console: ConsoleSession) -> None:
    french = await console.run("/demands français")
    assert french == await console.run("/demands FR-ca")
    assert len(numbered_items(french)) == 5
    assert numbered_items(await console.run("/demands norsk")) == numbered_items(
        await console.run("/demands nob"))


async def test_statement_without_language_uses_the_chat_language(console: ConsoleSession) -> None:
    out = await console.run("/language deutsch", "/statement")
    assert "Deutsch (de)" in out
    assert "Internationale Solidarität mit dem Aufstand in Kasachstan" in out


async def test_malformed_lines_all_get_an_answer(console: ConsoleSession) -> None:
    lines: list[str | bytes] = ["", b"\xff\xfe\x00\x01binary", "x" * 100_000, "/nosuchcommand",
                                "/statement a b c", "hello"]
    for line in lines:
        out = await console.run(line)
        assert out.strip(), f"no answer to {line[:20]!r}"
        assert "Traceback" not in out
    assert "too long" in await console.run("/" + "x" * 100_000)
    assert "Unknown command" in await console.run("/nosuchcommand")
    assert "Too many arguments" in await console.run("/statement a b c")


async def test_subscribe_and_unsubscribe_are_stored(console: ConsoleSession) -> None:
    out = await console.run("/subscribe fr")
    assert "French (fr)" in out
    subs = await console.app.storage.active_subscriptions()
    assert [(s.platform, s.chat_id, s.language) for s in subs] == [("console", "console", "fr")]
    out = await console.run("/unsubscribe", "/unsubscribe")
    assert "Unsubscribed" in out and "was not subscribed" in out
    assert await console.app.storage.active_subscriptions() == []


async def test_deep_link_payloads_open_statements_and_demands(console: ConsoleSession) -> None:
    assert (await console.run("/start demands-de")) == (await console.run("/demands de"))
    assert (await console.run("/start statement-fr")) == (await console.run("/statement fr"))
    assert (await console.run("/start statement-kazakhstan-uprising-en")) == (
        await console.run("/statement kazakhstan-uprising en"))
    assert "/statement" in await console.run("/start")


def run_main(*args: str, stdin: str = "", env: dict[str, str] | None = None,
             cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    environment = {k: v for k, v in os.environ.items()
                   if k not in ("TELEGRAM_TOKEN", "MATRIX_ACCESS_TOKEN", "MATRIX_PASSWORD")}
    environment.update(env or {})
    return subprocess.run([sys.executable, str(ROOT / "main.py"), *args], input=stdin,
                          capture_output=True, text=True, timeout=60, env=environment, cwd=cwd)


def test_piped_console_prints_statement_and_exits_zero(tmp_path: Path) -> None:
    config = tmp_path / "config.yaml"
    config.write_text(f"statements: {ROOT / 'statements'}\ndatabase: {tmp_path / 'db.sqlite3'}\n")
    result = run_main("--config", str(config), "console", stdin="/statement fr\n/demands de\n")
    assert result.returncode == 0, result.stderr
    assert "Non à la répression du peuple !" in result.stdout
    assert len(numbered_items(result.stdout)) == 8
    assert "Traceback" not in result.stderr


def test_run_without_credentials_opens_the_console(tmp_path: Path) -> None:
    config = tmp_path / "config.yaml"
    config.write_text(f"statements: {ROOT / 'statements'}\ndatabase: {tmp_path / 'db.sqlite3'}\n")
    result = run_main("--config", str(config), stdin="/demands nb\n")
    assert result.returncode == 0, result.stderr
    assert len(numbered_items(result.stdout)) == 4
