"""``ingest_flow``: market data (Binance dump layout or the synthetic market) into the store.

The store (:class:`features.store.MarketStore` under ``<workdir>/store``) is idempotent and
atomic, so the ingest tasks retry safely: a retried file is either skipped by the manifest
or merged into identical rows. A malformed file fails the flow with the store's message
(file, row, what to do) and nothing downstream runs.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from prefect import flow, get_run_logger, task

from features.store import IngestResult
from pipelines.flows.config import DataConfig
from pipelines.flows.runtime import IO_TASK, flow_settings
from pipelines.stores import market_store


@dataclass(frozen=True)
class IngestSummary:
    """What an ingest added, and what the store now holds.

    Attributes
    ----------
    source
        ``synthetic(...)`` or the data root.
    rows_added
        Rows new to the store in this run.
    quarantined
        Rows rejected by validation in this run.
    assets
        Assets with spot bars at the interval after the run.
    store
        Store directory.
    """

    source: str
    rows_added: int
    quarantined: int
    assets: tuple[str, ...]
    store: str

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {**self.__dict__, "assets": list(self.assets)}


@task(**IO_TASK)
def ingest_synthetic(workdir: str, data: DataConfig) -> IngestResult:
    """Generate the seeded synthetic market and store it."""
    from features.synthetic import SyntheticMarketConfig, generate_market

    market = generate_market(
        SyntheticMarketConfig(
            n_assets=data.synthetic_assets,
            days=data.synthetic_days,
            seed=data.synthetic_seed,
            interval=data.interval,
        )
    )
    return market_store(flow_settings(workdir)).ingest_market(market)


@task(**IO_TASK)
def ingest_dump(workdir: str, data: DataConfig) -> IngestResult:
    """Ingest spot klines and funding of a dump directory, failing on any unreadable file."""
    if data.data is None:
        raise ValueError("ingest_dump needs DataConfig.data")
    months = None
    if data.start is not None or data.end is not None:
        months = (_month(data.start, "2017-01"), _month_before(data.end))
    store = market_store(flow_settings(workdir))
    result = store.ingest_dump(
        data.data,
        intervals=(data.interval,),
        symbols=list(data.assets) if data.assets else None,
        months=months,
        on_file_error="raise",
    )
    # Positioning and the macro calendar, read in place from the same root when it has them.
    from features.macro_calendar import read_macro_calendar
    from features.positioning import read_positioning

    positioning = read_positioning(data.data, list(data.assets) if data.assets else None)
    if len(positioning):
        store.write_table("positioning", positioning)
    events = read_macro_calendar(data.data)
    if len(events):
        store.write_table("events", events)
    return result


@task(**IO_TASK)
def ingest_perp(workdir: str, data: DataConfig) -> IngestResult | None:
    """Ingest the perpetual OHLCV files of a dump directory, when it has them."""
    if data.data is None or not (Path(data.data) / "perp_ohlcv").is_dir():
        return None
    return market_store(flow_settings(workdir)).ingest_perp_dir(
        data.data, data.interval, list(data.assets) if data.assets else None
    )


@flow(name="ingest", log_prints=True)
def ingest_flow(workdir: str | None = None, data: DataConfig | None = None) -> IngestSummary:
    """Bring market data into the work dir's Parquet store.

    Parameters
    ----------
    workdir
        Work dir (default: ``DYNAMARGIN_WORKDIR`` or ``./.dynamargin``).
    data
        Source: ``data.data`` is a dump root, or ``None`` for the synthetic market.

    Returns
    -------
    IngestSummary
    """
    data = data or DataConfig()
    settings = flow_settings(workdir)
    logger = get_run_logger()
    if data.data is None:
        results = [ingest_synthetic(str(settings.workdir), data)]
        source = (
            f"synthetic(assets={data.synthetic_assets}, days={data.synthetic_days}, "
            f"seed={data.synthetic_seed})"
        )
    else:
        results = [ingest_dump(str(settings.workdir), data)]
        perp = ingest_perp(str(settings.workdir), data)
        results += [perp] if perp is not None else []
        source = str(data.data)
    added = sum(r.rows_added for r in results)
    quarantined = sum(len(r.report.quarantine) for r in results)
    assets = tuple(market_store(settings).assets("bars", data.interval))
    logger.info(
        "ingested %s: %d new rows, %d quarantined; store holds %s",
        source,
        added,
        quarantined,
        list(assets),
    )
    return IngestSummary(source, added, quarantined, assets, str(settings.store_dir))


def _month(value: str | None, default: str) -> str:
    return default if value is None else str(value)[:7]


def _month_before(end: str | None) -> str:
    """The last month with data before the exclusive ``end`` bound."""
    import pandas as pd

    if end is None:
        return "2100-12"
    stamp = pd.Timestamp(end) - pd.Timedelta(microseconds=1)
    return f"{stamp:%Y-%m}"
