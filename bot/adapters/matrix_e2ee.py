"""End-to-end encryption chores for the Matrix adapter (nio with `matrix.encryption`).

Devices are trusted on first use: every device of a room member is verified the first
time the bot learns of it, and nio keeps the key it saw first (a device whose key later
changes is not trusted again). Messages whose room key has not arrived yet are kept and
tried again when keys arrive, instead of being dropped or answered with an error.
"""

from __future__ import annotations

import logging
import time
from collections import OrderedDict
from collections.abc import Sequence

from aiohttp import ClientError
from nio import AsyncClient, EncryptionError, MegolmEvent, RoomKeyEvent
from nio.events import Event, ToDeviceEvent

log = logging.getLogger(__name__)

MAX_KEPT_EVENTS = 1000


def trust_new_devices(client: AsyncClient) -> None:
    """Verify devices seen for the first time; blacklisted ones stay blacklisted."""
    trusted = 0
    for device in client.device_store:
        if not (device.verified or device.blacklisted or device.deleted):
            client.verify_device(device)
            trusted += 1
    if trusted:
        log.info("Matrix: trusted %d new device(s) on first use", trusted)


def arrived_sessions(events: Sequence[ToDeviceEvent]) -> set[str]:
    """Megolm sessions whose keys came in with these to-device events."""
    return {event.session_id for event in events if isinstance(event, RoomKeyEvent)}


class UndecryptedEvents:
    """Encrypted room events waiting for their room key, oldest dropped first."""

    def __init__(self, max_age_seconds: float) -> None:
        self.max_age_ms = max_age_seconds * 1000
        self._events: OrderedDict[str, MegolmEvent] = OrderedDict()

    async def keep(self, client: AsyncClient, event: MegolmEvent) -> None:
        """Keep the event and ask the sender's other devices for its key."""
        self._events[event.event_id] = event
        self._forget_old()
        log.info("Matrix: an encrypted message cannot be read yet (no key for its session); "
                 "asked for the key and will answer when it arrives")
        if event.session_id in client.outgoing_key_requests:
            return
        try:
            await client.request_room_key(event)
        except (ClientError, TimeoutError) as error:
            log.warning("Matrix: asking for a room key failed (%s)", type(error).__name__)

    def decrypt(self, client: AsyncClient, sessions: set[str]) -> list[tuple[str, Event]]:
        """(room id, event) for each kept event of these sessions that can be read now."""
        readable: list[tuple[str, Event]] = []
        for event_id, event in list(self._events.items()):
            if event.session_id not in sessions:
                continue
            try:
                decrypted = client.decrypt_event(event)
            except EncryptionError:
                continue
            del self._events[event_id]
            readable.append((event.room_id, decrypted))
        if readable:
            log.info("Matrix: %d kept encrypted message(s) can be read now", len(readable))
        return readable

    def _forget_old(self) -> None:
        oldest = time.time() * 1000 - self.max_age_ms
        for event_id, event in list(self._events.items()):
            if event.server_timestamp < oldest or len(self._events) > MAX_KEPT_EVENTS:
                del self._events[event_id]
