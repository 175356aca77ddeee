"""Forward realized-variance targets: definition, missing-data rule, no look-back."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from models.targets import TargetError, forward_targets


def _returns(values: list[float], asset: str = "BTC") -> pd.DataFrame:
    ts = pd.date_range("2024-01-01", periods=len(values), freq="1h", tz="UTC")
    return pd.DataFrame({"ts": ts, "asset": asset, "ret": values})


def test_forward_rv_sums_the_next_h_squared_returns() -> None:
    out = forward_targets(_returns([0.5, 0.1, -0.2, 0.3, 0.0]), horizon=2)
    np.testing.assert_allclose(out["rv_fwd"].to_numpy()[:3], [0.05, 0.13, 0.09])
    np.testing.assert_allclose(out["ret_fwd"].to_numpy()[:3], [-0.1, 0.1, 0.3])
    assert out["rv_fwd"].iloc[3:].isna().all()
    np.testing.assert_allclose(out["log_rv_fwd"].iloc[0], np.log(0.05))


def test_a_missing_return_voids_every_window_that_contains_it() -> None:
    out = forward_targets(_returns([0.1, 0.1, np.nan, 0.1, 0.1, 0.1, 0.1]), horizon=2)
    # Rows 0 and 1 cover bar 2 (NaN); row 2 covers bars 3..4 and is fine.
    assert out["rv_fwd"].iloc[:2].isna().all()
    assert out["rv_fwd"].iloc[2] == pytest.approx(0.02)


def test_assets_do_not_mix() -> None:
    frame = pd.concat([_returns([0.1] * 4, "A"), _returns([1.0] * 4, "B")])
    out = forward_targets(frame, horizon=2)
    assert out.loc[out["asset"] == "A", "rv_fwd"].dropna().tolist() == pytest.approx([0.02, 0.02])
    assert out.loc[out["asset"] == "B", "rv_fwd"].dropna().tolist() == pytest.approx([2.0, 2.0])


def test_an_incomplete_grid_is_rejected_with_the_asset_and_time() -> None:
    frame = _returns([0.1] * 5).drop(index=2)
    with pytest.raises(TargetError, match=r"asset BTC.*2024-01-01 03:00"):
        forward_targets(frame, horizon=2)


@settings(max_examples=40, deadline=None)
@given(
    st.lists(st.floats(-0.1, 0.1, allow_nan=False), min_size=30, max_size=60),
    st.integers(1, 8),
    st.integers(0, 29),
)
def test_changing_the_past_never_changes_a_later_target(
    values: list[float], horizon: int, cut: int
) -> None:
    # rv_fwd(t) depends on returns t+1..t+H only: editing returns <= t leaves it unchanged.
    base = forward_targets(_returns(values), horizon=horizon)
    edited = list(values)
    edited[: cut + 1] = [v * 3 + 0.05 for v in edited[: cut + 1]]
    changed = forward_targets(_returns(edited), horizon=horizon)
    np.testing.assert_array_equal(base["rv_fwd"].iloc[cut:], changed["rv_fwd"].iloc[cut:])
