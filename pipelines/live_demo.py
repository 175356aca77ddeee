"""The demo's live segment: the exchange emulator replays a stress day, the live loop publishes.

The emulator serves a real stress day of ``../shared/data`` (2022-06-13, when BTC fell 15%
as Celsius froze withdrawals; the data's other assets start in 2022) in the venues' REST
formats, or, without the data, the most volatile day of the synthetic market. Its clock is
paused and moved one hour at a time, so a day replays in seconds. After each close the live
loop (:class:`pipelines.live_loop.LiveLoop`) ingests over HTTP, computes the new feature
rows, forecasts with the demo's champion and publishes a signed batch into a live store of
its own; every batch also goes to the consumers (the venue, when one is attached). The
result lists the multipliers hour by hour.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from features.emulator.clock import SimulatedClock
from features.emulator.context import EmulatorContext
from features.emulator.control import EmulatorControl
from features.emulator.data import EmulatorMarket
from features.emulator.server import EmulatorServer
from features.live.ingest import LiveIngest, LiveIngestConfig
from features.live.metrics import LiveMetrics
from features.live.venues import VenueEndpoints
from features.sources.retry import RetryPolicy
from features.sources.side_data import SideFiles
from features.store import MarketStore
from models.spec import CalibrationSpec
from pipelines.flows.config import PublishConfig
from pipelines.live_loop import LiveConsumer, LiveLoop, LivePublication
from pipelines.live_venue import VenueConsumer, VenueHour
from pipelines.settings import Settings

logger = logging.getLogger("dynamargin.live.demo")

STRESS_DAY = pd.Timestamp("2022-06-13", tz="UTC")
"""The real stress day replayed when ``../shared/data`` is there."""
STRESS_ASSETS = ("BTCUSDT", "ETHUSDT", "XRPUSDT", "ADAUSDT")
"""Assets with spot and perpetual data on that day (three oracle feeds each)."""
HISTORY = pd.Timedelta(days=40)
"""History before the replayed day: features' windows and the policy's reference."""
SETTLE = pd.Timedelta(seconds=5)


@dataclass(frozen=True)
class LiveDemoResult:
    """What the live segment did.

    Attributes
    ----------
    source
        Where the replayed day came from.
    day
        The replayed day (UTC midnight).
    publications
        Every batch, in order.
    seconds
        Wall-clock duration of the segment.
    workdir
        Where its stores are (``<demo workdir>/live``).
    """

    source: str
    day: pd.Timestamp
    publications: list[LivePublication] = field(default_factory=list)
    seconds: float = 0.0
    workdir: Path = Path()
    venue: dict[int, VenueHour] = field(default_factory=dict)

    def multipliers(self) -> pd.DataFrame:
        """One row per batch: ``bar`` and each asset's multiplier and status."""
        rows = []
        for publication in self.publications:
            row: dict[str, object] = {"bar": publication.bar}
            for record in publication.assets:
                row[record.asset] = record.multiplier
                row[f"{record.asset}_status"] = record.status
            rows.append(row)
        return pd.DataFrame(rows)


def stress_market(shared_data: Path | None) -> tuple[EmulatorMarket, pd.Timestamp, list[str]]:
    """The real stress day with its history, else the synthetic market's most volatile day."""
    if shared_data is not None and (Path(shared_data) / "binance").is_dir():
        start = (STRESS_DAY - HISTORY).strftime("%Y-%m-%d")
        end = (STRESS_DAY + pd.Timedelta(days=2)).strftime("%Y-%m-%d")
        market = EmulatorMarket.from_data(Path(shared_data), start, end, list(STRESS_ASSETS))
        return market, STRESS_DAY, list(STRESS_ASSETS)
    begin = pd.Timestamp("2024-01-01", tz="UTC")
    market = EmulatorMarket.synthetic(begin, days=120, n_assets=3, seed=7)
    return market, _most_volatile_day(market, begin + HISTORY), market.symbols("spot")


def _most_volatile_day(market: EmulatorMarket, earliest: pd.Timestamp) -> pd.Timestamp:
    """The day (after ``earliest``, before the last) with the largest cross-asset RV."""
    frames = []
    for asset in market.symbols("spot"):
        bars = market.spot[asset].frame
        ret = np.log(bars["close"]).diff()
        frames.append(pd.Series(ret.to_numpy() ** 2, index=pd.DatetimeIndex(bars["ts"])))
    daily = pd.concat(frames, axis=1).sum(axis=1).resample("1D").sum()
    daily = daily[(daily.index >= earliest) & (daily.index < daily.index.max())]
    return pd.Timestamp(daily.idxmax())


def run_live_segment(
    settings: Settings,
    shared_data: Path | None,
    *,
    hours: int = 8,
    consumers: Sequence[LiveConsumer] = (),
    on_publication: Callable[[LivePublication], None] | None = None,
    publish: PublishConfig | None = None,
    calibration: CalibrationSpec | None = None,
    venue: bool = True,
) -> LiveDemoResult:
    """Replay ``hours`` of the stress day through the emulator and the live loop.

    Parameters
    ----------
    settings
        The demo's settings: its MLflow (the champion), keys and policy file. The segment's
        market store and publication store go under ``<workdir>/live``.
    shared_data
        Root of the real data (``None`` or absent: the synthetic market).
    hours
        Hours of the day to replay (from midnight).
    consumers
        Called with every batch (the venue).
    on_publication
        Called with every batch after the consumers (progress display).
    publish
        Forecast source (default: the champion, 10 days of forecast history).
    calibration
        Calibration of a baseline source (default 10 days).
    venue
        Serve the segment's store over HTTP and let a venue consume every batch from it.
    """
    started = time.perf_counter()
    market, day, assets = stress_market(shared_data)
    root = settings.workdir / "live"
    root.mkdir(parents=True, exist_ok=True)
    store = MarketStore(root / "store")
    publish = publish or PublishConfig(model="champion", history_days=10)
    context = EmulatorContext(market, SimulatedClock(day + SETTLE, 1.0, paused=True))
    result = LiveDemoResult(source=market.source, day=day, workdir=root)
    store_url = f"sqlite:///{root / 'publications.db'}"
    venue_hours: dict[int, VenueHour] = {}
    with contextlib.ExitStack() as stack:
        server = stack.enter_context(EmulatorServer(context))
        control = EmulatorControl(server.url)
        metrics = LiveMetrics()
        sources = VenueEndpoints.emulator(server.url, dump=False).build(
            metrics=metrics, retry=RetryPolicy(attempts=3, backoff=0.05, max_backoff=0.2)
        )
        for source in sources:
            stack.callback(source.close)
        config = LiveIngestConfig(since=day - HISTORY, repoll_seconds=0.05)
        ingest = LiveIngest(store, sources, assets, config, metrics)
        # Positioning and the macro calendar, read in place as known at each close.
        side = None
        if market.source.startswith("data:") and shared_data is not None:
            side = SideFiles(Path(shared_data))
        loop = LiveLoop(
            settings,
            ingest,
            publish,
            calibration=calibration or CalibrationSpec(window_days=10),
            store_url=store_url,
            consumers=consumers,
            status_file=root / "status.json",
            side=side,
        )
        first = loop.step_once()
        if first is not None:
            if venue:
                from pipelines.served_snapshot import running_api

                api = stack.enter_context(running_api(settings.workdir, store_url=store_url))
                consumer = VenueConsumer(root / "venue", api, assets, fresh=True)
                stack.callback(consumer.close)
                consumer(first)
                loop.add_consumer(consumer)
                venue_hours = consumer.hours
            result.publications.append(first)
            if on_publication is not None:
                on_publication(first)
        for _ in range(hours):
            control.advance(pd.Timedelta(hours=1))
            publication = loop.step_once()
            if publication is None:
                continue
            result.publications.append(publication)
            if on_publication is not None:
                on_publication(publication)
    return LiveDemoResult(
        source=result.source,
        day=day,
        publications=result.publications,
        seconds=time.perf_counter() - started,
        workdir=root,
        venue=dict(venue_hours),
    )


__all__ = ["STRESS_ASSETS", "STRESS_DAY", "LiveDemoResult", "run_live_segment", "stress_market"]
