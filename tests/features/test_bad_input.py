"""Malformed input: each case gets a clear error or a quarantine, and nothing valid is lost.

Every test writes a small dump in a temp dir: one good month (2024-01, 744 bars) beside the
broken file (2024-02), so we can check that the good rows all survive the bad ones.
"""

from __future__ import annotations

import gzip
import zipfile
from pathlib import Path

import pandas as pd
import pytest

from features.errors import ChecksumMismatchError, ConflictingDuplicateError, MalformedFileError
from features.sources import load_market
from features.sources.binance import read_klines
from features.store import MarketStore
from tests.features.dump_helpers import (
    KLINE_HEADER,
    kline_lines,
    kline_zip_path,
    write_checksum,
    write_zip,
)

GOOD_ROWS = 31 * 24
FEB_ROWS = 29 * 24


@pytest.fixture()
def good_month(dump_root: Path) -> Path:
    """The valid January file; returns the dump root."""
    lines = kline_lines("2024-01-01", GOOD_ROWS)
    write_zip(kline_zip_path(dump_root, "BTCUSDT", "1h", "2024-01"), "\n".join(lines) + "\n")
    return dump_root


def feb_path(root: Path) -> Path:
    return kline_zip_path(root, "BTCUSDT", "1h", "2024-02")


def feb_lines(unit: str = "ms") -> list[str]:
    return kline_lines("2024-02-01", FEB_ROWS, unit=unit, price=200.0)


def assert_january_intact(root: Path) -> pd.DataFrame:
    """Load with skip-on-error and check that all of January is there."""
    market, report = load_market(root, "1h", on_file_error="skip")
    january = market.bars[market.bars["ts"] < pd.Timestamp("2024-02-01", tz="UTC")]
    assert len(january) == GOOD_ROWS
    assert january["ts"].is_unique
    return market.bars, report


def test_truncated_zip_is_a_clear_error_and_spares_other_files(good_month: Path) -> None:
    path = write_zip(feb_path(good_month), "\n".join(feb_lines()), checksum=False)
    payload = path.read_bytes()
    path.write_bytes(payload[: len(payload) // 2])
    with pytest.raises(MalformedFileError, match="truncated or corrupt") as info:
        read_klines(path)
    assert str(path) in str(info.value)
    _, report = assert_january_intact(good_month)
    assert [p.path for p in report.file_problems] == [str(path)]
    with pytest.raises(MalformedFileError):
        load_market(good_month, "1h")  # the default is to stop, not to skip


def test_truncated_zip_with_its_checksum_is_a_checksum_error(good_month: Path) -> None:
    path = write_zip(feb_path(good_month), "\n".join(feb_lines()))
    path.write_bytes(path.read_bytes()[:-100])
    with pytest.raises(ChecksumMismatchError, match="delete it and download it again"):
        read_klines(path)


def test_checksum_mismatch_names_file_and_both_digests(good_month: Path) -> None:
    path = write_zip(feb_path(good_month), "\n".join(feb_lines()))
    write_checksum(path, "0" * 64)
    with pytest.raises(ChecksumMismatchError) as info:
        read_klines(path)
    message = str(info.value)
    assert str(path) in message and "0" * 64 in message and info.value.actual in message
    _, report = assert_january_intact(good_month)
    assert "sha256" in report.file_problems[0].error


def test_junk_header_is_a_clear_error(good_month: Path) -> None:
    path = write_zip(feb_path(good_month), "\n".join(["foo,bar,baz", *feb_lines()]))
    with pytest.raises(MalformedFileError, match="unrecognised header 'foo,bar,baz'"):
        read_klines(path)
    assert_january_intact(good_month)


def test_wrong_number_of_columns_is_a_clear_error(good_month: Path) -> None:
    path = write_zip(feb_path(good_month), "1706745600000,1,2,3\n")
    with pytest.raises(MalformedFileError, match="4 fields, a kline file has 12"):
        read_klines(path)


def test_junk_lines_inside_a_file_are_quarantined(good_month: Path) -> None:
    lines = feb_lines()
    lines[10] = lines[10].replace(",42,", ",forty-two,")
    lines[20] = "garbage"
    write_zip(feb_path(good_month), "\n".join(lines))
    bars, report = assert_january_intact(good_month)
    assert len(bars) == GOOD_ROWS + FEB_ROWS - 2
    quarantined = report.quarantine.sort_values("source_row")
    assert quarantined["source_row"].tolist() == [11, 21]
    assert quarantined["reason"].tolist() == ["unparseable count", "1 fields, expected 12"]
    assert quarantined["raw"].iloc[1] == "garbage"
    assert report.get("BTCUSDT").quarantined == 2


@pytest.mark.parametrize(
    ("field", "value", "reason"),
    [(4, "NaN", "non-finite close"), (1, "-5.0", "non-positive open")],
)
def test_nan_or_negative_price_is_quarantined_to_a_file(
    good_month: Path, tmp_path: Path, field: int, value: str, reason: str
) -> None:
    lines = feb_lines()
    fields = lines[5].split(",")
    fields[field] = value
    lines[5] = ",".join(fields)
    write_zip(feb_path(good_month), "\n".join(lines))
    bars, report = assert_january_intact(good_month)
    assert len(bars) == GOOD_ROWS + FEB_ROWS - 1
    assert reason in report.quarantine["reason"].iloc[0]
    store = MarketStore(tmp_path / "store")
    store.ingest_dump(good_month)
    files = list(store.quarantine_dir.rglob("*.csv"))
    assert len(files) == 1
    written = pd.read_csv(files[0])
    assert reason in written.loc[0, "reason"]
    assert written.loc[0, "source_row"] == 6
    assert written.loc[0, "source_file"].endswith("BTCUSDT-1h-2024-02.zip")
    assert store.summary().set_index("dataset").loc["bars", "quarantined"] == 1
    assert len(store.read_bars()) == GOOD_ROWS + FEB_ROWS - 1


def test_conflicting_duplicate_across_files_raises_naming_both(good_month: Path) -> None:
    last_january = kline_lines("2024-01-31 23:00", 1, price=999.0)
    write_zip(feb_path(good_month), "\n".join([*last_january, *feb_lines()]))
    with pytest.raises(ConflictingDuplicateError) as info:
        load_market(good_month, "1h")
    message = str(info.value)
    assert "BTCUSDT" in message and "2024-01-31 23:00:00" in message
    assert "BTCUSDT-1h-2024-01.zip row 744" in message
    assert "BTCUSDT-1h-2024-02.zip row 1" in message


def test_identical_duplicate_across_files_is_dropped(good_month: Path) -> None:
    last_january = kline_lines("2024-01-01", GOOD_ROWS)[-1:]
    write_zip(feb_path(good_month), "\n".join([*last_january, *feb_lines()]))
    bars, report = assert_january_intact(good_month)
    assert len(bars) == GOOD_ROWS + FEB_ROWS
    assert report.get("BTCUSDT").duplicates_dropped == 1


def test_reversed_order_is_sorted_and_reported(good_month: Path) -> None:
    write_zip(feb_path(good_month), "\n".join(reversed(feb_lines())))
    bars, report = assert_january_intact(good_month)
    assert len(bars) == GOOD_ROWS + FEB_ROWS
    assert bars["ts"].is_monotonic_increasing
    assert report.get("BTCUSDT").reordered == FEB_ROWS - 1
    assert report.get("BTCUSDT").gaps == []


def test_mixed_timestamp_units_parse_to_a_continuous_series(good_month: Path) -> None:
    ms, us = feb_lines("ms"), feb_lines("us")
    half = FEB_ROWS // 2
    write_zip(feb_path(good_month), "\n".join([*ms[:half], *us[half:]]))
    bars, report = assert_january_intact(good_month)
    assert len(bars) == GOOD_ROWS + FEB_ROWS
    assert report.get("BTCUSDT").gaps == []
    assert bars["ts"].iloc[-1] == pd.Timestamp("2024-02-29 23:00", tz="UTC")


@pytest.mark.parametrize(
    ("content", "message"),
    [("", "is empty"), (KLINE_HEADER + "\n", "header but no data rows")],
)
def test_empty_csv_is_a_clear_error(good_month: Path, content: str, message: str) -> None:
    path = write_zip(feb_path(good_month), content)
    with pytest.raises(MalformedFileError, match=message):
        read_klines(path)
    _, report = assert_january_intact(good_month)
    assert len(report.file_problems) == 1


def test_empty_file_and_empty_archive_are_clear_errors(dump_root: Path) -> None:
    zero = feb_path(dump_root)
    zero.parent.mkdir(parents=True)
    zero.write_bytes(b"")
    with pytest.raises(MalformedFileError, match="the file is empty"):
        read_klines(zero)
    with zipfile.ZipFile(zero, "w"):
        pass
    with pytest.raises(MalformedFileError, match="holds 0 files"):
        read_klines(zero)


# --- perp OHLCV CSVs --------------------------------------------------------------------

PERP_TEXT = "date,open,high,low,close,volume\n" + "\n".join(
    f"2024-01-01 {h:02d}:00:00+00:00,{100 + h},{102 + h},{99 + h},{101 + h},5.0" for h in range(24)
)


def test_perp_junk_value_is_quarantined_and_the_rest_kept(tmp_path: Path) -> None:
    from features.sources.perp import load_perp

    lines = PERP_TEXT.splitlines()
    lines[4] = lines[4].replace(",5.0", ",lots")
    lines[9] = "not a date," + lines[9].split(",", 1)[1]
    path = tmp_path / "perp_ohlcv" / "BTCUSDT_perp_1h_ohlcv.csv.gz"
    path.parent.mkdir()
    path.write_bytes(gzip.compress("\n".join(lines).encode()))
    bars, report = load_perp(tmp_path)
    assert len(bars) == 22
    reasons = report.quarantine.sort_values("source_row")[["source_row", "reason"]]
    assert reasons["source_row"].tolist() == [5, 10]
    assert "non-finite volume" in reasons["reason"].iloc[0]
    assert "missing timestamp" in reasons["reason"].iloc[1]


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        (b"not gzip at all", "not a readable gzip"),
        (gzip.compress(b"time,o,h,l,c,v\n1,2,3,4,5,6\n"), "unexpected header"),
        (gzip.compress(b""), "is empty"),
    ],
)
def test_perp_file_level_problems_are_clear_errors(
    tmp_path: Path, payload: bytes, message: str
) -> None:
    from features.sources.perp import read_perp_csv

    path = tmp_path / "BTCUSDT_perp_1h_ohlcv.csv.gz"
    path.write_bytes(payload)
    with pytest.raises(MalformedFileError, match=message) as info:
        read_perp_csv(path)
    assert str(path) in str(info.value)


def test_blank_lines_do_not_shift_reported_line_numbers(good_month: Path) -> None:
    lines = feb_lines()
    lines.insert(3, "")
    lines[8] = lines[8].replace(",42,", ",-42,")  # line 9 of the file: negative trades
    write_zip(feb_path(good_month), "\n".join(lines) + "\n")
    bars, report = assert_january_intact(good_month)
    assert len(bars) == GOOD_ROWS + FEB_ROWS - 1
    assert report.quarantine["source_row"].tolist() == [9]
    assert "invalid trades" in report.quarantine["reason"].iloc[0]
