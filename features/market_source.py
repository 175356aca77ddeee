"""One rule for where a command's market data come from: ``--data ROOT``, else the store.

A dump root laid out like ``../shared/data`` is loaded and validated by
:func:`features.sources.load_market`; without one the work dir's Parquet store
(:class:`features.store.MarketStore`) serves the same bundle.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from features.errors import EmptyMarketError
from features.market import MarketData
from features.store import MarketStore


def read_market(
    data: Path | None,
    store: MarketStore,
    interval: str,
    assets: Sequence[str] | None = None,
    start: str | None = None,
    end: str | None = None,
) -> MarketData:
    """The market of ``[start, end)`` from the dump at ``data``, or from ``store``.

    Raises
    ------
    EmptyMarketError
        If no bar of ``interval`` matches, naming the source, assets and period.
    MarketDataError
        Whatever the source raises for bad files (see :func:`features.sources.load_market`).
    """
    chosen = list(assets) if assets else None
    if data is not None:
        from features.sources import load_market

        market, _report = load_market(Path(data), interval, chosen, start, end)
        where = str(data)
    else:
        market = store.read_market(interval, chosen, start, end)
        where = str(store.root)
    if market.bars.empty:
        raise EmptyMarketError(
            f"no {interval} bars for {chosen or 'any asset'} in [{start}, {end}) of {where}"
        )
    return market
