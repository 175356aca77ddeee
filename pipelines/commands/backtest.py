"""``dynamargin backtest``: static vs dynamic margin on a historical (or synthetic) replay."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from contracts.files import atomic_write_text
from liquidation.equal_margin import FRONTIER_SCALES
from liquidation.errors import LiquidationCoreError
from liquidation.replay_metrics import parse_window
from liquidation.replay_report import write_report, write_summary
from liquidation.replay_summary import POLICIES, summary_metrics, summary_params
from pipelines.commands.context import parse_symbols, settings_from
from serving.errors import ServingError
from serving.policy import load_policy_book

EXPERIMENT = "dynamargin-backtest"
"""MLflow experiment of every backtest run."""
SYNTHETIC_DAYS = 330
"""Days of the synthetic market replayed without ``--data``."""

console = Console(stderr=True)


def backtest(
    ctx: typer.Context,
    data: Annotated[
        Path | None, typer.Option(help="Data root like ../shared/data; none: synthetic market")
    ] = None,
    assets: Annotated[str | None, typer.Option(help="Comma-separated symbols")] = None,
    start: Annotated[str | None, typer.Option(help="Replay start (UTC date)")] = None,
    end: Annotated[str | None, typer.Option(help="Replay end, exclusive (UTC date)")] = None,
    policies: Annotated[str, typer.Option(help="Comma-separated policies")] = ",".join(POLICIES),
    seeds: Annotated[int, typer.Option(help="Trader-book seeds 0..N-1")] = 5,
    traders: Annotated[
        int | None, typer.Option(help="Positions opened over the replay (default 100000)")
    ] = None,
    window: Annotated[
        list[str] | None, typer.Option(help="Extra stress window NAME=YYYY-MM-DD..YYYY-MM-DD")
    ] = None,
    json_out: Annotated[Path | None, typer.Option("--json", help="Write the summary JSON")] = None,
    report_dir: Annotated[Path | None, typer.Option(help="HTML report directory")] = None,
    mlflow: Annotated[bool, typer.Option(help="Log the run to MLflow")] = True,
    synthetic_assets: Annotated[
        int, typer.Option(help="Assets of the synthetic market (without --data)")
    ] = 3,
    ramp_hours: Annotated[
        float | None,
        typer.Option(help="Maintenance ramp of existing positions on a tightening (default 8)"),
    ] = None,
    maintenance_rule: Annotated[
        str | None,
        typer.Option(
            help="How a tightening reaches existing positions' maintenance: follow (default), "
            "stress or initial-only"
        ),
    ] = None,
    stress_threshold: Annotated[
        float | None,
        typer.Option(help="Multiplier from which the stress rule passes tightenings on"),
    ] = None,
    forecasts: Annotated[
        Path | None,
        typer.Option(help="Replay a pinned forecasts Parquet instead of refitting the model"),
    ] = None,
    replay_config: Annotated[
        Path | None, typer.Option(help="TOML with a [replay] section (book, rules, liquidity)")
    ] = None,
    book: Annotated[
        str | None,
        typer.Option(
            help="Trader book: legacy (default, today's) or market (entries, sides, leverage "
            "and exits respond to trend, volatility and funding)"
        ),
    ] = None,
    path: Annotated[
        str | None,
        typer.Option(
            help="Intra-bar path: wick (default, fills at the bar's extremes) or bridge "
            "(a Brownian bridge; fills where it crosses the liquidation level)"
        ),
    ] = None,
    impact: Annotated[
        str | None,
        typer.Option(
            help="Liquidation price impact: off (default) or on (square-root impact against "
            "the bar's volume, cascades within the bar, decay back to the historical path)"
        ),
    ] = None,
    policy_config: Annotated[
        Path | None, typer.Option(help="TOML with a [policy] section (MultiplierPolicy bounds)")
    ] = None,
    policy_options: Annotated[
        str,
        typer.Option(
            help="Comma-separated margin mechanisms switched on for every dynamic policy "
            "(loss_im, new_risk_at_once, apc_buffer, apc_stress_weight, apc_floor, crowding; "
            "parameters from the [policy] TOML); empty: the configured policy"
        ),
    ] = "",
    runner: Annotated[
        str,
        typer.Option(
            help="Where the replay's seeds run: local (default) or dask (identical results)"
        ),
    ] = "local",
    dask_address: Annotated[
        str | None,
        typer.Option(
            "--dask-address",
            help="With --runner dask: scheduler of an existing cluster (tcp://host:8786); "
            "without it a temporary 2-worker LocalCluster",
        ),
    ] = None,
    snapshots: Annotated[
        str | None,
        typer.Option(
            help="Also replay what a publication holds, as policy 'served': the URL of a "
            "running `dynamargin serve` (http://host:port) or a publication store (path or "
            "sqlite:/// URL)"
        ),
    ] = None,
    frontier_scales: Annotated[
        str,
        typer.Option(help="Comma-separated scales of each dynamic policy for the frontier"),
    ] = ",".join(str(s) for s in FRONTIER_SCALES),
    calibration: Annotated[
        bool,
        typer.Option(
            "--calibration",
            help="Instead of the policy comparison: replay the book (static margin, one seed) "
            "on BTC/ETH/SOL/XRP and compare its daily liquidations with Binance's real ones "
            "(fit 2021-05..2022-12, test 2023-01..2025-06, range baseline beside); prints the "
            "table and writes calibration.html into the report directory. Needs --data",
        ),
    ] = False,
) -> None:
    """Replay static, EWMA, model and oracle margin policies; compare at equal margin."""
    # Imported here: the forecasting and tracking stack adds seconds to every CLI start.
    from models.tracking import log_summary_run
    from pipelines.backtest import run_backtest
    from pipelines.flows.config import (
        BacktestConfig,
        DataConfig,
        config_error_text,
        replay_config_from_toml,
        with_replay_options,
    )
    from pipelines.runners import RunnerConfigError

    settings = settings_from(ctx)
    try:
        replay = replay_config_from_toml(replay_config)
        options = {
            "book": {"n_traders": traders} if traders is not None else {},
            "ramp_ms": None if ramp_hours is None else round(ramp_hours * 3_600_000),
            "maintenance_rule": maintenance_rule,
            "stress_threshold": stress_threshold,
            "book_model": book,
            "path": path,
            "impact": impact,
        }
        replay = with_replay_options(replay, **options)
        config = BacktestConfig(
            start=start,
            end=end,
            policies=tuple(p.strip() for p in policies.split(",") if p.strip()),
            seeds=seeds,
            windows=tuple(window or ()),
            replay=replay,
            forecasts=forecasts,
            policy_config=policy_config,
            policy_options=tuple(o.strip() for o in policy_options.split(",") if o.strip()),
            runner=runner,
            dask_address=dask_address,
        )
        source = DataConfig(
            data=data,
            assets=tuple(parse_symbols(assets) or ()) or None,
            synthetic_assets=synthetic_assets,
            synthetic_days=SYNTHETIC_DAYS,
        )
        for text in config.windows:
            parse_window(text)
        policy = config.replay_policy(
            load_policy_book(settings.policy_path(config.policy_config)).default
        )
        scales = tuple(float(x) for x in frontier_scales.split(",") if x.strip())
        if any(not scale > 0 for scale in scales):
            raise ValueError(f"--frontier-scales must be positive, got {frontier_scales!r}")
    except (LiquidationCoreError, ServingError, ValueError) as exc:
        # A bad option or config file: one clear line, exit 1.
        console.print(f"[bold red]backtest:[/] {escape(config_error_text(exc))}")
        raise typer.Exit(1) from exc
    started = time.perf_counter()

    def say(message: str) -> None:
        console.log(f"[{time.perf_counter() - started:7.1f}s] {message}")

    if calibration:
        ignored = _ignored_by_calibration({
            "--start": start, "--end": end, "--policies": policies, "--seeds": seeds,
            "--json": json_out, "--snapshots": snapshots, "--forecasts": forecasts,
            "--window": window,
        })  # fmt: skip
        if ignored:
            # Fixed periods and one static scenario: a silently ignored option would make the
            # table look like it answered a question it did not.
            console.print(
                f"[bold red]backtest:[/] --calibration uses the fixed fit and test periods and "
                f"one static-margin seed; drop {', '.join(ignored)}"
            )
            raise typer.Exit(1)
        _calibration(replay, data, assets, report_dir or settings.reports_dir / "backtest", say)
        return

    try:
        result = run_backtest(
            source,
            config,
            settings.horizon_hours,
            policy,
            settings.cache_dir,
            say,
            snapshots=snapshots,
            frontier_scales=scales,
        )
    except (LiquidationCoreError, RunnerConfigError) as exc:
        # Bad replay input (an unreadable store, a server error) or an unreachable Dask
        # scheduler: one clear line, exit 1.
        console.print(f"[bold red]backtest:[/] {escape(str(exc))}")
        raise typer.Exit(1) from exc
    out_dir = report_dir or settings.reports_dir / "backtest"
    html_path = write_report(result, out_dir)
    json_path = out_dir / "backtest.json"
    if mlflow:
        run_id = log_summary_run(
            settings.mlflow_uri,
            settings.workdir / "mlartifacts",
            EXPERIMENT,
            summary_params(result.summary),
            summary_metrics(result.summary),
            [html_path, json_path],
            artifact_path="backtest",
        )
        result.summary["mlflow_run_id"] = run_id
        write_summary(result.summary, json_path)
        say(f"logged to MLflow run {run_id}")
    if json_out is not None:
        atomic_write_text(json_out, json_path.read_text(encoding="utf-8"))
    _print_tables(result.summary)
    say(f"report: {html_path}")


def _ignored_by_calibration(given: dict[str, object]) -> list[str]:
    """The options ``--calibration`` does not read that were set away from their defaults."""
    defaults = {"--policies": ",".join(POLICIES), "--seeds": 5}
    return [
        option
        for option, value in given.items()
        if value not in (None, [], ()) and value != defaults.get(option)
    ]


def _calibration(replay, data: Path | None, assets: str | None, out_dir: Path, say) -> None:
    """``--calibration``: the book's calibration table, printed and written as HTML."""
    from features.errors import MarketDataError
    from liquidation.calibration_report import table_text, write_calibration_report
    from pipelines.calibration import CALIBRATION_ASSETS, run_calibration

    if data is None:
        console.print("[bold red]backtest:[/] --calibration needs --data (real liquidations)")
        raise typer.Exit(1)
    symbols = tuple(parse_symbols(assets) or ()) or CALIBRATION_ASSETS
    try:
        result = run_calibration(data, replay, symbols, say=say)
    except (LiquidationCoreError, MarketDataError, ValueError) as exc:
        # Missing or malformed data, an asset without real liquidations: one clear line.
        console.print(f"[bold red]backtest:[/] {escape(str(exc))}")
        raise typer.Exit(1) from exc
    html_path = write_calibration_report(
        result.rows, result.real, result.simulated, result.config, out_dir
    )
    Console(width=250).print(table_text(result.rows), markup=False, highlight=False)
    say(f"calibration report: {html_path}")


def _print_tables(summary: dict) -> None:
    out = Console()
    table = Table(title="Same base parameters (mean ± std over seeds)")
    keys = (
        "bad_debt",
        "positions_liquidated",
        "liquidated_notional",
        "waterfall_steps",
        "insurance_drawdown",
        "adl_events",
        "topups",
        "mean_im",
    )
    table.add_column("policy")
    for key in keys:
        table.add_column(key, justify="right")
    for name, block in summary["policies"].items():
        table.add_row(
            name,
            *[f"{block[k]:,.1f} ± {block['spread'][k]['std']:,.1f}" for k in keys],
        )
    out.print(table)
    equal = Table(title="Equal mean margin: policy / static at the calibrated static level")
    ratio_keys = ("bad_debt", "positions_liquidated", "liquidated_notional", "waterfall_steps")
    equal.add_column("policy")
    equal.add_column("static level", justify="right")
    for key in (*ratio_keys, "insurance_drawdown", "adl_events", "mean_im"):
        equal.add_column(key, justify="right")
    gain = Table(title="Oracle gain captured (bad debt, mean ± std of per-seed ratios, seeds)")
    gain.add_column("policy")
    splits = ("overall", "first_jump", "aftershock")
    for split in splits:
        gain.add_column(split, justify="right")
    for name, block in summary["equal_margin"].items():
        ratio = block["ratio"]
        equal.add_row(
            name,
            f"{block['static_level']:.3f}",
            *[
                "n/a" if ratio[k] is None else f"{ratio[k]:.3f}"
                for k in (*ratio_keys, "insurance_drawdown", "adl_events", "mean_im")
            ],
        )
        gains = block.get("oracle_gain_captured")
        if gains is not None:
            gain.add_row(name, *[_gain_text(gains[split]) for split in splits])
    out.print(equal)
    out.print(gain)
    out.print(json.dumps(summary["comparison"]))


def _gain_text(gain: dict | None) -> str:
    if gain is None or gain["mean"] is None:
        return "n/a"
    return f"{gain['mean']:.2f} ± {gain['std']:.2f} ({gain['n']})"


def register(app: typer.Typer) -> None:
    """Add ``dynamargin backtest`` to the root app."""
    app.command(name="backtest")(backtest)
