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

from contracts.timestamps import utc_timestamp
from liquidation.simulate import ReplayInputError, ReplaySeries

METRIC_KEYS: tuple[str, ...] = (
    "liquidations",
    "positions_liquidated",
    "full_closeouts",
    "liquidated_notional",
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
        The :data:`METRIC_KEYS` plus ``n_bars``. ``insurance_drawdown`` is the largest fall of
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
        "liquidations": int(series.liquidations[mask].sum()),
        "positions_liquidated": int(series.positions_liquidated[mask].sum()),
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
