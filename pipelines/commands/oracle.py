"""``dynamargin oracle push``: publish a batch of signed snapshots to a RiskOracle on chain.

* ``--rpc-url URL --oracle ADDRESS``: any node; transactions are signed with the key in
  ``DYNAMARGIN_ORACLE_PUSHER_KEY`` (an authorized sender of that RiskOracle), never a
  command-line argument. Sent transactions are journaled in ``<workdir>/onchain/`` so a
  crashed push resumes without sending twice.
* ``--in-process``: a rehearsal on a fresh in-process EVM: deploys the RiskOracle, pushes,
  then deploys a perp market with a MarginSteward that applies each asset; prints the gas.

Snapshots come from the publication store (the newest of each asset, or ``--batch N``),
every row verified first. Only ``dynamargin.risk/2`` snapshots signed for the target's
EIP-712 domain (its chain id and RiskOracle address) are pushed; the error says which
``DYNAMARGIN_EIP712_*`` settings to publish with otherwise.
"""

from __future__ import annotations

import json
import os
from datetime import timedelta
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from pipelines.commands.cli_errors import CommandFailure, err_console, reported_errors
from pipelines.commands.context import settings_from
from pipelines.stores import publication_store
from serving.input_validation import normalise_asset

oracle_app = typer.Typer(help="Signed snapshots on an on-chain RiskOracle.", no_args_is_help=True)
console = Console()


def register(app: typer.Typer) -> None:
    """Add the ``oracle`` command group."""
    app.add_typer(oracle_app, name="oracle")


@oracle_app.command("push")
def oracle_push(
    ctx: typer.Context,
    rpc_url: Annotated[
        str | None, typer.Option("--rpc-url", help="JSON-RPC URL of the node.")
    ] = None,
    oracle: Annotated[
        str | None, typer.Option("--oracle", help="RiskOracle address (with --rpc-url).")
    ] = None,
    in_process: Annotated[
        bool, typer.Option("--in-process", help="Rehearse on a fresh in-process EVM.")
    ] = False,
    batch: Annotated[
        int | None, typer.Option("--batch", min=1, help="This batch (default: newest per asset).")
    ] = None,
    asset: Annotated[list[str] | None, typer.Option("--asset", help="Only these assets.")] = None,
    gas_limit: Annotated[
        int, typer.Option("--gas-limit", min=1_000_000, help="Largest gas of one call.")
    ] = 15_000_000,
    as_json: Annotated[bool, typer.Option("--json", help="Print machine-readable JSON.")] = False,
) -> None:
    """Push signed snapshots to a RiskOracle (one updateType per parameter; chunked, idempotent)."""
    from serving.evm_chain import ENV_PUSHER_KEY, rpc_chain
    from serving.oracle_push import push_snapshots
    from serving.solidity_build import compile_contracts

    settings = settings_from(ctx)
    with reported_errors():
        if in_process == (rpc_url is not None):
            raise CommandFailure("give either --rpc-url URL (with --oracle) or --in-process")
        snapshots = _verified_snapshots(settings, batch, asset)
        if in_process:
            _rehearse(snapshots, as_json)
            return
        if not oracle:
            raise CommandFailure("--rpc-url needs --oracle ADDRESS (the RiskOracle)")
        key = os.environ.get(ENV_PUSHER_KEY)
        if not key:
            raise CommandFailure(
                f"set {ENV_PUSHER_KEY} to the hex key of an authorized RiskOracle sender"
            )
        chain = rpc_chain(rpc_url or "", key)
        target = chain.contract(compile_contracts()["RiskOracle"], oracle)
        journal = settings.workdir / "onchain" / "push-journal.json"

        def progress(event: str, details: dict[str, Any]) -> None:
            if not as_json:
                err_console.print(f"{event}: {', '.join(details.get('assets', []))}")

        report = push_snapshots(
            chain, target, snapshots, gas_limit=gas_limit, journal=journal, progress=progress
        )
    _print_push(report, as_json)


def _verified_snapshots(
    settings: Any, batch: int | None, assets: list[str] | None
) -> list[dict[str, Any]]:
    from serving.log_integrity import workdir_verifier

    with publication_store(settings, create=False) as store:
        verifier = workdir_verifier(settings.workdir)
        heads = verifier.check_heads(store)
        rows = store.batch(batch) if batch is not None else list(store.latest().values())
        wanted = {normalise_asset(a) for a in assets} if assets else None
        chosen = [r for r in rows if wanted is None or r.asset in wanted]
        for row in chosen:
            heads.require(row.asset)
        snapshots = [dict(verifier.verify_publication(r).snapshot) for r in chosen]
    if not snapshots:
        raise CommandFailure("no published snapshots to push; run `dynamargin publish` first")
    return snapshots


def _rehearse(snapshots: list[dict[str, Any]], as_json: bool) -> None:
    from pipelines import onchain_round_trip
    from serving.standard import parse_time

    first = min(parse_time(s["published_at"]) for s in snapshots)
    session = onchain_round_trip.start(first - timedelta(minutes=5))
    trip = onchain_round_trip.push_and_apply(session, snapshots)
    if as_json:
        typer.echo(json.dumps(round_trip_summary(trip), indent=1))
        return
    print_round_trip(trip, console)


def round_trip_summary(trip: Any) -> dict[str, Any]:
    """JSON-ready figures of an :class:`pipelines.onchain_round_trip.RoundTrip`."""
    return {
        "deploy_gas": trip.gas,
        "push_calls": [
            {"assets": list(c.assets), "gas_used": c.gas_used, "tx_hash": c.tx_hash}
            for c in trip.push.calls
        ],
        "assets": [
            {
                "asset": a.asset,
                "reference_id": a.reference_id,
                "imf_on_chain_wad": a.imf_on_chain,
                "applied": a.outcome.applied,
                "rejection": a.outcome.rejection,
                "steward_gas": a.outcome.gas_used,
                "values_equal_signed": a.values_equal,
            }
            for a in trip.assets
        ],
    }


def print_round_trip(trip: Any, out: Console) -> None:
    """The round trip as a table: per asset, signed and on-chain values and gas."""
    per_asset = {a: c.gas_per_asset for c in trip.push.calls for a in c.assets}
    table = Table(title="On chain: RiskOracle push -> MarginSteward -> PerpMarket")
    for column in ("asset", "multiplier", "IMF signed", "IMF on chain", "push gas", "apply gas"):
        table.add_column(column, justify="left" if column == "asset" else "right")
    for a in trip.assets:
        table.add_row(
            a.asset,
            f"{a.multiplier:.3f}",
            f"{a.imf_signed:.6g}",
            f"{a.imf_on_chain / 1e18:.6g}"
            if a.outcome.applied
            else f"rejected: {a.outcome.rejection}",
            f"{per_asset.get(a.asset, 0):,.0f}",
            f"{a.outcome.gas_used:,}",
        )
    out.print(table)
    deploy = ", ".join(f"{name} {gas:,}" for name, gas in trip.gas.items())
    calls = len(trip.push.calls)
    out.print(
        f"deploy gas: {deploy}; push: {calls} call(s), {trip.push.gas_used:,} gas; values equal "
        f"the signed snapshots (WAD) and reference ids match the store: "
        f"{'yes' if trip.all_equal else 'NO'}"
    )


def _print_push(report: Any, as_json: bool) -> None:
    if as_json:
        typer.echo(
            json.dumps(
                {
                    "chain_id": report.chain_id,
                    "oracle": report.oracle,
                    "calls": [
                        {"tx_hash": c.tx_hash, "assets": list(c.assets), "gas_used": c.gas_used}
                        for c in report.calls
                    ],
                    "already_on_chain": report.already_on_chain,
                    "resumed": report.resumed,
                    "gas_used": report.gas_used,
                },
                indent=1,
            )
        )
        return
    table = Table(title=f"Pushed to RiskOracle {report.oracle} (chain {report.chain_id})")
    for column in ("tx", "assets", "records", "gas", "gas per asset"):
        table.add_column(column)
    for c in report.calls:
        table.add_row(
            c.tx_hash[:18] + "...",
            ", ".join(c.assets),
            str(c.records),
            f"{c.gas_used:,}",
            f"{c.gas_per_asset:,.0f}",
        )
    console.print(table)
    if report.already_on_chain:
        console.print(f"already on chain (not pushed again): {', '.join(report.already_on_chain)}")
    console.print(f"total gas {report.gas_used:,}")
