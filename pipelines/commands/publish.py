"""``dynamargin schema|snapshots|policy ...``: the published risk standard and its policy.

* ``schema export``: the RiskSnapshot v1 JSON Schema;
* ``snapshots show|export|verify``: read the append-only publication store of the work dir
  (``$DYNAMARGIN_PUBLICATIONS_URL`` to use PostgreSQL), export it as snapshots or as
  risk-oracle updates, and verify signed snapshot files;
* ``policy replay|halt|resume|override|clear-override|audit``: replay the multiplier policy
  over a forecast history and apply audited operator actions.

The policy config is ``--config FILE``, else ``$DYNAMARGIN_CONFIG``, else
``<workdir>/dynamargin.toml`` if it exists (its ``[policy]`` section), else the defaults.
Errors print one line and exit with status 1. ``dynamargin publish`` itself is wired by
the pipeline from the champion model and calls :func:`serving.publishing.publish_batch`.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal

import pandas as pd
import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from pipelines.commands.context import settings_from
from pipelines.settings import Settings
from serving.errors import ServingError
from serving.policy import PolicyBook, load_policy_book
from serving.standard import canonical_json, json_schema, oracle_updates

if TYPE_CHECKING:
    from serving.signing import VerificationResult
    from serving.store import PublicationStore, StoredPublication

schema_app = typer.Typer(help="The RiskSnapshot v1 standard.", no_args_is_help=True)
snapshots_app = typer.Typer(help="Published, signed risk snapshots.", no_args_is_help=True)
policy_app = typer.Typer(help="The margin-multiplier policy.", no_args_is_help=True)

console = Console()
err_console = Console(stderr=True)

JsonOption = Annotated[bool, typer.Option("--json", help="Print machine-readable JSON.")]
ConfigOption = Annotated[
    Path | None,
    typer.Option("--config", help="TOML file with a [policy] section (see serving.policy)."),
]
OperatorOption = Annotated[str, typer.Option("--operator", help="Who acts (audited).")]
NoteOption = Annotated[str, typer.Option("--note", help="Why (audited).")]


def register(app: typer.Typer) -> None:
    """Add the ``schema``, ``snapshots`` and ``policy`` command groups."""
    app.add_typer(schema_app, name="schema")
    app.add_typer(snapshots_app, name="snapshots")
    app.add_typer(policy_app, name="policy")


def policy_config_path(settings: Settings, explicit: Path | None = None) -> Path | None:
    """``explicit``, else ``$DYNAMARGIN_CONFIG``, else ``<workdir>/dynamargin.toml`` if present."""
    return settings.policy_path(explicit)


def open_publication_store(settings: Settings) -> PublicationStore:
    """The publication store of the work dir (or ``$DYNAMARGIN_PUBLICATIONS_URL``)."""
    # Imported on use, like signing and replay below: SQLAlchemy and eth-account add about a
    # second to every `dynamargin` start otherwise.
    from serving.store import PublicationStore, default_store_url

    return PublicationStore(default_store_url(settings.workdir))


# -- schema ---------------------------------------------------------------------------


@schema_app.command("export")
def schema_export(
    out: Annotated[Path | None, typer.Option("--out", help="Write here instead of stdout.")] = None,
) -> None:
    """Print or write the RiskSnapshot v1 JSON Schema (draft 2020-12)."""
    text = json.dumps(json_schema(), indent=2, sort_keys=True) + "\n"
    if out is None:
        typer.echo(text, nl=False)
        return
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text, encoding="utf-8")
    err_console.print(f"wrote {escape(str(out))}")


# -- snapshots ------------------------------------------------------------------------


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
    with _cli_errors():
        with open_publication_store(settings_from(ctx)) as store:
            found = store.at(asset, _parse_cli_time(at)) if at else store.latest(asset)
        if found is None:
            when = f" at {at}" if at else ""
            raise _Fail(f"no snapshot of {asset} published{when}; run `dynamargin publish`")
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
    """Export the publication history as a JSON array, oldest first."""
    with _cli_errors(), open_publication_store(settings_from(ctx)) as store:
        assets = asset or store.assets()
        items = [
            item
            for name in assets
            for item in _all_history(
                store,
                name,
                _parse_cli_time(start) if start else None,
                _parse_cli_time(end) if end else None,
            )
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
    public_key: Annotated[
        list[str] | None, typer.Option("--public-key", help="Trusted Ed25519 key (hex).")
    ] = None,
    signer: Annotated[
        list[str] | None, typer.Option("--signer", help="Trusted EIP-712 signer address.")
    ] = None,
    strict: Annotated[
        bool, typer.Option(help="Also require a single snapshot file to be canonical bytes.")
    ] = False,
    as_json: JsonOption = False,
) -> None:
    """Verify schema, reference id and both signatures; exit 1 if any snapshot fails."""
    with _cli_errors():
        try:
            raw = path.read_bytes()
        except OSError as exc:
            raise _Fail(f"cannot read {path}: {exc}") from exc
        kwargs: dict[str, Any] = {
            "trusted_public_keys": public_key or None,
            "trusted_signers": signer or None,
        }
        results = _verify_file(raw, path, strict, kwargs)
    if as_json:
        typer.echo(json.dumps([_result_dict(r) for r in results], indent=1))
    else:
        table = Table("asset", "update_id", "ok", "checks", "errors", title=str(path))
        for r in results:
            checks = " ".join(f"{k}={'✓' if v else '✗'}" for k, v in r.checks.items())
            table.add_row(
                str(r.asset),
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


# -- policy ---------------------------------------------------------------------------


@policy_app.command("replay")
def policy_replay_command(
    ctx: typer.Context,
    forecasts: Annotated[
        Path, typer.Option("--forecasts", help="Forecast-contract Parquet (+ realized_vol/rv_fwd).")
    ],
    config: ConfigOption = None,
    start: Annotated[
        str | None, typer.Option(help="Summarise from this time (earlier rows warm up).")
    ] = None,
    horizon_hours: Annotated[int, typer.Option(help="H of realized_vol / rv_fwd.")] = 24,
    as_json: JsonOption = False,
) -> None:
    """Replay the policy: changes per week, time at floor/cap, lead time before vol spikes."""
    from serving.policy_replay import replay_policy

    with _cli_errors():
        book = _book(ctx, config)
        try:
            frame = pd.read_parquet(forecasts)
        except (OSError, ValueError) as exc:
            raise _Fail(f"cannot read forecasts {forecasts}: {exc}") from exc
        with console.status(f"replaying {frame['asset'].nunique()} assets, {len(frame)} rows"):
            report = replay_policy(
                frame,
                book,
                horizon_hours=horizon_hours,
                report_start=_parse_cli_time(start) if start else None,
            )
    summaries = [a.to_dict() for a in report.assets.values()]
    if as_json:
        typer.echo(json.dumps(summaries, indent=1))
        return
    table = Table(
        title="policy replay",
        caption="lead h: median hours the multiplier rose "
        "before the largest realized-vol spikes; led: spikes it rose before",
    )
    table.add_column("asset", no_wrap=True)
    for header in ("updates", "chg/wk", "floor", "cap", "fallback", "mean m", "lead h", "led"):
        table.add_column(header, justify="right", no_wrap=True)
    for s in summaries:
        led = sum(1 for sp in s["spikes"] if sp["lead_hours"] is not None and sp["lead_hours"] > 0)
        lead = s["median_lead_hours"]
        table.add_row(
            s["asset"],
            str(s["updates"]),
            f"{s['changes_per_week']:.2f}",
            f"{s['time_at_floor']:.1%}",
            f"{s['time_at_cap']:.1%}",
            f"{s['fallback_share']:.1%}",
            f"{s['mean_multiplier']:.3f}",
            "-" if lead is None else f"{lead:.0f}",
            f"{led}/{len(s['spikes'])}",
        )
    console.print(table)


@policy_app.command("halt")
def policy_halt(
    ctx: typer.Context,
    asset: str,
    operator: OperatorOption,
    note: NoteOption,
    config: ConfigOption = None,
) -> None:
    """Freeze ASSET's multiplier; snapshots carry status 'halted' until resumed (audited)."""
    _operator(ctx, config, asset, "halt", operator, note)


@policy_app.command("resume")
def policy_resume(
    ctx: typer.Context,
    asset: str,
    operator: OperatorOption,
    note: NoteOption,
    config: ConfigOption = None,
) -> None:
    """Lift a halt of ASSET (audited)."""
    _operator(ctx, config, asset, "resume", operator, note)


@policy_app.command("override")
def policy_override(
    ctx: typer.Context,
    asset: str,
    multiplier: Annotated[float, typer.Argument(help="Forced multiplier, within [floor, cap].")],
    operator: OperatorOption,
    note: NoteOption,
    until: Annotated[
        str | None, typer.Option(help="End time (UTC); default until cleared.")
    ] = None,
    config: ConfigOption = None,
) -> None:
    """Force ASSET's multiplier until --until or until cleared (audited)."""
    _operator(
        ctx,
        config,
        asset,
        "override",
        operator,
        note,
        multiplier,
        _parse_cli_time(until) if until else None,
    )


@policy_app.command("clear-override")
def policy_clear_override(
    ctx: typer.Context,
    asset: str,
    operator: OperatorOption,
    note: NoteOption,
    config: ConfigOption = None,
) -> None:
    """End ASSET's override (audited)."""
    _operator(ctx, config, asset, "clear_override", operator, note)


@policy_app.command("audit")
def policy_audit(
    ctx: typer.Context,
    asset: Annotated[str | None, typer.Argument(help="Only this asset.")] = None,
    as_json: JsonOption = False,
) -> None:
    """List operator actions, oldest first."""
    with _cli_errors(), open_publication_store(settings_from(ctx)) as store:
        records = store.audit_log(asset)
    rows = [
        {
            "at": r.at.isoformat(),
            "asset": r.asset,
            "action": r.action,
            "operator": r.operator,
            "note": r.note,
            "multiplier_before": r.multiplier_before,
            "override_multiplier": r.override_multiplier,
            "override_until": r.override_until.isoformat() if r.override_until else None,
        }
        for r in records
    ]
    if as_json:
        typer.echo(json.dumps(rows, indent=1))
        return
    table = Table("at", "asset", "action", "operator", "note", "before", "override", title="audit")
    for r in rows:
        table.add_row(
            r["at"],
            r["asset"],
            r["action"],
            escape(r["operator"]),
            escape(r["note"]),
            f"{r['multiplier_before']:.4g}",
            "" if r["override_multiplier"] is None else f"{r['override_multiplier']:.4g}",
        )
    console.print(table)


# -- helpers --------------------------------------------------------------------------


class _Fail(Exception):
    """A user-facing failure: printed as one line, exit status 1."""


@contextmanager
def _cli_errors() -> Iterator[None]:
    try:
        yield
    except (_Fail, ServingError) as exc:
        err_console.print(f"[red]error:[/] {escape(str(exc))}")
        raise typer.Exit(1) from exc


def _book(ctx: typer.Context, config: Path | None) -> PolicyBook:
    return load_policy_book(policy_config_path(settings_from(ctx), config))


def _operator(
    ctx: typer.Context,
    config: Path | None,
    asset: str,
    action: str,
    operator: str,
    note: str,
    multiplier: float | None = None,
    until: datetime | None = None,
) -> None:
    from serving.publishing import apply_operator_action

    with _cli_errors():
        book = _book(ctx, config)
        with open_publication_store(settings_from(ctx)) as store:
            record = apply_operator_action(
                store, book, asset, action, operator, note, datetime.now(UTC), multiplier, until
            )
    console.print(
        f"{record.action} {record.asset} by {escape(record.operator)} at "
        f"{record.at.isoformat()} (multiplier before {record.multiplier_before:.4g}); audited"
    )


def _parse_cli_time(text: str) -> datetime:
    try:
        value = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError as exc:
        raise _Fail(f"cannot parse time {text!r}; use ISO-8601, e.g. 2025-06-30T23:00Z") from exc
    # A CLI time without a zone means UTC, the only zone the store speaks.
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def _all_history(
    store: PublicationStore, asset: str, start: datetime | None, end: datetime | None
) -> Iterator[StoredPublication]:
    cursor = None
    while True:
        page = store.history(asset, start, end, limit=1000, cursor=cursor)
        yield from page.items
        if page.next_cursor is None:
            return
        cursor = page.next_cursor


def _verify_file(
    raw: bytes, path: Path, strict: bool, kwargs: dict[str, Any]
) -> list[VerificationResult]:
    from serving.signing import VerificationResult, verify_snapshot, verify_snapshot_bytes

    try:
        document = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError):
        lines = [line for line in raw.splitlines() if line.strip()]
        try:
            document = [json.loads(line) for line in lines]
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise _Fail(f"{path} is neither JSON nor JSON lines: {exc}") from exc
    if isinstance(document, dict):
        if strict:
            return [verify_snapshot_bytes(raw, **kwargs)]
        result = verify_snapshot(document, **kwargs)
        if canonical_json(document) != raw.strip():
            result = VerificationResult(
                result.ok,
                result.checks,
                result.errors,
                result.asset,
                result.update_id,
                result.public_key,
                result.signer,
                {**result.extra, "note": "file is not canonical JSON (content verified)"},
            )
        return [result]
    if isinstance(document, list) and all(isinstance(d, dict) for d in document):
        return [verify_snapshot(d, **kwargs) for d in document]
    raise _Fail(f"{path} holds neither a snapshot object nor a list of them")


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
