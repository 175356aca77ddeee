"""The guard's liveness: the fold CrossHair verifies is the engine's, print for print.

:func:`liquidation.rules.oracle_guard.feed` folds :func:`~liquidation.rules.oracle_guard.advance`
(the transition the engine's ``plan_print`` calls) over a sequence of prints; its PEP 316
contract and ``tests/verification/guard_liveness.py`` state the bounded liveness on it. Here the
fold is compared with a real :class:`~liquidation.engine.Engine` fed the same prints, so the
verified function cannot drift from what the engine does.
"""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from liquidation.rules.oracle_guard import PriceObservation, feed
from tests.liquidation.test_liquidation_regressions import BTC, MINUTE, _engine
from tests.verification.guard_liveness import N, X, steady_feed_clears

MOVES = st.floats(-0.3, 0.3, allow_nan=False)


@given(
    moves=st.lists(MOVES, min_size=1, max_size=3 * N),
    gaps=st.lists(st.integers(0, 10 * MINUTE), min_size=3 * N, max_size=3 * N),
)
@settings(max_examples=80, deadline=None)
def test_feed_is_the_engines_guard(moves: list[float], gaps: list[int]) -> None:
    engine = _engine(heartbeat_ms=2 * MINUTE)
    asset = engine.state.assets[BTC]
    twap, twap_ms, window = asset.twap, asset.twap_ms, asset.window
    level, ts = float(asset.price), asset.price_ms
    prints = []
    for move, gap in zip(moves, gaps, strict=False):
        level *= 1 + move
        ts += gap
        prints.append(PriceObservation(BTC, max(1, round(level)), ts))
    engine_verdicts = tuple(engine.update_price(BTC, p.price, ts=p.ts_ms) for p in prints)
    assert feed(tuple(prints), twap, twap_ms, window, engine.config.oracle) == engine_verdicts


def test_liveness_harness_holds_on_concrete_feeds() -> None:
    """The CrossHair harness's claim on a jump, a slide and a feed at the band's edge."""
    steady_feed_clears((), 1_000_000, 2_000_000, 2_000_000, 2_000_000, 2_000_000, 2_000_000, 0)
    steady_feed_clears((50, 60), 10, 100, 101, 102, 103, 104, 1_000)
    low = 1_000_000
    edge = int((1 + X) * low)
    steady_feed_clears((low,), 3 * low, low, edge, low, edge, edge, 60_000)
