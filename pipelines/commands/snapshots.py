"""``dynamargin snapshots ...``: read, export, verify and audit the published snapshots.

* ``show ASSET [--at T]``: the newest snapshot of an asset, or the one in force at ``T``;
* ``export [--format json|oracle]``: the publication history, oldest first;
* ``verify FILE``: schema, reference id and both signatures of snapshot files;
* ``audit``: every row of the store against its hash chain, signatures and checkpoints;
* ``checkpoint``: sign the current head of every chain (after operator actions).

The store is ``$DYNAMARGIN_PUBLICATIONS_URL`` or ``<workdir>/publications.db``; every row
read is verified against the work dir's public key first (:mod:`serving.log_integrity`).
Each command is a thin call into ``serving``; errors print one line and exit 1.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from pipelines.commands.cli_errors import CommandFailure, err_console, reported_errors
from pipelines.commands.context import settings_from
from pipelines.stores import publication_store
from serving.input_validation import normalise_asset, parse_utc_time
from serving.standard import oracle_updates

if TYPE_CHECKING:
    from serving.signing import VerificationResult
    from serving.store import StoredPublication

snapshots_app = typer.Typer(help="Published, signed risk snapshots.", no_args_is_help=True)

console = Console()

JsonOption = Annotated[bool, typer.Option("--json", help="Print machine-readable JSON.")]
PublicKeyOption = Annotated[
    list[str] | None,
    typer.Option("--public-key", help="Trusted Ed25519 key (hex); repeatable."),
]


def register(app: typer.Typer) -> None:
    """Add the ``snapshots`` command group."""
    app.add_typer(snapshots_app, name="snapshots")


@snapshots_app.command("show")
def snapshots_show(
    ctx: typer.Context,
    asset: Annotated[str, typer.Argument(help="Asset, e.g. BTCUSDT.")],
    at: Annotated[
        str | None,
        typer.Option("--at", help="Time travel: what was in force at this ISO time (UTC)."),
    ] = None,
    as_json: JsonOption = False,
) -> None:
    """Show the latest snapshot of ASSET, or the one in force at --at."""
    from serving.log_integrity import workdir_verifier

    settings = settings_from(ctx)
    with reported_errors():
        name = normalise_asset(asset)
        when = parse_utc_time(at, "--at") if at else None
        with publication_store(settings, create=False) as store:
            verifier = workdir_verifier(settings.workdir)
            # The newest row alone could be an older one whose successors were removed:
            # the chain heads are checked against the signed checkpoint first.
            verifier.check_heads(store).require(name)
            found = store.at(name, when) if when else store.latest(name)
            if found is None:
                suffix = f" at {at}" if at else ""
                raise CommandFailure(
                    f"no snapshot of {name} published{suffix}; run `dynamargin publish`"
                )
            verifier.verify_publication(found)
    if as_json:
        typer.echo(found.raw)
        return
    _print_snapshot(found)


@snapshots_app.command("export")
def snapshots_export(
    ctx: typer.Context,
    fmt: Annotated[
        Literal["json", "oracle"],
        typer.Option("--format", help="json: signed snapshots; oracle: risk-oracle updates."),
    ] = "json",
    out: Annotated[Path | None, typer.Option("--out", help="Write here instead of stdout.")] = None,
    asset: Annotated[list[str] | None, typer.Option("--asset", help="Only these assets.")] = None,
    start: Annotated[str | None, typer.Option(help="From this publication time (UTC).")] = None,
    end: Annotated[str | None, typer.Option(help="Up to this publication time (UTC).")] = None,
) -> None:
    """Export the publication history as a JSON array, oldest first (every row verified)."""
    from serving.log_integrity import workdir_verifier

    settings = settings_from(ctx)
    with reported_errors():
        first = parse_utc_time(start, "--start") if start else None
        last = parse_utc_time(end, "--end") if end else None
        with publication_store(settings, create=False) as store:
            verifier = workdir_verifier(settings.workdir)
            heads = verifier.check_heads(store)
            names = [normalise_asset(a) for a in asset] if asset else store.assets()
            for name in names:
                heads.require(name)
            items = [
                verifier.verify_publication(item)
                for name in names
                for item in store.iter_history(name, first, last)
            ]
    items.sort(key=lambda p: (p.published_at, p.asset, p.update_id))
    if fmt == "json":
        # Each element is the snapshot's canonical JSON, so it verifies byte for byte.
        text = "[" + ",\n".join(p.raw for p in items) + "]\n"
    else:
        updates = oracle_updates(p.snapshot for p in items)
        text = json.dumps([u.to_dict() for u in updates], indent=1) + "\n"
    if out is None:
        typer.echo(text, nl=False)
    else:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(text, encoding="ascii")
        err_console.print(f"wrote {len(items)} snapshots ({fmt}) to {escape(str(out))}")


@snapshots_app.command("verify")
def snapshots_verify(
    path: Annotated[Path, typer.Argument(help="A snapshot JSON file, a JSON array or JSON lines.")],
    public_key: PublicKeyOption = None,
    signer: Annotated[
        list[str] | None, typer.Option("--signer", help="Trusted EIP-712 signer address.")
    ] = None,
    strict: Annotated[
        bool, typer.Option(help="Also require a single snapshot file to be canonical bytes.")
    ] = False,
    as_json: JsonOption = False,
) -> None:
    """Verify schema, reference id and both signatures; exit 1 if any snapshot fails."""
    from serving.snapshot_files import verify_snapshot_file

    with reported_errors():
        results = verify_snapshot_file(
            path, strict=strict, trusted_public_keys=public_key, trusted_signers=signer
        )
    if as_json:
        typer.echo(json.dumps([_result_dict(r) for r in results], indent=1))
    else:
        table = Table("asset", "update_id", "ok", "checks", "errors", title=escape(str(path)))
        for r in results:
            checks = " ".join(f"{k}={'✓' if v else '✗'}" for k, v in r.checks.items())
            table.add_row(
                escape(str(r.asset)),
                str(r.update_id),
                "[green]yes[/]" if r.ok else "[red]NO[/]",
                checks,
                escape("; ".join(r.errors)),
            )
        console.print(table)
        if not (public_key or signer):
            err_console.print(
                "note: no --public-key/--signer pinned; signatures prove integrity under the "
                "keys the snapshots name, not who published them"
            )
    if not results or not all(r.ok for r in results):
        raise typer.Exit(1)


@snapshots_app.command("audit")
def snapshots_audit(
    ctx: typer.Context,
    public_key: PublicKeyOption = None,
    fast: Annotated[
        bool,
        typer.Option(help="Skip the EIP-712 recovery (about 12 ms per snapshot)."),
    ] = False,
    as_json: JsonOption = False,
) -> None:
    """Verify every row of the store offline: chains, signatures, checkpoints; exit 1 on
    any failure."""
    from serving.keys import load_public_keys
    from serving.log_integrity import trusted_keys_from_env
    from serving.store_audit import audit_store

    settings = settings_from(ctx)
    with reported_errors():
        keys = set(public_key or ()) | trusted_keys_from_env()
        if not public_key:
            keys.add(load_public_keys(settings.workdir).ed25519_public_hex)
        with publication_store(settings, create=False) as store:
            with console.status("auditing the publication store") as status:
                report = audit_store(
                    store,
                    keys,
                    fast=fast,
                    progress=lambda stage, done: status.update(f"audit: {stage} {done:,}"),
                )
    if as_json:
        typer.echo(json.dumps(report.to_dict(), indent=1))
    else:
        table = Table("chain", "rows", title="publication store audit")
        for chain, rows in report.rows.items():
            table.add_row(chain, f"{rows:,}")
        console.print(table)
        console.print(
            f"{report.publications:,} publications and {report.checkpoints:,} checkpoints "
            f"verified; {len(report.problems)} problem(s)"
        )
        for problem in report.problems[:200]:
            console.print(f"[red]✗[/] {escape(problem)}", soft_wrap=True)
        if len(report.problems) > 200:
            console.print(f"... and {len(report.problems) - 200} more (use --json)")
    if not report.ok:
        raise typer.Exit(1)


@snapshots_app.command("checkpoint")
def snapshots_checkpoint(ctx: typer.Context) -> None:
    """Sign the current head of every chain with the publisher's key (e.g. after operator
    actions, which the API records without a signature)."""
    from serving.keys import load_signing_keys
    from serving.log_integrity import workdir_verifier
    from serving.signing import SnapshotSigner

    settings = settings_from(ctx)
    with reported_errors():
        signer = SnapshotSigner(load_signing_keys(settings.workdir, create=False))
        with publication_store(settings, create=False) as store:
            report = workdir_verifier(settings.workdir).check_heads(store)
            if report.failures:
                raise CommandFailure(
                    "refusing to sign heads that do not verify: "
                    + "; ".join(p for problems in report.failures.values() for p in problems)
                )
            sequence = store.append_checkpoint(signer)
    console.print(f"checkpoint {sequence} signed by {signer.public_key[:16]}…")


def _result_dict(result: VerificationResult) -> dict[str, Any]:
    return {
        "asset": result.asset,
        "update_id": result.update_id,
        "ok": result.ok,
        "checks": result.checks,
        "errors": list(result.errors),
        "public_key": result.public_key,
        "signer": result.signer,
        **result.extra,
    }


def _print_snapshot(found: StoredPublication) -> None:
    snap = found.snapshot
    margin, liquidity = snap["margin"], snap["liquidity"]
    table = Table("field", "value", title=f"{snap['asset']} update {snap['update_id']}")
    rows = [
        ("status / reason", f"{snap['status']} / {found.reason}"),
        ("as_of", snap["as_of"]),
        ("published_at", snap["published_at"]),
        ("valid_until", snap["valid_until"]),
        (
            "multiplier",
            f"{margin['multiplier']:.4g} (previous {margin['previous_multiplier']:.4g})",
        ),
        ("imf / mmf", f"{margin['imf']:.4g} / {margin['mmf']:.4g}"),
        (
            f"sigma {snap['horizon_hours']}h",
            f"{snap['sigma']:.4g} [{snap['sigma_lower']:.4g}, {snap['sigma_upper']:.4g}]",
        ),
        (
            "VaR 99",
            f"{snap['var_99']:.4g} [{snap['var_99_lower']:.4g}, {snap['var_99_upper']:.4g}]",
        ),
        ("ES 99", f"{snap['es_99']:.4g} [{snap['es_99_lower']:.4g}, {snap['es_99_upper']:.4g}]"),
        (
            "liquidity",
            f"amihud {liquidity['amihud']:.3g}, spread {liquidity['spread_bps']:.3g} bps, "
            f"slippage {liquidity['slippage_bps']:.3g} bps "
            f"@ ${liquidity['standard_size_usd']:,.0f}",
        ),
        ("model", f"{snap['provenance']['model_name']} v{snap['provenance']['model_version']}"),
        ("reference_id", snap["provenance"]["reference_id"]),
        ("signer", snap["signature"]["eip712"]["signer"]),
    ]
    for key, value in rows:
        table.add_row(key, escape(str(value)))
    console.print(table)
