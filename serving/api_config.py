"""Configuration of the serving API: where the store is, what to expect, what to allow.

One settings path for every entry point: ``dynamargin serve`` builds the config with
:meth:`ApiConfig.from_env` (the environment, then its own command-line options on top),
writes it back with :meth:`ApiConfig.to_env`, and every uvicorn worker rebuilds the same
config from the environment (``uvicorn serving.api:app_from_env --factory`` does the
same). Tests and embedded servers use :meth:`ApiConfig.from_workdir`.

=======================================  ==============================================
``DYNAMARGIN_WORKDIR``                   work dir (default ``./.dynamargin``)
``DYNAMARGIN_PUBLICATIONS_URL``          SQLAlchemy URL of the publication store
                                         (default ``sqlite:///<workdir>/publications.db``)
``DYNAMARGIN_API_ASSETS``                comma-separated assets ``/readyz`` requires
``DYNAMARGIN_API_UPDATE_INTERVAL_S``     expected seconds between publications (3600)
``DYNAMARGIN_API_REFRESH_S``             longest time a cached view is served (1.0)
``DYNAMARGIN_API_CORS_ORIGINS``          comma-separated allowed origins (none)
``DYNAMARGIN_API_MAX_BODY_BYTES``        request body limit (16384)
``DYNAMARGIN_API_WRITE_TIMEOUT_S``       longest wait for the store's lock (5)
``DYNAMARGIN_API_MAX_IN_FLIGHT``         requests handled at once per worker (64)
``DYNAMARGIN_API_HEADER_TIMEOUT_S``      time to send a request's headers (10)
``DYNAMARGIN_API_BODY_TIMEOUT_S``        time to send a request's body (10)
``DYNAMARGIN_API_KEEP_ALIVE_S``          idle time between requests on a connection (5)
``DYNAMARGIN_API_MAX_CONNECTIONS``       open connections per worker (512)
``DYNAMARGIN_ADMIN_KEY_HASHES``          extra admin key hashes (see :mod:`serving.admin_auth`)
``DYNAMARGIN_CONFIG``                    TOML with the ``[policy]`` section (default
                                         ``<workdir>/dynamargin.toml`` if present)
``DYNAMARGIN_LIVE_DATA_FILE``            live data freshness for the status page (default
                                         ``<workdir>/store/_live/freshness.json``)
=======================================  ==============================================

The API needs no write access for reads: it opens the store without creating it (a
``SELECT``-only PostgreSQL role, or ``serving.store.sqlite_read_only_url(path)`` for a
read-only SQLite file, is enough; only admin actions write), and it reads just the public
key files, from ``$DYNAMARGIN_SIGNING_KEY_PATH`` or ``<workdir>/keys/`` (see
:mod:`serving.keys`).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import timedelta
from pathlib import Path
from typing import Any

from serving.errors import ServingError
from serving.policy import POLICY_CONFIG_ENV, policy_config_path
from serving.request_limits import DEFAULT_MAX_BODY_BYTES
from serving.store import ENV_URL, default_store_url

PUBLICATIONS_URL_ENV = ENV_URL
WORKDIR_ENV = "DYNAMARGIN_WORKDIR"
LIVE_DATA_ENV = "DYNAMARGIN_LIVE_DATA_FILE"


class ApiConfigError(ServingError, ValueError):
    """An API setting (environment variable or argument) is invalid."""


@dataclass(frozen=True)
class ApiConfig:
    """Everything :func:`serving.api.create_app` needs.

    Attributes
    ----------
    workdir
        Work dir: signing keys (``keys/``), admin key hashes, default store and policy.
    store_url
        SQLAlchemy URL of the publication store.
    assets
        Assets that must have a live snapshot for ``/readyz``; empty means every asset
        found in the store (and at least one).
    update_interval
        Expected time between publications; ``Cache-Control: max-age`` counts down to
        ``published_at + update_interval``.
    refresh_seconds
        Longest time an in-memory view of the store is served before re-reading it.
    cors_origins
        Origins allowed by CORS (``*`` for any); empty disables CORS headers.
    max_body_bytes
        Largest accepted request body.
    policy_path
        TOML file holding the ``[policy]`` section (floor/cap per asset).
    title
        Heading of the status page and of the OpenAPI document.
    write_timeout_seconds
        Longest wait for another connection's lock on the store before an admin write (or
        a read) answers 503 ``store-busy``.
    max_in_flight
        Requests one worker handles at once; beyond it, 503 ``overloaded`` at once.
    header_timeout_seconds, body_timeout_seconds
        Time a client gets to send a request's headers, then its body; a slower client is
        disconnected (see :mod:`serving.http_server`).
    keep_alive_seconds
        Idle time allowed between two requests on one connection.
    max_connections
        Open connections one worker accepts; further ones are closed at once.
    live_data_file
        Per-asset data freshness written by the live ingest (``dynamargin live`` or
        ``ingest live``); the status page shows each asset's data age and status from it.
        Default ``<workdir>/store/_live/freshness.json`` (``DYNAMARGIN_LIVE_DATA_FILE``).
    """

    workdir: Path
    store_url: str
    assets: tuple[str, ...] = ()
    update_interval: timedelta = timedelta(hours=1)
    refresh_seconds: float = 1.0
    cors_origins: tuple[str, ...] = ()
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES
    policy_path: Path | None = None
    title: str = "dynamargin risk oracle"
    write_timeout_seconds: float = 5.0
    max_in_flight: int = 64
    header_timeout_seconds: float = 10.0
    body_timeout_seconds: float = 10.0
    keep_alive_seconds: float = 5.0
    max_connections: int = 512
    live_data_file: Path | None = None

    def __post_init__(self) -> None:
        if self.update_interval <= timedelta(0):
            raise ApiConfigError(f"update_interval must be positive, got {self.update_interval}")
        if self.refresh_seconds < 0:
            raise ApiConfigError(f"refresh_seconds must be >= 0, got {self.refresh_seconds}")
        for name in (
            "max_body_bytes",
            "write_timeout_seconds",
            "max_in_flight",
            "header_timeout_seconds",
            "body_timeout_seconds",
            "keep_alive_seconds",
            "max_connections",
        ):
            if getattr(self, name) <= 0:
                raise ApiConfigError(f"{name} must be positive, got {getattr(self, name)}")

    @classmethod
    def from_workdir(cls, workdir: Path, **overrides: Any) -> ApiConfig:
        """Defaults for a work dir (no environment read), with keyword overrides."""
        workdir = Path(workdir).resolve()
        config_file = workdir / "dynamargin.toml"
        base = cls(
            workdir=workdir,
            store_url=f"sqlite:///{workdir / 'publications.db'}",
            policy_path=config_file if config_file.exists() else None,
            live_data_file=workdir / "store" / "_live" / "freshness.json",
        )
        return replace(base, **overrides)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: Any) -> ApiConfig:
        """Build the config from ``DYNAMARGIN_*`` variables (see the module docstring).

        Parameters
        ----------
        environ
            The environment (``os.environ`` by default).
        overrides
            Values that win over the environment (e.g. command-line options); ``None``
            values are ignored, so an option left unset keeps the environment's value.

        Raises
        ------
        ApiConfigError
            If a variable does not parse or is out of range; the message names it.
        """
        env = dict(os.environ if environ is None else environ)
        workdir = Path(env.get(WORKDIR_ENV) or Path.cwd() / ".dynamargin").resolve()
        values: dict[str, Any] = {
            "store_url": default_store_url(workdir, env),
            "policy_path": policy_config_path(workdir, environ=env),
        }
        if env.get("DYNAMARGIN_API_ASSETS"):
            values["assets"] = _csv(env["DYNAMARGIN_API_ASSETS"])
        if env.get("DYNAMARGIN_API_CORS_ORIGINS"):
            values["cors_origins"] = _csv(env["DYNAMARGIN_API_CORS_ORIGINS"])
        if env.get(LIVE_DATA_ENV):
            values["live_data_file"] = Path(env[LIVE_DATA_ENV])
        if env.get("DYNAMARGIN_API_UPDATE_INTERVAL_S"):
            seconds = _number(env, "DYNAMARGIN_API_UPDATE_INTERVAL_S")
            values["update_interval"] = timedelta(seconds=seconds)
        for name, (variable, kind) in _NUMERIC_ENV.items():
            if env.get(variable):
                number = _number(env, variable)
                values[name] = int(number) if kind is int else number
        values.update({key: value for key, value in overrides.items() if value is not None})
        return cls.from_workdir(workdir, **values)

    def to_env(self) -> dict[str, str]:
        """The variables that make :meth:`from_env` rebuild this config in a worker."""
        env = {
            WORKDIR_ENV: str(self.workdir),
            PUBLICATIONS_URL_ENV: self.store_url,
            "DYNAMARGIN_API_UPDATE_INTERVAL_S": str(self.update_interval.total_seconds()),
        }
        for name, (variable, _kind) in _NUMERIC_ENV.items():
            env[variable] = str(getattr(self, name))
        if self.assets:
            env["DYNAMARGIN_API_ASSETS"] = ",".join(self.assets)
        if self.cors_origins:
            env["DYNAMARGIN_API_CORS_ORIGINS"] = ",".join(self.cors_origins)
        if self.policy_path is not None:
            env[POLICY_CONFIG_ENV] = str(self.policy_path)
        if self.live_data_file is not None:
            env[LIVE_DATA_ENV] = str(self.live_data_file)
        return env


_NUMERIC_ENV: dict[str, tuple[str, type]] = {
    "refresh_seconds": ("DYNAMARGIN_API_REFRESH_S", float),
    "max_body_bytes": ("DYNAMARGIN_API_MAX_BODY_BYTES", int),
    "write_timeout_seconds": ("DYNAMARGIN_API_WRITE_TIMEOUT_S", float),
    "max_in_flight": ("DYNAMARGIN_API_MAX_IN_FLIGHT", int),
    "header_timeout_seconds": ("DYNAMARGIN_API_HEADER_TIMEOUT_S", float),
    "body_timeout_seconds": ("DYNAMARGIN_API_BODY_TIMEOUT_S", float),
    "keep_alive_seconds": ("DYNAMARGIN_API_KEEP_ALIVE_S", float),
    "max_connections": ("DYNAMARGIN_API_MAX_CONNECTIONS", int),
}
"""Numeric attributes, their environment variable and type (one table for both ways)."""


def _csv(value: str) -> tuple[str, ...]:
    return tuple(item.strip() for item in value.split(",") if item.strip())


def _number(env: Mapping[str, str], name: str) -> float:
    try:
        value = float(env[name])
    except ValueError as exc:
        raise ApiConfigError(f"{name}={env[name]!r} is not a number") from exc
    if value != value or value in (float("inf"), float("-inf")):
        raise ApiConfigError(f"{name}={env[name]!r} is not a finite number")
    return value
