"""The book's calibration against Binance's real liquidations (issue #19 item 4): wiring.

Loads each asset's 1h spot bars, funding and real positioning from a data root like
``../shared/data`` (:mod:`features`), replays one static-margin scenario per asset on it
(:func:`liquidation.simulate.simulate`) and hands both to
:func:`liquidation.calibration.calibration_rows`, which fits the level scale and the range
baseline's line on the fit period only and reports both periods. Used by
``dynamargin backtest --calibration`` and ``scripts/fit_book.py`` / ``calibrate_book.py``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import pandas as pd

from features.positioning import POSITIONING_BAR, read_positioning
from features.sources import load_market
from liquidation.calibration import (
    FIT_PERIOD,
    TEST_PERIOD,
    calibration_rows,
    daily_liquidations,
    daily_log_range,
    daily_replay,
)
from liquidation.market_paths import market_paths
from liquidation.simulate import ReplayConfig, Scenario, constant_multiplier, simulate

CALIBRATION_ASSETS: tuple[str, ...] = ("BTCUSDT", "ETHUSDT", "SOLUSDT", "XRPUSDT")
"""The assets with real liquidations in ``positioning/``."""
#: 1h spot bars before 2022 exist for BTC only: the other assets start here.
OTHERS_START = pd.Timestamp("2022-01-01", tz="UTC")


@dataclass(frozen=True)
class AssetData:
    """One asset's real inputs, by UTC day open (``oi_usd`` is empty without open interest)."""

    asset: str
    bars: pd.DataFrame
    funding: pd.DataFrame
    liquidations: pd.DataFrame
    log_range: pd.Series
    down_day: pd.Series
    oi_usd: pd.Series


@dataclass
class CalibrationResult:
    """Rows of the table (:func:`liquidation.calibration.calibration_rows`) and, per asset,
    the real and simulated daily frames for the plot."""

    rows: list[dict[str, object]]
    real: dict[str, pd.DataFrame] = field(default_factory=dict)
    simulated: dict[str, pd.DataFrame] = field(default_factory=dict)
    config: dict[str, object] = field(default_factory=dict)


def asset_start(asset: str) -> pd.Timestamp:
    """First replayed bar: the fit period's start for BTC, 2022-01-01 for the others."""
    return FIT_PERIOD[0] if asset == "BTCUSDT" else max(FIT_PERIOD[0], OTHERS_START)


def load_asset(data: Path, asset: str, end: pd.Timestamp = TEST_PERIOD[1]) -> AssetData:
    """Read ``asset``'s bars ``[asset_start, end)`` and the positioning days before ``end``.

    A daily positioning row is known at its day's close; it is kept when its day opens
    before ``end`` (so ``end = FIT_PERIOD[1]`` hands out nothing of the test period).
    """
    start = asset_start(asset)
    market, _ = load_market(data, "1h", [asset], start, end)
    if market.bars.empty:
        raise ValueError(f"no 1h spot bars of {asset} in {data} from {start.date()}")
    positioning = read_positioning(data, [asset], end=end + POSITIONING_BAR)
    liq_rows = positioning.dropna(subset=["long_liquidations_usd", "short_liquidations_usd"])
    liquidations = daily_liquidations(liq_rows, day_open=False)
    liquidations = liquidations.loc[liquidations.index >= start]
    if liquidations.empty:
        raise ValueError(f"no real liquidations of {asset} under {data}/positioning")
    bars = market.bars.sort_values("ts")
    day = pd.to_datetime(bars["ts"], utc=True).dt.floor("D")
    grouped = bars.groupby(day)
    down_day = (grouped["close"].last() < grouped["open"].first()).rename("down")
    close_daily = grouped["close"].last()
    oi_rows = positioning.dropna(subset=["open_interest"])
    coins = pd.Series(
        oi_rows["open_interest"].to_numpy(dtype=float),
        index=pd.DatetimeIndex(pd.to_datetime(oi_rows["ts"], utc=True) - POSITIONING_BAR),
    )
    # Open interest at the day's end in coins, valued at the day's last close.
    oi_usd = (coins * close_daily.reindex(coins.index)).dropna()
    return AssetData(
        asset=asset,
        bars=market.bars,
        funding=market.funding,
        liquidations=liquidations,
        log_range=daily_log_range(bars),
        down_day=down_day,
        oi_usd=oi_usd.loc[oi_usd > 0],
    )


def simulate_asset(
    asset: AssetData, replay: ReplayConfig, end: pd.Timestamp = TEST_PERIOD[1], seed: int = 0
) -> pd.DataFrame:
    """One static-margin replay of ``asset`` from its start to ``end``, by UTC day."""
    start = asset_start(asset.asset)
    paths = market_paths(asset.bars, asset.funding, "1h", start, end)
    scenario = Scenario("static", seed, constant_multiplier(paths, 1.0))
    [run] = simulate(paths, [scenario], replay)
    long_ = run.liquidated_long
    if long_ is None:
        raise ValueError("the replay did not record liquidated_long")
    return daily_replay(
        run.ts_ms, run.liquidated_notional, long_, run.open_notional, paths.close[0]
    )


def run_calibration(
    data: Path,
    replay: ReplayConfig,
    assets: Sequence[str] = CALIBRATION_ASSETS,
    seed: int = 0,
    say: Callable[[str], None] = lambda _: None,
) -> CalibrationResult:
    """Replay each asset and build the calibration table (see the module docstring)."""
    unknown = sorted(set(assets) - set(CALIBRATION_ASSETS))
    if unknown:
        raise ValueError(f"no real liquidations for {unknown}; choose from {CALIBRATION_ASSETS}")
    result = CalibrationResult(
        rows=[],
        config={
            "traders": replay.book.n_traders,
            "book_model": replay.book_model,
            "path": replay.path,
            "impact": replay.impact,
            "seed": seed,
            "fit_period": [str(FIT_PERIOD[0].date()), str(FIT_PERIOD[1].date())],
            "test_period": [str(TEST_PERIOD[0].date()), str(TEST_PERIOD[1].date())],
        },
    )
    for name in assets:
        asset = load_asset(data, name)
        say(f"calibration: replaying {name} ({len(asset.bars)} bars)")
        sim = simulate_asset(asset, replay, seed=seed)
        result.rows += calibration_rows(
            name, asset.liquidations, sim, asset.log_range, asset.down_day, asset.oi_usd
        )
        result.real[name] = asset.liquidations
        result.simulated[name] = sim
    return result


def with_traders(replay: ReplayConfig, traders: int) -> ReplayConfig:
    """``replay`` with ``traders`` positions in its book."""
    return replace(replay, book=replace(replay.book, n_traders=int(traders)))


__all__ = [
    "CALIBRATION_ASSETS",
    "AssetData",
    "CalibrationResult",
    "asset_start",
    "load_asset",
    "run_calibration",
    "simulate_asset",
    "with_traders",
]
