"""A stream of RiskSnapshots as the replay's per-bar multiplier paths, read as the engine reads it.

A dynamic margin policy reaches the replay the way it reaches a venue: as RiskSnapshot dicts
(``dynamargin.risk/1`` or ``/2``), each applied when it is published. This module turns such a
stream into the ``(n_assets, n_bars)`` target multiplier a :class:`~liquidation.simulate.Scenario`
takes, with the engine's own acceptance code and nothing restated:

* a snapshot is parsed by :meth:`MarginParameters.from_risk_snapshot` and bounded by
  :func:`check_bounds`; one that fails either is refused, as :meth:`Engine.apply_snapshot`
  refuses it, and counted;
* it is applied at its ``published_at``; one whose ``update_id`` is not above the last applied
  one is refused (the engine's ordering rule) and counted;
* on application the target becomes :func:`target_multiplier` of the snapshot with the trusted
  multiplier carried as the engine carries it, through :func:`liquidation.ramp.retarget`;
* between snapshots :func:`liquidation.ramp.at_time` applies expiry: past ``valid_until`` the
  target turns into the conservative fallback, and ``stale``/``halted`` snapshots only tighten.

The multiplier of bar ``t`` is the engine's target at the bar's open ``ts_ms[t]``, after every
snapshot published by then: a bar replay samples the engine's state once per bar, so a snapshot
that expires inside a bar takes effect from the next bar's open. (The maintenance ramp of
existing positions is the replay's, :func:`liquidation.simulate.market_ramp`, from this
target path.)
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numpy.typing import NDArray

from liquidation.config import AssetConfig
from liquidation.errors import SnapshotValidationError
from liquidation.rules.multiplier import target_multiplier
from liquidation.rules.ramp import RampState, at_time, retarget
from liquidation.snapshot import MarginParameters, check_bounds, parse_time_ms


@dataclass
class StreamReport:
    """What happened to the snapshots of one stream.

    Attributes
    ----------
    applied
        Snapshots applied, per asset.
    refused
        Refusals per reason (``malformed``, ``out_of_bounds``, ``out_of_order``,
        ``unknown_asset``), with the first message of each.
    bars_expired
        Per asset, bars whose target came from an expired snapshot (or none yet).
    bars_unusable
        Per asset, bars under a ``stale`` or ``halted`` snapshot.
    bars_fallback
        Per asset, bars under a usable snapshot with status ``fallback``.
    """

    applied: dict[str, int] = field(default_factory=dict)
    refused: dict[str, int] = field(default_factory=dict)
    first_refusal: dict[str, str] = field(default_factory=dict)
    bars_expired: dict[str, int] = field(default_factory=dict)
    bars_unusable: dict[str, int] = field(default_factory=dict)
    bars_fallback: dict[str, int] = field(default_factory=dict)

    def refuse(self, reason: str, message: str) -> None:
        """Count one refusal."""
        self.refused[reason] = self.refused.get(reason, 0) + 1
        self.first_refusal.setdefault(reason, message)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {
            "applied": dict(self.applied),
            "refused": dict(self.refused),
            "first_refusal": dict(self.first_refusal),
            "bars_expired": dict(self.bars_expired),
            "bars_unusable": dict(self.bars_unusable),
            "bars_fallback": dict(self.bars_fallback),
        }


def multipliers_from_snapshots(
    snapshots: Iterable[Mapping[str, Any]],
    assets: Sequence[str],
    ts_ms: NDArray[np.int64],
    asset_config: AssetConfig,
    ramp_ms: int,
    max_ramp_classes: int,
) -> tuple[NDArray[np.float64], StreamReport]:
    """The target multiplier in force at each bar's open, per asset (see the module docstring).

    Parameters
    ----------
    snapshots
        RiskSnapshot dicts of any assets, in any order; each carries ``published_at``.
    assets
        Asset rows of the result; snapshots of other assets are refused as ``unknown_asset``.
    ts_ms
        Bar open times, epoch ms, increasing.
    asset_config
        The venue's margin template (fallback multiplier and bounds), as in the engine.
    ramp_ms, max_ramp_classes
        The engine's ramp parameters (:class:`~liquidation.config.EngineConfig`).

    Returns
    -------
    multipliers : ndarray, shape (n_assets, n_bars)
    report : StreamReport
    """
    report = StreamReport()
    rows = {asset: i for i, asset in enumerate(assets)}
    timed: dict[str, list[tuple[int, int, MarginParameters]]] = {a: [] for a in assets}
    for snapshot in snapshots:
        try:
            params = MarginParameters.from_risk_snapshot(snapshot)
            published = _published_ms(snapshot, params)
        except SnapshotValidationError as exc:
            report.refuse("malformed", str(exc))
            continue
        try:
            check_bounds(params, asset_config)
        except SnapshotValidationError as exc:
            report.refuse("out_of_bounds", str(exc))
            continue
        if params.asset not in rows:
            report.refuse("unknown_asset", f"{params.asset} is not replayed")
            continue
        timed[params.asset].append((published, params.update_id, params))
    out = np.empty((len(assets), len(ts_ms)))
    for asset, row in rows.items():
        out[row] = _asset_path(
            asset, sorted(timed[asset], key=lambda x: x[:2]), ts_ms, asset_config,
            ramp_ms, max_ramp_classes, report,
        )  # fmt: skip
    return out, report


def _asset_path(
    asset: str,
    stream: list[tuple[int, int, MarginParameters]],
    ts_ms: NDArray[np.int64],
    cfg: AssetConfig,
    ramp_ms: int,
    max_classes: int,
    report: StreamReport,
) -> NDArray[np.float64]:
    # The engine's per-asset state: the ramp, the last applied snapshot and the trusted value.
    ramp = RampState.start(cfg.fallback_multiplier)
    current: MarginParameters | None = None
    trusted: float | None = None
    applied = expired = unusable = fallback = 0
    path = np.empty(len(ts_ms))
    k = 0
    for t, now in enumerate(ts_ms.tolist()):
        while k < len(stream) and stream[k][0] <= now:
            at, _, params = stream[k]
            k += 1
            if current is not None and params.update_id <= current.update_id:
                report.refuse(
                    "out_of_order",
                    f"{asset} update_id {params.update_id} not above {current.update_id}",
                )
                continue
            # Exactly Engine.apply_snapshot: expiry first, then the new target.
            ramp = at_time(ramp, current, trusted, cfg, at, ramp_ms, max_classes)
            trusted = params.multiplier if params.is_usable(at) else trusted
            ramp = retarget(
                ramp, target_multiplier(params, cfg, at, trusted), at, ramp_ms, max_classes
            )
            current = params
            applied += 1
        path[t] = at_time(ramp, current, trusted, cfg, now, ramp_ms, max_classes).target
        if current is None or now > current.valid_until_ms:
            expired += 1
        elif current.status not in ("ok", "fallback"):
            unusable += 1
        elif current.status == "fallback":
            fallback += 1
    report.applied[asset] = applied
    report.bars_expired[asset] = expired
    report.bars_unusable[asset] = unusable
    report.bars_fallback[asset] = fallback
    return path


def _published_ms(snapshot: Mapping[str, Any], params: MarginParameters) -> int:
    text = snapshot.get("published_at")
    if not isinstance(text, str):
        raise SnapshotValidationError(
            f"RiskSnapshot(asset={params.asset!r}, update_id={params.update_id}): "
            "'published_at' must be an ISO-8601 string (the replay applies it then)"
        )
    try:
        published = parse_time_ms(text)
    except ValueError as exc:
        raise SnapshotValidationError(f"'published_at' = {text!r}: {exc}") from exc
    if published > params.valid_until_ms:
        raise SnapshotValidationError(
            f"RiskSnapshot(asset={params.asset!r}, update_id={params.update_id}): "
            "published after its own expiry"
        )
    return published
