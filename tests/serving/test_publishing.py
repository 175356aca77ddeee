"""publish_batch end to end, operator actions, and the policy replay report."""

from __future__ import annotations

from datetime import timedelta

import jsonschema
import numpy as np
import pandas as pd
import pytest

from serving.errors import OperatorActionError, PublishError
from serving.policy import PolicyBook, PolicyConfig
from serving.policy_replay import replay_policy
from serving.publishing import ProvenanceInfo, apply_operator_action, publish_batch
from serving.signing import verify_snapshot
from serving.standard import json_schema
from serving.store import PublicationStore
from tests.serving.conftest import T0, liquidity_for, make_forecasts

ASSETS = ("BTCUSDT", "ETHUSDT")
BOOK = PolicyBook.uniform(PolicyConfig(sigma_ref=0.03, max_step_up=0.5, max_step_down=0.05))
VALIDATOR = jsonschema.Draft202012Validator(json_schema())


def last_hour(frame: pd.DataFrame):
    return frame["ts"].max().to_pydatetime()


def publish(store, signer, frame, now, book=BOOK, liquidity=None):
    return publish_batch(
        frame,
        liquidity or liquidity_for(ASSETS),
        book,
        store,
        signer,
        ProvenanceInfo(
            model_name="dynamargin-vol-24h",
            model_version="3",
            mlflow_run_id="run1",
            feature_set_hash="sha256:ab",
        ),
        now,
    )


def test_published_batch_is_signed_schema_valid_and_chained(tmp_path, signer):
    frame = make_forecasts(ASSETS)
    now = last_hour(frame) + timedelta(minutes=5)
    with PublicationStore(f"sqlite:///{tmp_path / 'p.db'}") as store:
        first = publish(store, signer, frame, now)
        second = publish(store, signer, frame, now + timedelta(hours=1))
        for snap in first.snapshots + second.snapshots:
            VALIDATOR.validate(snap)
            assert verify_snapshot(snap).ok
            assert snap["provenance"]["model_name"] == "dynamargin-vol-24h"
            assert snap["as_of"] == "2025-06-10T23:00:00Z"
        for a, b in zip(first.snapshots, second.snapshots, strict=True):
            assert (a["update_id"], b["update_id"]) == (1, 2)
            assert b["margin"]["previous_multiplier"] == a["margin"]["multiplier"]
            assert b["margin"]["imf"] == pytest.approx(0.05 * b["margin"]["multiplier"])
        assert store.latest("BTCUSDT").raw.encode() == __import__(
            "serving.standard", fromlist=["canonical_json"]
        ).canonical_json(second.snapshots[0])


def test_bad_missing_and_stale_forecasts_fall_back_per_asset(tmp_path, signer):
    frame = make_forecasts(("BTCUSDT", "ETHUSDT", "SOLUSDT"))
    now = last_hour(frame) + timedelta(minutes=5)
    frame.loc[(frame["asset"] == "ETHUSDT") & (frame["ts"] == frame["ts"].max()), "sigma"] = np.nan
    liquidity = liquidity_for(("BTCUSDT", "ETHUSDT", "SOLUSDT"))
    with PublicationStore(f"sqlite:///{tmp_path / 'p.db'}") as store:
        batch = publish(store, signer, frame, now, liquidity=liquidity)
        status = {
            s["asset"]: (s["status"], batch.decisions[s["asset"]].reason) for s in batch.snapshots
        }
        assert status["BTCUSDT"][0] == "ok"
        assert status["ETHUSDT"] == ("fallback", "fallback_nonfinite")
        eth = next(s for s in batch.snapshots if s["asset"] == "ETHUSDT")
        assert eth["margin"]["multiplier"] >= 1.0 and np.isfinite(eth["sigma"])
        VALIDATOR.validate(eth)

        # SOL's forecasts vanish; it is still published, as a fallback, never dropped.
        later = frame[frame["asset"] != "SOLUSDT"]
        batch = publish(store, signer, later, now + timedelta(hours=1), liquidity=liquidity)
        assert batch.decisions["SOLUSDT"].reason == "fallback_missing"
        sol = next(s for s in batch.snapshots if s["asset"] == "SOLUSDT")
        assert sol["status"] == "fallback" and sol["update_id"] == 2
        # Forecasts that stopped hours ago are stale, not fresh.
        stale = publish(store, signer, frame, now + timedelta(days=2), liquidity=liquidity)
        assert {s["asset"]: s["status"] for s in stale.snapshots} == {
            "BTCUSDT": "stale",
            "ETHUSDT": "fallback",
            "SOLUSDT": "stale",  # ETH's is NaN
        }


def test_missing_forecast_for_known_asset_is_reported_missing(tmp_path, signer):
    frame = make_forecasts(ASSETS)
    now = last_hour(frame) + timedelta(minutes=5)
    with PublicationStore(f"sqlite:///{tmp_path / 'p.db'}") as store:
        publish(store, signer, frame, now)
        batch = publish(store, signer, frame[frame["asset"] == "BTCUSDT"], now)
        assert batch.decisions["ETHUSDT"].reason == "fallback_missing"
        eth = next(s for s in batch.snapshots if s["asset"] == "ETHUSDT")
        assert eth["status"] == "fallback" and verify_snapshot(eth).ok


def test_restarted_publisher_continues_the_rate_limits(tmp_path, signer):
    frame = make_forecasts(ASSETS)
    frame["sigma"] = 0.03
    frame[["sigma_lower", "sigma_upper"]] = [[0.02, 0.04]] * len(frame)
    now = last_hour(frame) + timedelta(minutes=5)
    url = f"sqlite:///{tmp_path / 'p.db'}"
    spike = frame.assign(sigma=0.09, sigma_lower=0.08, sigma_upper=0.1)
    seen = []
    for hour in range(4):  # a fresh store object (a restarted process) every batch
        with PublicationStore(url) as store:
            fresh = spike.assign(ts=spike["ts"] + pd.Timedelta(hours=hour))
            batch = publish(store, signer, fresh, now + timedelta(hours=hour))
            seen.append(batch.snapshots[0]["margin"]["multiplier"])
    assert seen == [1.5, 2.0, 2.5, 3.0]
    with PublicationStore(url) as store:
        calm_frame = frame.assign(ts=frame["ts"] + pd.Timedelta(hours=5))
        calm = publish(store, signer, calm_frame, now + timedelta(hours=5))
        # The relaxation delay counts from the last tightening, across restarts.
        assert calm.decisions["BTCUSDT"].reason == "relax_delay_hold"


def test_failing_batch_leaves_the_previous_one_served(tmp_path, signer, monkeypatch):
    frame = make_forecasts(ASSETS)
    now = last_hour(frame) + timedelta(minutes=5)
    with PublicationStore(f"sqlite:///{tmp_path / 'p.db'}") as store:
        first = publish(store, signer, frame, now)
        with pytest.raises(PublishError, match="no liquidity metrics for SOLUSDT"):
            publish(store, signer, pd.concat([frame, make_forecasts(("SOLUSDT",))]), now)

        calls = {"n": 0}
        original = signer.sign

        def failing_sign(snapshot):
            calls["n"] += 1
            if calls["n"] == 2:
                raise PublishError("HSM unavailable")
            return original(snapshot)

        monkeypatch.setattr(signer, "sign", failing_sign)
        with pytest.raises(PublishError, match="HSM"):
            publish(store, signer, frame, now + timedelta(hours=1))
        assert len(store.batches()) == 1
        assert {p.raw for p in store.latest().values()} == {
            store.batch(1)[0].raw,
            store.batch(1)[1].raw,
        }
        assert [p.update_id for p in store.latest().values()] == [1, 1]
        assert first.receipt.batch_id == 1


def test_operator_halt_and_override_are_audited_and_applied(tmp_path, signer):
    frame = make_forecasts(ASSETS)
    now = last_hour(frame) + timedelta(minutes=5)
    with PublicationStore(f"sqlite:///{tmp_path / 'p.db'}") as store:
        publish(store, signer, frame, now)
        apply_operator_action(store, BOOK, "BTCUSDT", "halt", "alice", "venue incident", now)
        apply_operator_action(
            store,
            BOOK,
            "ETHUSDT",
            "override",
            "bob",
            "listing",
            now,
            multiplier=2.0,
            until=now + timedelta(hours=3),
        )
        with pytest.raises(OperatorActionError, match="outside"):
            apply_operator_action(
                store, BOOK, "ETHUSDT", "override", "bob", "too far", now, multiplier=9.0
            )
        batch = publish(store, signer, frame, now + timedelta(hours=1))
        by_asset = {s["asset"]: s for s in batch.snapshots}
        assert by_asset["BTCUSDT"]["status"] == "halted"
        assert by_asset["ETHUSDT"]["margin"]["multiplier"] == 2.0
        assert batch.decisions["ETHUSDT"].reason == "override"
        assert [(r.asset, r.action, r.operator) for r in store.audit_log()] == [
            ("BTCUSDT", "halt", "alice"),
            ("ETHUSDT", "override", "bob"),
        ]


def replay_frame(hours: int = 24 * 28) -> pd.DataFrame:
    ts = pd.date_range(T0, periods=hours, freq="h", tz="UTC")
    sigma = np.full(hours, 0.02)
    sigma[300:360] = 0.06  # the forecast rises at hour 300 ...
    realized = np.full(hours, 0.02)
    realized[330:354] = 0.08  # ... the trailing realized vol peaks from hour 330
    realized[340] = 0.09
    return pd.DataFrame(
        {
            "ts": ts,
            "asset": "BTCUSDT",
            "sigma": sigma,
            "sigma_lower": sigma * 0.8,
            "sigma_upper": sigma * 1.2,
            "var_99": np.nan,
            "es_99": np.nan,
            "model": "har",
            "model_version": "1",
            "realized_vol": realized,
        }
    )


def test_replay_reports_changes_bounds_and_lead_time():
    config = PolicyConfig(
        sigma_ref=0.03,
        floor=0.7,
        cap=3.0,
        max_step_up=1.0,
        max_step_down=0.1,
        min_relax_delay_hours=1,
        hysteresis=0.0,
    )
    report = replay_policy(replay_frame(), PolicyBook.uniform(config), top_spikes=1)
    btc = report.assets["BTCUSDT"]
    path = report.paths
    assert btc.updates == 24 * 28 and btc.weeks == pytest.approx((24 * 28 - 1) / 168)
    assert btc.changes == int((path["multiplier"] != path["previous"]).sum())
    assert btc.time_at_cap == 0.0
    assert btc.time_at_floor == pytest.approx(np.isclose(path["multiplier"], 0.7).mean())
    assert btc.time_at_floor > 0.5  # calm forecasts sit at the floor most of the time
    (spike,) = btc.spikes
    assert spike.peak_ts == T0 + timedelta(hours=340)
    # Trailing window starts at 340 - 24 = 316; the multiplier first rose at hour 300.
    assert spike.lead_hours == 16.0
    assert spike.multiplier_at_peak == pytest.approx(2.0)


def test_replay_warm_up_is_excluded_from_the_summary():
    config = PolicyConfig(sigma_ref=None, sigma_ref_window_hours=72, sigma_ref_min_obs=48)
    frame = replay_frame()
    report = replay_policy(frame, PolicyBook.uniform(config), report_start=T0 + timedelta(days=7))
    btc = report.assets["BTCUSDT"]
    assert btc.updates == 24 * 21
    assert btc.fallback_share == 0.0  # the 48-hour warm-up of the reference is not counted
    full = replay_policy(frame, PolicyBook.uniform(config)).assets["BTCUSDT"]
    assert full.fallback_share > 0


def test_empty_forecasts_publish_the_rule_based_fallback_for_named_assets(tmp_path, signer):
    empty = make_forecasts(ASSETS).iloc[:0]
    now = T0 + timedelta(days=1)
    with PublicationStore(f"sqlite:///{tmp_path / 'p.db'}") as store:
        batch = publish_batch(
            empty,
            liquidity_for(ASSETS),
            PolicyBook.uniform(),
            store,
            signer,
            ProvenanceInfo(model_name="fallback", model_version="rule-based"),
            now,
            assets=list(ASSETS),
        )
        for snap in batch.snapshots:
            VALIDATOR.validate(snap)
            assert snap["status"] == "fallback"
            assert snap["sigma"] == PolicyConfig().fallback_sigma
            assert snap["margin"]["multiplier"] == 1.5  # initial 1.0 + one step towards 1.5
        assert {d.reason for d in batch.decisions.values()} == {"fallback_missing"}
        with pytest.raises(PublishError, match="nothing to publish"):
            publish_batch(
                empty,
                {},
                PolicyBook.uniform(),
                PublicationStore("sqlite://"),
                signer,
                ProvenanceInfo(),
                now,
            )
