"""``dynamargin serve`` (the HTTP API under uvicorn) and ``dynamargin admin keygen``."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from pipelines.commands.context import settings_from
from serving.admin_auth import admin_keys_path, generate_admin_key, store_admin_key_hash
from serving.api_config import ApiConfig
from serving.metrics import MULTIPROC_ENV

console = Console()


def register(app: typer.Typer) -> None:
    """Add ``serve`` and the ``admin`` group to the root app."""
    app.command(name="serve")(serve)
    admin = typer.Typer(help="Admin API keys for POST /v1/admin/... (halt, resume, override).")
    admin.command(name="keygen")(keygen)
    app.add_typer(admin, name="admin")


def serve(
    ctx: typer.Context,
    host: Annotated[str, typer.Option(help="Interface to bind (loopback by default).")] = (
        "127.0.0.1"
    ),
    port: Annotated[int, typer.Option(min=0, max=65535, help="TCP port.")] = 8000,
    workers: Annotated[int, typer.Option(min=1, max=64, help="uvicorn worker processes.")] = 1,
    store_url: Annotated[
        str | None,
        typer.Option(help="SQLAlchemy URL of the publication store (default: work dir SQLite)."),
    ] = None,
    assets: Annotated[
        str | None, typer.Option(help="Comma-separated assets /readyz requires (default: all).")
    ] = None,
    cors_origin: Annotated[
        list[str] | None, typer.Option(help="Allowed CORS origin (repeatable; '*' for any).")
    ] = None,
    update_interval: Annotated[
        float, typer.Option(min=1.0, help="Expected seconds between publications.")
    ] = 3600.0,
    access_log: Annotated[bool, typer.Option(help="uvicorn access log (off: see /metrics).")] = (
        False
    ),
    log_level: Annotated[str, typer.Option(help="uvicorn log level.")] = "info",
) -> None:
    """Serve risk snapshots and multipliers over HTTP (see /docs and the status page /)."""
    import uvicorn

    settings = settings_from(ctx)
    overrides: dict[str, object] = {}
    if store_url:
        overrides["store_url"] = store_url
    if assets:
        overrides["assets"] = tuple(a.strip() for a in assets.split(",") if a.strip())
    if cors_origin:
        overrides["cors_origins"] = tuple(cors_origin)
    from datetime import timedelta

    overrides["update_interval"] = timedelta(seconds=update_interval)
    config = ApiConfig.from_workdir(settings.workdir, **overrides)
    # Every worker rebuilds the same config from the environment via the app factory.
    os.environ.update(config.to_env())
    if workers > 1 and not os.environ.get(MULTIPROC_ENV):
        os.environ[MULTIPROC_ENV] = str(_fresh_metrics_dir(settings.workdir, port))
    console.print(
        f"[bold]dynamargin API[/] on http://{host}:{port} ({workers} worker(s)); "
        f"store {_redact(config.store_url)}; status page at /, docs at /docs"
    )
    uvicorn.run(
        "serving.api:app_from_env",
        factory=True,
        host=host,
        port=port,
        workers=workers,
        access_log=access_log,
        log_level=log_level,
        proxy_headers=False,
    )


def keygen(
    ctx: typer.Context,
    label: Annotated[
        str, typer.Option(help="Who or what holds the key (stored with the hash).")
    ] = ("operator"),
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of text.")] = False,
) -> None:
    """Create an admin API key: prints it once and stores only its SHA-256 hash."""
    settings = settings_from(ctx)
    key, key_hash = generate_admin_key()
    path = store_admin_key_hash(settings.workdir, key_hash, label)
    if as_json:
        typer.echo(json.dumps({"key": key, "hash": key_hash, "file": str(path), "label": label}))
        return
    console.print(f"Admin key (shown once, store it in a secret manager):\n[bold]{key}[/]")
    console.print(f"Its hash was appended to {admin_keys_path(settings.workdir)}.")
    console.print("Use it as: Authorization: Bearer <key>")


def _fresh_metrics_dir(workdir: Path, port: int) -> Path:
    # Stale files from an earlier run would be summed into this run's counters.
    directory = workdir / "run" / f"prometheus-{port}"
    shutil.rmtree(directory, ignore_errors=True)
    directory.mkdir(parents=True)
    return directory


def _redact(url: str) -> str:
    if "@" not in url or "://" not in url:
        return url
    scheme, rest = url.split("://", 1)
    return f"{scheme}://***@{rest.split('@', 1)[1]}"
