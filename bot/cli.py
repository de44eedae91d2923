"""Command line: `run` (default), `console` and `check`.

Exit codes: 0 success, 1 `check` found problems, 2 bad configuration.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import sys
from pathlib import Path

from bot.catalog import load_catalog
from bot.config import Config, ConfigError, load_config
from bot.logs import setup_logging
from bot.runtime import serve

log = logging.getLogger("bot")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="main.py",
        description="Share solidarity statements on Telegram, Matrix and the console.",
    )
    parser.add_argument("--config", type=Path, default=Path("config.yaml"),
                        help="configuration file (default: config.yaml)")
    parser.add_argument("--verbose", action="store_true", help="log debug messages")
    parser.add_argument(
        "mode", nargs="?", default="run", choices=["run", "console", "check"],
        help="run: configured platforms, or the console when none is configured; "
             "console: only the local console; check: validate config and statements",
    )
    parser.add_argument("--console", action="store_true",
                        help="with run: also open the console beside the platforms")
    return parser


def check(config: Config) -> int:
    """Print every problem in the statements; 1 if there is any."""
    catalog = load_catalog(config.statements)
    for problem in catalog.problems:
        print(problem)
    translations = sum(len(s.translations) for s in catalog.statements.values())
    if catalog.problems:
        print(f"{len(catalog.problems)} problem(s) found.")
        return 1
    print(f"OK: configuration valid; {len(catalog.statements)} statements, "
          f"{translations} translations ({', '.join(catalog.languages)}).")
    return 0


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    for stream in (sys.stdout, sys.stderr):
        if hasattr(stream, "reconfigure"):
            stream.reconfigure(encoding="utf-8", errors="replace")
    try:
        config = load_config(args.config)
    except ConfigError as error:
        print(f"Configuration error:\n{error}", file=sys.stderr)
        return 2
    if args.mode == "check":
        return check(config)
    setup_logging(config.secrets(), logging.DEBUG if args.verbose else logging.WARNING
                  if args.mode == "console" else logging.INFO)
    platforms = config.telegram_enabled or config.matrix.enabled
    console = args.mode == "console" or args.console or not platforms
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve(config, console))
    return 0
