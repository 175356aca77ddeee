"""The venue against a real ``dynamargin serve``: consume, refuse, survive.

Publications are real (``publish_batch`` with real keys); the API is the real command in a
subprocess. Misbehaviour the API cannot produce on its own (a changed byte, a foreign key,
an old body, a 5xx) comes from a loopback proxy in front of it.
"""

from __future__ import annotations

import logging
import time
from datetime import timedelta
from pathlib import Path

import httpx
import pytest

from liquidation.money import QTY_SCALE
from serving.keys import load_signing_keys
from serving.signing import SnapshotSigner
from serving.standard import canonical_json
from tests.api.live_server import LiveServer
from tests.venue.conftest import ASSETS, HOUR_MS, World
from tests.venue.proxy import MisbehavingProxy
from venue.demo_book import seed_demo_book
from venue.risk_api import RiskApiClient
from venue.service import Venue
from venue.settings import VenueSettings


def open_venue(world: World, api: str, name: str = "venue") -> Venue:
    return Venue(VenueSettings(ASSETS, world.workdir / name), world.feed(), RiskApiClient(api))


def seeded_venue(world: World, api: str, at_ms: int, name: str = "venue") -> Venue:
    venue = open_venue(world, api, name)
    venue.tick(at_ms)
    prices = {a: q.price for a, q in world.feed().quotes(at_ms).items()}
    assert seed_demo_book(venue.engine, prices, ts=at_ms) > 0
    return venue


def trader_im_vs_snapshot(venue: Venue, imf: dict[str, float]) -> list[tuple[int, int]]:
    """(IM the engine charges, notional x the snapshot's margin.imf) per trader bucket."""
    view = venue.engine.view()
    pairs = []
    for bid, bucket in sorted(venue.engine.state.buckets.items()):
        if bucket.account == venue.config.vault or not bucket.positions:
            continue
        ((asset, position),) = bucket.positions.items()
        notional = abs(position.lots) * view.price(asset) // QTY_SCALE
        pairs.append((venue.engine.initial_margin(bid), round(notional * imf[asset])))
    return pairs


def served_imf(server_url: str) -> tuple[dict[str, float], dict[str, int]]:
    table = httpx.get(server_url + "/v1/multipliers").json()["multipliers"]
    return (
        {a: row["imf"] for a, row in table.items()},
        {a: row["update_id"] for a, row in table.items()},
    )


def refused(venue: Venue, reason: str, asset: str) -> float:
    value = venue.metrics.registry.get_sample_value(
        "dynamargin_venue_snapshots_refused_total", {"reason": reason, "asset": asset}
    )
    return value or 0.0


def failures(venue: Venue, reason: str) -> float:
    value = venue.metrics.registry.get_sample_value(
        "dynamargin_venue_poll_failures_total", {"reason": reason}
    )
    return value or 0.0


def test_publish_consume_round_trip_sets_initial_margin_as_each_snapshot_says(
    served: tuple[World, LiveServer],
) -> None:
    world, server = served
    venue = seeded_venue(world, server.base, world.end_ms)
    before = trader_im_vs_snapshot(venue, {a: 0.05 * 2.0 for a in ASSETS})  # the fallback
    assert all(abs(im - expected) <= 1 for im, expected in before)

    first = venue.poll(world.end_ms)
    imf, ids = served_imf(server.base)
    assert first.result == "new" and {a for a, _, _ in first.applied} == set(ASSETS)
    assert venue.applied_update_ids() == ids
    after = trader_im_vs_snapshot(venue, imf)
    assert all(abs(im - expected) <= 1 for im, expected in after), after
    assert sum(im for im, _ in after) < sum(im for im, _ in before)

    # A second publication an hour later: the venue follows it on its next poll.
    world.publish(world.end + timedelta(hours=1))
    later = world.end_ms + HOUR_MS
    for _ in range(50):  # the API refreshes its cached view within a second
        outcome = venue.poll(later)
        if outcome.applied:
            break
        time.sleep(0.1)
    imf2, ids2 = served_imf(server.base)
    assert venue.applied_update_ids() == ids2 and ids2 != ids
    assert all(abs(im - e) <= 1 for im, e in trader_im_vs_snapshot(venue, imf2))
    assert venue.poll(later).result == "not_modified"  # the ETag
    venue.close()


def _assert_unchanged(venue: Venue, digest: str, ids: dict[str, int]) -> None:
    assert venue.engine.digest() == digest
    assert venue.applied_update_ids() == ids


def test_tampered_foreign_old_failing_and_absent_api_change_nothing(
    served: tuple[World, LiveServer], caplog: pytest.LogCaptureFixture, tmp_path: Path
) -> None:
    world, server = served
    caplog.set_level(logging.INFO, logger="dynamargin.venue")
    now = world.end_ms
    with MisbehavingProxy(server.base) as proxy:
        venue = seeded_venue(world, proxy.url, now)
        assert venue.poll(now).applied  # pins the served key, applies update 1
        old_body = httpx.get(server.base + "/v1/risk").content
        world.publish(world.end + timedelta(minutes=30))  # update 2, not yet consumed
        digest, ids = venue.engine.digest(), venue.applied_update_ids()
        now += HOUR_MS // 2

        # 1. one byte changed inside a signed value
        proxy.mode = "tamper"
        outcome = _poll_until_new(venue, now)
        assert {r.reason for r in outcome.refusals} == {"tampered"}
        assert [refused(venue, "tampered", a) for a in ASSETS] == [1, 1, 1]
        assert "refused snapshot BNBUSDT update 2: tampered" in caplog.text
        _assert_unchanged(venue, digest, ids)
        assert venue.client is not None and venue.client.etag is None  # refetch next time

        # 2. correctly signed, by a key the venue did not pin
        other = SnapshotSigner(load_signing_keys(tmp_path / "other", environ={}))
        foreign = [other.sign(_unsigned(s)).to_dict() for s in _snapshots(server.base, 2)]
        proxy.mode, proxy.body = "body", canonical_json({"count": 3, "snapshots": foreign})
        outcome = venue.poll(now)
        assert {r.reason for r in outcome.refusals} == {"wrong_key"}
        assert refused(venue, "wrong_key", "ETHUSDT") == 1
        assert "wrong_key" in caplog.text and "not among the trusted keys" in caplog.text
        _assert_unchanged(venue, digest, ids)

        # 3. update_id regression: the body of update 1 after update 2 was applied
        proxy.mode = "pass"
        assert {a for a, _, _ in venue.poll(now).applied} == set(ASSETS)
        digest, ids = venue.engine.digest(), venue.applied_update_ids()
        proxy.mode, proxy.body = "body", old_body
        outcome = venue.poll(now)
        assert {r.reason for r in outcome.refusals} == {"out_of_order"}
        assert refused(venue, "out_of_order", "BTCUSDT") == 1
        assert "update_id 1 is below the applied 2" in caplog.text
        _assert_unchanged(venue, digest, ids)

        # 4. a 5xx
        proxy.mode = "fail"
        assert venue.poll(now).failure == "http_5xx"
        assert failures(venue, "http_5xx") == 1
        assert "poll failed (http_5xx)" in caplog.text
        _assert_unchanged(venue, digest, ids)

        # 5. malformed body
        proxy.mode, proxy.body = "body", b'{"snapshots": [1, {"asset": "BTCUSDT"}]'
        assert {r.reason for r in venue.poll(now).refusals} == {"malformed"}
        _assert_unchanged(venue, digest, ids)

    # 6. the API goes away: the proxy is closed, nothing listens
    assert venue.poll(now).failure == "unreachable"
    assert failures(venue, "unreachable") == 1
    _assert_unchanged(venue, digest, ids)
    venue.tick(now + HOUR_MS)  # the venue still runs its ticks
    venue.close()


def test_expired_snapshot_is_refused_and_expiry_falls_back_to_the_conservative_rule(
    served: tuple[World, LiveServer], caplog: pytest.LogCaptureFixture
) -> None:
    world, server = served
    caplog.set_level(logging.INFO, logger="dynamargin.venue")
    late = world.end_ms + 3 * HOUR_MS  # valid_until is published_at + 2 h
    fresh = seeded_venue(world, server.base, world.end_ms - 2 * HOUR_MS, name="late")
    fresh.tick(late)
    digest = fresh.engine.digest()
    outcome = fresh.poll(late)
    assert {r.reason for r in outcome.refusals} == {"expired"}
    assert refused(fresh, "expired", "BTCUSDT") == 1
    assert "expired: valid_until" in caplog.text
    assert fresh.engine.digest() == digest and fresh.applied_update_ids() == {}
    fresh.close()

    # A venue that applied the snapshot in time keeps it until valid_until, then falls back.
    venue = seeded_venue(world, server.base, world.end_ms, name="on-time")
    venue.poll(world.end_ms)
    published = {a: row["multiplier"] for a, row in venue.status["assets"].items()}
    assert all(row["in_force"] == "snapshot" for row in venue.status["assets"].values())
    venue.tick(late)
    for asset, row in venue.status["assets"].items():
        assert row["in_force"] == "fallback"
        assert row["multiplier"] == max(2.0, published[asset])
    venue.close()


def _poll_until_new(venue: Venue, now: int):
    for _ in range(50):
        outcome = venue.poll(now)
        if outcome.result == "new":
            return outcome
        time.sleep(0.1)
    raise AssertionError("the API never served the new batch")


def _snapshots(base: str, update_id: int) -> list[dict]:
    for _ in range(50):
        snaps = httpx.get(base + "/v1/risk").json()["snapshots"]
        if all(s["update_id"] == update_id for s in snaps):
            return snaps
        time.sleep(0.1)
    raise AssertionError(f"update {update_id} never served")


def _unsigned(document: dict):
    from serving.standard import snapshot_from_dict

    return snapshot_from_dict(document)
