"""Oracle guard rails: staleness, confidence band, deviation from a reference or the TWAP,
re-anchoring after a consistent run of prints, and escalation of a long guard.

Pure functions: the engine calls them and records their verdicts as events, so the guard state
is part of the log and a replay never re-evaluates a price.

The reference is the median of *reference feeds*: any number of named feeds, each quote
carrying the time it was observed. A quote older than ``reference_heartbeat_ms`` is ignored;
with fewer than ``min_reference_feeds`` fresh quotes there is no reference and prints are
compared with the TWAP of accepted prints instead.

**Liveness bound** (the parameters of :class:`~liquidation.config.OracleGuardConfig`): with a
reference, a print within ``max_deviation`` of it is accepted. Without one, ``N =
reanchor_prints`` consecutive prints that pass the confidence check and lie within a relative
band ``x = reanchor_band`` (``max <= (1 + x) * min``) are accepted at the N-th, which
re-anchors the TWAP: a genuine move, one jump or a slide, clears the guard after N prints.
A single wild print, or a feed oscillating beyond the band, never does.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

from liquidation.config import OracleGuardConfig

GuardReason = Literal["ok", "stale", "deviation", "confidence", "no_price"]
Escalation = Literal["none", "alert", "fallback"]


@dataclass(frozen=True)
class PriceObservation:
    """One print of the primary oracle. Prices are integer micro-USD per unit.

    ``reference`` is the reference price the print is checked against (the median of the
    fresh reference feeds), or None to check it against the TWAP.
    """

    asset: str
    price: int
    ts_ms: int
    confidence: int = 0
    reference: int | None = None


@dataclass(frozen=True)
class ReferenceQuote:
    """The last price of one named reference feed and when that feed observed it."""

    feed: str
    price: int
    observed_ms: int


@dataclass(frozen=True)
class GuardVerdict:
    """Result of checking one print: ``accepted``, the reason if not, and whether the print
    was accepted by the re-anchoring rule rather than by its distance to the reference."""

    accepted: bool
    reason: GuardReason
    detail: str = ""
    reanchored: bool = False


def check_observation(
    obs: PriceObservation,
    twap: int | None,
    window: tuple[int, ...],
    config: OracleGuardConfig,
) -> GuardVerdict:
    """Accept or reject a print by its band, its deviation, and the re-anchoring rule.

    Parameters
    ----------
    obs : PriceObservation
        The print (``price > 0`` and ``confidence >= 0``, validated by the caller).
    twap : int or None
        TWAP of accepted prints, used when ``obs.reference`` is None.
    window : tuple of int
        The previous confidence-passing prints, most recent last (see :func:`next_window`).
    config : OracleGuardConfig

    Returns
    -------
    GuardVerdict
        Accepted if within ``max_deviation`` of the reference (or of the TWAP without one, or
        the first price ever); else, without a reference, accepted with ``reanchored`` when
        this print completes a run of ``reanchor_prints`` within ``reanchor_band``.

    Contract (PEP 316; CrossHair and tests/verification check it):

    pre: obs.confidence >= 0 and (twap is None or twap > 0)
    pre: (obs.reference is None or obs.reference > 0) and all(p > 0 for p in window)
    pre: config.reanchor_prints >= 1
    post: not __return__.accepted or obs.price > 0
    post: not __return__.accepted or obs.confidence / obs.price <= config.max_confidence_ratio
    post: not __return__.accepted or __return__.reanchored or _deviation_ok(obs, twap, config)
    post: not __return__.reanchored or (obs.reference is None and _completes_run(obs, window, config))
    post: __return__.accepted or obs.reference is not None or obs.price <= 0 or obs.confidence / obs.price > config.max_confidence_ratio or not _completes_run(obs, window, config)
    """  # noqa: E501
    if obs.price <= 0:
        return GuardVerdict(False, "no_price", f"non-positive price {obs.price}")
    band = obs.confidence / obs.price
    if band > config.max_confidence_ratio:
        return GuardVerdict(
            False, "confidence", f"confidence band {band:.4%} > {config.max_confidence_ratio:.4%}"
        )
    reference = obs.reference if obs.reference is not None else twap
    if reference is None:
        return GuardVerdict(True, "ok")
    deviation = abs(obs.price - reference) / reference
    if deviation <= config.max_deviation:
        return GuardVerdict(True, "ok")
    source = "reference median" if obs.reference is not None else "TWAP"
    detail = f"{deviation:.4%} from {source} {reference} > {config.max_deviation:.4%}"
    if obs.reference is None:
        run = next_window(window, obs.price, config)
        if len(run) == config.reanchor_prints and consistent(run, config.reanchor_band):
            return GuardVerdict(True, "ok", f"re-anchored: {detail}", reanchored=True)
    return GuardVerdict(False, "deviation", detail)


def advance(
    obs: PriceObservation,
    twap: int | None,
    twap_ms: int | None,
    window: tuple[int, ...],
    config: OracleGuardConfig,
) -> tuple[GuardVerdict, int | None, tuple[int, ...]]:
    """The guard's state after one print: ``(verdict, twap, window)``.

    The verdict is :func:`check_observation`'s. Every print that passes the confidence check
    joins the re-anchoring window, *accepted or not* (a rejected print is what a genuine move
    looks like before it is confirmed); a re-anchoring print resets the TWAP to itself, an
    accepted one moves it (:func:`update_twap`), a rejected one leaves it.

    Contract (PEP 316; CrossHair and tests/verification check it). The last line is the
    inductive step of the liveness bound (see :func:`feed`):

    pre: obs.confidence >= 0 and (twap is None or twap > 0)
    pre: (obs.reference is None or obs.reference > 0) and all(p > 0 for p in window)
    pre: config.reanchor_prints >= 1 and config.twap_window_ms > 0
    post: __return__[2] == (next_window(window, obs.price, config) if _passes_confidence(obs, config) else window)
    post: (__return__[1] == obs.price) if __return__[0].reanchored else (__return__[0].accepted or __return__[1] == twap)
    post: __return__[1] is None or __return__[1] > 0
    post: not (obs.reference is None and _passes_confidence(obs, config) and _completes_run(obs, window, config)) or __return__[0].accepted
    """  # noqa: E501
    verdict = check_observation(obs, twap, window, config)
    if verdict.reason not in ("confidence", "no_price"):
        window = next_window(window, obs.price, config)
    if verdict.reanchored:
        twap = obs.price
    elif verdict.accepted:
        twap = update_twap(twap, twap_ms, obs.price, obs.ts_ms, config.twap_window_ms)
    return verdict, twap, window


def feed(
    prints: tuple[PriceObservation, ...],
    twap: int | None,
    twap_ms: int | None,
    window: tuple[int, ...],
    config: OracleGuardConfig,
) -> tuple[GuardVerdict, ...]:
    """The verdicts of a sequence of prints from a given guard state (:func:`advance` folded).

    **Bounded liveness**, the property the guard deadlock broke: whatever the state (TWAP,
    window), if the last ``N = reanchor_prints`` prints carry no reference, pass the confidence
    check and stay within the band ``x = reanchor_band`` (``max <= (1 + x) * min``), the last
    print is accepted, so the guard clears at the N-th print of a steady feed.

    Contract (PEP 316; CrossHair and tests/verification check it):

    pre: twap is None or twap > 0
    pre: all(p > 0 for p in window) and config.reanchor_prints >= 1 and config.twap_window_ms > 0
    pre: all(o.confidence >= 0 and (o.reference is None or o.reference > 0) for o in prints)
    post: len(__return__) == len(prints)
    post: not _steady_tail(prints, config) or __return__[-1].accepted
    """
    verdicts = []
    twap_ms_now = twap_ms
    for obs in prints:
        verdict, new_twap, window = advance(obs, twap, twap_ms_now, window, config)
        if verdict.accepted:  # the engine stamps the TWAP with accepted prints only
            twap_ms_now = obs.ts_ms
        twap = new_twap
        verdicts.append(verdict)
    return tuple(verdicts)


def _passes_confidence(obs: PriceObservation, config: OracleGuardConfig) -> bool:
    """True if the print has a positive price and a narrow enough confidence band."""
    return obs.price > 0 and obs.confidence / obs.price <= config.max_confidence_ratio


def _steady_tail(prints: tuple[PriceObservation, ...], config: OracleGuardConfig) -> bool:
    """True if the last ``reanchor_prints`` prints have no reference, pass the confidence
    check and lie within ``reanchor_band`` (the premise of the liveness bound)."""
    tail = prints[-config.reanchor_prints :]
    return (
        len(prints) >= config.reanchor_prints
        and all(o.reference is None and _passes_confidence(o, config) for o in tail)
        and consistent(tuple(o.price for o in tail), config.reanchor_band)
    )


def next_window(window: tuple[int, ...], price: int, config: OracleGuardConfig) -> tuple[int, ...]:
    """The last ``reanchor_prints`` confidence-passing prints after ``price`` joins them.

    Contract (PEP 316; CrossHair and tests/verification check it):

    pre: config.reanchor_prints >= 1
    post: __return__[-1] == price
    post: len(__return__) == min(len(window) + 1, config.reanchor_prints)
    """
    return (*window, price)[-config.reanchor_prints :]


def consistent(prints: tuple[int, ...], band: float) -> bool:
    """True if ``max(prints) <= (1 + band) * min(prints)``.

    Contract (PEP 316; CrossHair and tests/verification check it):

    pre: len(prints) > 0 and all(p > 0 for p in prints) and band >= 0
    post: __return__ == all(p <= (1.0 + band) * min(prints) for p in prints)
    """
    return max(prints) <= (1.0 + band) * min(prints)


def _deviation_ok(obs: PriceObservation, twap: int | None, config: OracleGuardConfig) -> bool:
    """True if a print lies within ``max_deviation`` of its reference, or has none (contracts)."""
    reference = obs.reference if obs.reference is not None else twap
    return reference is None or abs(obs.price - reference) / reference <= config.max_deviation


def _completes_run(
    obs: PriceObservation, window: tuple[int, ...], config: OracleGuardConfig
) -> bool:
    """True if the print completes ``reanchor_prints`` prints within ``reanchor_band``."""
    run = next_window(window, obs.price, config)
    return len(run) == config.reanchor_prints and consistent(run, config.reanchor_band)


def reference_price(
    quotes: Mapping[str, ReferenceQuote], now_ms: int, config: OracleGuardConfig
) -> int | None:
    """Median of the fresh reference quotes at ``now_ms``, or None without a quorum.

    A quote is fresh if it was observed at most ``reference_heartbeat_ms`` before
    ``now_ms``. With an even count the median is the floor of the two middle quotes' mean.

    Contract (PEP 316; CrossHair and tests/verification check it):

    post: __return__ is None or min(q.price for q in quotes.values()) <= __return__ <= max(q.price for q in quotes.values())
    """  # noqa: E501
    fresh = sorted(
        q.price
        for q in quotes.values()
        if 0 <= now_ms - q.observed_ms <= config.reference_heartbeat_ms
    )
    if len(fresh) < config.min_reference_feeds or not fresh:
        return None
    middle = len(fresh) // 2
    if len(fresh) % 2:
        return fresh[middle]
    return (fresh[middle - 1] + fresh[middle]) // 2


def escalation(
    guarded_since_ms: int | None,
    alerted: bool,
    reference: int | None,
    now_ms: int,
    config: OracleGuardConfig,
) -> Escalation:
    """What a guard that started at ``guarded_since_ms`` calls for at ``now_ms``.

    ``"fallback"`` once it has lasted ``fallback_after_ms`` and a reference quorum exists
    (the mark then follows the reference median); else ``"alert"`` once it has lasted
    ``alert_after_ms`` and no alert was logged yet; else ``"none"``.

    Contract (PEP 316; CrossHair and tests/verification check it):

    post: __return__ != 'fallback' or reference is not None
    post: guarded_since_ms is not None or __return__ == 'none'
    """
    if guarded_since_ms is None:
        return "none"
    elapsed = now_ms - guarded_since_ms
    if elapsed >= config.fallback_after_ms and reference is not None:
        return "fallback"
    if elapsed >= config.alert_after_ms and not alerted:
        return "alert"
    return "none"


def is_stale(last_accepted_ms: int | None, now_ms: int, config: OracleGuardConfig) -> bool:
    """True if there is no accepted price or it is older than the heartbeat at ``now_ms``.

    Contract (PEP 316; CrossHair and tests/verification check it):

    post: __return__ or now_ms - last_accepted_ms <= config.heartbeat_ms
    """
    return last_accepted_ms is None or now_ms - last_accepted_ms > config.heartbeat_ms


def update_twap(
    twap: int | None, twap_ms: int | None, price: int, ts_ms: int, window_ms: int
) -> int:
    """Exponential time-weighted average in integer arithmetic (deterministic on replay).

    The weight of the new price is ``min(1, dt / window_ms)``.

    Contract (PEP 316; CrossHair and tests/verification check it):

    pre: price > 0 and (twap is None or twap > 0) and window_ms > 0
    post: twap is None or twap_ms is None or min(twap, price) <= __return__ <= max(twap, price)
    """
    if twap is None or twap_ms is None:
        return price
    dt = max(0, ts_ms - twap_ms)
    if dt >= window_ms:
        return price
    return twap + (price - twap) * dt // window_ms
