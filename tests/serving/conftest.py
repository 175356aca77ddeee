"""Fixtures of the serving tests: forecast frames, signers and stores on both backends."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import sqlalchemy

from serving.keys import load_signing_keys
from serving.signing import SnapshotSigner
from serving.store import PublicationStore

T0 = datetime(2025, 6, 1, tzinfo=UTC)
LIQUIDITY = {"amihud": 1.2e-10, "spread_bps": 1.8, "slippage_bps": 6.5, "standard_size_usd": 1e6}


def make_forecasts(
    assets: tuple[str, ...] = ("BTCUSDT", "ETHUSDT"),
    hours: int = 24 * 10,
    seed: int = 7,
    start: datetime = T0,
) -> pd.DataFrame:
    """A Forecast-contract frame with a random-walk sigma per asset."""
    rng = np.random.default_rng(seed)
    ts = pd.date_range(start, periods=hours, freq="h", tz="UTC")
    frames = []
    for asset in assets:
        sigma = 0.03 * np.exp(np.cumsum(rng.normal(0, 0.03, hours)))
        frames.append(
            pd.DataFrame(
                {
                    "ts": ts,
                    "asset": asset,
                    "sigma": sigma,
                    "sigma_lower": sigma * 0.8,
                    "sigma_upper": sigma * 1.3,
                    "var_99": 2.33 * sigma,
                    "es_99": 2.67 * sigma,
                    "model": "har",
                    "model_version": "1",
                }
            )
        )
    return pd.concat(frames, ignore_index=True)


def liquidity_for(assets: tuple[str, ...] | list[str]) -> dict[str, dict[str, float]]:
    return {asset: dict(LIQUIDITY) for asset in assets}


@pytest.fixture(scope="session")
def signer(tmp_path_factory: pytest.TempPathFactory) -> SnapshotSigner:
    """A signer with keys generated in a session tmp dir (env overrides cleared)."""
    workdir = tmp_path_factory.mktemp("signer")
    return SnapshotSigner(load_signing_keys(workdir, environ={}))


@pytest.fixture(params=["sqlite", "postgresql"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A fresh store URL: a SQLite file, or a private schema on the real PostgreSQL."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'publications.db'}"
        return
    with private_schema_url(request.getfixturevalue("postgres_url"), prefix="t") as url:
        yield url


@contextlib.contextmanager
def private_schema_url(base: str, prefix: str) -> Iterator[str]:
    """A fresh schema in the database at ``base``, selected through ``search_path``.

    Tests sharing one session database stay apart this way; the schema is dropped on exit.
    """
    schema = f"{prefix}_{uuid.uuid4().hex[:12]}"
    admin = sqlalchemy.create_engine(base, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.exec_driver_sql(f'CREATE SCHEMA "{schema}"')
    try:
        yield f"{base}?options=-csearch_path%3D{schema}"
    finally:
        with admin.connect() as conn:
            conn.exec_driver_sql(f'DROP SCHEMA "{schema}" CASCADE')
        admin.dispose()


@pytest.fixture()
def store(store_url: str) -> Iterator[PublicationStore]:
    with PublicationStore(store_url) as opened:
        yield opened
