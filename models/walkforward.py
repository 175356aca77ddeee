"""Honest walk-forward evaluation of every forecaster on one test period.

:func:`run_evaluation` does, in order:

1. builds features (or takes them) and the forward targets from the same returns;
2. tunes the HAR training window on the ``tune_months`` BEFORE the test period only;
3. for each model and each monthly fold (from a warm-up before the test start), fits on
   the purged training rows of the :class:`~models.validation.WalkForwardSplitter` and
   forecasts the fold; nothing of a fold's targets enters its fit;
4. calibrates VaR/ES and the sigma interval by split conformal on the model's own earlier
   out-of-sample forecasts whose outcomes are known at the fold start;
5. scores the test period: QLIKE, MSE of log RV, Mincer–Zarnowitz R², Diebold–Mariano
   against the best baseline, and the VaR/ES backtests on non-overlapping daily forecasts.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from contracts.timestamps import utc_timestamp
from features.bars import interval_to_timedelta
from features.market import MarketData
from models.baselines import VarianceForecaster, make_forecaster
from models.conformal import (
    CalibrationError,
    ConformalCalibration,
    adaptive_var,
    calibrate,
    calibration_window,
)
from models.evaluation import (
    acerbi_szekely_z2,
    diebold_mariano,
    mincer_zarnowitz,
    mse_log,
    qlike,
    var_backtest,
)
from models.targets import TARGET_VALUE_COLUMNS, forward_targets
from models.validation import Fold, WalkForwardSplitter

DEFAULT_MODELS: tuple[str, ...] = ("ewma", "har", "harq", "garch", "gjr", "lgbm")
"""Models evaluated by default; ``lgbm`` is the challenger, the rest are baselines."""

Progress = Callable[[str], None]


class EvaluationInputError(ValueError):
    """The data handed to the walk-forward cannot support the requested evaluation."""


@dataclass(frozen=True)
class EvaluationConfig:
    """Everything that defines a walk-forward evaluation run (JSON-able via ``describe``).

    Attributes
    ----------
    horizon, interval, refit
        Target window in bars, bar interval, refit schedule (pandas offset alias).
    warmup_months
        Out-of-sample months before the test start whose forecasts seed the conformal
        calibration of the first test fold (never scored).
    calibration_days
        Rolling window of known out-of-sample scores used at each refit.
    tune_months
        Months before the test start on which the HAR window is chosen.
    har_windows
        Candidate HAR training windows in days (``None`` = expanding).
    alpha, coverage
        VaR tail probability and sigma-interval coverage.
    daily_anchor_hour
        UTC hour of the bar whose forecast is backtested each day (23: the next calendar
        day), giving non-overlapping ``H = 24`` windows.
    primary
        The model whose VaR/ES are backtested in the summary keys ``var99``/``es99``.
    history_days
        Return history handed to recursive filters before each fold (their warm-up).
    aci_gamma
        Step of adaptive conformal inference on the VaR level (0: plain split conformal
        recalibrated at each refit). 0.0005 was chosen on 2023-07..2024-06, before the
        public test period, over 0 and 0.0002 (all ten assets green there).
    model_params
        Per-model constructor overrides, e.g. ``{"lgbm": {"n_jobs": 2}}``.
    """

    horizon: int = 24
    interval: str = "1h"
    refit: str = "MS"
    warmup_months: int = 3
    calibration_days: int = 180
    tune_months: int = 12
    har_windows: tuple[int | None, ...] = (None, 730, 365)
    alpha: float = 0.01
    coverage: float = 0.9
    daily_anchor_hour: int = 23
    primary: str = "lgbm"
    history_days: int = 120
    aci_gamma: float = 0.0005
    model_params: dict[str, dict[str, Any]] = field(default_factory=dict)

    def describe(self) -> dict[str, Any]:
        """JSON-able form."""
        return {
            "horizon": self.horizon,
            "interval": self.interval,
            "refit": self.refit,
            "warmup_months": self.warmup_months,
            "calibration_days": self.calibration_days,
            "tune_months": self.tune_months,
            "har_windows": list(self.har_windows),
            "alpha": self.alpha,
            "coverage": self.coverage,
            "daily_anchor_hour": self.daily_anchor_hour,
            "primary": self.primary,
            "history_days": self.history_days,
            "aci_gamma": self.aci_gamma,
            "model_params": self.model_params,
        }


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


def run_evaluation(
    data: MarketData | pd.DataFrame | Any,
    test_start: str | pd.Timestamp,
    test_end: str | pd.Timestamp,
    assets: Sequence[str] | None = None,
    models: Sequence[str] = DEFAULT_MODELS,
    horizon: int = 24,
    config: EvaluationConfig | None = None,
    progress: Progress | None = None,
) -> EvaluationResult:
    """Walk-forward evaluation of ``models`` on ``[test_start, test_end)``.

    Parameters
    ----------
    data
        A :class:`~features.market.MarketData` (features are built with
        :func:`features.build.build_features`), a ``FeatureSet`` or its ``.frame``. The
        frame must carry ``ret_1h`` (the shared log returns), from which the targets are
        built, and the columns each model needs.
    test_start, test_end
        Test period, end exclusive (UTC).
    assets
        Subset of assets; all by default.
    models
        Model names for :func:`models.baselines.make_forecaster`.
    horizon
        Forecast window in bars (overrides ``config.horizon``).
    config
        Evaluation settings.
    progress
        Called with a short message as work proceeds.

    Returns
    -------
    EvaluationResult
    """
    started = time.perf_counter()
    cfg = config or EvaluationConfig()
    if horizon != cfg.horizon:
        cfg = EvaluationConfig(**{**cfg.__dict__, "horizon": horizon})
    say = progress or (lambda _msg: None)
    frame = _feature_frame(data, assets, say)
    panel = _attach_targets(frame, cfg)
    test = WalkForwardSplitter(test_start, test_end, horizon=cfg.horizon, interval=cfg.interval)
    _check_coverage(panel, test)

    timing: dict[str, float] = {"features": time.perf_counter() - started}
    tuning = _tune_har_windows(panel, test, cfg, models, say)
    timing["tuning"] = time.perf_counter() - started - timing["features"]

    warm = WalkForwardSplitter(
        utc_timestamp(test_start) - pd.DateOffset(months=cfg.warmup_months),
        test_end,
        horizon=cfg.horizon,
        interval=cfg.interval,
        refit=cfg.refit,
    )
    oos, importance = [], None
    for name in models:
        t0 = time.perf_counter()
        splitter = _splitter_for(name, warm, tuning)
        estimator = _estimator(name, cfg)
        preds, fitted = walk_forward_predict(panel, estimator, splitter, cfg, say, name)
        oos.append(_calibrated(preds, name, splitter, cfg))
        if name == "lgbm" and fitted is not None and hasattr(fitted, "feature_importances_"):
            importance = fitted.feature_importances_
        timing[f"model.{name}"] = time.perf_counter() - t0
    forecasts = pd.concat(oos, ignore_index=True)
    in_test = (forecasts["ts"] >= utc_timestamp(test_start)) & (
        forecasts["ts"] < utc_timestamp(test_end)
    )
    forecasts = forecasts.loc[in_test].reset_index(drop=True)

    say("scoring")
    metrics = score_forecasts(forecasts, list(models), cfg)
    timing["total"] = time.perf_counter() - started
    metrics["config"] = {
        **cfg.describe(),
        "test_start": utc_timestamp(test_start).isoformat(),
        "test_end": utc_timestamp(test_end).isoformat(),
        "models": list(models),
        "splitter": warm.describe(),
    }
    metrics["data"] = _data_ranges(panel)
    metrics["tuning"] = tuning
    metrics["feature_importance"] = (
        {} if importance is None else {k: float(v) for k, v in importance.head(25).items()}
    )
    metrics["timing"] = {k: round(v, 2) for k, v in timing.items()}
    return EvaluationResult(metrics=metrics, forecasts=forecasts)


def walk_forward_predict(
    panel: pd.DataFrame,
    estimator: VarianceForecaster,
    splitter: WalkForwardSplitter,
    cfg: EvaluationConfig,
    say: Progress,
    name: str,
) -> tuple[pd.DataFrame, VarianceForecaster | None]:
    """Out-of-sample forecasts of one estimator over every fold of ``splitter``.

    Each fold fits a fresh clone on the fold's purged training rows with a finite target
    and predicts the fold's test rows (recursive filters also see the preceding
    ``history_days`` of returns, which are known at forecast time).

    Returns
    -------
    tuple
        Frame ``ts, asset, variance, rv, ret_fwd, fold`` and the last fitted estimator.
    """
    from sklearn.base import clone

    parts, fitted = [], None
    ts = panel["ts"]
    # The targets live in the panel for scoring; a model only ever sees feature columns.
    features = [c for c in panel.columns if c not in TARGET_VALUE_COLUMNS]
    finite_y = np.isfinite(panel["rv_fwd"].to_numpy()) & (panel["rv_fwd"].to_numpy() > 0)
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
        model = clone(estimator)
        model.fit(panel.loc[train, features], panel.loc[train, "rv_fwd"].to_numpy())
        parts.append(_predict_fold(model, panel, features, fold, test, cfg))
        fitted = model
    if not parts:
        raise EvaluationInputError(f"model {name}: the test period holds no rows of the data")
    return pd.concat(parts, ignore_index=True), fitted


def score_forecasts(
    forecasts: pd.DataFrame, models: list[str], cfg: EvaluationConfig
) -> dict[str, Any]:
    """Per-asset and mean scores of calibrated out-of-sample forecasts.

    Losses are compared on the rows where the realized variance and every model's
    forecast exist, so all models face the same targets.
    """
    wide = forecasts.pivot_table(
        index=["ts", "asset"], columns="model", values="variance", aggfunc="first"
    )
    realized = forecasts.drop_duplicates(["ts", "asset"]).set_index(["ts", "asset"])["rv"]
    wide = wide.join(realized.rename("__rv__"), how="inner")
    wide = wide.dropna(subset=[*models, "__rv__"])
    wide = wide.loc[wide["__rv__"] > 0]
    baselines = [m for m in models if m != cfg.primary]
    out: dict[str, Any] = {"assets": {}, "mean": {"qlike": {}, "mse_log": {}}}
    for asset, block in wide.groupby(level="asset", sort=True):
        block = block.sort_index(level="ts")
        rv = block["__rv__"].to_numpy()
        losses = {m: qlike(rv, block[m].to_numpy()) for m in models}
        entry: dict[str, Any] = {
            "n": len(block),
            "qlike": {m: float(np.mean(v)) for m, v in losses.items()},
            "mse_log": {m: float(np.mean(mse_log(rv, block[m].to_numpy()))) for m in models},
            "mz_r2": {m: mincer_zarnowitz(rv, block[m].to_numpy()).r2 for m in models},
            "dm_pvalue": {},
            "dm_stat": {},
        }
        if baselines:
            best = min(baselines, key=lambda m: entry["qlike"][m])
            entry["best_baseline"] = best
            for m in models:
                if m == best:
                    continue
                dm = diebold_mariano(losses[m], losses[best], cfg.horizon)
                entry["dm_pvalue"][m] = dm.pvalue
                entry["dm_stat"][m] = dm.statistic
        entry.update(_risk_backtests(forecasts, str(asset), cfg))
        out["assets"][str(asset)] = entry
    for m in models:
        out["mean"]["qlike"][m] = float(np.mean([a["qlike"][m] for a in out["assets"].values()]))
        out["mean"]["mse_log"][m] = float(
            np.mean([a["mse_log"][m] for a in out["assets"].values()])
        )
    return out


# -- steps ----------------------------------------------------------------------------------


def _feature_frame(data: Any, assets: Sequence[str] | None, say: Progress) -> pd.DataFrame:
    if isinstance(data, MarketData):
        from features.build import build_features

        say("building features")
        market = data
        if assets:
            market = _subset_market(market, assets)
        frame = build_features(market).frame
    elif isinstance(data, pd.DataFrame):
        frame = data
    elif hasattr(data, "frame"):
        frame = data.frame
    else:
        raise EvaluationInputError(
            f"run_evaluation needs MarketData, a FeatureSet or a feature frame, got {type(data)}"
        )
    if assets:
        unknown = sorted(set(assets) - set(frame["asset"].astype(str).unique()))
        if unknown:
            raise EvaluationInputError(f"assets {unknown} are not in the data")
        frame = frame.loc[frame["asset"].astype(str).isin(list(assets))]
    if "ret_1h" not in frame.columns:
        raise EvaluationInputError(
            "the feature frame lacks ret_1h, the shared log return the targets are built from"
        )
    return frame.sort_values(["asset", "ts"], kind="stable").reset_index(drop=True)


def _subset_market(market: MarketData, assets: Sequence[str]) -> MarketData:
    wanted = set(assets)

    def keep(frame: pd.DataFrame) -> pd.DataFrame:
        if frame.empty or "asset" not in frame.columns:
            return frame
        return frame.loc[frame["asset"].astype(str).isin(wanted)].reset_index(drop=True)

    return MarketData(
        bars=keep(market.bars),
        funding=keep(market.funding),
        perp=keep(market.perp),
        interval=market.interval,
        source=market.source,
    )


def _attach_targets(frame: pd.DataFrame, cfg: EvaluationConfig) -> pd.DataFrame:
    returns = frame[["ts", "asset", "ret_1h"]].rename(columns={"ret_1h": "ret"})
    targets = forward_targets(returns, horizon=cfg.horizon, interval=cfg.interval)
    panel = frame.copy()
    panel["asset"] = panel["asset"].astype(str)
    # forward_targets sorts by asset, ts exactly like _feature_frame, so rows align.
    panel["rv_fwd"] = targets["rv_fwd"].to_numpy()
    panel["ret_fwd"] = targets["ret_fwd"].to_numpy()
    return panel


def _check_coverage(panel: pd.DataFrame, test: WalkForwardSplitter) -> None:
    start = utc_timestamp(test.test_start)
    first = panel["ts"].min()
    if first >= start:
        raise EvaluationInputError(
            f"data start {first} is not before the test start {start}; no training history"
        )
    if panel["ts"].max() < start:
        raise EvaluationInputError(f"data end {panel['ts'].max()} is before the test start")


def _tune_har_windows(
    panel: pd.DataFrame,
    test: WalkForwardSplitter,
    cfg: EvaluationConfig,
    models: Sequence[str],
    say: Progress,
) -> dict[str, Any]:
    """Choose each HAR variant's training window by QLIKE on the months before the test."""
    out: dict[str, Any] = {}
    tune = test.preceding(cfg.tune_months)
    tune = WalkForwardSplitter(
        tune.test_start, tune.test_end, horizon=cfg.horizon, interval=cfg.interval, refit=cfg.refit
    )
    start = utc_timestamp(test.test_start)
    rows = panel.loc[panel["ts"] < start].copy()
    # A target whose window reaches into the test period is test data: hide it from tuning.
    reaches_test = rows["ts"] + cfg.horizon * interval_to_timedelta(cfg.interval) >= start
    rows.loc[reaches_test, ["rv_fwd", "ret_fwd"]] = np.nan
    for name in [m for m in models if m in ("har", "harq")]:
        scores: dict[str, float] = {}
        for days in cfg.har_windows:
            window = "expanding" if days is None else "rolling"
            splitter = tune.with_window(window, days)
            try:
                preds, _ = walk_forward_predict(
                    rows, _estimator(name, cfg), splitter, cfg, lambda _m: None, name
                )
            except (EvaluationInputError, ValueError) as exc:
                say(f"tuning {name}: window {days} skipped ({exc})")
                continue
            loss = qlike(preds["rv"].to_numpy(), preds["variance"].to_numpy())
            scores["expanding" if days is None else str(days)] = float(np.nanmean(loss))
        if not scores:
            raise EvaluationInputError("no HAR window could be evaluated before the test start")
        best = min(scores, key=scores.__getitem__)
        say(f"tuning {name}: window {best} (QLIKE {scores[best]:.4f} before the test)")
        out[name] = {
            "window": best,
            "qlike_by_window": scores,
            "period": [tune.describe()["test_start"], tune.describe()["test_end"]],
        }
    return out


def _splitter_for(
    name: str, base: WalkForwardSplitter, tuning: dict[str, Any]
) -> WalkForwardSplitter:
    chosen = tuning.get(name, {}).get("window", "expanding")
    if chosen == "expanding":
        return base
    return base.with_window("rolling", int(chosen))


def _estimator(name: str, cfg: EvaluationConfig) -> VarianceForecaster:
    params = dict(cfg.model_params.get(name, {}))
    if name == "lgbm":
        params.setdefault("interval", cfg.interval)
    return make_forecaster(name, horizon=cfg.horizon, **params)  # type: ignore[arg-type]


def _predict_fold(
    model: VarianceForecaster,
    panel: pd.DataFrame,
    features: list[str],
    fold: Fold,
    test: np.ndarray,
    cfg: EvaluationConfig,
) -> pd.DataFrame:
    if model.requires_history:
        lookback = fold.test_start - pd.Timedelta(days=cfg.history_days)
        rows = (panel["ts"] >= lookback) & (panel["ts"] < fold.test_end)
        rows &= panel["asset"].isin(panel.loc[test, "asset"].unique())
        block = panel.loc[rows, features]
        variance = pd.Series(model.predict(block), index=block.index).loc[panel.index[test]]
        variance = variance.to_numpy()
    else:
        variance = model.predict(panel.loc[test, features])
    out = panel.loc[test, ["ts", "asset", "rv_fwd", "ret_fwd"]].rename(columns={"rv_fwd": "rv"})
    out["variance"] = variance
    out["fold"] = fold.index
    return out.reset_index(drop=True)


def _calibrated(
    preds: pd.DataFrame, name: str, splitter: WalkForwardSplitter, cfg: EvaluationConfig
) -> pd.DataFrame:
    """Attach conformal VaR/ES/interval per fold from earlier known out-of-sample scores."""
    step = interval_to_timedelta(cfg.interval)
    columns = ["sigma", "sigma_lower", "sigma_upper", "var_99", "es_99"]
    out = preds.copy()
    for c in columns:
        out[c] = np.nan
    out["sigma"] = np.sqrt(out["variance"])
    fold_of = np.full(len(out), -1)
    calibrations = []
    for fold in splitter.folds():
        rows = (out["ts"] >= fold.test_start) & (out["ts"] < fold.test_end)
        if not rows.any():
            continue
        usable = calibration_window(
            out["ts"], fold.test_start, cfg.horizon, step, cfg.calibration_days
        )
        try:
            cal = calibrate(
                out.loc[usable, "variance"],
                out.loc[usable, "rv"],
                out.loc[usable, "ret_fwd"],
                alpha=cfg.alpha,
                coverage=cfg.coverage,
            )
        except CalibrationError:
            # Only the first warm-up fold lacks history; it is never scored.
            continue
        applied = cal.apply(out.loc[rows, "variance"].to_numpy())
        for c in columns:
            out.loc[rows, c] = applied[c].to_numpy()
        fold_of[rows.to_numpy()] = len(calibrations)
        calibrations.append(cal)
    if cfg.aci_gamma > 0 and calibrations:
        _adapt_var(out, fold_of, calibrations, cfg)
    out["model"] = name
    return out


def _adapt_var(
    out: pd.DataFrame,
    fold_of: np.ndarray,
    calibrations: list[ConformalCalibration],
    cfg: EvaluationConfig,
) -> None:
    """Replace split-conformal VaR/ES by adaptive conformal inference, asset by asset."""
    step = interval_to_timedelta(cfg.interval)
    with np.errstate(divide="ignore", invalid="ignore"):
        realized = -out["ret_fwd"].to_numpy() / out["sigma"].to_numpy()
    for _asset, block in out.loc[fold_of >= 0].groupby("asset", sort=False):
        block = block.sort_values("ts")
        rows = block.index.to_numpy()
        adapted = adaptive_var(
            block["ts"],
            block["sigma"].to_numpy(),
            realized[rows],
            fold_of[rows],
            calibrations,
            cfg.horizon,
            step,
            alpha=cfg.alpha,
            gamma=cfg.aci_gamma,
        )
        out.loc[rows, "var_99"] = adapted["var_99"].to_numpy()
        out.loc[rows, "es_99"] = adapted["es_99"].to_numpy()


def _risk_backtests(forecasts: pd.DataFrame, asset: str, cfg: EvaluationConfig) -> dict[str, Any]:
    rows = forecasts.loc[
        (forecasts["model"] == cfg.primary)
        & (forecasts["asset"] == asset)
        & (forecasts["ts"].dt.hour == cfg.daily_anchor_hour)
    ].sort_values("ts")
    rows = rows.dropna(subset=["var_99", "es_99", "ret_fwd"])
    if len(rows) < 10:
        return {"var99": {"n": len(rows)}, "es99": {}}
    loss = -np.expm1(rows["ret_fwd"].to_numpy())
    var = rows["var_99"].to_numpy()
    es = rows["es_99"].to_numpy()
    backtest = var_backtest(loss, var, cfg.alpha)
    # Basel reads the zone off the most recent 250 daily observations; the whole-period
    # zone (binomial thresholds scaled to n) is kept alongside.
    backtest["zone_scaled"] = backtest["zone"]
    last = slice(-250, None)
    recent = var_backtest(loss[last], var[last], cfg.alpha)
    backtest["n_250"] = recent["n"]
    backtest["exceptions_250"] = recent["exceptions"]
    backtest["zone"] = recent["zone"]
    z2 = acerbi_szekely_z2(loss, var, es, cfg.alpha)
    return {"var99": backtest, "es99": {"z2": z2.statistic, "p": z2.pvalue}}


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
