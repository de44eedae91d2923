"""The running bot's shared parts: config, catalog, storage, translations."""

from __future__ import annotations

import logging
from dataclasses import dataclass

from bot.catalog import Catalog, load_catalog
from bot.config import Config
from bot.i18n import Translator
from bot.outbox import Outbox
from bot.storage import Storage
from handlers import Context

log = logging.getLogger(__name__)


@dataclass
class App:
    config: Config
    catalog: Catalog
    storage: Storage
    translator: Translator
    outbox: Outbox

    @classmethod
    async def start(cls, config: Config) -> App:
        """Load statements (reporting and skipping broken files) and open the database."""
        catalog = load_catalog(config.statements)
        for problem in catalog.problems:
            log.error("statement skipped: %s", problem)
        log.info("serving %d statements in %s", len(catalog.statements),
                 ", ".join(catalog.languages) or "no language")
        storage = await Storage.open(config.database)
        translator = Translator()
        outbox = Outbox(storage, catalog, translator, config.language)
        return cls(config, catalog, storage, translator, outbox)

    def context(self, command_prefix: str = "/") -> Context:
        """Handler context for one platform (each has its own command prefix)."""
        return Context(self.config, self.catalog, self.storage, self.translator, self.outbox,
                       command_prefix)

    async def close(self) -> None:
        await self.storage.close()
