"""What one pipeline run does: one typed config per concept, nested in :class:`PipelineConfig`.

Every flow takes its slice of :class:`PipelineConfig` as a parameter, so a flow run in the
Prefect UI is fully described by its parameters (and a deployment by its defaults). Each
concept has exactly one config class with one set of defaults, defined in the library that
owns the concept and nested here directly:

* data: :class:`DataConfig` (source, assets, the bar interval);
* evaluation and training: :class:`models.walkforward.EvaluationConfig` inside
  :class:`TrainConfig` (forecasters are built from it by :mod:`models.factory`);
* review: :class:`models.review.GateConfig` inside :class:`ReviewConfig`;
* publishing: :class:`PublishConfig`; the multiplier policy is the ``[policy]`` TOML file
  it names (:class:`serving.policy.PolicyConfig`);
* replay: :class:`liquidation.simulate.ReplayConfig` inside :class:`BacktestConfig`.

The forecast horizon is :attr:`pipelines.settings.Settings.horizon_hours` (it also names the
registered model), the bar interval :attr:`DataConfig.interval`; neither is repeated in any
other config. The models are frozen pydantic models: they validate once, refuse unknown
keys, serialise to JSON for the API and hash stably for caching.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    TypeAdapter,
    ValidationError,
    field_validator,
    model_validator,
)

from features.bars import interval_to_timedelta
from liquidation.equal_margin import EqualMarginConfig
from liquidation.replay_summary import POLICIES
from liquidation.runners import REPLAY_RUNNERS
from liquidation.simulate import ReplayConfig, ReplayInputError
from models.review import GateConfig
from models.spec import CalibrationSpec, LGBMParams
from models.walkforward import EvaluationConfig
from pipelines.errors import PipelineError
from serving.mechanisms import MECHANISMS, with_mechanisms
from serving.policy import PolicyConfig

PublishTime = Literal["now", "data-end"]
"""When a publication is stamped: wall-clock now (production) or the close of the last bar
(demo and historical runs, where wall-clock would make every forecast stale)."""


class FlowConfigError(PipelineError, ValueError):
    """A pipeline configuration that cannot run (bad window, unknown model)."""


class _Config(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class DataConfig(_Config):
    """Where the market comes from.

    Attributes
    ----------
    data
        Root laid out like ``../shared/data``; ``None`` generates the synthetic market.
    assets
        Symbols to use (all available when ``None``).
    interval
        Bar interval: the one place it is set (features, targets, the replay grid).
    start, end
        UTC bounds ``[start, end)`` read from ``data`` (ISO strings; ``None`` = all).
    synthetic_assets, synthetic_days, synthetic_seed
        Size and seed of the synthetic market.
    """

    data: Path | None = None
    assets: tuple[str, ...] | None = None
    interval: str = "1h"
    start: str | None = None
    end: str | None = None
    synthetic_assets: int = Field(5, ge=1, le=50)
    synthetic_days: int = Field(240, ge=60, le=3650)
    synthetic_seed: int = Field(7, ge=0)

    @field_validator("interval")
    @classmethod
    def _known_interval(cls, value: str) -> str:
        interval_to_timedelta(value)  # raises a ValueError naming the bad interval
        return value


class TrainConfig(_Config):
    """Walk-forward evaluation of the compared models, then the candidate's final fit.

    Attributes
    ----------
    evaluation
        Compared models, the candidate (``evaluation.primary``), walk-forward settings,
        calibration and estimator parameters.
    test_days
        Length of the scored test period, ending at the last bar whose target is known.
    """

    evaluation: EvaluationConfig = Field(default_factory=EvaluationConfig)
    test_days: int = Field(90, ge=14)

    @property
    def candidate(self) -> str:
        """The model fitted on all data and registered as ``@challenger``."""
        return self.evaluation.primary


class ReviewConfig(_Config):
    """Review gates and the decision path.

    Attributes
    ----------
    gates
        The review gates (baselines to beat, VaR zones, freshness, overlap).
    auto_promote
        Promote without a human when every gate passes (the demo allows it).
    approval_timeout_s
        How long a paused review waits for an approval before it gives up (the version
        then still waits for ``dynamargin review approve``).
    wait_for_approval
        Pause the flow for an approval input when the version is not promoted
        automatically (False: finish and leave the version pending).
    poll_interval_s
        How often a paused flow checks for its input.
    """

    gates: GateConfig = Field(default_factory=GateConfig)
    auto_promote: bool = False
    approval_timeout_s: int = Field(3600, ge=1)
    wait_for_approval: bool = True
    poll_interval_s: int = Field(5, ge=1)


class PublishConfig(_Config):
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
        TOML file with a ``[policy]`` section; when ``None``, ``$DYNAMARGIN_CONFIG`` or
        ``<workdir>/dynamargin.toml`` (:meth:`pipelines.settings.Settings.policy_path`).
    venue
        Venue named in every snapshot.
    """

    model: Literal["champion", "baseline:har", "baseline:ewma"] = "champion"
    publish_time: PublishTime = "now"
    max_champion_age_days: float = Field(14.0, gt=0)
    history_days: int = Field(30, ge=1)
    policy_config: Path | None = None
    venue: str = "binance"

    @property
    def baseline(self) -> str | None:
        """The named forecaster of a ``baseline:<name>`` source (``None`` for the champion)."""
        source, _, name = self.model.partition(":")
        return name if source == "baseline" else None


class BacktestConfig(_Config):
    """The replay of static vs dynamic margin (:func:`pipelines.backtest.run_backtest`).

    Attributes
    ----------
    enabled
        Run the replay in ``pipeline_flow``.
    seeds
        Trader books ``0 .. seeds - 1``.
    policies
        Subset of :data:`POLICIES`; ``static`` is always run (it is the comparison base).
    start, end
        Replay window ``[start, end)``, UTC; the data's range when None.
    refit
        Walk-forward refit schedule of the replay's forecasts (``QS``: quarterly, which keeps
        a 6.5-year replay to minutes).
    windows
        Extra stress windows ``NAME=YYYY-MM-DD..YYYY-MM-DD`` beside the four built in.
    forecasts
        A pinned forecasts Parquet replayed instead of a fresh walk-forward.
    replay
        Book, rules and liquidity of the replay.
    equal_margin
        Tolerance and passes of the equal-margin bisection.
    policy_config
        TOML file with a ``[policy]`` section (resolved like :attr:`PublishConfig.policy_config`).
    policy_options
        Margin mechanisms (:data:`serving.mechanisms.MECHANISMS`) switched on, with their
        configured parameters, on top of that section for every dynamic policy of the run
        (:meth:`replay_policy`); empty: the configured policy as published.
    history_days
        Synthetic market only: days before the replay start kept as forecast history
        (``None``: all but the last 60 days of the market, at least 150).
    forecasters
        Policy -> the named forecaster whose walk-forward sigma drives it (``oracle`` uses
        the realized future and ``static`` none).
    runner
        Where the replay's seeds run (:mod:`liquidation.runners`): ``local`` (default) or
        ``dask``; the results are identical.
    dask_address
        ``dask`` only: the scheduler of an existing cluster (``tcp://host:8786``); without
        it a temporary 2-worker LocalCluster.
    """

    enabled: bool = True
    seeds: int = Field(5, ge=1)
    policies: tuple[str, ...] = POLICIES
    start: str | None = None
    end: str | None = None
    refit: str = "QS"
    windows: tuple[str, ...] = ()
    forecasts: Path | None = None
    replay: ReplayConfig = Field(default_factory=ReplayConfig)
    equal_margin: EqualMarginConfig = Field(default_factory=EqualMarginConfig)
    policy_config: Path | None = None
    policy_options: tuple[str, ...] = ()
    history_days: int | None = Field(None, ge=1)
    forecasters: dict[str, str] = Field(default_factory=lambda: {"ewma": "ewma", "model": "lgbm"})
    runner: str = "local"
    dask_address: str | None = None

    @field_validator("runner")
    @classmethod
    def _known_runner(cls, value: str) -> str:
        if value not in REPLAY_RUNNERS:
            raise FlowConfigError(f"unknown runner {value!r}; choose from {list(REPLAY_RUNNERS)}")
        return value

    @field_validator("policies")
    @classmethod
    def _known_policies(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        unknown = sorted(set(value) - set(POLICIES))
        if unknown:
            raise FlowConfigError(f"unknown policies {unknown}; choose from {list(POLICIES)}")
        return value

    @field_validator("policy_options")
    @classmethod
    def _known_options(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        unknown = sorted(set(value) - set(MECHANISMS) - {"default"})
        if unknown:
            raise FlowConfigError(
                f"unknown policy options {unknown}; choose from {sorted(MECHANISMS)}"
            )
        return value

    def replay_policy(self, configured: PolicyConfig) -> PolicyConfig:
        """The configured ``[policy]`` default with :attr:`policy_options` switched on."""
        return with_mechanisms(configured, self.policy_options)

    @model_validator(mode="after")
    def _address_needs_dask(self) -> BacktestConfig:
        if self.dask_address is not None and self.runner != "dask":
            raise FlowConfigError("--dask-address needs --runner dask")
        if self.dask_address is not None:
            # Imported here: pipelines.runners imports Prefect, which a config never needs.
            from pipelines.runners import checked_address

            checked_address(self.dask_address)
        return self

    @property
    def run_policies(self) -> tuple[str, ...]:
        """Policies actually run: ``static`` first, then the requested dynamic ones."""
        return ("static", *[p for p in POLICIES if p in self.policies and p != "static"])


class PipelineConfig(_Config):
    """Every parameter of ``pipeline_flow``."""

    data: DataConfig = Field(default_factory=DataConfig)
    train: TrainConfig = Field(default_factory=TrainConfig)
    review: ReviewConfig = Field(default_factory=ReviewConfig)
    publish: PublishConfig = Field(default_factory=PublishConfig)
    backtest: BacktestConfig = Field(default_factory=BacktestConfig)

    @model_validator(mode="after")
    def _gates_compare_trained_models(self) -> PipelineConfig:
        missing = [b for b in self.review.gates.baselines if b not in self.train.evaluation.models]
        if missing:
            raise FlowConfigError(
                f"the review gates compare against {missing}: keep them in "
                f"train.evaluation.models {self.train.evaluation.models}"
            )
        return self


def replay_config_from_toml(path: Path | None) -> ReplayConfig:
    """The ``[replay]`` section of a TOML file as a :class:`ReplayConfig` (defaults when None).

    The layout mirrors the config's fields::

        [replay]                 # ReplayConfig scalars
        fund_seed_usd = 50000.0
        ramp_ms = 28800000
        [replay.book]            # BookConfig fields (trader book)
        n_traders = 100000
        [replay.asset]           # AssetConfig fields of the margin template
        base_imf = 0.05
        [replay.liquidation]     # LiquidationConfig fields (waterfall)
        penalty_rate = 0.01

    Raises
    ------
    ReplayInputError
        Naming the file when it cannot be read or a value is invalid.
    """
    import tomllib

    if path is None:
        return ReplayConfig()
    try:
        section = tomllib.loads(Path(path).read_text(encoding="utf-8")).get("replay", {})
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ReplayInputError(f"cannot read replay config {path}: {exc}") from exc
    try:
        return with_replay_options(ReplayConfig(), **section)
    except ValueError as exc:
        raise ReplayInputError(
            f"invalid replay config in {path} [replay]: {config_error_text(exc)}"
        ) from exc


def with_replay_options(replay: ReplayConfig, **options: Any) -> ReplayConfig:
    """``replay`` with the given fields replaced (nested sections merged; None is no change)."""
    base = replay_adapter().dump_python(replay)
    for key, value in options.items():
        if value is None:
            continue
        if isinstance(value, dict):
            base[key] = {**base.get(key, {}), **value}
        else:
            base[key] = value
    return replay_adapter().validate_python(base)


def replay_adapter() -> TypeAdapter[ReplayConfig]:
    """Validation of a :class:`ReplayConfig` from plain data (unknown keys are refused)."""
    return TypeAdapter(ReplayConfig)


def config_error_text(exc: Exception) -> str:
    """One line naming each invalid field of a pydantic error (or the error text)."""
    if isinstance(exc, ValidationError):
        return "; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors())
    return str(exc)


def short_market_training(test_days: int = 90) -> TrainConfig:
    """Training sized for a short market (the 240-day synthetic one): the demo's settings.

    A month each of warm-up and window tuning instead of 3 and 12, a 60-day calibration and
    forecast history, an expanding HAR window, and a smaller, faster LightGBM.
    """
    return TrainConfig(
        test_days=test_days,
        evaluation=EvaluationConfig(
            models=("ewma", "har", "lgbm"),
            primary="lgbm",
            warmup_months=1,
            tune_months=1,
            train_windows=(None,),
            history_days=60,
            calibration=CalibrationSpec(window_days=60),
            estimators={
                "lgbm": LGBMParams(
                    n_estimators=200,
                    learning_rate=0.06,
                    num_leaves=15,
                    min_child_samples=100,
                    row_stride=3,
                )
            },
        ),
    )


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
        backtest = BacktestConfig(seeds=2, policies=("static", "ewma", "model"), refit="MS")
    else:
        # A year before the end of the public dump keeps the real-data demo to minutes; the
        # replay refits quarterly over the last half year (its walk-forward trains on the
        # full history before it, which is minutes per refit).
        source = DataConfig(
            data=data,
            assets=("BTCUSDT", "ETHUSDT", "SOLUSDT", "BNBUSDT", "XRPUSDT"),
            start="2024-07-01",
            end="2025-07-01",
        )
        backtest = BacktestConfig(
            seeds=2, policies=("static", "ewma", "model"), start="2025-01-01", refit="QS"
        )
    return PipelineConfig(
        data=source,
        train=short_market_training(),
        review=ReviewConfig(
            gates=GateConfig(allowed_var_zones=("green", "yellow")),
            auto_promote=True,
            wait_for_approval=False,
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
