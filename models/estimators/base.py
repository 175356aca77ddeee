"""The estimator contract every variance forecaster follows (scikit-learn style).

* ``X`` is a long frame with ``ts``, ``asset`` and feature columns (the
  :class:`features.build.FeatureSet` frame), ``y`` the forward realized variance over the
  next ``H`` bars (a level, not a log).
* ``predict(X)`` returns the forecast of that variance, one per row of ``X``.
* ``__init__`` only stores parameters; fitted state ends in ``_``; ``clone`` works.
* Capabilities are declared as tags (:data:`DEFAULT_TAGS`), never tested by class or name:
  callers ask ``estimator.get_tag("requires_history")``.

Public ``fit``/``predict`` check the frame once; subclasses implement ``_fit``/``_predict``
(the sktime extension-template split).
"""

from __future__ import annotations

from typing import Any, ClassVar, Final

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, RegressorMixin

from models.errors import ModelsError

DEFAULT_TAGS: Final[dict[str, Any]] = {
    "requires_history": False,
    "tunable_window": False,
    "feature_importance": False,
    "quantile_forecast": False,
    "min_rows_per_asset": 0,
}
"""Capability tags and their defaults.

``requires_history``
    A recursive filter: it must be handed the return history before the rows it forecasts
    (the walk-forward passes every row up to the end of the test block). A fit only
    estimates parameters; between refits the filter runs forward with fixed parameters.
``tunable_window``
    Its training window (expanding or the last N days) is chosen on the months before the
    test period.
``feature_importance``
    After ``fit`` it exposes ``feature_importances_`` (a Series, largest first).
``quantile_forecast``
    It forecasts a quantile of an ``adverse_move`` target, not a variance: its calibration
    is :func:`models.tails.calibrate_quantiles`, not the VaR/ES of a variance forecast.
``min_rows_per_asset``
    It estimates something per asset from that asset's own rows and needs at least this
    many (0: it pools assets and can forecast any). The walk-forward gives an asset with
    fewer training rows in a fold (listed after the fold's cut) no forecast in that fold.
"""

TINY_VARIANCE: Final[float] = 1e-12
"""Forecasts are floored here: a variance forecast must be positive."""


class ForecasterInputError(ModelsError, ValueError):
    """``X`` or ``y`` handed to a forecaster lacks a column or has unusable values."""


class VarianceForecaster(RegressorMixin, BaseEstimator):
    """Shared contract: checks once in ``fit``/``predict``, subclasses do ``_fit``/``_predict``.

    Subclasses set :attr:`_tags` (merged over :data:`DEFAULT_TAGS` along the MRO) and
    return their input columns from :attr:`required_columns`.
    """

    _tags: ClassVar[dict[str, Any]] = {}

    @property
    def required_columns(self) -> tuple[str, ...]:
        """Feature columns ``X`` must carry besides ``ts`` and ``asset``."""
        return ()

    @classmethod
    def get_tag(cls, name: str) -> Any:
        """The value of capability tag ``name`` (see :data:`DEFAULT_TAGS`)."""
        tags = dict(DEFAULT_TAGS)
        for klass in reversed(cls.__mro__):
            tags.update(getattr(klass, "_tags", {}))
        if name not in tags:
            raise KeyError(f"unknown forecaster tag {name!r}; known: {sorted(tags)}")
        return tags[name]

    def fit(self, X: pd.DataFrame, y: Any) -> VarianceForecaster:
        """Estimate the parameters from training rows ``X`` and forward variances ``y``."""
        frame = self._check_frame(X)
        target = np.asarray(y, dtype="float64")
        if target.shape != (len(frame),):
            raise ForecasterInputError(
                f"{type(self).__name__}.fit: y has shape {target.shape}, X has {len(frame)} rows"
            )
        self._fit(frame, target)
        self.n_features_in_ = len(self.required_columns)
        return self

    def predict(self, X: pd.DataFrame) -> np.ndarray:
        """Forecast variance of the next ``H`` bars for every row of ``X``."""
        if not hasattr(self, "n_features_in_"):
            raise ForecasterInputError(f"{type(self).__name__} is not fitted; call fit first")
        frame = self._check_frame(X)
        out = np.asarray(self._predict(frame), dtype="float64")
        return np.maximum(out, TINY_VARIANCE)

    def _check_frame(self, X: pd.DataFrame) -> pd.DataFrame:
        if not isinstance(X, pd.DataFrame):
            raise ForecasterInputError(
                f"{type(self).__name__} needs a DataFrame with ts, asset and features"
            )
        missing = [c for c in ("ts", "asset", *self.required_columns) if c not in X.columns]
        if missing:
            raise ForecasterInputError(
                f"{type(self).__name__}: X lacks columns {missing}; build X with "
                "features.build.build_features"
            )
        return X

    def _fit(self, X: pd.DataFrame, y: np.ndarray) -> None:
        raise NotImplementedError

    def _predict(self, X: pd.DataFrame) -> np.ndarray:
        raise NotImplementedError
