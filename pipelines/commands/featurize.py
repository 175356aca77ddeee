"""``dynamargin features build``, ``features catalog`` and ``features orderbook``.

``build`` reads market data (a directory laid out like ``../shared/data`` with ``--data``,
a Parquet store with ``--store``, by default the work dir's store), builds the
point-in-time feature matrix (:func:`features.build.build_features`) and writes it with its
catalog to ``--out`` (default ``<workdir>/features``). ``catalog`` prints every column's
name, family, window and definition. ``orderbook`` rebuilds the L2 book of a raw websocket
capture and prints its order flow imbalance, trade VPIN and agreement with the exchange's
best prices (:func:`features.l2.summary.summarise_capture`). Data errors print one line and
exit with status 1.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from features.build import (
    FeatureConfig,
    FeatureSet,
    build_features,
    feature_catalog,
    feature_set_hash,
)
from features.errors import MarketDataError
from features.market_source import read_market
from features.store import MarketStore
from pipelines.commands.context import parse_symbols, settings_from
from pipelines.stores import market_store

features_app = typer.Typer(
    help="Build the point-in-time feature matrix and show its catalog.", no_args_is_help=True
)
console = Console()
err_console = Console(stderr=True)


def register(app: typer.Typer) -> None:
    """Add the ``features`` command group to the root app."""
    app.add_typer(features_app, name="features")


@features_app.command("build")
def build_command(
    ctx: typer.Context,
    data: Annotated[
        Path | None,
        typer.Option(help="Data root laid out like ../shared/data (binance/, perp_ohlcv/)."),
    ] = None,
    store: Annotated[
        Path | None, typer.Option(help="Parquet market store (default: <workdir>/store).")
    ] = None,
    assets: Annotated[
        list[str] | None,
        typer.Option("--assets", "-a", help="Symbols such as BTCUSDT (repeat or comma-separate)."),
    ] = None,
    interval: Annotated[str, typer.Option(help="Bar interval.")] = "1h",
    start: Annotated[str | None, typer.Option(help="First bar (UTC), e.g. 2024-01-01.")] = None,
    end: Annotated[str | None, typer.Option(help="End (UTC, exclusive).")] = None,
    out: Annotated[
        Path | None, typer.Option(help="Output directory (default: <workdir>/features).")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print a JSON summary.")] = False,
) -> None:
    """Build the feature matrix and write features.parquet + catalog.json."""
    settings = settings_from(ctx)
    if data is not None and store is not None:
        err_console.print("[red]give either --data or --store, not both[/red]")
        raise typer.Exit(2)
    chosen = parse_symbols(assets)
    try:
        source = MarketStore(store) if store is not None else market_store(settings)
        market = read_market(data, source, interval, chosen, start, end)
        with _progress(len(market.assets), quiet=as_json) as advance:
            feature_set = build_features(market, FeatureConfig(), progress=advance)
        target = feature_set.to_parquet(out or settings.features_dir)
    except (MarketDataError, ValueError, FileNotFoundError) as exc:
        err_console.print(f"[red]features build failed:[/red] {escape(str(exc))}")
        raise typer.Exit(1) from exc
    summary = _summary(feature_set, target)
    if as_json:
        typer.echo(json.dumps(summary, indent=2))
        return
    table = Table(title=f"feature set {feature_set.feature_set_hash[:12]}")
    for column in ("asset", "rows", "first bar", "last bar", "rows with rv_24h"):
        table.add_column(column)
    for asset, part in feature_set.frame.groupby("asset", sort=True, observed=True):
        table.add_row(
            str(asset),
            str(len(part)),
            str(part["ts"].min()),
            str(part["ts"].max()),
            str(int(part["rv_24h"].notna().sum())),
        )
    console.print(table)
    console.print(f"{summary['columns']} features, {summary['rows']} rows -> {escape(str(target))}")


@features_app.command("catalog")
def catalog_command(
    interval: Annotated[str, typer.Option(help="Bar interval the names refer to.")] = "1h",
    as_json: Annotated[bool, typer.Option("--json", help="Print the catalog as JSON.")] = False,
) -> None:
    """Print every feature column: name, family, window and definition."""
    config = FeatureConfig()
    try:
        catalog = feature_catalog(config, interval)
    except ValueError as exc:
        err_console.print(f"[red]{escape(str(exc))}[/red]")
        raise typer.Exit(1) from exc
    if as_json:
        payload = {
            "feature_set_hash": feature_set_hash(config, interval),
            "interval": interval,
            "features": [spec.__dict__ for spec in catalog],
        }
        typer.echo(json.dumps(payload, indent=2))
        return
    table = Table(title=f"{len(catalog)} features ({interval} bars)")
    for column in ("name", "family", "window", "definition"):
        table.add_column(column)
    for spec in catalog:
        table.add_row(spec.name, spec.family, spec.window, escape(spec.definition))
    console.print(table)


@contextmanager
def _progress(total: int, quiet: bool) -> Iterator[Callable[[str], None]]:
    """Yield a callback that advances a progress bar over assets (silent when ``quiet``)."""
    if quiet:
        yield lambda _asset: None
        return
    with Progress(
        TextColumn("features {task.fields[asset]}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=err_console,
        transient=True,
    ) as bar:
        task = bar.add_task("build", total=total, asset="")
        yield lambda asset: bar.update(task, advance=1, asset=asset)


def _summary(feature_set: FeatureSet, target: Path) -> dict[str, object]:
    frame = feature_set.frame
    return {
        "feature_set_hash": feature_set.feature_set_hash,
        "out": str(target),
        "rows": len(frame),
        "columns": len(feature_set.catalog),
        "assets": sorted(frame["asset"].astype(str).unique().tolist()),
        "first_bar": str(frame["ts"].min()) if len(frame) else None,
        "last_bar": str(frame["ts"].max()) if len(frame) else None,
        "source": feature_set.source,
    }


@features_app.command("orderbook")
def orderbook_command(
    capture: Annotated[
        Path, typer.Argument(help="A Binance USDT-M websocket capture (<local_ns> <JSON> lines).")
    ],
    depth: Annotated[int, typer.Option(min=1, help="Book levels kept.")] = 10,
    bucket: Annotated[str, typer.Option(help="OFI time bucket (pandas frequency).")] = "1s",
    out: Annotated[
        Path | None, typer.Option(help="Write ofi.parquet and vpin.parquet here.")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print a JSON summary.")] = False,
) -> None:
    """Rebuild the L2 book of CAPTURE; print its OFI, trade VPIN and bookTicker agreement."""
    from features.l2.summary import summarise_capture

    try:
        summary = summarise_capture(capture, depth=depth, bucket=bucket)
    except (MarketDataError, OSError, ValueError) as exc:
        err_console.print(f"[red]orderbook failed:[/red] {escape(str(exc))}")
        raise typer.Exit(1) from exc
    vpin = summary.vpin["vpin"].dropna() if len(summary.vpin) else summary.vpin
    payload = {
        "capture": str(capture),
        "events": summary.events,
        "diffs_applied": summary.stats.applied,
        "stale_diffs_dropped": summary.stats.dropped_stale,
        "resyncs": summary.stats.resyncs,
        "ofi_buckets": len(summary.ofi),
        "ofi_level1_abs_mean": float(summary.ofi["ofi_1"].abs().mean()),
        "vpin_last": float(vpin.iloc[-1]) if len(vpin) else None,
        "vpin_mean": float(vpin.mean()) if len(vpin) else None,
        "book_ticker_agreement": summary.agreement.rate,
    }
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        summary.ofi.to_parquet(out / "ofi.parquet")
        summary.vpin.to_parquet(out / "vpin.parquet")
        payload["out"] = str(out)
    if as_json:
        typer.echo(json.dumps(payload, indent=2))
        return
    table = Table("measure", "value", title=f"order book of {capture.name}")
    for key, value in payload.items():
        table.add_row(key, escape(str(value)))
    console.print(table)
