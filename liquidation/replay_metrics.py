"""Risk and capital-efficiency metrics of a replay, overall and per stress window.

Every metric is a plain function of one :class:`~liquidation.simulate.ReplaySeries` restricted
to a time window, so the same code scores the whole replay and each crash.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from numpy.typing import NDArray

from contracts.timestamps import utc_timestamp
from liquidation.simulate import ReplayInputError, ReplaySeries

METRIC_KEYS: tuple[str, ...] = (
    "positions_liquidated",
    "liquidated_notional",
    "waterfall_steps",
    "full_closeouts",
    "bad_debt",
    "insurance_drawdown",
    "adl_events",
    "adl_absorbed",
    "socialized_loss",
    "mean_im",
    "mean_open_notional",
    "mean_imf",
    "multiplier_changes",
    "mean_multiplier",
    "opened",
    "topups",
    "topup_collateral",
    "fee_income",
)
"""Stable metric names (JSON keys) produced by :func:`window_metrics`."""


@dataclass(frozen=True)
class Window:
    """A named UTC window ``[start, end)``."""

    name: str
    start: pd.Timestamp
    end: pd.Timestamp

    @classmethod
    def from_dates(cls, name: str, first_day: str, last_day: str) -> Window:
        """Window covering whole days ``first_day .. last_day`` (both inclusive)."""
        start = utc_timestamp(first_day)
        end = utc_timestamp(last_day) + pd.Timedelta(days=1)
        if end <= start:
            raise ReplayInputError(f"window {name!r}: {last_day} is before {first_day}")
        return cls(name, start, end)


STRESS_WINDOWS: tuple[Window, ...] = (
    Window.from_dates("2020-03-covid", "2020-03-12", "2020-03-13"),
    Window.from_dates("2021-05-china", "2021-05-19", "2021-05-20"),
    Window.from_dates("2022-06-celsius", "2022-06-13", "2022-06-18"),
    Window.from_dates("2022-11-ftx", "2022-11-08", "2022-11-10"),
)
"""The stress windows of the evaluation protocol (March 2020, May 2021, June 2022, Nov 2022)."""


def parse_window(text: str) -> Window:
    """Parse ``NAME=YYYY-MM-DD..YYYY-MM-DD`` or ``YYYY-MM-DD..YYYY-MM-DD`` (inclusive days)."""
    name, _, span = text.rpartition("=")
    first, sep, last = span.partition("..")
    if not sep or not first or not last:
        raise ReplayInputError(
            f"window {text!r}: expected NAME=YYYY-MM-DD..YYYY-MM-DD (days inclusive)"
        )
    try:
        return Window.from_dates(name or span, first, last)
    except ValueError as exc:
        raise ReplayInputError(f"window {text!r}: {exc}") from exc


def window_metrics(series: ReplaySeries, window: Window | None = None) -> dict[str, float]:
    """Metrics of ``series`` over ``window`` (the whole replay when None).

    Returns
    -------
    dict
        The :data:`METRIC_KEYS` plus ``n_bars``. The headline counts are
        ``positions_liquidated`` (positions hit at least once) and ``liquidated_notional``;
        ``waterfall_steps`` counts every partial or full step (forced de-risking inflates
        it). ``topups`` counts top-ups and ``topup_collateral`` sums what they deposit
        (USD): a policy cannot look cheap by making traders top up. ``fee_income`` is the
        trading fees collected (USD). ``insurance_drawdown`` is the largest fall of
        the fund from its running peak (USD, peak taken from the window start);
        ``mean_im`` is the time mean of posted initial margin at the bar closes;
        ``multiplier_changes`` counts changes of the target multiplier summed over assets.
        Empty windows give ``n_bars = 0`` and zeros.
    """
    mask = _mask(series.ts_ms, window)
    n = int(mask.sum())
    if n == 0:
        return {"n_bars": 0, **{k: 0.0 for k in METRIC_KEYS}}
    idx = np.flatnonzero(mask)
    first = idx[0]
    fund_before = series.fund[first - 1] if first > 0 else series.fund_seed
    fund = np.concatenate([[fund_before], series.fund[mask]])
    drawdown = float(np.max(np.maximum.accumulate(fund) - fund))
    mult = series.multiplier[:, max(first - 1, 0) : idx[-1] + 1]
    changes = int(np.count_nonzero(np.diff(mult, axis=1))) if mult.shape[1] > 1 else 0
    im = float(series.initial_margin[mask].mean())
    notional = float(series.open_notional[mask].mean())
    return {
        "n_bars": n,
        "positions_liquidated": int(series.positions_liquidated[mask].sum()),
        "waterfall_steps": int(series.liquidations[mask].sum()),
        "full_closeouts": int(series.full_closeouts[mask].sum()),
        "liquidated_notional": float(series.liquidated_notional[mask].sum()),
        "bad_debt": float(series.bad_debt[mask].sum()),
        "insurance_drawdown": drawdown,
        "adl_events": int(series.adl_events[mask].sum()),
        "adl_absorbed": float(series.adl_absorbed[mask].sum()),
        "socialized_loss": float(series.socialized[mask].sum()),
        "mean_im": im,
        "mean_open_notional": notional,
        "mean_imf": im / notional if notional > 0 else 0.0,
        "multiplier_changes": changes,
        "mean_multiplier": float(series.multiplier[:, mask].mean()),
        "opened": int(series.opened[mask].sum()),
        "topups": int(series.topups[mask].sum()),
        "topup_collateral": float(series.topup_collateral[mask].sum()),
        "fee_income": float(series.fee_income[mask].sum()),
    }


def series_metrics(
    series: ReplaySeries, windows: Sequence[Window] = STRESS_WINDOWS
) -> dict[str, Any]:
    """``{"overall": {...}, "windows": {name: {...}}}`` for one scenario.

    Windows that do not overlap the replay are kept with ``n_bars = 0`` so JSON keys are stable.
    """
    return {
        "overall": window_metrics(series),
        "windows": {w.name: window_metrics(series, w) for w in windows},
    }


def across_seeds(per_seed: Sequence[Mapping[str, float]]) -> dict[str, dict[str, float]]:
    """Mean, standard deviation (ddof 1; 0 for one seed), min and max of each metric."""
    if not per_seed:
        raise ReplayInputError("across_seeds needs at least one seed's metrics")
    return {key: spread([float(m[key]) for m in per_seed]) for key in per_seed[0]}


def spread(values: Sequence[float]) -> dict[str, float]:
    """Mean, standard deviation (ddof 1; 0 for one value), min and max of ``values``."""
    array = np.asarray(values, dtype=float)
    return {
        "mean": float(array.mean()),
        "std": float(array.std(ddof=1)) if len(array) > 1 else 0.0,
        "min": float(array.min()),
        "max": float(array.max()),
    }


def _mask(ts_ms: np.ndarray, window: Window | None) -> np.ndarray:
    if window is None:
        return np.ones(len(ts_ms), dtype=bool)
    start = window.start.value // 1_000_000
    end = window.end.value // 1_000_000
    return (ts_ms >= start) & (ts_ms < end)


FIRST_JUMP_LOOKBACK_MS: int = 24 * 3_600_000
"""A bad-debt bar is a first jump if the static run had none in the 24 h before it."""
GAIN_SPLITS: tuple[str, ...] = ("overall", "first_jump", "aftershock")
"""The bar sets :func:`oracle_gain_captured` scores."""
MIN_ORACLE_GAIN: float = 0.05
"""Below this ``1 - oracle / static`` the oracle's gain is too small to divide by."""


def first_jump_bars(
    static: ReplaySeries, interval_ms: int, lookback_ms: int = FIRST_JUMP_LOOKBACK_MS
) -> NDArray[np.bool_]:
    """Bars with bad debt in ``static`` and none in its previous ``lookback_ms``.

    Parameters
    ----------
    static
        The equal-margin static run of one seed: its bad debt defines the bar set.
    interval_ms
        Bar length.
    lookback_ms
        The calm that must precede a first jump (24 h).

    Returns
    -------
    numpy.ndarray of bool, shape (n_bars,)
    """
    bad = static.bad_debt > 0
    lag = max(1, int(lookback_ms // interval_ms))
    count = np.concatenate([[0], np.cumsum(bad)])
    idx = np.arange(len(bad))
    before = count[idx] - count[np.maximum(idx - lag, 0)]
    return bad & (before == 0)


def first_jump_sets(
    reference: Sequence[ReplaySeries], interval_ms: int
) -> dict[int, NDArray[np.bool_]]:
    """The first-jump bars of each seed, defined once for a whole comparison.

    ``reference`` is the run's ``static`` policy at the base IMF (one run per seed): every
    policy, the static at its mean margin and the oracle at its mean margin are then scored
    on the same bars of a seed (:func:`oracle_gain_captured`), so the split cannot differ
    between the policies compared.
    """
    return {r.seed: first_jump_bars(r, interval_ms) for r in reference}


def oracle_gain_captured(
    policy: Sequence[ReplaySeries],
    static: Sequence[ReplaySeries],
    oracle: Sequence[ReplaySeries],
    first_jump: Mapping[int, NDArray[np.bool_]],
) -> dict[str, dict[str, Any]]:
    """Share of the oracle's bad-debt gain over static that a policy captures, per bar set.

    Per seed and bar set ``B``: ``(1 - P/S) / (1 - O/S)`` with ``P``, ``S``, ``O`` the bad
    debt over ``B`` of the policy, of the static at the policy's mean margin and of the oracle
    at the policy's mean margin. The sets: ``overall`` (every bar), ``first_jump`` (that
    seed's set in ``first_jump``, :func:`first_jump_sets`: one set per seed for every policy
    of the comparison) and ``aftershock`` (every other bar), so the two splits partition the
    replay and one bar set scores all three runs. A seed's ratio is None where ``S == 0`` or
    ``1 - O/S <`` :data:`MIN_ORACLE_GAIN`.

    Parameters
    ----------
    policy, static, oracle
        Runs of the same seeds, in the same order.
    first_jump
        Per seed, the first-jump bars (:func:`first_jump_sets`).

    Returns
    -------
    dict
        Per split: ``mean`` (of the per-seed ratios that exist, None if none does),
        ``std``, ``seeds`` (the per-seed ratios), ``n`` (how many exist), the bad-debt
        sums ``policy``, ``static``, ``oracle`` (means over seeds), ``bars`` (mean number
        of bars in the set), and the policy's bad debt against the static's on the set:
        ``ratio_seeds`` (per seed ``P/S``, None where ``S == 0``) and ``ratio`` (their mean,
        None if none exists), the "first-jump bad debt against static" of issue #20.
    """
    triples = list(zip(policy, static, oracle, strict=True))
    for p, s, o in triples:
        if not p.seed == s.seed == o.seed:
            raise ReplayInputError(
                f"oracle_gain_captured pairs seeds {p.seed}, {s.seed}, {o.seed}; pass runs of "
                "the same seeds in the same order"
            )
        if p.seed not in first_jump or len(first_jump[p.seed]) != len(p.bad_debt):
            raise ReplayInputError(
                f"oracle_gain_captured: no first-jump set of {len(p.bad_debt)} bars for seed "
                f"{p.seed}; build them with first_jump_sets from the run's static"
            )
    out: dict[str, dict[str, Any]] = {}
    for split in GAIN_SPLITS:
        ratios: list[float | None] = []
        bad_debt_ratios: list[float | None] = []
        sums: dict[str, list[float]] = {"policy": [], "static": [], "oracle": []}
        bars: list[int] = []
        for p, s, o in triples:
            jump = np.asarray(first_jump[p.seed], dtype=bool)
            mask = {"overall": np.ones_like(jump), "first_jump": jump, "aftershock": ~jump}[split]
            bars.append(int(mask.sum()))
            bad = {k: float(r.bad_debt[mask].sum()) for k, r in zip(sums, (p, s, o), strict=True)}
            for k, v in bad.items():
                sums[k].append(v)
            bad_debt_ratios.append(bad["policy"] / bad["static"] if bad["static"] > 0 else None)
            gain = 1 - bad["oracle"] / bad["static"] if bad["static"] > 0 else 0.0
            ratios.append(
                (1 - bad["policy"] / bad["static"]) / gain if gain >= MIN_ORACLE_GAIN else None
            )
        valid = [r for r in ratios if r is not None]
        paired = [r for r in bad_debt_ratios if r is not None]
        out[split] = {
            "mean": float(np.mean(valid)) if valid else None,
            "std": float(np.std(valid, ddof=1)) if len(valid) > 1 else (0.0 if valid else None),
            "n": len(valid),
            "seeds": ratios,
            "bars": float(np.mean(bars)) if bars else 0.0,
            "ratio_seeds": bad_debt_ratios,
            "ratio": float(np.mean(paired)) if paired else None,
            **{k: float(np.mean(v)) for k, v in sums.items()},
        }
    return out
