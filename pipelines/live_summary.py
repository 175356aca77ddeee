"""The live segment's summary: multipliers hour by hour through the replayed stress day."""

from __future__ import annotations

from rich.console import Console
from rich.table import Table

from pipelines.live_demo import LiveDemoResult


def render_live_summary(result: LiveDemoResult, console: Console | None = None) -> None:
    """Print the hour-by-hour multipliers, the oracle price, and what tightened."""
    console = console or Console()
    publications = result.publications
    if not publications:
        console.print("[bold red]live: nothing was published[/]")
        return
    assets = [a.asset for a in publications[0].assets]
    lead = "BTCUSDT" if "BTCUSDT" in assets else assets[0]
    table = Table(
        title=f"Live: {result.day:%Y-%m-%d} replayed by the emulator, one batch per close",
        caption=f"source: {result.source}; forecasts: {publications[-1].note}",
    )
    table.add_column("bar (UTC)")
    for asset in assets:
        table.add_column(asset.removesuffix("USDT"), justify="right")
    table.add_column(f"{lead.removesuffix('USDT')} oracle", justify="right")
    table.add_column("close->served", justify="right")
    if result.venue:
        table.add_column("venue: liquidations", justify="right")
        table.add_column("at risk", justify="right")
    for publication in publications:
        cells = []
        for asset in assets:
            record = publication.asset(asset)
            flag = "" if record.status == "ok" else f" {record.status}"
            cells.append(f"{record.multiplier:.2f}{flag}")
        price = publication.asset(lead).oracle_price
        if publication.asset(lead).oracle_guarded or price is None:
            oracle = "guarded"
        else:
            oracle = f"{price:,.0f}" if price >= 1000 else f"{price:.4g}"
        venue_cells = []
        if result.venue:
            hour = result.venue.get(publication.batch_id)
            venue_cells = (
                ["-", "-"] if hour is None else [str(hour.liquidations), str(hour.at_risk)]
            )
        table.add_row(
            f"{publication.bar:%m-%d %H:%M}",
            *cells,
            oracle,
            f"{publication.seconds.get('total', float('nan')):.1f} s",
            *venue_cells,
        )
    console.print(table)
    frame = result.multipliers()
    moves = []
    for asset in assets:
        start, peak = float(frame[asset].iloc[0]), float(frame[asset].max())
        moves.append(f"{asset.removesuffix('USDT')} {start:.2f} -> {peak:.2f}")
    statuses = {r.status for p in publications for r in p.assets}
    if result.venue:
        steps = sum(h.liquidations for h in result.venue.values())
        applied = sum(h.applied for h in result.venue.values())
        console.print(
            f"venue: consumed {len(result.venue)} batches through the API ({applied} snapshots "
            f"applied), {steps} waterfall step(s); event log {result.workdir / 'venue'}"
        )
    console.print(
        f"live: {len(publications)} batches in {result.seconds:.0f} s; multipliers from the "
        f"first batch to their peak: {', '.join(moves)}; statuses seen: {sorted(statuses)}"
    )
    console.print(
        f"  status page of this replay: DYNAMARGIN_PUBLICATIONS_URL=sqlite:///"
        f"{result.workdir / 'publications.db'} DYNAMARGIN_LIVE_DATA_FILE="
        f"{result.workdir / 'store' / '_live' / 'freshness.json'} dynamargin serve"
    )


__all__ = ["render_live_summary"]
