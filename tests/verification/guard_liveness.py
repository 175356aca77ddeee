"""The oracle guard's bounded liveness at its documented parameters, checked by CrossHair.

:func:`liquidation.rules.oracle_guard.feed` states the bound as a PEP 316 contract for any
configuration. These functions state it again at the engine's defaults (``N =
reanchor_prints = 5`` prints, band ``x = reanchor_band = 5%``) and call the real rules, so
the solver searches only the prints and the guard state. They are written in CrossHair's
``asserts`` style (leading ``assert``\\ s are the premise, the last one the claim) because in
``PEP316`` mode CrossHair *assumes* the contracts of the functions it calls and silently drops
a path on which one of them fails: a broken rule would hide behind its own contract.
``scripts/verify.py`` runs ``crosshair check --analysis_kind=asserts`` on this module.

Bound: from *any* guard state (any TWAP, any re-anchoring window of earlier prints), N prints
without a reference quorum whose confidence bands pass and which stay within ``max <= (1 + x)
* min`` end with an accepted print: the guard clears at the N-th print at the latest.
"""

from __future__ import annotations

from liquidation.config import OracleGuardConfig
from liquidation.rules.oracle_guard import PriceObservation, consistent, feed

GUARD = OracleGuardConfig()
N = GUARD.reanchor_prints
X = GUARD.reanchor_band
CONFIDENCE = GUARD.max_confidence_ratio


def steady_feed_clears(
    window: tuple[int, ...], twap: int, p1: int, p2: int, p3: int, p4: int, p5: int, gap_ms: int
) -> None:
    """Five prints within the band after any state (TWAP, window): the fifth is accepted."""
    assert N == 5 and twap > 0 and gap_ms >= 0
    assert len(window) <= N and all(w > 0 for w in window)
    assert min(p1, p2, p3, p4, p5) > 0 and consistent((p1, p2, p3, p4, p5), X)
    prints = tuple(
        PriceObservation("X", p, 1_000 + k * gap_ms) for k, p in enumerate((p1, p2, p3, p4, p5))
    )
    assert feed(prints, twap, 0, window, GUARD)[-1].accepted


def steady_feed_with_confidence_clears(
    twap: int, p1: int, p2: int, p3: int, p4: int, p5: int, c1: int, c5: int
) -> None:
    """The same with confidence bands on the first and last print (each one passing)."""
    assert N == 5 and twap > 0
    assert min(p1, p2, p3, p4, p5) > 0 and consistent((p1, p2, p3, p4, p5), X)
    assert 0 <= c1 and c1 / p1 <= CONFIDENCE and 0 <= c5 and c5 / p5 <= CONFIDENCE
    bands = (c1, 0, 0, 0, c5)
    prints = tuple(
        PriceObservation("X", p, 60_000 * (k + 1), confidence=bands[k])
        for k, p in enumerate((p1, p2, p3, p4, p5))
    )
    assert feed(prints, twap, 0, (), GUARD)[-1].accepted
