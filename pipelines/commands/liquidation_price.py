"""``dynamargin liquidation-price``: where each position of an account is liquidated."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from pipelines.commands.cli_errors import CommandFailure, reported_errors


def register(app: typer.Typer) -> None:
    """Add the ``liquidation-price`` command."""
    app.command(name="liquidation-price")(liquidation_price)


def liquidation_price(
    account_file: Annotated[
        Path, typer.Argument(help="JSON account description (see README, 'Liquidation prices').")
    ],
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False,
) -> None:
    """Oracle price at which the engine liquidates each position, to one micro-USD.

    The account (collateral, positions with entry prices and opening times, the RiskSnapshots
    in force, the prices now, funding accrued) is replayed through the engine, and each
    position's price is found against the engine's own exact maintenance test, other prices
    held fixed: the maintenance multiplier and its ramp, size scaling, cross margin, the mark
    and the funding are all the engine's.
    """
    from liquidation.account_spec import AccountSpec, engine_for_account
    from liquidation.errors import LiquidationCoreError
    from liquidation.liquidation_price import account_liquidation_prices, wire_row

    with reported_errors():
        try:
            data = json.loads(account_file.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as exc:
            raise CommandFailure(f"cannot read {account_file}: {exc}") from exc
        try:
            spec = AccountSpec.parse(data)
            engine = engine_for_account(spec)
            results = account_liquidation_prices(
                engine, spec.account, spec.at_ms, accrued_funding=spec.accrued_funding
            )
        except LiquidationCoreError as exc:
            raise CommandFailure(str(exc)) from exc

    rows = [wire_row(r) for r in results]
    if as_json:
        typer.echo(json.dumps({"account": spec.account, "at_ms": spec.at_ms, "positions": rows}))
        return
    table = Table(title=f"liquidation prices of {spec.account!r}")
    for column in ("bucket", "asset", "qty", "oracle", "below", "above", "distance"):
        table.add_column(column, justify="left" if column in ("bucket", "asset") else "right")
    for r, row in zip(results, rows, strict=True):
        crossing = r.below if r.below is not None else r.above
        distance = (
            "now"
            if r.liquidatable_now
            else ("-" if crossing is None else f"{(crossing - r.oracle) / r.oracle:+.2%}")
        )
        table.add_row(
            r.bucket, r.asset, row["qty"], row["oracle"],
            row["liquidation_below"] or "-", row["liquidation_above"] or "-", distance,
        )  # fmt: skip
    Console(width=160).print(table)
