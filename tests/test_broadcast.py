"""Broadcasts through handlers, outbox and dispatcher, on an in-memory platform.

The fan-out across the fake Telegram Bot API and a real Synapse is in
test_broadcast_platforms.py; here the platform is a recorder whose answers the tests
script, to pin down the outbox's rules: variants, fallback, order, retries, cancel.
"""

from __future__ import annotations

import asyncio
import time
from collections import defaultdict

import pytest

from bot import outbox as outbox_module
from bot.app import App
from bot.broadcasting import BroadcastRunner
from bot.document import Document
from bot.protocol import ChatRef, Outcome, Request
from bot.render.plain import render_plain
from handlers import handle_request

ORGANISER = "42"


class RecordingPlatform:
    """Receives parts like an adapter would; `script` maps chat ids to outcomes to return."""

    platform = "console"

    def __init__(self) -> None:
        self.received: dict[str, list[str]] = defaultdict(list)
        self.script: dict[str, list[Outcome]] = {}
        self.statuses: list[str] = []

    async def send_part(self, chat_id: str, content: str, delivery_id: int) -> Outcome:
        scripted = self.script.get(chat_id)
        if scripted:
            outcome = scripted.pop(0)
            if not outcome.ok:
                return outcome
        self.received[chat_id].append(content)
        return Outcome(True, chat_id=chat_id, message_id=str(delivery_id))

    async def show_status(self, chat_id: str, message_id: str | None,
                          blocks: Document) -> str | None:
        self.statuses.append(render_plain(blocks))
        return "status-1"


async def command(app: App, text: str, sender: str = "operator", chat: str = "console",
                  platform: str = "console") -> str:
    request = Request(ChatRef(platform, chat, "private"), sender, text)
    replies = await handle_request(app.context("/"), request)
    return "\n\n".join(render_plain(r.blocks) for r in replies)


async def subscribe(app: App, chats: dict[str, str]) -> None:
    for chat, language in chats.items():
        await app.storage.subscribe("console", chat, "private", language)


async def run_until_done(app: App, platform: RecordingPlatform, timeout: float = 10) -> None:
    runner = BroadcastRunner(app, {"console": platform}, {"console": platform},
                             report_interval=0.05)
    await runner.start()
    try:
        async def finished() -> None:
            while await app.outbox.pending_count({"console"}):
                await asyncio.sleep(0.02)
            await runner.report_once()
        await asyncio.wait_for(finished(), timeout)
    finally:
        await runner.stop()


async def test_only_organisers_may_broadcast(app: App) -> None:
    reply = await command(app, "/broadcast all Rally on Saturday", sender="7",
                          platform="telegram")
    assert "only organisers" in reply
    assert await app.outbox.latest() is None


async def test_variants_reach_each_language_with_fallback_to_the_default(app: App) -> None:
    await subscribe(app, {"fr1": "fr", "fr2": "fr", "de1": "de", "no1": "no", "es1": "es"})
    preview = await command(app, "/broadcast [fr] Rassemblement samedi\n[en] Rally on Saturday")
    assert "Rassemblement samedi" in preview and "Rally on Saturday" in preview
    assert "It will reach 5 chats" in preview  # de, no and es fall back to en (the default)
    assert "/confirm 1" in preview
    await command(app, "/confirm 1")
    platform = RecordingPlatform()
    await run_until_done(app, platform)
    assert platform.received == {"fr1": ["Rassemblement samedi"], "fr2": ["Rassemblement samedi"],
                                 "de1": ["Rally on Saturday"], "no1": ["Rally on Saturday"],
                                 "es1": ["Rally on Saturday"]}
    assert "finished" in platform.statuses[-1] and "Sent: 5" in platform.statuses[-1]


async def test_without_a_default_variant_the_preview_names_who_gets_nothing(app: App) -> None:
    await subscribe(app, {"fr1": "fr", "de1": "de"})
    preview = await command(app, "/broadcast [fr] Rassemblement samedi")
    assert "It will reach 1 chat" in preview
    assert "they get nothing: console · de: 1" in preview
    await command(app, "/confirm 1")
    platform = RecordingPlatform()
    await run_until_done(app, platform)
    assert dict(platform.received) == {"fr1": ["Rassemblement samedi"]}


async def test_language_filter_and_formatting_are_kept_escaped(app: App) -> None:
    await subscribe(app, {"fr1": "fr", "de1": "de"})
    await command(app, "/broadcast de **Kundgebung** <script>x</script>")
    await command(app, "/confirm 1")
    platform = RecordingPlatform()
    await run_until_done(app, platform)
    assert dict(platform.received) == {"de1": ["Kundgebung <script>x</script>"]}
    broadcast = await app.outbox.get(1)
    assert broadcast is not None
    document = app.outbox.document_for(broadcast, "de")
    assert document is not None
    from bot.render.telegram import render_html
    assert render_html(document) == "<b>Kundgebung</b> &lt;script&gt;x&lt;/script&gt;"


async def test_announce_sends_the_statement_in_each_subscribers_language(app: App) -> None:
    await subscribe(app, {"de1": "de", "en1": "en", "fr1": "fr"})
    preview = await command(app, "/announce kazakhstan-uprising demands")
    assert "It will reach 3 chats" in preview  # fr falls back to the default, en
    await command(app, "/confirm 1")
    platform = RecordingPlatform()
    await run_until_done(app, platform)
    assert platform.received["de1"][0].startswith("Internationale Solidarität")
    assert platform.received["en1"][0].startswith("Solidarity with the uprising")
    assert platform.received["fr1"] == platform.received["en1"]


async def test_long_texts_go_out_in_parts_in_order(app: App, monkeypatch: pytest.MonkeyPatch
                                                  ) -> None:
    monkeypatch.setitem(outbox_module.RENDERERS, "console",
                        lambda doc: [p for p in render_plain(doc).split("\n\n")])
    await subscribe(app, {f"c{i}": "en" for i in range(20)})
    await command(app, "/broadcast all one\\n\\ntwo\\n\\nthree".replace("\\n", "\n"))
    await command(app, "/confirm 1")
    platform = RecordingPlatform()
    await run_until_done(app, platform)
    assert all(parts == ["one", "two", "three"] for parts in platform.received.values())
    assert len(platform.received) == 20


async def test_passing_failures_are_retried_and_lasting_ones_recorded(
    app: App, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(outbox_module, "MAX_ATTEMPTS", 3)
    monkeypatch.setattr(outbox_module.random, "uniform", lambda a, b: 0.01)
    await subscribe(app, {"ok": "en", "flaky": "en", "down": "en", "gone": "en"})
    platform = RecordingPlatform()
    flaky = Outcome(False, "network: timed out", permanent=False)
    platform.script = {"flaky": [flaky], "down": [flaky] * 5,
                       "gone": [Outcome(False, "blocked: bot was blocked", chat_gone=True)]}
    await command(app, "/broadcast all Rally")
    await command(app, "/confirm 1")
    await run_until_done(app, platform)
    assert sorted(platform.received) == ["flaky", "ok"]
    report = await app.outbox.report(1)
    assert report is not None
    assert report.counts == {"sent": 2, "failed": 2}
    assert report.failures == {"network: timed out": 1, "blocked: bot was blocked": 1}
    assert "Failures by reason" in await command(app, "/report 1")


async def test_cancel_keeps_the_unsent_unsent_and_says_so(app: App) -> None:
    await subscribe(app, {f"c{i}": "en" for i in range(5)})
    await command(app, "/broadcast all Rally")
    await command(app, "/confirm 1")
    reply = await command(app, "/cancel 1")
    assert "cancelled" in reply and "Not sent (cancelled): 5" in reply
    platform = RecordingPlatform()
    await run_until_done(app, platform)
    assert platform.received == {}
    assert "cannot be cancelled" in await command(app, "/cancel 1")


async def test_scheduled_broadcast_survives_a_restart_and_goes_out_on_time(app: App) -> None:
    await subscribe(app, {"c1": "en"})
    preview = await command(app, "/broadcast at 2099-12-01T18:00 all Rally")
    assert "Scheduled for 2099-12-01 18:00 (UTC)" in preview
    assert "scheduled for" in await command(app, "/confirm 1")
    assert await app.outbox.due() == []
    restarted = await App.start(app.config)  # as a new process would, on the same database
    try:
        await restarted.storage.db.execute("UPDATE broadcasts SET scheduled_at=?",
                                           (time.time() - 1,))  # its time has come
        platform = RecordingPlatform()
        runner = BroadcastRunner(restarted, {"console": platform}, {"console": platform})
        await runner.start()
        try:
            async def delivered() -> None:
                while not platform.received:
                    await asyncio.sleep(0.02)
            await asyncio.wait_for(delivered(), 5)
        finally:
            await runner.stop()
        assert platform.received == {"c1": ["Rally"]}
    finally:
        await restarted.close()


async def test_malformed_broadcasts_are_explained(app: App) -> None:
    assert "no text to send" in await command(app, "/broadcast fr")
    assert "in the past" in await command(app, "/broadcast at 2001-01-01T10:00 all x")
    assert "not a date" in await command(app, "/broadcast at tomorrow all x")
    assert "language marker" in await command(app, "/broadcast intro\n[fr] texte")
    assert "Usage" in await command(app, "/confirm")
    assert "no broadcast #9" in await command(app, "/confirm 9")


async def test_organisers_can_be_added_and_then_broadcast(app: App) -> None:
    assert "only organisers" in await command(app, "/broadcast all x", sender="7",
                                              platform="telegram")
    assert "now an organiser" in await command(app, "/organiser add telegram 7")
    assert "Preview" in await command(app, "/broadcast all x", sender="7", platform="telegram")
    assert "not a telegram user id" in await command(app, "/organiser add telegram bob")
    assert "no longer" in await command(app, "/organiser remove telegram 7")
