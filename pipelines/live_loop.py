"""``dynamargin live``: after each bar close, ingest -> features -> forecast -> policy -> publish.

The loop is the hourly publish deployment's work done as soon as a bar closes, in one
process that keeps its state between hours:

1. **ingest**: :meth:`features.live.ingest.LiveIngest.run_cycle` fetches the closed bars,
   validates and stores them, and evaluates each asset's data freshness and oracle median;
2. **features**: :class:`features.incremental.IncrementalFeatures` computes only the rows the
   new bars change (equal to a full rebuild, tested);
3. **forecast**: :func:`pipelines.flows.publish.forecast_bundle`, the publish flow's own step
   (the champion, a baseline, or the fallback when neither is usable);
4. **policy and publish**: :func:`serving.publishing.sign_and_publish`, the flow's signer and
   store, into the publication store the API serves;
5. **consumers**: every registered consumer (the venue, the oracle reference feeds) gets the
   :class:`LivePublication`.

Data that is late waits for the bar (re-polled for at most the ingest's ``late_grace``);
data that is stale is published ``stale``, with the ingest's reason in the log, in the
publication record and on the status page, never as a silently reused old multiplier: the
stale asset's forecast is the one of its last real bar, and the policy gets a staleness
limit of one bar for it, so its own rule turns it into ``stale`` and tightens towards the
fallback multiplier. A step that fails (store, model) is logged and counted; the previous
batch stays served and its expiry tells consumers it is old.
"""

from __future__ import annotations

import json
import logging
import math
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from datetime import datetime
from pathlib import Path
from typing import Any

import pandas as pd

from contracts.files import atomic_write_text
from features.errors import MarketDataError
from features.incremental import IncrementalFeatures
from features.live.freshness import AssetFreshness
from features.live.ingest import CycleReport, LiveIngest
from features.oracle_price import MedianPrice
from features.sources.side_data import SideData
from models.errors import ModelsError
from models.forecast_sources import ForecastBundle, fallback_bundle
from models.spec import CalibrationSpec
from pipelines.flows.config import PublishConfig
from pipelines.flows.publish import forecast_bundle
from pipelines.settings import Settings
from serving.errors import ServingError
from serving.policy import PolicyBook, load_policy_book
from serving.publishing import sign_and_publish
from serving.store import default_store_url

logger = logging.getLogger("dynamargin.live.loop")


@dataclass(frozen=True)
class LiveAsset:
    """What one asset's publication says, with the data status behind it.

    Attributes
    ----------
    asset, status, multiplier, previous, reason, sigma, update_id
        The published snapshot (status ``ok``, ``stale``, ``fallback`` or ``halted``) and the
        policy's reason.
    data_status, data_reason
        The ingest's freshness verdict (``ok``, ``late``, ``stale``) and why.
    data_through
        Close of the newest bar of the asset's required feeds (ISO), if any.
    data_age_seconds
        Venue time minus ``data_through``.
    oracle_price, oracle_guarded
        The multi-source median and whether the asset is guarded.
    """

    asset: str
    status: str
    multiplier: float
    previous: float
    reason: str
    sigma: float
    update_id: int
    data_status: str
    data_reason: str
    data_through: str | None
    data_age_seconds: float | None
    oracle_price: float | None
    oracle_guarded: bool


@dataclass(frozen=True)
class LivePublication:
    """One batch of the live loop.

    Attributes
    ----------
    bar
        Open time of the newest closed bar the batch is for.
    venue_time
        Venue time of the ingest cycle (the publication time).
    batch_id
        Batch id in the publication store.
    source, note
        Forecast source (``champion``, ``baseline:*``, ``fallback``) and why.
    assets
        One record per asset.
    prices
        The oracle median per asset (reference feeds for the venue's oracle guard).
    seconds
        Duration of each step: ``ingest``, ``features``, ``forecast``, ``publish``, ``total``
        (wall clock), and ``features_cpu``, the feature step's CPU time in its thread.
    new_feature_rows
        Feature rows computed in this update (the rest were kept).
    """

    bar: pd.Timestamp
    venue_time: pd.Timestamp
    batch_id: int
    source: str
    note: str
    assets: tuple[LiveAsset, ...]
    prices: Mapping[str, MedianPrice] = field(default_factory=dict)
    seconds: Mapping[str, float] = field(default_factory=dict)
    new_feature_rows: int = 0

    def asset(self, name: str) -> LiveAsset:
        """The record of one asset."""
        for record in self.assets:
            if record.asset == name:
                return record
        raise KeyError(f"no asset {name!r} in batch {self.batch_id}")

    @property
    def statuses(self) -> dict[str, str]:
        """Published status per asset."""
        return {a.asset: a.status for a in self.assets}

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready form (the live status file and ``--json`` output)."""
        return {
            "bar": self.bar.isoformat(),
            "venue_time": self.venue_time.isoformat(),
            "batch_id": self.batch_id,
            "source": self.source,
            "note": self.note,
            "new_feature_rows": self.new_feature_rows,
            "seconds": dict(self.seconds),
            "assets": [asdict(a) for a in self.assets],
        }


LiveConsumer = Callable[[LivePublication], None]
"""Called with every batch, after it is committed (the venue, the oracle's reference feeds)."""


def live_status_path(workdir: Path) -> Path:
    """Where the live loop writes its newest batch (``<workdir>/live/status.json``)."""
    return Path(workdir) / "live" / "status.json"


def stale_policy_book(
    book: PolicyBook, stale_assets: Sequence[str], step: pd.Timedelta
) -> PolicyBook:
    """``book`` with a staleness limit of one bar for each asset whose data is stale.

    The live loop only publishes once the newest closed bar is in (or the ingest gave up on
    it), so a forecast of an older bar is stale by definition; this lets the policy's own
    rule say so (status ``stale``, a tightening towards the fallback multiplier) instead of
    republishing the old forecast's multiplier as ``ok``.
    """
    hours = step / pd.Timedelta(hours=1)
    assets = dict(book.assets)
    for asset in stale_assets:
        config = book.for_asset(asset)
        assets[asset] = config.model_copy(
            update={"staleness_limit_hours": min(config.staleness_limit_hours, hours)}
        )
    return PolicyBook(default=book.default, assets=assets)


class LiveLoop:
    """Publish a signed batch after every bar close from live data.

    Parameters
    ----------
    settings
        Work dir, MLflow (the champion), keys, policy file.
    ingest
        The live ingest runner (its store is where the features come from).
    publish
        Forecast source and policy file (``publish_time`` is ignored: the batch is
        published at the venue's time of the cycle).
    calibration
        How a baseline source is calibrated.
    store_url
        Publication store (default: the work dir's, as ``dynamargin serve`` reads it).
    consumers
        Called with each committed batch.
    features
        The incremental feature builder (default: the standard configuration).
    status_file
        Where the newest batch is written as JSON (default :func:`live_status_path`).
    side
        Positioning and macro calendar for the default feature builder, cut at each bar
        close (:mod:`features.sources.side_data`); ``None``: the ingest store's side tables.
    """

    def __init__(
        self,
        settings: Settings,
        ingest: LiveIngest,
        publish: PublishConfig | None = None,
        *,
        calibration: CalibrationSpec | None = None,
        store_url: str | None = None,
        consumers: Sequence[LiveConsumer] = (),
        features: IncrementalFeatures | None = None,
        status_file: Path | None = None,
        side: SideData | None = None,
    ) -> None:
        self.settings = settings
        self.ingest = ingest
        self.publish = publish or PublishConfig()
        self.calibration = calibration or CalibrationSpec()
        self.store_url = store_url or default_store_url(settings.workdir)
        self.consumers: list[LiveConsumer] = list(consumers)
        self.features = features or IncrementalFeatures(
            interval=ingest.config.interval,
            keep=pd.Timedelta(days=_days_of_features(self.publish, self.calibration)),
            side=side,
        )
        self.status_file = status_file or live_status_path(settings.workdir)
        self.metrics = ingest.metrics
        self.step = ingest.step
        self.published: list[LivePublication] = []
        self._last_bar: pd.Timestamp | None = None
        self._last_stale: frozenset[str] = frozenset()
        self._ingest_seconds = 0.0

    def add_consumer(self, consumer: LiveConsumer) -> None:
        """Register a consumer of every later batch (e.g. the venue's ``poll``)."""
        self.consumers.append(consumer)

    # --- the loop ------------------------------------------------------------------------

    def run(
        self,
        stop: threading.Event | None = None,
        *,
        until: pd.Timestamp | None = None,
        on_publication: LiveConsumer | None = None,
    ) -> LivePublication | None:
        """Run until ``stop`` is set or the venue's clock passes ``until``.

        Returns
        -------
        LivePublication or None
            The newest batch (``None`` when nothing was published).
        """

        def after(report: CycleReport) -> None:
            publication = self.after_cycle(report)
            if publication is not None and on_publication is not None:
                on_publication(publication)

        self.ingest.run(stop, until=until, on_cycle=after)
        return self.published[-1] if self.published else None

    def step_once(self) -> LivePublication | None:
        """One ingest cycle and, when a bar closed, one batch (tests, ``--cycles``)."""
        return self.after_cycle(self.ingest.run_cycle())

    def after_cycle(self, report: CycleReport) -> LivePublication | None:
        """Publish for the newest closed bar when it is due; ``None`` when nothing is.

        A batch is due at the first cycle after a close once no asset is ``late`` (a late
        bar is waited for, the ingest re-polls it), and again within the same bar when a
        stale asset recovered (so the venue gets the fresh multiplier at once).
        """
        self._ingest_seconds = report.seconds
        bar = report.venue_time.floor(self.step) - self.step
        records = report.freshness
        late = sorted(a for a, r in records.items() if r.status == "late")
        stale = frozenset(a for a, r in records.items() if r.status == "stale")
        if self._last_bar is not None and bar <= self._last_bar:
            if not (self._last_stale and stale < self._last_stale):
                return None
        if late:
            logger.info("bar %s: waiting for late data of %s", bar.isoformat(), ", ".join(late))
            return None
        try:
            publication = self._publish(report, bar, stale)
        except (MarketDataError, ModelsError, ServingError, OSError, ValueError) as exc:
            stage = getattr(exc, "live_stage", "publish")
            self.metrics.publish_failures.labels(stage).inc()
            logger.error(
                "bar %s: %s failed, the previous batch stays served (it expires on its own): %s",
                bar.isoformat(),
                stage,
                exc,
            )
            return None
        self._last_bar = bar
        self._last_stale = stale
        self.published.append(publication)
        for consumer in self.consumers:
            try:
                consumer(publication)
            except Exception as exc:  # a consumer must not stop the publisher
                self.metrics.publish_failures.labels("consumer").inc()
                logger.exception(
                    "batch %d: consumer %r failed: %s", publication.batch_id, consumer, exc
                )
        return publication

    # --- one batch -----------------------------------------------------------------------

    def _publish(
        self, report: CycleReport, bar: pd.Timestamp, stale: frozenset[str]
    ) -> LivePublication:
        seconds: dict[str, float] = {"ingest": self._ingest_seconds}
        started = time.perf_counter()
        cpu = time.thread_time()
        assets = list(self.ingest.assets)
        with _stage("features"):
            window = self.features.read(self.ingest.store, assets, end=bar + self.step)
            update = self.features.update(window)
        seconds["features"] = time.perf_counter() - started
        # This thread's CPU time: what the features cost without the other processes' load.
        seconds["features_cpu"] = time.thread_time() - cpu
        now = report.venue_time.to_pydatetime()
        mark = time.perf_counter()
        with _stage("forecast"):
            feature_set = update.feature_set
            try:
                bundle = forecast_bundle(
                    self.settings, feature_set, self.publish, now, self.calibration
                )
            except ModelsError as exc:
                # As the publish flow: an unusable source publishes the fallback, never nothing.
                self.metrics.publish_failures.labels("forecast").inc()
                bundle = fallback_bundle(f"{self.publish.model} unusable: {exc}", feature_set)
            bundle = _without_unreal_rows(bundle, report.freshness, stale, self.step)
        seconds["forecast"] = time.perf_counter() - mark
        if bundle.is_fallback:
            logger.warning(
                "bar %s: publishing FALLBACK multipliers: %s", bar.isoformat(), bundle.note
            )
        mark = time.perf_counter()
        with _stage("publish"):
            book = load_policy_book(self.settings.policy_path(self.publish.policy_config))
            book = stale_policy_book(book, sorted(stale), self.step)
            start = pd.Timestamp(now) - pd.Timedelta(days=31)
            bars = self.ingest.store.read_bars(self.ingest.config.interval, assets, start, None)
            batch = sign_and_publish(
                bundle.forecasts,
                bundle.provenance,
                bars,
                assets,
                now,
                policy=book,
                store_url=self.store_url,
                workdir=self.settings.workdir,
                horizon_hours=self.settings.horizon_hours,
                venue=self.publish.venue,
                mode="live",
            )
        seconds["publish"] = time.perf_counter() - mark
        seconds["total"] = self._ingest_seconds + (time.perf_counter() - started)
        for stage, value in seconds.items():
            self.metrics.stage_seconds.labels(stage).set(value)
        records = []
        for row in batch.rows():
            asset = str(row["asset"])
            fresh = report.freshness.get(asset)
            price = report.prices.get(asset)
            records.append(_record(row, fresh, price))
            self.metrics.publications.labels(asset, str(row["status"])).inc()
        publication = LivePublication(
            bar=bar,
            venue_time=report.venue_time,
            batch_id=batch.receipt.batch_id,
            source=bundle.source,
            note=bundle.note,
            assets=tuple(records),
            prices=dict(report.prices),
            seconds=seconds,
            new_feature_rows=len(update.new_rows),
        )
        self._log(publication)
        atomic_write_text(self.status_file, json.dumps(publication.to_dict(), indent=1))
        return publication

    def _log(self, publication: LivePublication) -> None:
        for record in publication.assets:
            line = (
                f"batch {publication.batch_id} bar {publication.bar:%Y-%m-%d %H:%M} "
                f"{record.asset} {record.status} m={record.multiplier:.3f} "
                f"(was {record.previous:.3f}) {record.reason}"
            )
            if record.status != "ok" or record.data_status != "ok":
                logger.warning("%s; data %s: %s", line, record.data_status, record.data_reason)
            else:
                logger.info(line)
        logger.info(
            "batch %d published in %.2f s (ingest %.2f, features %.2f, forecast %.2f, publish "
            "%.2f; %d new feature rows)",
            publication.batch_id,
            publication.seconds["total"],
            publication.seconds["ingest"],
            publication.seconds["features"],
            publication.seconds["forecast"],
            publication.seconds["publish"],
            publication.new_feature_rows,
        )


class _stage:
    """Tag an exception with the loop step it came from (for the failure metric and log)."""

    def __init__(self, name: str) -> None:
        self.name = name

    def __enter__(self) -> None:
        return None

    def __exit__(self, kind: object, exc: BaseException | None, _tb: object) -> bool:
        if exc is not None and not hasattr(exc, "live_stage"):
            try:
                exc.live_stage = self.name  # type: ignore[attr-defined]
            except AttributeError:
                pass
        return False


def _days_of_features(publish: PublishConfig, calibration: CalibrationSpec) -> int:
    """Days of feature rows the forecast source needs (a baseline fits and calibrates too)."""
    days = publish.history_days
    if publish.baseline is not None:
        # baseline_forecasts fits before, and calibrates on, the last window_days.
        days = max(days, calibration.window_days + 30)
    return days + 2


def _without_unreal_rows(
    bundle: ForecastBundle,
    freshness: Mapping[str, AssetFreshness],
    stale: frozenset[str],
    step: pd.Timedelta,
) -> ForecastBundle:
    """Drop a stale asset's forecasts of bars that are not in (grid rows without data).

    The feature grid runs to the newest bar of any asset, so a stale asset has rows whose
    bar never arrived; its latest real forecast is the one of its last stored bar.
    """
    if not stale or bundle.forecasts.empty:
        return bundle
    frame = bundle.forecasts
    keep = pd.Series(True, index=frame.index)
    for asset in stale:
        record = freshness.get(asset)
        through = None if record is None else record.data_through
        rows = frame["asset"].astype(str) == asset
        if through is None:
            keep &= ~rows
        else:
            keep &= ~(rows & (frame["ts"] > through - step))
    return replace(bundle, forecasts=frame[keep].reset_index(drop=True))


def _record(
    row: Mapping[str, Any], fresh: AssetFreshness | None, price: MedianPrice | None
) -> LiveAsset:
    age = None if fresh is None else fresh.age()
    oracle = None
    if price is not None and math.isfinite(price.price):
        oracle = float(price.price)
    return LiveAsset(
        asset=str(row["asset"]),
        status=str(row["status"]),
        multiplier=float(row["multiplier"]),
        previous=float(row["previous"]),
        reason=str(row["reason"]),
        sigma=float(row["sigma"]),
        update_id=int(row["update_id"]),
        data_status="stale" if fresh is None else fresh.status,
        data_reason="no freshness record" if fresh is None else fresh.reason,
        data_through=None
        if fresh is None or fresh.data_through is None
        else fresh.data_through.isoformat(),
        data_age_seconds=None if age is None else age.total_seconds(),
        oracle_price=oracle,
        oracle_guarded=True if price is None else price.guarded,
    )


def venue_time(publication: LivePublication) -> datetime:
    """The batch's publication time as a datetime (what consumers compare expiry with)."""
    return publication.venue_time.to_pydatetime()


__all__ = [
    "LiveAsset",
    "LiveConsumer",
    "LiveLoop",
    "LivePublication",
    "live_status_path",
    "stale_policy_book",
    "venue_time",
]
