"""``dynamargin schema|snapshots|policy`` commands, on a work dir with real publications."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

import jsonschema
import pytest
import typer
from typer.testing import CliRunner

from pipelines.commands import policy, schema, snapshots
from serving.keys import load_signing_keys
from serving.policy import PolicyBook, PolicyConfig
from serving.publishing import ProvenanceInfo, publish_batch
from serving.signing import SnapshotSigner
from serving.store import PublicationStore, default_store_url
from tests.serving.conftest import liquidity_for, make_forecasts

ASSETS = ("BTCUSDT", "ETHUSDT")


@pytest.fixture()
def cli() -> typer.Typer:
    # Only this module's commands: the test does not depend on other command groups.
    app = typer.Typer()
    for module in (schema, snapshots, policy):
        module.register(app)
    return app


@pytest.fixture()
def published(workdir: Path, monkeypatch: pytest.MonkeyPatch) -> SnapshotSigner:
    """Three batches published into the work dir's default store."""
    monkeypatch.delenv("DYNAMARGIN_PUBLICATIONS_URL", raising=False)
    signer = SnapshotSigner(load_signing_keys(workdir, environ={}))
    frame = make_forecasts(ASSETS)
    now = frame["ts"].max().to_pydatetime() + timedelta(minutes=5)
    book = PolicyBook.uniform(PolicyConfig(sigma_ref=0.03))
    with PublicationStore(default_store_url(workdir)) as store:
        for hour in range(3):
            publish_batch(
                frame,
                liquidity_for(ASSETS),
                book,
                store,
                signer,
                ProvenanceInfo(),
                now + timedelta(hours=hour),
            )
    return signer


def run(cli: typer.Typer, *args: str):
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


def test_schema_export_writes_a_valid_draft_2020_12_schema(cli, tmp_path):
    out = tmp_path / "schema.json"
    result = run(cli, "schema", "export", "--out", str(out))
    assert result.exit_code == 0
    schema = json.loads(out.read_text())
    jsonschema.Draft202012Validator.check_schema(schema)
    assert "signature" in schema["required"] and schema["title"] == "RiskSnapshot v2"
    assert schema["x-risk-oracle"]["value_scale"] == 10**18
    v1 = tmp_path / "schema-v1.json"
    assert run(cli, "schema", "export", "--revision", "1", "--out", str(v1)).exit_code == 0
    assert json.loads(v1.read_text())["title"] == "RiskSnapshot v1"


def test_snapshots_show_latest_and_time_travel(cli, published):
    latest = run(cli, "snapshots", "show", "BTCUSDT", "--json")
    assert latest.exit_code == 0
    assert json.loads(latest.output)["update_id"] == 3
    earlier = run(cli, "snapshots", "show", "BTCUSDT", "--at", "2025-06-11T00:30:00Z", "--json")
    assert json.loads(earlier.output)["update_id"] == 2
    table = run(cli, "snapshots", "show", "ETHUSDT")
    assert table.exit_code == 0 and "reference_id" in table.output
    missing = CliRunner().invoke(cli, ["snapshots", "show", "DOGEUSDT"])
    assert missing.exit_code == 1 and "no snapshot of DOGEUSDT" in missing.output


def test_export_then_verify_and_tampering_fails(cli, published, tmp_path):
    out = tmp_path / "snapshots.json"
    assert run(cli, "snapshots", "export", "--format", "json", "--out", str(out)).exit_code == 0
    exported = json.loads(out.read_text())
    assert [s["update_id"] for s in exported] == [1, 1, 2, 2, 3, 3]
    verified = run(cli, "snapshots", "verify", str(out), "--signer", published.address, "--json")
    assert verified.exit_code == 0
    assert all(r["ok"] for r in json.loads(verified.output))

    exported[3]["margin"]["multiplier"] = 0.5
    tampered = tmp_path / "tampered.json"
    tampered.write_text(json.dumps(exported))
    failed = CliRunner().invoke(cli, ["snapshots", "verify", str(tampered), "--json"])
    assert failed.exit_code == 1
    assert [r["ok"] for r in json.loads(failed.output)] == [True, True, True, False, True, True]


def test_single_snapshot_file_verifies_strictly(cli, published, tmp_path):
    single = tmp_path / "btc.json"
    single.write_text(run(cli, "snapshots", "show", "BTCUSDT", "--json").output)
    ok = run(
        cli, "snapshots", "verify", str(single), "--strict", "--public-key", published.public_key
    )
    assert ok.exit_code == 0
    single.write_text(json.dumps(json.loads(single.read_text()), indent=2))
    assert CliRunner().invoke(cli, ["snapshots", "verify", str(single), "--strict"]).exit_code == 1
    assert run(cli, "snapshots", "verify", str(single)).exit_code == 0  # content still intact


def test_oracle_export_keys_previous_value_per_market_and_type(cli, published):
    result = run(cli, "snapshots", "export", "--format", "oracle", "--asset", "BTCUSDT")
    updates = json.loads(result.output)
    multipliers = [u for u in updates if u["updateType"] == "marginMultiplier"]
    assert [u["updateId"] for u in multipliers] == [1, 2, 3]
    assert multipliers[1]["previousValue"] == multipliers[0]["newValue"]
    assert set(updates[0]) >= {
        "updateType",
        "market",
        "newValue",
        "previousValue",
        "referenceId",
        "timestamp",
    }


def test_policy_replay_command_prints_the_summary(cli, tmp_path):
    frame = make_forecasts(ASSETS, hours=24 * 14)
    frame["realized_vol"] = frame["sigma"] * 1.1
    path = tmp_path / "forecasts.parquet"
    frame.to_parquet(path)
    result = run(cli, "policy", "replay", "--forecasts", str(path), "--json")
    assert result.exit_code == 0
    summary = {row["asset"]: row for row in json.loads(result.output)}
    assert set(summary) == set(ASSETS)
    assert summary["BTCUSDT"]["updates"] == 24 * 14
    assert {"changes_per_week", "time_at_floor", "time_at_cap", "spikes"} <= set(summary["BTCUSDT"])
    table = run(cli, "policy", "replay", "--forecasts", str(path))
    assert "BTCUSDT" in table.output and "policy replay" in table.output


def test_operator_commands_are_audited(cli, published):
    halt = run(cli, "policy", "halt", "BTCUSDT", "--operator", "alice", "--note", "incident")
    assert halt.exit_code == 0
    bad = CliRunner().invoke(
        cli, ["policy", "override", "ETHUSDT", "99", "--operator", "bob", "--note", "too much"]
    )
    assert bad.exit_code == 1 and "outside" in bad.output
    audit = json.loads(run(cli, "policy", "audit", "--json").output)
    assert [(a["asset"], a["action"], a["operator"]) for a in audit] == [
        ("BTCUSDT", "halt", "alice")
    ]
