"""The live path's positioning and macro-event columns equal the batch path's, point in time.

The live path reads positioning and the calendar as known at each bar's close
(:mod:`features.sources.side_data`): from the store's side tables or from the files of a data
root. After each hour the rows the update computed must equal the batch build's rows of the
same times, with the #20 columns filled, and nothing stamped after a close may reach it.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from features.build import build_features
from features.incremental import IncrementalFeatures
from features.market import MarketData, empty_events, empty_positioning
from features.sources import load_market
from features.sources.side_data import SideFiles, StoreSideData, known_at
from features.store import MarketStore
from features.synthetic import SyntheticMarketConfig, generate_market
from tests.features.test_incremental import _assert_same

H = pd.Timedelta(hours=1)
SIDE_COLUMNS = [
    "oi_growth_1d",
    "oi_growth_7d",
    "liq_log_1d",
    "liq_surprise_30d",
    "liq_imbalance_1d",
    "event_hours_to_next",
    "event_next_24h",
    "fomc_next_24h",
    "event_hours_since_last",
]


@pytest.fixture(scope="module")
def market() -> MarketData:
    return generate_market(SyntheticMarketConfig(n_assets=3, days=100, seed=5))


def _slice(market: MarketData, start: pd.Timestamp | None, end: pd.Timestamp) -> MarketData:
    """Bars and perp bars of ``[start, end)``, funding of ``(start, end]``: one ingest cycle."""

    def cut(frame: pd.DataFrame, settled: bool = False) -> pd.DataFrame:
        # A bar of [start, end) has closed; a funding event settled at ``end`` is in too.
        keep = frame["ts"] <= end if settled else frame["ts"] < end
        if start is not None:
            keep &= frame["ts"] > start if settled else frame["ts"] >= start
        return frame[keep].reset_index(drop=True)

    return MarketData(
        bars=cut(market.bars),
        funding=cut(market.funding, settled=True),
        perp=cut(market.perp),
        interval=market.interval,
        source=market.source,
    )


def _unscheduled_release(market: MarketData) -> pd.Timestamp:
    events = market.events
    unscheduled = events.loc[~events["scheduled"], "release_utc"]
    middle = market.bars["ts"].min() + pd.Timedelta(days=75)
    return pd.Timestamp(unscheduled[unscheduled > middle].min())


def _live_rows(
    market: MarketData, store: MarketStore, start: pd.Timestamp, hours: int, builder
) -> pd.DataFrame:
    """Run the live path hour by hour from ``start``; every row an update computed."""
    store.ingest_market(_slice(market, None, start))
    assert builder.update(builder.read(store, end=start)).full
    rows = []
    for hour in range(1, hours + 1):
        now = start + hour * H
        store.ingest_market(_slice(market, now - H, now))
        update = builder.update(builder.read(store, end=now))
        assert not update.full
        assert update.new_rows["ts"].max() == now - H
        rows.append(update.new_rows)
    return pd.concat(rows, ignore_index=True)


def _batch_rows(batch: pd.DataFrame, live: pd.DataFrame) -> pd.DataFrame:
    keys = live[["ts", "asset"]].astype({"asset": str})
    frame = batch.astype({"asset": str}).merge(keys, on=["ts", "asset"], how="inner")
    assert len(frame) == len(live)
    return frame


def test_live_rows_equal_batch_rows_with_positioning_and_events_from_the_store(
    market: MarketData, tmp_path: Path
) -> None:
    # The store's side tables hold every row, future ones included (a batch ingest writes
    # the whole files): the live path must cut them at each close.
    store = MarketStore(tmp_path / "store")
    store.write_table("positioning", market.positioning)
    store.write_table("events", market.events)
    release = _unscheduled_release(market)
    start = release.floor("D") - 6 * H  # crosses the day's close and the unscheduled release
    live = _live_rows(market, store, start, 26, IncrementalFeatures(keep=None))
    batch = _batch_rows(build_features(market).frame, live)
    _assert_same(live, batch)
    # The #20 columns are filled in live (one synthetic asset has no open interest, as on
    # the real data: its open-interest columns are NaN in batch too, checked above).
    assert live[SIDE_COLUMNS].notna().any().all(), live[SIDE_COLUMNS].isna().sum()
    assert live[SIDE_COLUMNS[2:]].notna().all().all(), live[SIDE_COLUMNS].isna().sum()
    # The unscheduled release enters only from its own close: hours since it jump to ~0.
    after = live.loc[live["ts"] + H >= release, "event_hours_since_last"]
    assert after.min() < 1.0
    before = live.loc[live["ts"] + H < release, "event_hours_since_last"]
    assert (before > 1.0).all()


def test_future_positioning_and_unreleased_events_change_no_live_row(
    market: MarketData, tmp_path: Path
) -> None:
    release = _unscheduled_release(market)
    start = release - 6 * H
    end = start + 12 * H
    without = market.events[market.events["release_utc"] != release]
    runs = []
    for name, positioning, events in (
        # What was known by the end of the run, and no trace of the unscheduled release...
        ("known", market.positioning[market.positioning["ts"] <= end], without),
        # ...against absurd future positioning and the release moved past the run's end.
        ("future", _perturbed_future(market.positioning, end), _moved_unscheduled(market)),
    ):
        store = MarketStore(tmp_path / name)
        store.write_table("positioning", positioning)
        store.write_table("events", events)
        runs.append(_live_rows(market, store, start, 12, IncrementalFeatures(keep=None)))
    _assert_same(runs[1], runs[0])


def _perturbed_future(positioning: pd.DataFrame, after: pd.Timestamp) -> pd.DataFrame:
    out = positioning.copy()
    future = out["ts"] > after
    assert future.any()
    for column in ("open_interest", "long_liquidations_usd", "short_liquidations_usd"):
        out.loc[future, column] = out.loc[future, column] * 1000.0 + 1.0
    return out


def _moved_unscheduled(market: MarketData) -> pd.DataFrame:
    """The calendar with its unscheduled release three days later, known from then only."""
    events = market.events.copy()
    release = _unscheduled_release(market)
    row = events["release_utc"] == release
    moved = release + pd.Timedelta(days=3)
    events.loc[row, "release_utc"] = moved
    events.loc[row, "known_from"] = moved
    return events


def test_known_at_cuts_positioning_at_the_close_and_events_at_known_from(
    market: MarketData,
) -> None:
    close = market.bars["ts"].min() + pd.Timedelta(days=50)
    positioning, events = known_at(market.positioning, market.events, close)
    assert (positioning["ts"] <= close).all() and len(positioning)
    assert (positioning["ts"] == close).any()  # the day's row known exactly at the close
    assert (events["known_from"] <= close).all()
    # Scheduled releases are known ahead, unscheduled ones only from their release.
    upcoming = events[events["release_utc"] > close]
    assert len(upcoming) and upcoming["scheduled"].all()
    unscheduled = market.events[~market.events["scheduled"]]
    for release in unscheduled["release_utc"]:
        _, before = known_at(empty_positioning(), market.events, release - H)
        _, after = known_at(empty_positioning(), market.events, release)
        assert release not in set(before.loc[~before["scheduled"], "release_utc"])
        assert release in set(after.loc[~after["scheduled"], "release_utc"])
    only = known_at(market.positioning, empty_events(), close, [market.assets[0]])[0]
    assert set(only["asset"].astype(str)) == {market.assets[0]}


def test_store_side_data_without_tables_gives_empty_frames(tmp_path: Path) -> None:
    positioning, events = StoreSideData(MarketStore(tmp_path)).as_of(pd.Timestamp.now("UTC"))
    assert positioning.empty and events.empty
    assert list(positioning.columns) == list(empty_positioning().columns)


def test_side_files_refuse_a_root_without_the_folders(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="positioning/ or events/"):
        SideFiles(tmp_path)


def test_live_rows_equal_batch_rows_on_the_real_files(shared_data: Path, tmp_path: Path) -> None:
    """Real BTC/ETH bars, positioning and calendar: the live rows equal the dump path's."""
    assets = ["BTCUSDT", "ETHUSDT"]
    market, _ = load_market(shared_data, "1h", assets, "2024-01-01", "2024-03-13")
    root = tmp_path / "data"
    root.mkdir()
    for folder in ("positioning", "events"):
        shutil.copytree(shared_data / folder, root / folder)
    files = SideFiles(root)
    start = pd.Timestamp("2024-03-11 18:00", tz="UTC")
    store = MarketStore(tmp_path / "store")
    live = _live_rows(market, store, start, 8, IncrementalFeatures(side=files))
    batch = _batch_rows(build_features(market).frame, live)
    _assert_same(live, batch)
    # BTC and ETH have open interest and liquidations; the calendar covers 2024.
    assert live[SIDE_COLUMNS].notna().all().all(), live[SIDE_COLUMNS].isna().sum()
    # A day appended to the files is picked up at the next read (no restart).
    before = files.as_of(pd.Timestamp("2030-01-01", tz="UTC"))[0]
    path = root / "positioning" / "liquidations_1d" / "BTCUSDT.csv.gz"
    raw = pd.read_csv(path)
    extra = raw.tail(1).copy()
    extra["ts"] = "2030-01-01 00:00:00+00:00"
    pd.concat([raw, extra]).to_csv(path, index=False, compression="gzip")
    after = files.as_of(pd.Timestamp("2030-01-02", tz="UTC"))[0]
    assert len(after) == len(before) + 1
    assert np.isfinite(after["long_liquidations_usd"].iloc[-1])
