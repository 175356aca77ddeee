"""Binance dump reader: names, layout, headers, timestamp units, checksums, funding, perp."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import given
from hypothesis import strategies as st

from features.bars import REQUIRED_COLUMNS
from features.sources import load_market
from features.sources.binance import (
    dump_data_dir,
    epoch_to_utc,
    parse_dump_name,
    read_funding,
    read_klines,
    scan_dump,
)
from features.sources.perp import read_perp_csv, scan_perp_dir
from tests.features.dump_helpers import KLINE_HEADER, kline_lines, kline_zip_path, write_zip

SPOT = "binance/data/spot/monthly/klines"
FUNDING = "binance/data/futures/um/monthly/fundingRate"


def test_parse_dump_name_reads_symbol_interval_and_period() -> None:
    kline = parse_dump_name(Path("BTCUSDT-1h-2024-01.zip"))
    funding = parse_dump_name(Path("ETHUSDT-fundingRate-2020-03.zip"))
    assert kline is not None and funding is not None
    assert (kline.kind, kline.symbol, kline.interval, kline.period) == (
        "klines",
        "BTCUSDT",
        "1h",
        "2024-01",
    )
    assert kline.period_end == pd.Timestamp("2024-02-01", tz="UTC")
    assert (funding.kind, funding.symbol, funding.interval) == ("fundingRate", "ETHUSDT", None)
    assert parse_dump_name(Path("README.md")) is None


@given(
    st.integers(
        min_value=int(pd.Timestamp("1990-01-01").timestamp() * 1000),
        max_value=int(pd.Timestamp("2100-01-01").timestamp() * 1000),
    )
)
def test_epoch_units_are_detected_per_value(ms: int) -> None:
    ts, bad = epoch_to_utc(np.array([ms, ms * 1000], dtype="int64"))
    assert not bad.any()
    assert ts[0] == ts[1] == pd.Timestamp(ms, unit="ms", tz="UTC")


def test_epoch_values_of_unknown_unit_are_flagged() -> None:
    ts, bad = epoch_to_utc(np.array([1_700_000_000, 1_700_000_000_000, 10**18]))
    assert bad.tolist() == [True, False, True]
    assert ts[1] == pd.Timestamp("2023-11-14 22:13:20", tz="UTC")
    assert pd.isna(ts[0]) and pd.isna(ts[2])


@pytest.mark.parametrize("suffix", ["", "binance", "binance/data"])
def test_dump_root_can_be_data_root_binance_dir_or_data_dir(shared_data: Path, suffix: str) -> None:
    root = shared_data / suffix if suffix else shared_data
    assert dump_data_dir(root) == shared_data / "binance" / "data"


def test_dump_data_dir_rejects_other_directories(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="not a Binance dump"):
        dump_data_dir(tmp_path)


def test_scan_dump_finds_klines_and_funding(shared_data: Path) -> None:
    files = scan_dump(shared_data)
    kinds = {(f.kind, f.interval) for f in files}
    assert kinds == {("klines", "1h"), ("klines", "2h"), ("fundingRate", None)}
    assert len(files) == 1600  # every zip of the shared dump, no checksum files


def test_microsecond_file_parses_to_the_right_hours(shared_data: Path) -> None:
    read = read_klines(shared_data / SPOT / "BTCUSDT/1h/BTCUSDT-1h-2025-01.zip")
    assert read.verified
    assert read.quarantine.empty
    bars = read.frame
    assert bars["ts"].iloc[0] == pd.Timestamp("2025-01-01 00:00", tz="UTC")
    assert bars["ts"].iloc[-1] == pd.Timestamp("2025-01-31 23:00", tz="UTC")
    assert (bars["ts"].diff().dropna() == pd.Timedelta("1h")).all()
    assert bars["open"].iloc[0] == pytest.approx(93576.0)
    assert list(bars.columns[: len(REQUIRED_COLUMNS)]) == list(REQUIRED_COLUMNS)


def test_millisecond_file_parses_to_the_right_hours(shared_data: Path) -> None:
    read = read_klines(shared_data / SPOT / "BTCUSDT/1h/BTCUSDT-1h-2017-08.zip")
    assert read.frame["ts"].iloc[0] == pd.Timestamp("2017-08-17 04:00", tz="UTC")
    assert read.frame["close"].iloc[0] == pytest.approx(4308.83)
    assert read.frame["trades"].iloc[0] == 171


def test_headered_and_headerless_files_parse_identically(dump_root: Path) -> None:
    lines = kline_lines("2024-01-01", 24)
    plain = write_zip(kline_zip_path(dump_root, "AAAUSDT", "1h", "2024-01"), "\n".join(lines))
    headed = write_zip(
        kline_zip_path(dump_root, "BBBUSDT", "1h", "2024-01"),
        "\n".join([KLINE_HEADER, *lines]) + "\n",
    )
    a = read_klines(plain).frame.drop(columns=["asset", "source_file", "source_row"])
    b = read_klines(headed).frame.drop(columns=["asset", "source_file", "source_row"])
    pd.testing.assert_frame_equal(a, b)
    assert read_klines(headed).frame["source_row"].iloc[0] == 2  # line 1 is the header


def test_plain_csv_is_accepted(tmp_path: Path) -> None:
    path = tmp_path / "XYZUSDT-1h-2024-01.csv"
    path.write_text("\n".join(kline_lines("2024-01-01", 3)))
    read = read_klines(path)
    assert read.frame["asset"].tolist() == ["XYZUSDT"] * 3
    assert not read.verified


def test_funding_reader_rounds_late_settlement_stamps(shared_data: Path) -> None:
    path = shared_data / FUNDING / "DOGEUSDT/DOGEUSDT-fundingRate-2025-02.zip"
    read = read_funding(path)
    assert read.verified
    assert list(read.frame.columns[:3]) == ["ts", "asset", "funding_rate"]
    # The raw file stamps some settlements at ...00001 ms; every ts is on the second.
    assert (read.frame["ts"].dt.microsecond == 0).all()
    assert (read.frame["ts"].dt.minute == 0).all()


def test_perp_reader_gives_bars_with_unknown_flow(shared_data: Path) -> None:
    files = scan_perp_dir(shared_data)
    assert {f.symbol for f in files} >= {"BTCUSDT", "ETHUSDT"}
    btc = next(f for f in files if f.symbol == "BTCUSDT")
    bars, digest = read_perp_csv(btc.path)
    assert len(digest) == 64
    assert bars["ts"].iloc[0] == pd.Timestamp("2019-09-08 17:00", tz="UTC")
    assert bars["close"].iloc[0] == 10000.0
    assert bars[["quote_volume", "trades", "taker_buy_volume"]].isna().all().all()


def test_load_market_slices_assets_interval_and_period(shared_data: Path) -> None:
    market, report = load_market(
        shared_data, "2h", ["ethusdt"], start="2024-01-01", end="2024-02-01"
    )
    assert market.assets == ["ETHUSDT"]
    assert market.interval == "2h"
    assert market.bars["ts"].min() == pd.Timestamp("2024-01-01", tz="UTC")
    assert market.bars["ts"].max() == pd.Timestamp("2024-01-31 22:00", tz="UTC")
    assert len(market.bars) == 31 * 12
    assert set(market.funding["asset"]) == {"ETHUSDT"}
    assert (
        market.funding["ts"]
        .between(pd.Timestamp("2024-01-01", tz="UTC"), pd.Timestamp("2024-02-01", tz="UTC"))
        .all()
    )
    assert market.perp.empty  # the perp files are hourly only
    assert report.get("ETHUSDT", "bars", "2h").rows == len(market.bars)
    assert report.ok


def test_load_market_names_missing_assets(shared_data: Path) -> None:
    with pytest.raises(ValueError, match="NOPEUSDT"):
        load_market(shared_data, "1h", ["NOPEUSDT"])


def test_load_market_attaches_perp_for_hourly_bars(shared_data: Path) -> None:
    market, report = load_market(
        shared_data, "1h", ["BTCUSDT"], start="2024-06-01", end="2024-06-08"
    )
    assert len(market.bars) == 7 * 24
    assert len(market.perp) == 7 * 24
    assert market.perp["taker_buy_volume"].isna().all()
    assert report.get("BTCUSDT", "perp").rows == 7 * 24
    assert len(market.funding) == 7 * 3  # 8-hourly funding
