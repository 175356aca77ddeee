"""A snapshot stream read by the replay gives, bar by bar, the Engine's own target multiplier."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from liquidation.engine import Engine
from liquidation.errors import SnapshotValidationError
from liquidation.snapshot_stream import multipliers_from_snapshots
from tests.liquidation.liq_builders import HOUR_MS, iso, simple_config, snapshot

BTC = "BTCUSDT"
CONFIG = simple_config((BTC,))
ASSET = CONFIG.asset(BTC)


def _published(asset: str, update_id: int, multiplier: float, at_ms: int, **kw: object) -> dict:
    doc = snapshot(asset, update_id, multiplier, as_of_ms=at_ms - HOUR_MS, **kw)
    doc["published_at"] = iso(at_ms)
    return doc


def _engine_targets(stream: list[dict], bars: np.ndarray) -> list[float]:
    """The engine's target at each bar open, applying the stream at its publication times."""
    engine = Engine(CONFIG)
    timed = sorted(
        (
            (int(np.datetime64(s["published_at"].rstrip("Z"), "ms").astype(np.int64)), i, s)
            for i, s in enumerate(stream)
        ),
        key=lambda x: (x[0], x[2]["update_id"]),
    )
    out, k = [], 0
    for now in bars.tolist():
        while k < len(timed) and timed[k][0] <= now:
            at, _, doc = timed[k]
            k += 1
            try:
                engine.apply_snapshot(doc, ts=at)
            except SnapshotValidationError:
                pass  # the engine refuses it; the stream must refuse it too
        out.append(engine.view(now).assets[BTC].target)
    return out


snapshots_drawn = st.lists(
    st.tuples(
        st.integers(0, 47),  # publication hour
        st.integers(0, 59),  # minute
        st.integers(-2, 3),  # update_id step (<= 0: out of order)
        st.sampled_from([0.6, 0.8, 1.0, 1.3, 2.2, 3.5, 6.0]),  # 6.0 is out of bounds
        st.sampled_from(["ok", "ok", "ok", "fallback", "stale", "halted"]),
        st.sampled_from([HOUR_MS // 2, 2 * HOUR_MS, 3 * HOUR_MS]),  # validity
    ),
    max_size=30,
)


@settings(max_examples=60, deadline=None)
@given(drawn=snapshots_drawn)
def test_stream_targets_equal_the_engines_at_every_bar(drawn: list[tuple]) -> None:
    stream, update_id = [], 0
    for hour, minute, step, multiplier, status, valid in sorted(drawn, key=lambda d: d[:2]):
        update_id = max(update_id + step, 0)
        at = hour * HOUR_MS + minute * 60_000 + HOUR_MS
        doc = _published(BTC, update_id, multiplier, at, status=status, valid_ms=valid + HOUR_MS)
        stream.append(doc)
    bars = np.arange(0, 50 * HOUR_MS, HOUR_MS, dtype=np.int64)
    got, report = multipliers_from_snapshots(
        stream, (BTC,), bars, ASSET, CONFIG.ramp_ms, CONFIG.max_ramp_classes
    )
    assert got[0].tolist() == _engine_targets(stream, bars)
    refused = sum(report.refused.values())
    assert report.applied[BTC] + refused == len(stream)


def test_expiry_stale_and_halted_only_tighten_and_a_fresh_snapshot_relaxes() -> None:
    bars = np.arange(0, 12 * HOUR_MS, HOUR_MS, dtype=np.int64)
    stream = [
        _published(BTC, 1, 0.8, HOUR_MS, valid_ms=3 * HOUR_MS),  # in force 1h..3h, then expired
        _published(BTC, 2, 0.7, 5 * HOUR_MS, status="stale", valid_ms=4 * HOUR_MS),
        _published(BTC, 3, 0.9, 8 * HOUR_MS, valid_ms=10 * HOUR_MS),
        _published(BTC, 3, 0.6, 9 * HOUR_MS, valid_ms=10 * HOUR_MS),  # update_id regression
    ]
    got, report = multipliers_from_snapshots(
        stream, (BTC, "ETHUSDT"), bars, ASSET, CONFIG.ramp_ms, CONFIG.max_ramp_classes
    )
    fallback = ASSET.fallback_multiplier
    # Before any snapshot: the fallback; 0.8 while fresh; expired (valid_until 3h) at 4h.
    assert got[0, :2].tolist() == [fallback, 0.8]
    assert got[0, 2:4].tolist() == [0.8, 0.8]
    assert got[0, 4] == fallback
    assert got[0, 5:8].tolist() == [fallback] * 3  # a stale snapshot never relaxes
    assert got[0, 8:].tolist() == [0.9] * 4  # a fresh usable one does; the regression is refused
    assert report.refused == {"out_of_order": 1}
    assert report.applied == {BTC: 3, "ETHUSDT": 0}
    assert got[1].tolist() == [fallback] * 12  # an asset without snapshots stays on fallback
    assert report.bars_expired["ETHUSDT"] == 12


def test_malformed_out_of_bounds_and_unknown_snapshots_are_refused_and_counted() -> None:
    bars = np.arange(0, 4 * HOUR_MS, HOUR_MS, dtype=np.int64)
    good = _published(BTC, 1, 1.2, HOUR_MS)
    no_time = {k: v for k, v in _published(BTC, 2, 1.1, HOUR_MS).items() if k != "published_at"}
    tampered = _published(BTC, 3, 1.1, HOUR_MS)
    tampered["margin"] = "oops"
    stream = [good, no_time, tampered, _published(BTC, 4, 9.0, HOUR_MS), _published("X", 1, 1, 0)]
    got, report = multipliers_from_snapshots(
        stream, (BTC,), bars, ASSET, CONFIG.ramp_ms, CONFIG.max_ramp_classes
    )
    assert report.refused == {"malformed": 2, "out_of_bounds": 1, "unknown_asset": 1}
    assert "published_at" in report.first_refusal["malformed"]
    assert got[0].tolist() == [ASSET.fallback_multiplier, 1.2, 1.2, 1.2]


def test_a_policy_replay_publishes_a_stream_the_replay_reads_back() -> None:
    import pandas as pd

    from contracts.forecast import ProvenanceInfo
    from serving.policy import MultiplierPolicy, PolicyConfig
    from serving.policy_replay import policy_path, policy_snapshots

    index = pd.date_range("2024-03-01", periods=120, freq="h", tz="UTC")
    rng = np.random.default_rng(3)
    sigma = pd.Series(np.exp(rng.normal(-3.6, 0.35, len(index))), index=index)
    sigma.iloc[60:64] = np.nan  # four hours without a forecast: the fallback
    config = PolicyConfig(sigma_ref_window_hours=48, sigma_ref_min_obs=24)
    policy = MultiplierPolicy(config)
    lag = pd.Timedelta(hours=1).to_pytimedelta()
    liquidity = {"amihud": 1e-10, "spread_bps": 2, "slippage_bps": 5, "standard_size_usd": 1e6}
    stream = policy_snapshots(
        policy, BTC, sigma, lag, liquidity=liquidity,
        provenance=ProvenanceInfo(model_name="t", model_version="1"), horizon_hours=24,
    )  # fmt: skip
    path = policy_path(policy, BTC, sigma, lag)
    assert [s["margin"]["multiplier"] for s in stream] == pytest.approx(path["multiplier"])
    assert [s["status"] for s in stream] == path["status"].tolist()
    assert stream[0]["status"] == "fallback"  # the reference needs 24 forecasts first
    assert {s["status"] for s in stream[60:64]} == {"fallback"}
    bars = (index.asi8 // 1_000_000).astype(np.int64)
    got, report = multipliers_from_snapshots(
        stream, (BTC,), bars, ASSET, CONFIG.ramp_ms, CONFIG.max_ramp_classes
    )
    # The decision on the forecast of bar t is published at t + 1h and governs bar t + 1.
    assert got[0, 1:].tolist() == pytest.approx(path["multiplier"].to_numpy()[:-1])
    assert got[0, 0] == ASSET.fallback_multiplier
    # The last decision is published after the last bar's open.
    assert report.applied[BTC] == len(index) - 1 and not report.refused
    assert report.bars_fallback[BTC] > 0
