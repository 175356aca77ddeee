"""``dynamargin liquidation-price`` on a JSON account: agrees with the engine, refuses bad input."""

from __future__ import annotations

import copy
import json

from typer.testing import CliRunner

from liquidation.account_spec import AccountSpec, engine_for_account
from liquidation.money import MICRO
from pipelines.cli import app
from tests.liquidation.liq_builders import HOUR_MS, iso, snapshot

AT = 10 * HOUR_MS


def account() -> dict:
    """Cross long BTC and short ETH, an isolated SOL long, a multiplier rise mid-ramp."""
    snaps = [snapshot(s, 1, 1.0) for s in ("BTCUSDT", "ETHUSDT", "SOLUSDT")]
    snaps += [
        snapshot(s, 2, 1.8, as_of_ms=6 * HOUR_MS, previous=1.0)
        for s in ("BTCUSDT", "ETHUSDT", "SOLUSDT")
    ]
    return {
        "at": iso(AT),
        "account": "alice",
        "collateral": "20000",
        "prices": {"BTCUSDT": "61000", "ETHUSDT": "2950", "SOLUSDT": "150"},
        "positions": [
            {"asset": "BTCUSDT", "qty": "2", "entry": "60000", "opened_at": iso(HOUR_MS)},
            {"asset": "ETHUSDT", "qty": "-20", "entry": "3000", "opened_at": iso(HOUR_MS)},
            {
                "asset": "SOLUSDT",
                "qty": "50",
                "entry": "148",
                "opened_at": iso(8 * HOUR_MS),
                "isolated": True,
                "margin": "2000",
            },
        ],
        "snapshots": snaps,
        "accrued_funding": {"BTCUSDT": 0.0001},
    }


def test_command_prints_the_engine_crossings(tmp_path):
    path = tmp_path / "alice.json"
    path.write_text(json.dumps(account()))
    result = CliRunner().invoke(
        app, ["--workdir", str(tmp_path), "liquidation-price", str(path), "--json"]
    )
    assert result.exit_code == 0, result.output
    rows = {(r["bucket"], r["asset"]): r for r in json.loads(result.output)["positions"]}
    assert set(rows) == {
        ("alice", "BTCUSDT"), ("alice", "ETHUSDT"), ("alice:SOLUSDT", "SOLUSDT")
    }  # fmt: skip
    btc = rows[("alice", "BTCUSDT")]
    assert btc["liquidation_above"] is None and float(btc["liquidation_below"]) < 61_000
    eth = rows[("alice", "ETHUSDT")]
    assert eth["liquidation_below"] is None and float(eth["liquidation_above"]) > 2_950
    # The engine built from the same file liquidates at the printed price, not a tick before.
    spec = AccountSpec.parse(account())
    engine = engine_for_account(spec)
    crossing = round(float(btc["liquidation_below"]) * MICRO)
    for oracle, expected in ((crossing, True), (crossing + 1, False)):
        probe = copy.deepcopy(engine)
        probe.update_price("BTCUSDT", oracle, ts=AT, reference=oracle)
        probe.apply_funding("BTCUSDT", 0.0001, ts=AT)
        assert ("alice" in probe.liquidatable(AT)) is expected
    table = CliRunner().invoke(app, ["--workdir", str(tmp_path), "liquidation-price", str(path)])
    assert table.exit_code == 0 and "alice:SOLUSDT" in table.output


def test_command_refuses_bad_input_in_one_line(tmp_path):
    bad = account()
    bad["positions"][0]["qty"] = 1.5  # a float, not a decimal string
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(bad))
    result = CliRunner().invoke(app, ["--workdir", str(tmp_path), "liquidation-price", str(path)])
    assert result.exit_code == 1
    assert "positions[0].qty" in result.output and "Traceback" not in result.output
    overlevered = account()
    overlevered["collateral"] = "100"
    path.write_text(json.dumps(overlevered))
    result = CliRunner().invoke(app, ["--workdir", str(tmp_path), "liquidation-price", str(path)])
    assert result.exit_code == 1 and "opening BTCUSDT" in result.output
