"""The margin backtest, wired from the libraries: static vs dynamic margin on a replay.

:func:`run_backtest` is orchestration only. It loads the bars (or a synthetic market), lays
them on the replay grid (:func:`liquidation.market_paths.market_paths`), takes out-of-sample
sigma forecasts per policy (:mod:`models.replay_forecasts`) from a warm-up before the replay
start, turns them into the RiskSnapshots the publisher would have published
(:func:`serving.policy_replay.policy_snapshots`), reads every snapshot stream as the engine
reads it (:func:`liquidation.snapshot_stream.multipliers_from_snapshots`), replays the same
seeded trader books under every policy, one pass per seed, here or on Dask
(:mod:`liquidation.runners`, :attr:`BacktestConfig.runner`; the same results either way),
finds each dynamic policy's equal-margin static level and the oracle's scale at its margin
(:mod:`liquidation.equal_margin`), scores the oracle gain captured
(:func:`liquidation.replay_metrics.oracle_gain_captured`) and summarises
(:func:`liquidation.replay_summary.summarise`, whose docstring lists the JSON keys).

``snapshots`` replays a publication instead: the history a running ``dynamargin serve``
(``http://...``) or a publication store (a path or ``sqlite:///`` URL) holds becomes the
policy ``served``.

How a multiplier reaches *maintenance* is the run's rule
(:attr:`liquidation.simulate.ReplayConfig.maintenance_rule`), applied to every policy,
static levels included, by :func:`liquidation.equal_margin.margin_scenario`: the engine's
``follow`` rule (existing positions' maintenance ramps to every tightening),
``initial-only`` (a tightening caps the leverage of new risk only) or ``stress``
(maintenance follows only from ``stress_threshold``).
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from contracts.files import atomic_write
from contracts.forecast import ProvenanceInfo
from contracts.timestamps import utc_timestamp
from features.market import MarketData
from liquidation.equal_margin import (
    BRACKET,
    FRONTIER_SCALES,
    SCALE_BRACKET,
    FrontierPoint,
    margin_scenario,
    match_levels,
    mean_im,
    scaled_family,
    static_family,
)
from liquidation.market_paths import grid_index, market_paths, oracle_sigma
from liquidation.procyclicality import replay_procyclicality
from liquidation.replay_metrics import (
    STRESS_WINDOWS,
    first_jump_sets,
    oracle_gain_captured,
    parse_window,
)
from liquidation.replay_report import ReplayResult
from liquidation.replay_summary import summarise
from liquidation.runners import DaskRunner, LocalRunner, ReplayRunner
from liquidation.simulate import (
    MarketPaths,
    ReplayConfig,
    ReplayInputError,
    ReplaySeries,
    Scenario,
    constant_multiplier,
)
from liquidation.snapshot_stream import multipliers_from_snapshots
from models.replay_forecasts import (
    SigmaGrid,
    forecast_diagnostics,
    pinned_sigma,
    walkforward_sigma,
)
from models.spec import TargetSpec
from models.walkforward import EvaluationConfig
from pipelines.flows.config import BacktestConfig, DataConfig
from pipelines.policy_signals import policy_signals
from pipelines.runners import dask_client
from serving.mechanisms import policy_variant
from serving.policy import MultiplierPolicy, PolicyConfig
from serving.policy_replay import policy_snapshots
from serving.risk_metrics import liquidity_metrics

Say = Callable[[str], None]

TRAINING_RESERVE = pd.Timedelta(days=240)
"""History kept before the walk-forward's test period (its folds' warm-up and first fit)."""


SERVED = "served"
"""The policy name of a replayed publication (``--snapshots``)."""


def run_backtest(
    data: DataConfig,
    config: BacktestConfig,
    horizon: int,
    policy: PolicyConfig,
    cache_dir: Path,
    progress: Say | None = None,
    snapshots: str | None = None,
    frontier_scales: Sequence[float] = FRONTIER_SCALES,
) -> ReplayResult:
    """Run the whole backtest (see the module docstring).

    Parameters
    ----------
    data
        The market: a dump root or the synthetic market's size and seed.
    config
        Policies, seeds, window, replay rules, the equal-margin bisection and the runner
        (:attr:`BacktestConfig.runner`: every replay's seeds run locally or on Dask).
    horizon
        Forecast horizon in bars.
    policy
        The multiplier policy shared by ``ewma``, ``model`` and ``oracle``.
    cache_dir
        Where walk-forward forecasts are cached (``<workdir>/cache``).
    progress
        Receives short progress messages.
    snapshots
        URL of a running ``dynamargin serve`` or a publication store: its history is
        replayed as the policy ``served``.
    frontier_scales
        Scales of every dynamic policy replayed for the risk-capital frontier.

    Returns
    -------
    ReplayResult
    """
    with replay_runner(config, progress) as runner:
        return _run_backtest(
            data, config, horizon, policy, cache_dir, runner, progress, snapshots,
            frontier_scales,
        )  # fmt: skip


@contextmanager
def replay_runner(config: BacktestConfig, progress: Say | None = None) -> Iterator[ReplayRunner]:
    """The runner of :attr:`BacktestConfig.runner` (a Dask client for the run's duration)."""
    if config.runner == "local":
        yield LocalRunner()
        return
    say = progress or (lambda _m: None)
    with dask_client(config.dask_address) as client:
        say(f"replay on Dask: {config.dask_address or 'temporary LocalCluster'}")
        yield DaskRunner(client)


def _run_backtest(
    data: DataConfig,
    config: BacktestConfig,
    horizon: int,
    policy: PolicyConfig,
    cache_dir: Path,
    runner: ReplayRunner,
    progress: Say | None,
    snapshots: str | None,
    frontier_scales: Sequence[float],
) -> ReplayResult:
    say = progress or (lambda _m: None)
    started = time.perf_counter()
    market, start, end = backtest_market(data, config, say)
    paths = market_paths(market.bars, market.funding, market.interval, start, end, market.source)
    say(f"replay grid: {len(paths.assets)} assets x {paths.n_bars} bars")
    warm = warm_grid(paths, pd.Timedelta(hours=policy.sigma_ref_window_hours))
    target = TargetSpec(horizon=horizon)
    dynamic = [p for p in config.run_policies if p != "static"]
    forecast_from = walkforward_start(market, start, warm)
    sigma, info = _forecast_sigma(
        market, warm, forecast_from, config, target, dynamic, cache_dir, say
    )
    if "oracle" in dynamic:
        sigma["oracle"] = _warm_oracle_sigma(market, warm, start, end, horizon)
    realized = oracle_sigma(paths, horizon)
    info["diagnostics"] = forecast_diagnostics(
        {name: values[:, -paths.n_bars :] for name, values in sigma.items()}, realized
    )
    for name, diag in info["diagnostics"].items():
        say(f"{name} sigma vs realized: QLIKE {diag['qlike']:.3f}, log corr {diag['corr_log']:.2f}")

    say("snapshot streams")
    engine = config.replay.engine_config(paths.assets)
    liquidity = _liquidity(market, start)
    streams: dict[str, Any] = {}
    multipliers = {"static": constant_multiplier(paths, 1.0)}
    signals = policy_signals(market, paths.assets, warm.index, policy, say)
    for name in dynamic:
        multipliers[name], streams[name] = _stream_multipliers(
            name, sigma[name], warm, policy, liquidity, horizon, paths, config, cache_dir, say,
            signals,
        )  # fmt: skip
    if snapshots is not None:
        say(f"served snapshots from {snapshots}")
        served = list(read_snapshots(snapshots, paths.assets, warm.index[0], end))
        multipliers[SERVED], report = multipliers_from_snapshots(
            served, paths.assets, paths.ts_ms, config.replay.asset, engine.ramp_ms,
            engine.max_ramp_classes,
        )  # fmt: skip
        streams[SERVED] = {"source": snapshots, "read": len(served), **report.to_dict()}
        dynamic.append(SERVED)
    names = ["static", *dynamic]
    timing = {"inputs": time.perf_counter() - started}

    seeds = list(range(config.seeds))
    replay = config.replay
    scenarios = [margin_scenario(n, seed, multipliers[n], replay) for n in names for seed in seeds]
    say(f"replay: {len(scenarios)} scenarios")
    runs = simulate_runs(paths, scenarios, replay, say, runner)
    series = {name: [r for r in runs if r.label == name] for name in names}
    timing["replay"] = time.perf_counter() - started - timing["inputs"]

    targets = {name: mean_im(series[name]) for name in dynamic}
    family = static_family(paths)
    levels, static_tried = match_levels(
        {name: (family, BRACKET) for name in dynamic}, targets, seeds, paths, replay,
        config.equal_margin, say, runner=runner,
    )  # fmt: skip
    timing["equal_margin"] = time.perf_counter() - started - sum(timing.values())

    frontier = [FrontierPoint.of("static", lvl, r) for _, lvl, r in static_tried]
    frontier.append(FrontierPoint.of("static", 1.0, series["static"]))
    oracle_levels, gains = {}, {}
    if "oracle" in multipliers:
        others = {n: targets[n] for n in dynamic if n != "oracle"}
        scaled = scaled_family(multipliers["oracle"])
        oracle_levels, oracle_tried = match_levels(
            {n: (scaled, SCALE_BRACKET) for n in others}, others, seeds, paths, replay,
            config.equal_margin, say, label="oracle at policy margin", runner=runner,
        )  # fmt: skip
        frontier += [FrontierPoint.of("oracle", lvl, r) for _, lvl, r in oracle_tried]
        jumps = first_jump_sets(series["static"], paths.interval_ms)  # one set per seed
        for name in dynamic:
            oracle_runs = series["oracle"] if name == "oracle" else oracle_levels[name].series
            gains[name] = oracle_gain_captured(
                series[name], levels[name].series, oracle_runs, jumps
            )
    frontier += _frontier(paths, multipliers, dynamic, frontier_scales, seeds, config, say, runner)
    frontier += [FrontierPoint.of(name, 1.0, series[name]) for name in dynamic]
    timing["oracle_and_frontier"] = time.perf_counter() - started - sum(timing.values())

    windows = STRESS_WINDOWS + tuple(parse_window(w) for w in config.windows)
    # Mean multiplier, time at the cap and the procyclicality figures beside every result.
    margin_diagnostics = replay_procyclicality(
        series, {n: levels[n].series for n in dynamic}, multipliers, paths.close,
        paths.interval_ms, policy.floor, policy.cap,
    )  # fmt: skip
    summary = {
        "data": {
            "source": market.source,
            "assets": list(paths.assets),
            "start": str(pd.Timestamp(paths.ts_ms[0], unit="ms", tz="UTC")),
            "end": str(pd.Timestamp(paths.ts_ms[-1] + paths.interval_ms, unit="ms", tz="UTC")),
            "n_bars": paths.n_bars,
            "warmup_start": str(warm.index[0]),
        },
        "seeds": config.seeds,
        "forecasts": info,
        "snapshot_streams": streams,
        "config": {
            "replay": config.replay.describe(),
            "policy": policy.model_dump(),
            "policy_variant": policy_variant(policy),
            "horizon": horizon,
            "refit": config.refit,
            "windows": {w.name: [str(w.start), str(w.end)] for w in windows},
            "frontier_scales": list(frontier_scales),
        },
        **summarise(
            series,
            levels,
            windows,
            config.replay.asset.base_imf,
            oracle_levels=oracle_levels,
            gains=gains,
            frontier=frontier,
        ),
        "margin_diagnostics": margin_diagnostics,
        "timing_s": {k: round(v, 2) for k, v in timing.items()},
    }
    equal_series = {name: levels[name].series for name in dynamic}
    return ReplayResult(summary, paths, series, equal_series)


def warm_grid(paths: MarketPaths, warmup: pd.Timedelta) -> SigmaGrid:
    """The replay's bar grid extended ``warmup`` back: the policy's reference warms up there.

    The stream of snapshots starts at the grid's first bar, so on the replay's first bar the
    trailing reference, the rate limits and the relaxation delay are in the state a
    publisher running since then would have.
    """
    index = grid_index(paths)
    step = pd.Timedelta(milliseconds=paths.interval_ms)
    bars = int(np.ceil(warmup / step))
    before = pd.date_range(end=index[0] - step, periods=bars, freq=step) if bars else index[:0]
    return SigmaGrid(paths.assets, before.append(index))


def walkforward_start(market: MarketData, start: pd.Timestamp, warm: SigmaGrid) -> pd.Timestamp:
    """Where the walk-forward's test period starts: as early as the warm grid needs, but
    leaving it :data:`TRAINING_RESERVE` of history before its first fold's warm-up.

    The forecasts of the month before the replay start always exist (the walk-forward's
    test period starts at least a month before it), so the policy's reference is warm on
    the first bar (168 forecasts suffice); where the history allows, they cover the whole
    90-day window as a publisher running since then would have had.
    """
    latest = start - pd.DateOffset(months=1)
    trained = min(latest, market.bars["ts"].min() + TRAINING_RESERVE)
    return max(warm.index[0] - pd.DateOffset(months=1), trained)


def read_snapshots(
    source: str, assets: Sequence[str], start: pd.Timestamp, end: pd.Timestamp
) -> Iterator[dict[str, Any]]:
    """Every snapshot of ``assets`` published in ``[start, end]`` by a server or a store.

    Parameters
    ----------
    source
        ``http(s)://host:port`` of a running ``dynamargin serve`` (its paginated
        ``/v1/risk/{asset}/history``), or a publication store: a ``sqlite:///`` URL or a path.
    assets
        Assets to read (an asset the source does not hold yields nothing).
    start, end
        Publication-time bounds.

    Raises
    ------
    ReplayInputError
        If the server answers with an error or the store cannot be opened.
    """
    if source.startswith(("http://", "https://")):
        yield from _served_history(source.rstrip("/"), assets, start, end)
        return
    from serving.errors import ServingError
    from serving.store import PublicationStore

    url = source if "://" in source else f"sqlite:///{Path(source).resolve()}"
    try:
        store = PublicationStore(url, create=False)
    except (ServingError, OSError) as exc:
        raise ReplayInputError(f"cannot open the publication store {source}: {exc}") from exc
    with store:
        held = set(store.assets())
        for asset in assets:
            if asset in held:
                for stored in store.iter_history(asset, start.to_pydatetime(), end.to_pydatetime()):
                    yield dict(stored.snapshot)


def simulate_runs(
    paths: MarketPaths,
    scenarios: Sequence[Scenario],
    replay: ReplayConfig,
    say: Say,
    runner: ReplayRunner | None = None,
) -> list[ReplaySeries]:
    """The scenarios replayed by ``runner`` (local by default) with bar progress messages."""
    return (runner or LocalRunner()).simulate(
        paths, scenarios, replay, _bar_progress(say, "replay")
    )


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
    grid: SigmaGrid,
    test_start: pd.Timestamp,
    config: BacktestConfig,
    target: TargetSpec,
    dynamic: list[str],
    cache_dir: Path,
    say: Say,
) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    wanted = {p: m for p, m in config.forecasters.items() if p in dynamic}
    if not wanted:
        return {}, {}
    models = tuple(wanted.values())
    if config.forecasts is not None:
        say(f"pinned walk-forward forecasts {config.forecasts}")
        by_model, info = pinned_sigma(config.forecasts, grid, models)
    else:
        evaluation = EvaluationConfig(refit=config.refit).with_models(models)
        by_model, info = walkforward_sigma(
            market, grid, cache_dir, evaluation, target, say, test_start=test_start
        )
    return {policy: by_model[model] for policy, model in wanted.items()}, info


def _warm_oracle_sigma(
    market: MarketData, grid: SigmaGrid, start: pd.Timestamp, end: pd.Timestamp, horizon: int
) -> np.ndarray:
    """The oracle's realized sigma on the warm grid (NaN before every asset's first bar)."""
    bars = market.bars.loc[market.bars["asset"].astype(str).isin(grid.assets)]
    first = bars.groupby("asset", observed=True)["ts"].min().max()
    begin = max(grid.index[0], first)
    paths = market_paths(market.bars, market.funding, market.interval, begin, end, market.source)
    realized = pd.DataFrame(oracle_sigma(paths, horizon).T, index=grid_index(paths))
    return realized.reindex(grid.index).to_numpy().T.copy()


def _liquidity(market: MarketData, start: pd.Timestamp) -> dict[str, dict[str, float]]:
    """Liquidity block of the replay's snapshots (descriptive: the replay does not read it).

    Point in time at the replay start where two days of bars exist before it; otherwise
    (an asset listed at the start) on its first two days.
    """
    first = market.bars.groupby("asset", observed=True)["ts"].min().max()
    as_of = max(start, first + pd.Timedelta(days=2))
    table = liquidity_metrics(market.bars, as_of=as_of)
    return {str(a): {k: float(v) for k, v in row.items()} for a, row in table.iterrows()}


def _stream_multipliers(
    name: str,
    sigma: np.ndarray,
    grid: SigmaGrid,
    policy: PolicyConfig,
    liquidity: dict[str, dict[str, float]],
    horizon: int,
    paths: MarketPaths,
    config: BacktestConfig,
    cache_dir: Path,
    say: Say,
    signals: dict[str, pd.DataFrame] | None = None,
) -> tuple[np.ndarray, dict[str, Any]]:
    """One policy's snapshot stream read as the engine reads it, cached by its inputs.

    Building the snapshots costs about 0.3 ms a bar; the key hashes the sigma path, the
    grid, the policy, the venue's rules and the code that publishes and reads snapshots, so
    a changed rule never reads a stale path.
    """
    engine = config.replay.engine_config(paths.assets)
    digest = hashlib.sha256()
    for part in (sigma.tobytes(), grid.index.asi8.tobytes(), paths.ts_ms.tobytes()):
        digest.update(part)
    for asset in sorted(signals or {}):  # the margin mechanisms' inputs, when any
        digest.update(asset.encode() + signals[asset].to_numpy().tobytes())
    settings = [name, policy.model_dump(), liquidity, horizon, list(paths.assets)]
    settings += [asdict(config.replay.asset), engine.ramp_ms, engine.max_ramp_classes]
    digest.update(json.dumps(settings, sort_keys=True, default=str).encode())
    root = Path(__file__).resolve().parent.parent
    for module in _STREAM_CODE:
        digest.update((root / module).read_bytes())
    path = cache_dir / "backtest" / f"stream-{digest.hexdigest()[:16]}.npz"
    if path.exists():
        say(f"{name} snapshot stream from cache {path}")
        with np.load(path, allow_pickle=False) as cached:
            report = json.loads(str(cached["report"]))
            return cached["multipliers"].copy(), {**report, "cache_path": str(path)}
    say(f"{name}: publishing {sigma.size:,} snapshots")
    stream = _policy_stream(name, sigma, grid, policy, liquidity, horizon, signals)
    multipliers, read = multipliers_from_snapshots(
        stream, paths.assets, paths.ts_ms, config.replay.asset, engine.ramp_ms,
        engine.max_ramp_classes,
    )  # fmt: skip
    report = {"source": "policy replay", "snapshots": len(stream), **read.to_dict()}
    path.parent.mkdir(parents=True, exist_ok=True)

    def save(tmp: Path) -> None:
        # A handle, not a name: np.savez would append ".npz" to the temporary name.
        with tmp.open("wb") as handle:
            np.savez(handle, multipliers=multipliers, report=np.array(json.dumps(report)))

    atomic_write(path, save)
    return multipliers, {**report, "cache_path": str(path)}


_STREAM_CODE: tuple[str, ...] = (
    "serving/policy.py",
    "serving/mechanisms.py",
    "serving/policy_replay.py",
    "serving/publishing.py",
    "serving/standard.py",
    "serving/risk_metrics.py",
    "liquidation/snapshot.py",
    "liquidation/snapshot_stream.py",
    "liquidation/rules/ramp.py",
    "liquidation/rules/multiplier.py",
    "liquidation/rules/margin.py",
    "liquidation/config.py",
)
"""Code whose change invalidates a cached snapshot stream."""


def _policy_stream(
    name: str,
    sigma: np.ndarray,
    grid: SigmaGrid,
    policy: PolicyConfig,
    liquidity: dict[str, dict[str, float]],
    horizon: int,
    signals: dict[str, pd.DataFrame] | None = None,
) -> list[dict[str, Any]]:
    """Every asset's snapshots of one policy: a forecast at bar ``t`` publishes at ``t + 1``."""
    out: list[dict[str, Any]] = []
    provenance = ProvenanceInfo(model_name=name, model_version="replay")
    for row, asset in enumerate(grid.assets):
        out += policy_snapshots(
            MultiplierPolicy(policy),
            asset,
            pd.Series(sigma[row], index=grid.index),
            grid.step.to_pytimedelta(),
            liquidity=liquidity[asset],
            provenance=provenance,
            horizon_hours=horizon,
            signals=None if signals is None else signals[asset],
        )
    return out


def _frontier(
    paths: MarketPaths,
    multipliers: dict[str, np.ndarray],
    dynamic: Sequence[str],
    scales: Sequence[float],
    seeds: Sequence[int],
    config: BacktestConfig,
    say: Say,
    runner: ReplayRunner,
) -> list[FrontierPoint]:
    """Static and each dynamic policy at the frontier scales (the oracle's points come from
    its bisection, static's from its bisections above the base too)."""
    names = ["static", *[n for n in dynamic if n != "oracle"]]
    if not scales or not names:
        return []
    scenarios = [
        margin_scenario(f"{name}@{scale}", seed, multipliers[name] * scale, config.replay)
        for name in names
        for scale in scales
        for seed in seeds
    ]
    say(f"frontier: {len(scenarios)} scenarios")
    runs = simulate_runs(paths, scenarios, config.replay, say, runner)
    return [
        FrontierPoint.of(name, scale, [r for r in runs if r.label == f"{name}@{scale}"])
        for name in names
        for scale in scales
    ]


def _served_history(
    base: str, assets: Sequence[str], start: pd.Timestamp, end: pd.Timestamp
) -> Iterator[dict[str, Any]]:
    import httpx

    with httpx.Client(base_url=base, timeout=30.0) as client:
        for asset in assets:
            params: dict[str, Any] = {
                "from": start.isoformat(), "to": end.isoformat(), "limit": 1000,
            }  # fmt: skip
            while True:
                try:
                    response = client.get(f"/v1/risk/{asset}/history", params=params)
                except httpx.HTTPError as exc:
                    raise ReplayInputError(f"cannot read {base}: {exc}") from exc
                if response.status_code == 404:
                    break  # the server holds nothing of this asset
                if response.status_code != 200:
                    raise ReplayInputError(
                        f"{base}/v1/risk/{asset}/history answered {response.status_code}: "
                        f"{response.text[:200]}"
                    )
                page = response.json()
                yield from page["snapshots"]
                if not page.get("next_cursor"):
                    break
                params["cursor"] = page["next_cursor"]


def _bar_progress(say: Say, what: str) -> Callable[[int, int], None]:
    def report(done: int, total: int) -> None:
        if done == total or done % 5000 == 0:
            say(f"{what}: bar {done}/{total}")

    return report
