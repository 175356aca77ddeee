"""The on-chain round trip on the in-process EVM: what ``make demo`` and
``dynamargin oracle push --in-process`` run.

Order, as a protocol would deploy it: start the chain and deploy Chaos Labs' RiskOracle
(:func:`start`), configure the publisher with that deployment's EIP-712 domain (chain id,
RiskOracle address), publish, then :func:`push_and_apply`: push the batch to the RiskOracle,
deploy a perp market and its MarginSteward, let the steward apply each asset's update and
read the market back. The chain runs on the publication's clock (a replay publishes as of
its last bar), so the steward's expiry and staleness checks are those of a live push.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final

from serving.evm_chain import EvmChain, in_process_chain
from serving.oracle_push import PushReport, push_snapshots
from serving.signing import ENV_CHAIN_ID, ENV_VERIFYING_CONTRACT, to_wad, unix_seconds
from serving.solidity_build import Artifacts, compile_contracts
from serving.steward_deployment import (
    Deployment,
    StewardOutcome,
    apply_from_oracle,
    deploy_oracle,
    deploy_stack,
    read_back,
)

CHAIN_START: Final[datetime] = datetime(2017, 1, 1, tzinfo=UTC)
"""Genesis of the demo's chain: before any data it can publish, so it can move forward to
any publication time."""
PUSH_LATENCY_S: Final[int] = 60
"""Seconds between publication and the push, on the chain's clock."""


@dataclass
class OnchainSession:
    """An in-process chain with a RiskOracle, before anything is published."""

    chain: EvmChain
    artifacts: Artifacts
    oracle: Any
    oracle_gas: int

    @property
    def environment(self) -> dict[str, str]:
        """The publisher settings that sign for this RiskOracle."""
        return {
            ENV_CHAIN_ID: str(self.chain.chain_id),
            ENV_VERIFYING_CONTRACT: self.oracle.address,
        }


@dataclass
class AssetRoundTrip:
    """One asset through the round trip: signed values, on-chain values, gas."""

    asset: str
    reference_id: str
    multiplier: float
    imf_signed: float
    imf_on_chain: int
    mmf_on_chain: int
    values_equal: bool
    outcome: StewardOutcome


@dataclass
class RoundTrip:
    """The whole round trip."""

    push: PushReport
    deployment: Deployment
    gas: dict[str, int]
    assets: list[AssetRoundTrip] = field(default_factory=list)

    @property
    def all_equal(self) -> bool:
        return all(a.values_equal for a in self.assets) and bool(self.assets)


def start(start_time: datetime = CHAIN_START, peers_dir: Path | None = None) -> OnchainSession:
    """Start the in-process chain and deploy the RiskOracle (compiling if the cache is cold)."""
    artifacts = compile_contracts(peers_dir)
    chain = in_process_chain(int(start_time.timestamp()))
    oracle, gas = deploy_oracle(chain, artifacts)
    return OnchainSession(chain, artifacts, oracle, gas)


def configure_publisher(session: OnchainSession) -> None:
    """Make this process's publisher sign for the session's RiskOracle (its environment)."""
    os.environ.update(session.environment)


def push_and_apply(
    session: OnchainSession,
    snapshots: Sequence[Mapping[str, Any]],
    *,
    journal: Path | None = None,
) -> RoundTrip:
    """Push ``snapshots`` to the RiskOracle, deploy the steward and apply every asset.

    The chain's clock is moved to :data:`PUSH_LATENCY_S` after the newest publication first.
    """
    chain = session.chain
    newest = max(unix_seconds(s["published_at"]) for s in snapshots)
    if newest + PUSH_LATENCY_S > chain.now():
        chain.advance(newest + PUSH_LATENCY_S - chain.now())
    signers = sorted({s["signature"]["eip712"]["signer"] for s in snapshots})
    listings = {
        s["asset"]: (float(s["margin"]["base_imf"]), float(s["margin"]["base_mmf"]))
        for s in snapshots
    }
    deployment = deploy_stack(chain, session.artifacts, signers, listings, oracle=session.oracle)
    deployment.gas["RiskOracle"] = session.oracle_gas
    report = push_snapshots(chain, session.oracle, snapshots, journal=journal)
    trip = RoundTrip(report, deployment, dict(deployment.gas))
    for snapshot in sorted(snapshots, key=lambda s: s["asset"]):
        asset = snapshot["asset"]
        outcome = apply_from_oracle(deployment, asset)
        back = read_back(deployment, asset)
        margin = snapshot["margin"]
        equal = (
            back["market_imf"] == to_wad(margin["imf"])
            and back["market_mmf"] == to_wad(margin["mmf"])
            and back["steward"]["multiplier"] == to_wad(margin["multiplier"])
            and back["steward"]["reference_id"] == snapshot["provenance"]["reference_id"]
        )
        trip.assets.append(
            AssetRoundTrip(
                asset=asset,
                reference_id=snapshot["provenance"]["reference_id"],
                multiplier=float(margin["multiplier"]),
                imf_signed=float(margin["imf"]),
                imf_on_chain=back["market_imf"],
                mmf_on_chain=back["market_mmf"],
                values_equal=equal and outcome.applied,
                outcome=outcome,
            )
        )
    return trip
