"""Benchmark: one price tick's health scan of 1,000,000 positions, perpetuals and options.

Book: 100,000 accounts x 10 positions = 1,000,000 positions on 10 underlyings: 3 perpetuals
and 7 options per account (800 listed series: 4 expiries x 10 strikes x call/put per
underlying), random sizes and sides, collateral a lognormal multiple (median 2) of each
account's exact maintenance. Margin inputs
come from a real :class:`~liquidation.engine.Engine` with one RiskSnapshot per asset (the
same as ``bench_liquidation``). Each tick moves every price by ~1% and then:

* reprices every series now and in every scenario of the joint price x vol grid
  (9 price levels x 20 distinct joint directions x 3 vol levels = 540 scenarios);
* scans the book: the grouped bound for every account (one cached sparse product of the
  book with each instrument's worst loss per (vol level, direction) group), then the exact
  grid for the accounts the bound does not clear.

Baseline in the same run: today's perpetual-only ``PositionBook.scan`` of 1,000,000
perpetual positions (100,000 accounts x 10 assets) at the same ticks. Also measured: the
exact grid for *every* account (what the bound saves), and the engine's own filter
(:func:`liquidation.options.health.engine_candidates`, what ``Engine.liquidatable`` runs on
buckets holding options): the same bound on the engine's position book and its cached option
rows.
Run: ``.venv/bin/python benchmarks/bench_options.py`` (or ``make bench``).
"""

from __future__ import annotations

import statistics
import sys
import time
from dataclasses import replace

import numpy as np
from bench_liquidation import N_ACCOUNTS, N_ASSETS, SEED, build_book, build_engine

from liquidation.accounts import Bucket
from liquidation.money import MICRO, QTY_SCALE
from liquidation.options.config import OptionsConfig, OptionsMarginConfig
from liquidation.options.engine_book import OptionsState, OptionsView
from liquidation.options.health import (
    EngineOptionBook,
    OptionRows,
    OptionsBook,
    engine_candidates,
)
from liquidation.options.ledger import options_market
from liquidation.options.risk import build_grid, series_risk
from liquidation.options.series import OptionSeries, SeriesArrays
from liquidation.options.surface import VolSurface
from liquidation.scan import PositionBook

TICKS = 9
PERPS, OPTIONS = 3, 7
DAY_MS = 24 * 3_600_000


def build_series(prices: np.ndarray, ts_ms: int) -> SeriesArrays:
    """4 expiries x 10 strikes (70%..130% of spot) x call/put on every underlying."""
    asset, strike, expiry, call = [], [], [], []
    for a, p in enumerate(prices):
        for days in (7, 30, 90, 180):
            for k in np.linspace(0.7, 1.3, 10):
                for is_call in (True, False):
                    asset.append(a)
                    strike.append(round(p * k, 2))
                    expiry.append(ts_ms + days * DAY_MS)
                    call.append(is_call)
    return SeriesArrays(
        np.array(asset), np.array(strike), np.array(expiry, dtype=np.int64), np.array(call)
    )


def build_options_book(
    rng: np.random.Generator, prices: np.ndarray, series: SeriesArrays, values: np.ndarray
) -> OptionsBook:
    n = N_ACCOUNTS
    perp_account = np.repeat(np.arange(n), PERPS)
    perp_asset = np.concatenate([rng.choice(N_ASSETS, PERPS, replace=False) for _ in range(n)])
    perp_notional = rng.lognormal(8.0, 1.5, perp_account.size) * rng.choice(
        [-1, 1], perp_account.size
    )
    perp_qty = perp_notional / prices[perp_asset]
    opt_account = np.repeat(np.arange(n), OPTIONS)
    opt_series = rng.integers(0, len(series), opt_account.size)
    underlying = prices[series.asset[opt_series]]
    opt_qty = (
        rng.lognormal(8.0, 1.5, opt_account.size)
        / underlying
        * rng.choice([-1, 1], opt_account.size)
    )
    # Cash for now: minus the perpetuals' cost at entry, minus premiums paid; collateral
    # is set below from each account's exact requirement.
    cash = -np.bincount(perp_account, perp_notional, n) - np.bincount(
        opt_account, opt_qty * values[opt_series], n
    )
    return OptionsBook(
        n, cash, perp_account, perp_asset, perp_qty, opt_account, opt_series, opt_qty
    )


def main() -> int:
    rng = np.random.default_rng(SEED)
    engine = build_engine()
    ts = 3 * 3_600_000
    margin = engine.margin_arrays(ts)
    market = options_market(engine, ts)
    config = OptionsMarginConfig()
    series = build_series(market.price, ts)
    surfaces = [
        VolSurface(atm_vol=float(v), skew=-0.1, curvature=0.05) for v in market.forecast_vol
    ]

    def vols_at(m) -> np.ndarray:
        years = series.years(m.ts_ms)
        out = np.empty(len(series))
        for a, surface in enumerate(surfaces):
            rows = series.asset == a
            out[rows] = surface.vol(m.price[a], series.strike[rows], years[rows])
        return out

    grid = build_grid(market, config)
    risk0 = series_risk(series, vols_at(market), market, grid, config)
    book = build_options_book(rng, market.price, series, risk0.value)
    # Collateral: each account holds a lognormal multiple of its exact maintenance (median
    # 2x, ~8% below 1.2x), as a venue's book spreads around its margin requirement.
    required = book.exact_maintenance(np.arange(N_ACCOUNTS), market, risk0, grid)
    equity0, _, minimum0 = book.bounds(market, risk0, grid)
    health = rng.lognormal(np.log(2.0), 0.35, N_ACCOUNTS)
    book.cash += health * np.maximum(required, minimum0) - equity0
    perp_book = build_book(np.random.default_rng(SEED), margin.price)
    moves = [rng.normal(1.0, 0.01, N_ASSETS) for _ in range(TICKS)]
    print(
        f"mixed book: {book.n_rows:,} positions ({book.perp_qty.size:,} perpetual, "
        f"{book.opt_qty.size:,} option) in {N_ACCOUNTS:,} accounts, {len(series)} series, "
        f"{grid.size} scenarios"
    )
    print(
        f"perp-only book: {perp_book.n_rows:,} positions in {len(perp_book.bucket_ids):,} accounts"
    )

    perp_book.scan(margin, detail=False)  # builds the exposure matrix once
    perp_ms = _median_ms(
        [
            lambda m=m: perp_book.scan(margin.with_prices(margin.price * m), detail=False)
            for m in moves
        ]
    )

    reprice_times, scan_times, checked, flagged = [], [], [], []
    for m in moves:
        started = time.perf_counter()
        tick = replace(market, price=market.price * m)
        tick_grid = build_grid(tick, config)
        risk = series_risk(series, vols_at(tick), tick, tick_grid, config)
        middle = time.perf_counter()
        result = book.scan(tick, risk, tick_grid, config)
        done = time.perf_counter()
        reprice_times.append(middle - started)
        scan_times.append(done - middle)
        checked.append(result.exact_checked)
        flagged.append(len(result.liquidatable))
    bound_times = []
    for _ in range(TICKS):
        started = time.perf_counter()
        book.bounds(tick, risk, tick_grid)
        bound_times.append(time.perf_counter() - started)
    bound_ms = statistics.median(bound_times) * 1e3
    reprice_ms = statistics.median(reprice_times) * 1e3
    scan_ms = statistics.median(scan_times) * 1e3
    total_ms = statistics.median(np.add(reprice_times, scan_times)) * 1e3

    everyone = np.arange(N_ACCOUNTS)
    started = time.perf_counter()
    full = book.exact_maintenance(everyone, tick, risk, tick_grid)
    full_ms = (time.perf_counter() - started) * 1e3
    equity = result.equity
    minimum = np.bincount(
        book.opt_account,
        np.maximum(-book.opt_qty, 0) * risk.short_minimum[book.opt_series],
        N_ACCOUNTS,
    )
    brute = np.flatnonzero(equity < np.maximum(full, minimum))
    missed = len(set(brute.tolist()) - set(result.liquidatable.tolist()))

    print(f"perp-only PositionBook.scan      median {perp_ms:9.2f} ms over {TICKS} ticks")
    print(f"options: reprice series x grid    median {reprice_ms:9.2f} ms")
    print(
        f"options: scan (bound + exact)     median {scan_ms:9.2f} ms "
        f"(exact grid on {statistics.median(checked):,.0f} of {N_ACCOUNTS:,} accounts)"
    )
    print(f"  of which the grouped bound of every account: median {bound_ms:.2f} ms")
    print(
        f"options: whole tick               median {total_ms:9.2f} ms "
        f"= {total_ms / perp_ms:.1f}x the perp-only scan"
    )
    print(
        f"exact grid for every account (no bound): {full_ms:.0f} ms "
        f"({full_ms / max(scan_ms, 1e-9):.1f}x the bounded scan)"
    )
    print(
        f"liquidatable at the last tick: {flagged[-1]:,}; the bounded scan misses {missed} of "
        f"the {len(brute):,} the full grid flags"
    )
    engine_ms, rebuild_ms, found = _engine_filter(
        engine.config.symbols, book, series, surfaces, tick
    )
    missed_by_engine = len(set(brute.tolist()) - found)
    print(
        f"engine filter per tick (engine_candidates): {engine_ms:.0f} ms, {len(found):,} "
        f"candidates, misses {missed_by_engine} ({engine_ms / perp_ms:.1f}x the perp-only "
        f"scan); after a position change, rebuilding its rows from bucket objects and its "
        f"first tick: {rebuild_ms:.0f} ms"
    )
    return 0 if missed == 0 and missed_by_engine == 0 else 1


def _engine_filter(symbols, book, series, surfaces, tick) -> tuple[float, float, set[int]]:
    """Time the engine's filter on the same book: its perpetual rows and balances in a
    :class:`PositionBook` (as the fold keeps them), its option rows and scan book as the
    engine caches them (rebuilt only when a position changes; timed too), per price tick."""
    listed = [
        OptionSeries(symbols[a], int(e), round(k * MICRO), bool(c))
        for a, k, e, c in zip(
            series.asset, series.strike, series.expiry_ms, series.is_call, strict=True
        )
    ]
    state = OptionsState(
        series={s.name: s for s in listed},
        surfaces={symbols[a]: v for a, v in enumerate(surfaces)},
    )
    if len(state.series) != len(listed):
        raise RuntimeError("series names collide; the engine filter would not see the book")
    ids = [f"a{i}" for i in range(book.n_accounts)]
    positions = PositionBook.from_arrays(
        len(symbols), ids, book.cash, book.perp_account, book.perp_asset, book.perp_qty,
        np.zeros(book.perp_qty.size),
    )  # fmt: skip
    view = OptionsView(state, tick, symbols, OptionsConfig())
    index = view.priced.index
    buckets = [Bucket(b, b, None) for b in ids]
    for i, k, q in zip(book.opt_account, book.opt_series, book.opt_qty, strict=True):
        held = buckets[i].options
        held[listed[k].name] = held.get(listed[k].name, 0) + round(q * QTY_SCALE)
    started = time.perf_counter()
    rows = OptionRows.of(buckets, positions.bucket_index, index)
    rebuild = (time.perf_counter() - started) * 1e3
    started = time.perf_counter()
    built = EngineOptionBook.build(rows, positions)
    engine_candidates(view, rows, built, positions)  # the first tick builds the side matrix
    first = (time.perf_counter() - started) * 1e3
    times = []
    for _ in range(TICKS):  # later ticks: only the balances are read again
        started = time.perf_counter()
        found = engine_candidates(view, rows, built, positions)
        times.append(time.perf_counter() - started)
    return statistics.median(times) * 1e3, rebuild + first, {int(b[1:]) for b in found}


def _median_ms(runs) -> float:
    times = []
    for run in runs:
        started = time.perf_counter()
        run()
        times.append(time.perf_counter() - started)
    return statistics.median(times) * 1e3


if __name__ == "__main__":
    sys.exit(main())
