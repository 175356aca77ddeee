"""The gate on real signed snapshots: one reason per kind of bad snapshot, nothing else."""

from __future__ import annotations

import copy
from datetime import timedelta
from pathlib import Path

import pytest

from serving.keys import load_signing_keys
from serving.signing import SnapshotSigner
from serving.standard import canonical_json, reference_id, snapshot_from_dict
from tests.api.api_seeding import seed_store
from tests.venue.conftest import ASSETS, HOUR_MS, World
from venue.settings import VenueSettings
from venue.snapshot_gate import REASONS, admit, check_snapshot


@pytest.fixture
def published(world: World) -> tuple[list[dict], str, int]:
    """Two real batches: (the snapshots of the newest, the signing key, its publish time)."""
    store = seed_store(world.workdir, ASSETS, batches=2, end=world.end, step=timedelta(hours=1))
    with store:
        snapshots = [dict(p.snapshot) for p in store.latest().values()]
    key = load_signing_keys(world.workdir, environ={}).ed25519_public_hex
    return snapshots, key, world.end_ms


def _check(document, key: str, now: int, applied=None):
    config = VenueSettings(ASSETS, Path("unused")).engine_config()
    return check_snapshot(document, {key}, config, applied or {}, now)


def test_a_good_snapshot_is_admitted_and_the_same_one_again_is_a_repeat(published) -> None:
    snapshots, key, now = published
    admitted = _check(snapshots[0], key, now)
    assert admitted is not None and not hasattr(admitted, "reason")
    assert admitted.params.update_id == 2
    assert _check(snapshots[0], key, now, {snapshots[0]["asset"]: 2}) is None


@pytest.mark.parametrize(
    ("reason", "spoil"),
    [
        ("unsigned", lambda d: d.pop("signature")),
        ("tampered", lambda d: d["margin"].__setitem__("multiplier", 0.5)),
        ("malformed", lambda d: d.__setitem__("schema", "dynamargin.risk/9")),
        ("malformed", lambda d: d.pop("valid_until")),
    ],
)
def test_each_spoilt_snapshot_is_refused_with_its_reason(published, reason: str, spoil) -> None:
    snapshots, key, now = published
    document = copy.deepcopy(snapshots[0])
    spoil(document)
    refusal = _check(document, key, now)
    assert refusal.reason == reason, refusal


def test_time_order_and_venue_checks(published, tmp_path: Path) -> None:
    snapshots, key, now = published
    doc = snapshots[0]
    assert _check(doc, key, now + 3 * HOUR_MS).reason == "expired"
    assert _check(doc, key, now - HOUR_MS).reason == "not_yet_published"
    assert _check(doc, key, now, {doc["asset"]: 3}).reason == "out_of_order"
    assert _check(doc, "ab" * 32, now).reason == "wrong_key"
    other = VenueSettings(ASSETS, tmp_path, base_imf=0.04).engine_config()
    assert check_snapshot(doc, {key}, other, {}, now).reason == "base_mismatch"
    unlisted = VenueSettings(("SOLUSDT",), tmp_path).engine_config()
    assert check_snapshot(doc, {key}, unlisted, {}, now).reason == "unknown_asset"


def test_revision_1_snapshots_are_accepted_too(published, tmp_path: Path) -> None:
    snapshots, _key, now = published
    data = {k: v for k, v in snapshots[0].items() if k != "signature"}
    data["schema"] = "dynamargin.risk/1"
    data["provenance"] = {**data["provenance"], "reference_id": reference_id(data)}
    v1 = snapshot_from_dict(data)
    signer = SnapshotSigner(load_signing_keys(tmp_path / "v1", environ={}))
    signed = signer.sign(v1).to_dict()
    assert signed["schema"] == "dynamargin.risk/1"
    admitted = _check(signed, signer.public_key, now)
    assert not hasattr(admitted, "reason"), admitted


def test_a_whole_body_is_refused_once_when_it_is_not_a_batch(published) -> None:
    snapshots, key, now = published
    config = VenueSettings(ASSETS, Path("unused")).engine_config()
    for body in (b"not json", b'{"count": 1}', b"[1, 2]"):
        result = admit(body, trusted_keys={key}, config=config, applied={}, now_ms=now)
        assert [r.reason for r in result.refusals] == ["malformed"] and not result.admitted
    good = canonical_json({"count": 3, "snapshots": snapshots})
    result = admit(good, trusted_keys={key}, config=config, applied={}, now_ms=now)
    assert len(result.admitted) == 3 and not result.refusals
    assert set(REASONS) >= {r.reason for r in result.refusals}
