"""Validation rules: schema, time zone, ordering, duplicates, gaps, row sanity, spikes."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from features.bars import REQUIRED_COLUMNS, empty_bars
from features.errors import ConflictingDuplicateError, DataValidationError
from features.validation import (
    Gap,
    find_gaps,
    robust_zscores,
    validate_bars,
    validate_funding,
)


def make_bars(n: int = 48, asset: str = "BTCUSDT", start: str = "2024-01-01") -> pd.DataFrame:
    """A valid hourly Bars frame with a gentle random walk."""
    rng = np.random.default_rng(0)
    close = 100 * np.exp(np.cumsum(rng.normal(0, 0.01, n)))
    open_ = np.r_[100.0, close[:-1]]
    return pd.DataFrame(
        {
            "ts": pd.date_range(start, periods=n, freq="1h", tz="UTC"),
            "asset": asset,
            "open": open_,
            "high": np.maximum(open_, close) * 1.002,
            "low": np.minimum(open_, close) * 0.998,
            "close": close,
            "volume": 10.0,
            "quote_volume": 10.0 * close,
            "trades": 50,
            "taker_buy_volume": 4.0,
            "taker_buy_quote_volume": 4.0 * close,
        }
    )


def test_valid_bars_pass_through_unchanged() -> None:
    bars = make_bars()
    clean, report = validate_bars(bars, "1h")
    pd.testing.assert_frame_equal(clean, bars.astype({"asset": "string"}), check_dtype=False)
    series = report.get("BTCUSDT")
    assert (series.rows, series.quarantined, series.duplicates_dropped) == (48, 0, 0)
    assert series.first == bars["ts"].iloc[0] and series.last == bars["ts"].iloc[-1]
    assert clean["trades"].dtype == np.int64
    assert list(clean.columns) == list(REQUIRED_COLUMNS)


def test_missing_column_is_a_schema_error() -> None:
    with pytest.raises(DataValidationError, match="taker_buy_volume"):
        validate_bars(make_bars().drop(columns="taker_buy_volume"), "1h", "feed.csv")


def test_naive_timestamps_are_rejected_with_advice() -> None:
    bars = make_bars()
    bars["ts"] = bars["ts"].dt.tz_localize(None)
    with pytest.raises(DataValidationError, match=r"timezone-naive.*tz_localize"):
        validate_bars(bars, "1h", "feed.csv")


def test_other_time_zones_are_converted_to_utc() -> None:
    bars = make_bars()
    bars["ts"] = bars["ts"].dt.tz_convert("Asia/Tokyo")
    clean, _ = validate_bars(bars, "1h")
    assert str(clean["ts"].dt.tz) == "UTC"
    assert clean["ts"].iloc[0] == pd.Timestamp("2024-01-01", tz="UTC")


def test_reversed_rows_are_sorted_and_counted() -> None:
    bars = make_bars(10)
    clean, report = validate_bars(bars.iloc[::-1], "1h")
    assert clean["ts"].is_monotonic_increasing
    assert report.get("BTCUSDT").reordered == 9


def test_identical_duplicates_are_dropped_and_counted() -> None:
    bars = make_bars(10)
    clean, report = validate_bars(pd.concat([bars, bars.iloc[[3, 5]]]), "1h")
    assert len(clean) == 10
    assert report.get("BTCUSDT").duplicates_dropped == 2


def test_conflicting_duplicates_raise_naming_asset_time_and_rows() -> None:
    bars = make_bars(10)
    other = bars.iloc[[4]].copy()
    other["close"] *= 1.01
    other["high"] *= 1.01
    with pytest.raises(ConflictingDuplicateError) as info:
        validate_bars(pd.concat([bars, other]), "1h", "feed.csv")
    message = str(info.value)
    assert "BTCUSDT" in message and "2024-01-01 04:00:00" in message
    assert "close" in message and "feed.csv" in message
    assert info.value.columns == ["high", "close"]


def test_gaps_are_reported_not_filled() -> None:
    bars = make_bars(24).drop(index=[5, 6, 7, 20])
    clean, report = validate_bars(bars, "1h")
    assert len(clean) == 20
    assert report.get("BTCUSDT").gaps == [
        Gap(
            pd.Timestamp("2024-01-01 05:00", tz="UTC"),
            pd.Timestamp("2024-01-01 07:00", tz="UTC"),
            3,
        ),
        Gap(
            pd.Timestamp("2024-01-01 20:00", tz="UTC"),
            pd.Timestamp("2024-01-01 20:00", tz="UTC"),
            1,
        ),
    ]
    assert report.get("BTCUSDT").missing_bars == 4


@pytest.mark.parametrize(
    ("column", "value", "reason"),
    [
        ("close", np.nan, "non-finite close"),
        ("open", -1.0, "non-positive open"),
        ("high", 1.0, "OHLC inconsistent"),
        ("volume", -5.0, "negative volume"),
        ("taker_buy_volume", 11.0, "taker_buy_volume > volume"),
        ("trades", np.nan, "missing trades"),
    ],
)
def test_bad_rows_are_quarantined_with_a_reason(column: str, value: float, reason: str) -> None:
    bars = make_bars(10)
    bars[column] = bars[column].astype("float64")
    bars.loc[4, column] = value
    clean, report = validate_bars(bars, "1h", "feed.csv")
    assert len(clean) == 9
    quarantined = report.quarantine
    assert len(quarantined) == 1
    assert reason in quarantined["reason"].iloc[0]
    assert quarantined["source_file"].iloc[0] == "feed.csv"
    assert quarantined["source_row"].iloc[0] == 5
    assert report.get("BTCUSDT").quarantined == 1
    assert report.get("BTCUSDT").gaps[0].missing == 1  # the hole is visible, not filled


def test_off_grid_timestamps_are_quarantined() -> None:
    bars = make_bars(5)
    bars.loc[2, "ts"] = bars.loc[2, "ts"] + pd.Timedelta(minutes=28)
    clean, report = validate_bars(bars, "1h")
    assert len(clean) == 4
    assert "not on the 1h grid" in report.quarantine["reason"].iloc[0]


def test_flow_columns_may_be_unknown_when_allowed() -> None:
    bars = make_bars(5)
    for column in ("quote_volume", "trades", "taker_buy_volume", "taker_buy_quote_volume"):
        bars[column] = np.nan
    clean, report = validate_bars(bars, "1h", dataset="perp", flow_optional=True)
    assert len(clean) == 5 and report.get("BTCUSDT", "perp").quarantined == 0
    assert clean["trades"].isna().all()


def test_return_spikes_are_flagged_and_kept() -> None:
    bars = make_bars(200)
    bars.loc[150, ["close", "high"]] = bars.loc[150, "close"] * 1.5
    bars.loc[151, ["open", "high"]] = bars.loc[150, "close"]
    bars.loc[151, "low"] = min(bars.loc[151, "open"], bars.loc[151, "close"]) * 0.99
    clean, report = validate_bars(bars, "1h")
    assert len(clean) == 200
    spikes = report.get("BTCUSDT").spikes
    assert [s.ts for s in spikes][:1] == [bars.loc[150, "ts"]]
    assert spikes[0].zscore > 12


def test_robust_zscores_are_standard_for_gaussian_data() -> None:
    z = robust_zscores(np.random.default_rng(1).normal(5.0, 2.0, 20_000))
    assert np.nanstd(z) == pytest.approx(1.0, abs=0.05)
    assert np.isnan(robust_zscores(np.ones(10))).all()


def test_empty_frames_validate_to_empty() -> None:
    clean, report = validate_bars(empty_bars(), "1h")
    assert clean.empty and report.series == {} and report.ok


def test_funding_validation_quarantines_non_finite_rates() -> None:
    funding = pd.DataFrame(
        {
            "ts": pd.date_range("2024-01-01", periods=4, freq="8h", tz="UTC"),
            "asset": "BTCUSDT",
            "funding_rate": [0.0001, np.nan, -0.0002, 0.0001],
        }
    )
    clean, report = validate_funding(funding, "f.csv")
    assert len(clean) == 3
    assert report.get("BTCUSDT", "funding").quarantined == 1
    assert "non-finite rate" in report.quarantine["reason"].iloc[0]


@settings(max_examples=40, deadline=None)
@given(
    order=st.permutations(list(range(30))),
    repeats=st.lists(st.integers(0, 29), max_size=10),
    dropped=st.sets(st.integers(1, 28), max_size=8),
)
def test_shuffles_and_repeats_never_change_the_clean_series(
    order: list[int], repeats: list[int], dropped: set[int]
) -> None:
    """Invariant: clean output depends only on the set of distinct valid rows."""
    bars = make_bars(30)
    kept = bars.drop(index=sorted(dropped))
    messy = pd.concat([bars.iloc[order], bars.iloc[repeats]]).drop(index=sorted(dropped))
    clean, report = validate_bars(messy, "1h")
    expected, _ = validate_bars(kept, "1h")
    pd.testing.assert_frame_equal(clean, expected)
    series = report.get("BTCUSDT")
    assert series.missing_bars == len(dropped)
    assert series.duplicates_dropped == sum(1 for r in repeats if r not in dropped)
    assert len(clean) + series.duplicates_dropped == len(messy)


@given(st.lists(st.integers(0, 500), min_size=2, max_size=60, unique=True))
def test_find_gaps_accounts_for_every_missing_bar(hours: list[int]) -> None:
    hours = sorted(hours)
    ts = pd.DatetimeIndex(pd.Timestamp("2024-01-01", tz="UTC") + pd.to_timedelta(hours, "h"))
    gaps = find_gaps(ts, pd.Timedelta("1h"))
    assert sum(g.missing for g in gaps) == hours[-1] - hours[0] + 1 - len(hours)
    assert all(g.start <= g.end for g in gaps)
    assert not set(ts) & {g.start for g in gaps}


CORRUPTIONS = {
    "nan close": ("close", np.nan),
    "negative open": ("open", -1.0),
    "zero low": ("low", 0.0),
    "huge taker": ("taker_buy_volume", 1e9),
    "negative volume": ("volume", -1.0),
}


@settings(max_examples=40, deadline=None)
@given(hits=st.dictionaries(st.integers(0, 59), st.sampled_from(sorted(CORRUPTIONS)), max_size=15))
def test_corrupted_rows_are_quarantined_and_nothing_valid_is_lost(hits: dict[int, str]) -> None:
    """Invariant: clean = exactly the untouched rows; quarantine = exactly the touched ones."""
    bars = pd.concat([make_bars(30, "BTCUSDT"), make_bars(30, "ETHUSDT")], ignore_index=True)
    broken = bars.copy()
    for row, kind in hits.items():
        column, value = CORRUPTIONS[kind]
        broken.loc[row, column] = value
    clean, report = validate_bars(broken, "1h")
    expected = bars.drop(index=list(hits)).astype({"asset": "string"})
    pd.testing.assert_frame_equal(clean, expected.reset_index(drop=True), check_dtype=False)
    assert sorted(report.quarantine["source_row"]) == sorted(r + 1 for r in hits)
    assert len(clean) + len(report.quarantine) == len(bars)


def test_assets_arriving_in_any_order_come_out_sorted() -> None:
    mixed = pd.concat([make_bars(3, "ETHUSDT"), make_bars(3, "BTCUSDT")])
    clean, report = validate_bars(mixed, "1h")
    assert clean["asset"].tolist() == ["BTCUSDT"] * 3 + ["ETHUSDT"] * 3
    assert report.get("ETHUSDT").reordered == 0  # each asset was in time order


def test_rows_without_an_asset_are_quarantined() -> None:
    bars = make_bars(5)
    bars["asset"] = bars["asset"].astype(object)
    bars.loc[2, "asset"] = None
    clean, report = validate_bars(bars, "1h")
    assert len(clean) == 4
    assert report.quarantine["reason"].tolist() == ["missing asset"]


def test_write_quarantine_is_idempotent_and_keeps_the_reason(tmp_path) -> None:
    bars = make_bars(6)
    bars.loc[1, "close"] = np.nan
    _, report = validate_bars(bars, "1h", "feed.csv")
    first = report.write_quarantine(tmp_path)
    second = report.write_quarantine(tmp_path)
    assert first == second and list(tmp_path.iterdir()) == [first]
    written = pd.read_csv(first)
    assert written.loc[0, "reason"].startswith("non-finite close")
    assert written.loc[0, "source_file"] == "feed.csv"
    _, clean_report = validate_bars(make_bars(6), "1h")
    assert clean_report.write_quarantine(tmp_path / "none") is None
