"""The rules' vector forms compute what their scalar forms compute, element by element.

The scalar forms (Python ints) are the engine's and the ones a symbolic checker verifies; the
vector forms (numpy int64 / float64) are the replay's. Each test draws inputs over the whole
range the vector forms accept (:mod:`liquidation.rules.fixed`), bounds included, and requires
bit-identical results.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from liquidation.config import AssetConfig, LiquidationConfig
from liquidation.money import MAX_AMOUNT, MICRO, QTY_SCALE, charge, value
from liquidation.rules import closeout, margin, partial, penalty, ramp, topup
from liquidation.rules.backstop import backstop_ppm
from liquidation.rules.fixed import (
    MAX_NOTIONAL_V,
    MAX_PRICE_V,
    charge_v,
    check_bounds_v,
    value_v,
)

ASSET = AssetConfig("BTC")
LIQ = LiquidationConfig()
prices = st.integers(1, MAX_PRICE_V)
rates = st.floats(0.0, 1.0, allow_nan=False)
multipliers = st.floats(0.5, 5.0, allow_nan=False)


@st.composite
def lots_at(draw: st.DrawFn) -> tuple[int, int]:
    """A signed quantity and a price whose value stays within the vector bound."""
    price = draw(prices)
    most = min(MAX_NOTIONAL_V * QTY_SCALE // price, 2**62)
    lots = draw(st.integers(-most, most) | st.sampled_from([most, -most]))
    return lots, price


@settings(max_examples=300, deadline=None)
@given(st.lists(lots_at(), min_size=1, max_size=20))
def test_value_v_is_exact_within_the_bounds(cases: list[tuple[int, int]]) -> None:
    lots = np.array([c[0] for c in cases], dtype=np.int64)
    price = np.array([c[1] for c in cases], dtype=np.int64)
    assert value_v(lots, price).tolist() == [value(q, p) for q, p in cases]


def test_value_v_at_the_bounds() -> None:
    # One BTC-sized quantity at the largest price: the naive int64 product would overflow.
    lots = np.array([MAX_NOTIONAL_V * QTY_SCALE // MAX_PRICE_V, -QTY_SCALE, 92_234 * QTY_SCALE])
    price = np.array([MAX_PRICE_V, MAX_PRICE_V, 100_000 * MICRO])
    expected = [value(int(q), int(p)) for q, p in zip(lots, price, strict=True)]
    assert value_v(lots, price).tolist() == expected
    assert abs(expected[0]) <= MAX_NOTIONAL_V
    with np.errstate(over="ignore"):
        naive = (lots * price) // QTY_SCALE
    assert naive.tolist() != expected, "the bound test must exercise an overflowing product"


def test_check_bounds_v_refuses_out_of_bound_inputs() -> None:
    check_bounds_v(np.array([MAX_PRICE_V]), np.array([MAX_NOTIONAL_V]), "ok")
    with pytest.raises(ValueError, match="price outside"):
        check_bounds_v(np.array([MAX_PRICE_V + 1]), np.array([0]), "replay")
    with pytest.raises(ValueError, match="exceeds"):
        check_bounds_v(np.array([1]), np.array([-MAX_NOTIONAL_V - 1]), "replay")


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(st.integers(0, MAX_NOTIONAL_V), rates), min_size=1, max_size=20))
def test_charge_v_matches_charge(cases: list[tuple[int, float]]) -> None:
    amount = np.array([c[0] for c in cases], dtype=np.int64)
    rate = np.array([c[1] for c in cases])
    assert charge_v(amount, rate).tolist() == [charge(a, r) for a, r in cases]


@settings(max_examples=300, deadline=None)
@given(
    st.lists(st.tuples(st.integers(0, MAX_NOTIONAL_V), multipliers), min_size=1, max_size=20),
    st.floats(0, 1e9),
)
def test_requirements_v_match_scalar(cases: list[tuple[int, float]], oi: float) -> None:
    notional = np.array([c[0] for c in cases], dtype=np.int64)
    mult = np.array([c[1] for c in cases])
    im = margin.initial_requirement_v(notional, mult, oi, ASSET).tolist()
    mm = margin.maintenance_requirement_v(notional, mult, ASSET).tolist()
    assert im == [margin.initial_requirement(n, m, oi, ASSET) for n, m in cases]
    assert mm == [margin.maintenance_requirement(n, m, ASSET) for n, m in cases]


@settings(max_examples=300, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.integers(0, MAX_NOTIONAL_V),
            st.integers(-(2**50), 2**50),
            st.integers(0, MAX_PRICE_V),
            st.sampled_from([1, -1]),
            st.floats(1.0, 1e9),
        ),
        min_size=1,
        max_size=20,
    )
)
def test_closeout_and_penalty_v_match_scalar(cases: list[tuple[int, int, int, int, float]]) -> None:
    notional, left, oracle, side, std = (np.array(c) for c in zip(*cases, strict=True))
    rate = closeout.slippage_rate_v(notional / MICRO, 5.0, 20.0, std, ASSET.max_slippage_bps)
    assert rate.tolist() == [
        closeout.slippage_rate(n / MICRO, 5.0, 20.0, s, ASSET.max_slippage_bps)
        for n, _, _, _, s in cases
    ]
    px = closeout.close_price_v(oracle, side, rate).tolist()
    assert px == [closeout.close_price(int(o), int(d), float(r)) for o, d, r in
                  zip(oracle, side, rate, strict=True)]  # fmt: skip
    due = penalty.penalty_due_v(notional, left, LIQ.penalty_rate)
    assert due.tolist() == [penalty.penalty_due(n, e, LIQ.penalty_rate) for n, e, *_ in cases]
    keeper, fund = penalty.split_penalty_v(due, 0.37)
    assert list(zip(keeper.tolist(), fund.tolist(), strict=True)) == [
        penalty.split_penalty(int(p), 0.37) for p in due
    ]


@settings(max_examples=300, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.integers(-(2**52), 2**52),
            st.integers(1, 2**52),
            st.floats(0, 2.0**52),
            st.integers(-(2**62), 2**62),
        ),
        min_size=1,
        max_size=20,
    )
)
def test_partial_sizing_v_matches_scalar(cases: list[tuple[int, int, float, int]]) -> None:
    eq, mm, cost, lots = (np.array(c) for c in zip(*cases, strict=True))
    ppm = partial.partial_ppm_v(eq, mm, cost, LIQ)
    assert ppm.tolist() == [partial.partial_ppm(e, m, c, LIQ) for e, m, c, _ in cases]
    assert partial.closed_lots_v(lots, ppm).tolist() == [
        partial.closed_lots(int(q), int(p)) for q, p in zip(lots, ppm, strict=True)
    ]
    full = np.abs(eq) // 3
    emergency = partial.is_emergency_v(eq, mm, full, LIQ.emergency_health)
    assert emergency.tolist() == [
        partial.is_emergency(int(e), int(m), int(f), LIQ.emergency_health)
        for e, m, f in zip(eq, mm, full, strict=True)
    ]
    allowed = partial.partial_allowed_v(emergency, mm, LIQ.min_partial_notional_usd)
    assert allowed.tolist() == [
        partial.partial_allowed(bool(x), int(m), LIQ.min_partial_notional_usd)
        for x, m in zip(emergency, mm, strict=True)
    ]


@settings(max_examples=200, deadline=None)
@given(
    st.floats(0.5, 5.0),
    st.floats(0.5, 5.0),
    st.integers(0, 10**12),
    st.integers(0, 10**9),
    st.lists(st.integers(0, 2 * 10**12), min_size=1, max_size=20),
)
def test_ramp_v_matches_scalar(
    start: float, target: float, start_ms: int, ramp_ms: int, times: list[int]
) -> None:
    got = ramp.ramped_multiplier_v(start, target, start_ms, ramp_ms, np.array(times)).tolist()
    assert got == [ramp.ramped_multiplier(start, target, start_ms, ramp_ms, t) for t in times]


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.integers(-(2**50), 2**50),
            st.integers(0, 2**50),
            st.integers(0, 2**50),
            st.integers(0, 2),
        ),
        min_size=1,
        max_size=20,
    )
)
def test_topup_v_matches_scalar(cases: list[tuple[int, int, int, int]]) -> None:
    eq, mm, first, left = (np.array(c) for c in zip(*cases, strict=True))
    im = mm * 2
    want = topup.wants_topup_v(eq, mm, left, 1.25).tolist()
    assert want == [topup.wants_topup(e, m, k, 1.25) for e, m, _, k in cases]
    amount = topup.topup_amount_v(eq, im, first, 1.0).tolist()
    assert amount == [topup.topup_amount(e, 2 * m, f, 1.0) for e, m, f, _ in cases]


@given(st.integers(0, 1_000_000))
def test_backstop_ppm_finds_the_largest_admitted_fraction(limit: int) -> None:
    found = backstop_ppm(lambda ppm: ppm <= limit)
    assert found <= limit
    assert found == 1_000_000 or limit - found <= 1_000 or (found == 0 and limit < 1_000)


def test_split_penalty_above_2_53_never_gives_the_fund_more_than_the_penalty() -> None:
    """z3's counterexample (tests/verification/rules_z3.py): ``int(penalty * 1.0)`` rounds
    2**54 - 1 up to 2**54, which gave the keeper -1."""
    assert penalty.split_penalty(2**54 - 1, 1.0) == (0, 2**54 - 1)
    for due in (2**53 + 1, 2**59 - 1, MAX_AMOUNT):
        keeper, fund = penalty.split_penalty(due, 1.0)
        assert keeper + fund == due and 0 <= keeper <= 1 and fund <= due
    assert penalty.split_penalty(2**53 - 1, 0.5) == (2**52, 2**52 - 1)
    # The vector form applies the same cap: it agrees with the scalar rule element by element.
    dues = np.array([2**54 - 1, 2**53 + 1, 2**59 - 1, MAX_AMOUNT, 2**53 - 1], dtype=np.int64)
    keepers, funds = penalty.split_penalty_v(dues, 1.0)
    assert [(int(k), int(f)) for k, f in zip(keepers, funds, strict=True)] == [
        penalty.split_penalty(int(d), 1.0) for d in dues
    ]
