"""Runtime settings: work dir, data locations and the offline environment.

Settings come from ``DYNAMARGIN_*`` environment variables and an optional TOML file
(``DYNAMARGIN_CONFIG`` or ``<workdir>/dynamargin.toml``). Everything the program writes
goes under :attr:`Settings.workdir`.
"""

from __future__ import annotations

import os
from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from models.spec import DEFAULT_HORIZON

PROJECT_ROOT = Path(__file__).resolve().parent.parent


def _default_shared_data() -> Path:
    return PROJECT_ROOT.parent / "shared" / "data"


class Settings(BaseSettings):
    """dynamargin settings.

    Attributes
    ----------
    workdir
        Root of everything the program writes (stores, MLflow, Prefect home, reports, keys).
    shared_data
        Root laid out like ``../shared/data`` (``binance/``, ``perp_ohlcv/``).
    horizon_hours
        Forecast horizon H in bars: the one place it is set (it names the registered model
        ``dynamargin-vol-<H>h`` and every snapshot's ``horizon_hours``); its default is
        :data:`models.spec.DEFAULT_HORIZON`. ``dynamargin evaluate --horizons`` evaluates
        other horizons beside it; the published multiplier still uses this one.
    auto_promote
        Promote a challenger that passes every gate without waiting for a human approval.
        Off by default; the demo turns it on.
    """

    model_config = SettingsConfigDict(env_prefix="DYNAMARGIN_", extra="ignore")

    workdir: Path = Field(default_factory=lambda: Path.cwd() / ".dynamargin")
    shared_data: Path = Field(default_factory=_default_shared_data)
    horizon_hours: int = Field(DEFAULT_HORIZON, ge=1)
    auto_promote: bool = False

    @property
    def store_dir(self) -> Path:
        """Market-data store root (``MarketStore``): ``bars/interval=.../asset=...`` etc."""
        return self.workdir / "store"

    @property
    def quarantine_dir(self) -> Path:
        """Rows rejected by validation, with a reason column."""
        return self.workdir / "quarantine"

    @property
    def features_dir(self) -> Path:
        return self.workdir / "features"

    @property
    def reports_dir(self) -> Path:
        return self.workdir / "reports"

    @property
    def cache_dir(self) -> Path:
        """Download cache for remote sources."""
        return self.workdir / "cache"

    @property
    def mlflow_uri(self) -> str:
        return os.environ.get("DYNAMARGIN_MLFLOW_URI") or f"sqlite:///{self.workdir / 'mlflow.db'}"

    @property
    def prefect_home(self) -> Path:
        return self.workdir / "prefect"

    def policy_path(self, explicit: Path | None = None) -> Path | None:
        """The multiplier-policy TOML (its ``[policy]`` sections) every command reads.

        One rule for every command and the API: :func:`serving.policy.policy_config_path`.
        """
        from serving.policy import policy_config_path

        return policy_config_path(self.workdir, explicit)


def get_settings(workdir: Path | None = None) -> Settings:
    """Build settings, with an explicit work dir taking precedence over the environment."""
    settings = Settings(workdir=workdir) if workdir is not None else Settings()
    settings.workdir = settings.workdir.resolve()
    return settings


def configure_offline_environment(settings: Settings) -> None:
    """Keep Prefect, MLflow and telemetry inside the work dir and offline.

    Only sets variables the caller has not set, so an operator can still point at a
    real Prefect or MLflow server.
    """
    settings.workdir.mkdir(parents=True, exist_ok=True)
    defaults = {
        "DO_NOT_TRACK": "1",
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "PREFECT_HOME": str(settings.prefect_home),
        "MLFLOW_TRACKING_URI": settings.mlflow_uri,
        # Prefect's 20 s default for its ephemeral server to come up is too short on a
        # busy 2-core machine (seen: 145 s while other jobs ran); a slow start then fails
        # the whole run although nothing is wrong.
        "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "180",
    }
    for key, value in defaults.items():
        os.environ.setdefault(key, value)
