"""Access to the settings that the root callback puts on the Typer context."""

from __future__ import annotations

import typer

from pipelines.settings import Settings, get_settings


def settings_from(ctx: typer.Context) -> Settings:
    """Return the settings of this invocation (root callback), or fresh ones."""
    root = ctx.find_root()
    return root.obj if isinstance(root.obj, Settings) else get_settings()
