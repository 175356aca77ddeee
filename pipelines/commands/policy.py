"""``dynamargin policy ...``: the margin-multiplier policy and audited operator actions.

* ``replay``: the policy over a forecast history (changes per week, time at floor and cap,
  lead time before volatility spikes);
* ``halt|resume|override|clear-override ASSET``: operator actions, written with an audit
  row through :func:`serving.publishing.apply_operator_action`, the same call the admin
  API makes (same asset names, same note rules);
* ``audit [ASSET]``: the operator actions, oldest first.

The policy config is ``--config FILE``, else ``$DYNAMARGIN_CONFIG``, else
``<workdir>/dynamargin.toml`` if it exists, else the defaults
(:func:`serving.policy.policy_config_path`). Errors print one line and exit 1.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated

import pandas as pd
import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from pipelines.commands.cli_errors import CommandFailure, err_console, reported_errors
from pipelines.commands.context import settings_from
from pipelines.stores import publication_store
from serving.input_validation import normalise_asset, parse_utc_time
from serving.policy import PolicyBook, load_policy_book, policy_config_path

policy_app = typer.Typer(help="The margin-multiplier policy.", no_args_is_help=True)

console = Console()

JsonOption = Annotated[bool, typer.Option("--json", help="Print machine-readable JSON.")]
ConfigOption = Annotated[
    Path | None,
    typer.Option("--config", help="TOML file with a [policy] section (see serving.policy)."),
]
OperatorOption = Annotated[str, typer.Option("--operator", help="Who acts (audited).")]
NoteOption = Annotated[
    str, typer.Option("--note", help="Why (audited; at least 3 visible characters).")
]


def register(app: typer.Typer) -> None:
    """Add the ``policy`` command group."""
    app.add_typer(policy_app, name="policy")


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

    with reported_errors():
        book = _book(ctx, config)
        try:
            frame = pd.read_parquet(forecasts)
        except (OSError, ValueError) as exc:
            raise CommandFailure(f"cannot read forecasts {forecasts}: {exc}") from exc
        with console.status(f"replaying {frame['asset'].nunique()} assets, {len(frame)} rows"):
            report = replay_policy(
                frame,
                book,
                horizon_hours=horizon_hours,
                report_start=parse_utc_time(start, "--start") if start else None,
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


def _simple_action(name: str, action: str, summary: str) -> None:
    """Register ``policy NAME ASSET --operator --note`` for an action without a value."""

    def command(
        ctx: typer.Context,
        asset: str,
        operator: OperatorOption,
        note: NoteOption,
        config: ConfigOption = None,
    ) -> None:
        _operator(ctx, config, asset, action, operator, note)

    command.__doc__ = summary
    policy_app.command(name)(command)


_simple_action(
    "halt",
    "halt",
    "Freeze ASSET's multiplier; snapshots carry status 'halted' until resumed (audited).",
)
_simple_action("resume", "resume", "Lift a halt of ASSET (audited).")
_simple_action("clear-override", "clear_override", "End ASSET's override (audited).")


@policy_app.command("override")
def policy_override(
    ctx: typer.Context,
    asset: str,
    multiplier: Annotated[float, typer.Argument(help="Forced multiplier, within [floor, cap].")],
    operator: OperatorOption,
    note: NoteOption,
    until: Annotated[
        str | None, typer.Option(help="End time (ISO-8601, UTC if no zone); default until cleared.")
    ] = None,
    config: ConfigOption = None,
) -> None:
    """Force ASSET's multiplier until --until or until cleared (audited)."""
    _operator(ctx, config, asset, "override", operator, note, multiplier, until)


@policy_app.command("audit")
def policy_audit(
    ctx: typer.Context,
    asset: Annotated[str | None, typer.Argument(help="Only this asset.")] = None,
    as_json: JsonOption = False,
) -> None:
    """List operator actions, oldest first."""
    with reported_errors():
        name = normalise_asset(asset) if asset is not None else None
        with publication_store(settings_from(ctx), create=False) as store:
            records = store.audit_log(name)
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


def _book(ctx: typer.Context, config: Path | None) -> PolicyBook:
    return load_policy_book(policy_config_path(settings_from(ctx).workdir, config))


def _operator(
    ctx: typer.Context,
    config: Path | None,
    asset: str,
    action: str,
    operator: str,
    note: str,
    multiplier: float | None = None,
    until: str | None = None,
) -> None:
    from serving.errors import SigningKeyError
    from serving.keys import load_signing_keys
    from serving.log_integrity import workdir_verifier
    from serving.publishing import apply_operator_action
    from serving.signing import SnapshotSigner

    settings = settings_from(ctx)
    with reported_errors():
        book = _book(ctx, config)
        end = parse_utc_time(until, "--until") if until is not None else None
        try:
            # On the publisher's host the action is signed into a checkpoint at once.
            signer = SnapshotSigner(load_signing_keys(settings.workdir, create=False))
        except SigningKeyError:
            signer = None
        with publication_store(settings, create=False) as store:
            record = apply_operator_action(
                store,
                book,
                asset,
                action,
                operator,
                note,
                datetime.now(UTC),
                multiplier,
                end,
                verifier=workdir_verifier(settings.workdir),
                checkpoint_signer=signer,
            )
    console.print(
        f"{record.action} {record.asset} by {escape(record.operator)} at "
        f"{record.at.isoformat()} (multiplier before {record.multiplier_before:.4g}); audited"
        + ("" if signer else " (unsigned until the next publish or `snapshots checkpoint`)")
    )
    if signer is None:
        err_console.print("note: no private key in this work dir; no checkpoint was signed")
