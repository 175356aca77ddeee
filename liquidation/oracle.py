"""Oracle guard rails: staleness, deviation from a reference or TWAP, confidence band.

Pure functions: the engine calls them and records their verdicts as events, so the guard state
is part of the log and a replay never re-evaluates a price.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from liquidation.config import OracleGuardConfig

GuardReason = Literal["ok", "stale", "deviation", "confidence", "no_price"]


@dataclass(frozen=True)
class PriceObservation:
    """One oracle update. Prices are integer micro-USD per base unit; ``ts_ms`` epoch ms.

    ``reference`` is an independent source (another venue, a TWAP feed); without it the guard
    compares against the engine's TWAP of previously accepted prices.
    """

    asset: str
    price: int
    ts_ms: int
    confidence: int = 0
    reference: int | None = None


@dataclass(frozen=True)
class GuardVerdict:
    """Result of checking one observation: ``accepted`` and the reason if not."""

    accepted: bool
    reason: GuardReason
    detail: str = ""


def check_observation(
    obs: PriceObservation, twap: int | None, config: OracleGuardConfig
) -> GuardVerdict:
    """Accept or reject a price by its confidence band and its deviation from a reference.

    Parameters
    ----------
    obs : PriceObservation
        The update.
    twap : int or None
        Current TWAP of accepted prices (micro-USD), used when ``obs.reference`` is None.
    config : OracleGuardConfig

    Returns
    -------
    GuardVerdict
    """
    if obs.price <= 0:
        return GuardVerdict(False, "no_price", f"non-positive price {obs.price}")
    band = obs.confidence / obs.price
    if band > config.max_confidence_ratio:
        return GuardVerdict(
            False, "confidence", f"confidence band {band:.4%} > {config.max_confidence_ratio:.4%}"
        )
    reference = obs.reference if obs.reference is not None else twap
    if reference is not None and reference > 0:
        deviation = abs(obs.price - reference) / reference
        if deviation > config.max_deviation:
            source = "reference" if obs.reference is not None else "TWAP"
            return GuardVerdict(
                False,
                "deviation",
                f"{deviation:.4%} from {source} {reference} > {config.max_deviation:.4%}",
            )
    return GuardVerdict(True, "ok")


def is_stale(last_accepted_ms: int | None, now_ms: int, config: OracleGuardConfig) -> bool:
    """True if there is no accepted price or it is older than the heartbeat at ``now_ms``."""
    return last_accepted_ms is None or now_ms - last_accepted_ms > config.heartbeat_ms


def update_twap(
    twap: int | None, twap_ms: int | None, price: int, ts_ms: int, window_ms: int
) -> int:
    """Exponential time-weighted average in integer arithmetic (deterministic on replay).

    The weight of the new price is ``min(1, dt / window_ms)``.
    """
    if twap is None or twap_ms is None:
        return price
    dt = max(0, ts_ms - twap_ms)
    if dt >= window_ms:
        return price
    return twap + (price - twap) * dt // window_ms
