"""Small, hand-built training runs for the registry tests (a real scikit-learn estimator).

The forecasts mimic ``EvaluationResult.forecasts``: the truth is a persistent variance
process per asset, realized variance is that times chi-square noise, and each model's forecast
is the truth times its own multiplicative error, so QLIKE rankings are known in advance.
:class:`Backend` and :class:`ReviewedStore` are the types the fixtures in ``conftest.py``
hand to the tests.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.linear_model import Ridge

from models.mlflow_store import MlflowStore
from models.registry import ChampionRegistry
from models.submission import Submission, submit_candidate
from models.tracking import TrainingRun

IN_CI = os.environ.get("CI", "").lower() in {"1", "true", "yes"}
PROJECT_ROOT = Path(__file__).resolve().parents[2]
ASSETS = ("BTCUSDT", "ETHUSDT")
HOURS = 480
START = datetime(2025, 1, 1, tzinfo=UTC)
DATA_THROUGH = START + timedelta(hours=HOURS)
FEATURES = ("rv_1h", "rv_24h", "taker_imbalance", "funding_rate")


def forecasts_frame(
    challenger: str = "lgbm",
    challenger_error: float = 0.15,
    challenger_bias: float = 1.0,
    seed: int = 0,
) -> pd.DataFrame:
    """``EvaluationResult.forecasts``-shaped ``ts, asset, model, variance, rv`` frame."""
    rng = np.random.default_rng(seed)
    ts = pd.date_range(START, periods=HOURS, freq="h", tz="UTC")
    rows = []
    for i, asset in enumerate(ASSETS):
        log_var = np.empty(HOURS)
        log_var[0] = np.log(4e-4 * (1 + i))
        shocks = np.random.default_rng(100 + i).normal(0, 0.08, HOURS)
        for t in range(1, HOURS):
            log_var[t] = 0.98 * log_var[t - 1] + 0.02 * log_var[0] + shocks[t]
        truth = np.exp(log_var)
        realized = truth * rng.chisquare(8, HOURS) / 8
        errors = {"har": 0.45, "ewma": 0.6, challenger: challenger_error}
        for model, error in errors.items():
            bias = challenger_bias if model == challenger else 1.0
            forecast = truth * bias * np.exp(rng.normal(0, error, HOURS))
            rows.append(
                pd.DataFrame(
                    {
                        "ts": ts,
                        "asset": asset,
                        "model": model,
                        "variance": forecast,
                        "rv": realized,
                    }
                )
            )
    return pd.concat(rows, ignore_index=True)


def evaluation_dict(forecasts: pd.DataFrame, zones: dict[str, str] | None = None) -> dict:
    """Nested ``to_json_dict()``-shaped evaluation of a forecasts frame."""
    from models.evaluation import qlike

    frame = forecasts.assign(loss=qlike(forecasts["rv"], forecasts["variance"]))
    zones = zones or {}
    assets = {}
    for asset, rows in frame.groupby("asset"):
        assets[asset] = {
            "qlike": rows.groupby("model")["loss"].mean().round(6).to_dict(),
            "var99": {"exceptions": 2, "kupiec_p": 0.73, "zone": zones.get(asset, "green")},
        }
    mean = {"qlike": frame.groupby("model")["loss"].mean().round(6).to_dict()}
    return {"assets": assets, "mean": mean}


def training_run(
    *,
    challenger_error: float = 0.15,
    challenger_bias: float = 1.0,
    zones: dict[str, str] | None = None,
    leakage_passed: bool | None = True,
    data_through: datetime = DATA_THROUGH,
    seed: int = 0,
    alpha: float = 1.0,
) -> TrainingRun:
    """A complete :class:`TrainingRun` with a fitted Ridge regression."""
    rng = np.random.default_rng(seed)
    x = pd.DataFrame(rng.normal(size=(200, len(FEATURES))), columns=list(FEATURES))
    y = x @ np.array([0.5, 1.0, -0.2, 0.1]) + rng.normal(0, 0.1, 200)
    model = Ridge(alpha=alpha).fit(x, y)
    forecasts = forecasts_frame(
        challenger_error=challenger_error, challenger_bias=challenger_bias, seed=seed
    )
    catalog = pd.DataFrame(
        {
            "name": list(FEATURES),
            "window": ["1h", "24h", "24h", "8h"],
            "definition": ["sum r^2", "sum r^2", "(buy-sell)/vol", "last funding"],
        }
    )
    return TrainingRun(
        model=model,
        model_name="lgbm",
        horizon_hours=24,
        evaluation=evaluation_dict(forecasts, zones),
        forecasts=forecasts,
        train_features=x,
        feature_catalog=catalog,
        data_start=START - timedelta(days=365),
        data_through=data_through,
        data_source="synthetic://registry-tests",
        feature_params={"windows": [1, 24], "interval": "1h"},
        feature_importance=pd.Series(np.abs(model.coef_), index=list(FEATURES)),
        leakage_passed=leakage_passed,
        leakage_detail="check_no_lookahead: 0 violations" if leakage_passed else "",
    )


@dataclass(frozen=True)
class Backend:
    """A store plus the registered model name a test should use on it."""

    store: MlflowStore
    model_name: str
    workdir: Path

    def registry(self) -> ChampionRegistry:
        return ChampionRegistry(self.store, self.model_name)

    def submit(self, *, auto_promote: bool = False, **run_options: object) -> Submission:
        """Submit a hand-built candidate (``run_options`` go to ``training_run``)."""
        return submit_candidate(
            self.store,
            training_run(**run_options),
            reports_dir=self.workdir / "reports",
            model_name=self.model_name,
            reference_time=DATA_THROUGH,
            auto_promote=auto_promote,
        )


@dataclass(frozen=True)
class ReviewedStore:
    """A read-only store with v1 auto-promoted to champion and v2 reviewed, pending."""

    backend: Backend
    first: Submission
    second: Submission
