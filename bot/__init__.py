"""Async core of the statement bot: config, catalog, languages, rendering, storage, adapters."""
