"""The publisher runs the margin mechanisms of its configured policy and names them."""

from __future__ import annotations

from datetime import timedelta

import jsonschema
import numpy as np

from serving.mechanisms import split_provenance, with_mechanisms
from serving.policy import PolicyBook, PolicyConfig
from serving.publishing import ProvenanceInfo, publish_batch
from serving.signing import verify_snapshot
from serving.standard import json_schema
from serving.store import PublicationStore
from tests.serving.conftest import liquidity_for, make_forecasts

ASSETS = ("BTCUSDT", "ETHUSDT")
VALIDATOR = jsonschema.Draft202012Validator(json_schema())
PROVENANCE = ProvenanceInfo(model_name="dynamargin-vol-24h", model_version="3")


def test_publish_applies_the_configured_mechanisms_and_names_the_variant(tmp_path, signer):
    config = PolicyConfig(sigma_ref=0.03, max_step_up=5.0, crowding_multiplier=2.0)
    book = PolicyBook.uniform(with_mechanisms(config, ["apc_buffer", "crowding"]))
    frame = make_forecasts(ASSETS)
    # Funding stands at an extreme for BTC in the last hour only; ETH has no funding data.
    frame["funding_z"] = np.nan
    last = frame["ts"].max()
    frame.loc[(frame["asset"] == "BTCUSDT") & (frame["ts"] == last), "funding_z"] = 4.0
    now = last.to_pydatetime() + timedelta(minutes=5)
    with PublicationStore(f"sqlite:///{tmp_path / 'p.db'}") as store:
        first = publish_batch(frame, liquidity_for(ASSETS), book, store, signer, PROVENANCE, now)
        later = now + timedelta(hours=11)
        held = publish_batch(frame, liquidity_for(ASSETS), book, store, signer, PROVENANCE, later)
        states = store.policy_states()
    by_asset = {s["asset"]: s for s in first.snapshots}
    for snap in first.snapshots + held.snapshots:
        VALIDATOR.validate(snap)
        assert verify_snapshot(snap).ok
        assert snap["provenance"]["model_version"] == "3+policy2.apc_buffer+crowding"
    assert first.decisions["BTCUSDT"].target >= 2.0  # the overlay
    assert first.decisions["ETHUSDT"].target < 2.0  # missing funding never triggers it
    assert by_asset["BTCUSDT"]["margin"]["multiplier"] >= 2.0
    # The hold survives the store round trip; 11 hours later the same row is stale (a
    # fallback), and a stale row's signals neither trigger nor extend the hold.
    assert held.decisions["BTCUSDT"].reason.startswith("fallback")
    assert states["BTCUSDT"].crowding_until == now + timedelta(hours=12)
    assert states["ETHUSDT"].crowding_until is None


def test_the_default_policy_is_named_in_the_provenance_too(tmp_path, signer):
    book = PolicyBook.uniform(PolicyConfig(sigma_ref=0.03))
    frame = make_forecasts(ASSETS)
    now = frame["ts"].max().to_pydatetime() + timedelta(minutes=5)
    with PublicationStore(f"sqlite:///{tmp_path / 'p.db'}") as store:
        batch = publish_batch(frame, liquidity_for(ASSETS), book, store, signer, PROVENANCE, now)
    for snap in batch.snapshots:
        assert snap["provenance"]["model_version"] == "3+policy2.default"
        assert split_provenance(snap["provenance"]["model_version"]) == ("3", "2.default")
