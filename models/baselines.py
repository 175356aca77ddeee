"""Baseline variance forecasters: EWMA (RiskMetrics), HAR-RV / HARQ and GARCH / GJR-GARCH.

Every forecaster follows one contract (scikit-learn style, :class:`VarianceForecaster`):

* ``X`` is a long frame with ``ts``, ``asset`` and feature columns (the
  :class:`features.build.FeatureSet` frame), ``y`` the forward realized variance
  ``rv_fwd`` over the next ``H`` bars (a level, not a log).
* ``predict(X)`` returns the forecast of that variance, one per row of ``X``.
* ``__init__`` only stores parameters; fitted state ends in ``_``; ``clone`` works.

Recursive filters (EWMA, GARCH) need the return history before the rows they forecast:
they declare ``requires_history = True`` and are handed every row up to the end of the
test block, not just the test block (the walk-forward runner does this). A fit only
estimates parameters; between refits the filter runs forward with fixed parameters.

Use :func:`make_forecaster` rather than the classes: one factory, typed names.
"""

from __future__ import annotations

from typing import Any, ClassVar, Literal

import numpy as np
import pandas as pd
from scipy.signal import lfilter
from sklearn.base import BaseEstimator, RegressorMixin

ForecasterKind = Literal["ewma", "ewma_rm", "har", "harq", "garch", "gjr", "lgbm"]
BiasCorrection = Literal["lognormal", "smearing", "none"]

HAR_COLUMNS: tuple[str, str, str] = ("har_d", "har_w", "har_m")
"""Feature columns of the HAR components (daily, weekly/7, monthly/30 realized variance)."""

_TINY = 1e-12


class ForecasterInputError(ValueError):
    """``X`` or ``y`` handed to a forecaster lacks a column or has unusable values."""


class VarianceForecaster(RegressorMixin, BaseEstimator):
    """Shared contract: checks once in ``fit``/``predict``, subclasses do ``_fit``/``_predict``.

    Subclasses set ``required_columns`` and, for recursive filters, ``requires_history``.
    """

    required_columns: ClassVar[tuple[str, ...]] = ()
    requires_history: ClassVar[bool] = False

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
        return np.maximum(out, _TINY)

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


# -- EWMA -----------------------------------------------------------------------------------


class EWMAForecaster(VarianceForecaster):
    """RiskMetrics EWMA: ``s2_{t+1} = lam s2_t + (1 - lam) r_t^2``, forecast ``H s2_{t+1}``.

    The EWMA variance is flat over the horizon, so the ``H``-bar variance is ``H`` times the
    one-bar forecast. With ``estimate=True`` the decay ``lam`` is chosen per fit on the
    training rows from ``grid`` by QLIKE against ``y`` (one pooled value).

    Parameters
    ----------
    lam
        Decay per bar (0.94 is RiskMetrics' daily value; used when ``estimate`` is False).
    horizon
        Bars in the forecast window.
    estimate
        Choose ``lam`` on the training data.
    grid
        Candidate decays for ``estimate``.
    return_column
        Column of the bar's log return (known at its close).
    """

    requires_history: ClassVar[bool] = True

    def __init__(
        self,
        lam: float = 0.94,
        horizon: int = 24,
        estimate: bool = False,
        grid: tuple[float, ...] = (0.94, 0.96, 0.97, 0.98, 0.985, 0.99, 0.995),
        return_column: str = "ret_1h",
    ) -> None:
        self.lam = lam
        self.horizon = horizon
        self.estimate = estimate
        self.grid = grid
        self.return_column = return_column

    @property
    def required_columns(self) -> tuple[str, ...]:  # type: ignore[override]
        return (self.return_column,)

    def _fit(self, X: pd.DataFrame, y: np.ndarray) -> None:
        if not 0.0 < self.lam < 1.0:
            raise ForecasterInputError(f"EWMA lam must be in (0, 1), got {self.lam}")
        if not self.estimate:
            self.lam_ = float(self.lam)
            return
        from models.evaluation import qlike

        scores = {}
        for lam in self.grid:
            forecast = self.horizon * _ewma_per_asset(X, self.return_column, lam)
            scores[lam] = float(np.nanmean(qlike(y, forecast)))
        self.lam_ = float(min(scores, key=scores.__getitem__))
        self.scores_ = scores

    def _predict(self, X: pd.DataFrame) -> np.ndarray:
        return self.horizon * _ewma_per_asset(X, self.return_column, self.lam_)


def _ewma_per_asset(X: pd.DataFrame, column: str, lam: float) -> np.ndarray:
    """One-bar-ahead EWMA variance per row; a NaN return leaves the variance unchanged."""
    squared = X[column].astype("float64") ** 2
    # ignore_na=True skips a missing bar instead of decaying through it.
    smoothed = squared.groupby(X["asset"], sort=False, observed=True).transform(
        lambda s: s.ewm(alpha=1.0 - lam, adjust=False, ignore_na=True).mean()
    )
    return smoothed.to_numpy(dtype="float64")


# -- HAR / HARQ -----------------------------------------------------------------------------


class HARForecaster(VarianceForecaster):
    """HAR-RV (Corsi 2009) on log realized variance, optionally HARQ, with bias correction.

    ``log RV_fwd = b0 + b_d log RV_d + b_w log RV_w + b_m log RV_m [+ b_q log RV_d * q] + e``
    with ``q = sqrt(RQ_d) / RV_d`` (demeaned on the training rows) for HARQ (Bollerslev,
    Patton and Quaedvlieg 2016): the daily weight shrinks when RV_d is measured noisily.
    The forecast of the level is ``exp(fit) * c``: ``c = exp(s^2 / 2)`` under a log-normal
    error (``"lognormal"``), the mean of ``exp(residual)`` (``"smearing"``, Duan 1983), or 1.

    Parameters
    ----------
    quarticity
        Add the HARQ interaction (needs the ``rq_24h`` feature).
    pooled
        One regression across assets instead of one per asset.
    bias_correction
        How to go from the log forecast to a variance forecast.
    """

    def __init__(
        self,
        quarticity: bool = False,
        pooled: bool = False,
        bias_correction: BiasCorrection = "lognormal",
    ) -> None:
        self.quarticity = quarticity
        self.pooled = pooled
        self.bias_correction = bias_correction

    @property
    def required_columns(self) -> tuple[str, ...]:  # type: ignore[override]
        return (*HAR_COLUMNS, "rq_24h") if self.quarticity else HAR_COLUMNS

    def _fit(self, X: pd.DataFrame, y: np.ndarray) -> None:
        if self.bias_correction not in ("lognormal", "smearing", "none"):
            raise ForecasterInputError(f"unknown bias_correction {self.bias_correction!r}")
        with np.errstate(divide="ignore", invalid="ignore"):
            log_y = np.log(y)
        self.q_mean_ = float(np.nanmean(_quarticity_ratio(X))) if self.quarticity else 0.0
        design = self._design(X)
        ok = np.isfinite(log_y) & np.all(np.isfinite(design), axis=1)
        keys = self._keys(X)
        self.coef_: dict[str, np.ndarray] = {}
        self.correction_: dict[str, float] = {}
        for key in np.unique(keys[ok]):
            rows = ok & (keys == key)
            if rows.sum() < design.shape[1] * 10:
                raise ForecasterInputError(
                    f"HAR: only {int(rows.sum())} usable training rows for asset {key}; "
                    "lengthen the training window"
                )
            coef, *_ = np.linalg.lstsq(design[rows], log_y[rows], rcond=None)
            resid = log_y[rows] - design[rows] @ coef
            self.coef_[str(key)] = coef
            self.correction_[str(key)] = _bias_factor(resid, self.bias_correction)

    def _predict(self, X: pd.DataFrame) -> np.ndarray:
        design = self._design(X)
        keys = self._keys(X)
        out = np.full(len(X), np.nan)
        for key in np.unique(keys):
            if str(key) not in self.coef_:
                raise ForecasterInputError(
                    f"HAR was not fitted on asset {key}; include it in the training rows"
                )
            rows = keys == key
            out[rows] = np.exp(design[rows] @ self.coef_[str(key)]) * self.correction_[str(key)]
        return out

    def _design(self, X: pd.DataFrame) -> np.ndarray:
        logs = [_safe_log(X[c].to_numpy(dtype="float64")) for c in HAR_COLUMNS]
        columns = [np.ones(len(X)), *logs]
        if self.quarticity:
            columns.append(logs[0] * (_quarticity_ratio(X) - self.q_mean_))
        return np.column_stack(columns)

    def _keys(self, X: pd.DataFrame) -> np.ndarray:
        if self.pooled:
            return np.full(len(X), "__pooled__", dtype=object)
        return X["asset"].astype(str).to_numpy(dtype=object)


def _quarticity_ratio(X: pd.DataFrame) -> np.ndarray:
    rq = X["rq_24h"].to_numpy(dtype="float64")
    rv = X["har_d"].to_numpy(dtype="float64")
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = np.sqrt(np.maximum(rq, 0.0)) / rv
    return np.where(np.isfinite(ratio), ratio, np.nan)


def _bias_factor(resid: np.ndarray, how: BiasCorrection) -> float:
    if how == "lognormal":
        return float(np.exp(0.5 * np.var(resid, ddof=1)))
    if how == "smearing":
        return float(np.mean(np.exp(resid)))
    return 1.0


def _safe_log(values: np.ndarray) -> np.ndarray:
    with np.errstate(divide="ignore", invalid="ignore"):
        out = np.log(values)
    return np.where(np.isfinite(out), out, np.nan)


# -- GARCH ----------------------------------------------------------------------------------


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

    requires_history: ClassVar[bool] = True

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
    def required_columns(self) -> tuple[str, ...]:  # type: ignore[override]
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


# -- factory --------------------------------------------------------------------------------


def make_forecaster(kind: ForecasterKind, horizon: int = 24, **params: Any) -> VarianceForecaster:
    """Build a variance forecaster by name.

    Parameters
    ----------
    kind
        ``"ewma"`` (RiskMetrics form, decay chosen on the training data), ``"ewma_rm"``
        (fixed RiskMetrics decay 0.94),
        ``"har"``, ``"harq"``, ``"garch"`` (GARCH(1,1)-t), ``"gjr"`` (GJR-GARCH-t) or
        ``"lgbm"`` (pooled LightGBM, :class:`models.gbm.GBMForecaster`).
    horizon
        Bars in the forecast window.
    params
        Passed to the estimator's constructor.

    Examples
    --------
    >>> make_forecaster("harq").get_params()["quarticity"]
    True
    """
    if kind == "ewma":
        return EWMAForecaster(horizon=horizon, estimate=True, **params)
    if kind == "ewma_rm":
        return EWMAForecaster(horizon=horizon, **params)
    if kind == "har":
        return HARForecaster(**params)
    if kind == "harq":
        return HARForecaster(quarticity=True, **params)
    if kind == "garch":
        return GARCHForecaster(horizon=horizon, **params)
    if kind == "gjr":
        return GARCHForecaster(asymmetric=True, horizon=horizon, **params)
    if kind == "lgbm":
        from models.gbm import GBMForecaster

        return GBMForecaster(horizon=horizon, **params)
    raise ForecasterInputError(
        f"unknown forecaster {kind!r}; choose one of ewma, ewma_rm, har, harq, garch, gjr, lgbm"
    )
