"""The statement catalog: one folder per statement, one Markdown file per language.

Loading validates every file and collects problems instead of stopping at the first, so
`main.py check` can list them all and the bot can serve what is valid.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from bot.document import Document
from bot.languages import ALIASES, is_language_code
from bot.markdown import parse_markdown

REQUIRED = ("title", "date", "organisation", "source", "demands")
_ID = re.compile(r"^[a-z0-9][a-z0-9-]{1,63}$")
_FRONT_MATTER = re.compile(r"\A---\s*\n(.*?)\n---\s*(?:\n|\Z)(.*)\Z", re.S)


@dataclass(frozen=True)
class Translation:
    """One statement in one language."""

    statement_id: str
    language: str
    title: str
    date: dt.date
    organisation: str
    source: str
    signatories: tuple[str, ...]
    demands: tuple[str, ...]
    body: Document
    path: Path


@dataclass(frozen=True)
class Problem:
    path: Path
    field: str
    message: str

    def __str__(self) -> str:
        return f"{self.path}: {self.field}: {self.message}"


@dataclass
class Statement:
    id: str
    translations: dict[str, Translation] = field(default_factory=dict)

    @property
    def languages(self) -> list[str]:
        return sorted(self.translations)

    @property
    def date(self) -> dt.date:
        return max(t.date for t in self.translations.values())


@dataclass
class Catalog:
    statements: dict[str, Statement] = field(default_factory=dict)
    problems: list[Problem] = field(default_factory=list)

    @property
    def languages(self) -> list[str]:
        return sorted({lang for s in self.statements.values() for lang in s.translations})

    def newest_first(self) -> list[Statement]:
        return sorted(self.statements.values(), key=lambda s: (s.date, s.id), reverse=True)

    def newest_in(self, language: str) -> Translation | None:
        """The most recent translation in `language`, across all statements."""
        found = [s.translations[language] for s in self.statements.values()
                 if language in s.translations]
        return max(found, key=lambda t: (t.date, t.statement_id), default=None)

    def find(self, token: str) -> Statement | None:
        """A statement by id, unique id prefix, or its number in the newest-first list."""
        token = token.casefold()
        if token in self.statements:
            return self.statements[token]
        ordered = self.newest_first()
        if token.isdigit() and 1 <= int(token) <= len(ordered):
            return ordered[int(token) - 1]
        matches = [s for s in ordered if s.id.startswith(token)] if len(token) >= 3 else []
        return matches[0] if len(matches) == 1 else None


def load_catalog(folder: Path) -> Catalog:
    """Load every `<id>/<lang>.md` under `folder`; broken files are reported and skipped."""
    catalog = Catalog()
    if not folder.is_dir():
        catalog.problems.append(Problem(folder, "statements", "folder not found"))
        return catalog
    for path in sorted(folder.glob("*/*.md")):
        translation = _load_translation(path, catalog.problems)
        if translation is None:
            continue
        statement = catalog.statements.setdefault(
            translation.statement_id, Statement(translation.statement_id)
        )
        statement.translations[translation.language] = translation
    if not catalog.statements and not catalog.problems:
        catalog.problems.append(
            Problem(folder, "statements", "no statement files (<id>/<lang>.md)"))
    return catalog


def _load_translation(path: Path, problems: list[Problem]) -> Translation | None:
    before = len(problems)

    def problem(field_name: str, message: str) -> None:
        problems.append(Problem(path, field_name, message))

    statement_id, language = path.parent.name, path.stem
    if not _ID.match(statement_id):
        problem("id", f"folder name {statement_id!r} must be lowercase letters, digits and dashes")
    if language in ALIASES:  # one file per language: nb.md beside no.md would be a duplicate
        problem("language", f"name the file {ALIASES[language]}.md (the code for this language)")
    elif not is_language_code(language):
        problem("language", f"file name {language!r} is not a two-letter ISO 639-1 code")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        problem("file", "is not UTF-8 text")
        return None
    except OSError as exc:
        problem("file", f"cannot be read ({exc.strerror})")
        return None
    match = _FRONT_MATTER.match(text.lstrip("\ufeff"))
    if not match:
        problem("front matter", "missing: the file must start with a '---' YAML block")
        return None
    try:
        meta = yaml.safe_load(match.group(1))
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        problem("front matter", "invalid YAML" + (f" at line {mark.line + 2}" if mark else ""))
        return None
    if not isinstance(meta, dict):
        problem("front matter", "must be a mapping of keys to values")
        return None
    for key in REQUIRED:
        if meta.get(key) in (None, "", []):
            problem(key, "missing or empty")
    for key in sorted(set(meta) - {*REQUIRED, "signatories"}):
        problem(str(key), "unknown key")
    title = _text(meta.get("title"), "title", problem)
    organisation = _text(meta.get("organisation"), "organisation", problem)
    source = _text(meta.get("source"), "source", problem)
    if source and not re.match(r"^https?://\S+$", source):
        problem("source", "must be an http(s) URL")
    date = meta.get("date")
    if isinstance(date, str):
        try:
            date = dt.date.fromisoformat(date)
        except ValueError:
            problem("date", f"{date!r} is not an ISO date (YYYY-MM-DD)")
    elif date is not None and not isinstance(date, dt.date):
        problem("date", "must be an ISO date (YYYY-MM-DD)")
    demands = _text_list(meta.get("demands"), "demands", problem)
    signatories = _text_list(meta.get("signatories") or [], "signatories", problem)
    body = parse_markdown(match.group(2))
    if not body:
        problem("body", "the statement text after the front matter is empty")
    if len(problems) > before:
        return None
    assert isinstance(date, dt.date)
    return Translation(statement_id, language, title, date, organisation, source,
                       tuple(signatories), tuple(demands), body, path)


def _text(value: Any, name: str, problem: Any) -> str:
    if value is None:
        return ""
    if not isinstance(value, str):
        problem(name, "must be text")
        return ""
    return value.strip()


def _text_list(value: Any, name: str, problem: Any) -> list[str]:
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(v, str) and v.strip() for v in value):
        problem(name, "must be a list of non-empty texts")
        return []
    return [v.strip() for v in value]
