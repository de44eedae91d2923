"""How typed languages are understood and which language a reply is in."""

from __future__ import annotations

import pytest

from bot.languages import normalise_language, resolve_language

KNOWN = ["de", "en", "fr", "no"]


@pytest.mark.parametrize(("typed", "code"), [
    ("fr", "fr"), ("FR", "fr"), ("FR-ca", "fr"), ("fr_CA", "fr"), ("de-AT", "de"),
    ("nb", "no"), ("nn", "no"), ("nob", "no"), ("NO", "no"),
    ("french", "fr"), ("Français", "fr"), ("francais", "fr"), ("german", "de"),
    ("Deutsch", "de"), ("norwegian", "no"), ("norsk", "no"), ("English", "en"),
    ("es", "es"),  # a real code, even without statements: the handler explains
    ("xx", None), ("klingon", None), ("", None), ("   ", None), ("fr!", None),
])
def test_normalise_language(typed: str, code: str | None) -> None:
    assert normalise_language(typed, KNOWN) == code


@pytest.mark.parametrize(("argument", "chat", "hint", "default", "expected"), [
    ("fr", "de", "en", "no", ("fr", "argument")),
    (None, "de", "en", "no", ("de", "chat")),
    (None, None, "en-GB", "no", ("en", "hint")),
    (None, None, None, "no", ("no", "default")),
    (None, None, "pt-BR", "en", ("en", "default")),   # hint without content falls through
    ("es", None, None, "en", ("es", "argument")),     # an explicit wish is kept, then explained
])
def test_resolve_language_order(
    argument: str | None, chat: str | None, hint: str | None, default: str,
    expected: tuple[str, str],
) -> None:
    result = resolve_language(argument, chat, hint, default, KNOWN)
    assert (result.code, result.source) == expected
