"""``dynamargin ingest ...`` and ``dynamargin data summary`` through the real Typer app."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from pipelines.cli import app
from tests.features.dump_helpers import kline_lines, kline_zip_path, write_zip

runner = CliRunner()


def run(workdir: Path, *args: str):
    return runner.invoke(app, ["--workdir", str(workdir), *args])


def summary_of(workdir: Path) -> pd.DataFrame:
    result = run(workdir, "data", "summary", "--json")
    assert result.exit_code == 0, result.output
    return pd.DataFrame(json.loads(result.stdout))


@pytest.fixture()
def tiny_dump(dump_root: Path) -> Path:
    for symbol in ("BTCUSDT", "ETHUSDT"):
        for month, start in (("2024-01", "2024-01-01"), ("2024-02", "2024-02-01")):
            days = pd.Timestamp(start).days_in_month
            text = "\n".join(kline_lines(start, days * 24))
            write_zip(kline_zip_path(dump_root, symbol, "1h", month), text)
    return dump_root


def test_summary_of_an_empty_store_says_what_to_do(workdir: Path) -> None:
    result = run(workdir, "data", "summary")
    assert result.exit_code == 0
    assert "dynamargin ingest synthetic" in result.output
    assert summary_of(workdir).empty


def test_ingest_synthetic_then_summary(workdir: Path) -> None:
    result = run(workdir, "ingest", "synthetic", "--assets", "2", "--days", "3", "--seed", "5")
    assert result.exit_code == 0, result.output
    summary = summary_of(workdir)
    bars = summary[summary["dataset"] == "bars"]
    assert len(bars) == 2 and (bars["rows"] == 72).all()
    assert set(summary["dataset"]) == {"bars", "perp", "funding"}
    again = run(
        workdir, "ingest", "synthetic", "--assets", "2", "--days", "3", "--seed", "5", "--json"
    )
    assert json.loads(again.stdout)["rows_added"] == 0  # idempotent
    table = run(workdir, "data", "summary")
    assert "BTCUSDT" in table.stdout and "quarantined" in table.stdout


def test_ingest_binance_dir_with_symbol_and_interval_filters(
    workdir: Path, tiny_dump: Path
) -> None:
    result = run(
        workdir,
        "ingest",
        "binance-dir",
        str(tiny_dump),
        "--symbols",
        "ethusdt",
        "--interval",
        "1h",
        "--json",
    )
    assert result.exit_code == 0, result.output
    payload = json.loads(result.stdout)
    assert payload["files_read"] == 2 and payload["rows_added"] == 60 * 24
    summary = summary_of(workdir)
    assert summary[["asset", "rows", "gaps"]].values.tolist() == [["ETHUSDT", 1440, 0]]
    assert summary.loc[0, "first"] == "2024-01-01T00:00:00+00:00"
    rerun = run(workdir, "ingest", "binance-dir", str(tiny_dump), "-s", "ETHUSDT", "--json")
    assert json.loads(rerun.stdout)["files_skipped_unchanged"] == 2


def test_bad_file_is_reported_with_exit_1_and_good_files_are_kept(
    workdir: Path, tiny_dump: Path
) -> None:
    broken = kline_zip_path(tiny_dump, "BTCUSDT", "1h", "2024-02")
    broken.write_bytes(broken.read_bytes()[:50])
    result = run(workdir, "ingest", "binance-dir", str(tiny_dump))
    assert result.exit_code == 1
    assert "BTCUSDT-1h-2024-02.zip" in result.stderr
    rows = summary_of(workdir).set_index("asset")["rows"]
    assert rows.to_dict() == {"BTCUSDT": 744, "ETHUSDT": 1440}
    strict = run(workdir, "ingest", "binance-dir", str(tiny_dump), "--strict")
    assert strict.exit_code == 1 and "sha256" in strict.stderr


def test_ingest_binance_url_downloads_then_ingests(
    workdir: Path, shared_data: Path, file_server
) -> None:
    base_url, _ = file_server(shared_data / "binance")
    result = run(
        workdir,
        "ingest",
        "binance-url",
        base_url,
        "--symbols",
        "SOLUSDT",
        "--months",
        "2020-07..2020-09",
        "--interval",
        "2h",
        "--json",
    )
    assert result.exit_code == 0, result.output
    assert "not on the server" in result.stderr  # July 2020 is before the 2h listing
    summary = summary_of(workdir).set_index("dataset")
    assert summary.loc["bars", "first"] == "2020-08-11T06:00:00+00:00"
    assert summary.loc["bars", "last"] == "2020-09-30T22:00:00+00:00"
    assert (workdir / "cache" / "binance" / "data").is_dir()


def test_ingest_binance_url_requires_symbols_and_months(workdir: Path) -> None:
    result = run(workdir, "ingest", "binance-url", "http://127.0.0.1:9")
    assert result.exit_code == 2
    assert "--symbols and --months" in result.stderr


def test_ingest_perp_dir(workdir: Path, shared_data: Path) -> None:
    result = run(workdir, "ingest", "perp-dir", str(shared_data), "-s", "SOLUSDT", "--json")
    assert result.exit_code == 0, result.output
    summary = summary_of(workdir).set_index("dataset")
    assert summary.loc["perp", "asset"] == "SOLUSDT"
    assert summary.loc["perp", "rows"] == 3600


def test_data_errors_are_one_line_not_a_traceback(workdir: Path, tmp_path: Path) -> None:
    result = run(workdir, "ingest", "binance-dir", str(tmp_path))
    assert result.exit_code == 1
    assert "not a Binance dump" in result.stderr
    assert "Traceback" not in result.output


def test_quarantined_rows_are_announced_and_counted(workdir: Path, dump_root: Path) -> None:
    lines = kline_lines("2024-01-01", 48)
    fields = lines[7].split(",")
    fields[3] = "-1"  # a negative low
    lines[7] = ",".join(fields)
    write_zip(kline_zip_path(dump_root, "BTCUSDT", "1h", "2024-01"), "\n".join(lines))
    result = run(workdir, "ingest", "binance-dir", str(dump_root))
    assert result.exit_code == 0, result.output
    assert "1 row(s) quarantined" in result.stderr
    assert str(workdir / "quarantine") in result.stderr
    row = summary_of(workdir).iloc[0]
    assert (row["rows"], row["quarantined"], row["gaps"]) == (47, 1, 1)
