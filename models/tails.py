"""Tail forecasts of the largest adverse move: walk-forward, conformal calibration, coverage.

For each side (``long``: drawdown, ``short``: run-up) and horizon, every tail forecaster
(:data:`models.spec.TAIL_MODELS`, built by :func:`models.factory.build_forecaster`) is
walked forward with the same splitter as the variance models (purge of ``H`` bars), then
calibrated per asset by :func:`calibrate_quantiles`:

* **split conformal** at each refit, on the forecaster's own earlier out-of-sample
  forecasts whose outcomes are known at the fold start (``calibration_window``): the
  ratio score ``y / q_raw`` and its conformal ``level`` quantile ``c``, so the calibrated
  quantile is ``c * q_raw``;
* **adaptive conformal inference** between refits (``models.conformal.adaptive_levels``,
  the same recursion as the VaR of the variance models), asset by asset.

:func:`score_tails` reports, per asset and model, the exception rate of the calibrated
quantile on non-overlapping windows (:func:`models.scoring.non_overlapping`) with the
Kupiec POF test, and the pinball loss on every row with a Diebold–Mariano test of the
primary against the baseline. The review's ``quantile_coverage`` gate reads these.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field, model_validator

from contracts.timestamps import utc_timestamp
from features.bars import interval_to_timedelta
from models.conformal import adaptive_levels, calibration_window
from models.evaluation import EvaluationError, diebold_mariano, kupiec_pof, pinball_loss
from models.factory import build_forecaster
from models.scoring import non_overlapping
from models.spec import (
    NAMED_FORECASTERS,
    TAIL_MODELS,
    CalibrationSpec,
    EstimatorParams,
    ForecasterSpec,
    Side,
    TargetSpec,
    named_spec,
)
from models.splitter import Fold, WalkForwardSplitter
from models.targets import attach_targets
from models.walkforward import walk_forward_predict

Progress = Callable[[str], None]


class TailConfig(BaseModel):
    """What a tail evaluation compares, and how it calibrates.

    Attributes
    ----------
    models
        Named tail forecasters (keys of :data:`models.spec.NAMED_FORECASTERS`).
    primary
        The challenger; the others are baselines.
    sides
        ``long`` (drawdown) and/or ``short`` (run-up).
    level
        The quantile forecast (0.99: an exception is expected 1% of the time); the one
        source of the level, handed to the target and, as ``1 - level``, to the
        calibration's adaptive recursion.
    refit, warmup_months, history_days
        As in :class:`models.walkforward.EvaluationConfig`.
    calibration
        Kind (``none``, ``split``, ``adaptive``), window, ACI step and fewest scores; its
        ``alpha`` and ``coverage`` are not used here (the level is).
    estimators
        Estimator parameters replacing a named forecaster's.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    models: tuple[str, ...] = TAIL_MODELS
    primary: str = "tail_lgbm"
    sides: tuple[Side, ...] = ("long", "short")
    level: float = Field(0.99, gt=0.5, lt=1.0)
    refit: str = "MS"
    warmup_months: int = Field(3, ge=1)
    history_days: int = Field(120, ge=1)
    calibration: CalibrationSpec = Field(default_factory=lambda: CalibrationSpec(min_scores=100))
    estimators: dict[str, EstimatorParams] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _consistent(self) -> TailConfig:
        unknown = [m for m in self.models if m not in NAMED_FORECASTERS]
        if unknown:
            raise ValueError(f"unknown tail models {unknown}")
        if self.primary not in self.models:
            raise ValueError(f"primary {self.primary!r} is not among the models {self.models}")
        for name in self.models:
            self.spec(name, self.target(24, "long"))  # a variance model here fails at once
        return self

    def target(self, horizon: int, side: Side) -> TargetSpec:
        """The adverse-move target of one horizon and side at this level."""
        return TargetSpec(kind="adverse_move", horizon=horizon, side=side, level=self.level)

    def spec(self, name: str, target: TargetSpec) -> ForecasterSpec:
        """The forecaster spec of tail model ``name`` for ``target``."""
        return named_spec(name, target, self.calibration, self.estimators.get(name))


@dataclass
class TailResult:
    """Output of :func:`run_tail_evaluation`.

    Attributes
    ----------
    metrics
        ``<label>.{target, primary, assets.<SYM>.<model>.{n, exceptions, rate, kupiec_lr,
        kupiec_p, pinball, mean_quantile}, assets.<SYM>.dm_pinball.{statistic, pvalue}}``
        per target label (e.g. ``adverse_long_24h``), plus ``timing``.
    forecasts
        ``ts, asset, model, target, adverse_fwd, quantile_raw, quantile`` over the test
        period.
    """

    metrics: dict[str, Any]
    forecasts: pd.DataFrame


def run_tail_evaluation(
    feature_set: Any,
    test_start: str | pd.Timestamp,
    test_end: str | pd.Timestamp,
    horizons: Sequence[int],
    config: TailConfig | None = None,
    progress: Progress | None = None,
) -> TailResult:
    """Walk-forward tail forecasts, calibrated per asset, on ``[test_start, test_end)``.

    Parameters
    ----------
    feature_set
        A :class:`features.build.FeatureSet` (its ``frame`` and ``interval``).
    test_start, test_end
        Test period, end exclusive (UTC).
    horizons
        Holding horizons in bars.
    config
        Models, sides, level and calibration.
    progress
        Called with a short message as work proceeds.
    """
    cfg = config or TailConfig()
    say = progress or (lambda _msg: None)
    started = time.perf_counter()
    frame, interval = feature_set.frame, feature_set.interval
    start, end = utc_timestamp(test_start), utc_timestamp(test_end)
    metrics: dict[str, Any] = {}
    parts = []
    for side in cfg.sides:
        for horizon in horizons:
            target = cfg.target(horizon, side)
            panel = attach_targets(frame, target, interval)
            splitter = WalkForwardSplitter(
                start - pd.DateOffset(months=cfg.warmup_months),
                end,
                horizon=horizon,
                interval=interval,
                refit=cfg.refit,
            )
            done = []
            for name in cfg.models:
                say(f"{target.label}: {name}")
                forecaster = build_forecaster(cfg.spec(name, target), interval)
                preds, _ = walk_forward_predict(
                    panel, forecaster, splitter, cfg.history_days, say, name, target
                )
                calibrated = calibrate_quantiles(
                    preds, target, cfg.calibration, splitter.folds(), interval
                )
                calibrated["model"] = name
                calibrated["target"] = target.label
                done.append(calibrated.loc[(calibrated["ts"] >= start) & (calibrated["ts"] < end)])
            block = pd.concat(done, ignore_index=True)
            metrics[target.label] = score_tails(block, cfg, target, interval)
            parts.append(block)
    forecasts = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame()
    metrics["timing"] = {"total": round(time.perf_counter() - started, 2)}
    keep = ["ts", "asset", "model", "target", "adverse_fwd", "quantile_raw", "quantile"]
    return TailResult(metrics=metrics, forecasts=forecasts[keep] if parts else forecasts)


def calibrate_quantiles(
    preds: pd.DataFrame,
    target: TargetSpec,
    spec: CalibrationSpec,
    folds: Sequence[Fold],
    interval: str,
) -> pd.DataFrame:
    """Conformal calibration of raw quantile forecasts, per asset, fold by fold.

    Each (fold, asset) is calibrated on that asset's earlier out-of-sample forecasts whose
    outcomes are known at the fold start, within ``spec.window_days``: the conformal
    ``level`` quantile ``c`` of the ratio ``y / q_raw`` scales the fold's forecasts. With
    ``kind="adaptive"`` the level then follows adaptive conformal inference on exceptions
    already known. A (fold, asset) with fewer than ``spec.min_scores`` known scores (the
    warm-up) stays NaN and is never scored.

    Parameters
    ----------
    preds
        ``ts, asset, variance`` (the raw quantile forecast) and the target column.
    target
        The adverse-move target (column, horizon, level).
    spec
        The calibration part.
    folds
        The walk-forward folds the forecasts came from.
    interval
        Bar interval (when an outcome becomes known).

    Returns
    -------
    pandas.DataFrame
        ``preds`` with ``quantile_raw`` and the calibrated ``quantile``.
    """
    step = interval_to_timedelta(interval)
    alpha = 1.0 - target.level
    out = preds.rename(columns={"variance": "quantile_raw"}).reset_index(drop=True)
    out["quantile"] = np.nan
    if spec.kind == "none":
        out["quantile"] = out["quantile_raw"]
        return out
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = out[target.column].to_numpy() / out["quantile_raw"].to_numpy()
    ratio = np.where(np.isfinite(ratio), ratio, np.nan)
    for _asset, block in out.groupby("asset", sort=False):
        block = block.sort_values("ts")
        rows = block.index.to_numpy()
        calibrations: dict[int, np.ndarray] = {}
        fold_of = np.full(len(rows), -1)
        for fold in folds:
            in_fold = ((block["ts"] >= fold.test_start) & (block["ts"] < fold.test_end)).to_numpy()
            if not in_fold.any():
                continue
            usable = calibration_window(
                block["ts"], fold.test_start, target.horizon, step, spec.window_days
            )
            scores = ratio[rows][usable]
            scores = np.sort(scores[np.isfinite(scores)])
            if scores.size < spec.min_scores:
                continue  # the warm-up: not enough known outcomes yet
            calibrations[fold.index] = scores
            fold_of[in_fold] = fold.index
        calibrated = fold_of >= 0
        if not calibrated.any():
            continue
        sub = rows[calibrated]
        threshold = _fold_thresholds(calibrations, fold_of[calibrated])
        if spec.kind == "adaptive" and spec.gamma > 0:
            _, factor = adaptive_levels(
                block["ts"].to_numpy()[calibrated],
                ratio[sub],
                threshold,
                target.horizon,
                step,
                alpha=alpha,
                gamma=spec.gamma,
            )
        else:
            factor = np.array([threshold(i, alpha) for i in range(sub.size)])
        out.loc[sub, "quantile"] = out.loc[sub, "quantile_raw"].to_numpy() * factor
    return out


def score_tails(
    forecasts: pd.DataFrame, config: TailConfig, target: TargetSpec, interval: str
) -> dict[str, Any]:
    """Coverage (Kupiec POF) and pinball loss of calibrated tail forecasts, per asset.

    Exceptions (``y > quantile``) are counted on non-overlapping windows only; pinball
    losses use every row on which all models have a calibrated forecast, and the
    Diebold–Mariano test of the primary against each baseline uses a HAC lag of at least
    ``H - 1``.
    """
    step = interval_to_timedelta(interval)
    wide = forecasts.pivot_table(
        index=["ts", "asset"], columns="model", values="quantile", aggfunc="first"
    )
    realized = forecasts.drop_duplicates(["ts", "asset"]).set_index(["ts", "asset"])
    wide = wide.join(realized[target.column].rename("__y__"), how="inner")
    wide = wide.dropna(subset=[*config.models, "__y__"])
    alpha = 1.0 - target.level
    out: dict[str, Any] = {
        "target": target.model_dump(mode="json"),
        "primary": config.primary,
        "assets": {},
    }
    for asset, block in wide.groupby(level="asset", sort=True):
        block = block.sort_index(level="ts")
        ts = block.index.get_level_values("ts")
        y = block["__y__"].to_numpy()
        tiles = non_overlapping(pd.Series(ts), target.horizon, step)
        entry: dict[str, Any] = {}
        losses = {}
        for model in config.models:
            q = block[model].to_numpy()
            losses[model] = pinball_loss(y, q, target.level)
            hits = y[tiles] > q[tiles]
            n, x = int(hits.size), int(hits.sum())
            pof = kupiec_pof(x, n, alpha) if n > 0 else None
            entry[model] = {
                "n": n,
                "exceptions": x,
                "rate": x / n if n else math.nan,
                "kupiec_lr": pof.statistic if pof else math.nan,
                "kupiec_p": pof.pvalue if pof else math.nan,
                "pinball": float(np.mean(losses[model])),
                "mean_quantile": float(np.mean(q)),
            }
        for model in config.models:
            if model == config.primary:
                continue
            try:
                dm = diebold_mariano(losses[config.primary], losses[model], target.horizon)
                entry.setdefault("dm_pinball", {})[model] = {
                    "statistic": dm.statistic,
                    "pvalue": dm.pvalue,
                }
            except EvaluationError:
                entry.setdefault("dm_pinball", {})[model] = {
                    "statistic": math.nan,
                    "pvalue": math.nan,
                }
        out["assets"][str(asset)] = entry
    return out


def _fold_thresholds(
    calibrations: dict[int, np.ndarray], fold_of: np.ndarray
) -> Callable[[int, float], float]:
    """``threshold(i, a)``: row ``i``'s conformal ratio at tail probability ``a``."""

    def threshold(i: int, tail: float) -> float:
        return _rank_value(calibrations[int(fold_of[i])], 1.0 - tail)

    return threshold


def _rank_value(sorted_scores: np.ndarray, level: float) -> float:
    """The ``ceil((n + 1) level)``-th smallest score, the conformal rank (clipped to n)."""
    n = sorted_scores.size
    rank = min(max(math.ceil((n + 1) * level), 1), n)
    return float(sorted_scores[rank - 1])
