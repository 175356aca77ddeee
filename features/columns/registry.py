"""The catalog entry of a column (:class:`FeatureSpec`) and the collector that records both.

:class:`Columns` keeps each column's values next to its :class:`FeatureSpec`, in the order
the builders add them; :class:`ColumnNames` turns a config's hour windows into bar counts and
column names.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from features.bars import interval_to_timedelta
from features.columns.config import FeatureConfig, FeatureConfigError
from features.volatility import min_valid_count

__all__ = ["ColumnNames", "Columns", "FeatureSpec"]


@dataclass(frozen=True)
class FeatureSpec:
    """One catalog entry: a column of the feature matrix.

    Attributes
    ----------
    name
        Column name.
    family
        ``volatility``, ``har``, ``range``, ``jump``, ``orderflow``, ``liquidity``,
        ``cross_asset``, ``funding``, ``basis``, ``calendar``, or one of the families of
        information that arrives ahead: ``funding_stress``, ``activity``, ``positioning``,
        ``macro_event`` and ``cross_asset_lead``.
    window
        Look-back, e.g. ``"24h"``, ``"1 bar"``, ``"as-of"`` or ``"none"``.
    definition
        One line: what the value is and when it is NaN.
    """

    name: str
    family: str
    window: str
    definition: str


class Columns:
    """Collects feature columns with their catalog entries, in order."""

    def __init__(self) -> None:
        self.specs: list[FeatureSpec] = []
        self.values: dict[str, np.ndarray] = {}

    def add(self, name: str, family: str, window: str, definition: str, values: Any) -> None:
        """Record one column and its catalog entry.

        Raises
        ------
        FeatureConfigError
            If a column of that name was already added (two windows give the same name).
        """
        if name in self.values:
            raise FeatureConfigError(f"feature {name!r} defined twice; check the config windows")
        self.specs.append(FeatureSpec(name, family, window, definition))
        self.values[name] = np.asarray(values, dtype="float64")

    def frame(self, rows: int) -> pd.DataFrame:
        """The collected columns as a frame of ``rows`` rows, in catalog order."""
        for name, values in self.values.items():
            if values.shape != (rows,):
                raise AssertionError(f"feature {name} has {values.shape} values for {rows} rows")
        return pd.DataFrame(self.values, index=pd.RangeIndex(rows))


class ColumnNames:
    """Column naming and hour -> bar conversion for one config and interval."""

    def __init__(self, config: FeatureConfig, interval: str) -> None:
        self.config = config
        self.step = interval_to_timedelta(interval)
        self.interval = interval
        self.ret = f"ret_{interval}"
        self.day = config.har_windows_hours[0]

    def bars(self, hours: int, what: str, least: int = 1) -> int:
        """Number of bars in a window of ``hours``; ``what`` names the window in errors.

        Raises
        ------
        FeatureConfigError
            If the window is not a whole number (>= ``least``) of bars.
        """
        window = pd.Timedelta(hours, unit="h")
        count = window / self.step
        if count != int(count) or count < least:
            raise FeatureConfigError(
                f"{what} window {hours}h is not a whole number (>= {least}) of "
                f"{self.interval} bars; choose windows that are multiples of the interval"
            )
        return int(count)

    def need(self, bars: int) -> int:
        """Valid observations a window of ``bars`` needs (``min_valid_fraction``)."""
        return min_valid_count(bars, self.config.min_valid_fraction)

    @staticmethod
    def rv(hours: int) -> str:
        """Name of the realized-variance column over ``hours``."""
        return f"rv_{hours}h"
