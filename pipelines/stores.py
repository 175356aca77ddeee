"""The work dir's stores, opened the same way by every command and flow."""

from __future__ import annotations

from features.store import MarketStore
from pipelines.settings import Settings


def market_store(settings: Settings) -> MarketStore:
    """The work dir's market store: ``<workdir>/store``, rejected rows in ``quarantine/``."""
    return MarketStore(settings.store_dir, quarantine_dir=settings.quarantine_dir)
