"""Load the serving model: ``models:/dynamargin-vol-<H>h@champion`` with a last-known-good copy.

Every successful resolution refreshes a local copy of the champion (the MLflow model
directory plus ``metadata.json``) under the work dir. When the registry cannot be reached,
the loader serves that copy and says so (``source="last_known_good"`` and a warning), so a
registry outage never stops margin publication. When the registry answers that there is no
champion, that answer is authoritative and :class:`NoChampionError` is raised; the publish
step turns it into its rule-based fallback.
"""

from __future__ import annotations

import json
import logging
import shutil
import tempfile
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final, Literal
from urllib.parse import unquote, urlparse

import httpx
import mlflow.artifacts
import mlflow.sklearn
import sqlalchemy
import sqlalchemy.exc

from models.errors import ModelsError
from models.mlflow_store import MlflowStore
from models.registry import CHAMPION, ChampionRegistry

METADATA_FILE: Final = "metadata.json"
MODEL_DIR: Final = "model"

logger = logging.getLogger(__name__)


class NoChampionError(ModelsError, RuntimeError):
    """There is no champion to serve; the caller should fall back to rule-based margins."""


class ChampionUnavailableError(NoChampionError):
    """The registry is unreachable and there is no local last-known-good copy either."""


class RegistryUnreachableWarning(UserWarning):
    """The champion is served from the local last-known-good copy."""


@dataclass(frozen=True)
class ServingChampion:
    """The model to serve and where it came from.

    Attributes
    ----------
    source
        ``"registry"`` when resolved now, ``"last_known_good"`` when served from the local
        copy because the registry was unreachable.
    warning
        Why the local copy is served (None when the registry answered).
    """

    model: Any
    model_name: str
    version: str
    run_id: str | None
    source: Literal["registry", "last_known_good"]
    resolved_at: datetime
    warning: str | None = None
    metadata: Mapping[str, Any] | None = None

    @property
    def degraded(self) -> bool:
        """True when serving from the local copy; publish should report it."""
        return self.source != "registry"

    @property
    def uri(self) -> str:
        return f"models:/{self.model_name}@{CHAMPION}"


def default_cache_dir(workdir: Path) -> Path:
    """Where last-known-good copies live inside a work dir."""
    return Path(workdir) / "serving" / "last_known_good"


def load_champion(
    store: MlflowStore, model_name: str, cache_dir: Path, probe_timeout: float = 5.0
) -> ServingChampion:
    """Resolve and load ``models:/<model_name>@champion``, keeping a last-known-good copy.

    Parameters
    ----------
    store
        The MLflow store.
    model_name
        Registered model name, e.g. ``dynamargin-vol-24h``.
    cache_dir
        Directory of the last-known-good copies (under the work dir).
    probe_timeout
        Seconds to wait for the store before serving the local copy.

    Returns
    -------
    ServingChampion

    Raises
    ------
    NoChampionError
        The registry answered and has no ``@champion``.
    ChampionUnavailableError
        The registry is unreachable and no local copy exists.
    """
    copy_dir = Path(cache_dir) / model_name
    try:
        probe_store(store.tracking_uri, probe_timeout)
        registry = ChampionRegistry(store, model_name)
        champion = registry.champion()
    except Exception as exc:  # any backend or transport failure means "unreachable"
        return _serve_local_copy(copy_dir, model_name, store, exc)
    if champion is None:
        raise NoChampionError(
            f"{model_name} has no @champion in {store.tracking_uri}; approve a version with "
            "`dynamargin review approve VERSION --by NAME --note TEXT`"
        )
    metadata = _read_metadata(copy_dir)
    if metadata is None or metadata.get("version") != champion.version:
        try:
            download_uri = registry.client.get_model_version_download_uri(
                model_name, champion.version
            )
            _refresh_copy(copy_dir, download_uri, model_name, champion.version, champion.run_id)
        except Exception as exc:  # registry answered but artifacts are unreachable
            return _serve_local_copy(copy_dir, model_name, store, exc)
        metadata = _read_metadata(copy_dir)
    model = mlflow.sklearn.load_model(str(copy_dir / MODEL_DIR))
    return ServingChampion(
        model=model,
        model_name=model_name,
        version=champion.version,
        run_id=champion.run_id,
        source="registry",
        resolved_at=datetime.now(UTC),
        metadata=metadata,
    )


def probe_store(tracking_uri: str, timeout: float = 5.0) -> None:
    """Fail fast if the tracking store cannot be reached.

    MLflow itself retries a failed database connection with exponential backoff for about
    two minutes, far too long for a serving path, so the loader checks reachability first
    with one bounded attempt.

    Raises
    ------
    OSError
        The store does not answer (missing SQLite file, refused or timed-out connection).
    """
    parsed = urlparse(tracking_uri)
    scheme = parsed.scheme.split("+")[0]
    if scheme == "sqlite":
        # A sqlite URI to a missing file would silently create an empty store (and then
        # report "no champion"); a vanished database is an outage, not an empty registry.
        location = tracking_uri.split("?", 1)[0].removeprefix("sqlite:///")
        if location not in ("", ":memory:", tracking_uri) and not Path(unquote(location)).is_file():
            raise FileNotFoundError(f"MLflow database {unquote(location)} does not exist")
    elif scheme in ("postgresql", "mysql", "mssql"):
        connect_args = {"connect_timeout": max(1, int(timeout))}
        engine = sqlalchemy.create_engine(tracking_uri, connect_args=connect_args)
        try:
            with engine.connect() as connection:
                connection.exec_driver_sql("SELECT 1")
        except sqlalchemy.exc.SQLAlchemyError as exc:
            raise ConnectionError(f"cannot connect to {tracking_uri}: {exc}") from exc
        finally:
            engine.dispose()
    elif scheme in ("http", "https"):
        try:
            httpx.get(f"{tracking_uri.rstrip('/')}/health", timeout=timeout).raise_for_status()
        except httpx.HTTPError as exc:
            raise ConnectionError(f"MLflow server {tracking_uri} is not healthy: {exc}") from exc


def _refresh_copy(
    copy_dir: Path, download_uri: str, model_name: str, version: str, run_id: str | None
) -> None:
    copy_dir.parent.mkdir(parents=True, exist_ok=True)
    # Download beside the copy, then swap, so a crash never leaves a half-written copy.
    staging = Path(tempfile.mkdtemp(prefix=f".{model_name}-", dir=copy_dir.parent))
    try:
        downloaded = Path(
            mlflow.artifacts.download_artifacts(
                artifact_uri=download_uri, dst_path=str(staging / "download")
            )
        )
        if not (downloaded / "MLmodel").is_file():
            raise FileNotFoundError(f"{download_uri} has no MLmodel file; not an MLflow model")
        downloaded.rename(staging / MODEL_DIR)
        shutil.rmtree(staging / "download")
        metadata = {
            "model_name": model_name,
            "version": version,
            "run_id": run_id,
            "download_uri": download_uri,
            "copied_at": datetime.now(UTC).isoformat(),
        }
        (staging / METADATA_FILE).write_text(json.dumps(metadata, indent=2, sort_keys=True))
        retired = copy_dir.with_name(f".{copy_dir.name}.retired")
        shutil.rmtree(retired, ignore_errors=True)
        if copy_dir.exists():
            copy_dir.rename(retired)
        staging.rename(copy_dir)
        shutil.rmtree(retired, ignore_errors=True)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _serve_local_copy(
    copy_dir: Path, model_name: str, store: MlflowStore, cause: Exception
) -> ServingChampion:
    metadata = _read_metadata(copy_dir)
    if metadata is None:
        raise ChampionUnavailableError(
            f"registry {store.tracking_uri} is unreachable ({type(cause).__name__}: {cause}) "
            f"and there is no last-known-good copy of {model_name} under {copy_dir}"
        ) from cause
    message = (
        f"registry {store.tracking_uri} unreachable ({type(cause).__name__}: {cause}); "
        f"serving last-known-good {model_name} v{metadata['version']} copied at "
        f"{metadata['copied_at']}"
    )
    warnings.warn(message, RegistryUnreachableWarning, stacklevel=3)
    logger.warning(message)
    return ServingChampion(
        model=mlflow.sklearn.load_model(str(copy_dir / MODEL_DIR)),
        model_name=model_name,
        version=str(metadata["version"]),
        run_id=metadata.get("run_id"),
        source="last_known_good",
        resolved_at=datetime.now(UTC),
        warning=message,
        metadata=metadata,
    )


def _read_metadata(copy_dir: Path) -> dict[str, Any] | None:
    path = copy_dir / METADATA_FILE
    if not path.is_file() or not (copy_dir / MODEL_DIR).is_dir():
        return None
    return json.loads(path.read_text())
