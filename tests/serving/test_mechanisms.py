"""The margin mechanisms of #20 item 3: properties of each option of the one policy."""

from __future__ import annotations

import math
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from contracts.errors import ForecastContractError
from contracts.forecast import ProvenanceInfo
from liquidation.snapshot_stream import multipliers_from_snapshots
from serving.mechanisms import (
    MECHANISMS,
    PolicySignals,
    loss_fraction,
    policy_variant,
    rolling_signals,
    signals_at,
    with_mechanisms,
)
from serving.policy import MultiplierPolicy, PolicyConfig, PolicyState
from serving.policy_replay import policy_path, policy_snapshots
from tests.liquidation.liq_builders import simple_config

NOW = datetime(2025, 6, 30, 23, tzinfo=UTC)
REF = 0.03
BTC = "BTCUSDT"
LIQUIDITY = {"amihud": 1e-9, "spread_bps": 1.0, "slippage_bps": 2.0, "standard_size_usd": 1e5}


def _config(names: list[str], **extra: float) -> PolicyConfig:
    base = PolicyConfig(**{"sigma_ref": REF, "sigma_ref_min_obs": 4, **extra})
    return with_mechanisms(base, names)


@st.composite
def mechanism_configs(draw: st.DrawFn) -> PolicyConfig:
    names = draw(st.lists(st.sampled_from(sorted(MECHANISMS)), unique=True, min_size=1))
    floor = draw(st.floats(0.3, 1.0))
    cap = draw(st.floats(3.0, 6.0))
    return with_mechanisms(
        PolicyConfig(
            sigma_ref=REF,
            floor=floor,
            cap=cap,
            max_step_up=draw(st.floats(0.05, 2.0)),
            max_step_down=draw(st.floats(0.01, 0.5)),
            min_relax_delay_hours=draw(st.sampled_from([0.0, 6.0])),
            hysteresis=draw(st.floats(0.0, 0.2)),
            exponent=draw(st.sampled_from([1.0, 2.0])),
            base_imf=0.05,
            crowding_multiplier=draw(st.floats(1.0, 3.0)),
            sigma_ref_min_obs=2,
        ),
        names,
    )


maybe = st.one_of(
    st.none(), st.just(float("nan")), st.floats(0.0, 2.0), st.floats(0.0, 1.7976931348623157e308)
)
signal_draws = st.builds(
    PolicySignals.of,
    tail_quantile=maybe,
    sigma_stress=maybe,
    sigma_long=maybe,
    oi_growth=st.one_of(st.none(), st.floats(-1.0, 1.0)),
    funding_z=st.one_of(st.none(), st.floats(-6.0, 6.0)),
)
steps = st.lists(
    st.tuples(st.one_of(st.none(), st.floats(1e-5, 2.0)), signal_draws, st.floats(0.25, 24.0)),
    min_size=1,
    max_size=40,
)


@settings(max_examples=150, deadline=None)
@given(config=mechanism_configs(), drawn=steps)
def test_every_mechanism_and_combination_keeps_the_multiplier_in_floor_and_cap(config, drawn):
    policy = MultiplierPolicy(config)
    state, now = policy.initial_state(BTC), NOW
    for sigma, signals, gap in drawn:
        now = now + timedelta(hours=gap)
        decision = policy.step(state, sigma, now, now, REF, signals)
        assert config.floor <= decision.multiplier <= config.cap
        if decision.target is not None:
            assert config.floor <= decision.target <= config.cap
        state = decision.state


def test_a_zero_tail_over_a_huge_stressed_sigma_is_not_nan():
    """The verification work's counterexample: loss-based IM with a stressed weight, a zero
    tail quantile, sigma at sigma_min and a stressed sigma near the float max made the
    target NaN (0 * inf) and step published NaN with status ok."""
    config = _config(["loss_im"], apc_stress_weight=0.5)
    policy = MultiplierPolicy(config)
    signals = PolicySignals.of(tail_quantile=0.0, sigma_stress=1.7e308)
    target = policy.target(config.sigma_min, REF, signals)
    assert target == config.floor
    decision = policy.step(policy.initial_state(BTC), config.sigma_min, NOW, NOW, REF, signals)
    assert config.floor <= decision.multiplier <= config.cap
    assert not math.isnan(decision.multiplier)


def test_a_target_that_is_no_number_falls_back_and_never_relaxes(monkeypatch):
    config = _config(["apc_buffer"])
    policy = MultiplierPolicy(config)
    state = replace(policy.initial_state(BTC), multiplier=2.0)
    monkeypatch.setattr(MultiplierPolicy, "target", lambda self, *a, **k: float("nan"))
    decision = policy.step(state, 0.02, NOW, NOW, REF, PolicySignals.of(sigma_stress=0.1))
    assert decision.reason == "fallback_nonfinite" and decision.status == "fallback"
    assert decision.multiplier >= 2.0 and decision.target is None


@settings(max_examples=200, deadline=None)
@given(
    low=st.floats(0.0, 0.5),
    extra=st.floats(0.0, 0.5),
    sigma=st.floats(1e-3, 0.3),
    weight=st.sampled_from([0.0, 0.25, 0.5]),
)
def test_loss_based_im_is_monotone_in_the_tail_forecast(low, extra, sigma, weight):
    policy = MultiplierPolicy(_config(["loss_im"], apc_stress_weight=weight))
    a = policy.target(sigma, REF, PolicySignals.of(tail_quantile=low, sigma_stress=0.05))
    b = policy.target(sigma, REF, PolicySignals.of(tail_quantile=low + extra, sigma_stress=0.05))
    assert a <= b


@settings(max_examples=200, deadline=None)
@given(s1=st.floats(1e-4, 1.0), s2=st.floats(1e-4, 1.0))
def test_loss_based_im_without_a_tail_forecast_is_monotone_in_sigma(s1, s2):
    policy = MultiplierPolicy(_config(["loss_im"]))
    lo, hi = sorted((s1, s2))
    assert policy.target(lo, REF) <= policy.target(hi, REF)
    assert loss_fraction(lo, policy.config) <= loss_fraction(hi, policy.config)


def test_loss_based_im_hits_its_target_probability_under_its_own_assumption():
    config = _config(["loss_im"], cap=10.0, base_imf=0.05)
    rng = np.random.default_rng(0)
    dof, sigma = config.loss_tail_dof, 0.03
    draws = rng.standard_t(dof, 400_000) * math.sqrt((dof - 2) / dof) * sigma
    margin = loss_fraction(sigma, config)
    exceed = float(np.mean(np.expm1(draws) > margin))
    assert abs(exceed - config.loss_probability) < 0.1 * config.loss_probability
    # The multiplier is that margin over the base IMF (inside the bounds here).
    assert MultiplierPolicy(config).target(sigma, REF) == pytest.approx(margin / config.base_imf)


def test_new_risk_pays_a_tightening_in_the_same_bar_and_relaxes_as_before():
    index = pd.date_range("2025-01-01", periods=12, freq="1h", tz="UTC")
    sigma = pd.Series([REF] * 6 + [3 * REF] * 3 + [REF] * 3, index=index)
    lag = timedelta(hours=1)
    engine = simple_config((BTC,))
    bars = (index + lag).asi8 // 1_000_000
    paths = {}
    for names in ([], ["new_risk_at_once"]):
        config = _config(names, max_step_up=0.5, cap=3.0)
        stream = policy_snapshots(
            MultiplierPolicy(config), BTC, sigma, lag, liquidity=LIQUIDITY,
            provenance=ProvenanceInfo(model_name="t"), horizon_hours=24,
        )  # fmt: skip
        paths[tuple(names)], _ = multipliers_from_snapshots(
            stream, (BTC,), bars, engine.asset(BTC), engine.ramp_ms, engine.max_ramp_classes
        )
    # The forecast of bar 6 triples sigma; its snapshot is in force from the open of bar 7.
    assert paths[("new_risk_at_once",)][0, 6] == pytest.approx(3.0)
    assert paths[()][0, 6] == pytest.approx(1.5)  # the step limit delays it by default
    # Relaxation keeps its limits: at most max_step_down per update, after the delay.
    relaxing = np.diff(paths[("new_risk_at_once",)][0, 8:])
    assert np.all(relaxing >= -0.05 - 1e-9)


@settings(max_examples=150, deadline=None)
@given(sigma=st.floats(1e-3, 0.2), ratio=st.floats(1.1, 3.0))
def test_the_apc_buffer_is_released_only_in_stress(sigma, ratio):
    plain = MultiplierPolicy(_config([], cap=10.0, floor=0.1))
    buffered = MultiplierPolicy(
        _config(["apc_buffer"], cap=10.0, floor=0.1, apc_stress_ratio=ratio)
    )
    base, got = plain.target(sigma, REF), buffered.target(sigma, REF)
    if sigma >= ratio * REF:
        assert got == base  # released
    else:
        assert got == pytest.approx(min(max(sigma / REF * 1.25, 0.1), 10.0))
        assert got >= base


def test_the_stressed_weight_raises_calm_margin_and_damps_a_spike():
    plain = MultiplierPolicy(_config([], cap=10.0, floor=0.1))
    weighted = MultiplierPolicy(_config(["apc_stress_weight"], cap=10.0, floor=0.1))
    stressed = PolicySignals.of(sigma_stress=2 * REF)
    assert weighted.target(REF, REF, stressed) == pytest.approx(1.25)  # 0.75 * 1 + 0.25 * 2
    assert weighted.target(4 * REF, REF, stressed) == pytest.approx(3.5)
    assert plain.target(4 * REF, REF, stressed) == pytest.approx(4.0)
    # No stressed sigma yet (a short history): the plain mapping, never a filled value.
    assert weighted.target(REF, REF, PolicySignals()) == plain.target(REF, REF)


def test_the_long_lookback_floor_binds_only_below_the_long_run_sigma():
    policy = MultiplierPolicy(_config(["apc_floor"], cap=10.0, floor=0.1))
    long_run = PolicySignals.of(sigma_long=1.5 * REF)
    assert policy.target(REF, REF, long_run) == pytest.approx(1.5)
    assert policy.target(3 * REF, REF, long_run) == pytest.approx(3.0)


@settings(max_examples=100, deadline=None)
@given(trigger_hour=st.integers(0, 20), gaps=st.lists(st.floats(0.25, 3.0), max_size=30))
def test_the_crowding_overlay_is_held_at_least_twelve_hours(trigger_hour, gaps):
    config = _config(["crowding"], max_step_up=5.0, cap=3.0, crowding_multiplier=2.0)
    policy = MultiplierPolicy(config)
    state, now = policy.initial_state(BTC), NOW
    triggered_at = NOW + timedelta(hours=trigger_hour)
    for hour in range(trigger_hour + 1):
        now = NOW + timedelta(hours=hour)
        signals = PolicySignals.of(oi_growth=0.5 if now == triggered_at else float("nan"))
        state = policy.step(state, REF, now, now, REF, signals).state
    for gap in gaps:
        now = now + timedelta(hours=gap)
        decision = policy.step(state, REF, now, now, REF, PolicySignals())
        held = now < triggered_at + timedelta(hours=12)
        assert (decision.target >= 2.0) if held else (decision.target == pytest.approx(1.0))
        state = decision.state


def test_missing_positioning_never_triggers_the_overlay():
    policy = MultiplierPolicy(_config(["crowding"], crowding_multiplier=2.0, max_step_up=5.0))
    state = policy.initial_state(BTC)
    for hour in range(30):
        now = NOW + timedelta(hours=hour)
        missing = PolicySignals.of(oi_growth=float("nan"), funding_z=None)
        decision = policy.step(state, REF, now, now, REF, missing)
        assert decision.target == pytest.approx(1.0)
        state = decision.state
    assert state.crowding_until is None
    # A funding extreme on either side triggers it.
    assert policy.step(state, REF, now, now, REF, PolicySignals.of(funding_z=-4.0)).target == 2.0


def _history(n: int = 400, seed: int = 3) -> tuple[pd.Series, pd.DataFrame]:
    rng = np.random.default_rng(seed)
    index = pd.date_range("2024-01-01", periods=n, freq="1h", tz="UTC")
    sigma = pd.Series(REF * np.exp(rng.normal(0, 0.5, n)), index=index)
    signals = pd.DataFrame(
        {
            "tail_quantile": 0.08 * np.exp(rng.normal(0, 0.4, n)),
            "oi_growth": rng.normal(0, 0.1, n),
            "funding_z": rng.normal(0, 1.5, n),
        },
        index=index,
    )
    return sigma, signals


@pytest.mark.parametrize("names", [[n] for n in MECHANISMS] + [sorted(MECHANISMS)])
def test_no_mechanism_sees_the_future(names):
    """Rewriting every input from ``cut`` on leaves every decision before ``cut`` unchanged."""
    config = _config(
        names,
        sigma_ref=None,
        sigma_ref_window_hours=48.0,
        sigma_ref_min_obs=12,
        apc_stress_window_hours=200.0,
        apc_floor_window_hours=300.0 if "apc_floor" in names else None,
    )
    sigma, signals = _history()
    cut = sigma.index[250]
    future_sigma, future_signals = sigma.copy(), signals.copy()
    later = sigma.index >= cut
    future_sigma[later] = future_sigma[later] * 7.0
    future_signals.loc[later] = future_signals.loc[later] * -9.0
    policy = MultiplierPolicy(config)
    lag = timedelta(hours=1)
    a = policy_path(policy, BTC, sigma, lag, signals=signals)
    b = policy_path(policy, BTC, future_sigma, lag, signals=future_signals)
    before = a["ts"] < cut
    pd.testing.assert_frame_equal(a[before], b[before])
    assert not a[~before]["multiplier"].equals(b[~before]["multiplier"])
    # The stressed and long-run sigma exclude the forecast they serve.
    history = rolling_signals(sigma, config)
    history_future = rolling_signals(future_sigma, config)
    pd.testing.assert_frame_equal(history.loc[:cut], history_future.loc[:cut])


def test_the_publisher_and_the_replay_read_the_same_signals():
    config = _config(
        ["apc_stress_weight", "apc_floor"],
        sigma_ref_min_obs=12,
        apc_stress_window_hours=200.0,
        apc_floor_window_hours=300.0,
    )
    sigma, signals = _history()
    table = rolling_signals(sigma, config)
    for i in (20, 150, 399):
        ts = sigma.index[i]
        one = signals_at(sigma, ts, config, signals.iloc[i])
        assert one is not None
        assert one.sigma_stress == pytest.approx(table["sigma_stress"].iloc[i])
        assert one.sigma_long == pytest.approx(table["sigma_long"].iloc[i])
        assert one.oi_growth == pytest.approx(signals["oi_growth"].iloc[i])
    assert signals_at(sigma, sigma.index[5], PolicyConfig(), signals.iloc[5]) is None


def test_default_policy_ignores_signals_and_its_state_is_unchanged():
    sigma, signals = _history()
    policy = MultiplierPolicy(PolicyConfig(sigma_ref_min_obs=12, sigma_ref_window_hours=48.0))
    lag = timedelta(hours=1)
    pd.testing.assert_frame_equal(
        policy_path(policy, BTC, sigma, lag), policy_path(policy, BTC, sigma, lag, signals=signals)
    )
    state = PolicyState(asset=BTC, multiplier=1.2)
    assert "crowding_until" not in state.to_dict()
    held = PolicyState(asset=BTC, multiplier=1.2, crowding_until=NOW)
    assert PolicyState.from_dict(held.to_dict()) == held


def test_variants_names_and_validation():
    assert policy_variant(PolicyConfig()) == "default"
    both = with_mechanisms(PolicyConfig(), ["crowding", "loss_im"])
    assert policy_variant(both) == "loss_im+crowding"
    with pytest.raises(ValueError, match="unknown policy option"):
        with_mechanisms(PolicyConfig(), ["bogus"])
    with pytest.raises(ValueError, match="EMIR"):
        PolicyConfig(apc_buffer=0.1)
    with pytest.raises(ValueError, match="crowding_multiplier"):
        PolicyConfig(crowding_overlay=True, crowding_multiplier=5.0)
    sigma, signals = _history()
    with pytest.raises(ForecastContractError, match="unknown policy signal"):
        policy_path(
            MultiplierPolicy(both), BTC, sigma, timedelta(hours=1), signals=signals.rename(
                columns={"oi_growth": "oi"}
            ),
        )  # fmt: skip


def test_the_step_contract_holds_under_every_mechanism():
    """``MultiplierPolicy.step``'s PEP 316 contract, checked on every call of the properties."""
    from tests.verification.runtime_contracts import enforced

    with enforced((MultiplierPolicy, "step")):
        test_every_mechanism_and_combination_keeps_the_multiplier_in_floor_and_cap()
        test_the_crowding_overlay_is_held_at_least_twelve_hours()
        test_new_risk_pays_a_tightening_in_the_same_bar_and_relaxes_as_before()
