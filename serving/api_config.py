"""Configuration of the serving API: where the store is, what to expect, what to allow.

Built from a work dir (``ApiConfig.from_workdir``) or from the environment
(``ApiConfig.from_env``, used by ``uvicorn ... --factory`` and each worker process):

=====================================  ================================================
``DYNAMARGIN_WORKDIR``                 work dir (default ``./.dynamargin``)
``DYNAMARGIN_PUBLICATIONS_URL``        SQLAlchemy URL of the publication store
                                       (default ``sqlite:///<workdir>/publications.db``)
``DYNAMARGIN_API_ASSETS``              comma-separated assets ``/readyz`` requires
``DYNAMARGIN_API_UPDATE_INTERVAL_S``   expected seconds between publications (3600)
``DYNAMARGIN_API_REFRESH_S``           longest time a cached view is served (1.0)
``DYNAMARGIN_API_CORS_ORIGINS``        comma-separated allowed origins (none)
``DYNAMARGIN_API_MAX_BODY_BYTES``      request body limit (16384)
``DYNAMARGIN_ADMIN_KEY_HASHES``        extra admin key hashes (see :mod:`serving.admin_auth`)
``DYNAMARGIN_CONFIG``                  TOML with the ``[policy]`` section (default
                                       ``<workdir>/dynamargin.toml`` if present)
=====================================  ================================================

The API needs no write access for reads: it opens the store without creating it (a
``SELECT``-only PostgreSQL role, or ``serving.store.sqlite_read_only_url(path)`` for a
read-only SQLite file, is enough; only admin actions write), and ``/v1/keys`` reads just the
public key files, from ``$DYNAMARGIN_SIGNING_KEY_PATH`` or ``<workdir>/keys/`` (see
:mod:`serving.keys`).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, replace
from datetime import timedelta
from pathlib import Path
from typing import Any

from serving.errors import ServingError
from serving.request_limits import DEFAULT_MAX_BODY_BYTES
from serving.store import workdir_store_url

PUBLICATIONS_URL_ENV = "DYNAMARGIN_PUBLICATIONS_URL"


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

    def __post_init__(self) -> None:
        if self.update_interval <= timedelta(0):
            raise ApiConfigError(f"update_interval must be positive, got {self.update_interval}")
        if self.refresh_seconds < 0:
            raise ApiConfigError(f"refresh_seconds must be >= 0, got {self.refresh_seconds}")
        if self.max_body_bytes <= 0:
            raise ApiConfigError(f"max_body_bytes must be positive, got {self.max_body_bytes}")

    @classmethod
    def from_workdir(cls, workdir: Path, **overrides: Any) -> ApiConfig:
        """Defaults for a work dir, with keyword overrides of any attribute."""
        workdir = Path(workdir).resolve()
        config_file = workdir / "dynamargin.toml"
        base = cls(
            workdir=workdir,
            store_url=workdir_store_url(workdir),
            policy_path=config_file if config_file.exists() else None,
        )
        return replace(base, **overrides)

    @classmethod
    def from_env(cls, environ: dict[str, str] | None = None) -> ApiConfig:
        """Build the config from ``DYNAMARGIN_*`` variables (see the module docstring).

        Raises
        ------
        ApiConfigError
            If a numeric variable does not parse; the message names the variable.
        """
        env = dict(os.environ if environ is None else environ)
        workdir = Path(env.get("DYNAMARGIN_WORKDIR") or Path.cwd() / ".dynamargin")
        overrides: dict[str, Any] = {}
        if env.get(PUBLICATIONS_URL_ENV):
            overrides["store_url"] = env[PUBLICATIONS_URL_ENV]
        if env.get("DYNAMARGIN_API_ASSETS"):
            overrides["assets"] = _csv(env["DYNAMARGIN_API_ASSETS"])
        if env.get("DYNAMARGIN_API_CORS_ORIGINS"):
            overrides["cors_origins"] = _csv(env["DYNAMARGIN_API_CORS_ORIGINS"])
        if env.get("DYNAMARGIN_API_UPDATE_INTERVAL_S"):
            seconds = _number(env, "DYNAMARGIN_API_UPDATE_INTERVAL_S")
            overrides["update_interval"] = timedelta(seconds=seconds)
        if env.get("DYNAMARGIN_API_REFRESH_S"):
            overrides["refresh_seconds"] = _number(env, "DYNAMARGIN_API_REFRESH_S")
        if env.get("DYNAMARGIN_API_MAX_BODY_BYTES"):
            overrides["max_body_bytes"] = int(_number(env, "DYNAMARGIN_API_MAX_BODY_BYTES"))
        if env.get("DYNAMARGIN_CONFIG"):
            overrides["policy_path"] = Path(env["DYNAMARGIN_CONFIG"])
        return cls.from_workdir(workdir, **overrides)

    def to_env(self) -> dict[str, str]:
        """The variables that make :meth:`from_env` rebuild this config in a worker."""
        env = {
            "DYNAMARGIN_WORKDIR": str(self.workdir),
            PUBLICATIONS_URL_ENV: self.store_url,
            "DYNAMARGIN_API_UPDATE_INTERVAL_S": str(self.update_interval.total_seconds()),
            "DYNAMARGIN_API_REFRESH_S": str(self.refresh_seconds),
            "DYNAMARGIN_API_MAX_BODY_BYTES": str(self.max_body_bytes),
        }
        if self.assets:
            env["DYNAMARGIN_API_ASSETS"] = ",".join(self.assets)
        if self.cors_origins:
            env["DYNAMARGIN_API_CORS_ORIGINS"] = ",".join(self.cors_origins)
        if self.policy_path is not None:
            env["DYNAMARGIN_CONFIG"] = str(self.policy_path)
        return env


def _csv(value: str) -> tuple[str, ...]:
    return tuple(item.strip() for item in value.split(",") if item.strip())


def _number(env: dict[str, str], name: str) -> float:
    try:
        return float(env[name])
    except ValueError as exc:
        raise ApiConfigError(f"{name}={env[name]!r} is not a number") from exc
