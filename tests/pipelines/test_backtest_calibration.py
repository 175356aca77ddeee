"""`dynamargin backtest --calibration` on the real shared data, with a tiny book (issue #19)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from liquidation.calibration import SIDES
from liquidation.calibration_report import COLUMNS
from pipelines.cli import app

ASSETS = ("BTCUSDT", "XRPUSDT")


@pytest.fixture(scope="module")
def calibration_run(shared_data: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple:
    workdir = tmp_path_factory.mktemp("calibration")
    report = workdir / "report"
    args = [
        "--workdir", str(workdir), "backtest", "--calibration", "--data", str(shared_data),
        "--assets", ",".join(ASSETS), "--traders", "1500", "--book", "market", "--path",
        "bridge", "--report-dir", str(report),
    ]  # fmt: skip
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    return result.output, report


def test_calibration_prints_and_writes_the_table(calibration_run: tuple) -> None:
    output, report = calibration_run
    saved = json.loads((report / "calibration.json").read_text())
    rows = saved["rows"]
    assert saved["config"]["traders"] == 1500
    assert saved["config"]["book_model"] == "market" and saved["config"]["path"] == "bridge"
    # One row per asset, period and side, in that order.
    keys = [(r["asset"], r["period"], r["side"]) for r in rows]
    assert keys == [(a, p, s) for a in ASSETS for p in ("fit", "test") for s in SIDES]
    for row in rows:
        assert row["days"] > 300
        assert -1 <= row["corr_baseline"] <= 1
        assert row["corr_sim"] is None or -1 <= row["corr_sim"] <= 1
        assert 0 < row["top1_real"] < 1 and 0 < row["top1_baseline"] < 1
        assert row["level_real"] > 0 and row["level_baseline"] > 0
        if row["side"] == "total":
            assert 0 <= row["long_top10_real"] <= 1 and 0 <= row["long_top10_baseline"] <= 1
        # Open interest exists for BTC (and ETH) only, on the total rows.
        has_oi = row["asset"] == "BTCUSDT" and row["side"] == "total"
        assert ("liq_oi_real" in row) == has_oi
    btc = {(r["period"], r["side"]): r for r in rows if r["asset"] == "BTCUSDT"}
    # The level scale is fitted on the fit days: there, the book's mean is the real one.
    fit = btc[("fit", "total")]
    assert fit["level_sim"] == pytest.approx(fit["level_real"], rel=1e-9)
    assert fit["first_day"] == "2021-05-01" and btc[("test", "total")]["first_day"] == "2023-01-01"
    # The printed table is the saved one: a header of every column, one line per row.
    lines = [line for line in output.splitlines() if line.startswith(ASSETS)]
    assert len(lines) == len(rows)
    header = next(line for line in output.splitlines() if line.startswith("asset"))
    assert header.split() == " ".join(h for _, h in COLUMNS).split()
    page = (report / "calibration.html").read_text()
    assert page.count("<tr>") == len(rows) + 1
    assert "data:image/png;base64," in page


def test_calibration_needs_real_data(workdir: Path) -> None:
    result = CliRunner().invoke(app, ["--workdir", str(workdir), "backtest", "--calibration"])
    assert result.exit_code == 1
    assert "--calibration needs --data" in result.output
    assert "Traceback" not in result.output


def test_calibration_refuses_an_asset_without_real_liquidations(
    workdir: Path, shared_data: Path
) -> None:
    args = ["--workdir", str(workdir), "backtest", "--calibration", "--data", str(shared_data),
            "--assets", "DOGEUSDT"]  # fmt: skip
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 1
    assert "no real liquidations for ['DOGEUSDT']" in result.output


def test_calibration_refuses_the_options_it_would_ignore(shared_data: Path, tmp_path: Path) -> None:
    args = [
        "--workdir", str(tmp_path), "backtest", "--calibration", "--data", str(shared_data),
        "--start", "2023-01-01", "--seeds", "2", "--traders", "100",
    ]  # fmt: skip
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 1
    text = " ".join(result.output.split())
    assert "--start, --seeds" in text and "fixed fit and test periods" in text
    assert not (tmp_path / "reports").exists()  # refused before any replay or report
