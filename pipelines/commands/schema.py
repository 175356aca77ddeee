"""``dynamargin schema export``: the RiskSnapshot v1 JSON Schema."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape

from pipelines.commands.cli_errors import err_console
from serving.standard import json_schema

schema_app = typer.Typer(help="The RiskSnapshot v1 standard.", no_args_is_help=True)


def register(app: typer.Typer) -> None:
    """Add the ``schema`` command group."""
    app.add_typer(schema_app, name="schema")


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
