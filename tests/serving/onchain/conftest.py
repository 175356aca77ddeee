"""Fixtures of the on-chain tests: compiled contracts, an in-process chain with the
RiskOracle, perp market and steward deployed, and snapshots published for its domain."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from contracts.forecast import ProvenanceInfo
from serving.evm_chain import EvmChain, in_process_chain
from serving.policy import PolicyBook, PolicyConfig
from serving.publishing import PublishedBatch, publish_batch
from serving.signing import SnapshotSigner
from serving.solidity_build import Artifacts, compile_contracts
from serving.standard import SCHEMA_V2
from serving.standard_vectors import example_snapshot, vector_keys
from serving.steward_deployment import (
    Deployment,
    ParameterBounds,
    StewardConfig,
    deploy_stack,
)
from serving.store import PublicationStore
from tests.serving.conftest import liquidity_for, make_forecasts

ASSETS = ("BTCUSDT", "ETHUSDT", "SOLUSDT")
PUBLISHED_AT = datetime(2025, 6, 11, tzinfo=UTC)
"""make_forecasts runs 10 days from 2025-06-01: publish at the end of them."""
START_IMF, START_MMF = 0.05, 0.03


@pytest.fixture(scope="session")
def artifacts() -> Artifacts:
    return compile_contracts()


@dataclass
class Stack:
    """A deployed stack, the signer for its domain and a publication store."""

    chain: EvmChain
    deployment: Deployment
    signer: SnapshotSigner
    store: PublicationStore

    def publish(
        self, assets: Sequence[str] = ASSETS, at: datetime = PUBLISHED_AT
    ) -> PublishedBatch:
        """Publish one batch (the real publisher) signed for this deployment's domain."""
        return publish_batch(
            make_forecasts(
                tuple(assets), hours=24 * 10 + int((at - PUBLISHED_AT).total_seconds() // 3600)
            ),
            liquidity_for(list(assets)),
            PolicyBook.uniform(PolicyConfig()),
            self.store,
            self.signer,
            ProvenanceInfo(model_name="har", model_version="1"),
            at,
        )

    def at(self, when: datetime) -> None:
        """Move the chain's clock so the next transaction runs at ``when``."""
        self.chain.advance(int(when.timestamp()) - self.chain.now())


def make_stack(
    artifacts: Artifacts,
    tmp_path: Path,
    config: StewardConfig | None = None,
    assets: Sequence[str] = ASSETS,
) -> Stack:
    chain = in_process_chain(int(PUBLISHED_AT.timestamp()) - 3600)
    keys = vector_keys()
    deployment = deploy_stack(
        chain,
        artifacts,
        [keys.eip712_address],
        {a: (START_IMF, START_MMF) for a in assets},
        config,
    )
    signer = SnapshotSigner(keys, deployment.domain)
    store = PublicationStore(f"sqlite:///{tmp_path / 'publications.db'}", mode="replay")
    return Stack(chain, deployment, signer, store)


@pytest.fixture()
def stack(artifacts: Artifacts, tmp_path: Path) -> Stack:
    return make_stack(artifacts, tmp_path)


def signed_update(
    signer: SnapshotSigner,
    asset: str,
    update_id: int,
    published_at: datetime,
    *,
    imf: float,
    mmf: float,
    status: str = "ok",
    expiry: timedelta = timedelta(hours=2),
) -> dict[str, Any]:
    """A signed v2 snapshot with chosen margin fractions (for relayed steward updates)."""
    snapshot = example_snapshot(
        SCHEMA_V2,
        asset=asset,
        update_id=update_id,
        as_of=published_at,
        published_at=published_at,
        valid_until=published_at + expiry,
        status=status,
        margin={
            "multiplier": imf / 0.05,
            "previous_multiplier": 1.0,
            "base_imf": 0.05,
            "base_mmf": 0.03,
            "imf": imf,
            "mmf": mmf,
        },
    )
    return signer.sign(snapshot).to_dict()


def margin_state(stack: Stack, asset: str) -> tuple[Any, ...]:
    """Everything a rejected update must leave unchanged: the market and the steward's record."""
    d = stack.deployment
    return (
        tuple(d.market.functions.marginFractions(asset).call()),
        tuple(d.steward.functions.latest(asset).call()),
    )


def fresh_bounds(**changes: Any) -> StewardConfig:
    base: Mapping[str, Any] = {"floor": 0.02, "cap": 0.5, "max_change": 0.5}
    return StewardConfig(
        imf=ParameterBounds(**{**base, **changes}),
        mmf=ParameterBounds(**{**base, "floor": 0.01, "cap": 0.3, **changes}),
    )
