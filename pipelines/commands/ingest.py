"""``dynamargin ingest ...`` and ``dynamargin data summary``: fill and inspect the store.

Every ingest command validates what it reads, writes it into the work dir's Parquet store
(``<workdir>/store``, see :mod:`features.store`) and puts rejected rows under
``<workdir>/quarantine``. Re-running a command is safe and, when nothing changed, fast.
Data errors print one clear line and exit with status 1; no traceback.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any

import pandas as pd
import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from features.errors import MarketDataError
from features.store import SUMMARY_COLUMNS, IngestResult, MarketStore
from pipelines.commands import options
from pipelines.commands.context import parse_symbols, settings_from
from pipelines.stores import market_store

ingest_app = typer.Typer(
    help="Validate market data and add it to the Parquet store in the work dir.",
    no_args_is_help=True,
)
data_app = typer.Typer(help="Inspect the market-data store.", no_args_is_help=True)

console = Console()
err_console = Console(stderr=True)

SymbolsOption = Annotated[
    list[str] | None,
    typer.Option(
        "--symbols",
        "-s",
        help="Symbols such as BTCUSDT (repeat the option or separate with commas); default: all.",
    ),
]
IntervalsOption = Annotated[
    list[str] | None,
    typer.Option("--interval", "-i", help="Kline interval; repeat for several (default 1h)."),
]
JsonOption = Annotated[bool, typer.Option("--json", help="Print machine-readable JSON.")]


def register(app: typer.Typer) -> None:
    """Add the ``ingest`` and ``data`` command groups to the root app."""
    app.add_typer(ingest_app, name="ingest")
    app.add_typer(data_app, name="data")


@ingest_app.command("binance-dir")
def ingest_binance_dir(
    ctx: typer.Context,
    path: Annotated[
        Path,
        typer.Argument(help="Data root (containing binance/), the binance/ dir, or binance/data."),
    ],
    symbols: SymbolsOption = None,
    interval: IntervalsOption = None,
    months: Annotated[
        str | None, typer.Option(help="Only these monthly files, e.g. 2024-01..2024-03.")
    ] = None,
    funding: Annotated[bool, typer.Option(help="Also ingest funding rates.")] = True,
    verify: Annotated[bool, typer.Option(help="Verify .CHECKSUM files.")] = True,
    strict: Annotated[
        bool, typer.Option(help="Stop at the first unreadable file instead of skipping it.")
    ] = False,
    as_json: JsonOption = False,
) -> None:
    """Ingest a directory laid out like the public Binance dump."""
    store = market_store(settings_from(ctx))
    month_range = _month_bounds(months)
    with _progress("reading dump files") as advance, _data_errors():
        result = store.ingest_dump(
            path,
            intervals=_intervals(interval),
            symbols=parse_symbols(symbols),
            funding=funding,
            months=month_range,
            verify_checksums=verify,
            on_file_error="raise" if strict else "skip",
            on_file=lambda _: advance(),
        )
    _report(result, store, as_json)


@ingest_app.command("binance-url")
def ingest_binance_url(
    ctx: typer.Context,
    url: Annotated[str, typer.Argument(help="Base URL, e.g. https://data.binance.vision")],
    symbols: SymbolsOption = None,
    interval: IntervalsOption = None,
    months: Annotated[
        str | None, typer.Option(help="Months to fetch, e.g. 2024-01..2024-03 (required).")
    ] = None,
    funding: Annotated[bool, typer.Option(help="Also fetch funding rates.")] = True,
    retries: Annotated[int, typer.Option(min=1, help="Attempts per file.")] = 5,
    as_json: JsonOption = False,
) -> None:
    """Download dump files (verified, resumable, cached) and ingest them."""
    from features.sources.download import (
        DumpDownloader,
        RetryPolicy,
        download_months,
        parse_months,
    )

    chosen = parse_symbols(symbols)
    if not chosen or months is None:
        err_console.print(
            "[red]binance-url needs --symbols and --months[/red] (the dump has no listing "
            "API), e.g. --symbols BTCUSDT --months 2024-01..2024-03"
        )
        raise typer.Exit(2)
    settings = settings_from(ctx)
    cache = settings.cache_dir / "binance"
    intervals = _intervals(interval)
    with _data_errors():
        month_list = parse_months(months)
        downloader = DumpDownloader(cache, url, retry=RetryPolicy(attempts=retries))
        fetched = download_months(
            downloader, chosen, intervals, month_list, funding=funding, progress=True
        )
    if fetched.missing:
        err_console.print(
            f"[yellow]{len(fetched.missing)} file(s) not on the server[/yellow] "
            f"(e.g. months before listing): {', '.join(fetched.missing[:5])}"
            + (" ..." if len(fetched.missing) > 5 else "")
        )
    if not fetched.files:
        err_console.print("[red]nothing to ingest: no requested file exists on the server[/red]")
        raise typer.Exit(1)
    store = market_store(settings)
    with _progress("ingesting") as advance, _data_errors():
        result = store.ingest_dump(
            cache,
            intervals=intervals,
            symbols=chosen,
            funding=funding,
            months=(month_list[0], month_list[-1]),
            on_file=lambda _: advance(),
        )
    _report(result, store, as_json)


@ingest_app.command("perp-dir")
def ingest_perp_dir(
    ctx: typer.Context,
    path: Annotated[Path, typer.Argument(help="Data root containing perp_ohlcv/, or that dir.")],
    symbols: SymbolsOption = None,
    interval: Annotated[str, typer.Option("--interval", "-i")] = "1h",
    as_json: JsonOption = False,
) -> None:
    """Ingest perpetual OHLCV CSVs (``perp_ohlcv/*.csv.gz``)."""
    store = market_store(settings_from(ctx))
    with _progress("reading perp files") as advance, _data_errors():
        result = store.ingest_perp_dir(
            path, interval, parse_symbols(symbols), on_file=lambda _: advance()
        )
    _report(result, store, as_json)


@ingest_app.command("synthetic")
def ingest_synthetic(
    ctx: typer.Context,
    assets: Annotated[int, typer.Option("--assets", min=1, help="Number of assets.")] = 3,
    days: Annotated[int, typer.Option("--days", min=1, help="Days of bars.")] = 90,
    seed: Annotated[int, typer.Option("--seed", min=0, help="Random seed.")] = 7,
    interval: Annotated[str, typer.Option("--interval", "-i")] = "1h",
    as_json: JsonOption = False,
) -> None:
    """Generate the seeded synthetic market and ingest it."""
    # Imported here: the generator is optional for every other command.
    from features.synthetic import SyntheticMarketConfig, generate_market

    config = SyntheticMarketConfig(n_assets=assets, days=days, seed=seed, interval=interval)
    with _data_errors():
        market = generate_market(config)
        store = market_store(settings_from(ctx))
        result = store.ingest_market(market)
    _report(result, store, as_json)


@ingest_app.command("live")
def ingest_live(
    ctx: typer.Context,
    assets: options.AssetsOption = "BTCUSDT,ETHUSDT",
    emulator: options.EmulatorOption = None,
    binance_spot_url: Annotated[str | None, typer.Option(help="Binance spot API root.")] = None,
    binance_usdm_url: Annotated[str | None, typer.Option(help="Binance USDT-M API root.")] = None,
    venue: options.SecondVenueOption = "bybit",
    venue_url: Annotated[str | None, typer.Option(help="Second venue API root.")] = None,
    dump_url: options.DumpUrlOption = None,
    usdm: Annotated[bool, typer.Option(help="Also ingest USDT-M perps and funding.")] = True,
    interval: Annotated[str, typer.Option("--interval", "-i", help="Bar interval.")] = "1h",
    since: options.SinceOption = None,
    lookback_days: options.LookbackDaysOption = 7.0,
    until: options.UntilOption = None,
    cycles: options.CyclesOption = None,
    late_grace: options.LateGraceOption = "5min",
    repoll: options.RepollOption = 5.0,
    max_sleep: options.MaxSleepOption = 60.0,
    metrics_port: options.MetricsPortOption = None,
) -> None:
    """Ingest closed bars from live venues after every bar close, until SIGTERM or Ctrl-C.

    Every bar is validated exactly as the dump path does and lands in the same store; an
    outage marks the asset's data stale with the reason (``<workdir>/store/_live/
    freshness.json``) and the missed bars are backfilled when the venue answers again.
    """
    import logging
    import threading

    from contracts.timestamps import optional_utc_timestamp
    from features.live.ingest import LiveIngest
    from features.live.metrics import LiveMetrics
    from pipelines.lifecycle import service_lifecycle

    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s", force=True
    )
    logging.getLogger("httpx").setLevel(logging.WARNING)  # one line per request is noise
    log = logging.getLogger("dynamargin.live")
    settings = settings_from(ctx)
    chosen = parse_symbols([assets]) or []
    with _data_errors():
        endpoints = options.live_endpoints(
            emulator,
            venue,
            dump_url,
            usdm=usdm,
            binance_spot_url=binance_spot_url or None,
            binance_usdm_url=binance_usdm_url or None,
            second_venue_url=venue_url,
        )
        config = options.live_ingest_config(
            since, lookback_days, late_grace, repoll, max_sleep, interval
        )
        stop = threading.Event()
        metrics = LiveMetrics()
        sources = endpoints.build(
            interval=interval,
            cache_dir=settings.cache_dir / "binance",
            metrics=metrics,
            sleep=stop.wait,
        )
        runner = LiveIngest(market_store(settings), sources, chosen, config, metrics)
        end = optional_utc_timestamp(until)
    options.serve_metrics(metrics_port, metrics, log)
    count = options.cycle_counter(cycles, stop.set)
    log.info(
        "live ingest of %s from %s into %s",
        ",".join(chosen),
        ", ".join(s.name for s in sources),
        settings.store_dir,
    )
    with service_lifecycle("ingest-live", stop.set, log.info):
        try:
            last = runner.run(stop, until=end, on_cycle=lambda _report: count())
        finally:
            for source in sources:
                source.close()
    if last is not None:
        for asset, record in sorted(last.freshness.items()):
            age = record.age()
            console.print(
                f"{asset}: {record.status}"
                + (f" ({escape(record.reason)})" if record.reason else "")
                + (
                    f"; data through {record.data_through:%Y-%m-%d %H:%M}"
                    if record.data_through
                    else ""
                )
                + (f", age {age}" if age is not None else "")
            )


@data_app.command("summary")
def data_summary(ctx: typer.Context, as_json: JsonOption = False) -> None:
    """Table of every stored series: first and last bar, rows, gaps, quarantined rows."""
    store = market_store(settings_from(ctx))
    with _data_errors():
        summary = store.summary()
    if as_json:
        typer.echo(json.dumps(_records(summary), indent=2))
        return
    if summary.empty:
        err_console.print(
            f"the store at {store.root} is empty; run `dynamargin ingest synthetic` or "
            "`dynamargin ingest binance-dir PATH`"
        )
        return
    table = Table(title=f"market data in {store.root}")
    for column in SUMMARY_COLUMNS:
        table.add_column(column, justify="right" if column in _NUMERIC else "left")
    for row in summary.itertuples(index=False):
        table.add_row(
            row.dataset,
            row.asset,
            row.interval,
            _fmt_time(row.first),
            _fmt_time(row.last),
            f"{row.rows:,}",
            str(row.gaps),
            str(row.missing_bars),
            str(row.quarantined),
        )
    # Pipes and CI have no terminal width; don't squeeze the table into 80 columns.
    (console if console.is_terminal else Console(width=160)).print(table)


# --- helpers ---------------------------------------------------------------------------

_NUMERIC = {"rows", "gaps", "missing_bars", "quarantined"}


def _intervals(values: Sequence[str] | None) -> list[str]:
    if not values:
        return ["1h"]
    return [s.strip() for v in values for s in v.split(",") if s.strip()]


def _month_bounds(spec: str | None) -> tuple[str, str] | None:
    if spec is None:
        return None
    from features.sources.download import parse_months

    try:
        months = parse_months(spec)
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--months") from exc
    return months[0], months[-1]


@contextmanager
def _data_errors() -> Iterator[None]:
    """Turn our data errors into one red line and exit status 1."""
    try:
        yield
    except (MarketDataError, FileNotFoundError, ValueError) as exc:
        err_console.print(f"[red]error:[/red] {escape(str(exc))}", soft_wrap=True)
        raise typer.Exit(1) from exc


@contextmanager
def _progress(label: str) -> Iterator[Callable[[], None]]:
    with Progress(
        TextColumn(label),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=err_console,
        transient=True,
    ) as bar:
        task = bar.add_task(label, total=None)
        yield lambda: bar.advance(task)


def _report(result: IngestResult, store: MarketStore, as_json: bool) -> None:
    report = result.report
    payload: dict[str, Any] = {
        "files_seen": result.files_seen,
        "files_read": result.files_read,
        "files_skipped_unchanged": result.files_skipped,
        "rows_read": result.rows_read,
        "rows_added": result.rows_added,
        "partitions_written": result.partitions_written,
        "quarantined_rows": len(report.quarantine),
        "quarantine_dir": str(store.quarantine_dir),
        "unverified_files": len(report.unverified_files),
        "file_problems": [{"path": p.path, "error": p.error} for p in report.file_problems],
        "seconds": round(result.seconds, 3),
    }
    if as_json:
        typer.echo(json.dumps(payload, indent=2))
    else:
        console.print(
            f"files: {result.files_read} read, {result.files_skipped} unchanged (skipped); "
            f"rows: {result.rows_read:,} read, {result.rows_added:,} new; "
            f"{payload['quarantined_rows']} quarantined; {result.seconds:.2f} s"
        )
        if len(report.quarantine):
            err_console.print(
                f"[yellow]{len(report.quarantine)} row(s) quarantined[/yellow] with their "
                f"reasons under {escape(str(store.quarantine_dir))}",
                soft_wrap=True,
            )
        for problem in report.file_problems:
            err_console.print(f"[red]rejected[/red] {escape(problem.error)}", soft_wrap=True)
    if report.file_problems:
        raise typer.Exit(1)


def _fmt_time(value: object) -> str:
    return "" if pd.isna(value) else pd.Timestamp(value).strftime("%Y-%m-%d %H:%M")


def _records(summary: pd.DataFrame) -> list[dict[str, Any]]:
    records = []
    for row in summary.to_dict(orient="records"):
        for key in ("first", "last"):
            row[key] = None if pd.isna(row[key]) else pd.Timestamp(row[key]).isoformat()
        for key in _NUMERIC:
            row[key] = int(row[key])
        records.append(row)
    return records
