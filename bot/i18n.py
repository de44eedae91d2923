"""UI translations from gettext `.po` catalogs (Babel), the format translators know.

The `.po` files are compiled in memory at start-up, so there is no build step and no
binary `.mo` in the repository. English msgids are the source text.
"""

from __future__ import annotations

import gettext
import io
from collections.abc import Callable
from pathlib import Path

from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po

LOCALES = Path(__file__).parent / "locales"
UI_LANGUAGES = ("en", "de", "fr", "no")
DOMAIN = "bot"

Translate = Callable[..., str]


def _load(language: str) -> gettext.NullTranslations:
    path = LOCALES / language / "LC_MESSAGES" / f"{DOMAIN}.po"
    if not path.exists():
        return gettext.NullTranslations()
    with path.open("rb") as handle:
        catalog = read_po(handle, locale=language)
    buffer = io.BytesIO()
    write_mo(buffer, catalog)
    buffer.seek(0)
    return gettext.GNUTranslations(buffer)


class Translator:
    """Looks up UI messages per language; missing ones fall back to English."""

    def __init__(self) -> None:
        self._catalogs = {lang: _load(lang) for lang in UI_LANGUAGES}

    def ui_language(self, *candidates: str | None) -> str:
        """The first candidate the UI is translated into, else English."""
        return next((c for c in candidates if c in self._catalogs), "en")

    def plural(self, language: str, singular: str, plural: str, count: int,
               **values: object) -> str:
        catalog = self._catalogs.get(language, self._catalogs["en"])
        return catalog.ngettext(singular, plural, count).format(count=count, **values)

    def __call__(self, language: str) -> Translate:
        catalog = self._catalogs.get(language, self._catalogs["en"])

        def translate(message: str, /, **values: object) -> str:
            text = catalog.gettext(message)
            return text.format(**values) if values else text

        return translate
