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
    horizons: Annotated[
        str | None,
        typer.Option(
            help="Comma-separated horizon set in bars, e.g. 1,4,12,24,48: one walk-forward per "
            "horizon with DM against HAR (replaces --horizon)."
        ),
    ] = None,
    tails: Annotated[
        bool,
        typer.Option(
            "--tails",
            help="Also forecast the 99% quantile of the largest adverse move (long and short) "
            "over each horizon, calibrated per asset, with Kupiec coverage.",
        ),
    ] = False,
    refit: Annotated[
        str, typer.Option(help="Refit schedule (pandas offset alias): MS monthly, QS quarterly.")
    ] = "MS",
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
    if horizons is not None or tails:
        chosen_horizons = _horizon_set(horizons, target.horizon)
        _evaluate_horizons(
            data,
            settings,
            interval,
            chosen,
            names,
            start,
            end,
            chosen_horizons,
            tails,
            lgbm_threads,
            json_out,
            refit,
        )
        return
    try:
        config = EvaluationConfig(refit=refit).with_models(names).with_threads(lgbm_threads)
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


def _horizon_set(text: str | None, default: int) -> list[int]:
    if text is None:
        return [default]
    try:
        values = sorted({int(v) for v in text.split(",") if v.strip()})
    except ValueError as exc:
        raise typer.BadParameter(f"--horizons takes integers like 1,4,12,24,48: {exc}") from exc
    if not values or min(values) < 1:
        raise typer.BadParameter("--horizons needs at least one horizon of 1 bar or more")
    return values


def _evaluate_horizons(
    data: Path | None,
    settings: Any,
    interval: str,
    chosen: list[str] | None,
    names: list[str],
    start: pd.Timestamp,
    end: pd.Timestamp,
    horizons: list[int],
    tails: bool,
    threads: int,
    json_out: Path | None,
    refit: str = "MS",
) -> None:
    """Variance forecasts per horizon (DM against HAR) and, with ``tails``, tail coverage."""
    from features.build import build_features
    from features.errors import MarketDataError
    from features.market_source import read_market
    from models.horizons import REFERENCE, horizon_summary, run_horizons
    from models.review import GateConfig, horizon_gates, quantile_coverage_gates
    from models.tails import TailConfig, run_tail_evaluation
    from models.walkforward import EvaluationConfig, EvaluationInputError
    from pipelines.stores import market_store

    if REFERENCE not in names:
        names = [*names, REFERENCE]
    metrics: dict[str, Any] = {}
    try:
        config = EvaluationConfig(refit=refit).with_models(names).with_threads(threads)
        with console.status("loading market data") as status:
            market = read_market(data, market_store(settings), interval, chosen)
            status.update("building features")
            feature_set = build_features(market.select(chosen) if chosen else market)
            say = lambda msg: status.update(escape(msg))  # noqa: E731
            results = run_horizons(feature_set, start, end, horizons, config, say)
            metrics["horizons"] = horizon_summary(results, config.primary)
            metrics["by_horizon"] = {str(h): r.to_json_dict() for h, r in results.items()}
            if tails:
                tail_config = TailConfig(refit=refit)
                if threads > 1:
                    from models.spec import QuantileLGBMParams

                    tail_config = tail_config.model_copy(
                        update={"estimators": {"tail_lgbm": QuantileLGBMParams(n_jobs=threads)}}
                    )
                tail = run_tail_evaluation(feature_set, start, end, horizons, tail_config, say)
                metrics["tails"] = tail.metrics
    except (MarketDataError, EvaluationInputError, ValueError, FileNotFoundError) as exc:
        err_console.print(f"[red]evaluate failed:[/red] {escape(str(exc))}")
        raise typer.Exit(1) from exc
    console.print(_horizon_table(metrics["horizons"]))
    if "tails" in metrics:
        console.print(_tail_table(metrics["tails"]))
    from datetime import UTC, datetime

    from models.review import CandidateEvidence

    evidence = CandidateEvidence(
        model=config.primary,
        evaluation=metrics,
        forecasts=pd.DataFrame(),
        data_through=datetime.now(UTC),
        horizon_hours=max(horizons),
    )
    gates = [
        *horizon_gates(evidence, GateConfig()),
        *quantile_coverage_gates(evidence, GateConfig()),
    ]
    metrics["gates"] = [
        {"name": g.name, "passed": g.passed, "summary": g.summary, "metrics": dict(g.metrics)}
        for g in gates
    ]
    for gate in gates:
        mark = "[green]pass[/green]" if gate.passed else "[red]FAIL[/red]"
        console.print(f"gate {gate.name}: {mark} {escape(gate.summary)}")
    if json_out is not None:
        atomic_write_text(json_out, json.dumps(metrics, indent=2, default=str))
        console.print(f"metrics -> {escape(str(json_out))}")


def _horizon_table(summary: dict[str, Any]) -> Table:
    table = Table(
        title="Variance forecasts per horizon: pooled QLIKE against HAR (lower is better)"
    )
    for column in ("horizon", "primary", "HAR", "DM stat", "p (better)", "per-asset DM p"):
        table.add_column(column, justify="right")
    for horizon, entry in summary.items():
        pooled = entry.get("pooled", {})
        per_asset = ", ".join(
            f"{a}={v['dm_pvalue']:.3g}" for a, v in sorted(entry.get("assets", {}).items())
        )
        table.add_row(
            f"{horizon}h",
            f"{pooled.get('qlike_challenger', float('nan')):.4f}",
            f"{pooled.get('qlike_other', float('nan')):.4f}",
            f"{pooled.get('dm_statistic', float('nan')):+.2f}",
            f"{pooled.get('p_better', float('nan')):.3g}",
            per_asset,
        )
    return table


def _tail_table(tails: dict[str, Any]) -> Table:
    table = Table(title="Tail quantile coverage (non-overlapping windows), Kupiec POF")
    for column in ("target", "asset", "model", "exc/n", "rate", "Kupiec p", "pinball", "DM p"):
        table.add_column(column, justify="right")
    for label, entry in tails.items():
        if not isinstance(entry, dict) or "assets" not in entry:
            continue
        for asset, models in entry["assets"].items():
            for model, v in models.items():
                if model == "dm_pinball":
                    continue
                dm = models.get("dm_pinball", {})
                dm_p = (
                    next(iter(dm.values()), {}).get("pvalue") if model == entry["primary"] else None
                )
                table.add_row(
                    label,
                    asset,
                    model,
                    f"{v['exceptions']}/{v['n']}",
                    f"{v['rate']:.4f}",
                    f"{v['kupiec_p']:.3f}",
                    f"{v['pinball']:.6f}",
                    "-" if dm_p is None else f"{dm_p:.3g}",
                )
    return table


def _period(test_start: str, test_end: str) -> tuple[pd.Timestamp, pd.Timestamp]:
    start = utc_timestamp(test_start)
    end = utc_timestamp(test_end)
    # A bare date names a whole day: the test runs through its last hour.
    if len(test_end.strip()) <= 10:
        end = end + pd.Timedelta(days=1)
    return start, end
