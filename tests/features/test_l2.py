"""The L2 modules: capture parser, book reconstruction, OFI, trade-level VPIN, the CLI."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from features.l2.agreement import book_ticker_agreement, book_ticker_frame
from features.l2.book import BookReplayer, BookSequenceError, OrderBook, ReplayStats, book_frame
from features.l2.capture import (
    CaptureFormatError,
    DepthSnapshot,
    DepthUpdate,
    open_capture,
    parse_capture,
)
from features.l2.ofi import aggregate_ofi, order_flow_imbalance
from features.l2.vpin import trade_vpin, trades_frame

SYMBOL = "BTCUSDT"


# --- builders of raw capture lines -----------------------------------------------------------


def snapshot_line(last_update_id: int, bids: list, asks: list, local_ns: int = 1) -> str:
    body = {"lastUpdateId": last_update_id, "E": 0, "T": 0, "bids": bids, "asks": asks}
    return f"{local_ns} {json.dumps(_as_strings(body))}"


def diff_line(first: int, final: int, previous: int, bids: list, asks: list, t_ms: int = 0) -> str:
    data = {
        "e": "depthUpdate",
        "E": t_ms,
        "T": t_ms,
        "s": SYMBOL,
        "U": first,
        "u": final,
        "pu": previous,
        "b": bids,
        "a": asks,
    }
    message = {"stream": "btcusdt@depth@0ms", "data": _as_strings(data)}
    return f"{t_ms * 1_000_000} {json.dumps(message)}"


def trade_line(trade_id: int, price: float, quantity: float, buyer_is_maker: bool) -> str:
    data = {
        "e": "trade",
        "E": trade_id,
        "T": trade_id,
        "s": SYMBOL,
        "t": trade_id,
        "p": f"{price:.2f}",
        "q": f"{quantity:.3f}",
        "X": "MARKET",
        "m": buyer_is_maker,
    }
    return f"{trade_id} {json.dumps({'stream': 'btcusdt@trade', 'data': data})}"


def _as_strings(body: dict) -> dict:
    """Binance sends price levels as decimal strings."""
    for key in ("bids", "asks", "b", "a"):
        if key in body:
            body[key] = [[f"{p:.2f}", f"{q:.3f}"] for p, q in body[key]]
    return body


# --- a hand-built book sequence with known OFI ---------------------------------------------------

HAND_BOOK = [
    snapshot_line(100, bids=[(100.0, 5), (99.0, 3)], asks=[(101.0, 4), (102.0, 2), (103.0, 6)]),
    # 1: bid size 5 -> 7 at the same price (first row: no predecessor, NaN).
    diff_line(95, 101, 90, bids=[(100.0, 7)], asks=[], t_ms=1_000),
    # 2: a new best bid 100.5 x 1; level 2 becomes 100 x 7 (was 99 x 3).
    diff_line(102, 103, 101, bids=[(100.5, 1)], asks=[], t_ms=1_200),
    # 3: the best ask 101 is removed; asks become 102 x 2, 103 x 6.
    diff_line(104, 104, 103, bids=[], asks=[(101.0, 0)], t_ms=1_900),
    # 4: best bid shrinks 1 -> 0.4; a new best ask 101.5 x 3 (level 2 becomes 102 x 2).
    diff_line(105, 106, 104, bids=[(100.5, 0.4)], asks=[(101.5, 3)], t_ms=2_100),
    # 5: best bid grows 0.4 -> 2.4, best ask shrinks 3 -> 1.
    diff_line(107, 107, 106, bids=[(100.5, 2.4)], asks=[(101.5, 1)], t_ms=2_500),
    # 6: best bid removed: bids become 100 x 7, 99 x 3.
    diff_line(108, 110, 107, bids=[(100.5, 0)], asks=[], t_ms=3_000),
]
# e_n = [qb_n 1{pb_n >= pb_n-1} - qb_n-1 1{pb_n <= pb_n-1}]
#     - [qa_n 1{pa_n <= pa_n-1} - qa_n-1 1{pa_n >= pa_n-1}], per level
EXPECTED_OFI_1 = [np.nan, 1.0, 4.0, -0.6 - 3.0, 2.0 + 2.0, -2.4]
EXPECTED_OFI_2 = [np.nan, 7.0, 2.0, -2.0, 0.0, -7.0]


def test_ofi_matches_hand_computed_values() -> None:
    book = book_frame(parse_capture(HAND_BOOK), depth=2)
    ofi = order_flow_imbalance(book)
    np.testing.assert_allclose(ofi["ofi_1"], EXPECTED_OFI_1, atol=1e-12)
    np.testing.assert_allclose(ofi["ofi"], EXPECTED_OFI_1, atol=1e-12)
    np.testing.assert_allclose(ofi["ofi_2"], EXPECTED_OFI_2, atol=1e-12)
    expected_multi = 2 / 3 * np.array(EXPECTED_OFI_1) + 1 / 3 * np.array(EXPECTED_OFI_2)
    np.testing.assert_allclose(ofi["ofi_multi"], expected_multi, atol=1e-12)
    equal_weights = order_flow_imbalance(book, weights=[1.0, 1.0])
    expected_equal = (np.array(EXPECTED_OFI_1) + np.array(EXPECTED_OFI_2)) / 2
    np.testing.assert_allclose(equal_weights["ofi_multi"], expected_equal, atol=1e-12)
    best_only = order_flow_imbalance(book, levels=1)
    np.testing.assert_allclose(best_only["ofi_multi"], EXPECTED_OFI_1, atol=1e-12)


def test_ofi_aggregates_into_left_labelled_time_buckets() -> None:
    ofi = order_flow_imbalance(book_frame(parse_capture(HAND_BOOK), depth=2))
    buckets = aggregate_ofi(ofi, "1s")
    assert list(buckets.index) == list(pd.to_datetime([1, 2, 3], unit="s", utc=True))
    np.testing.assert_allclose(buckets["ofi"], [1.0 + 4.0, -3.6 + 4.0, -2.4], atol=1e-12)
    assert buckets["events"].tolist() == [3, 2, 1]
    np.testing.assert_allclose(buckets["ofi_norm"], buckets["ofi_multi"] / buckets["depth"])


def test_book_frame_levels_and_missing_levels() -> None:
    book = book_frame(parse_capture(HAND_BOOK), depth=4)
    last = book.iloc[-1]
    assert (last["bid_px_1"], last["bid_qty_1"]) == (100.0, 7.0)
    assert (last["bid_px_2"], last["bid_qty_2"]) == (99.0, 3.0)
    assert np.isnan(last["bid_px_3"]) and last["bid_qty_3"] == 0.0
    assert [last[f"ask_px_{k}"] for k in (1, 2, 3)] == [101.5, 102.0, 103.0]
    assert book["update_id"].tolist() == [101, 103, 104, 106, 107, 110]
    assert book["ts"].iloc[0] == pd.Timestamp(1_000, unit="ms", tz="UTC")


def test_ofi_rejects_bad_levels_and_weights() -> None:
    book = book_frame(parse_capture(HAND_BOOK), depth=2)
    with pytest.raises(ValueError, match=r"levels must be in 1\.\.2"):
        order_flow_imbalance(book, levels=3)
    with pytest.raises(ValueError, match="weights"):
        order_flow_imbalance(book, weights=[1.0])


# --- sequence rules --------------------------------------------------------------------------


def test_diffs_before_the_snapshot_are_buffered_and_stale_ones_dropped() -> None:
    lines = [
        diff_line(80, 90, 70, bids=[(98.0, 1)], asks=[]),  # u < lastUpdateId: dropped
        diff_line(91, 101, 90, bids=[(100.0, 9)], asks=[]),  # straddles 100: first applied
        snapshot_line(100, bids=[(100.0, 5)], asks=[(101.0, 4)]),
        diff_line(102, 105, 101, bids=[], asks=[(101.0, 0), (101.2, 2)]),
    ]
    stats = ReplayStats()
    book = book_frame(parse_capture(lines), depth=1, stats=stats)
    assert book["update_id"].tolist() == [101, 105]
    assert book["bid_qty_1"].tolist() == [9.0, 9.0]
    assert book["ask_px_1"].tolist() == [101.0, 101.2]  # quantity 0 removed 101.0
    assert (stats.applied, stats.dropped_stale, stats.buffered_before_snapshot) == (2, 1, 2)


def test_a_pu_gap_raises_with_line_and_ids() -> None:
    lines = [*HAND_BOOK[:3], diff_line(105, 106, 104, bids=[(100.0, 1)], asks=[], t_ms=5)]
    with pytest.raises(BookSequenceError, match=r"line 4 .*pu=104 but the last applied.*u=103"):
        book_frame(parse_capture(lines))


def test_a_first_diff_that_skips_the_snapshot_raises() -> None:
    lines = [HAND_BOOK[0], diff_line(102, 103, 101, bids=[(100.0, 1)], asks=[])]
    with pytest.raises(BookSequenceError, match="does not include the snapshot's lastUpdateId"):
        book_frame(parse_capture(lines))


def test_a_replayed_diff_raises() -> None:
    lines = [*HAND_BOOK[:3], HAND_BOOK[2]]
    with pytest.raises(BookSequenceError, match="duplicate or out of order"):
        book_frame(parse_capture(lines))


def test_another_symbol_in_the_stream_raises() -> None:
    other = HAND_BOOK[2].replace('"s": "BTCUSDT"', '"s": "ETHUSDT"')
    with pytest.raises(BookSequenceError, match="symbol ETHUSDT in a BTCUSDT book stream"):
        book_frame(parse_capture([*HAND_BOOK[:2], other]))


def test_resync_mode_records_the_gap_and_resumes_from_the_next_snapshot() -> None:
    lines = [
        *HAND_BOOK[:3],
        diff_line(200, 201, 199, bids=[(90.0, 1)], asks=[]),  # gap: pu 199 != 103
        diff_line(202, 204, 201, bids=[(90.0, 2)], asks=[]),  # buffered until the snapshot
        snapshot_line(203, bids=[(95.0, 1)], asks=[(96.0, 1)]),
        diff_line(205, 206, 204, bids=[], asks=[(96.0, 3)]),
    ]
    stats = ReplayStats()
    book = book_frame(parse_capture(lines), depth=1, on_gap="resync", stats=stats)
    assert stats.resyncs == 1 and "pu=199" in stats.gaps[0]
    assert book["update_id"].tolist() == [101, 103, 204, 206]
    assert book["bid_px_1"].tolist()[-2:] == [95.0, 95.0]
    assert book["ask_qty_1"].tolist()[-1] == 3.0


def test_replayer_validates_its_arguments() -> None:
    with pytest.raises(ValueError, match="depth must be >= 1"):
        BookReplayer(depth=0)
    with pytest.raises(ValueError, match="on_gap"):
        BookReplayer(on_gap="ignore")  # type: ignore[arg-type]


@settings(max_examples=60, deadline=None)
@given(
    st.lists(
        st.tuples(st.booleans(), st.integers(1, 40), st.sampled_from([0.0, 0.5, 1.0, 2.5])),
        min_size=1,
        max_size=200,
    )
)
def test_book_matches_a_naive_dictionary_model(updates: list[tuple[bool, int, float]]) -> None:
    """Any sequence of level updates leaves the same book as plain dictionaries."""
    snapshot = DepthSnapshot(10, ((20.0, 1.0),), ((21.0, 1.0),), None, 0, 1)
    book = OrderBook(snapshot)
    model = {True: {20.0: 1.0}, False: {21.0: 1.0}}
    previous = 9
    for i, (is_bid, tick, quantity) in enumerate(updates):
        price = float(tick)
        update = DepthUpdate(
            SYMBOL,
            previous + 1,
            previous + 2,
            previous,
            ((price, quantity),) if is_bid else (),
            () if is_bid else ((price, quantity),),
            i,
            i,
            i,
            i + 2,
        )
        previous += 2
        assert book.apply(update)
        side = model[is_bid]
        if quantity == 0.0:
            side.pop(price, None)
        else:
            side[price] = quantity
    bids, asks = book.top(50)
    assert bids == sorted(model[True].items(), reverse=True)
    assert asks == sorted(model[False].items())
    assert len(book) == len(model[True]) + len(model[False])


# --- parser -----------------------------------------------------------------------------------


def test_parser_reports_malformed_lines_with_their_number() -> None:
    with pytest.raises(CaptureFormatError, match=r"<test> line 2: not '<local_ns> <JSON>'"):
        list(parse_capture([HAND_BOOK[0], "123 {not json"], source="<test>"))
    missing = '5 {"stream": "btcusdt@trade", "data": {"e": "trade", "s": "BTCUSDT"}}'
    with pytest.raises(CaptureFormatError, match="line 1: missing or bad field"):
        list(parse_capture([missing]))


def test_parser_raises_or_skips_unknown_streams() -> None:
    unknown = '7 {"stream": "btcusdt@markPrice", "data": {"e": "markPriceUpdate"}}'
    with pytest.raises(CaptureFormatError, match=r"btcusdt@markPrice.*unknown='skip'"):
        list(parse_capture([unknown]))
    events = list(parse_capture([unknown, "", HAND_BOOK[1]], unknown="skip"))
    assert len(events) == 1 and events[0].final_update_id == 101


def test_parser_accepts_bytes_and_files(tmp_path: Path) -> None:
    path = tmp_path / "capture.gz"
    with gzip.open(path, "wt") as handle:
        handle.write("\n".join(HAND_BOOK) + "\n")
    from_file = book_frame(open_capture(path), depth=2)
    from_bytes = book_frame(parse_capture(line.encode() for line in HAND_BOOK), depth=2)
    pd.testing.assert_frame_equal(from_file, from_bytes)


# --- VPIN ---------------------------------------------------------------------------------------


def _trades(sides: list[int], quantities: list[float]) -> pd.DataFrame:
    lines = [
        trade_line(i + 1, 100.0, q, buyer_is_maker=(s < 0))
        for i, (s, q) in enumerate(zip(sides, quantities, strict=True))
    ]
    return trades_frame(parse_capture(lines))


def test_vpin_equals_a_hand_computed_value() -> None:
    # buy 1, sell 2, buy 3, sell 1, buy 1 into buckets of 2: the sell of 2 and the buy of 3
    # are split across buckets -> buys per bucket 1, 1, 2, 1.
    trades = _trades([1, -1, 1, -1, 1], [1, 2, 3, 1, 1])
    assert trades["side"].tolist() == [1, -1, 1, -1, 1]
    vpin = trade_vpin(trades, bucket_volume=2.0, window=2)
    np.testing.assert_allclose(vpin["buy_volume"], [1, 1, 2, 1])
    np.testing.assert_allclose(vpin["sell_volume"], [1, 1, 0, 1])
    np.testing.assert_allclose(vpin["imbalance"], [0, 0, 1, 0])
    np.testing.assert_allclose(vpin["vpin"], [np.nan, 0.0, 0.5, 0.5])
    filled_by = pd.to_datetime([2, 3, 3, 5], unit="ms", utc=True)
    assert list(vpin["ts"]) == list(filled_by)


def test_vpin_rejects_bad_arguments() -> None:
    trades = _trades([1], [1.0])
    with pytest.raises(ValueError, match="bucket_volume must be > 0"):
        trade_vpin(trades, bucket_volume=0.0)
    with pytest.raises(ValueError, match="window must be >= 1"):
        trade_vpin(trades, bucket_volume=1.0, window=0)


@settings(max_examples=60, deadline=None)
@given(
    st.lists(st.tuples(st.sampled_from([-1, 1]), st.floats(0.001, 50.0)), min_size=1, max_size=300),
    st.floats(0.01, 40.0),
    st.integers(1, 10),
)
def test_vpin_lies_in_unit_interval_and_conserves_volume(
    trades: list[tuple[int, float]], bucket: float, window: int
) -> None:
    frame = pd.DataFrame(
        {
            "ts": pd.to_datetime(np.arange(len(trades)), unit="ms", utc=True),
            "quantity": [q for _, q in trades],
            "side": [s for s, _ in trades],
        }
    )
    vpin = trade_vpin(frame, bucket_volume=bucket, window=window)
    values = vpin["vpin"].dropna()
    assert ((values >= 0.0) & (values <= 1.0)).all()
    np.testing.assert_allclose(vpin["buy_volume"] + vpin["sell_volume"], bucket, rtol=1e-9)
    assert (vpin["buy_volume"] >= -1e-9).all() and (vpin["sell_volume"] >= -1e-9).all()
    total_buy = sum(q for s, q in trades if s > 0)
    assert vpin["buy_volume"].sum() <= total_buy + 1e-6


# --- the real capture --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def capture(shared_data: Path) -> list:
    return list(open_capture(shared_data / "l2_ws_sample" / "usdm_btcusdt_20240808.gz"))


@pytest.mark.slow
def test_real_sample_reconstructs_without_gaps_and_never_crosses(capture: list) -> None:
    stats = ReplayStats()
    book = book_frame(capture, depth=10, stats=stats)
    assert stats.snapshots == 1 and stats.resyncs == 0
    assert stats.applied > 6_000
    assert stats.buffered_before_snapshot > 0  # the snapshot is not the first line
    assert (book["bid_px_1"] < book["ask_px_1"]).all()
    # Levels are ordered on each side.
    bids = book[[f"bid_px_{k}" for k in range(1, 11)]].to_numpy()
    asks = book[[f"ask_px_{k}" for k in range(1, 11)]].to_numpy()
    assert (np.diff(bids, axis=1) < 0).all() and (np.diff(asks, axis=1) > 0).all()


@pytest.mark.slow
def test_real_sample_best_prices_match_the_book_ticker(capture: list) -> None:
    agreement = book_ticker_agreement(book_frame(capture, depth=1), book_ticker_frame(capture))
    assert agreement.compared > 6_000
    assert agreement.exact_compared > 300
    assert agreement.rate > 0.99, agreement
    assert agreement.exact_rate > 0.99, agreement


@pytest.mark.slow
def test_real_sample_ofi_explains_mid_price_changes(capture: list) -> None:
    """Cont-Kukanov-Stoikov's finding: bucketed OFI moves the mid price in its direction."""
    book = book_frame(capture, depth=5)
    per_second = aggregate_ofi(order_flow_imbalance(book), "1s")
    mid = ((book["bid_px_1"] + book["ask_px_1"]) / 2).set_axis(book["ts"])
    mid_change = mid.resample("1s").last().ffill().diff()
    joined = pd.concat([per_second["ofi"], mid_change.rename("dmid")], axis=1).dropna()
    assert len(joined) > 300
    assert joined["ofi"].corr(joined["dmid"]) > 0.5


@pytest.mark.slow
def test_real_sample_vpin_is_a_probability(capture: list) -> None:
    trades = trades_frame(capture)
    assert len(trades) > 20_000
    assert trades["trade_id"].is_monotonic_increasing
    vpin = trade_vpin(trades, bucket_volume=10.0, window=20)
    values = vpin["vpin"].dropna()
    assert len(values) > 100
    assert ((values >= 0) & (values <= 1)).all()
    assert vpin["ts"].is_monotonic_increasing


def test_the_orderbook_command_summarises_the_real_capture(
    shared_data: Path, tmp_path: Path
) -> None:
    from typer.testing import CliRunner

    from pipelines.cli import app

    capture_path = shared_data / "l2_ws_sample" / "usdm_btcusdt_20240808.gz"
    args = ["--workdir", str(tmp_path / "w"), "features", "orderbook", str(capture_path)]
    result = CliRunner().invoke(app, [*args, "--out", str(tmp_path / "out"), "--json"])
    assert result.exit_code == 0, result.output
    payload = json.loads(result.output)
    assert payload["resyncs"] == 0 and payload["diffs_applied"] > 1000
    assert payload["book_ticker_agreement"] > 0.99
    assert 0.0 <= payload["vpin_last"] <= 1.0
    ofi = pd.read_parquet(tmp_path / "out" / "ofi.parquet")
    assert len(ofi) == payload["ofi_buckets"] and "ofi_1" in ofi.columns
    broken = tmp_path / "broken.txt"
    broken.write_text("not a capture line\n")
    bad = CliRunner().invoke(app, [*args[:-1], str(broken)])
    assert bad.exit_code == 1 and "orderbook failed" in bad.output
