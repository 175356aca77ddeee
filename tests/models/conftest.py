"""Fixtures of the models tests: small synthetic panels, and MLflow stores for the registry.

The panels are built once per session. Creating and migrating an MLflow database takes
seconds; copying a migrated template file takes milliseconds, so every registry test gets
its own fresh store cheaply.
"""

from __future__ import annotations

import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest

from features.build import FeatureSet, build_features
from features.market import MarketData
from features.synthetic import SyntheticMarketConfig, generate_market
from models.mlflow_store import MlflowStore
from models.registry import registered_model_name
from tests.models.registry_factory import Backend, ReviewedStore


@pytest.fixture(scope="session")
def synthetic_market() -> MarketData:
    """Two assets, 240 days of hourly bars from 2024-01-01 (GARCH-like, regime switching)."""
    return generate_market(SyntheticMarketConfig(n_assets=2, days=240, seed=3))


@pytest.fixture(scope="session")
def synthetic_feature_set(synthetic_market: MarketData) -> FeatureSet:
    """The feature set of :func:`synthetic_market`."""
    return build_features(synthetic_market)


@pytest.fixture(scope="session")
def synthetic_features(synthetic_feature_set: FeatureSet) -> pd.DataFrame:
    """The feature frame of :func:`synthetic_market`."""
    return synthetic_feature_set.frame


@pytest.fixture(scope="session")
def template_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A migrated, empty MLflow SQLite database shared (read-only) by the session."""
    root = tmp_path_factory.mktemp("mlflow-template")
    store = MlflowStore.for_workdir(root)
    store.client().search_experiments()  # creates the schema and runs every migration
    return root / "mlflow.db"


@pytest.fixture()
def sqlite_store(workdir: Path, template_db: Path) -> MlflowStore:
    """A fresh SQLite store in the test's work dir (a copy of the template)."""
    shutil.copyfile(template_db, workdir / "mlflow.db")
    return MlflowStore.for_workdir(workdir)


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def backend(request: pytest.FixtureRequest, workdir: Path, template_db: Path) -> Iterator[Backend]:
    """The same registry on SQLite (template copy) and on the real PostgreSQL server.

    PostgreSQL holds one database per session, so each test gets its own experiment and
    registered model name there; artifacts stay in the test's work dir either way.
    """
    if request.param == "sqlite":
        shutil.copyfile(template_db, workdir / "mlflow.db")
        yield Backend(MlflowStore.for_workdir(workdir), registered_model_name(24), workdir)
        return
    url = request.getfixturevalue("postgres_url")
    suffix = uuid.uuid4().hex[:8]
    store = MlflowStore(
        tracking_uri=url,
        artifact_root=workdir / "mlartifacts",
        experiment_name=f"dynamargin-vol-{suffix}",
    )
    yield Backend(store, f"{registered_model_name(24)}-{suffix}", workdir)


@pytest.fixture()
def sqlite_backend(sqlite_store: MlflowStore, workdir: Path) -> Backend:
    return Backend(sqlite_store, registered_model_name(24), workdir)


@pytest.fixture(scope="session")
def reviewed(tmp_path_factory: pytest.TempPathFactory, template_db: Path) -> ReviewedStore:
    """Shared by tests that only read: logging models is the slow part of this suite."""
    workdir = tmp_path_factory.mktemp("reviewed") / "workdir"
    workdir.mkdir()
    shutil.copyfile(template_db, workdir / "mlflow.db")
    backend = Backend(MlflowStore.for_workdir(workdir), registered_model_name(24), workdir)
    first = backend.submit(auto_promote=True, challenger_error=0.3, seed=1)
    second = backend.submit(challenger_error=0.1, seed=2)
    return ReviewedStore(backend, first, second)
