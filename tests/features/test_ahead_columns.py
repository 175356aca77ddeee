"""Information that arrives ahead: the calendar's scheduled/unscheduled rule, positioning
known only at its day's close, and the shared folders read in place."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from features.build import build_features
from features.macro_calendar import SCHEDULE_LEAD, read_macro_calendar
from features.market import EVENT_COLUMNS, MarketData
from features.positioning import read_positioning
from tests.features.test_no_lookahead import START, STEP, random_market


def _calendar(*rows: tuple[str, pd.Timestamp, bool, pd.Timestamp, object]) -> pd.DataFrame:
    frame = pd.DataFrame(list(rows), columns=list(EVENT_COLUMNS))
    for column in ("release_utc", "known_from", "known_until"):
        frame[column] = pd.to_datetime(frame[column], utc=True).astype("datetime64[ns, UTC]")
    frame["event"] = frame["event"].astype("string")
    return frame


def _btc_rows(market: MarketData, events: pd.DataFrame) -> pd.DataFrame:
    built = build_features(MarketData(**{**vars(market), "events": events})).frame
    rows = built[built["asset"] == "BTCUSDT"].reset_index(drop=True)
    rows["close"] = rows["ts"] + STEP
    return rows


@pytest.fixture(scope="module")
def market() -> MarketData:
    return random_market(5, n_bars=400, n_assets=2)


def test_a_scheduled_release_is_seen_ahead_an_unscheduled_one_only_from_its_release(
    market: MarketData,
) -> None:
    early, late = START - pd.Timedelta(days=20), START + pd.Timedelta(days=40)
    scheduled_at = START + 200 * STEP + pd.Timedelta(minutes=30)
    surprise_at = START + 260 * STEP
    base = [
        ("cpi", early, True, early - SCHEDULE_LEAD, None),
        ("cpi", late, True, late - SCHEDULE_LEAD, None),
    ]
    planned = ("fomc", scheduled_at, True, scheduled_at - SCHEDULE_LEAD, None)
    without = _btc_rows(market, _calendar(*base))
    scheduled_only = _btc_rows(market, _calendar(*base, planned))
    with_both = _btc_rows(
        market, _calendar(*base, planned, ("fomc", surprise_at, False, surprise_at, None))
    )
    # The scheduled decision is counted down 24 hours ahead.
    before = with_both["close"] == scheduled_at - pd.Timedelta(hours=10, minutes=30)
    assert with_both.loc[before, "event_hours_to_next"].item() == pytest.approx(10.5)
    assert with_both.loc[before, "fomc_next_24h"].item() == 1.0
    assert without.loc[before, "fomc_next_24h"].item() == 0.0
    # The unscheduled one changes nothing before its release ...
    prior = (with_both["close"] < surprise_at) & (with_both["close"] > scheduled_at)
    columns = ["event_hours_to_next", "event_next_24h", "fomc_next_24h", "event_hours_since_last"]
    pd.testing.assert_frame_equal(with_both.loc[prior, columns], scheduled_only.loc[prior, columns])
    assert (with_both.loc[prior, "fomc_next_24h"] == 0).all()
    # ... and is a past release from its release on.
    at = with_both["close"] == surprise_at
    assert with_both.loc[at, "event_hours_since_last"].item() == 0.0
    assert scheduled_only.loc[at, "event_hours_since_last"].item() > 0.0


def test_a_cancelled_release_is_expected_only_until_its_cancellation_is_known(
    market: MarketData,
) -> None:
    early, late = START - pd.Timedelta(days=20), START + pd.Timedelta(days=40)
    planned = START + 300 * STEP
    withdrawn = planned - pd.Timedelta(hours=12)
    rows = _btc_rows(
        market,
        _calendar(
            ("cpi", early, True, early - SCHEDULE_LEAD, None),
            ("cpi", late, True, late - SCHEDULE_LEAD, None),
            ("fomc", planned, True, planned - SCHEDULE_LEAD, withdrawn),
        ),
    )
    counted = rows.set_index("close")["fomc_next_24h"]
    assert counted[withdrawn - pd.Timedelta(hours=1)] == 1.0
    assert counted[withdrawn] == 0.0
    # It never becomes a past release.
    assert rows.set_index("close")["event_hours_since_last"][planned] > 0.0


def test_without_a_calendar_the_event_columns_are_missing(market: MarketData) -> None:
    rows = _btc_rows(market, market.events.iloc[0:0])
    assert rows[["event_hours_to_next", "event_next_24h"]].isna().all().all()


def test_a_daily_positioning_value_is_used_only_from_its_days_close(market: MarketData) -> None:
    positioning = market.positioning
    day_close = START + pd.Timedelta(days=8)
    changed = positioning.copy()
    hit = (changed["ts"] == day_close) & (changed["asset"] == "BTCUSDT")
    assert hit.sum() == 1
    changed.loc[hit, ["open_interest", "long_liquidations_usd"]] *= 3.0
    base = build_features(market).frame
    other = build_features(MarketData(**{**vars(market), "positioning": changed})).frame
    btc = (base["asset"] == "BTCUSDT").to_numpy()
    close = base["ts"] + STEP
    columns = ["oi_growth_1d", "oi_growth_7d", "liq_log_1d", "liq_surprise_30d"]
    before = btc & (close < day_close).to_numpy()
    np.testing.assert_array_equal(base.loc[before, columns], other.loc[before, columns])
    at = btc & (close == day_close).to_numpy()
    assert (base.loc[at, columns].to_numpy() != other.loc[at, columns].to_numpy()).all()


def _write_gz(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with gzip.open(path, "wt") as handle:
        handle.write(text)


def test_positioning_files_are_restamped_at_the_days_close_and_never_filled(
    tmp_path: Path,
) -> None:
    root = tmp_path / "data"
    _write_gz(
        root / "positioning/open_interest_1d/BTCUSDT.csv.gz",
        "ts,open_interest\n2024-01-01 00:00:00+00:00,100\n2024-01-02 00:00:00+00:00,0\n",
    )
    _write_gz(
        root / "positioning/liquidations_1d/BTCUSDT.csv.gz",
        "ts,long_liquidations_usd,short_liquidations_usd\n"
        "2021-04-26 00:00:00+00:00,9,9\n2024-01-01 00:00:00+00:00,5,6\n",
    )
    _write_gz(
        root / "positioning/liquidations_1d/SOLUSDT.csv.gz",
        "ts,long_liquidations_usd,short_liquidations_usd\n2024-01-01 00:00:00+00:00,1,2\n",
    )
    frame = read_positioning(root, ["BTCUSDT", "SOLUSDT"])
    btc = frame[frame["asset"] == "BTCUSDT"].set_index("ts")
    day_close = pd.Timestamp("2024-01-02", tz="UTC")
    assert list(btc.index) == [day_close]  # the zero OI day and the pre-break day are dropped
    assert btc.loc[day_close, "open_interest"] == 100.0
    sol = frame[frame["asset"] == "SOLUSDT"]
    assert sol["open_interest"].isna().all() and sol["ts"].tolist() == [day_close]
    assert read_positioning(tmp_path / "nothing-here").empty


@pytest.mark.shared_data
def test_the_shared_calendar_keeps_unscheduled_releases_unknown_until_they_happen(
    shared_data: Path,
) -> None:
    calendar = read_macro_calendar(shared_data)
    unscheduled = calendar[~calendar["scheduled"]]
    assert len(unscheduled) == 3
    assert (unscheduled["known_from"] == unscheduled["release_utc"]).all()
    scheduled = calendar[calendar["scheduled"]]
    assert (scheduled["known_from"] < scheduled["release_utc"]).all()
    # The cancelled March 2020 meeting was expected, then withdrawn, never a release.
    cancelled = calendar[calendar["release_utc"] == pd.Timestamp("2020-03-18 18:00", tz="UTC")]
    assert len(cancelled) == 1 and cancelled["known_until"].notna().all()
    positioning = read_positioning(shared_data, ["BTCUSDT", "SOLUSDT"])
    assert positioning.loc[positioning["asset"] == "SOLUSDT", "open_interest"].isna().all()
    assert (positioning["ts"].dt.hour == 0).all()
