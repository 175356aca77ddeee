"""What every command shares: the settings of the invocation and how symbols are given."""

from __future__ import annotations

from collections.abc import Sequence

import typer

from pipelines.settings import Settings, get_settings


def settings_from(ctx: typer.Context) -> Settings:
    """Return the settings of this invocation (root callback), or fresh ones."""
    root = ctx.find_root()
    return root.obj if isinstance(root.obj, Settings) else get_settings()


def parse_symbols(values: str | Sequence[str] | None) -> list[str] | None:
    """Symbols from ``--assets``/``--symbols`` options: repeated, comma-separated, upper-cased.

    ``None`` or nothing given means every symbol.

    Examples
    --------
    >>> parse_symbols(["btcusdt,ETHUSDT", " solusdt "])
    ['BTCUSDT', 'ETHUSDT', 'SOLUSDT']
    >>> parse_symbols("") is None
    True
    """
    if not values:
        return None
    items = [values] if isinstance(values, str) else list(values)
    found = [part.strip().upper() for item in items for part in item.split(",") if part.strip()]
    return found or None
