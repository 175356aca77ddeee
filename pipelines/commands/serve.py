"""``dynamargin serve`` (the HTTP API under uvicorn) and ``dynamargin admin keygen``.

``serve`` reads its settings the way every command does: the environment
(``DYNAMARGIN_PUBLICATIONS_URL``, ``DYNAMARGIN_API_*``, ``DYNAMARGIN_CONFIG``; see
:mod:`serving.api_config`), with the options given on the command line on top. Options
left out keep the environment's value. SIGTERM or Ctrl-C stops it cleanly, workers
included (:func:`pipelines.lifecycle.service_lifecycle`).
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from pipelines.commands.cli_errors import reported_errors
from pipelines.commands.context import settings_from
from pipelines.lifecycle import service_lifecycle
from serving.admin_auth import admin_keys_path, generate_admin_key, store_admin_key_hash
from serving.api_config import WORKDIR_ENV, ApiConfig
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
        typer.Option(
            help="SQLAlchemy URL of the publication store (default: "
            "$DYNAMARGIN_PUBLICATIONS_URL, else the work dir's SQLite)."
        ),
    ] = None,
    assets: Annotated[
        str | None, typer.Option(help="Comma-separated assets /readyz requires (default: all).")
    ] = None,
    cors_origin: Annotated[
        list[str] | None, typer.Option(help="Allowed CORS origin (repeatable; '*' for any).")
    ] = None,
    update_interval: Annotated[
        float | None,
        typer.Option(min=1.0, help="Expected seconds between publications (default 3600)."),
    ] = None,
    refresh: Annotated[
        float | None, typer.Option(min=0.0, help="Longest age of the cached view, s (1).")
    ] = None,
    max_body_bytes: Annotated[
        int | None, typer.Option(min=1, help="Largest request body accepted (16384).")
    ] = None,
    header_timeout: Annotated[
        float | None, typer.Option(min=0.001, help="Seconds to send request headers (10).")
    ] = None,
    body_timeout: Annotated[
        float | None, typer.Option(min=0.001, help="Seconds to send a request body (10).")
    ] = None,
    keep_alive: Annotated[
        float | None, typer.Option(min=0.001, help="Idle seconds between requests (5).")
    ] = None,
    max_connections: Annotated[
        int | None, typer.Option(min=1, help="Open connections per worker (512).")
    ] = None,
    max_in_flight: Annotated[
        int | None, typer.Option(min=1, help="Requests handled at once per worker (64).")
    ] = None,
    write_timeout: Annotated[
        float | None, typer.Option(min=0.001, help="Seconds to wait for the store's lock (5).")
    ] = None,
    access_log: Annotated[bool, typer.Option(help="uvicorn access log (off: see /metrics).")] = (
        False
    ),
    log_level: Annotated[str, typer.Option(help="uvicorn log level.")] = "info",
) -> None:
    """Serve risk snapshots and multipliers over HTTP (see /docs and the status page /)."""
    from serving.http_server import run_server

    settings = settings_from(ctx)
    with reported_errors():
        config = ApiConfig.from_env(
            {**os.environ, WORKDIR_ENV: str(settings.workdir)},
            store_url=store_url,
            assets=tuple(a.strip() for a in assets.split(",") if a.strip()) if assets else None,
            cors_origins=tuple(cors_origin) if cors_origin else None,
            update_interval=timedelta(seconds=update_interval) if update_interval else None,
            refresh_seconds=refresh,
            max_body_bytes=max_body_bytes,
            header_timeout_seconds=header_timeout,
            body_timeout_seconds=body_timeout,
            keep_alive_seconds=keep_alive,
            max_connections=max_connections,
            max_in_flight=max_in_flight,
            write_timeout_seconds=write_timeout,
        )
    # Every worker rebuilds the same config from the environment via the app factory.
    os.environ.update(config.to_env())
    if workers > 1 and not os.environ.get(MULTIPROC_ENV):
        os.environ[MULTIPROC_ENV] = str(_fresh_metrics_dir(settings.workdir, port))
    console.print(
        f"[bold]dynamargin API[/] on http://{host}:{port} ({workers} worker(s)); "
        f"store {_redact(config.store_url)}; status page at /, docs at /docs"
    )
    stoppers: list[Callable[[], None]] = []

    def stop() -> None:
        for request_stop in stoppers:
            request_stop()

    def log(line: str) -> None:
        console.print(line, highlight=False)

    with service_lifecycle("serve", stop, log):
        run_server(
            config,
            host=host,
            port=port,
            workers=workers,
            log_level=log_level,
            access_log=access_log,
            on_started=stoppers.append,
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
