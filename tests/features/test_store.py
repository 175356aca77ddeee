"""Parquet store: layout, atomic writes, incremental append, idempotence, reads, summary."""

from __future__ import annotations

import itertools
import os
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.dataset as ds
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from features.errors import ConflictingDuplicateError, StoreError
from features.market import MarketData
from features.store import MarketStore
from features.validation import validate_bars
from tests.features.dump_helpers import kline_lines, kline_zip_path, write_zip


def make_bars(start: str, n: int, asset: str = "BTCUSDT", price: float = 100.0) -> pd.DataFrame:
    close = price + np.arange(n, dtype="float64")
    return pd.DataFrame(
        {
            "ts": pd.date_range(start, periods=n, freq="1h", tz="UTC"),
            "asset": pd.array([asset] * n, dtype="string"),
            "open": close - 0.5,
            "high": close + 1.0,
            "low": close - 1.0,
            "close": close,
            "volume": 10.0,
            "quote_volume": 10.0 * close,
            "trades": np.full(n, 7, dtype="int64"),
            "taker_buy_volume": 4.0,
            "taker_buy_quote_volume": 4.0 * close,
        }
    )


def store_files(root: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(root)): p.read_bytes()
        for p in sorted(root.rglob("*"))
        if p.is_file() and p.name != "_manifest.json"
    }


def test_layout_is_hive_partitioned_by_asset_and_year(tmp_path: Path) -> None:
    store = MarketStore(tmp_path)
    store.write("bars", make_bars("2023-12-31 22:00", 4), "1h")
    parts = sorted(p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*.parquet"))
    assert parts == [
        "bars/interval=1h/asset=BTCUSDT/year=2023/part-0.parquet",
        "bars/interval=1h/asset=BTCUSDT/year=2024/part-0.parquet",
    ]
    table = ds.dataset(tmp_path / "bars", format="parquet", partitioning="hive").to_table()
    assert table.num_rows == 4
    assert set(table.column("asset").to_pylist()) == {"BTCUSDT"}


def test_read_bars_round_trips_the_bars_contract(tmp_path: Path) -> None:
    store = MarketStore(tmp_path)
    bars = pd.concat([make_bars("2024-01-01", 30), make_bars("2024-01-01", 30, "ETHUSDT")])
    store.write("bars", bars, "1h")
    read = store.read_bars("1h")
    expected = bars.sort_values(["asset", "ts"]).reset_index(drop=True)
    pd.testing.assert_frame_equal(read, expected)
    window = store.read_bars("1h", ["ethusdt"], "2024-01-01 05:00", "2024-01-01 08:00")
    assert window["ts"].dt.hour.tolist() == [5, 6, 7]
    assert set(window["asset"]) == {"ETHUSDT"}


def test_append_equals_writing_everything_at_once(tmp_path: Path) -> None:
    whole = make_bars("2023-12-01", 24 * 60)
    at_once, in_steps = MarketStore(tmp_path / "a"), MarketStore(tmp_path / "b")
    at_once.write("bars", whole, "1h")
    for lo, hi in [(0, 500), (400, 900), (900, 24 * 60)]:  # overlapping chunks
        in_steps.write("bars", whole.iloc[lo:hi], "1h")
    pd.testing.assert_frame_equal(at_once.read_bars(), in_steps.read_bars())
    assert store_files(tmp_path / "a") == store_files(tmp_path / "b")


def test_writing_known_rows_is_a_no_op(tmp_path: Path) -> None:
    store = MarketStore(tmp_path)
    bars = make_bars("2024-03-01", 48)
    assert store.write("bars", bars, "1h") == (48, 1)
    before = store_files(tmp_path)
    assert store.write("bars", bars.iloc[10:20], "1h") == (0, 0)
    assert store_files(tmp_path) == before


def test_conflicting_rows_raise_and_leave_the_store_unchanged(tmp_path: Path) -> None:
    store = MarketStore(tmp_path)
    store.write("bars", make_bars("2024-03-01", 48), "1h")
    before = store_files(tmp_path)
    changed = make_bars("2024-03-02", 5, price=500.0)
    with pytest.raises(ConflictingDuplicateError, match="BTCUSDT bar 2024-03-02 00:00:00") as info:
        store.write("bars", changed, "1h")
    assert "part-0.parquet" in str(info.value)
    assert store_files(tmp_path) == before


def test_failed_write_leaves_previous_file_and_no_temp_files(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = MarketStore(tmp_path)
    store.write("bars", make_bars("2024-03-01", 24), "1h")
    before = store_files(tmp_path)

    def crash(table: object, where: str, **kwargs: object) -> None:
        Path(where).write_bytes(b"half a parquet file")
        raise OSError("disk full")

    monkeypatch.setattr(pq, "write_table", crash)
    with pytest.raises(OSError, match="disk full"):
        store.write("bars", make_bars("2024-03-02", 24), "1h")
    assert store_files(tmp_path) == before
    assert not [p for p in tmp_path.rglob("*") if p.name.endswith(".tmp")]


@settings(
    max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(cuts=st.lists(st.integers(0, 24 * 40), min_size=1, max_size=5))
def test_any_sequence_of_chunks_gives_the_same_store(tmp_path_factory, cuts: list[int]) -> None:
    """Property: incremental appends in any chunking equal one write."""
    whole = make_bars("2024-12-15", 24 * 40)
    reference = MarketStore(tmp_path_factory.mktemp("ref"))
    reference.write("bars", whole, "1h")
    chunked = MarketStore(tmp_path_factory.mktemp("chunked"))
    bounds = sorted({0, *cuts, len(whole)})
    for lo, hi in reversed(list(itertools.pairwise(bounds))):
        chunked.write("bars", whole.iloc[lo:hi], "1h")
    pd.testing.assert_frame_equal(reference.read_bars(), chunked.read_bars())


@pytest.fixture()
def small_dump(dump_root: Path) -> Path:
    for i, month in enumerate(["2024-01", "2024-02", "2024-03"]):
        start = pd.Timestamp(f"{month}-01")
        n = start.days_in_month * 24
        text = "\n".join(kline_lines(str(start), n, price=100.0 * (i + 1)))
        write_zip(kline_zip_path(dump_root, "BTCUSDT", "1h", month), text)
    return dump_root


def test_ingesting_twice_gives_the_same_store_and_skips_unchanged_files(
    tmp_path: Path, small_dump: Path
) -> None:
    store = MarketStore(tmp_path / "store")
    first = store.ingest_dump(small_dump)
    assert (first.files_read, first.files_skipped, first.rows_added) == (3, 0, 91 * 24)
    snapshot = store_files(tmp_path / "store")
    second = store.ingest_dump(small_dump)
    assert (second.files_read, second.files_skipped, second.rows_added) == (0, 3, 0)
    assert store_files(tmp_path / "store") == snapshot


def test_touched_but_identical_file_is_skipped_by_content_hash(
    tmp_path: Path, small_dump: Path
) -> None:
    store = MarketStore(tmp_path / "store")
    store.ingest_dump(small_dump)
    path = kline_zip_path(small_dump, "BTCUSDT", "1h", "2024-02")
    os.utime(path, ns=(1, 1))
    again = store.ingest_dump(small_dump)
    assert (again.files_read, again.files_skipped) == (0, 3)


def test_new_month_is_appended_incrementally(tmp_path: Path, small_dump: Path) -> None:
    store = MarketStore(tmp_path / "store")
    store.ingest_dump(small_dump, months=("2024-01", "2024-02"))
    assert store.read_bars()["ts"].max() == pd.Timestamp("2024-02-29 23:00", tz="UTC")
    later = store.ingest_dump(small_dump)
    assert (later.files_read, later.files_skipped, later.rows_added) == (1, 2, 31 * 24)
    summary = store.summary().iloc[0]
    assert summary["rows"] == 91 * 24 and summary["gaps"] == 0
    assert summary["last"] == pd.Timestamp("2024-03-31 23:00", tz="UTC")


def test_store_matches_load_market(tmp_path: Path, small_dump: Path) -> None:
    from features.sources import load_market

    store = MarketStore(tmp_path / "store")
    store.ingest_dump(small_dump)
    direct, _ = load_market(small_dump)
    stored = store.read_market("1h")
    pd.testing.assert_frame_equal(direct.bars, stored.bars)
    assert stored.source.startswith("store:")


def test_read_market_explains_an_empty_store(tmp_path: Path) -> None:
    with pytest.raises(StoreError, match="ingest data first"):
        MarketStore(tmp_path).read_market("1h")


def test_ingest_market_stores_bars_funding_and_perp(tmp_path: Path) -> None:
    bars = make_bars("2024-01-01", 48)
    perp = bars.copy()
    perp[["quote_volume", "trades", "taker_buy_volume", "taker_buy_quote_volume"]] = np.nan
    funding = pd.DataFrame(
        {
            "ts": pd.date_range("2024-01-01", periods=6, freq="8h", tz="UTC"),
            "asset": pd.array(["BTCUSDT"] * 6, dtype="string"),
            "funding_rate": 0.0001,
        }
    )
    store = MarketStore(tmp_path)
    market = MarketData(bars=bars, funding=funding, perp=perp, interval="1h", source="unit")
    result = store.ingest_market(market)
    assert result.rows_added == 48 + 6 + 48
    assert store.ingest_market(market).rows_added == 0  # idempotent
    again = store.read_market("1h")
    pd.testing.assert_frame_equal(again.bars, bars)
    pd.testing.assert_frame_equal(again.funding, funding)
    assert again.perp["trades"].isna().all() and len(again.perp) == 48
    summary = store.summary().set_index("dataset")
    assert summary.loc["funding", "rows"] == 6 and summary.loc["perp", "rows"] == 48


def test_summary_reports_gaps_over_the_whole_store(tmp_path: Path) -> None:
    store = MarketStore(tmp_path)
    store.write("bars", make_bars("2024-01-01", 10), "1h")
    store.write("bars", make_bars("2024-01-01 15:00", 5, price=200.0), "1h")
    row = store.summary().iloc[0]
    assert (row["rows"], row["gaps"], row["missing_bars"]) == (15, 1, 5)
    assert list(store.summary().columns) == [
        "dataset",
        "asset",
        "interval",
        "first",
        "last",
        "rows",
        "gaps",
        "missing_bars",
        "quarantined",
    ]


def test_validated_frames_with_provenance_write_cleanly(tmp_path: Path) -> None:
    clean, _ = validate_bars(make_bars("2024-01-01", 5), "1h", "x.csv", keep_provenance=True)
    store = MarketStore(tmp_path)
    store.write("bars", clean, "1h")
    assert "source_file" not in pq.read_table(next(tmp_path.rglob("*.parquet"))).column_names


def test_a_conflict_in_one_partition_blocks_the_whole_write(tmp_path: Path) -> None:
    store = MarketStore(tmp_path)
    store.write("bars", make_bars("2024-01-01", 24), "1h")
    before = store_files(tmp_path)
    new_2023 = make_bars("2023-12-31", 24)  # a new year partition, written first if at all
    clash_2024 = make_bars("2024-01-01 05:00", 1, price=1.0)
    with pytest.raises(ConflictingDuplicateError):
        store.write("bars", pd.concat([new_2023, clash_2024]), "1h")
    assert store_files(tmp_path) == before


def test_unvalidated_frames_with_repeated_keys_are_refused(tmp_path: Path) -> None:
    bars = make_bars("2024-01-01", 3)
    with pytest.raises(StoreError, match="validate it first"):
        MarketStore(tmp_path).write("bars", pd.concat([bars, bars]), "1h")


def test_concurrent_ingests_serialise_on_the_store_lock(tmp_path: Path, small_dump: Path) -> None:
    from concurrent.futures import ThreadPoolExecutor

    reference = MarketStore(tmp_path / "reference")
    reference.ingest_dump(small_dump)
    shared = MarketStore(tmp_path / "shared")
    with ThreadPoolExecutor(max_workers=3) as pool:
        results = list(pool.map(lambda _: shared.ingest_dump(small_dump), range(3)))
    assert sum(r.rows_added for r in results) == 91 * 24  # each row added exactly once
    pd.testing.assert_frame_equal(shared.read_bars(), reference.read_bars())
    assert (tmp_path / "shared" / ".lock").exists()
