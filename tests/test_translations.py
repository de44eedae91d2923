"""Every message the bot writes exists in every UI language."""

from __future__ import annotations

import re

import pytest
from babel.messages.extract import extract_from_dir
from babel.messages.pofile import read_po

from bot.i18n import LOCALES, UI_LANGUAGES, Translator
from tests.conftest import ROOT

PLACEHOLDER = re.compile(r"\{(\w+)\}")


Message = str | tuple[str, ...]


def source_messages() -> set[Message]:
    found: set[Message] = set()
    for package in ("bot", "handlers"):
        for _file, _line, message, _comments, _context in extract_from_dir(
            ROOT / package, method_map=[("**.py", "python")],
            keywords={"_": None, "N_": None, "ngettext": (1, 2)},
        ):
            if message:
                found.add(message if isinstance(message, str) else tuple(message))
    return found


@pytest.mark.parametrize("language", UI_LANGUAGES)
def test_every_message_is_translated(language: str) -> None:
    path = LOCALES / language / "LC_MESSAGES" / "bot.po"
    with path.open("rb") as handle:
        catalog = read_po(handle, locale=language)
    translated = {m.id: m.string for m in catalog
                  if m.id and not m.fuzzy and (all(m.string) if m.pluralizable else m.string)}
    missing = sorted(map(str, source_messages() - set(translated)))
    assert not missing, f"{language}: untranslated: {missing}"
    for msgid, msgstr in translated.items():
        ids = msgid if isinstance(msgid, tuple) else (msgid,)
        strings = msgstr if isinstance(msgstr, tuple) else (msgstr,)
        expected = set().union(*(PLACEHOLDER.findall(i) for i in ids))
        for string in strings:
            assert set(PLACEHOLDER.findall(string)) <= expected, (language, msgid)
            assert set(PLACEHOLDER.findall(string)) >= expected - {"count"}, (language, msgid)


def test_translator_answers_in_each_language() -> None:
    translator = Translator()
    texts = {lang: translator(lang)("This chat was not subscribed.") for lang in UI_LANGUAGES}
    assert len(set(texts.values())) == len(UI_LANGUAGES)
    assert translator.ui_language("es", None, "de") == "de"
