"""The shipped statements, and validation of broken statement files."""

from __future__ import annotations

import datetime as dt
import shutil
from pathlib import Path

import pytest

from bot.catalog import load_catalog
from bot.render.plain import render_plain
from tests.conftest import STATEMENTS
from tests.test_console import run_main

CLUTTER = ("fbclid", "image_pdf", "Schreibe einen Kommentar", "Join us", "Related Posts",
           "[Source]", "Akismet", "Podcast", "Links:", "? Solidarity", "Statement\n")


def test_shipped_content_is_three_statements_in_four_translations() -> None:
    catalog = load_catalog(STATEMENTS)
    assert catalog.problems == []
    assert {sid: s.languages for sid, s in catalog.statements.items()} == {
        "kazakhstan-uprising": ["de", "en"],
        "kazakhstan-intervention": ["no"],
        "kazakhstan-repression": ["fr"],
    }
    demands = {(t.statement_id, t.language): len(t.demands)
               for s in catalog.statements.values() for t in s.translations.values()}
    assert demands == {("kazakhstan-uprising", "de"): 8, ("kazakhstan-uprising", "en"): 8,
                       ("kazakhstan-intervention", "no"): 4, ("kazakhstan-repression", "fr"): 5}


def test_shipped_content_is_clean_of_scraping_debris() -> None:
    catalog = load_catalog(STATEMENTS)
    uprising = catalog.statements["kazakhstan-uprising"].translations
    assert uprising["de"].date == dt.date(2022, 1, 14)  # the scrape said 2021
    assert catalog.statements["kazakhstan-intervention"].translations["no"].date == dt.date(
        2022, 1, 6)
    assert len(catalog.statements["kazakhstan-intervention"].translations["no"].signatories) == 9
    for statement in catalog.statements.values():
        for translation in statement.translations.values():
            text = render_plain(translation.body) + translation.source
            for debris in CLUTTER:
                assert debris not in text, (translation.path, debris)
            assert "?" not in "".join(d[:2] for d in translation.demands)
            # the demands in the front matter are the list in the body, in order
            assert all(d in text for d in translation.demands)


def _copy_statements(tmp_path: Path) -> Path:
    folder = tmp_path / "statements"
    shutil.copytree(STATEMENTS, folder)
    return folder


BROKEN = {
    "missing title": ("title: ", "tidle: ", "title"),
    "bad date": ("date: 2022-01-08", "date: 8 janvier", "date"),
    "empty demands": ("demands:\n", "demands: []\nx_demands:\n", "demands"),
    "no front matter": ("---\n", "", "front matter"),
}


@pytest.mark.parametrize("case", sorted(BROKEN))
def test_broken_file_is_reported_with_file_and_field_and_skipped(tmp_path: Path, case: str) -> None:
    folder = _copy_statements(tmp_path)
    broken = folder / "kazakhstan-repression" / "fr.md"
    old, new, field = BROKEN[case]
    broken.write_text(broken.read_text(encoding="utf-8").replace(old, new, 1), encoding="utf-8")
    catalog = load_catalog(folder)
    assert catalog.problems, case
    assert all(p.path == broken for p in catalog.problems)
    assert field in {p.field for p in catalog.problems}
    # the rest is still served
    assert sorted(catalog.statements) == ["kazakhstan-intervention", "kazakhstan-uprising"]


def test_invalid_language_file_name_and_alias_duplicates_are_problems(tmp_path: Path) -> None:
    folder = _copy_statements(tmp_path)
    norwegian = folder / "kazakhstan-intervention" / "no.md"
    shutil.copy(norwegian, norwegian.with_name("xx.md"))
    shutil.copy(norwegian, norwegian.with_name("nb.md"))
    (folder / "kazakhstan-intervention" / "empty.md").write_bytes(b"\xff\xfe")
    problems = {(p.path.name, p.field) for p in load_catalog(folder).problems}
    assert ("xx.md", "language") in problems
    assert ("nb.md", "language") in problems
    assert ("empty.md", "file") in problems or ("empty.md", "language") in problems


def test_check_passes_on_shipped_content(tmp_path: Path) -> None:
    config = tmp_path / "config.yaml"
    config.write_text(f"statements: {STATEMENTS}\n")
    result = run_main("--config", str(config), "check")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "OK" in result.stdout


def test_check_exits_1_naming_the_broken_file(tmp_path: Path) -> None:
    folder = _copy_statements(tmp_path)
    broken = folder / "kazakhstan-uprising" / "en.md"
    broken.write_text(broken.read_text(encoding="utf-8").replace("organisation:", "org:", 1),
                      encoding="utf-8")
    config = tmp_path / "config.yaml"
    config.write_text(f"statements: {folder}\n")
    result = run_main("--config", str(config), "check")
    assert result.returncode == 1
    assert f"{broken}: organisation: missing or empty" in result.stdout
