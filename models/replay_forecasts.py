"""Out-of-sample sigma forecasts on a replay's bar grid: walk-forward, cached, or pinned.

A margin replay needs, per policy, a sigma path on every bar. These come from the same
walk-forward as the evaluation (strictly out of sample), and take minutes, so they are
cached under the work dir keyed by a hash of the data, the configuration and the source code
of ``models/`` and ``features/`` (a fixed bug in a forecaster must never be hidden by a stale
cache). A reviewed study can instead pin a forecasts file.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from contracts.files import atomic_write
from features.market import MarketData
from models.errors import ModelsError
from models.spec import TargetSpec
from models.walkforward import EvaluationConfig, run_evaluation

Say = Callable[[str], None]


class PinnedForecastsError(ModelsError, ValueError):
    """A pinned forecasts file cannot be read or lacks a column, model or asset."""


@dataclass(frozen=True)
class SigmaGrid:
    """The bars a sigma path is laid on: asset rows and evenly spaced UTC bar-open times."""

    assets: tuple[str, ...]
    index: pd.DatetimeIndex

    @property
    def step(self) -> pd.Timedelta:
        """The bar length."""
        return self.index[1] - self.index[0] if len(self.index) > 1 else pd.Timedelta("1h")


def walkforward_sigma(
    market: MarketData,
    grid: SigmaGrid,
    cache_dir: Path,
    config: EvaluationConfig,
    target: TargetSpec,
    say: Say,
    test_start: pd.Timestamp | None = None,
) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """Out-of-sample sigma of ``config.models`` on a bar grid, from cache when possible.

    The walk-forward test period starts at ``test_start`` (default: one month before the
    grid); grid bars before it get NaN (no forecast). Every fold is fitted only on data
    before it (:func:`models.walkforward.run_evaluation`).

    Returns
    -------
    sigma : dict
        ``{model: (n_assets, n_bars)}`` with NaN where no forecast exists.
    info : dict
        Cache key, path, whether it was a hit, and the forecast source.
    """
    index = grid.index
    if test_start is None:
        test_start = index[0] - pd.DateOffset(months=1)
    test_end = index[-1] + grid.step
    models = config.models
    key = _cache_key(market, grid.assets, test_start, test_end, config, target)
    path = cache_dir / "backtest" / f"forecasts-{key}.parquet"
    hit = path.exists()
    if hit:
        say(f"walk-forward forecasts from cache {path}")
        frame = pd.read_parquet(path)
    else:
        say(f"walk-forward {', '.join(models)} on {len(grid.assets)} assets")
        result = run_evaluation(
            market,
            test_start,
            test_end,
            config,
            target=target,
            assets=list(grid.assets),
            progress=say,
        )
        frame = result.forecasts[["ts", "asset", "model", "sigma"]].copy()
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(path, lambda tmp: frame.to_parquet(tmp))
    sigma = {model: _on_grid(frame.loc[frame["model"] == model], grid) for model in models}
    info = {
        "cache_key": key,
        "cache_path": str(path),
        "cache_hit": hit,
        "model_source": "walk-forward LightGBM (no registry champion wired into the backtest)",
        "walkforward": {
            "test_start": str(test_start),
            "test_end": str(test_end),
            "refit": config.refit,
        },
    }
    return sigma, info


def pinned_sigma(
    path: Path, grid: SigmaGrid, models: Sequence[str]
) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """Walk-forward sigma from a pinned forecasts file instead of a fresh walk-forward.

    A policy study must compare its variants on the *same* forecasts; while the forecasters
    are being changed the cache key (which hashes their source) moves, so a reviewed run is
    reproduced from the file it used. The file is a cached forecasts parquet of
    :func:`walkforward_sigma` (columns ``ts``, ``asset``, ``model``, ``sigma``).

    Raises
    ------
    PinnedForecastsError
        Naming the file when it cannot be read, lacks a column, or lacks a model or asset.
    """
    try:
        frame = pd.read_parquet(path)
    except (OSError, ValueError) as exc:
        raise PinnedForecastsError(f"cannot read pinned forecasts {path}: {exc}") from exc
    missing = sorted({"ts", "asset", "model", "sigma"} - set(frame.columns))
    if missing:
        raise PinnedForecastsError(f"pinned forecasts {path} lack columns {missing}")
    sigma = {}
    for model in models:
        rows = frame.loc[frame["model"] == model]
        absent = sorted(set(grid.assets) - set(rows["asset"].astype(str)))
        if absent:
            raise PinnedForecastsError(
                f"pinned forecasts {path} have no {model!r} forecasts for {absent}; pin a "
                "file made for these assets"
            )
        sigma[model] = _on_grid(rows, grid)
    info = {
        "cache_key": None,
        "cache_path": str(path),
        "cache_hit": True,
        "pinned": True,
        "model_source": f"pinned walk-forward forecasts {path} (no registry champion)",
    }
    return sigma, info


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


def _on_grid(frame: pd.DataFrame, grid: SigmaGrid) -> np.ndarray:
    wide = frame.pivot_table(index="ts", columns="asset", values="sigma", aggfunc="first")
    wide = wide.reindex(index=grid.index, columns=list(grid.assets))
    return wide.to_numpy(dtype=np.float64).T.copy()


def _cache_key(
    market: MarketData,
    assets: Sequence[str],
    test_start: pd.Timestamp,
    test_end: pd.Timestamp,
    config: EvaluationConfig,
    target: TargetSpec,
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
        "config": config.describe(),
        "target": target.model_dump(mode="json"),
        "code": _code_fingerprint(),
    }
    text = json.dumps(fingerprint, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _code_fingerprint() -> str:
    """SHA-256 of the forecasting code (``contracts/``, ``models/`` and ``features/``)."""
    root = Path(__file__).resolve().parent.parent
    digest = hashlib.sha256()
    for package in ("contracts", "models", "features"):
        for path in sorted((root / package).rglob("*.py")):
            digest.update(path.relative_to(root).as_posix().encode())
            digest.update(path.read_bytes())
    return digest.hexdigest()
