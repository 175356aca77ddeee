"""The margin backtest, wired from the libraries: static vs dynamic margin on a replay.

:func:`run_backtest` is orchestration only. It loads the bars (or a synthetic market), lays
them on the replay grid (:func:`liquidation.market_paths.market_paths`), takes out-of-sample
sigma forecasts per policy (:mod:`models.replay_forecasts`), turns them into multiplier
paths with the publishing policy (:func:`serving.policy_replay.multipliers_in_force`),
replays the same seeded trader books under every policy in one pass
(:func:`liquidation.simulate.simulate`), finds each dynamic policy's equal-margin static
level (:mod:`liquidation.equal_margin`) and summarises
(:func:`liquidation.replay_summary.summarise`, whose docstring lists the JSON keys).

How a dynamic multiplier reaches *maintenance* is a policy choice
(:attr:`liquidation.simulate.ReplayConfig.maintenance_rule`, applied to the dynamic
policies only by :func:`liquidation.simulate.maintenance_multipliers`): the engine's
``follow`` rule (existing positions' maintenance ramps to every tightening),
``initial-only`` (a tightening caps the leverage of new risk only) or ``stress``
(maintenance follows only from ``stress_threshold``).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from contracts.timestamps import utc_timestamp
from features.market import MarketData
from liquidation.equal_margin import equal_margin_levels, mean_im
from liquidation.market_paths import grid_index, market_paths, oracle_sigma
from liquidation.replay_metrics import STRESS_WINDOWS, parse_window
from liquidation.replay_report import ReplayResult
from liquidation.replay_summary import summarise
from liquidation.simulate import (
    MarketPaths,
    ReplayInputError,
    Scenario,
    constant_multiplier,
    maintenance_multipliers,
    simulate,
)
from models.replay_forecasts import (
    SigmaGrid,
    forecast_diagnostics,
    pinned_sigma,
    walkforward_sigma,
)
from models.spec import TargetSpec
from models.walkforward import EvaluationConfig
from pipelines.flows.config import BacktestConfig, DataConfig
from serving.policy import MultiplierPolicy, PolicyConfig
from serving.policy_replay import multipliers_in_force

Say = Callable[[str], None]


def run_backtest(
    data: DataConfig,
    config: BacktestConfig,
    horizon: int,
    policy: PolicyConfig,
    cache_dir: Path,
    progress: Say | None = None,
) -> ReplayResult:
    """Run the whole backtest (see the module docstring).

    Parameters
    ----------
    data
        The market: a dump root or the synthetic market's size and seed.
    config
        Policies, seeds, window, replay rules and the equal-margin bisection.
    horizon
        Forecast horizon in bars.
    policy
        The multiplier policy shared by ``ewma``, ``model`` and ``oracle``.
    cache_dir
        Where walk-forward forecasts are cached (``<workdir>/cache``).
    progress
        Receives short progress messages.

    Returns
    -------
    ReplayResult
    """
    say = progress or (lambda _m: None)
    started = time.perf_counter()
    market, start, end = backtest_market(data, config, say)
    paths = market_paths(market.bars, market.funding, market.interval, start, end, market.source)
    say(f"replay grid: {len(paths.assets)} assets x {paths.n_bars} bars")
    target = TargetSpec(horizon=horizon)
    dynamic = [p for p in config.run_policies if p != "static"]
    sigma, info = _forecast_sigma(market, paths, config, target, dynamic, cache_dir, say)
    realized = oracle_sigma(paths, horizon)
    if "oracle" in dynamic:
        sigma["oracle"] = realized
    info["diagnostics"] = forecast_diagnostics(sigma, realized)
    for name, diag in info["diagnostics"].items():
        say(f"{name} sigma vs realized: QLIKE {diag['qlike']:.3f}, log corr {diag['corr_log']:.2f}")
    say("multiplier paths")
    index = grid_index(paths)
    multipliers = {
        name: constant_multiplier(paths, 1.0)
        if name == "static"
        else multipliers_in_force(sigma[name], index, MultiplierPolicy(policy), paths.assets)
        for name in config.run_policies
    }
    timing = {"inputs": time.perf_counter() - started}

    seeds = list(range(config.seeds))
    scenarios = [
        Scenario(
            name,
            seed,
            multipliers[name],
            None
            if name == "static"
            else maintenance_multipliers(
                multipliers[name],
                config.replay.maintenance_rule,
                config.replay.stress_threshold,
            ),
        )
        for name in config.run_policies
        for seed in seeds
    ]
    say(f"replay: {len(scenarios)} scenarios")
    runs = simulate(paths, scenarios, config.replay, _bar_progress(say, "replay"))
    series = {name: [r for r in runs if r.label == name] for name in config.run_policies}
    timing["replay"] = time.perf_counter() - started - timing["inputs"]

    targets = {name: mean_im(series[name]) for name in dynamic}
    levels = equal_margin_levels(paths, targets, seeds, config.replay, config.equal_margin, say)
    timing["equal_margin"] = time.perf_counter() - started - sum(timing.values())

    windows = STRESS_WINDOWS + tuple(parse_window(w) for w in config.windows)
    summary = {
        "data": {
            "source": market.source,
            "assets": list(paths.assets),
            "start": str(pd.Timestamp(paths.ts_ms[0], unit="ms", tz="UTC")),
            "end": str(pd.Timestamp(paths.ts_ms[-1] + paths.interval_ms, unit="ms", tz="UTC")),
            "n_bars": paths.n_bars,
        },
        "seeds": config.seeds,
        "forecasts": info,
        "config": {
            "replay": config.replay.describe(),
            "policy": policy.model_dump(),
            "horizon": horizon,
            "refit": config.refit,
            "windows": {w.name: [str(w.start), str(w.end)] for w in windows},
        },
        **summarise(series, levels, windows, config.replay.asset.base_imf),
        "timing_s": {k: round(v, 2) for k, v in timing.items()},
    }
    equal_series = {name: levels[name].series for name in dynamic}
    return ReplayResult(summary, paths, series, equal_series)


def backtest_market(
    data: DataConfig, config: BacktestConfig, say: Say
) -> tuple[MarketData, pd.Timestamp, pd.Timestamp]:
    """The market and the replay window ``[start, end)``.

    A dump is read in full up to the window's end (the walk-forward needs the history
    before it). The synthetic market keeps its first ``config.history_days`` (by default
    all but its last 60 days, at least 150) as forecast history.

    Raises
    ------
    ReplayInputError
        If the window is empty.
    """
    start_text = config.start or (data.start if data.data is not None else None)
    end_text = config.end or data.end
    if data.data is None:
        from features.synthetic import SyntheticMarketConfig, generate_market

        say(f"synthetic market: {data.synthetic_assets} assets x {data.synthetic_days} days")
        market = generate_market(
            SyntheticMarketConfig(
                n_assets=data.synthetic_assets,
                days=data.synthetic_days,
                seed=data.synthetic_seed,
                interval=data.interval,
            )
        )
        if data.assets:
            market = market.select(data.assets)
        history = config.history_days or max(150, data.synthetic_days - 60)
        first = market.bars["ts"].min()
        start = utc_timestamp(start_text) if start_text else first + pd.Timedelta(days=history)
    else:
        from features.sources import load_market

        say(f"loading {data.data}")
        market, _report = load_market(Path(data.data), data.interval, data.assets, end=end_text)
        start = utc_timestamp(start_text) if start_text else market.bars["ts"].min()
    last = market.bars["ts"].max() + pd.Timedelta(market.interval)
    end = min(utc_timestamp(end_text), last) if end_text else last
    if end <= start:
        raise ReplayInputError(f"replay window [{start}, {end}) is empty")
    return market, start, end


def _forecast_sigma(
    market: MarketData,
    paths: MarketPaths,
    config: BacktestConfig,
    target: TargetSpec,
    dynamic: list[str],
    cache_dir: Path,
    say: Say,
) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    wanted = {p: m for p, m in config.forecasters.items() if p in dynamic}
    if not wanted:
        return {}, {}
    grid = SigmaGrid(paths.assets, grid_index(paths))
    models = tuple(wanted.values())
    if config.forecasts is not None:
        say(f"pinned walk-forward forecasts {config.forecasts}")
        by_model, info = pinned_sigma(config.forecasts, grid, models)
    else:
        evaluation = EvaluationConfig(refit=config.refit).with_models(models)
        by_model, info = walkforward_sigma(market, grid, cache_dir, evaluation, target, say)
    return {policy: by_model[model] for policy, model in wanted.items()}, info


def _bar_progress(say: Say, what: str) -> Callable[[int, int], None]:
    def report(done: int, total: int) -> None:
        if done == total or done % 5000 == 0:
            say(f"{what}: bar {done}/{total}")

    return report
