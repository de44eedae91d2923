"""Language codes: normalising what people type, and resolving which language to answer in.

Babel's CLDR data gives every language's name in English and in itself, so `français`,
`Deutsch` or `norsk` work without a hand-written table of names.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass
from functools import cache

from babel import Locale, UnknownLocaleError

# Norwegian Bokmål/Nynorsk codes the statements and UI file under plain `no`.
ALIASES = {"nb": "no", "nn": "no", "nob": "no", "nno": "no", "nor": "no"}


def _fold(text: str) -> str:
    """Case- and accent-insensitive form, so `francais` matches `français`."""
    decomposed = unicodedata.normalize("NFKD", text.casefold())
    return "".join(c for c in decomposed if not unicodedata.combining(c)).strip()


@cache
def _locale(code: str) -> Locale | None:
    try:
        return Locale.parse(code)
    except (UnknownLocaleError, ValueError):
        return None


def is_language_code(code: str) -> bool:
    """True for a two-letter ISO 639-1 code in normal form that CLDR knows."""
    return len(code) == 2 and code.isascii() and code.islower() and _locale(code) is not None


def language_name(code: str, in_language: str | None = None) -> str:
    """The language's name in `in_language` (default: in itself), e.g. no -> norsk."""
    locale = _locale(code)
    if locale is None:
        return code
    target = _locale(in_language) if in_language else locale
    return locale.get_language_name(target or locale) or code


@cache
def _names(code: str) -> frozenset[str]:
    names = {language_name(code, "en"), language_name(code)}
    if code == "no":  # the written standards people may type for `no`
        names |= {"bokmål", "nynorsk"}
    return frozenset(_fold(n) for n in names)


def normalise_language(text: str, known: Iterable[str] = ()) -> str | None:
    """Map a typed language (code, code with region, alias or name) to a code, else None.

    Codes are accepted for any language CLDR knows; names only for `known` languages
    (those the bot has content or UI for), since names of all languages are ambiguous.
    """
    token = _fold(text).replace("_", "-")
    if not token:
        return None
    base = token.split("-", 1)[0]
    base = ALIASES.get(base, base)
    if is_language_code(base):
        return base
    for code in known:
        if token in _names(code):
            return code
    return None


@dataclass(frozen=True)
class Resolution:
    """The language chosen and why, so replies can explain a fallback."""

    code: str
    source: str  # "argument", "chat", "hint", "default"


def language_candidates(
    argument: str | None, chat_language: str | None, hint: str | None, default: str
) -> list[Resolution]:
    """Candidates in priority order: argument, chat's stored language, platform hint, config."""
    out: list[Resolution] = []
    for code, source in (
        (argument, "argument"),
        (chat_language, "chat"),
        (normalise_language(hint) if hint else None, "hint"),
        (default, "default"),
    ):
        if code and all(r.code != code for r in out):
            out.append(Resolution(code, source))
    return out


def resolve_language(
    argument: str | None,
    chat_language: str | None,
    hint: str | None,
    default: str,
    available: Iterable[str] | None = None,
) -> Resolution:
    """The first candidate that is available; an explicit argument always wins.

    An argument is what the person asked for, so it is returned even when unavailable
    (the caller then says so); implicit sources fall through to the next one.
    """
    candidates = language_candidates(argument, chat_language, hint, default)
    if argument:
        return candidates[0]
    pool = set(available) if available is not None else None
    for candidate in candidates:
        if pool is None or candidate.code in pool:
            return candidate
    return candidates[-1]
