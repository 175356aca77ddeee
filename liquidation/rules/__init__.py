"""The liquidation rules: pure functions on integer money, one module per rule family.

Both the event-sourced :class:`liquidation.engine.Engine` (one event at a time) and the
historical replay :func:`liquidation.simulate.simulate` (every position of a bar at once)
call these functions; no rule is implemented anywhere else in the Python code.

=====================  ===========================================================
module                 rules
=====================  ===========================================================
:mod:`.fixed`          exact integer value and charge on int64 arrays, and their bounds
:mod:`.margin`         size- and OI-scaled margin fractions, IM, MM, equity, health,
                       the dYdX update rule
:mod:`.multiplier`     which multiplier a snapshot gives (status, expiry, fallback)
:mod:`.ramp`           the maintenance ramp of existing positions after a tightening
:mod:`.partial`        emergency close-out test, rate limit, partial-step sizing
:mod:`.closeout`       close-out slippage and execution price
:mod:`.penalty`        penalty from remaining equity, keeper / fund split, fund cap
:mod:`.backstop`       the backstop vault's share of a bankruptcy
:mod:`.adl`            ADL ranking and fills
:mod:`.socialization`  socialized loss over position holders
:mod:`.topup`          a defending trader's top-up
:mod:`.oracle_guard`   the oracle-guard decision on a print
:mod:`.governance`     the insurance fund's bounded share / fee add-on rule
=====================  ===========================================================

**Two forms.** Each rule has a *scalar* form on Python ints (and float rates from
configuration and snapshots): numpy-free, pure, typed, the form the engine calls per event and
the form a symbolic checker verifies. Rules evaluated on every position of a bar also have a
*vector* form (suffix ``_v``) on numpy int64 / float64 arrays, computing bit for bit what the
scalar form computes element by element (``tests/liquidation/test_rules.py`` checks it): same
IEEE operations in the same order, integer products split so that none overflows. Rules that
act on one liquidation event at a time (ADL, socialization, backstop, cost shares) have the
scalar form only; the replay calls it on each event, which is sparse.

**Inputs** are narrow protocols (:mod:`.terms`), never the engine: an
:class:`~liquidation.config.AssetConfig` or a replay's asset template satisfies them.

**Bounds of the vector forms** (:mod:`.fixed`): a price at most :data:`.fixed.MAX_PRICE_V`
(1e8 USD per unit) and a position notional at most :data:`.fixed.MAX_NOTIONAL_V` (2**53
micro-USD, about 9e9 USD). Within them every int64 product fits and every int -> float64
conversion is exact, so the two forms agree. The scalar forms have no overflow (Python ints);
their inputs are bounded by :mod:`liquidation.money`.
"""

CONTRACTED_MODULES: tuple[str, ...] = (
    "margin",
    "multiplier",
    "ramp",
    "partial",
    "closeout",
    "penalty",
    "backstop",
    "adl",
    "socialization",
    "topup",
    "oracle_guard",
    "governance",
)
"""The modules whose public scalar functions carry PEP 316 contracts (all but :mod:`.fixed`
and :mod:`.terms`): the one list the run-time checks and ``make verify`` read."""
