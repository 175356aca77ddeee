"""The walk-forward splitter: folds, purge, embargo, rolling windows, purged holdout."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from models.splitter import SplitError, WalkForwardSplitter

HOUR = pd.Timedelta("1h")


def _grid(start: str = "2024-01-01", end: str = "2024-10-01", assets: int = 2) -> pd.Series:
    ts = pd.date_range(start, end, freq="1h", tz="UTC", inclusive="left")
    return pd.Series(np.tile(ts, assets))


def test_monthly_folds_cover_the_test_period_without_overlap() -> None:
    folds = WalkForwardSplitter("2024-07-01", "2024-09-15").folds()
    assert [(f.test_start.day, f.test_end.month, f.test_end.day) for f in folds] == [
        (1, 8, 1),
        (1, 9, 1),
        (1, 9, 15),
    ]


@settings(max_examples=30, deadline=None)
@given(st.integers(1, 72), st.integers(0, 48))
def test_purge_removes_every_training_row_whose_target_overlaps_the_test_block(
    horizon: int, embargo: int
) -> None:
    ts = _grid()
    splitter = WalkForwardSplitter("2024-07-01", "2024-09-01", horizon=horizon, embargo=embargo)
    for fold, (train, test) in zip(splitter.folds(), splitter.split(ts), strict=True):
        train_ts = pd.DatetimeIndex(ts.iloc[train])
        test_ts = pd.DatetimeIndex(ts.iloc[test])
        # Target of row t ends with bar t+H; the first test forecast is made at the close
        # of bar test_start, so every training target must end at or before it.
        assert (train_ts + horizon * HOUR <= test_ts.min()).all()
        # ... and nothing beyond the purge and embargo is thrown away.
        latest = fold.test_start - (horizon + embargo) * HOUR
        assert train_ts.max() == latest
        assert test_ts.min() == fold.test_start and test_ts.max() < fold.test_end


def test_rolling_window_keeps_only_the_last_days() -> None:
    ts = _grid()
    splitter = WalkForwardSplitter("2024-07-01", "2024-08-01", window="rolling", train_days=30)
    train, _ = next(splitter.split(ts))
    span = pd.DatetimeIndex(ts.iloc[train])
    assert span.max() - span.min() < pd.Timedelta(days=30)


def test_purged_holdout_separates_fit_and_validation_by_the_horizon() -> None:
    ts = _grid("2024-01-01", "2024-03-01", assets=3)
    fit, val = WalkForwardSplitter("2024-07-01", "2024-08-01", horizon=24).holdout(ts, 0.2)
    assert pd.DatetimeIndex(ts.iloc[fit]).max() + 24 * HOUR <= ts.iloc[val].min()
    assert len(set(fit) & set(val)) == 0


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"purge": 5}, "shorter than the horizon"),
        ({"window": "rolling"}, "train_days"),
        ({"refit": "every-month"}, "offset alias"),
        ({"embargo": -1}, "embargo"),
    ],
)
def test_bad_configurations_fail_with_a_reason(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(SplitError, match=message):
        WalkForwardSplitter("2024-07-01", "2024-08-01", **kwargs)  # type: ignore[arg-type]


def test_naive_times_are_rejected() -> None:
    splitter = WalkForwardSplitter("2024-07-01", "2024-08-01")
    naive = pd.Series(pd.date_range("2024-01-01", periods=10, freq="1h"))
    with pytest.raises(SplitError, match="tz-aware"):
        next(splitter.split(naive))
