"""``dynamargin publish``, ``dynamargin run STEP`` and ``dynamargin deploy``.

* ``publish``: one signed batch from the champion (or ``--model baseline:har|ewma``) on the
  store's latest data or a dump (``--data``); ``publish --replay`` replays the policy over a
  forecast history instead and prints changes per week, time at floor/cap and lead times.
* ``run pipeline|ingest|features|train|review|publish|backtest``: one flow under the
  ephemeral Prefect server, on threads or Dask (``--runner dask [--dask-address]``).
* ``deploy``: serve the scheduled deployments (retrain daily 00:30 UTC, publish hourly at
  minute 5, backtest weekly).

Prefect and the flows are imported inside the commands, after the root callback has set
``PREFECT_HOME`` inside the work dir.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from pipelines.commands.context import parse_symbols, settings_from
from pipelines.settings import Settings

console = Console()
errors = Console(stderr=True)

run_app = typer.Typer(help="Run one flow now (ephemeral Prefect server).", no_args_is_help=True)

JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON instead of tables.")]
DataOption = Annotated[
    Path | None, typer.Option("--data", help="Dump root like ../shared/data (default: store).")
]
AssetsOption = Annotated[
    str | None, typer.Option("--assets", help="Comma-separated symbols, e.g. BTCUSDT,ETHUSDT.")
]
StartOption = Annotated[str | None, typer.Option("--start", help="UTC start (ISO).")]
EndOption = Annotated[str | None, typer.Option("--end", help="UTC end, exclusive (ISO).")]
ModelOption = Annotated[
    str, typer.Option("--model", help="champion, baseline:har or baseline:ewma.")
]
RunnerOption = Annotated[
    str, typer.Option("--runner", help="threads (default) or dask for per-asset tasks.")
]
DaskOption = Annotated[
    str | None, typer.Option("--dask-address", help="Existing scheduler, e.g. tcp://host:8786.")
]
SyntheticAssets = Annotated[int, typer.Option("--synthetic-assets", help="Synthetic assets.")]
SyntheticDays = Annotated[int, typer.Option("--synthetic-days", help="Synthetic days.")]
SeedOption = Annotated[int, typer.Option("--seed", help="Synthetic seed.")]


def register(app: typer.Typer) -> None:
    """Add ``publish``, ``run`` and ``deploy``."""
    app.command(name="publish")(publish)
    app.command(name="deploy")(deploy)
    app.add_typer(run_app, name="run")


def fail(message: str) -> typer.Exit:
    """Print one error line; the caller raises the returned exit."""
    errors.print(f"[bold red]error:[/] {escape(message)}")
    return typer.Exit(code=1)


# -- publish --------------------------------------------------------------------------


def publish(
    ctx: typer.Context,
    model: ModelOption = "champion",
    data: DataOption = None,
    assets: AssetsOption = None,
    start: StartOption = None,
    end: EndOption = None,
    at: Annotated[
        str, typer.Option("--at", help="Publication time: now, or data-end (last bar close).")
    ] = "now",
    policy_config: Annotated[
        Path | None, typer.Option("--config", help="TOML file with a [policy] section.")
    ] = None,
    replay: Annotated[
        bool, typer.Option("--replay", help="Replay the policy over the period instead.")
    ] = False,
    test_start: Annotated[
        str | None, typer.Option("--test-start", help="Replay: first scored day (UTC).")
    ] = None,
    calibration_days: Annotated[
        int | None,
        typer.Option(
            "--calibration-days",
            min=1,
            help="A baseline's conformal calibration window (default: the calibration "
            "config's, 180 days).",
        ),
    ] = None,
    as_json: JsonOption = False,
) -> None:
    """Publish one signed snapshot batch (or, with --replay, replay the policy)."""
    settings = settings_from(ctx)
    from pipelines.flows.config import DataConfig, FlowConfigError, PublishConfig

    try:
        config = PublishConfig(model=model, publish_time=at, policy_config=policy_config)
        source = DataConfig(data=data, assets=parse_symbols(assets), start=start, end=end)
    except (FlowConfigError, ValueError) as exc:
        raise fail(str(exc)) from exc
    if replay:
        if data is None:
            raise fail("--replay needs --data PATH (e.g. ../shared/data)")
        _replay(settings, config, source, test_start, as_json)
        return
    try:
        from models.spec import CalibrationSpec
        from pipelines.flows.publish import publish_market

        calibration = (
            CalibrationSpec()
            if calibration_days is None
            else CalibrationSpec(window_days=calibration_days)
        )
        rows, note = publish_market(settings, config, source, calibration)
    except Exception as exc:  # every failure prints one line; the batch was not written
        raise fail(f"{type(exc).__name__}: {exc}") from exc
    if as_json:
        console.print_json(json.dumps({"note": note, "assets": rows}, default=str))
        return
    _print_batch(rows, note)


def _replay(
    settings: Settings, publish: Any, data: Any, test_start: str | None, as_json: bool
) -> None:
    from pipelines.policy_study import replay_policy_on_baseline

    try:
        with console.status("walk-forward forecasts and policy replay (a few minutes)"):
            stats = replay_policy_on_baseline(settings, publish, data, test_start)
    except Exception as exc:  # one line per failure, as every command
        raise fail(f"{type(exc).__name__}: {exc}") from exc
    if as_json:
        console.print_json(json.dumps(stats, default=str))
        return
    table = Table(
        title=(
            f"policy replay on {stats[0]['forecasts']} forecasts from {stats[0]['from'][:10]}"
            if stats
            else "policy replay"
        ),
        caption="lead h: median hours the multiplier rose before the largest "
        "realized-vol spikes; led: spikes it rose before",
    )
    table.add_column("asset")
    for header in ("chg/wk", "floor", "cap", "fallback", "mean m", "lead h", "led"):
        table.add_column(header, justify="right")
    for s in stats:
        lead = s["median_lead_hours"]
        table.add_row(
            s["asset"],
            f"{s['changes_per_week']:.2f}",
            f"{s['time_at_floor']:.1%}",
            f"{s['time_at_cap']:.1%}",
            f"{s['fallback_share']:.1%}",
            f"{s['mean_multiplier']:.3f}",
            "-" if lead is None else f"{lead:.0f}",
            f"{s['led']}/{s['spikes']}",
        )
    console.print(table)


def _print_batch(rows: list[dict[str, Any]], note: str) -> None:
    table = Table(title=f"published batch {rows[0]['batch_id'] if rows else ''}")
    for column in ("asset", "update", "status", "multiplier", "previous", "reason"):
        table.add_column(column)
    for row in rows:
        table.add_row(
            row["asset"],
            str(row["update_id"]),
            row["status"],
            f"{row['multiplier']:.3f}",
            f"{row['previous']:.3f}",
            row["reason"],
        )
    console.print(table)
    console.print(f"source: {escape(note)}")


# -- run ------------------------------------------------------------------------------


def _flow_config(
    settings: Settings,
    data: Path | None,
    assets: list[str] | None,
    synthetic_assets: int,
    days: int,
    seed: int,
) -> Any:
    from pipelines.flows.config import (
        DataConfig,
        PipelineConfig,
        ReviewConfig,
        TrainConfig,
        short_market_training,
    )

    source = DataConfig(
        data=data,
        assets=tuple(assets) if assets else None,
        synthetic_assets=synthetic_assets,
        synthetic_days=days,
        synthetic_seed=seed,
    )
    # The synthetic market is months, not years: train it with the short-market settings.
    train = short_market_training() if data is None else TrainConfig()
    # Automatic promotion only when the operator's settings allow it (DYNAMARGIN_AUTO_PROMOTE).
    return PipelineConfig(
        data=source, train=train, review=ReviewConfig(auto_promote=settings.auto_promote)
    )


def _runner(flow: Any, runner: str, address: str | None) -> Any:
    from pipelines.runners import RunnerConfigError, make_task_runner

    if runner not in ("threads", "dask"):
        raise fail(f"unknown --runner {runner!r}; choose threads or dask")
    try:
        return flow.with_options(task_runner=make_task_runner(runner, dask_address=address))  # type: ignore[arg-type]
    except RunnerConfigError as exc:
        raise fail(str(exc)) from exc


def _show(result: Any, as_json: bool) -> None:
    from dataclasses import asdict, is_dataclass

    payload = asdict(result) if is_dataclass(result) else result
    if as_json:
        console.print_json(json.dumps(payload, default=str))
    else:
        console.print(payload)


def _run(settings: Settings, call: Any) -> Any:
    from pipelines.flows.runtime import prepare_environment

    prepare_environment(settings.workdir)
    try:
        return call()
    except typer.Exit:
        raise
    except Exception as exc:  # a failed flow run: print its cause, exit 1
        raise fail(f"{type(exc).__name__}: {exc}") from exc


@run_app.command("pipeline")
def run_pipeline(
    ctx: typer.Context,
    data: DataOption = None,
    assets: AssetsOption = None,
    synthetic_assets: SyntheticAssets = 5,
    synthetic_days: SyntheticDays = 240,
    seed: SeedOption = 7,
    runner: RunnerOption = "threads",
    dask_address: DaskOption = None,
    as_json: JsonOption = False,
) -> None:
    """ingest -> features -> train -> review -> publish -> backtest."""
    settings = settings_from(ctx)
    config = _flow_config(
        settings, data, parse_symbols(assets), synthetic_assets, synthetic_days, seed
    )

    def call() -> Any:
        from pipelines.flows.pipeline import pipeline_flow

        return pipeline_flow(str(settings.workdir), config, runner, dask_address)  # type: ignore[arg-type]

    summary = _run(settings, call)
    if as_json:
        _show(summary.to_dict(), True)
        return
    from pipelines.summary import render_summary

    render_summary(summary, console)


@run_app.command("ingest")
def run_ingest(
    ctx: typer.Context,
    data: DataOption = None,
    assets: AssetsOption = None,
    synthetic_assets: SyntheticAssets = 5,
    synthetic_days: SyntheticDays = 240,
    seed: SeedOption = 7,
    as_json: JsonOption = False,
) -> None:
    """Market data into the work dir's store."""
    settings = settings_from(ctx)
    config = _flow_config(
        settings, data, parse_symbols(assets), synthetic_assets, synthetic_days, seed
    )

    def call() -> Any:
        from pipelines.flows.ingest import ingest_flow

        return ingest_flow(str(settings.workdir), config.data)

    _show(_run(settings, call), as_json)


@run_app.command("features")
def run_features(
    ctx: typer.Context,
    assets: AssetsOption = None,
    runner: RunnerOption = "threads",
    dask_address: DaskOption = None,
    as_json: JsonOption = False,
) -> None:
    """The feature matrix of the stored market, per asset in parallel."""
    settings = settings_from(ctx)
    config = _flow_config(settings, None, parse_symbols(assets), 5, 240, 7)

    def call() -> Any:
        from pipelines.flows.featurize import features_flow

        return _runner(features_flow, runner, dask_address)(str(settings.workdir), config.data)

    _show(_run(settings, call), as_json)


@run_app.command("train")
def run_train(
    ctx: typer.Context,
    assets: AssetsOption = None,
    runner: RunnerOption = "threads",
    dask_address: DaskOption = None,
    as_json: JsonOption = False,
) -> None:
    """Features, then walk-forward, final fit and registration as @challenger."""
    settings = settings_from(ctx)
    config = _flow_config(settings, None, parse_symbols(assets), 5, 240, 7)

    def call() -> Any:
        from pipelines.flows.featurize import features_flow
        from pipelines.flows.train import train_flow

        root = str(settings.workdir)
        features = _runner(features_flow, runner, dask_address)(root, config.data)
        return _runner(train_flow, runner, dask_address)(features, root, config.train)

    _show(_run(settings, call), as_json)


@run_app.command("review")
def run_review(
    ctx: typer.Context,
    version: Annotated[str | None, typer.Argument(help="Version; default the @challenger.")] = None,
    auto_promote: Annotated[
        bool, typer.Option("--auto-promote", help="Promote at once if every gate passes.")
    ] = False,
    timeout: Annotated[int, typer.Option("--timeout", help="Seconds to wait for approval.")] = 3600,
    as_json: JsonOption = False,
) -> None:
    """Gates and report, then promotion or a pause until `dynamargin review approve`."""
    settings = settings_from(ctx)

    def call() -> Any:
        from pipelines.flows.config import ReviewConfig
        from pipelines.flows.review import open_registry, review_flow

        chosen = version
        if chosen is None:
            challenger = open_registry(settings).challenger()
            if challenger is None:
                raise fail("no @challenger to review; run `dynamargin run train` first")
            chosen = challenger.version
        review = ReviewConfig(
            auto_promote=auto_promote or settings.auto_promote, approval_timeout_s=timeout
        )
        return review_flow(chosen, str(settings.workdir), review)

    _show(_run(settings, call), as_json)


@run_app.command("publish")
def run_publish(
    ctx: typer.Context,
    model: ModelOption = "champion",
    assets: AssetsOption = None,
    at: Annotated[str, typer.Option("--at", help="now or data-end.")] = "now",
    as_json: JsonOption = False,
) -> None:
    """The publish flow: features, forecasts, policy, one signed batch."""
    settings = settings_from(ctx)
    config = _flow_config(settings, None, parse_symbols(assets), 5, 240, 7)

    def call() -> Any:
        from pipelines.flows.config import PublishConfig
        from pipelines.flows.publish import publish_flow

        publish_config = PublishConfig(model=model, publish_time=at)
        calibration = config.train.evaluation.calibration
        return publish_flow(str(settings.workdir), None, config.data, publish_config, calibration)

    _show(_run(settings, call), as_json)


@run_app.command("backtest")
def run_backtest(
    ctx: typer.Context,
    data: DataOption = None,
    assets: AssetsOption = None,
    seeds: Annotated[
        int | None, typer.Option("--seeds", min=1, help="Trader books (default: the config's).")
    ] = None,
    as_json: JsonOption = False,
) -> None:
    """The liquidation replay of static vs dynamic margin."""
    settings = settings_from(ctx)
    config = _flow_config(settings, data, parse_symbols(assets), 5, 240, 7)

    def call() -> Any:
        from pipelines.flows.backtest import backtest_flow
        from pipelines.flows.config import BacktestConfig

        backtest = BacktestConfig() if seeds is None else BacktestConfig(seeds=seeds)
        return backtest_flow(str(settings.workdir), config.data, backtest)

    _show(_run(settings, call), as_json)


# -- deploy ---------------------------------------------------------------------------


def deploy(
    ctx: typer.Context,
    data: DataOption = None,
    assets: AssetsOption = None,
    synthetic_assets: SyntheticAssets = 5,
    synthetic_days: SyntheticDays = 240,
    seed: SeedOption = 7,
    backtest_seeds: Annotated[
        int | None,
        typer.Option("--backtest-seeds", min=1, help="Trader books of backtest-weekly."),
    ] = None,
    config_file: Annotated[
        Path | None,
        typer.Option(
            "--config", help="A pipeline config (JSON or TOML); replaces the options above."
        ),
    ] = None,
) -> None:
    """Serve the scheduled deployments (SIGTERM or Ctrl-C stops them cleanly)."""
    settings = settings_from(ctx)
    from pipelines.flows.runtime import prepare_environment

    prepare_environment(settings.workdir)
    from pipelines.flows.config import FlowConfigError, load_pipeline_config
    from pipelines.flows.deploy import SCHEDULES, serve_deployments

    if config_file is not None:
        try:
            config = load_pipeline_config(config_file)
        except FlowConfigError as exc:
            raise fail(str(exc)) from exc
    else:
        config = _flow_config(
            settings, data, parse_symbols(assets), synthetic_assets, synthetic_days, seed
        )
    if backtest_seeds is not None:
        backtest = config.backtest.model_copy(update={"seeds": backtest_seeds})
        config = config.model_copy(update={"backtest": backtest})
    table = Table(title="dynamargin deployments (UTC)")
    for column in ("name", "cron", "flow", "what"):
        table.add_column(column)
    for item in SCHEDULES:
        table.add_row(item.name, item.cron, item.flow, item.description)
    console.print(table)
    console.print("watch them: `prefect server start`, PREFECT_API_URL=http://127.0.0.1:4200/api")
    serve_deployments(str(settings.workdir), config, lambda line: errors.print(escape(line)))
