"""``dynamargin evaluate``: walk-forward evaluation of the variance forecasters.

Loads market data (``--data ROOT`` laid out like ``../shared/data``, else the work dir's
store), builds features, runs :func:`models.walkforward.run_evaluation` on the test period
and prints a per-asset table: QLIKE of every model, the Diebold–Mariano p-value of the
challenger against the best baseline, and the 99% VaR backtest of the challenger.
``--json`` writes the metrics under stable keys; ``--report-dir`` also writes the forecasts
(Parquet) and PNG plots.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Any

import pandas as pd
import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from contracts.files import atomic_write_text
from contracts.timestamps import utc_timestamp
from models.spec import DEFAULT_MODELS, NAMED_FORECASTERS
from pipelines.commands.context import parse_symbols, settings_from

# A table of seven models needs more than 80 columns when the output is piped or logged.
console = Console(width=None if sys.stdout.isatty() else 170)
err_console = Console(stderr=True)


def register(app: typer.Typer) -> None:
    """Add ``evaluate`` to the root app."""
    app.command(name="evaluate")(evaluate_command)


def evaluate_command(
    ctx: typer.Context,
    test_start: Annotated[str, typer.Option(help="First test day (UTC), e.g. 2024-07-01.")],
    test_end: Annotated[
        str, typer.Option(help="Last test day (UTC, inclusive for a date), e.g. 2025-06-30.")
    ],
    data: Annotated[
        Path | None, typer.Option(help="Data root laid out like ../shared/data.")
    ] = None,
    assets: Annotated[
        list[str] | None,
        typer.Option("--assets", "-a", help="Symbols such as BTCUSDT (repeat or comma-separate)."),
    ] = None,
    models: Annotated[
        str, typer.Option(help=f"Comma-separated models: {','.join(NAMED_FORECASTERS)}.")
    ] = ",".join(DEFAULT_MODELS),
    horizon: Annotated[
        int | None,
        typer.Option(
            min=1, help="Forecast window in bars (default: DYNAMARGIN_HORIZON_HOURS, 24)."
        ),
    ] = None,
    interval: Annotated[str, typer.Option(help="Bar interval.")] = "1h",
    lgbm_threads: Annotated[
        int, typer.Option(min=1, help="Threads of the estimators that take them (LightGBM).")
    ] = 1,
    json_out: Annotated[
        Path | None, typer.Option("--json", help="Write metrics JSON here.")
    ] = None,
    report_dir: Annotated[
        Path | None, typer.Option(help="Write metrics, forecasts and PNG plots here.")
    ] = None,
) -> None:
    """Walk-forward evaluation: per-asset QLIKE, DM p-values and VaR backtests."""
    from features.errors import MarketDataError
    from features.market_source import read_market
    from models.spec import TargetSpec
    from models.walkforward import EvaluationConfig, EvaluationInputError, run_evaluation
    from pipelines.stores import market_store

    settings = settings_from(ctx)
    chosen = parse_symbols(assets)
    names = [m.strip() for m in models.split(",") if m.strip()]
    start, end = _period(test_start, test_end)
    target = TargetSpec(horizon=horizon or settings.horizon_hours)
    try:
        config = EvaluationConfig().with_models(names).with_threads(lgbm_threads)
        with console.status("loading market data") as status:
            market = read_market(data, market_store(settings), interval, chosen)
            status.update("evaluating")
            result = run_evaluation(
                market,
                start,
                end,
                config,
                target=target,
                assets=chosen,
                progress=lambda msg: status.update(escape(msg)),
            )
    except (MarketDataError, EvaluationInputError, ValueError, FileNotFoundError) as exc:
        err_console.print(f"[red]evaluate failed:[/red] {escape(str(exc))}")
        raise typer.Exit(1) from exc
    metrics = result.to_json_dict()
    console.print(_table(metrics, names))
    top = list(metrics.get("feature_importance", {}))[:10]
    if top:
        console.print(f"LightGBM top features (gain, last refit): {escape(', '.join(top))}")
    tuned = {k: v["window"] for k, v in metrics.get("tuning", {}).items()}
    if tuned:
        console.print(f"HAR windows tuned before the test period: {tuned}")
    console.print(f"wall time {metrics['timing']['total']:.0f} s")
    if json_out is not None:
        atomic_write_text(json_out, json.dumps(metrics, indent=2, default=str))
        console.print(f"metrics -> {escape(str(json_out))}")
    if report_dir is not None:
        from models.evaluation_report import write_evaluation_report

        write_evaluation_report(result, report_dir)
        console.print(f"report -> {escape(str(report_dir))}")


def _table(metrics: dict[str, Any], names: list[str]) -> Table:
    primary = metrics["config"]["primary"]
    table = Table(
        title=f"QLIKE, {metrics['config']['test_start'][:10]} .. test end (lower is better)"
    )
    table.add_column("asset")
    for name in names:
        table.add_column(name, justify="right")
    table.add_column("best base")
    table.add_column(f"DM p ({primary})", justify="right")
    table.add_column("VaR exc/n", justify="right")
    table.add_column("Kupiec p", justify="right")
    table.add_column("zone (last 250 d)")
    for asset, entry in metrics["assets"].items():
        best = min(entry["qlike"][m] for m in names)
        cells = [
            f"[bold]{entry['qlike'][m]:.4f}[/bold]"
            if entry["qlike"][m] == best
            else f"{entry['qlike'][m]:.4f}"
            for m in names
        ]
        var = entry.get("var99", {})
        dm = entry["dm_pvalue"].get(primary)
        table.add_row(
            asset,
            *cells,
            entry.get("best_baseline", "-"),
            "-" if dm is None else f"{dm:.3f}",
            f"{var.get('exceptions', '-')}/{var.get('n', '-')}",
            f"{var['kupiec_p']:.3f}" if "kupiec_p" in var else "-",
            f"{var.get('zone', '-')} ({var.get('exceptions_250', '-')})",
        )
    table.add_row(
        "mean", *[f"{metrics['mean']['qlike'][m]:.4f}" for m in names], "", "", "", "", ""
    )
    return table


def _period(test_start: str, test_end: str) -> tuple[pd.Timestamp, pd.Timestamp]:
    start = utc_timestamp(test_start)
    end = utc_timestamp(test_end)
    # A bare date names a whole day: the test runs through its last hour.
    if len(test_end.strip()) <= 10:
        end = end + pd.Timedelta(days=1)
    return start, end
