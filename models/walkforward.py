"""Honest walk-forward evaluation of every forecaster on one test period.

:func:`run_evaluation` does, in order:

1. builds features (or takes them) and the forward targets from the same returns;
2. chooses the training window of forecasters tagged ``tunable_window`` on the
   ``tune_months`` BEFORE the test period only (:mod:`models.window_tuning`);
3. for each forecaster and each refit fold (from a warm-up before the test start), fits on
   the purged training rows of the :class:`~models.splitter.WalkForwardSplitter` and
   forecasts the fold; nothing of a fold's targets enters its fit;
4. calibrates VaR/ES and the sigma interval on the forecaster's own earlier out-of-sample
   forecasts whose outcomes are known at the fold start
   (:func:`models.calibrated.calibrate_walk_forward`);
5. scores the test period (:func:`models.scoring.score_forecasts`): QLIKE, MSE of log RV,
   Mincer–Zarnowitz R², Diebold–Mariano against the best baseline, and the VaR/ES
   backtests on non-overlapping daily forecasts.

Every forecaster is built by :func:`models.factory.build_forecaster` from the spec that
:meth:`EvaluationConfig.spec` gives for its name.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Annotated, Any

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field, model_validator
from sklearn.base import clone

from contracts.forecast import forecast_frame
from contracts.timestamps import utc_timestamp
from features.market import MarketData
from models.calibrated import CalibratedForecaster, calibrate_walk_forward
from models.errors import ModelsError
from models.factory import build_forecaster
from models.scoring import Scoring, score_forecasts
from models.spec import (
    DEFAULT_MODELS,
    NAMED_FORECASTERS,
    CalibrationSpec,
    EstimatorParams,
    ForecasterSpec,
    TargetSpec,
    named_spec,
)
from models.splitter import Fold, WalkForwardSplitter
from models.targets import TARGET_VALUE_COLUMNS, attach_targets
from models.window_tuning import tune_training_windows, tuned_splitter

Progress = Callable[[str], None]


class EvaluationInputError(ModelsError, ValueError):
    """The data handed to the walk-forward cannot support the requested evaluation."""


class EvaluationConfig(BaseModel):
    """Everything that defines a walk-forward evaluation besides its data and target.

    Attributes
    ----------
    models
        Named forecasters compared (keys of :data:`models.spec.NAMED_FORECASTERS`).
    primary
        The challenger: its VaR/ES are backtested and DM compares it to the best baseline
        (every other model).
    refit
        Refit schedule (pandas offset alias, ``MS`` = monthly).
    warmup_months
        Out-of-sample months before the test start whose forecasts seed the conformal
        calibration of the first test fold (never scored).
    tune_months
        Months before the test start on which tunable training windows are chosen.
    train_windows
        Candidate training windows in days for forecasters tagged ``tunable_window``
        (``None`` = expanding).
    daily_anchor_hour
        UTC hour of the bar whose forecast is backtested each day (23: the next calendar
        day), giving non-overlapping ``H = 24`` windows.
    history_days
        Return history handed to recursive filters before each fold (their warm-up).
    calibration
        The calibration part of every compared forecaster.
    estimators
        Estimator parameters replacing a named forecaster's, e.g.
        ``{"lgbm": LGBMParams(n_jobs=2)}``.
    horizons
        Further variance horizons (bars) a training run evaluates beside its target's, each
        gated against HAR in the review (``qlike_vs_har_<H>h``); empty by default.
    tails
        Also evaluate the tail forecasters (:mod:`models.tails`) at the target's horizon
        and ``horizons``, gated on Kupiec coverage per asset; off by default.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    models: tuple[str, ...] = DEFAULT_MODELS
    primary: str = "lgbm"
    refit: str = "MS"
    warmup_months: int = Field(3, ge=1)
    tune_months: int = Field(12, ge=1)
    train_windows: tuple[int | None, ...] = (None, 730, 365)
    daily_anchor_hour: int = Field(23, ge=0, le=23)
    history_days: int = Field(120, ge=1)
    calibration: CalibrationSpec = Field(default_factory=CalibrationSpec)
    estimators: dict[str, EstimatorParams] = Field(default_factory=dict)
    horizons: tuple[Annotated[int, Field(ge=1)], ...] = ()
    tails: bool = False

    @model_validator(mode="after")
    def _consistent(self) -> EvaluationConfig:
        if not self.models:
            raise ValueError("evaluate at least one model")
        if self.primary not in self.models:
            raise ValueError(f"primary {self.primary!r} is not among the models {self.models}")
        unknown = [m for m in (*self.models, *self.estimators) if m not in NAMED_FORECASTERS]
        if unknown:
            raise ValueError(
                f"unknown models {unknown}; choose from {', '.join(NAMED_FORECASTERS)}"
            )
        for name in self.models:
            self.spec(name)  # an estimator override of the wrong kind fails here
        return self

    def spec(self, name: str, target: TargetSpec | None = None) -> ForecasterSpec:
        """The forecaster spec of model ``name`` under this configuration."""
        return named_spec(name, target, self.calibration, self.estimators.get(name))

    def with_models(self, models: Sequence[str], primary: str | None = None) -> EvaluationConfig:
        """A copy comparing ``models`` (the primary defaults to the last of them)."""
        chosen = primary or (self.primary if self.primary in models else models[-1])
        return self.model_copy(update={"models": tuple(models), "primary": chosen})

    def with_threads(self, threads: int) -> EvaluationConfig:
        """A copy whose estimators that take a thread count (``n_jobs``) use ``threads``."""
        estimators = dict(self.estimators)
        for name in self.models:
            params = self.spec(name).estimator
            if "n_jobs" in type(params).model_fields:
                estimators[name] = params.model_copy(update={"n_jobs": threads})
        return self.model_copy(update={"estimators": estimators})

    def describe(self) -> dict[str, Any]:
        """JSON-able form."""
        return self.model_dump(mode="json")


@dataclass
class EvaluationResult:
    """Output of :func:`run_evaluation`.

    Attributes
    ----------
    metrics
        Nested dict; see :meth:`to_json_dict` for the stable keys.
    forecasts
        Long frame over the test period: ``ts, asset, model, variance, rv, ret_fwd, sigma,
        sigma_lower, sigma_upper, var_99, es_99``.
    """

    metrics: dict[str, Any]
    forecasts: pd.DataFrame

    def to_json_dict(self) -> dict[str, Any]:
        """Stable JSON keys.

        ``assets.<SYM>.qlike.<model>``, ``assets.<SYM>.mse_log.<model>``,
        ``assets.<SYM>.mz_r2.<model>``, ``assets.<SYM>.dm_pvalue.<model>`` (vs the best
        baseline), ``assets.<SYM>.dm_stat.<model>``, ``assets.<SYM>.best_baseline``,
        ``assets.<SYM>.var99.{n,exceptions,rate,kupiec_p,christoffersen_p,cc_p}`` over all
        test days, ``assets.<SYM>.var99.zone`` (Basel zone of the last 250 days, with
        ``n_250`` and ``exceptions_250``) and ``zone_scaled`` (zone over all ``n`` days),
        ``assets.<SYM>.es99.{z2,p}``, ``mean.qlike.<model>``, ``mean.mse_log.<model>``,
        ``config``, ``data``, ``tuning``, ``feature_importance``, ``timing``.
        """
        return self.metrics

    def contract_forecasts(self, model_version: str, with_realized: bool = False) -> pd.DataFrame:
        """The forecasts as a Forecast-contract frame (:func:`contracts.forecast.forecast_frame`).

        With ``with_realized`` the realized forward variance is kept as ``rv_fwd`` (what a
        policy replay needs for lead times).
        """
        frame = forecast_frame(self.forecasts, model_version)
        if not with_realized:
            return frame
        realized = self.forecasts[["ts", "asset", "model", "rv"]].rename(columns={"rv": "rv_fwd"})
        return frame.merge(realized, on=["ts", "asset", "model"], how="left")

    def model_forecasts(self, model: str) -> pd.DataFrame:
        """The out-of-sample forecasts of one model (rows of :attr:`forecasts`)."""
        return self.forecasts.loc[self.forecasts["model"] == model].reset_index(drop=True)


def run_evaluation(
    data: MarketData | Any,
    test_start: str | pd.Timestamp,
    test_end: str | pd.Timestamp,
    config: EvaluationConfig | None = None,
    *,
    target: TargetSpec | None = None,
    assets: Sequence[str] | None = None,
    progress: Progress | None = None,
) -> EvaluationResult:
    """Walk-forward evaluation of ``config.models`` on ``[test_start, test_end)``.

    Parameters
    ----------
    data
        A :class:`~features.market.MarketData` (features are built with
        :func:`features.build.build_features`) or a ``FeatureSet``; both carry the bar
        interval. The features must include ``ret_<interval>``, from which the targets are
        built, and the columns each model reads.
    test_start, test_end
        Test period, end exclusive (UTC).
    config
        Models and walk-forward settings.
    target
        What is forecast (default: 24-bar realized variance).
    assets
        Subset of assets; all by default.
    progress
        Called with a short message as work proceeds.

    Returns
    -------
    EvaluationResult
    """
    started = time.perf_counter()
    cfg = config or EvaluationConfig()
    target = target or TargetSpec()
    say = progress or (lambda _msg: None)
    frame, interval = _feature_frame(data, assets, say)
    panel = attach_targets(frame, target, interval)
    test = WalkForwardSplitter(test_start, test_end, horizon=target.horizon, interval=interval)
    _check_coverage(panel, test)
    forecasters = {name: build_forecaster(cfg.spec(name, target), interval) for name in cfg.models}

    timing: dict[str, float] = {"features": time.perf_counter() - started}

    def walk(rows: pd.DataFrame, f: CalibratedForecaster, s: WalkForwardSplitter, n: str):
        return walk_forward_predict(rows, f, s, cfg.history_days, lambda _m: None, n)[0]

    tuning = tune_training_windows(
        panel, test, forecasters, cfg.train_windows, cfg.tune_months, walk, say
    )
    timing["tuning"] = time.perf_counter() - started - timing["features"]

    warm = WalkForwardSplitter(
        utc_timestamp(test_start) - pd.DateOffset(months=cfg.warmup_months),
        test_end,
        horizon=target.horizon,
        interval=interval,
        refit=cfg.refit,
    )
    oos, importance = [], None
    for name, forecaster in forecasters.items():
        t0 = time.perf_counter()
        splitter = tuned_splitter(warm, tuning, name)
        preds, fitted = walk_forward_predict(
            panel, forecaster, splitter, cfg.history_days, say, name
        )
        calibrated = calibrate_walk_forward(
            preds, cfg.calibration, splitter.folds(), target.horizon, interval
        )
        calibrated["model"] = name
        oos.append(calibrated)
        if fitted.get_tag("feature_importance") and (importance is None or name == cfg.primary):
            importance = fitted.feature_importances_
        timing[f"model.{name}"] = time.perf_counter() - t0
    forecasts = pd.concat(oos, ignore_index=True)
    start, end = utc_timestamp(test_start), utc_timestamp(test_end)
    forecasts = forecasts.loc[(forecasts["ts"] >= start) & (forecasts["ts"] < end)]
    forecasts = forecasts.reset_index(drop=True)

    say("scoring")
    metrics = score_forecasts(forecasts, cfg.models, scoring(cfg, target))
    timing["total"] = time.perf_counter() - started
    metrics["config"] = {
        **cfg.describe(),
        "target": target.model_dump(mode="json"),
        "interval": interval,
        "test_start": start.isoformat(),
        "test_end": end.isoformat(),
        "splitter": warm.describe(),
    }
    metrics["data"] = _data_ranges(panel)
    metrics["tuning"] = tuning
    metrics["feature_importance"] = (
        {} if importance is None else {k: float(v) for k, v in importance.head(25).items()}
    )
    metrics["timing"] = {k: round(v, 2) for k, v in timing.items()}
    return EvaluationResult(metrics=metrics, forecasts=forecasts)


def scoring(config: EvaluationConfig, target: TargetSpec) -> Scoring:
    """What :func:`models.scoring.score_forecasts` scores against, for this evaluation."""
    return Scoring(
        primary=config.primary,
        horizon=target.horizon,
        alpha=config.calibration.alpha,
        daily_anchor_hour=config.daily_anchor_hour,
    )


def walk_forward_predict(
    panel: pd.DataFrame,
    forecaster: CalibratedForecaster,
    splitter: WalkForwardSplitter,
    history_days: int,
    say: Progress,
    name: str,
    target: TargetSpec | None = None,
) -> tuple[pd.DataFrame, CalibratedForecaster]:
    """Out-of-sample forecasts of one forecaster over every fold of ``splitter``.

    Each fold fits a fresh clone on the fold's purged training rows with a usable target
    (:meth:`TargetSpec.usable`) and predicts the fold's test rows (forecasters tagged
    ``requires_history`` also see the preceding ``history_days`` of returns, which are
    known at forecast time).

    Parameters
    ----------
    target
        What the forecaster fits (default: the variance target ``rv_fwd``).

    Returns
    -------
    tuple
        Frame ``ts, asset, rv, ret_fwd, variance, fold`` (plus the target column when it is
        not ``rv_fwd``; ``variance`` holds the forecast, whatever the target) and the last
        fitted forecaster.

    A forecaster tagged ``min_rows_per_asset`` gives an asset with fewer training rows in a
    fold (listed after the fold's cut) a NaN forecast in that fold, and says so.

    Raises
    ------
    EvaluationInputError
        If a fold has no training rows or the test period holds no rows.
    """
    parts, fitted = [], None
    ts = panel["ts"]
    # The targets live in the panel for scoring; a model only ever sees feature columns.
    features = [c for c in panel.columns if c not in TARGET_VALUE_COLUMNS]
    target = target or TargetSpec()
    y_column = target.column
    finite_y = target.usable(panel[y_column].to_numpy())
    min_rows = int(forecaster.get_tag("min_rows_per_asset"))
    for fold in splitter.folds():
        train = splitter.train_mask(ts, fold) & finite_y
        test = splitter.test_mask(ts, fold)
        if not test.any():
            continue
        if not train.any():
            raise EvaluationInputError(
                f"model {name}: no training rows before {fold.test_start}; the data start "
                f"{ts.min()} is too late for this test period"
            )
        say(f"{name}: fold {fold.index + 1} {fold.test_start:%Y-%m} ({int(train.sum())} rows)")
        train, unforecast = _assets_with_history(panel, train, test, min_rows)
        if unforecast.any():
            listed = sorted(panel.loc[unforecast, "asset"].astype(str).unique())
            say(f"{name}: no forecast in fold {fold.index + 1} for {listed}: fewer than "
                f"{min_rows} training rows (listed after the fold's cut)")  # fmt: skip
            if not train.any():
                parts.append(_unforecast_rows(panel, fold, unforecast, y_column))
                continue
        model = clone(forecaster)
        model.fit(panel.loc[train, features], panel.loc[train, y_column].to_numpy())
        part = _predict_fold(
            model, panel, features, fold, test & ~unforecast, history_days, y_column
        )
        if unforecast.any():
            part = _with_unforecast_rows(part, panel, fold, unforecast, y_column)
        parts.append(part)
        fitted = model
    if fitted is None:
        raise EvaluationInputError(f"model {name}: the test period holds no rows of the data")
    return pd.concat(parts, ignore_index=True), fitted


# -- steps ----------------------------------------------------------------------------------


def _feature_frame(
    data: Any, assets: Sequence[str] | None, say: Progress
) -> tuple[pd.DataFrame, str]:
    if isinstance(data, MarketData):
        from features.build import build_features

        say("building features")
        market = data.select(assets) if assets else data
        return _rows_of(build_features(market).frame, assets), market.interval
    if hasattr(data, "frame") and hasattr(data, "interval"):
        return _rows_of(data.frame, assets), data.interval
    raise EvaluationInputError(
        f"run_evaluation needs MarketData or a FeatureSet (both carry the bar interval), "
        f"got {type(data).__name__}"
    )


def _rows_of(frame: pd.DataFrame, assets: Sequence[str] | None) -> pd.DataFrame:
    if assets:
        unknown = sorted(set(assets) - set(frame["asset"].astype(str).unique()))
        if unknown:
            raise EvaluationInputError(f"assets {unknown} are not in the data")
        frame = frame.loc[frame["asset"].astype(str).isin(list(assets))]
    return frame.sort_values(["asset", "ts"], kind="stable").reset_index(drop=True)


def _check_coverage(panel: pd.DataFrame, test: WalkForwardSplitter) -> None:
    start = utc_timestamp(test.test_start)
    first = panel["ts"].min()
    if first >= start:
        raise EvaluationInputError(
            f"data start {first} is not before the test start {start}; no training history"
        )
    if panel["ts"].max() < start:
        raise EvaluationInputError(f"data end {panel['ts'].max()} is before the test start")


def _assets_with_history(
    panel: pd.DataFrame, train: np.ndarray, test: np.ndarray, min_rows: int
) -> tuple[np.ndarray, np.ndarray]:
    """The fold's training rows of assets with ``min_rows`` of them, and the test rows of the
    other assets (a per-asset estimator cannot forecast them yet)."""
    if min_rows <= 0:
        return train, np.zeros(len(panel), dtype=bool)
    counts = panel.loc[train, "asset"].astype(str).value_counts()
    enough = set(counts.index[counts >= min_rows])
    known = panel["asset"].astype(str).isin(enough).to_numpy()
    return train & known, test & ~known


def _unforecast_rows(
    panel: pd.DataFrame, fold: Fold, rows: np.ndarray, y_column: str
) -> pd.DataFrame:
    """``rows`` of the test block as :func:`_predict_fold` frames them, with a NaN forecast."""
    return _fold_frame(panel, fold, rows, np.nan, y_column)


def _fold_frame(
    panel: pd.DataFrame, fold: Fold, rows: np.ndarray, variance: Any, y_column: str
) -> pd.DataFrame:
    """The forecast frame of ``rows``: ``ts, asset, rv, ret_fwd`` (and the target column when
    it is not ``rv_fwd``), ``variance`` and ``fold``."""
    kept = ["ts", "asset", "rv_fwd", "ret_fwd", *([y_column] if y_column != "rv_fwd" else [])]
    out = panel.loc[rows, kept].rename(columns={"rv_fwd": "rv"})
    out["variance"] = variance
    out["fold"] = fold.index
    return out.reset_index(drop=True)


def _with_unforecast_rows(
    part: pd.DataFrame, panel: pd.DataFrame, fold: Fold, rows: np.ndarray, y_column: str
) -> pd.DataFrame:
    """``part`` with ``rows`` of the test block added with a NaN forecast, in panel order."""
    both = pd.concat([part, _unforecast_rows(panel, fold, rows, y_column)], ignore_index=True)
    return both.sort_values(["asset", "ts"], kind="stable").reset_index(drop=True)


def _predict_fold(
    model: CalibratedForecaster,
    panel: pd.DataFrame,
    features: list[str],
    fold: Fold,
    test: np.ndarray,
    history_days: int,
    y_column: str = "rv_fwd",
) -> pd.DataFrame:
    if model.get_tag("requires_history"):
        lookback = fold.test_start - pd.Timedelta(days=history_days)
        rows = (panel["ts"] >= lookback) & (panel["ts"] < fold.test_end)
        rows &= panel["asset"].isin(panel.loc[test, "asset"].unique())
        block = panel.loc[rows, features]
        variance = pd.Series(model.predict(block), index=block.index).loc[panel.index[test]]
        variance = variance.to_numpy()
    else:
        variance = model.predict(panel.loc[test, features])
    return _fold_frame(panel, fold, test, variance, y_column)


def _data_ranges(panel: pd.DataFrame) -> dict[str, Any]:
    ranges = panel.groupby("asset")["ts"].agg(["min", "max", "count"])
    return {
        str(a): {
            "first": r["min"].isoformat(),
            "last": r["max"].isoformat(),
            "rows": int(r["count"]),
        }
        for a, r in ranges.iterrows()
    }
