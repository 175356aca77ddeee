"""Which multiplier a RiskSnapshot gives new risk: status, expiry and the fallback.

A snapshot is *usable* at ``ts`` if its status is ``ok`` or ``fallback`` and ``ts`` is not
past ``valid_until``. A usable snapshot gives its multiplier. An absent, expired, ``stale`` or
``halted`` one gives the conservative fallback: the largest of the configured fallback
multiplier, the *trusted* multiplier (that of the last usable snapshot) and the snapshot's
own. So only a fresh, usable snapshot can relax margin; expiry and bad status only tighten.
"""

from __future__ import annotations

from typing import Final

from liquidation.rules.terms import FallbackTerms, SnapshotTerms

USABLE_STATUSES: Final[frozenset[str]] = frozenset({"ok", "fallback"})


def is_usable(status: str, valid_until_ms: int, ts_ms: int) -> bool:
    """True if ``status`` is ``ok``/``fallback`` and ``ts_ms`` is not past expiry.

    Contract (PEP 316; CrossHair and tests/verification check it):

    post: not __return__ or ts_ms <= valid_until_ms
    """
    return status in USABLE_STATUSES and ts_ms <= valid_until_ms


def target_multiplier(
    params: SnapshotTerms | None,
    asset: FallbackTerms,
    ts_ms: int,
    trusted: float | None = None,
) -> float:
    """The multiplier new risk pays at ``ts_ms`` (see the module docstring).

    Contract (PEP 316; CrossHair and tests/verification check it):

    post: (params is not None and is_usable(params.status, params.valid_until_ms, ts_ms)) or __return__ >= max(asset.fallback_multiplier, trusted or 0.0)
    post: params is None or is_usable(params.status, params.valid_until_ms, ts_ms) or __return__ >= params.multiplier
    """  # noqa: E501
    if params is None:
        return max(asset.fallback_multiplier, trusted or 0.0)
    if is_usable(params.status, params.valid_until_ms, ts_ms):
        return params.multiplier
    return max(asset.fallback_multiplier, trusted or 0.0, params.multiplier)
