"""The margin backtest: static vs dynamic margin policies on a historical replay.

:func:`run_backtest` loads the bars (or a synthetic market), builds one multiplier path per
policy (:mod:`pipelines.backtest_inputs`), replays the same seeded trader books under every
policy in one pass (:func:`liquidation.simulate.simulate`), then runs the **equal-margin
comparison**: for each dynamic policy a bisection finds the static IMF level whose mean posted
initial margin (averaged over the seeds) equals the policy's, and the losses are compared at
that level. Both comparisons are reported: same base parameters, and equal margin.

How a dynamic multiplier reaches *maintenance* is a policy choice (``ReplayConfig.
maintenance_rule``, applied to the dynamic policies only by
:func:`liquidation.simulate.maintenance_multipliers`): the engine's ``follow`` rule (existing
positions' maintenance ramps to every tightening), ``initial-only`` (a tightening caps the
leverage of new risk only) or ``stress`` (maintenance follows only from ``stress_threshold``).
The replay's bad debt is dominated by single-bar jumps out of calm markets, which a 24h
volatility forecast does not time; at equal mean margin, moving margin from calm to volatile
hours then costs bad debt (the loss is convex in the margin held when the jump comes), while
the forced de-risking of ``follow`` costs liquidations. ``follow`` is the bad-debt end and
``initial-only`` the liquidation end of that trade-off; ``stress`` sits between them.

The result is a JSON-able dict with stable keys:

* ``policies.<name>.<metric>``: mean over seeds (``bad_debt``, ``liquidations``, ``mean_im``,
  ``adl_events``, ... see :data:`liquidation.replay_metrics.METRIC_KEYS`);
  ``policies.<name>.spread.<metric>`` holds ``mean/std/min/max`` across seeds and
  ``policies.<name>.windows.<window>.<metric>`` the stress-window means;
* ``equal_margin.<name>``: ``static_level``, ``target_mean_im``, ``achieved_mean_im``,
  ``static.<metric>`` (mean over seeds at that level), ``ratio.<metric>`` (policy / static),
  ``windows.<window>.ratio.<metric>``, ``ratio_by_seed.<metric>`` (mean/std/min/max of
  the per-seed ratio, paired on the same trader book);
* ``same_base.<name>.ratio.<metric>``: policy / static at the base IMF (and
  ``ratio_by_seed``);
* ``aim``: the issue's targets and whether ``model`` met them.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from contracts.timestamps import utc_timestamp
from features.market import MarketData
from liquidation.replay_metrics import (
    STRESS_WINDOWS,
    Window,
    across_seeds,
    series_metrics,
    window_metrics,
)
from liquidation.simulate import (
    MarketPaths,
    ReplayConfig,
    ReplayInputError,
    ReplaySeries,
    Scenario,
    constant_multiplier,
    maintenance_multipliers,
    simulate,
)
from pipelines.backtest_inputs import (
    forecast_diagnostics,
    market_paths,
    oracle_sigma,
    pinned_sigma,
    policy_multipliers,
    walkforward_sigma,
)
from serving.policy import PolicyConfig

Say = Callable[[str], None]
POLICIES: tuple[str, ...] = ("static", "ewma", "model", "oracle")
"""Known policies, in report order."""
RATIO_KEYS: tuple[str, ...] = (
    "bad_debt",
    "liquidations",
    "positions_liquidated",
    "liquidated_notional",
    "insurance_drawdown",
    "adl_events",
    "mean_im",
)
"""Metrics compared as policy / static ratios."""


@dataclass(frozen=True)
class BacktestRequest:
    """Everything that defines one backtest run.

    Attributes
    ----------
    data : Path or None
        Data root laid out like ``../shared/data``; None replays a synthetic market.
    assets : tuple of str or None
        Assets (all with 1h spot bars when None).
    start, end : str or None
        Replay window ``[start, end)``, UTC; the data's range when None.
    policies : tuple of str
        Subset of :data:`POLICIES`; ``static`` is always run (it is the comparison base).
    seeds : int
        Trader books ``0 .. seeds - 1``.
    windows : tuple of Window
        Stress windows (the issue's four plus any from the command line).
    replay : ReplayConfig
        Book, rules and liquidity parameters.
    policy : PolicyConfig
        Multiplier policy shared by ``ewma``, ``model`` and ``oracle``.
    horizon : int
        Forecast horizon in bars (24).
    refit : str
        Walk-forward refit schedule (``QS``: quarterly, to keep a 6.5-year replay in minutes).
    forecasts : Path or None
        A pinned forecasts parquet (:func:`pipelines.backtest_inputs.pinned_sigma`) replayed
        instead of a fresh walk-forward; None (default) computes or reuses the cache.
    bisection_tol : float
        Relative tolerance on mean IM of the equal-margin bisection (0.5%).
    bisection_max_iter : int
        Most bisection passes (12).
    synthetic_assets, synthetic_days, synthetic_seed : int
        Synthetic market when ``data`` is None; the first ``synthetic_history_days`` are
        history for the walk-forward only.
    """

    data: Path | None = None
    assets: tuple[str, ...] | None = None
    start: str | None = None
    end: str | None = None
    policies: tuple[str, ...] = POLICIES
    seeds: int = 5
    windows: tuple[Window, ...] = STRESS_WINDOWS
    replay: ReplayConfig = field(default_factory=ReplayConfig)
    policy: PolicyConfig = field(default_factory=PolicyConfig)
    horizon: int = 24
    refit: str = "QS"
    forecasts: Path | None = None
    bisection_tol: float = 0.005
    bisection_max_iter: int = 12
    synthetic_assets: int = 3
    synthetic_days: int = 330
    synthetic_history_days: int = 240
    synthetic_seed: int = 7

    def __post_init__(self) -> None:
        unknown = sorted(set(self.policies) - set(POLICIES))
        if unknown:
            raise ReplayInputError(f"unknown policies {unknown}; choose from {list(POLICIES)}")
        if self.seeds < 1:
            raise ReplayInputError(f"seeds must be >= 1, got {self.seeds}")
        if not 0 < self.bisection_tol < 0.5:
            raise ReplayInputError("bisection_tol must be in (0, 0.5)")

    @property
    def run_policies(self) -> tuple[str, ...]:
        """Policies actually run: ``static`` first, then the requested dynamic ones."""
        return ("static", *[p for p in POLICIES if p in self.policies and p != "static"])


@dataclass
class BacktestResult:
    """The JSON-able summary plus the per-bar series kept for plots."""

    summary: dict[str, Any]
    paths: MarketPaths
    series: dict[str, list[ReplaySeries]]
    equal_margin_series: dict[str, list[ReplaySeries]]


def run_backtest(
    request: BacktestRequest, cache_dir: Path, progress: Say | None = None
) -> BacktestResult:
    """Run the whole backtest (see the module docstring).

    Parameters
    ----------
    request : BacktestRequest
    cache_dir : Path
        Where walk-forward forecasts are cached (``<workdir>/cache``).
    progress : callable, optional
        Receives short progress messages.

    Returns
    -------
    BacktestResult
    """
    say = progress or (lambda _m: None)
    started = time.perf_counter()
    market, start, end = _load(request, say)
    paths = market_paths(market, start, end)
    say(f"replay grid: {len(paths.assets)} assets x {paths.n_bars} bars")
    sigma: dict[str, np.ndarray] = {}
    info: dict[str, Any] = {}
    dynamic = [p for p in request.run_policies if p != "static"]
    if request.forecasts is not None and ("ewma" in dynamic or "model" in dynamic):
        say(f"pinned walk-forward forecasts {request.forecasts}")
        sigma, info = pinned_sigma(request.forecasts, paths, dynamic)
    elif "ewma" in dynamic or "model" in dynamic:
        sigma, info = walkforward_sigma(
            market, paths, cache_dir, request.horizon, request.refit, say, dynamic
        )
    realized = oracle_sigma(paths, request.horizon)
    if "oracle" in dynamic:
        sigma["oracle"] = realized
    info["diagnostics"] = forecast_diagnostics(sigma, realized)
    for name, diag in info["diagnostics"].items():
        say(f"{name} sigma vs realized: QLIKE {diag['qlike']:.3f}, log corr {diag['corr_log']:.2f}")
    say("multiplier paths")
    multipliers = policy_multipliers(paths, request.run_policies, sigma, request.policy)
    timing = {"inputs": time.perf_counter() - started}

    seeds = list(range(request.seeds))
    maintenance = {
        name: None
        if name == "static"
        else maintenance_multipliers(
            multipliers[name],
            request.replay.maintenance_rule,
            request.replay.stress_threshold,
        )
        for name in request.run_policies
    }
    scenarios = [
        Scenario(name, seed, multipliers[name], maintenance[name])
        for name in request.run_policies
        for seed in seeds
    ]
    say(f"replay: {len(scenarios)} scenarios")
    runs = simulate(paths, scenarios, request.replay, _bar_progress(say, "replay"))
    series = {name: [r for r in runs if r.label == name] for name in request.run_policies}
    timing["replay"] = time.perf_counter() - started - timing["inputs"]

    targets = {name: _mean_im(series[name]) for name in dynamic}
    calibration = equal_margin_levels(paths, targets, seeds, request, say)
    timing["equal_margin"] = time.perf_counter() - started - sum(timing.values())

    summary = summarise(request, paths, series, calibration, info, market.source)
    summary["timing_s"] = {k: round(v, 2) for k, v in timing.items()}
    equal_series = {name: calibration[name]["series"] for name in dynamic}
    return BacktestResult(summary, paths, series, equal_series)


def equal_margin_levels(
    paths: MarketPaths,
    targets: dict[str, float],
    seeds: Sequence[int],
    request: BacktestRequest,
    say: Say,
) -> dict[str, dict[str, Any]]:
    """Bisection (in log space) on the static level matching each target mean IM.

    All targets are bisected together: each pass replays every still-open candidate level for
    every seed in one :func:`simulate` call. Mean IM grows with the static level (higher IMF
    means more margin per unit of notional, and the leverage cap only partly offsets it), so
    the bracket ``[0.1, 10]`` holds every policy whose multiplier lies in the policy bounds.

    Returns
    -------
    dict
        Per policy: ``level``, ``target``, ``achieved``, ``iterations``, ``series`` (the
        static runs at the final level, one per seed).
    """
    lo = {name: math.log(0.1) for name in targets}
    hi = {name: math.log(10.0) for name in targets}
    best: dict[str, dict[str, Any]] = {}
    open_names = [n for n in targets if targets[n] > 0]
    for name in targets:
        if targets[name] <= 0:
            best[name] = {"level": 1.0, "target": 0.0, "achieved": 0.0, "iterations": 0}
            best[name]["series"] = []
    for iteration in range(1, request.bisection_max_iter + 1):
        if not open_names:
            break
        levels = {name: math.exp(0.5 * (lo[name] + hi[name])) for name in open_names}
        scenarios = [
            Scenario(name, seed, constant_multiplier(paths, levels[name]))
            for name in open_names
            for seed in seeds
        ]
        runs = simulate(paths, scenarios, request.replay)
        still_open = []
        for name in open_names:
            mine = [r for r in runs if r.label == name]
            achieved = _mean_im(mine)
            error = achieved / targets[name] - 1.0
            previous = best.get(name)
            if previous is None or abs(error) < abs(previous["error"]):
                best[name] = {
                    "level": levels[name],
                    "target": targets[name],
                    "achieved": achieved,
                    "error": error,
                    "iterations": iteration,
                    "series": mine,
                }
            if error < 0:
                lo[name] = math.log(levels[name])
            else:
                hi[name] = math.log(levels[name])
            if abs(error) > request.bisection_tol:
                still_open.append(name)
        say(
            f"equal margin pass {iteration}: "
            + ", ".join(f"{n} level {levels[n]:.3f}" for n in open_names)
        )
        open_names = still_open
    return best


def summarise(
    request: BacktestRequest,
    paths: MarketPaths,
    series: dict[str, list[ReplaySeries]],
    calibration: dict[str, dict[str, Any]],
    info: dict[str, Any],
    source: str,
) -> dict[str, Any]:
    """Build the JSON summary with the stable keys of the module docstring."""
    windows = request.windows
    policies = {name: _policy_block(runs, windows) for name, runs in series.items()}
    static = policies["static"]
    same_base = {
        name: {"ratio": _ratios(block, static), "ratio_by_seed": _paired_ratios(block, static)}
        for name, block in policies.items()
        if name != "static"
    }
    equal_margin: dict[str, Any] = {}
    for name, cal in calibration.items():
        static_block = _policy_block(cal["series"], windows) if cal["series"] else static
        equal_margin[name] = {
            "static_level": cal["level"],
            "static_imf": cal["level"] * request.replay.asset.base_imf,
            "target_mean_im": cal["target"],
            "achieved_mean_im": cal["achieved"],
            "iterations": cal["iterations"],
            "static": {k: static_block[k] for k in _metric_names(static_block)},
            "policy": {k: policies[name][k] for k in _metric_names(policies[name])},
            "ratio": _ratios(policies[name], static_block),
            "ratio_by_seed": _paired_ratios(policies[name], static_block),
            "windows": {
                w.name: {
                    "ratio": _ratios(
                        policies[name]["windows"][w.name], static_block["windows"][w.name]
                    )
                }
                for w in windows
            },
        }
    return {
        "data": {
            "source": source,
            "assets": list(paths.assets),
            "start": str(pd.Timestamp(paths.ts_ms[0], unit="ms", tz="UTC")),
            "end": str(pd.Timestamp(paths.ts_ms[-1] + paths.interval_ms, unit="ms", tz="UTC")),
            "n_bars": paths.n_bars,
        },
        "seeds": request.seeds,
        "forecasts": info,
        "config": {
            "replay": request.replay.describe(),
            "policy": request.policy.model_dump(),
            "horizon": request.horizon,
            "refit": request.refit,
            "windows": {w.name: [str(w.start), str(w.end)] for w in windows},
        },
        "policies": policies,
        "same_base": same_base,
        "equal_margin": equal_margin,
        "aim": aim_check(equal_margin, policies),
    }


def aim_check(equal_margin: dict[str, Any], policies: dict[str, Any]) -> dict[str, Any]:
    """The issue's targets for ``model`` at equal margin, and whether they were met.

    ``model_beats_ewma_seeds`` counts the seeds (same trader book) on which ``model`` has less
    bad debt than ``ewma``: a paired comparison, stronger than the means alone.
    """
    model = equal_margin.get("model")
    if model is None:
        return {"evaluated": False, "reason": "the model policy was not run"}
    bad = model["ratio"]["bad_debt"]
    liq = model["ratio"]["liquidations"]
    out: dict[str, Any] = {
        "evaluated": True,
        "bad_debt_ratio": bad,
        "bad_debt_target": 0.5,
        "bad_debt_met": bad is not None and bad <= 0.5,
        "liquidations_ratio": liq,
        "liquidations_target": 0.8,
        "liquidations_met": liq is not None and liq <= 0.8,
    }
    ewma = equal_margin.get("ewma")
    if ewma is not None:
        out["model_bad_debt"] = model["policy"]["bad_debt"]
        out["ewma_bad_debt"] = ewma["policy"]["bad_debt"]
        out["beats_ewma_met"] = model["policy"]["bad_debt"] < ewma["policy"]["bad_debt"]
        pairs = zip(policies["model"]["seeds"], policies["ewma"]["seeds"], strict=True)
        out["model_beats_ewma_seeds"] = sum(m["bad_debt"] < e["bad_debt"] for m, e in pairs)
    return out


def load_replay_config(path: Path | None) -> ReplayConfig:
    """Read a :class:`ReplayConfig` from the ``[replay]`` section of a TOML file.

    The layout is::

        [replay]                 # ReplayConfig scalars
        spread_bps = 2.0
        impact_bps = 10.0
        participation = 0.01
        fund_seed_usd = 50000.0
        ramp_hours = 8.0
        [replay.book]            # BookConfig fields (trader book)
        n_traders = 100000
        leverage_tail = 1.2
        [replay.asset]           # AssetConfig fields of the margin template
        base_imf = 0.05
        [replay.liquidation]     # LiquidationConfig fields (waterfall)
        penalty_rate = 0.01

    ``None`` or a file without ``[replay]`` gives the documented defaults.

    Raises
    ------
    ReplayInputError
        Naming the file and section when it cannot be read or a value is invalid.
    """
    import tomllib

    from liquidation.errors import LiquidationCoreError

    base = ReplayConfig()
    if path is None:
        return base
    try:
        section = dict(tomllib.loads(Path(path).read_text(encoding="utf-8")).get("replay", {}))
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ReplayInputError(f"cannot read replay config {path}: {exc}") from exc
    nested = {k: section.pop(k, {}) for k in ("book", "asset", "liquidation")}
    try:
        if "ramp_hours" in section:
            section["ramp_ms"] = round(float(section.pop("ramp_hours")) * 3_600_000)
        return replace(
            base,
            book=replace(base.book, **nested["book"]),
            asset=replace(base.asset, **nested["asset"]),
            liquidation=replace(base.liquidation, **nested["liquidation"]),
            **section,
        )
    except (TypeError, ValueError, LiquidationCoreError) as exc:
        raise ReplayInputError(f"invalid replay config in {path} [replay]: {exc}") from exc


# -- helpers -------------------------------------------------------------------------------------
def _load(request: BacktestRequest, say: Say) -> tuple[MarketData, pd.Timestamp, pd.Timestamp]:
    if request.data is None:
        from features.synthetic import SyntheticMarketConfig, generate_market

        say(f"synthetic market: {request.synthetic_assets} assets x {request.synthetic_days} days")
        market = generate_market(
            SyntheticMarketConfig(
                n_assets=request.synthetic_assets,
                days=request.synthetic_days,
                seed=request.synthetic_seed,
            )
        )
        if request.assets:
            market = _subset(market, request.assets)
        first = market.bars["ts"].min()
        start = (
            utc_timestamp(request.start)
            if request.start
            else first + pd.Timedelta(days=request.synthetic_history_days)
        )
    else:
        from features.sources import load_market

        say(f"loading {request.data}")
        market, _report = load_market(
            Path(request.data),
            "1h",
            list(request.assets) if request.assets else None,
            end=request.end,
        )
        start = utc_timestamp(request.start) if request.start else market.bars["ts"].min()
    last = market.bars["ts"].max() + pd.Timedelta(market.interval)
    end = min(utc_timestamp(request.end), last) if request.end else last
    if end <= start:
        raise ReplayInputError(f"replay window [{start}, {end}) is empty")
    return market, start, end


def _subset(market: MarketData, assets: Sequence[str]) -> MarketData:
    keep = set(assets)

    def pick(frame: pd.DataFrame) -> pd.DataFrame:
        if frame.empty or "asset" not in frame.columns:
            return frame
        return frame.loc[frame["asset"].astype(str).isin(keep)].reset_index(drop=True)

    missing = sorted(keep - set(market.assets))
    if missing:
        raise ReplayInputError(f"assets {missing} are not in the synthetic market {market.assets}")
    return replace(
        market, bars=pick(market.bars), funding=pick(market.funding), perp=pick(market.perp)
    )


def _policy_block(runs: list[ReplaySeries], windows: Sequence[Window]) -> dict[str, Any]:
    per_seed = [series_metrics(r, windows) for r in runs]
    overall = across_seeds([m["overall"] for m in per_seed])
    block: dict[str, Any] = {k: v["mean"] for k, v in overall.items()}
    block["spread"] = overall
    block["windows"] = {}
    for w in windows:
        stats = across_seeds([m["windows"][w.name] for m in per_seed])
        block["windows"][w.name] = {k: v["mean"] for k, v in stats.items()}
        block["windows"][w.name]["spread"] = stats
    block["seeds"] = [m["overall"] for m in per_seed]
    return block


def _metric_names(block: dict[str, Any]) -> list[str]:
    return [k for k, v in block.items() if not isinstance(v, dict | list)]


def _ratios(policy: dict[str, Any], static: dict[str, Any]) -> dict[str, float | None]:
    """Policy / static per metric; None where undefined (static zero, or an empty window)."""
    out: dict[str, float | None] = {}
    if policy.get("n_bars", 1) == 0:
        return dict.fromkeys(RATIO_KEYS)
    for key in RATIO_KEYS:
        p, s = float(policy[key]), float(static[key])
        out[key] = p / s if s > 0 else (1.0 if p == 0 else None)
    return out


def _paired_ratios(
    policy: dict[str, Any], static: dict[str, Any]
) -> dict[str, dict[str, float] | None]:
    """Policy / static per seed (same trader book), summarised across seeds.

    The spread of the paired ratio is the honest error bar of a ratio of means: the book's
    luck cancels within a seed. None where the static value is zero on some seed.
    """
    out: dict[str, dict[str, float] | None] = {}
    pairs = list(zip(policy["seeds"], static["seeds"], strict=True))
    for key in RATIO_KEYS:
        if not pairs or any(float(s[key]) <= 0 for _, s in pairs):
            out[key] = None
            continue
        values = np.array([float(p[key]) / float(s[key]) for p, s in pairs])
        out[key] = {
            "mean": float(values.mean()),
            "std": float(values.std(ddof=1)) if len(values) > 1 else 0.0,
            "min": float(values.min()),
            "max": float(values.max()),
        }
    return out


def _mean_im(runs: Sequence[ReplaySeries]) -> float:
    return float(np.mean([window_metrics(r)["mean_im"] for r in runs]))


def _bar_progress(say: Say, what: str) -> Callable[[int, int], None]:
    def report(done: int, total: int) -> None:
        if done == total or done % 5000 == 0:
            say(f"{what}: bar {done}/{total}")

    return report
