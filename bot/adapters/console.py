"""The console: a local chat on stdin/stdout, served by the same handlers.

The person at the console is the operator (an organiser). It works non-interactively,
so `printf '/statement fr\\n' | python main.py console` prints the statement. In a line,
`\\n` stands for a line break (for multi-line broadcasts with `[fr]`/`[de]` variants).
"""

from __future__ import annotations

import asyncio
import sys
import threading
from typing import BinaryIO, TextIO

from bot.app import App
from bot.document import Document
from bot.protocol import ChatRef, Outcome, Reply, Request
from bot.render.plain import render_plain
from handlers import handle_request
from handlers.permissions import CONSOLE_OPERATOR

PLATFORM = "console"
MAX_LINE_BYTES = 1_000_000
CHAT = ChatRef(PLATFORM, "console", "private")


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


class ConsoleAdapter:
    """The operator's chat; also receives broadcasts when the console is subscribed."""

    platform = PLATFORM

    def __init__(self, app: App, stdout: TextIO | None = None) -> None:
        self.app = app
        self.ctx = app.context("/")
        self.stdout = stdout or sys.stdout
        self._last_status: dict[str, str] = {}

    def _print(self, text: str) -> None:
        self.stdout.write(text + "\n\n")
        self.stdout.flush()

    async def run(self, stdin: BinaryIO | None = None) -> None:
        """Serve lines from stdin until end of input."""
        stdin = stdin or sys.stdin.buffer
        interactive = stdin.isatty() if hasattr(stdin, "isatty") else False
        lines = _start_reader(stdin)
        while True:
            if interactive:
                self.stdout.write("> ")
                self.stdout.flush()
            raw = await lines.get()
            if raw is None:
                return
            text = raw.decode("utf-8", errors="replace").replace("\\n", "\n")
            replies = await handle_request(self.ctx, Request(CHAT, CONSOLE_OPERATOR, text))
            if replies:
                self._print(render_replies(replies))

    async def send_part(self, chat_id: str, content: str, delivery_id: int) -> Outcome:
        self._print(content)
        return Outcome(True, chat_id=chat_id, message_id=str(delivery_id))

    async def show_status(self, chat_id: str, message_id: str | None,
                          blocks: Document) -> str | None:
        text = render_plain(blocks)
        if self._last_status.get(chat_id) != text:
            self._last_status[chat_id] = text
            self._print(text)
        return message_id or "console-status"

