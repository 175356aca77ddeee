"""Option portfolio margin: short-option minimum, vega risk from the forecast, netting."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from liquidation.options.config import GreekLimits, OptionsMarginConfig
from liquidation.options.limits import Holding, deleveraging_plan, net
from tests.liquidation.options_builders import margin, market, scaled_sigma, series

ATM_STRADDLE = series([(0, 60_000.0, 30 / 365, True), (0, 60_000.0, 30 / 365, False)])
VOL = 0.6


def hedged_straddle(m, config=None):
    """Short one ATM straddle, delta-hedged with the perpetual."""
    _, risk = margin(m, ATM_STRADDLE, [VOL, VOL], [0.0, 0.0], [-1.0, -1.0], config)
    hedge = float(risk.greeks.delta.sum())  # short straddle delta is -sum(delta)
    req, _ = margin(m, ATM_STRADDLE, [VOL, VOL], [hedge, 0.0], [-1.0, -1.0], config)
    return req


def test_short_option_minimum_binds_for_deep_out_of_the_money_shorts():
    m = market()
    far = series([(0, 150_000.0, 7 / 365, True)])  # 2.5x the forward, a week out
    req, risk = margin(m, far, [VOL], [0.0, 0.0], [-2.0])
    assert req.worst_loss < req.short_minimum
    assert req.maintenance == req.short_minimum == pytest.approx(2 * 0.01 * 60_000.0)
    # At the money the grid loss dominates and the minimum does not bind.
    atm, _ = margin(m, ATM_STRADDLE, [VOL, VOL], [0.0, 0.0], [-1.0, -1.0])
    assert atm.worst_loss > atm.short_minimum
    assert atm.maintenance == atm.worst_loss
    # Long options carry no minimum.
    long, _ = margin(m, far, [VOL], [0.0, 0.0], [2.0])
    assert long.short_minimum == 0.0
    assert long.maintenance <= 2 * float(risk.value[0]) + 1e-9 + long.worst_loss


def test_hedged_short_straddle_margin_rises_with_vol_shock_and_published_sigma():
    m = market()
    by_shock = [
        hedged_straddle(m, OptionsMarginConfig(vol_shock_scale=s)).maintenance
        for s in (0.0, 0.1, 0.25, 0.5)
    ]
    assert all(b > a for a, b in itertools.pairwise(by_shock))
    by_sigma = [hedged_straddle(scaled_sigma(m, k)).maintenance for k in (0.5, 1.0, 1.5, 2.0)]
    assert all(b > a for a, b in itertools.pairwise(by_sigma))
    # The vol axis matters on its own: without price moves the loss is the vega shock.
    flat = OptionsMarginConfig(price_levels=(0.0,))
    no_vol = OptionsMarginConfig(price_levels=(0.0,), vol_shock_scale=0.0)
    assert hedged_straddle(m, flat).worst_loss > 5 * hedged_straddle(m, no_vol).worst_loss


def test_hedged_book_needs_less_than_its_parts():
    m = market()
    call = series([(0, 60_000.0, 30 / 365, True)])
    short_call, risk = margin(m, call, [VOL], [0.0, 0.0], [-1.0])
    hedge_qty = float(risk.greeks.delta[0])
    perp, _ = margin(m, call, [VOL], [hedge_qty, 0.0], [0.0])
    book, _ = margin(m, call, [VOL], [hedge_qty, 0.0], [-1.0])
    assert book.maintenance < 0.5 * (short_call.maintenance + perp.maintenance)


def test_correlated_underlyings_net():
    corr = [[1.0, 0.9], [0.9, 1.0]]
    empty = series([(0, 60_000.0, 0.1, True)])
    legs = ([1.0, 0.0], [0.0, -20.0])  # long 60k of BTC, short 60k of ETH
    wholes = {}
    for name, correlation in (("independent", None), ("correlated", corr)):
        m = market(correlation=correlation)
        parts = sum(margin(m, empty, [VOL], leg, [0.0])[0].maintenance for leg in legs)
        wholes[name] = margin(m, empty, [VOL], [1.0, -20.0], [0.0])[0].maintenance
        assert wholes[name] <= parts + 1e-9
    # A long-short pair of 0.9-correlated underlyings offsets along the joint directions.
    assert wholes["correlated"] < 0.6 * wholes["independent"]


books = st.lists(
    st.tuples(
        st.integers(0, 1),
        st.floats(0.5, 2.0),
        st.floats(1 / 365, 1.0),
        st.booleans(),
        st.floats(-3.0, 3.0),
    ),
    min_size=1,
    max_size=6,
)


@settings(max_examples=60, deadline=None)
@given(books, books, st.floats(-2, 2), st.floats(-2, 2))
def test_margin_is_subadditive(book_a, book_b, perp_a, perp_b):
    m = market(correlation=[[1.0, 0.7], [0.7, 1.0]])
    rows = [(a, m.price[a] * k, t, c) for a, k, t, c, _ in book_a + book_b]
    arrays = series(rows)
    vols = np.full(len(rows), VOL)
    qa = [q for *_, q in book_a] + [0.0] * len(book_b)
    qb = [0.0] * len(book_a) + [q for *_, q in book_b]
    both = [x + y for x, y in zip(qa, qb, strict=True)]
    ra, _ = margin(m, arrays, vols, [perp_a, 0.0], qa)
    rb, _ = margin(m, arrays, vols, [0.0, perp_b], qb)
    rab, _ = margin(m, arrays, vols, [perp_a, perp_b], both)
    # Offsetting shorts and longs of one series net their minimum too, so <= holds.
    assert rab.maintenance <= ra.maintenance + rb.maintenance + 1e-6


def test_greek_limit_plan_reduces_delta_first_and_keeps_the_hedge():
    limits = GreekLimits(delta_usd=100_000, gamma_usd=1e9, vega_usd=5_000, step_fraction=0.5)
    holdings = [
        Holding("perp:BTC", "BTC", 10.0, 600_000.0, 0.0, 0.0),
        Holding("C1", "BTC", -10.0, -300_000.0, -500.0, -8_000.0),
        Holding("P1", "BTC", 5.0, -50_000.0, 200.0, 2_000.0),
    ]
    plan = deleveraging_plan(holdings, limits)
    assert plan, "the book breaches its delta and vega limits"
    kinds = [s.breach.greek for s in plan]
    first_vega = kinds.index("vega_usd") if "vega_usd" in kinds else len(kinds)
    assert all(k == "delta_usd" for k in kinds[:first_vega])
    assert plan[0].instrument == "perp:BTC" and plan[0].qty < 0
    # Replay the plan: the book ends within every limit, closing only (never flipping).
    left = {h.instrument: h for h in holdings}
    for step in plan:
        h = left[step.instrument]
        fraction = 1.0 + step.qty / h.qty
        assert -1e-9 <= fraction < 1.0
        left[step.instrument] = h.scaled(fraction)
    totals = net(list(left.values()))
    assert abs(totals[("BTC", "delta_usd")]) <= limits.delta_usd * (1 + 1e-6)
    assert abs(totals[("BTC", "vega_usd")]) <= limits.vega_usd * (1 + 1e-6)
    assert math.isclose(left["P1"].qty, 5.0)  # the long put hedges vega: it is kept


def test_within_limits_means_no_plan():
    holdings = [Holding("perp:BTC", "BTC", 1.0, 60_000.0, 0.0, 0.0)]
    assert deleveraging_plan(holdings, GreekLimits()) == []
