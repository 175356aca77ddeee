"""The ``dynamargin`` command line.

Each command group lives in its own module under :mod:`pipelines.commands` and exposes
``register(app)``; this module only wires them together and sets up the offline
environment, so no command touches ``~`` or the network by accident.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Annotated

import typer

from pipelines.settings import configure_offline_environment, get_settings

app = typer.Typer(
    name="dynamargin",
    help="Predictive margin pipeline: data -> features -> forecasts -> review -> signed "
    "multipliers -> liquidation replay.",
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,
    rich_markup_mode="markdown",
)

COMMAND_MODULES: tuple[str, ...] = (
    "pipelines.commands.ingest",
    "pipelines.commands.featurize",
    "pipelines.commands.evaluate",
    "pipelines.commands.schema",
    "pipelines.commands.snapshots",
    "pipelines.commands.policy",
    "pipelines.commands.review",
    "pipelines.commands.serve",
    "pipelines.commands.backtest",
    "pipelines.commands.flows",
    "pipelines.commands.demo",
    "pipelines.commands.emulate",
    "pipelines.commands.oracle",
    "pipelines.commands.live",
    "pipelines.commands.consume",
    "pipelines.commands.liquidation_price",
)


@app.callback()
def main(
    ctx: typer.Context,
    workdir: Annotated[
        Path | None,
        typer.Option(
            "--workdir",
            envvar="DYNAMARGIN_WORKDIR",
            help="Where everything is written (default ./.dynamargin).",
        ),
    ] = None,
) -> None:
    """dynamargin command line."""
    settings = get_settings(workdir)
    configure_offline_environment(settings)
    ctx.obj = settings


def _literal_help(typer_app: typer.Typer) -> None:
    # Help texts are prose, not Rich markup: under Rich markup "[floor, cap]" or
    # "[policy]" would vanish as unknown style tags. Markdown keeps them (and the panels).
    typer_app.rich_markup_mode = "markdown"
    for group in typer_app.registered_groups:
        if group.typer_instance is not None:
            _literal_help(group.typer_instance)


for _module in COMMAND_MODULES:
    importlib.import_module(_module).register(app)
_literal_help(app)
