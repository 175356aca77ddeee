"""Leakage: planted look-ahead is caught, the real pipeline passes, the future is inert."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from features.build import build_features
from features.market import MarketData
from models.factory import build_forecaster
from models.leakage import LeakageError, check_no_lookahead
from models.spec import named_spec
from models.splitter import WalkForwardSplitter
from models.targets import forward_targets
from models.walkforward import walk_forward_predict


def _features_with_planted_leak(market: MarketData) -> pd.DataFrame:
    frame = build_features(market).frame.sort_values(["asset", "ts"]).reset_index(drop=True)
    # Tomorrow's realized variance: exactly the kind of bug that makes a model look great.
    frame["leak"] = frame.groupby("asset")["rv_24h"].shift(-24)
    return frame


def test_a_planted_future_feature_is_caught(synthetic_market: MarketData) -> None:
    report = check_no_lookahead(_features_with_planted_leak, synthetic_market, cutoffs=2)
    assert not report.passed
    assert list(report.leaky_columns) == ["leak"]
    with pytest.raises(LeakageError, match="leak"):
        report.raise_if_leaky()


def test_the_feature_builder_passes(synthetic_market: MarketData) -> None:
    report = check_no_lookahead(lambda m: build_features(m).frame, synthetic_market, cutoffs=2)
    assert report.passed, report.leaky_columns
    assert report.rows_checked > 0


def test_truncating_the_future_also_passes_for_targets_only_after_their_window() -> None:
    ts = pd.date_range("2024-01-01", periods=300, freq="1h", tz="UTC")
    rng = np.random.default_rng(0)
    returns = pd.DataFrame({"ts": ts, "asset": "A", "ret": rng.normal(0, 0.01, 300)})

    def known_targets(frame: pd.DataFrame) -> pd.DataFrame:
        out = forward_targets(frame, horizon=24)
        # A target becomes known at its window's end: re-stamp it there.
        out["ts"] = out["ts"] + pd.Timedelta(hours=24)
        return out

    report = check_no_lookahead(known_targets, returns, cutoffs=3, perturbation="truncate")
    assert report.passed, report.leaky_columns
    raw = check_no_lookahead(lambda f: forward_targets(f, 24), returns, cutoffs=2)
    assert "rv_fwd" in raw.leaky_columns  # un-restamped targets ARE future data


def test_shuffling_the_future_changes_no_past_walk_forward_forecast(
    synthetic_features: pd.DataFrame,
) -> None:
    splitter = WalkForwardSplitter("2024-04-01", "2024-08-01")

    def forecasts(frame: pd.DataFrame) -> pd.DataFrame:
        panel = frame.sort_values(["asset", "ts"]).reset_index(drop=True)
        returns = panel[["ts", "asset", "ret_1h"]].rename(columns={"ret_1h": "ret"})
        targets = forward_targets(returns, horizon=24)
        panel["rv_fwd"] = targets["rv_fwd"].to_numpy()
        panel["ret_fwd"] = targets["ret_fwd"].to_numpy()
        out = []
        for kind in ("har", "garch"):
            forecaster = build_forecaster(named_spec(kind), "1h")
            preds, _ = walk_forward_predict(panel, forecaster, splitter, 120, lambda _m: None, kind)
            out.append(preds[["ts", "asset", "variance"]].rename(columns={"variance": kind}))
        return out[0].merge(out[1], on=["ts", "asset"])

    # Cut inside the test period: forecasts up to the cut must not move.
    report = check_no_lookahead(forecasts, synthetic_features, cutoffs=["2024-05-10", "2024-06-20"])
    assert report.passed, report.leaky_columns
    assert report.rows_checked > 1000
