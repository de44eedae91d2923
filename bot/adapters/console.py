"""The console: a local chat on stdin/stdout, served by the same handlers.

The person at the console is the operator (an organiser). It works non-interactively,
so `printf '/statement fr\\n' | python main.py console` prints the statement.
"""

from __future__ import annotations

import asyncio
import sys
import threading
from typing import BinaryIO, TextIO

from bot.app import App
from bot.protocol import ChatRef, Reply, Request
from bot.render.plain import render_plain
from handlers import handle_request
from handlers.permissions import CONSOLE_OPERATOR

MAX_LINE_BYTES = 1_000_000
CHAT = ChatRef("console", "console", "private")


def render_replies(replies: list[Reply]) -> str:
    text = "\n\n".join(render_plain(reply.blocks) for reply in replies)
    for reply in replies:
        for action in reply.actions:
            text += f"\n[{action.label}: {action.command}]"
    return text


def _read_line(stream: BinaryIO) -> bytes | None:
    """One line, at most MAX_LINE_BYTES; the rest of an overlong line is skipped."""
    line = stream.readline(MAX_LINE_BYTES)
    if not line:
        return None
    if not line.endswith(b"\n") and len(line) == MAX_LINE_BYTES:
        while (more := stream.readline(MAX_LINE_BYTES)) and not more.endswith(b"\n"):
            pass
    return line


def _start_reader(stream: BinaryIO) -> asyncio.Queue[bytes | None]:
    """Read lines on a daemon thread, so a blocked read never keeps the process alive."""
    loop = asyncio.get_running_loop()
    lines: asyncio.Queue[bytes | None] = asyncio.Queue(maxsize=1)

    def pump() -> None:
        while True:
            line = _read_line(stream)
            asyncio.run_coroutine_threadsafe(lines.put(line), loop).result()
            if line is None:
                return

    threading.Thread(target=pump, name="console-reader", daemon=True).start()
    return lines


async def run_console(app: App, stdin: BinaryIO | None = None, stdout: TextIO | None = None,
                      language_hint: str | None = None) -> None:
    """Serve lines from stdin until end of input."""
    stdin = stdin or sys.stdin.buffer
    stdout = stdout or sys.stdout
    ctx = app.context("/")
    interactive = stdin.isatty() if hasattr(stdin, "isatty") else False
    lines = _start_reader(stdin)
    while True:
        if interactive:
            stdout.write("> ")
            stdout.flush()
        raw = await lines.get()
        if raw is None:
            break
        text = raw.decode("utf-8", errors="replace")
        request = Request(CHAT, CONSOLE_OPERATOR, text, language_hint)
        replies = await handle_request(ctx, request)
        if replies:
            stdout.write(render_replies(replies) + "\n\n")
            stdout.flush()
