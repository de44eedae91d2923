"""Every message the bot writes exists in every UI language."""

from __future__ import annotations

import re

import pytest
from babel.messages.extract import extract_from_dir
from babel.messages.pofile import read_po

from bot.i18n import LOCALES, UI_LANGUAGES, Translator
from tests.conftest import ROOT

PLACEHOLDER = re.compile(r"\{(\w+)\}")


def source_messages() -> set[str]:
    found: set[str] = set()
    for package in ("bot", "handlers"):
        for _file, _line, message, _comments, _context in extract_from_dir(
            ROOT / package, method_map=[("**.py", "python")],
            keywords={"_": None, "N_": None},
        ):
            if isinstance(message, str) and message:
                found.add(message)
    return found


@pytest.mark.parametrize("language", UI_LANGUAGES)
def test_every_message_is_translated(language: str) -> None:
    path = LOCALES / language / "LC_MESSAGES" / "bot.po"
    with path.open("rb") as handle:
        catalog = read_po(handle, locale=language)
    translated = {m.id: m.string for m in catalog if m.id and m.string and not m.fuzzy}
    missing = sorted(source_messages() - set(translated))
    assert not missing, f"{language}: untranslated: {missing}"
    for msgid, msgstr in translated.items():
        assert set(PLACEHOLDER.findall(msgid)) == set(PLACEHOLDER.findall(str(msgstr))), (
            language, msgid)


def test_translator_answers_in_each_language() -> None:
    translator = Translator()
    texts = {lang: translator(lang)("This chat was not subscribed.") for lang in UI_LANGUAGES}
    assert len(set(texts.values())) == len(UI_LANGUAGES)
    assert translator.ui_language("es", None, "de") == "de"
