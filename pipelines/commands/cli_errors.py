"""How a serving command fails: one line on stderr and exit status 1, never a traceback."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import typer
from rich.console import Console
from rich.markup import escape

from serving.errors import ServingError

err_console = Console(stderr=True)


class CommandFailure(Exception):
    """A failure the user can act on; its message is printed as one line."""


@contextmanager
def reported_errors() -> Iterator[None]:
    """Turn :class:`CommandFailure` and every serving error into one line and exit 1."""
    try:
        yield
    except (CommandFailure, ServingError) as exc:
        err_console.print(f"[red]error:[/] {escape(str(exc))}", soft_wrap=True)
        raise typer.Exit(1) from exc
