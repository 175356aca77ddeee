"""Inputs of the margin backtest: market paths, sigma forecasts and multiplier paths.

Turns a :class:`~features.market.MarketData` into the plain arrays the liquidation replay
takes, and builds one multiplier path per policy:

* ``static``: multiplier 1 (the base IMF) on every bar;
* ``ewma``: the walk-forward EWMA sigma through :class:`serving.policy.MultiplierPolicy`;
* ``model``: the walk-forward LightGBM sigma (strictly out of sample) through the same policy;
* ``oracle``: the realized sigma of the next ``H`` bars through the same policy (an upper
  bound: it knows the future).

A forecast made at the close of bar ``t`` is published then and applies from bar ``t + 1``.
Walk-forward forecasts take minutes, so they are cached under the work dir keyed by a hash of
the data, the configuration and the source code of ``models/`` and ``features/`` (a fixed bug
in a forecaster must never be hidden by a stale cache).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from features.market import MarketData
from liquidation.simulate import MarketPaths, ReplayInputError
from serving.policy import MultiplierPolicy, PolicyConfig, rolling_sigma_ref

Say = Callable[[str], None]
WALKFORWARD_MODELS: dict[str, str] = {"ewma": "ewma", "model": "lgbm"}
"""Policy -> walk-forward model: the EWMA baseline and the LightGBM challenger."""


def market_paths(market: MarketData, start: pd.Timestamp, end: pd.Timestamp) -> MarketPaths:
    """Spot bars of ``[start, end)`` on a common grid, with funding, as replay arrays.

    Exchange outages (missing bars inside an asset's history) become flat bars at the previous
    close with zero volume: no trading happened, so no price moved and nobody could be
    liquidated against the book. An asset without any bar at ``start`` cannot be replayed
    from there.

    Raises
    ------
    ReplayInputError
        If the window holds no bars or an asset starts after ``start``.
    """
    bars = market.bars
    bars = bars.loc[(bars["ts"] >= start) & (bars["ts"] < end)]
    if bars.empty:
        raise ReplayInputError(f"no bars in [{start}, {end}) of {market.source}")
    step = pd.Timedelta(market.interval)
    grid = pd.date_range(bars["ts"].min(), bars["ts"].max(), freq=step)
    assets = tuple(sorted(bars["asset"].astype(str).unique()))
    frames = {}
    for col in ("open", "high", "low", "close", "quote_volume"):
        wide = bars.pivot_table(index="ts", columns="asset", values=col, aggfunc="first")
        frames[col] = wide.reindex(index=grid, columns=list(assets))
    first_close = frames["close"].iloc[0]
    late = [a for a in assets if not np.isfinite(first_close[a])]
    if late:
        raise ReplayInputError(
            f"assets {late} have no bar at the replay start {grid[0]}; start the replay at "
            "their listing or drop them"
        )
    close = frames["close"].ffill()
    for col in ("open", "high", "low"):
        frames[col] = frames[col].fillna(close)
    frames["close"] = close
    frames["quote_volume"] = frames["quote_volume"].fillna(0.0)
    funding = pd.DataFrame(0.0, index=grid, columns=list(assets))
    if not market.funding.empty:
        f = market.funding.loc[market.funding["asset"].astype(str).isin(assets)].copy()
        f["bar"] = f["ts"].dt.floor(step)
        f = f.loc[f["bar"].isin(grid)]
        wide = f.pivot_table(index="bar", columns="asset", values="funding_rate", aggfunc="sum")
        funding.update(wide.reindex(columns=list(assets)))
    return MarketPaths(
        assets=assets,
        ts_ms=np.asarray(grid.as_unit("ms").asi8, dtype=np.int64),
        interval_ms=int(step / pd.Timedelta(milliseconds=1)),
        open=frames["open"].to_numpy().T.copy(),
        high=frames["high"].to_numpy().T.copy(),
        low=frames["low"].to_numpy().T.copy(),
        close=frames["close"].to_numpy().T.copy(),
        quote_volume=frames["quote_volume"].to_numpy().T.copy(),
        funding_rate=funding.fillna(0.0).to_numpy().T.copy(),
    )


def grid_index(paths: MarketPaths) -> pd.DatetimeIndex:
    """Bar open times of ``paths`` as a UTC index."""
    return pd.DatetimeIndex(pd.to_datetime(paths.ts_ms, unit="ms", utc=True))


def oracle_sigma(paths: MarketPaths, horizon: int) -> np.ndarray:
    """Realized std of the log return over bars ``t+1 .. t+H`` (NaN where the data ends)."""
    logp = np.log(paths.close)
    r = np.diff(logp, axis=1, prepend=logp[:, :1])
    cum = np.cumsum(r**2, axis=1)
    out = np.full(paths.close.shape, np.nan)
    n = paths.n_bars
    if n > horizon:
        out[:, : n - horizon] = np.sqrt(np.maximum(cum[:, horizon:] - cum[:, : n - horizon], 0))
    return out


def walkforward_sigma(
    market: MarketData,
    paths: MarketPaths,
    cache_dir: Path,
    horizon: int,
    refit: str,
    say: Say,
    policies: Sequence[str] = ("ewma", "model"),
) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """Out-of-sample EWMA and LightGBM sigma on the replay grid, from cache when possible.

    The walk-forward test period starts one month before the replay so the policy's trailing
    reference is warm; every fold is fitted only on data before it (``models.walkforward``).

    Parameters
    ----------
    policies
        Which of ``ewma`` and ``model`` to forecast for (only their models are fitted).

    Returns
    -------
    sigma : dict
        ``{policy: (n_assets, n_bars)}`` with NaN where no forecast exists.
    info : dict
        Cache key, path, whether it was a hit, and the forecast source.
    """
    from models.walkforward import EvaluationConfig, run_evaluation

    index = grid_index(paths)
    test_start = index[0] - pd.DateOffset(months=1)
    test_end = index[-1] + pd.Timedelta(milliseconds=paths.interval_ms)
    eval_cfg = EvaluationConfig(horizon=horizon, refit=refit, model_params={"lgbm": {"n_jobs": 1}})
    wanted = {p: m for p, m in WALKFORWARD_MODELS.items() if p in policies}
    models = tuple(wanted.values())
    key = _cache_key(market, paths.assets, test_start, test_end, eval_cfg, models)
    path = cache_dir / "backtest" / f"forecasts-{key}.parquet"
    hit = path.exists()
    if hit:
        say(f"walk-forward forecasts from cache {path}")
        frame = pd.read_parquet(path)
    else:
        say(f"walk-forward {', '.join(models)} on {len(paths.assets)} assets")
        result = run_evaluation(
            market,
            test_start,
            test_end,
            assets=list(paths.assets),
            models=models,
            horizon=horizon,
            config=eval_cfg,
            progress=say,
        )
        frame = result.forecasts[["ts", "asset", "model", "sigma"]].copy()
        path.parent.mkdir(parents=True, exist_ok=True)
        frame.to_parquet(path)
    sigma = {
        policy: _on_grid(frame.loc[frame["model"] == model], paths.assets, index)
        for policy, model in wanted.items()
    }
    info = {
        "cache_key": key,
        "cache_path": str(path),
        "cache_hit": hit,
        "model_source": "walk-forward LightGBM (no registry champion wired into the backtest)",
        "walkforward": {"test_start": str(test_start), "test_end": str(test_end), "refit": refit},
    }
    return sigma, info


def pinned_sigma(
    path: Path, paths: MarketPaths, policies: Sequence[str] = ("ewma", "model")
) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """Walk-forward sigma from a pinned forecasts file instead of a fresh walk-forward.

    A policy study must compare its variants on the *same* forecasts; while the forecasters
    are being changed the cache key (which hashes their source) moves, so a reviewed run is
    reproduced from the file it used. The file is a cached forecasts parquet of
    :func:`walkforward_sigma` (columns ``ts``, ``asset``, ``model``, ``sigma``).

    Raises
    ------
    ReplayInputError
        Naming the file when it cannot be read, lacks a column, or lacks a model or asset.
    """
    try:
        frame = pd.read_parquet(path)
    except (OSError, ValueError) as exc:
        raise ReplayInputError(f"cannot read pinned forecasts {path}: {exc}") from exc
    missing = sorted({"ts", "asset", "model", "sigma"} - set(frame.columns))
    if missing:
        raise ReplayInputError(f"pinned forecasts {path} lack columns {missing}")
    wanted = {p: m for p, m in WALKFORWARD_MODELS.items() if p in policies}
    index = grid_index(paths)
    sigma = {}
    for policy, model in wanted.items():
        rows = frame.loc[frame["model"] == model]
        absent = sorted(set(paths.assets) - set(rows["asset"].astype(str)))
        if absent:
            raise ReplayInputError(
                f"pinned forecasts {path} have no {model!r} forecasts for {absent}; pin a "
                "file made for these assets"
            )
        sigma[policy] = _on_grid(rows, paths.assets, index)
    info = {
        "cache_key": None,
        "cache_path": str(path),
        "cache_hit": True,
        "pinned": True,
        "model_source": f"pinned walk-forward forecasts {path} (no registry champion)",
    }
    return sigma, info


def multiplier_path(
    sigma: np.ndarray, index: pd.DatetimeIndex, config: PolicyConfig, asset: str
) -> np.ndarray:
    """Multiplier in force on each bar when ``sigma[t]`` is published at the close of bar t.

    Steps :class:`MultiplierPolicy` on every bar (a NaN sigma is a missing forecast: the
    policy's fallback), with the trailing-median reference of :func:`rolling_sigma_ref`. The
    decision at bar ``t`` applies from bar ``t + 1``; bar 0 has the policy's initial value.
    """
    policy = MultiplierPolicy(config)
    series = pd.Series(sigma, index=index)
    refs = rolling_sigma_ref(series, config).to_numpy()
    state = policy.initial_state(asset)
    out = np.empty(len(sigma))
    out[0] = state.multiplier
    step = pd.Timedelta(index.freq or (index[1] - index[0] if len(index) > 1 else "1h"))
    for t in range(len(sigma) - 1):
        value = float(sigma[t])
        now = (index[t] + step).to_pydatetime()
        finite = np.isfinite(value)
        decision = policy.step(
            state,
            value if finite else None,
            index[t].to_pydatetime() if finite else None,
            now,
            None if np.isnan(refs[t]) else float(refs[t]),
        )
        state = decision.state
        out[t + 1] = decision.multiplier
    return out


def policy_multipliers(
    paths: MarketPaths,
    policies: Sequence[str],
    sigma: dict[str, np.ndarray],
    config: PolicyConfig,
) -> dict[str, np.ndarray]:
    """``{policy: (n_assets, n_bars) multipliers}``; ``static`` is 1 everywhere."""
    index = grid_index(paths)
    out: dict[str, np.ndarray] = {}
    for name in policies:
        if name == "static":
            out[name] = np.ones(paths.open.shape)
            continue
        if name not in sigma:
            raise ReplayInputError(f"policy {name!r} has no sigma path (known: {sorted(sigma)})")
        out[name] = np.stack(
            [
                multiplier_path(sigma[name][a], index, config, asset)
                for a, asset in enumerate(paths.assets)
            ]
        )
    return out


def _on_grid(frame: pd.DataFrame, assets: Sequence[str], index: pd.DatetimeIndex) -> np.ndarray:
    wide = frame.pivot_table(index="ts", columns="asset", values="sigma", aggfunc="first")
    wide = wide.reindex(index=index, columns=list(assets))
    return wide.to_numpy(dtype=np.float64).T.copy()


def _cache_key(
    market: MarketData,
    assets: Sequence[str],
    test_start: pd.Timestamp,
    test_end: pd.Timestamp,
    cfg: Any,
    models: Sequence[str],
) -> str:
    bars = market.bars.loc[market.bars["asset"].astype(str).isin(list(assets))]
    fingerprint = {
        "assets": list(assets),
        "rows": len(bars),
        "first": str(bars["ts"].min()),
        "last": str(bars["ts"].max()),
        "close_sum": round(float(bars["close"].sum()), 6),
        "volume_sum": round(float(bars["quote_volume"].sum()), 2),
        "test": [str(test_start), str(test_end)],
        "models": list(models),
        "config": cfg.describe(),
        "code": _code_fingerprint(),
    }
    text = json.dumps(fingerprint, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _code_fingerprint() -> str:
    """SHA-256 of the forecasting code (``models/`` and ``features/`` sources)."""
    root = Path(__file__).resolve().parent.parent
    digest = hashlib.sha256()
    for package in ("models", "features"):
        for path in sorted((root / package).rglob("*.py")):
            digest.update(path.relative_to(root).as_posix().encode())
            digest.update(path.read_bytes())
    return digest.hexdigest()


def forecast_diagnostics(
    sigma: dict[str, np.ndarray], realized: np.ndarray
) -> dict[str, dict[str, float]]:
    """QLIKE and log correlation of each sigma path against the realized future sigma.

    A sanity check on the forecasts the policies use: an honest 24h forecast of crypto
    volatility scores a QLIKE around 0.3 and a log correlation around 0.6-0.7; a QLIKE near 0
    or a correlation near 1 means the forecast saw the future.
    """
    out: dict[str, dict[str, float]] = {}
    for name, values in sigma.items():
        ok = np.isfinite(values) & np.isfinite(realized) & (values > 0) & (realized > 0)
        if ok.sum() < 2:
            continue
        ratio = realized[ok] ** 2 / values[ok] ** 2
        out[name] = {
            "n": int(ok.sum()),
            "qlike": float(np.mean(ratio - np.log(ratio) - 1)),
            "corr_log": float(np.corrcoef(np.log(values[ok]), np.log(realized[ok]))[0, 1]),
        }
    return out
