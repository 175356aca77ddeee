"""The one walk-forward splitter every model, tuner and report uses.

Splits are by time and pooled across assets: a fold is a calendar block of test bars
``[test_start, test_end)`` plus the training rows allowed for it. A row ``t`` carries the
target ``RV(t, t+H]``, known only at the close of bar ``t+H``. A forecast for a test row
``s`` is made at the close of bar ``s``, so a training row may be used only if its target is
known by then: ``t + H <= s``. The **purge** (default ``H`` bars) enforces exactly that, and
an extra **embargo** widens the gap for serial dependence beyond the target window.

Example
-------
>>> import pandas as pd
>>> sp = WalkForwardSplitter("2024-07-01", "2024-09-01", horizon=24, refit="MS")
>>> [f.test_start.strftime("%Y-%m") for f in sp.folds()]
['2024-07', '2024-08']
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Literal

import numpy as np
import pandas as pd

from contracts.timestamps import utc_timestamp
from features.bars import interval_to_timedelta
from models.errors import ModelsError

WindowKind = Literal["expanding", "rolling"]


class SplitError(ModelsError, ValueError):
    """A walk-forward configuration or a frame handed to the splitter is unusable."""


@dataclass(frozen=True)
class Fold:
    """One refit of the walk-forward: train on ``[train_start, train_end)``, test the block.

    All bounds are UTC bar-open times; ``train_end`` and ``test_end`` are exclusive.
    ``train_start`` is ``None`` for an expanding window (all history).
    """

    index: int
    train_start: pd.Timestamp | None
    train_end: pd.Timestamp
    test_start: pd.Timestamp
    test_end: pd.Timestamp


class WalkForwardSplitter:
    """Walk-forward folds with a refit schedule, expanding or rolling window, purge, embargo.

    Parameters
    ----------
    test_start, test_end
        The evaluated period, ``[test_start, test_end)`` (UTC; naive values are read as UTC).
    horizon
        Target window ``H`` in bars; the default purge.
    interval
        Bar interval, e.g. ``"1h"``.
    refit
        Pandas offset alias of the refit schedule: ``"MS"`` (month start, the default),
        ``"QS"``, ``"W-MON"`` ... Each refit starts a fold; its model predicts until the next.
    window
        ``"expanding"`` (all history) or ``"rolling"`` (the last ``train_days``).
    train_days
        Length of the rolling window in days; required for ``"rolling"``.
    purge
        Bars removed before each test block so no training target overlaps it; defaults to
        ``horizon`` and may not be smaller.
    embargo
        Extra bars removed after the purge (serial dependence beyond the target window).
    """

    def __init__(
        self,
        test_start: str | pd.Timestamp,
        test_end: str | pd.Timestamp,
        horizon: int = 24,
        interval: str = "1h",
        refit: str = "MS",
        window: WindowKind = "expanding",
        train_days: int | None = None,
        purge: int | None = None,
        embargo: int = 0,
    ) -> None:
        self.test_start = test_start
        self.test_end = test_end
        self.horizon = horizon
        self.interval = interval
        self.refit = refit
        self.window = window
        self.train_days = train_days
        self.purge = purge
        self.embargo = embargo
        self._validate()

    # -- public API -------------------------------------------------------------------------

    @property
    def step(self) -> pd.Timedelta:
        """The bar length."""
        return interval_to_timedelta(self.interval)

    @property
    def gap(self) -> pd.Timedelta:
        """Time between the last usable training bar open and a test block start."""
        purge = self.horizon if self.purge is None else self.purge
        return (purge + self.embargo) * self.step

    def folds(self) -> list[Fold]:
        """Return the folds in time order, one per refit."""
        start, end = utc_timestamp(self.test_start), utc_timestamp(self.test_end)
        bounds = pd.date_range(start, end, freq=self.refit, inclusive="both")
        edges = sorted({start, end, *[b for b in bounds if start < b < end]})
        folds = []
        for i, (lo, hi) in enumerate(itertools.pairwise(edges)):
            # A row t is trainable iff t + gap <= lo, i.e. t < lo - gap + step.
            train_end = lo - self.gap + self.step
            train_start = None
            if self.window == "rolling":
                train_start = train_end - pd.Timedelta(days=int(self.train_days or 0))
            folds.append(Fold(i, train_start, train_end, lo, hi))
        return folds

    def train_mask(self, ts: pd.Series, fold: Fold) -> np.ndarray:
        """Boolean mask of rows of ``ts`` that fold ``fold`` may train on."""
        values = _ts_values(ts)
        mask = values < fold.train_end
        if fold.train_start is not None:
            mask &= values >= fold.train_start
        return np.asarray(mask)

    def test_mask(self, ts: pd.Series, fold: Fold) -> np.ndarray:
        """Boolean mask of rows of ``ts`` in the test block of ``fold``."""
        values = _ts_values(ts)
        return np.asarray((values >= fold.test_start) & (values < fold.test_end))

    def split(self, ts: pd.Series) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """Yield ``(train_positions, test_positions)`` per fold, pooled across assets.

        Parameters
        ----------
        ts
            Bar-open times of a long frame (any row order, any number of assets).
        """
        for fold in self.folds():
            yield (
                np.flatnonzero(self.train_mask(ts, fold)),
                np.flatnonzero(self.test_mask(ts, fold)),
            )

    def holdout(self, ts: pd.Series, fraction: float = 0.15) -> tuple[np.ndarray, np.ndarray]:
        """Split training rows into a fit part and a later, purged validation slice.

        The validation slice is the last ``fraction`` of the time span of ``ts``; fit rows
        are purged exactly as a test block would be, so early stopping never sees a target
        that overlaps the slice.

        Returns
        -------
        tuple of numpy.ndarray
            ``(fit_positions, validation_positions)``.
        """
        return purged_holdout(ts, fraction, self.gap, self.step)

    def preceding(self, months: int) -> WalkForwardSplitter:
        """The same configuration over the ``months`` before ``test_start`` (for tuning)."""
        start = utc_timestamp(self.test_start)
        return self._with(test_start=start - pd.DateOffset(months=months), test_end=start)

    def with_window(self, window: WindowKind, train_days: int | None) -> WalkForwardSplitter:
        """A copy with another training window (for window tuning)."""
        return self._with(window=window, train_days=train_days)

    def describe(self) -> dict[str, object]:
        """A JSON-able description of the configuration (for reports)."""
        return {
            "test_start": utc_timestamp(self.test_start).isoformat(),
            "test_end": utc_timestamp(self.test_end).isoformat(),
            "horizon": self.horizon,
            "interval": self.interval,
            "refit": self.refit,
            "window": self.window,
            "train_days": self.train_days,
            "purge": self.horizon if self.purge is None else self.purge,
            "embargo": self.embargo,
        }

    # -- helpers ----------------------------------------------------------------------------

    def _with(self, **changes: object) -> WalkForwardSplitter:
        params = {
            "test_start": self.test_start,
            "test_end": self.test_end,
            "horizon": self.horizon,
            "interval": self.interval,
            "refit": self.refit,
            "window": self.window,
            "train_days": self.train_days,
            "purge": self.purge,
            "embargo": self.embargo,
        }
        return WalkForwardSplitter(**{**params, **changes})  # type: ignore[arg-type]

    def _validate(self) -> None:
        start, end = utc_timestamp(self.test_start), utc_timestamp(self.test_end)
        if end <= start:
            raise SplitError(f"test_end {end} must be after test_start {start}")
        if self.horizon < 1:
            raise SplitError(f"horizon must be at least 1 bar, got {self.horizon}")
        if self.purge is not None and self.purge < self.horizon:
            raise SplitError(
                f"purge of {self.purge} bars is shorter than the horizon of {self.horizon}: "
                "training targets would overlap the test block"
            )
        if self.embargo < 0:
            raise SplitError(f"embargo must be >= 0 bars, got {self.embargo}")
        if self.window not in ("expanding", "rolling"):
            raise SplitError(f"window must be 'expanding' or 'rolling', got {self.window!r}")
        if self.window == "rolling" and (self.train_days is None or self.train_days < 1):
            raise SplitError("a rolling window needs train_days >= 1")
        try:
            pd.tseries.frequencies.to_offset(self.refit)
        except ValueError as exc:
            raise SplitError(f"refit {self.refit!r} is not a pandas offset alias") from exc
        interval_to_timedelta(self.interval)


def purged_holdout(
    ts: pd.Series, fraction: float, gap: pd.Timedelta, step: pd.Timedelta
) -> tuple[np.ndarray, np.ndarray]:
    """Positions of fit rows and of the last ``fraction`` of the span, purged by ``gap``.

    A fit row ``t`` is kept only if ``t + gap <= validation_start`` (its target is known
    before the validation slice starts).

    Raises
    ------
    SplitError
        If the fraction is outside (0, 1) or either part would be empty.
    """
    if not 0.0 < fraction < 1.0:
        raise SplitError(f"holdout fraction must be in (0, 1), got {fraction}")
    values = _ts_values(ts)
    lo, hi = values.min(), values.max()
    val_start = (lo + (hi - lo) * (1.0 - fraction)).ceil(step)
    val = np.flatnonzero(values >= val_start)
    fit = np.flatnonzero(values < val_start - gap + step)
    if fit.size == 0 or val.size == 0:
        raise SplitError(
            f"holdout of {fraction:.0%} of {lo}..{hi} leaves no fit or validation rows; "
            "use a longer training window"
        )
    return fit, val


def _ts_values(ts: pd.Series) -> pd.DatetimeIndex:
    values = pd.DatetimeIndex(ts)
    if values.tz is None:
        raise SplitError("ts must be tz-aware UTC bar-open times")
    return values


def target_known(
    ts: pd.Series, as_of: pd.Timestamp, horizon: int, step: pd.Timedelta
) -> np.ndarray:
    """Mask of rows whose ``H``-bar target is known at ``as_of`` (a bar-open time).

    A row ``t`` carries ``RV(t, t+H]``, complete at the close of bar ``t + H``; a forecast for
    the bar opening at ``as_of`` is made at its close, so the target is usable iff
    ``t + H * step <= as_of``. The splitter's purge, the conformal calibration window and
    every fit-before-a-date use this one rule.
    """
    values = _ts_values(ts)
    return np.asarray(values + horizon * step <= as_of)
