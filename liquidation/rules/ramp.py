"""The maintenance ramp: how a tightened multiplier reaches positions that already exist.

New risk pays the target multiplier at once. A position that existed when the target rose
pays it gradually: its multiplier climbs linearly to the target over ``ramp_ms`` from what it
paid before. A relaxation applies to everyone at once. Positions are told apart only by when
their risk was last added (``risk_since_ms``), so the state is per asset and small:

* ``target`` and ``changed_ms``: the target in force, and when it last changed. A position
  with ``risk_since_ms >= changed_ms`` pays the target.
* the *base*: the path of the oldest positions, from ``base_from`` at ``base_start_ms``
  linearly to ``target`` over ``ramp_ms``.
* ``floors``: ``(since_ms, floor)`` pairs, ascending in both. A position whose risk dates
  from ``[since_k, since_k+1)`` paid ``floor_k`` when the target last changed, so it pays
  ``min(target, max(base, floor_k))``: never less than before, never more than the target,
  and the target itself once the base arrives, at most ``ramp_ms`` after the last change.

The ramp restarts only when the effective target changes (:func:`retarget` returns its input
unchanged otherwise), so republishing the same multiplier changes no one's margin, and a
position that pays the target keeps paying it. These are pure functions of immutable values,
shared by the engine (one position at a time) and the vectorised scan (class arrays).

Invariants (checked by the property tests):

* ``min(floors) > base(t)`` at each change, floors ascending, at most ``max_classes - 2``;
* every class multiplier lies in ``[base(t), target]`` and is non-decreasing in ``t`` while
  the target is unchanged;
* a class's multiplier just after :func:`retarget` is ``min(new_target, its multiplier just
  before)`` for a relaxation and equal to it for a tightening, except the oldest class's while
  the base still ramps: a tightening then keeps the base's schedule (start and starting
  level) and raises only its destination, so the oldest positions never pay less, at any
  later time, than with no change (a restart from the current level could be slower).
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass
from typing import Any

import numpy as np

from liquidation.rules.fixed import Floats, Ints
from liquidation.rules.multiplier import target_multiplier
from liquidation.rules.terms import FallbackTerms, SnapshotTerms


@dataclass(frozen=True)
class RampState:
    """Ramp state of one asset (see the module docstring). Times are epoch ms."""

    target: float
    base_from: float
    base_start_ms: int
    changed_ms: int
    floors: tuple[tuple[int, float], ...] = ()

    @classmethod
    def start(cls, target: float) -> RampState:
        """A state where every position pays ``target`` (no snapshot seen yet)."""
        return cls(target=target, base_from=target, base_start_ms=0, changed_ms=0)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON form (for the event log)."""
        return {
            "target": self.target,
            "base_from": self.base_from,
            "base_start_ms": self.base_start_ms,
            "changed_ms": self.changed_ms,
            "floors": [[since, floor] for since, floor in self.floors],
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RampState:
        """Inverse of :meth:`to_dict`."""
        return cls(
            target=data["target"],
            base_from=data["base_from"],
            base_start_ms=data["base_start_ms"],
            changed_ms=data["changed_ms"],
            floors=tuple((int(s), float(f)) for s, f in data["floors"]),
        )


def ramped_multiplier(
    start_value: float, target: float, start_ms: int, ramp_ms: int, ts_ms: int
) -> float:
    """Multiplier applied to existing positions' maintenance at ``ts_ms``.

    A relaxation applies at once. A tightening moves linearly from ``start_value`` (the value
    in force when the target changed at ``start_ms``) to ``target`` over ``ramp_ms``. So the
    result never exceeds ``target`` and equals it from ``start_ms + ramp_ms`` on.

    Contract (PEP 316; CrossHair and tests/verification check it):

    pre: ramp_ms >= 0 and start_value > 0 and target > 0
    post: min(start_value, target) <= __return__ <= max(start_value, target)
    post: target > start_value or __return__ == target
    post: ts_ms < start_ms + ramp_ms or __return__ == target
    """
    if target <= start_value or ramp_ms == 0:
        return target
    progress = min(1.0, max(0.0, (ts_ms - start_ms) / ramp_ms))
    if progress >= 1.0:
        return target
    return min(target, start_value + (target - start_value) * progress)


def ramped_multiplier_v(
    start_value: float, target: float, start_ms: int, ramp_ms: int, ts_ms: Ints
) -> Floats:
    """Vector :func:`ramped_multiplier` over evaluation times ``ts_ms``."""
    ts = np.asarray(ts_ms, dtype=np.int64)
    if target <= start_value or ramp_ms == 0:
        return np.full(ts.shape, target)
    progress = np.minimum(1.0, np.maximum(0.0, (ts - start_ms) / ramp_ms))
    ramped = np.minimum(target, start_value + (target - start_value) * progress)
    return np.where(progress >= 1.0, target, ramped)


def base_level(state: RampState, ts_ms: int, ramp_ms: int) -> float:
    """Multiplier of the oldest positions at ``ts_ms`` (``<= target``).

    Contract (PEP 316; CrossHair and tests/verification check it):

    pre: ramp_ms >= 0 and state.base_from > 0 and state.target > 0
    post: __return__ <= state.target
    """
    return ramped_multiplier(state.base_from, state.target, state.base_start_ms, ramp_ms, ts_ms)


def classes(
    state: RampState, ts_ms: int, ramp_ms: int
) -> tuple[tuple[int, ...], tuple[float, ...]]:
    """Class boundaries and multipliers at ``ts_ms``.

    Returns
    -------
    since : tuple of int
        Lower bound of each class's ``risk_since_ms`` (the first class has none: its entry
        is the smallest int64); class ``i`` covers ``[since[i], since[i + 1])``.
    multiplier : tuple of float
        The multiplier each class pays, non-decreasing, the last one the target.

    Contract (PEP 316; CrossHair and tests/verification check it):

    pre: ramp_ms >= 0 and state.base_from > 0 and state.target > 0
    post: __return__[1][-1] == state.target and max(__return__[1]) <= state.target
    post: min(__return__[1]) == base_level(state, ts_ms, ramp_ms)
    """
    base = base_level(state, ts_ms, ramp_ms)
    since = [_MIN_SINCE] + [s for s, _ in state.floors] + [state.changed_ms]
    paid = [base] + [min(state.target, max(base, f)) for _, f in state.floors] + [state.target]
    return tuple(since), tuple(paid)


def multiplier(state: RampState, risk_since_ms: int, ts_ms: int, ramp_ms: int) -> float:
    """Maintenance multiplier of a position whose risk dates from ``risk_since_ms``.

    Contract (PEP 316; CrossHair and tests/verification check it):

    pre: ramp_ms >= 0 and state.base_from > 0 and state.target > 0
    post: risk_since_ms < state.changed_ms or __return__ == state.target
    post: base_level(state, ts_ms, ramp_ms) <= __return__ <= state.target
    """
    if risk_since_ms >= state.changed_ms:
        return state.target
    base = base_level(state, ts_ms, ramp_ms)
    k = bisect.bisect_right([s for s, _ in state.floors], risk_since_ms) - 1
    if k < 0:
        return base
    return min(state.target, max(base, state.floors[k][1]))


def retarget(
    state: RampState, target: float, ts_ms: int, ramp_ms: int, max_classes: int
) -> RampState:
    """The state after the effective target becomes ``target`` at ``ts_ms``.

    Pre: ``ts_ms >= state.changed_ms``. Post: unchanged if ``target == state.target``;
    otherwise every existing class keeps paying what it paid (capped at ``target`` for a
    relaxation), the base restarts from its current level (a tightening while it still ramps
    keeps its schedule toward the new target instead: never slower), positions opened from
    ``ts_ms``
    on pay ``target``, and at most ``max_classes`` classes remain (the two closest floors
    merge into the higher one, which can only raise a requirement).

    Contract (PEP 316; CrossHair and tests/verification check it):

    pre: ts_ms >= state.changed_ms and ramp_ms >= 0 and max_classes >= 3
    pre: state.base_from > 0 and state.target > 0 and target > 0
    pre: _well_formed(state)
    post: _well_formed(__return__)
    post: target != state.target or __return__ is state
    post: __return__.target == target and multiplier(__return__, ts_ms, ts_ms, ramp_ms) == target
    post: all(min(target, multiplier(state, s, ts_ms, ramp_ms)) <= multiplier(__return__, s, ts_ms, ramp_ms) <= max(target, multiplier(state, s, ts_ms, ramp_ms)) for s in _probes(state, ts_ms) + _probes(__return__, ts_ms))
    """  # noqa: E501
    if target == state.target:
        return state
    base = base_level(state, ts_ms, ramp_ms)
    paying = [(s, min(state.target, max(base, f))) for s, f in state.floors]
    paying.append((state.changed_ms, state.target))
    if target < state.target:
        base = min(base, target)
        paying = [(s, min(f, target)) for s, f in paying]
    floors: list[tuple[int, float]] = []
    for since, floor in paying:
        if floor <= base or since >= ts_ms:
            continue  # dominated by the base, or an empty class
        if floors and floors[-1][1] == floor:
            continue  # same level as the class before: one class
        floors.append((since, floor))
    while len(floors) > max(1, max_classes - 2):
        gaps = [floors[i + 1][1] - floors[i][1] for i in range(len(floors) - 1)]
        i = gaps.index(min(gaps))
        floors[i : i + 2] = [(floors[i][0], floors[i + 1][1])]
    # A tightening while the base still ramps keeps the base's schedule and only raises its
    # destination: restarting it from its level at ts_ms would slow it (the slope (target -
    # base) / ramp can be below the old one), so the oldest positions would pay less later
    # than with no change at all (z3 found it: an expiry to a fallback just above the target
    # relaxed them, tests/verification/test_ramp_z3.py). Same start, higher target: never
    # below the old path at any time, and at the new target by the old path's end.
    still_ramping = target > state.target and base < state.target
    return RampState(
        target=target,
        base_from=state.base_from if still_ramping else base,
        base_start_ms=state.base_start_ms if still_ramping else ts_ms,
        changed_ms=ts_ms,
        floors=tuple(floors),
    )


def at_time(
    state: RampState,
    params: SnapshotTerms | None,
    trusted: float | None,
    asset: FallbackTerms,
    ts_ms: int,
    ramp_ms: int,
    max_classes: int,
) -> RampState:
    """The ramp in force at ``ts_ms``, with an expiry since the last snapshot applied.

    A usable snapshot that expires at ``valid_until`` turns the target into the conservative
    fallback at that instant, without an event; this applies that change (a tightening or
    nothing: expiry never relaxes) so every reader sees the same ramp at ``ts_ms``.

    Contract (PEP 316; CrossHair and tests/verification check it):

    pre: ts_ms >= state.changed_ms and ramp_ms >= 0 and max_classes >= 3
    pre: state.base_from > 0 and state.target > 0 and _well_formed(state)
    post: __return__.target >= state.target
    post: all(multiplier(__return__, s, ts_ms, ramp_ms) >= multiplier(state, s, ts_ms, ramp_ms) for s in _probes(state, ts_ms) + _probes(__return__, ts_ms))
    """  # noqa: E501
    if params is None or params.status not in ("ok", "fallback"):
        return state
    expiry = params.valid_until_ms
    if ts_ms <= expiry or state.changed_ms > expiry:
        return state
    fallback = target_multiplier(params, asset, expiry + 1, trusted)
    return retarget(state, max(fallback, state.target), expiry, ramp_ms, max_classes)


_MIN_SINCE = -(2**63)


def _well_formed(state: RampState) -> bool:
    """The invariant of every state :meth:`RampState.start` and :func:`retarget` build (so of
    every state the engine holds): the base starts no later than the last change and lies in
    ``(0, target]``; the floors are strictly ascending in both time and level, every ``since``
    before the last change, every level in ``(base_from, target]``. :func:`retarget`'s
    contract requires it and proves it is kept (the contracts assume reachable states)."""
    since = [s for s, _ in state.floors]
    levels = [f for _, f in state.floors]
    return (
        state.base_start_ms <= state.changed_ms
        and 0 < state.base_from <= state.target
        and all(since[i] < since[i + 1] for i in range(len(since) - 1))
        and all(levels[i] < levels[i + 1] for i in range(len(levels) - 1))
        and all(s < state.changed_ms for s in since)
        and all(state.base_from < f <= state.target for f in levels)
    )


def _probes(state: RampState, ts_ms: int) -> tuple[int, ...]:
    """One ``risk_since_ms`` in every class of ``state``, and ``ts_ms`` (for the contracts).

    Every position of a class pays the same, so the contracts that compare what positions pay
    before and after a change need only these points (the classes' lower bounds).
    """
    return (_MIN_SINCE, *(since for since, _ in state.floors), state.changed_ms, ts_ms)
