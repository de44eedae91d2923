"""Organisers' commands: broadcast, announce, confirm, cancel, report, organisers.

Handlers only write to the outbox; dispatchers do the sending. Every broadcast is shown
as a preview first and goes out only when an organiser confirms it.
"""

from __future__ import annotations

import datetime as dt
import re
import time
from zoneinfo import ZoneInfo

from bot.config import MATRIX_USER_ID
from bot.document import Block, ListBlock, bold, heading, inlines, para
from bot.i18n import Translate
from bot.languages import normalise_language
from bot.markdown import parse_markdown
from bot.outbox import ANY_LANGUAGE, Broadcast, Report
from bot.protocol import Action, Reply
from handlers.context import Call
from handlers.registry import N_, command

_VARIANT = re.compile(r"^\[([A-Za-z]{2,3}(?:[-_][A-Za-z]{2,4})?)\][ \t]*", re.M)


class BroadcastError(Exception):
    """A malformed broadcast command; the message is already translated."""


def _when(call: Call, token: str) -> float:
    try:
        moment = dt.datetime.fromisoformat(token)
    except ValueError:
        raise BroadcastError(call._("“{token}” is not a date and time like 2026-12-01T18:00.",
                                    token=token[:40])) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=ZoneInfo(call.ctx.config.timezone))
    if moment.timestamp() <= time.time():
        raise BroadcastError(call._("{time} is in the past.", time=token))
    return moment.timestamp()


def _languages(call: Call, token: str) -> list[str] | bool | None:
    """`all` → None; `fr,de` → codes; False when the token is not a language list."""
    if token.casefold() == "all":
        return None
    codes = [normalise_language(item, call.ctx.offered_languages) if item == item.lower()
             else None for item in token.split(",")]
    if all(codes) and codes:
        return sorted({c for c in codes if c})
    return False


def _variants(call: Call, text: str) -> dict[str, str]:
    """Split `[fr] …` / `[de] …` sections; text without markers is for every language."""
    markers = list(_VARIANT.finditer(text))
    if not markers:
        return {ANY_LANGUAGE: text.strip()} if text.strip() else {}
    if text[: markers[0].start()].strip():
        raise BroadcastError(call._("Put every line of the text after a language marker such "
                                    "as [fr], or use no markers at all."))
    variants: dict[str, str] = {}
    for index, marker in enumerate(markers):
        end = markers[index + 1].start() if index + 1 < len(markers) else len(text)
        code = normalise_language(marker.group(1), call.ctx.offered_languages)
        if code is None:
            raise BroadcastError(call._("I don't know the language “{token}”.",
                                        token=marker.group(1)))
        body = text[marker.end(): end].strip()
        if body:
            variants[code] = body
    return variants


def parse_broadcast(call: Call) -> tuple[float | None, list[str] | None, dict[str, str]]:
    """`[at TIME] [LANGS|all] TEXT` → (when, languages, variants)."""
    rest = call.rest.strip()
    when = None
    head = rest.split(maxsplit=2)
    if len(head) >= 2 and head[0].casefold() == "at":
        when = _when(call, head[1])
        rest = rest.split(maxsplit=2)[2] if len(head) == 3 else ""
    languages: list[str] | None = None
    first = rest.split(maxsplit=1)
    if first:
        parsed = _languages(call, first[0])
        if parsed is not False:
            languages = parsed  # type: ignore[assignment]
            rest = first[1] if len(first) == 2 else ""
    variants = _variants(call, rest)
    if not variants:
        raise BroadcastError(call._("There is no text to send. Usage: {usage}",
                                    usage=call.usage()))
    return when, languages, variants


def _format_time(call: Call, timestamp: float) -> str:
    zone = ZoneInfo(call.ctx.config.timezone)
    moment = dt.datetime.fromtimestamp(timestamp, zone)
    return f"{moment:%Y-%m-%d %H:%M} ({call.ctx.config.timezone})"


async def _preview(call: Call, broadcast: Broadcast) -> list[Reply]:
    _ = call._
    outbox = call.ctx.outbox
    blocks: list[Block] = [heading(_("Preview of broadcast #{id}", id=broadcast.id))]
    if broadcast.scheduled_at:
        blocks.append(para(_("Scheduled for {time}.",
                             time=_format_time(call, broadcast.scheduled_at))))
    if broadcast.kind == "announce":
        shown = {call.ctx.config.language: outbox.document_for(broadcast,
                                                               call.ctx.config.language)}
    else:
        shown = {lang: parse_markdown(text) for lang, text in broadcast.payload["variants"].items()}
    for language, document in shown.items():
        if language != ANY_LANGUAGE:
            blocks.append(para(bold(f"[{language}]")))
        blocks.extend(document or ())
    audience = await outbox.audience(broadcast)
    total = sum(audience.reached.values())
    blocks.append(para(call.ngettext("It will reach {count} chat:", "It will reach {count} chats:",
                                     total)))
    if audience.reached:
        blocks.append(ListBlock(tuple(inlines(f"{platform} · {language}: {count}")
                                      for (platform, language), count in audience.reached.items())))
    if audience.unreached:
        missing = ", ".join(f"{p} · {lang}: {n}" for (p, lang), n in audience.unreached.items())
        blocks.append(para(_("No text for their language, so they get nothing: {chats}.",
                             chats=missing)))
    confirm, cancel = call.cmd("confirm", str(broadcast.id)), call.cmd("cancel", str(broadcast.id))
    blocks.append(para(_("Send {confirm} to send it, or {cancel} to drop it.",
                         confirm=confirm, cancel=cancel)))
    return [Reply(tuple(blocks), actions=(Action(_("Send"), confirm), Action(_("Drop"), cancel)))]


@command("broadcast", "[at TIME] [LANGS|all] TEXT",
         N_("send a call to every subscribed chat (preview first)"), organiser_only=True)
async def broadcast_command(call: Call) -> list[Reply]:
    try:
        when, languages, variants = parse_broadcast(call)
    except BroadcastError as error:
        return [Reply((para(str(error)),))]
    request = call.request
    broadcast = await call.ctx.outbox.create(
        request.chat.platform, request.sender, request.chat.id, "text",
        {"variants": variants, "languages": languages}, when)
    return await _preview(call, broadcast)


@command("announce", "ID [demands]",
         N_("send a statement (or its demands) to every subscribed chat"), organiser_only=True)
async def announce_command(call: Call) -> list[Reply]:
    _ = call._
    statement = call.ctx.catalog.find(call.args[0]) if call.args else None
    extra = [a.casefold() for a in call.args[1:]]
    if statement is None or any(a != "demands" for a in extra):
        ids = ", ".join(s.id for s in call.ctx.catalog.newest_first())
        return [Reply((para(_("Usage: {usage}", usage=call.usage())),
                       para(_("Statements: {ids}.", ids=ids))))]
    request = call.request
    broadcast = await call.ctx.outbox.create(
        request.chat.platform, request.sender, request.chat.id, "announce",
        {"statement": statement.id, "demands": "demands" in extra, "languages": None})
    return await _preview(call, broadcast)


def _broadcast_id(call: Call) -> int | None:
    if len(call.args) == 1 and call.args[0].lstrip("#").isdigit():
        return int(call.args[0].lstrip("#"))
    return None


@command("confirm", "ID", N_("send a previewed broadcast"), organiser_only=True)
async def confirm_command(call: Call) -> list[Reply]:
    _ = call._
    broadcast_id = _broadcast_id(call)
    if broadcast_id is None:
        return [Reply((para(_("Usage: {usage}", usage=call.usage())),))]
    broadcast = await call.ctx.outbox.confirm(broadcast_id)
    if broadcast is None:
        return [Reply((para(_("There is no broadcast #{id} waiting for confirmation.",
                              id=broadcast_id)),))]
    if broadcast.status == "scheduled" and broadcast.scheduled_at:
        return [Reply((para(_("Broadcast #{id} is scheduled for {time}.", id=broadcast.id,
                              time=_format_time(call, broadcast.scheduled_at))),))]
    report = await call.ctx.outbox.report(broadcast.id)
    recipients = report.recipients if report else 0
    return [Reply((para(call.ngettext(
        "Broadcast #{id} is going out to {count} chat. Progress follows here.",
        "Broadcast #{id} is going out to {count} chats. Progress follows here.",
        recipients, id=broadcast.id)),))]


@command("cancel", "ID", N_("stop a draft, scheduled or running broadcast"), organiser_only=True)
async def cancel_command(call: Call) -> list[Reply]:
    _ = call._
    broadcast_id = _broadcast_id(call)
    if broadcast_id is None:
        return [Reply((para(_("Usage: {usage}", usage=call.usage())),))]
    broadcast = await call.ctx.outbox.cancel(broadcast_id)
    if broadcast is None:
        return [Reply((para(_("Broadcast #{id} cannot be cancelled: it does not exist or has "
                              "already ended.", id=broadcast_id)),))]
    report = await call.ctx.outbox.report(broadcast_id)
    assert report is not None
    return [Reply(report_blocks(_, report))]


@command("report", "[ID]", N_("how a broadcast is going"), organiser_only=True)
async def report_command(call: Call) -> list[Reply]:
    _ = call._
    outbox = call.ctx.outbox
    broadcast_id = _broadcast_id(call)
    if call.args and broadcast_id is None:
        return [Reply((para(_("Usage: {usage}", usage=call.usage())),))]
    broadcast = await (outbox.get(broadcast_id) if broadcast_id else outbox.latest())
    report = await outbox.report(broadcast.id) if broadcast else None
    if report is None:
        return [Reply((para(_("There is no such broadcast yet.")),))]
    return [Reply(report_blocks(_, report))]


def _duration(seconds: float) -> str:
    seconds = round(seconds)
    return f"{seconds // 60}m {seconds % 60:02d}s" if seconds >= 60 else f"{seconds}s"


def report_blocks(_: Translate, report: Report) -> tuple[Block, ...]:
    """The state of a broadcast, as its status message and `/report` show it."""
    broadcast = report.broadcast
    status = {"draft": N_("draft (not confirmed)"), "scheduled": N_("scheduled"),
              "running": N_("sending"), "done": N_("finished"),
              "cancelled": N_("cancelled")}.get(broadcast.status, broadcast.status)
    counts = report.counts
    lines = [
        _("Recipients: {chats}, messages: {messages}",
           chats=report.recipients, messages=report.total),
        _("Sent: {count}", count=counts.get("sent", 0)),
        _("Failed: {count}", count=counts.get("failed", 0)),
        _("Pending: {count}", count=report.pending),
    ]
    if counts.get("cancelled"):
        lines.append(_("Not sent (cancelled): {count}",
                        count=counts["cancelled"]))
    lines.append(_("Rate: {rate:.1f} messages/s", rate=report.rate))
    lines.append(_("Time taken: {time}",
                    time=_duration(report.elapsed)))
    if broadcast.status == "running" and report.rate > 0 and report.pending:
        lines.append(_("Time left: about {time}",
                        time=_duration(report.pending / report.rate)))
    blocks: list[Block] = [
        heading(_("Broadcast #{id}: {status}", id=broadcast.id,
                   status=_(status))),
        ListBlock(tuple(inlines(line) for line in lines)),
    ]
    if report.failures:
        blocks.append(para(_("Failures by reason:")))
        blocks.append(ListBlock(tuple(inlines(f"{reason}: {count}")
                                      for reason, count in sorted(report.failures.items()))))
    return tuple(blocks)


@command("organisers", "", N_("who may broadcast"), organiser_only=True)
async def organisers_command(call: Call) -> list[Reply]:
    _ = call._
    config = call.ctx.config.organisers
    configured = [("telegram", str(i)) for i in config.telegram] + [
        ("matrix", m) for m in config.matrix]
    stored = await call.ctx.storage.organisers()
    items = [inlines(f"{p}: {u}", " ", _("(config file)")) for p, u in configured]
    items += [inlines(f"{p}: {u}") for p, u in stored if (p, u) not in configured]
    if not items:
        return [Reply((para(_("No organisers besides the console's operator.")),))]
    return [Reply((para(_("Organisers:")), ListBlock(tuple(items))))]


@command("organiser", "add|remove telegram|matrix ID", N_("add or remove an organiser"),
         organiser_only=True)
async def organiser_command(call: Call) -> list[Reply]:
    _ = call._
    if len(call.args) != 3 or call.args[0] not in ("add", "remove") or call.args[1] not in (
        "telegram", "matrix"
    ):
        return [Reply((para(_("Usage: {usage}", usage=call.usage())),))]
    action, platform, user_id = call.args
    valid = user_id.isdigit() if platform == "telegram" else bool(MATRIX_USER_ID.match(user_id))
    if not valid:
        return [Reply((para(_("“{id}” is not a {platform} user id.", id=user_id[:80],
                              platform=platform)),))]
    storage = call.ctx.storage
    if action == "add":
        added = await storage.add_organiser(platform, user_id, call.request.sender)
        text = (_("{id} is now an organiser.", id=user_id) if added
                else _("{id} already was an organiser.", id=user_id))
    else:
        removed = await storage.remove_organiser(platform, user_id)
        text = (_("{id} is no longer an organiser.", id=user_id) if removed
                else _("{id} is not in the stored list (organisers from the config file are "
                       "changed there).", id=user_id))
    return [Reply((para(text),))]
