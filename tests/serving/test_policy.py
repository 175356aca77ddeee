"""MultiplierPolicy: hypothesis properties of the invariants and unit tests of each rule."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from serving.errors import OperatorActionError, PolicyConfigError
from serving.policy import (
    FALLBACK_REASONS,
    MultiplierPolicy,
    PolicyConfig,
    PolicyState,
    load_policy_book,
    rolling_sigma_ref,
    sigma_ref_at,
)

NOW = datetime(2025, 6, 30, 23, tzinfo=UTC)
REF = 0.03
EPS = 1e-12


@st.composite
def configs(draw: st.DrawFn) -> PolicyConfig:
    floor = draw(st.floats(0.3, 1.0))
    cap = draw(st.floats(3.0, 6.0))
    return PolicyConfig(
        sigma_ref=REF,
        floor=floor,
        cap=cap,
        initial_multiplier=1.0,
        fallback_multiplier=draw(st.floats(1.0, 3.0)),
        max_step_up=draw(st.floats(0.05, 2.0)),
        max_step_down=draw(st.floats(0.01, 0.5)),
        min_relax_delay_hours=draw(st.sampled_from([0.0, 1.0, 6.0, 24.0])),
        hysteresis=draw(st.floats(0.0, 0.2)),
        base_imf=0.05,
        base_mmf=0.03,
        # Every property must hold for the proportional and the convex mappings alike.
        exponent=draw(st.sampled_from([1.0, 1.5, 2.0, 3.0])),
    )


sigmas = st.one_of(
    st.floats(1e-5, 2.0),
    st.just(float("nan")),
    st.just(float("inf")),
    st.none(),
)
# (sigma, age of the forecast in hours, hours since the previous step)
events = st.tuples(sigmas, st.floats(0.0, 10.0), st.floats(0.25, 24.0))


def run(policy: MultiplierPolicy, steps: list[tuple[float | None, float, float]]):
    state = policy.initial_state("BTCUSDT")
    now = NOW
    decisions = []
    for sigma, age, gap in steps:
        now = now + timedelta(hours=gap)
        decision = policy.step(state, sigma, now - timedelta(hours=age), now)
        decisions.append(decision)
        state = decision.state
    return decisions


@settings(max_examples=150, deadline=None)
@given(config=configs(), steps=st.lists(events, min_size=1, max_size=60))
def test_multiplier_always_within_floor_and_cap(config, steps):
    for decision in run(MultiplierPolicy(config), steps):
        assert config.floor - EPS <= decision.multiplier <= config.cap + EPS


@settings(max_examples=150, deadline=None)
@given(config=configs(), steps=st.lists(events, min_size=1, max_size=60))
def test_no_step_exceeds_its_limit(config, steps):
    for decision in run(MultiplierPolicy(config), steps):
        move = decision.multiplier - decision.previous
        assert move <= config.max_step_up + 1e-9
        assert -move <= config.max_step_down + 1e-9
        if move < -EPS:
            assert decision.reason in {"relaxed", "rate_limited_down"}


@settings(max_examples=200, deadline=None)
@given(
    config=configs(),
    previous=st.floats(0.3, 6.0),
    since_change=st.one_of(st.none(), st.floats(0.0, 48.0)),
    pair=st.tuples(st.floats(1e-4, 1.0), st.floats(1e-4, 1.0)),
)
def test_monotone_in_sigma_with_all_else_fixed(config, previous, since_change, pair):
    low, high = sorted(pair)
    previous = min(max(previous, config.floor), config.cap)
    changed = None if since_change is None else NOW - timedelta(hours=since_change)
    state = PolicyState("BTCUSDT", previous, last_relax_at=changed)
    policy = MultiplierPolicy(config)
    m_low = policy.step(state, low, NOW, NOW).multiplier
    m_high = policy.step(state, high, NOW, NOW).multiplier
    assert m_low <= m_high + EPS


@settings(max_examples=150, deadline=None)
@given(
    config=configs(),
    previous=st.floats(0.3, 6.0),
    wiggles=st.lists(st.floats(-1.0, 1.0), min_size=2, max_size=40),
)
def test_sigma_oscillating_inside_hysteresis_band_changes_nothing(config, previous, wiggles):
    previous = min(max(previous, config.floor), config.cap)
    policy = MultiplierPolicy(config)
    state = PolicyState("BTCUSDT", previous)
    now = NOW
    for wiggle in wiggles:
        now += timedelta(hours=1)
        # (sigma / sigma_ref) ** exponent stays within previous * (1 +- hysteresis)
        ratio = previous * (1 + 0.999 * config.hysteresis * wiggle)
        sigma = REF * ratio ** (1 / config.exponent)
        decision = policy.step(state, sigma, now, now)
        assert decision.multiplier == previous
        assert decision.reason == "hysteresis_hold"
        state = decision.state


@settings(max_examples=150, deadline=None)
@given(
    config=configs(),
    previous=st.floats(0.3, 6.0),
    sigma=st.floats(1e-4, 1.0),
    extra_age=st.floats(0.01, 1000.0),
)
def test_expired_input_gives_stale_fallback(config, previous, sigma, extra_age):
    previous = min(max(previous, config.floor), config.cap)
    as_of = NOW - timedelta(hours=config.staleness_limit_hours + extra_age)
    decision = MultiplierPolicy(config).step(PolicyState("X", previous), sigma, as_of, NOW)
    assert (decision.status, decision.reason) == ("stale", "fallback_stale")
    expected = min(max(previous, config.fallback_multiplier), previous + config.max_step_up)
    assert decision.multiplier == pytest.approx(expected)
    assert decision.multiplier >= previous


@settings(max_examples=100, deadline=None)
@given(
    config=configs(),
    previous=st.floats(0.3, 6.0),
    bad=st.sampled_from(
        [
            (float("nan"), "fallback_nonfinite"),
            (None, "fallback_missing"),
            (float("-inf"), "fallback_nonfinite"),
            (5.0, "fallback_out_of_range"),
            (1e-7, "fallback_out_of_range"),
        ]
    ),
)
def test_nan_missing_or_implausible_input_gives_fallback(config, previous, bad):
    sigma, reason = bad
    previous = min(max(previous, config.floor), config.cap)
    decision = MultiplierPolicy(config).step(PolicyState("X", previous), sigma, NOW, NOW)
    assert (decision.status, decision.reason) == ("fallback", reason)
    assert reason in FALLBACK_REASONS
    assert decision.multiplier >= previous


def test_rules_in_order_with_reasons():
    config = PolicyConfig(
        sigma_ref=REF,
        floor=0.8,
        cap=3.0,
        max_step_up=0.5,
        max_step_down=0.1,
        min_relax_delay_hours=6,
        hysteresis=0.05,
    )
    policy = MultiplierPolicy(config)
    state = policy.initial_state("BTCUSDT")
    first = policy.step(state, REF * 2.5, NOW, NOW)
    assert (first.multiplier, first.reason) == (1.5, "rate_limited_up")
    second = policy.step(first.state, REF * 1.8, NOW + timedelta(hours=1), NOW + timedelta(hours=1))
    assert (second.multiplier, second.reason) == (pytest.approx(1.8), "tightened")
    t = NOW + timedelta(hours=3)
    held = policy.step(second.state, REF * 1.0, t, t)
    assert (held.multiplier, held.reason) == (pytest.approx(1.8), "relax_delay_hold")
    t = NOW + timedelta(hours=8)
    down = policy.step(held.state, REF * 1.0, t, t)
    assert (down.multiplier, down.reason) == (pytest.approx(1.7), "rate_limited_down")
    t += timedelta(hours=7)
    small = policy.step(down.state, REF * 1.6, t, t)
    assert (small.multiplier, small.reason) == (pytest.approx(1.6), "relaxed")
    assert small.valid_until == t + timedelta(hours=config.expiry_hours)


def test_floor_below_one_releases_capital_and_cap_binds():
    config = PolicyConfig(
        sigma_ref=REF,
        floor=0.6,
        cap=3.0,
        max_step_down=1.0,
        min_relax_delay_hours=0,
        max_step_up=10.0,
    )
    policy = MultiplierPolicy(config)
    calm = policy.step(policy.initial_state("X"), REF * 0.1, NOW, NOW)
    assert calm.multiplier == pytest.approx(0.6)
    wild = policy.step(calm.state, 0.9, NOW, NOW)
    assert wild.multiplier == pytest.approx(3.0)


def test_convex_mapping_tightens_more_in_spikes_and_default_is_proportional():
    linear = MultiplierPolicy(PolicyConfig(sigma_ref=REF, floor=0.5, cap=5.0))
    convex = MultiplierPolicy(PolicyConfig(sigma_ref=REF, floor=0.5, cap=5.0, exponent=2.0))
    assert PolicyConfig().exponent == 1.0
    assert linear.target(1.5 * REF, REF) == pytest.approx(1.5)
    assert convex.target(1.5 * REF, REF) == pytest.approx(2.25)
    assert convex.target(0.8 * REF, REF) == pytest.approx(0.64)
    assert convex.target(3.0 * REF, REF) == 5.0  # the cap still binds
    assert convex.target(REF, REF) == linear.target(REF, REF) == 1.0
    with pytest.raises(ValueError, match="exponent"):
        PolicyConfig(exponent=0.0)


def test_operator_halt_override_and_audit_records():
    policy = MultiplierPolicy(PolicyConfig(sigma_ref=REF, cap=3.0))
    state = policy.initial_state("BTCUSDT")
    halted, record = policy.halt(state, "alice", "exchange incident", NOW)
    assert (record.action, record.operator, record.multiplier_before) == ("halt", "alice", 1.0)
    decision = policy.step(halted, REF * 2, NOW, NOW)
    assert (decision.status, decision.reason, decision.multiplier) == ("halted", "halted", 1.0)
    resumed, record = policy.resume(halted, "alice", "resolved", NOW)
    assert record.action == "resume" and not resumed.halted

    with pytest.raises(OperatorActionError, match="outside"):
        policy.override(resumed, 3.5, None, "bob", "too high", NOW)
    with pytest.raises(OperatorActionError, match="operator must have 1 to 200 visible"):
        policy.override(resumed, 2.0, None, "", "no operator", NOW)
    until = NOW + timedelta(hours=2)
    overridden, record = policy.override(resumed, 2.5, until, "bob", "listing", NOW)
    assert (record.override_multiplier, record.override_until) == (2.5, until)
    during = policy.step(overridden, REF, NOW + timedelta(hours=1), NOW + timedelta(hours=1))
    assert (during.multiplier, during.reason) == (2.5, "override")
    after = policy.step(during.state, REF * 2.5, until, until + timedelta(minutes=1))
    assert after.reason != "override" and after.state.override_multiplier is None


def test_policy_state_round_trips_through_dict():
    state = PolicyState("BTCUSDT", 1.3, NOW, NOW, None, True, "note", 2.0, NOW)
    assert PolicyState.from_dict(state.to_dict()) == state


def test_config_validation_and_toml(tmp_path: Path):
    with pytest.raises(ValueError, match="floor"):
        PolicyConfig(floor=2.0, cap=1.5, initial_multiplier=1.8, fallback_multiplier=1.8)
    path = tmp_path / "dynamargin.toml"
    path.write_text(
        "[policy]\nfloor = 0.7\ncap = 4.0\n[policy.assets.BTCUSDT]\nsigma_ref = 0.025\n"
    )
    book = load_policy_book(path)
    assert book.default.floor == 0.7 and book.default.sigma_ref is None
    assert book.for_asset("BTCUSDT").sigma_ref == 0.025
    assert book.for_asset("BTCUSDT").cap == 4.0
    assert book.for_asset("DOGEUSDT") == book.default
    path.write_text("[policy]\n[policy.assets.ETHUSDT]\ncap = 0.5\n")
    with pytest.raises(PolicyConfigError, match=r"policy\.assets\.ETHUSDT"):
        load_policy_book(path)


def test_reference_is_point_in_time_and_excludes_the_current_forecast():
    ts = pd.date_range("2025-01-01", periods=400, freq="h", tz="UTC")
    sigma = pd.Series(np.linspace(0.01, 0.05, 400), index=ts)
    config = PolicyConfig(sigma_ref_window_hours=100, sigma_ref_min_obs=50)
    rolled = rolling_sigma_ref(sigma, config)
    changed = sigma.copy()
    changed.iloc[300:] = 0.9  # neither the future nor the forecast judged moves a reference
    rolled_changed = rolling_sigma_ref(changed, config)
    pd.testing.assert_series_equal(rolled.iloc[:301], rolled_changed.iloc[:301])
    assert math.isnan(rolled.iloc[10])
    # The reference of the forecast at ts[200] is the median over [ts[100], ts[200]).
    expected = float(sigma[(sigma.index >= ts[100]) & (sigma.index < ts[200])].median())
    assert rolled.iloc[200] == pytest.approx(expected)
    assert sigma_ref_at(sigma, ts[20], config) is None


def test_publisher_and_replay_share_one_reference():
    rng = np.random.default_rng(7)
    ts = pd.date_range("2025-01-01", periods=300, freq="h", tz="UTC")
    sigma = pd.Series(np.exp(rng.normal(-3.5, 0.4, 300)), index=ts)
    sigma.iloc[[40, 41, 150]] = np.nan  # missing forecasts
    sigma.iloc[90] = 5.0  # implausible: outside [sigma_min, sigma_max], never counted
    config = PolicyConfig(sigma_ref_window_hours=72, sigma_ref_min_obs=24)
    rolled = rolling_sigma_ref(sigma, config)
    for i in range(len(ts)):
        # The publisher sees only the forecasts up to the one it publishes.
        point = sigma_ref_at(sigma.iloc[: i + 1], ts[i], config)
        if math.isnan(rolled.iloc[i]):
            assert point is None
        else:
            assert point == pytest.approx(rolled.iloc[i], rel=1e-12)
    fixed = PolicyConfig(sigma_ref=0.02)
    assert sigma_ref_at(sigma, ts[5], fixed) == 0.02
    assert (rolling_sigma_ref(sigma, fixed) == 0.02).all()


def test_a_convex_mapping_whose_power_overflows_gives_the_cap_not_an_error():
    # Found by the verification work: (sigma / sigma_ref) ** 2 overflows a float when
    # sigma_ref is tiny; the ratio is then far above any cap.
    config = PolicyConfig(sigma_ref=1e-200, exponent=2.0, floor=0.8, cap=3.0)
    policy = MultiplierPolicy(config)
    assert policy.target(0.03, 1e-200) == 3.0
    decision = policy.step(policy.initial_state("BTCUSDT"), 0.03, NOW, NOW)
    assert config.floor <= decision.multiplier <= config.cap
