"""The work dir's stores (market data, publications), opened the same way by every command
and flow."""

from __future__ import annotations

from typing import TYPE_CHECKING

from features.store import MarketStore
from pipelines.settings import Settings

if TYPE_CHECKING:
    from serving.store import PublicationStore, StoreMode


def market_store(settings: Settings) -> MarketStore:
    """The work dir's market store: ``<workdir>/store``, rejected rows in ``quarantine/``."""
    return MarketStore(settings.store_dir, quarantine_dir=settings.quarantine_dir)


def publication_store(
    settings: Settings, *, create: bool = True, mode: StoreMode | None = None
) -> PublicationStore:
    """The publication store every command uses: ``$DYNAMARGIN_PUBLICATIONS_URL``, else
    ``<workdir>/publications.db`` (see :func:`serving.store.default_store_url`).

    ``create=False`` opens it for reading only (no DDL); ``mode`` refuses a store of the
    other mode (live or replay).
    """
    # Imported on use: SQLAlchemy adds a noticeable delay to every `dynamargin` start.
    from serving.store import PublicationStore, default_store_url

    return PublicationStore(default_store_url(settings.workdir), create=create, mode=mode)
