"""Acceptance on the real shared data: ingest all of ``../shared/data/binance`` once.

One module-scoped store holds the full ingest (1h + 2h + funding, ~660k rows, a few
seconds); every test reads from it.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from features.sources import load_market
from features.store import MarketStore

pytestmark = pytest.mark.slow

UTC = "UTC"
OUTAGE = pd.Timestamp("2023-03-24 13:00", tz=UTC)


@pytest.fixture(scope="module")
def full_store(shared_data: Path, tmp_path_factory: pytest.TempPathFactory) -> MarketStore:
    store = MarketStore(tmp_path_factory.mktemp("real") / "store")
    result = store.ingest_dump(shared_data, intervals=["1h", "2h"])
    assert result.report.ok, result.report.file_problems
    assert result.files_read == 1600
    assert result.report.unverified_files == []  # every zip has a matching .CHECKSUM
    return store


@pytest.fixture(scope="module")
def summary(full_store: MarketStore) -> pd.DataFrame:
    return full_store.summary().set_index(["dataset", "interval", "asset"])


def test_btc_hourly_first_and_last_bar(summary: pd.DataFrame) -> None:
    btc = summary.loc[("bars", "1h", "BTCUSDT")]
    assert btc["first"] == pd.Timestamp("2017-08-17 04:00", tz=UTC)
    assert btc["last"] == pd.Timestamp("2025-06-30 23:00", tz=UTC)


def test_btc_march_2020_low(full_store: MarketStore) -> None:
    bars = full_store.read_bars("1h", ["BTCUSDT"], "2020-03-12", "2020-03-14")
    lowest = bars.loc[bars["low"].idxmin()]
    assert lowest["low"] == 3782.13
    assert lowest["ts"] == pd.Timestamp("2020-03-13 02:00", tz=UTC)


def test_btc_hourly_gaps_are_reported_not_filled(
    summary: pd.DataFrame, full_store: MarketStore
) -> None:
    btc = summary.loc[("bars", "1h", "BTCUSDT")]
    assert (btc["gaps"], btc["missing_bars"]) == (28, 170)
    bars = full_store.read_bars("1h", ["BTCUSDT"])
    span_hours = (bars["ts"].iloc[-1] - bars["ts"].iloc[0]) / pd.Timedelta("1h") + 1
    assert len(bars) == span_hours - 170  # nothing was filled in
    # The longest outage: 75 missing hours after the bar of 2018-02-08 00:00.
    around = bars[bars["ts"].between("2018-02-07", "2018-02-12")]["ts"]
    jumps = around.diff().dropna()
    assert jumps.max() == pd.Timedelta(hours=76)
    assert around.iloc[int(jumps.argmax())] == pd.Timestamp("2018-02-08 00:00", tz=UTC)


def test_outage_bar_is_missing_in_every_hourly_series(full_store: MarketStore) -> None:
    assets = full_store.assets("bars", "1h")
    assert len(assets) == 10
    window = full_store.read_bars("1h", None, "2023-03-24 12:00", "2023-03-24 15:00")
    for asset in assets:
        hours = window.loc[window["asset"] == asset, "ts"].tolist()
        assert OUTAGE not in hours, asset
        assert hours == [OUTAGE - pd.Timedelta("1h"), OUTAGE + pd.Timedelta("1h")], asset


def test_two_hour_series_report_their_outages(summary: pd.DataFrame) -> None:
    two_hour = summary.loc["bars"].loc["2h"]
    assert len(two_hour) == 10
    assert two_hour["gaps"].between(4, 18).all()


def test_microsecond_months_join_the_millisecond_months_seamlessly(
    full_store: MarketStore,
) -> None:
    bars = full_store.read_bars("1h", ["BTCUSDT"], "2024-12-31 20:00", "2025-01-01 04:00")
    assert bars["ts"].tolist() == list(
        pd.date_range("2024-12-31 20:00", "2025-01-01 03:00", freq="1h", tz=UTC)
    )
    recent = full_store.read_bars("1h", ["ETHUSDT"], "2025-01-01")
    assert recent["ts"].min() == pd.Timestamp("2025-01-01", tz=UTC)
    assert recent["ts"].max() == pd.Timestamp("2025-06-30 23:00", tz=UTC)
    assert (recent["ts"].dt.minute == 0).all()


def test_funding_is_ingested_for_every_perp(summary: pd.DataFrame) -> None:
    funding = summary.loc["funding"].loc[""]
    assert set(funding.index) == {
        "BTCUSDT",
        "ETHUSDT",
        "XRPUSDT",
        "ADAUSDT",
        "LTCUSDT",
        "SOLUSDT",
        "DOGEUSDT",
    }
    assert funding.loc["BTCUSDT", "first"] == pd.Timestamp("2019-09-10 08:00", tz=UTC)


def test_reingest_is_a_no_op(full_store: MarketStore, shared_data: Path) -> None:
    again = full_store.ingest_dump(shared_data / "binance", intervals=["1h", "2h"])
    assert (again.files_read, again.files_skipped, again.rows_added) == (0, 1600, 0)


def test_store_and_direct_load_agree(full_store: MarketStore, shared_data: Path) -> None:
    direct, report = load_market(shared_data, "1h", ["BTCUSDT", "SOLUSDT"], "2024-01-01")
    stored = full_store.read_market("1h", ["BTCUSDT", "SOLUSDT"], "2024-01-01")
    pd.testing.assert_frame_equal(direct.bars, stored.bars)
    pd.testing.assert_frame_equal(direct.funding, stored.funding)
    assert report.get("BTCUSDT", "perp").rows == len(direct.perp[direct.perp["asset"] == "BTCUSDT"])
