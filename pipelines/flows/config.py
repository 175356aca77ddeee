"""What one pipeline run does: data source, training, review and publishing parameters.

Every flow takes its slice of :class:`PipelineConfig` as a parameter, so a flow run in the
Prefect UI is fully described by its parameters (and a deployment by its defaults). The
models are frozen pydantic models: they validate once, serialise to JSON for the API and
hash stably for caching.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

PublishTime = Literal["now", "data-end"]
"""When a publication is stamped: wall-clock now (production) or the close of the last bar
(demo and historical runs, where wall-clock would make every forecast stale)."""


class FlowConfigError(ValueError):
    """A pipeline configuration that cannot run (bad window, unknown model)."""


class DataConfig(BaseModel):
    """Where the market comes from.

    Attributes
    ----------
    data
        Root laid out like ``../shared/data``; ``None`` generates the synthetic market.
    assets
        Symbols to use (all available when ``None``).
    interval
        Bar interval.
    start, end
        UTC bounds ``[start, end)`` read from ``data`` (ISO strings; ``None`` = all).
    synthetic_assets, synthetic_days, synthetic_seed
        Size and seed of the synthetic market.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    data: Path | None = None
    assets: tuple[str, ...] | None = None
    interval: str = "1h"
    start: str | None = None
    end: str | None = None
    synthetic_assets: int = Field(5, ge=1, le=50)
    synthetic_days: int = Field(240, ge=60, le=3650)
    synthetic_seed: int = Field(7, ge=0)


class TrainConfig(BaseModel):
    """Walk-forward evaluation and final fit.

    Attributes
    ----------
    models
        Models compared in the walk-forward (``models.baselines.make_forecaster`` names);
        ``candidate`` must be one of them.
    candidate
        The model fitted on all data and registered as ``@challenger``.
    test_days
        Length of the scored test period, ending at the last bar whose target is known.
    warmup_months, tune_months, calibration_days, history_days
        See :class:`models.walkforward.EvaluationConfig`.
    refit
        Refit schedule (pandas offset alias, ``MS`` = monthly).
    har_windows
        Candidate HAR training windows in days (``None`` = expanding).
    lgbm
        LightGBM parameters (few trees for the demo and tests).
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    models: tuple[str, ...] = ("ewma", "har", "lgbm")
    candidate: str = "lgbm"
    test_days: int = Field(90, ge=14)
    warmup_months: int = Field(1, ge=1)
    tune_months: int = Field(1, ge=1)
    calibration_days: int = Field(60, ge=7)
    history_days: int = Field(60, ge=7)
    refit: str = "MS"
    har_windows: tuple[int | None, ...] = (None,)
    lgbm: dict[str, Any] = Field(
        default_factory=lambda: {
            "n_estimators": 200,
            "learning_rate": 0.06,
            "num_leaves": 15,
            "min_child_samples": 100,
            "row_stride": 3,
            "n_jobs": 1,
        }
    )

    @model_validator(mode="after")
    def _candidate_is_compared(self) -> TrainConfig:
        if self.candidate not in self.models:
            raise FlowConfigError(
                f"candidate {self.candidate!r} must be one of the compared models {self.models}"
            )
        if "har" not in self.models:
            raise FlowConfigError("the review gates compare against 'har': keep it in models")
        return self


class ReviewConfig(BaseModel):
    """Review gates and the decision path.

    Attributes
    ----------
    auto_promote
        Promote without a human when every gate passes (the demo allows it).
    allowed_var_zones
        Basel zones accepted on every asset (production: green only).
    max_data_age_hours
        Freshness gate limit.
    approval_timeout_s
        How long a paused review waits for an approval before it gives up (the version
        then still waits for ``dynamargin review approve``).
    wait_for_approval
        Pause the flow for an approval input when the version is not promoted
        automatically (False: finish and leave the version pending).
    poll_interval_s
        How often a paused flow checks for its input.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    auto_promote: bool = False
    allowed_var_zones: tuple[str, ...] = ("green",)
    max_data_age_hours: float = Field(48.0, gt=0)
    min_overlap_hours: int = Field(168, ge=2)
    approval_timeout_s: int = Field(3600, ge=1)
    wait_for_approval: bool = True
    poll_interval_s: int = Field(5, ge=1)

    def gate_config(self) -> Any:
        """The :class:`models.review.GateConfig` these settings describe."""
        from models.review import GateConfig

        return GateConfig(
            allowed_var_zones=self.allowed_var_zones,
            max_data_age=timedelta(hours=self.max_data_age_hours),
            min_overlap_hours=self.min_overlap_hours,
        )


class PublishConfig(BaseModel):
    """Publishing from the champion (or a baseline).

    Attributes
    ----------
    model
        ``champion`` or ``baseline:har`` / ``baseline:ewma``.
    publish_time
        ``now`` (wall clock) or ``data-end`` (the close of the last bar).
    max_champion_age_days
        A champion whose training data ends longer ago than this (relative to the
        publication time) is stale: fallback multipliers are published instead.
    history_days
        Days of forecasts handed to the policy (its trailing-median reference).
    policy_config
        TOML file with a ``[policy]`` section (defaults when ``None``).
    venue
        Venue named in every snapshot.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    model: str = "champion"
    publish_time: PublishTime = "now"
    max_champion_age_days: float = Field(14.0, gt=0)
    history_days: int = Field(30, ge=1)
    policy_config: Path | None = None
    venue: str = "binance"

    @model_validator(mode="after")
    def _known_model(self) -> PublishConfig:
        if self.model not in ("champion", "baseline:har", "baseline:ewma"):
            raise FlowConfigError(
                f"unknown publish model {self.model!r}; use champion, baseline:har or baseline:ewma"
            )
        return self


class BacktestConfig(BaseModel):
    """The replay run by ``backtest_flow`` (see :class:`pipelines.backtest.BacktestRequest`)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    enabled: bool = True
    seeds: int = Field(2, ge=1)
    policies: tuple[str, ...] = ("static", "ewma", "model")
    start: str | None = None
    end: str | None = None
    refit: str = "MS"


class PipelineConfig(BaseModel):
    """Every parameter of ``pipeline_flow``."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    data: DataConfig = Field(default_factory=DataConfig)
    train: TrainConfig = Field(default_factory=TrainConfig)
    review: ReviewConfig = Field(default_factory=ReviewConfig)
    publish: PublishConfig = Field(default_factory=PublishConfig)
    backtest: BacktestConfig = Field(default_factory=BacktestConfig)


def demo_config(
    data: Path | None = None, assets: int = 5, days: int = 240, seed: int = 7
) -> PipelineConfig:
    """The configuration of ``dynamargin demo``: small, fast, auto-promotion allowed.

    On the synthetic market the VaR gate accepts the yellow zone too: three months of a
    simulated test period hold ~90 daily VaR observations, too few to tell green from
    yellow reliably. Data age is measured against the last bar (``data-end``).
    """
    if data is None:
        source = DataConfig(synthetic_assets=assets, synthetic_days=days, synthetic_seed=seed)
    else:
        # A year before the end of the public dump keeps the real-data demo to minutes.
        source = DataConfig(
            data=data,
            assets=("BTCUSDT", "ETHUSDT", "SOLUSDT", "BNBUSDT", "XRPUSDT"),
            start="2024-07-01",
            end="2025-07-01",
        )
    # On the real dump the replay refits quarterly over the last half year: the replay's
    # walk-forward trains on the full history before it, which is minutes per refit.
    backtest = (
        BacktestConfig(seeds=2, policies=("static", "ewma", "model"))
        if data is None
        else BacktestConfig(
            seeds=2, policies=("static", "ewma", "model"), start="2025-01-01", refit="QS"
        )
    )
    return PipelineConfig(
        data=source,
        review=ReviewConfig(
            auto_promote=True, allowed_var_zones=("green", "yellow"), wait_for_approval=False
        ),
        publish=PublishConfig(publish_time="data-end"),
        backtest=backtest,
    )


def load_pipeline_config(path: Path) -> PipelineConfig:
    """A :class:`PipelineConfig` from a JSON or TOML file (unknown keys are refused).

    Raises
    ------
    FlowConfigError
        The file cannot be read, is not JSON/TOML, or does not describe a valid config.
    """
    import json
    import tomllib

    from pydantic import ValidationError

    try:
        text = Path(path).read_text(encoding="utf-8")
        raw = tomllib.loads(text) if Path(path).suffix == ".toml" else json.loads(text)
        return PipelineConfig.model_validate(raw)
    except (OSError, ValueError, tomllib.TOMLDecodeError) as exc:
        reason = exc.errors() if isinstance(exc, ValidationError) else exc
        raise FlowConfigError(f"{path}: not a valid pipeline config: {reason}") from exc
