"""GARCH(1,1) and GJR-GARCH(1,1,1) variance forecasters with Student-t errors (``arch``)."""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np
import pandas as pd
from scipy.signal import lfilter

from models.estimators.base import ForecasterInputError, VarianceForecaster


class GARCHForecaster(VarianceForecaster):
    """GARCH(1,1) or GJR-GARCH(1,1,1) with Student-t errors, fitted per asset with ``arch``.

    ``s2_{t+1} = w + (a + g 1{r_t < 0}) r_t^2 + b s2_t``. The ``H``-bar forecast sums the
    analytic multi-step path ``E s2_{t+h} = s2_bar + p^(h-1) (s2_{t+1} - s2_bar)`` with
    persistence ``p = a + g/2 + b`` (symmetric t errors). Parameters are re-estimated at
    each fit on the last ``fit_bars`` returns; between fits the recursion filters forward
    with fixed parameters. A missing return enters as the unconditional variance.

    Parameters
    ----------
    asymmetric
        GJR leverage term ``g``.
    horizon
        Bars in the forecast window.
    fit_bars
        Returns used for the maximum-likelihood fit (the most recent ones).
    return_column
        Column of the bar's log return.
    """

    _tags: ClassVar[dict[str, Any]] = {"requires_history": True}

    def __init__(
        self,
        asymmetric: bool = False,
        horizon: int = 24,
        fit_bars: int = 17_520,
        return_column: str = "ret_1h",
    ) -> None:
        self.asymmetric = asymmetric
        self.horizon = horizon
        self.fit_bars = fit_bars
        self.return_column = return_column

    @property
    def required_columns(self) -> tuple[str, ...]:
        return (self.return_column,)

    def _fit(self, X: pd.DataFrame, y: np.ndarray) -> None:
        from arch import arch_model

        self.params_: dict[str, dict[str, float]] = {}
        for asset, group in X.groupby("asset", sort=False, observed=True):
            ret = group.sort_values("ts")[self.return_column].to_numpy(dtype="float64")
            ret = ret[np.isfinite(ret)][-self.fit_bars :]
            if ret.size < 500:
                raise ForecasterInputError(
                    f"GARCH: only {ret.size} returns for asset {asset}; need >= 500"
                )
            # arch's optimiser is tuned for percent-scale returns.
            model = arch_model(
                ret * 100.0, mean="Zero", vol="GARCH", p=1, o=int(self.asymmetric), q=1, dist="t"
            )
            result = model.fit(disp="off", show_warning=False)
            params = result.params
            self.params_[str(asset)] = {
                "omega": float(params["omega"]) / 1e4,
                "alpha": float(params["alpha[1]"]),
                "gamma": float(params.get("gamma[1]", 0.0)),
                "beta": float(params["beta[1]"]),
                "nu": float(params["nu"]),
            }

    def _predict(self, X: pd.DataFrame) -> np.ndarray:
        out = np.full(len(X), np.nan)
        positions = np.arange(len(X))
        for asset, group in X.groupby("asset", sort=False, observed=True):
            if str(asset) not in self.params_:
                raise ForecasterInputError(
                    f"GARCH was not fitted on asset {asset}; include it in the training rows"
                )
            order = np.argsort(group["ts"].to_numpy(), kind="stable")
            ret = group[self.return_column].to_numpy(dtype="float64")[order]
            idx = positions[X.index.get_indexer(group.index)][order]
            out[idx] = self._horizon_variance(ret, self.params_[str(asset)])
        return out

    def _horizon_variance(self, ret: np.ndarray, p: dict[str, float]) -> np.ndarray:
        persistence = p["alpha"] + 0.5 * p["gamma"] + p["beta"]
        # Keep the long-run level finite when the fit is integrated (p ~ 1 on hourly data).
        persistence = min(persistence, 0.9999)
        long_run = p["omega"] / (1.0 - persistence)
        shock = np.where(np.isfinite(ret), ret, 0.0)
        weight = p["alpha"] + p["gamma"] * (shock < 0)
        squared = np.where(np.isfinite(ret), shock**2, long_run)
        # s2_{t+1} = w + weight_t r_t^2 + b s2_t, a first-order linear filter in s2.
        drive = p["omega"] + weight * squared
        next_var, _ = lfilter([1.0], [1.0, -p["beta"]], drive, zi=[p["beta"] * long_run])
        h = np.arange(self.horizon)
        path_weight = float(np.sum(persistence**h))
        return self.horizon * long_run + path_weight * (next_var - long_run)
