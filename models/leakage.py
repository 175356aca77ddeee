"""Look-ahead check: a value at time ``t`` may not change when the data after ``t`` changes.

:func:`check_no_lookahead` runs a pipeline step (a feature builder, a forecaster's
walk-forward, ...) twice per cutoff: once on the original input and once on the input
whose rows after the cutoff are perturbed (shuffled within each column and asset, and
rescaled) or removed. Every output row at or before the cutoff must be identical. A
column that differs used the future; the report names it with the first asset and time.

The registry gate "must pass the leakage check" calls this function.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Literal

import numpy as np
import pandas as pd

from contracts.timestamps import utc_timestamp
from models.errors import ModelsError

Perturbation = Literal["shuffle", "truncate"]


class LeakageError(ModelsError, AssertionError):
    """A pipeline output at time t depends on data after t."""


@dataclass(frozen=True)
class LeakageReport:
    """Outcome of :func:`check_no_lookahead`.

    Attributes
    ----------
    leaky_columns
        Column -> ``"asset@ts"`` of the first row that changed.
    cutoffs
        The cutoffs that were checked.
    rows_checked
        Output rows compared, summed over cutoffs.
    """

    leaky_columns: dict[str, str] = field(default_factory=dict)
    cutoffs: tuple[pd.Timestamp, ...] = ()
    rows_checked: int = 0

    @property
    def passed(self) -> bool:
        """True when no column used the future."""
        return not self.leaky_columns

    def summary(self) -> str:
        """One line for logs and the review's leakage gate."""
        if self.passed:
            cuts = ", ".join(str(c) for c in self.cutoffs)
            return (
                f"check_no_lookahead: {self.rows_checked} rows unchanged when data after "
                f"{cuts} are shuffled"
            )
        listed = ", ".join(f"{c} (first at {w})" for c, w in self.leaky_columns.items())
        return f"check_no_lookahead: look-ahead in {listed}"

    def raise_if_leaky(self) -> None:
        """Raise :class:`LeakageError` naming the leaky columns."""
        if self.leaky_columns:
            listed = ", ".join(f"{c} (first at {w})" for c, w in self.leaky_columns.items())
            raise LeakageError(
                f"look-ahead detected: {listed}; these values change when only data after "
                "their time changes. Fix the builder so each row uses bars up to its close."
            )


def check_no_lookahead(
    build: Callable[[Any], pd.DataFrame],
    data: Any,
    cutoffs: Sequence[str | pd.Timestamp] | int = 3,
    perturbation: Perturbation = "shuffle",
    columns: Sequence[str] | None = None,
    margin: pd.Timedelta | str | None = None,
    seed: int = 0,
    rtol: float = 1e-9,
) -> LeakageReport:
    """Check that ``build(data)`` rows up to each cutoff ignore everything after it.

    Parameters
    ----------
    build
        The step under test; returns a long frame with ``ts`` and ``asset`` columns.
    data
        Its input: a long frame with ``ts`` (and ``asset``), or an object whose DataFrame
        attributes carry ``ts`` (e.g. :class:`features.market.MarketData`).
    cutoffs
        Times to cut at, or a number of cutoffs spread over the middle of the data.
    perturbation
        ``"shuffle"`` permutes and rescales each numeric input column after the cutoff per
        asset; ``"truncate"`` drops those rows.
    columns
        Output columns to compare; all but ``ts`` and ``asset`` by default.
    margin
        Output rows compared are those with ``ts <= cutoff - margin``. For a frame of bars
        (bar-open ``ts``) 0 is exact. Event-time inputs such as funding settlements are
        legitimately used by the bar whose close they fall on, one interval after its
        ``ts``; ``None`` therefore means the data's ``interval`` when it has one, else 0.
    seed
        Seed of the shuffle.
    rtol
        Relative tolerance for float comparisons (order of summation may differ).

    Returns
    -------
    LeakageReport
        Call :meth:`LeakageReport.raise_if_leaky` to turn a failure into an exception.
    """
    times = _input_times(data)
    if isinstance(cutoffs, int):
        qs = np.linspace(0.4, 0.8, cutoffs)
        points = [times[int(q * (len(times) - 1))] for q in qs]
    else:
        points = [utc_timestamp(c) for c in cutoffs]
    baseline = _keyed(build(data))
    wanted = (
        list(columns)
        if columns is not None
        else [c for c in baseline.columns if c not in ("ts", "asset")]
    )
    rng = np.random.default_rng(seed)
    leaky: dict[str, str] = {}
    checked = 0
    for cutoff in points:
        altered = _alter(data, cutoff, perturbation, rng)
        other = _keyed(build(altered))
        limit = cutoff - _margin(data, margin)
        left = baseline.loc[baseline["ts"] <= limit].set_index(["asset", "ts"]).sort_index()
        right = other.loc[other["ts"] <= limit].set_index(["asset", "ts"]).sort_index()
        if not left.index.equals(right.index):
            leaky.setdefault("<rows>", f"row set changed at cutoff {cutoff}")
            continue
        checked += len(left)
        for column in wanted:
            where = _first_difference(left[column], right[column], rtol)
            if where is not None:
                leaky.setdefault(column, f"{where[0]}@{where[1]}")
    return LeakageReport(leaky, tuple(points), checked)


def _margin(data: Any, margin: pd.Timedelta | str | None) -> pd.Timedelta:
    if margin is not None:
        return pd.Timedelta(margin)
    interval = getattr(data, "interval", None)
    if isinstance(interval, str):
        from features.bars import interval_to_timedelta

        return interval_to_timedelta(interval)
    return pd.Timedelta(0)


def _first_difference(a: pd.Series, b: pd.Series, rtol: float) -> tuple[Any, Any] | None:
    if pd.api.types.is_numeric_dtype(a.dtype) and pd.api.types.is_numeric_dtype(b.dtype):
        x, y = a.to_numpy(dtype="float64"), b.to_numpy(dtype="float64")
        same = np.isclose(x, y, rtol=rtol, atol=0.0, equal_nan=True)
    else:
        same = a.astype(str).to_numpy() == b.astype(str).to_numpy()
    if same.all():
        return None
    return a.index[int(np.argmin(same))]


def _alter(data: Any, cutoff: pd.Timestamp, how: Perturbation, rng: np.random.Generator) -> Any:
    if isinstance(data, pd.DataFrame):
        return _alter_frame(data, cutoff, how, rng)
    changes = {
        name: _alter_frame(value, cutoff, how, rng)
        for name, value in vars(data).items()
        if isinstance(value, pd.DataFrame) and "ts" in value.columns
    }
    return replace(data, **changes)


def _alter_frame(
    frame: pd.DataFrame, cutoff: pd.Timestamp, how: Perturbation, rng: np.random.Generator
) -> pd.DataFrame:
    future = (frame["ts"] > cutoff).to_numpy()
    if how == "truncate":
        return frame.loc[~future].reset_index(drop=True)
    out = frame.copy()
    groups = out["asset"].astype(str).to_numpy() if "asset" in out.columns else np.zeros(len(out))
    numeric = [c for c in out.columns if c != "ts" and pd.api.types.is_numeric_dtype(out[c])]
    for group in np.unique(groups[future]):
        rows = np.flatnonzero(future & (groups == group))
        for column in numeric:
            values = out[column].to_numpy(copy=True)
            shuffled = values[rows][rng.permutation(rows.size)]
            if np.issubdtype(values.dtype, np.floating):
                # Rescaling as well changes even a constant future, so levels cannot hide.
                shuffled = shuffled * 1.7
            values[rows] = shuffled
            out[column] = values
    return out


def _keyed(frame: pd.DataFrame) -> pd.DataFrame:
    if "ts" not in frame.columns:
        raise LeakageError("the step under test must return a frame with a ts column")
    out = frame.copy()
    if "asset" not in out.columns:
        out["asset"] = "__all__"
    out["asset"] = out["asset"].astype(str)
    return out


def _input_times(data: Any) -> pd.DatetimeIndex:
    frames = (
        [data]
        if isinstance(data, pd.DataFrame)
        else [v for v in vars(data).values() if isinstance(v, pd.DataFrame) and "ts" in v.columns]
    )
    if not frames or all(f.empty for f in frames):
        raise LeakageError("no input frame with a ts column to cut")
    stamps = pd.concat([f["ts"] for f in frames], ignore_index=True)
    return pd.DatetimeIndex(stamps.drop_duplicates().sort_values())
