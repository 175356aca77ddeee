"""``dynamargin schema export``: the RiskSnapshot JSON Schema, with its EIP-712 and RiskOracle
encodings as annotations (``x-eip712``, ``x-risk-oracle``)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape

from pipelines.commands.cli_errors import err_console

schema_app = typer.Typer(help="The RiskSnapshot standard.", no_args_is_help=True)


def register(app: typer.Typer) -> None:
    """Add the ``schema`` command group."""
    app.add_typer(schema_app, name="schema")


@schema_app.command("export")
def schema_export(
    out: Annotated[Path | None, typer.Option("--out", help="Write here instead of stdout.")] = None,
    revision: Annotated[
        int, typer.Option("--revision", min=1, max=2, help="1 or 2 (current).")
    ] = 2,
) -> None:
    """Print or write the RiskSnapshot JSON Schema (draft 2020-12) of a revision.

    The document also carries, as annotations JSON Schema validators ignore, the EIP-712
    types and domain rule (`x-eip712`) and, for revision 2, the RiskOracle encoding
    (`x-risk-oracle`): update types, the fixed-point scale and the `additionalData` layout.
    """
    from serving.oracle_encoding import encoding_spec
    from serving.signing import EIP712_TYPES, EIP712_TYPES_V2, V1_DOMAIN
    from serving.standard import json_schema

    schema = json_schema(revision)
    if revision == 1:
        schema["x-eip712"] = {
            "primaryType": "RiskUpdate",
            "types": EIP712_TYPES,
            "domain": V1_DOMAIN.to_dict(),
        }
    else:
        schema["x-eip712"] = {
            "primaryType": "RiskParameters",
            "types": EIP712_TYPES_V2,
            "domain": "signature.eip712.domain: name dynamargin, version 2, the chain id and "
            "the RiskOracle address the updates are published to",
            "value_scale": "uint256 values are WAD: floor(value * 1e18)",
        }
        schema["x-risk-oracle"] = encoding_spec()
    text = json.dumps(schema, indent=2, sort_keys=True) + "\n"
    if out is None:
        typer.echo(text, nl=False)
        return
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text, encoding="utf-8")
    err_console.print(f"wrote {escape(str(out))}")
