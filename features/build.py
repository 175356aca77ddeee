"""Assemble the point-in-time feature matrix, its catalog, hash and Parquet persistence.

The build runs in three explicit stages so an orchestrator can parallelise it over assets:

1. :func:`build_asset_features` (map over assets): volatility, order flow, funding, basis
   and calendar columns from one asset's bars, funding and perp bars only.
2. :func:`build_market_context` (reduce): the cross-sectional panels (equal-weight index,
   market volatility factor, dispersion, volatility rank, BTC/ETH series) from the stage-1
   frames of every asset.
3. :func:`build_cross_asset_features` (map over assets): one asset's stage-1 frame joined
   with the context.

:func:`build_features` runs the three in process. Every column at row ``ts`` uses only
information known at the bar's close ``ts + interval``; see the family modules
(:mod:`features.volatility`, :mod:`features.orderflow`, :mod:`features.cross_asset`) for
the estimators and the min-valid rule for windows.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from features import cross_asset, orderflow, volatility
from features.bars import REQUIRED_COLUMNS, interval_to_timedelta
from features.errors import StoreError
from features.market import MarketData
from features.volatility import FeatureInputError, complete_grid, min_valid_count

__all__ = [
    "FEATURE_LIBRARY_VERSION",
    "AssetInputs",
    "FeatureConfig",
    "FeatureConfigError",
    "FeatureSet",
    "FeatureSetError",
    "FeatureSpec",
    "MarketContext",
    "asset_inputs",
    "build_asset_features",
    "build_cross_asset_features",
    "build_features",
    "build_market_context",
    "feature_catalog",
    "feature_set_hash",
]

FEATURE_LIBRARY_VERSION: Final[str] = "1"
"""Bumped whenever a definition changes without a name change, so the hash changes too."""

FRAME_FILE: Final[str] = "features.parquet"
CATALOG_FILE: Final[str] = "catalog.json"


class FeatureConfigError(ValueError):
    """A :class:`FeatureConfig` that cannot describe a feature set (bad window, fraction)."""


class FeatureSetError(StoreError):
    """A persisted feature set that is incomplete or inconsistent with its catalog."""


# --------------------------------------------------------------------------------------
# Public types
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class FeatureConfig:
    """Windows and parameters of the feature set; part of the feature-set hash.

    Windows are in hours and must be whole multiples of the bar interval; lags and EWMA
    warm-up are in bars.

    Attributes
    ----------
    rv_windows_hours
        Realized-variance windows (``rv_<h>h``).
    har_windows_hours
        Daily, weekly and monthly HAR windows; ``har_*`` is the window's RV divided by its
        number of days-of-``har_windows_hours[0]`` (``har_w = RV_168h / 7``).
    range_windows_hours
        Windows of the Parkinson, Garman-Klass, Rogers-Satchell and Yang-Zhang variances.
    jump_window_hours
        Window of bipower variation, jump variation, semivariances and quarticity.
    ewma_lambda, ewma_min_bars
        RiskMetrics decay; the number of returns seen before ``ewma_var`` is reported, and
        the longest run of missing returns it is held over.
    flow_window_hours
        Short order-flow window (imbalance, CVD, Amihud, trade size, Corwin-Schultz, VPIN).
    flow_long_window_hours
        Long order-flow window (Kyle's lambda, Roll, trade-count baseline, VPIN sigma,
        CVD normaliser).
    cross_window_hours
        Window of betas and correlations to BTC and to the market index.
    spillover_lags_bars
        Lags of BTC and ETH log RV offered to every asset.
    min_valid_fraction
        A window needs at least ``ceil(fraction * n)`` valid observations, else NaN.
    min_dispersion_assets
        Cross-sectional dispersion needs at least this many assets at the bar.
    funding_max_age_hours
        A funding event older than this at the bar close is stale: NaN, not carried on.
    btc_asset, eth_asset
        Reference assets for beta/correlation and spillover (``"BTC"`` matches
        ``"BTCUSDT"``); absent ones give NaN columns.
    flow_scale
        Quote-currency unit of flow features (1e6: millions).
    """

    rv_windows_hours: tuple[int, ...] = (24, 168, 720)
    har_windows_hours: tuple[int, int, int] = (24, 168, 720)
    range_windows_hours: tuple[int, ...] = (24, 168)
    jump_window_hours: int = 24
    ewma_lambda: float = 0.94
    ewma_min_bars: int = 24
    flow_window_hours: int = 24
    flow_long_window_hours: int = 168
    cross_window_hours: int = 168
    spillover_lags_bars: tuple[int, ...] = (1, 24)
    min_valid_fraction: float = 0.8
    min_dispersion_assets: int = 3
    funding_max_age_hours: int = 24
    btc_asset: str = "BTCUSDT"
    eth_asset: str = "ETHUSDT"
    flow_scale: float = 1e6

    def __post_init__(self) -> None:
        windows = {
            "rv_windows_hours": self.rv_windows_hours,
            "har_windows_hours": self.har_windows_hours,
            "range_windows_hours": self.range_windows_hours,
            "jump_window_hours": (self.jump_window_hours,),
            "flow_window_hours": (self.flow_window_hours,),
            "flow_long_window_hours": (self.flow_long_window_hours,),
            "cross_window_hours": (self.cross_window_hours,),
            "funding_max_age_hours": (self.funding_max_age_hours,),
        }
        for name, values in windows.items():
            if not values or any(int(v) != v or v <= 0 for v in values):
                raise FeatureConfigError(f"{name} must be positive whole hours, got {values}")
        if len(self.har_windows_hours) != 3 or list(self.har_windows_hours) != sorted(
            set(self.har_windows_hours)
        ):
            raise FeatureConfigError(
                f"har_windows_hours must be three increasing windows (day, week, month), "
                f"got {self.har_windows_hours}"
            )
        if any(int(lag) != lag or lag < 1 for lag in self.spillover_lags_bars):
            raise FeatureConfigError(
                f"spillover_lags_bars must be whole bars >= 1, got {self.spillover_lags_bars}"
            )
        if not 0.0 < self.min_valid_fraction <= 1.0:
            raise FeatureConfigError(
                f"min_valid_fraction must be in (0, 1], got {self.min_valid_fraction}"
            )
        if not 0.0 < self.ewma_lambda < 1.0:
            raise FeatureConfigError(f"ewma_lambda must be in (0, 1), got {self.ewma_lambda}")
        if self.ewma_min_bars < 1 or self.min_dispersion_assets < 2 or self.flow_scale <= 0:
            raise FeatureConfigError(
                "ewma_min_bars must be >= 1, min_dispersion_assets >= 2 and flow_scale > 0"
            )

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready dict (tuples as lists)."""
        return {
            k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(self).items()
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> FeatureConfig:
        """Inverse of :meth:`to_dict`."""
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in data.items()})


@dataclass(frozen=True)
class FeatureSpec:
    """One catalog entry: a column of the feature matrix.

    Attributes
    ----------
    name
        Column name.
    family
        ``volatility``, ``har``, ``range``, ``jump``, ``orderflow``, ``liquidity``,
        ``cross_asset``, ``funding``, ``basis`` or ``calendar``.
    window
        Look-back, e.g. ``"24h"``, ``"1 bar"``, ``"as-of"`` or ``"none"``.
    definition
        One line: what the value is and when it is NaN.
    """

    name: str
    family: str
    window: str
    definition: str


@dataclass(frozen=True)
class AssetInputs:
    """Everything stage 1 needs about one asset (a unit of parallel work)."""

    asset: str
    bars: pd.DataFrame
    funding: pd.DataFrame
    perp: pd.DataFrame


@dataclass(frozen=True)
class MarketContext:
    """Cross-sectional inputs shared by every asset in stage 3.

    Attributes
    ----------
    ret
        Wide bar returns, index ``ts`` (union of the asset grids), one column per asset.
    log_rv
        Wide log daily realized variance (``log(rv_<d>h)``), same layout.
    market_ret, market_log_rv
        Equal-weight mean across assets of ``ret`` and of ``log_rv`` at each time.
    ret_dispersion, log_rv_dispersion
        Cross-sectional standard deviations (NaN below ``min_dispersion_assets``).
    vol_rank
        Each asset's rank of ``log_rv`` at each time, scaled to [0, 1].
    btc_asset, eth_asset
        Resolved reference asset names, or ``None`` when absent from the market.
    """

    ret: pd.DataFrame
    log_rv: pd.DataFrame
    market_ret: pd.Series
    market_log_rv: pd.Series
    ret_dispersion: pd.Series
    log_rv_dispersion: pd.Series
    vol_rank: pd.DataFrame
    btc_asset: str | None
    eth_asset: str | None


@dataclass(frozen=True)
class FeatureSet:
    """A built feature matrix with its catalog and identity.

    Attributes
    ----------
    frame
        One row per ``(ts, asset)``: ``ts`` (UTC bar open), ``asset``, then the features in
        catalog order, sorted by ``asset, ts``.
    catalog
        One :class:`FeatureSpec` per feature column, in column order.
    config
        The configuration it was built with.
    interval
        Bar interval.
    feature_set_hash
        sha256 over library version, interval, config and catalog (not the data).
    source
        Where the market data came from.
    """

    frame: pd.DataFrame
    catalog: list[FeatureSpec]
    config: FeatureConfig
    interval: str
    feature_set_hash: str
    source: str = ""

    @property
    def feature_names(self) -> list[str]:
        """Feature column names in catalog order."""
        return [spec.name for spec in self.catalog]

    def to_parquet(self, directory: Path | str) -> Path:
        """Write ``features.parquet`` and ``catalog.json`` into ``directory``, atomically.

        Each file is written to a temporary name in the same directory and renamed into
        place, so a reader never sees a half-written file; the catalog goes last.

        Returns
        -------
        pathlib.Path
            The directory.
        """
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        manifest = {
            "feature_set_hash": self.feature_set_hash,
            "library_version": FEATURE_LIBRARY_VERSION,
            "interval": self.interval,
            "source": self.source,
            "config": self.config.to_dict(),
            "catalog": [dataclasses.asdict(spec) for spec in self.catalog],
            "rows": len(self.frame),
            "assets": sorted(self.frame["asset"].astype(str).unique().tolist()),
            "data_through": _iso(self.frame["ts"].max()) if len(self.frame) else None,
        }
        table = pa.Table.from_pandas(self.frame, preserve_index=False)
        table = table.replace_schema_metadata(
            {**(table.schema.metadata or {}), b"dynamargin.feature_set_hash": self.feature_set_hash}
        )
        _atomic_write(directory / FRAME_FILE, lambda path: pq.write_table(table, path))
        text = json.dumps(manifest, indent=2, sort_keys=True)
        _atomic_write(directory / CATALOG_FILE, lambda path: Path(path).write_text(text))
        return directory

    @classmethod
    def from_parquet(cls, directory: Path | str) -> FeatureSet:
        """Read a feature set written by :meth:`to_parquet` and check its consistency.

        Raises
        ------
        FeatureSetError
            If a file is missing, the stored hash does not match the stored config and
            catalog, or the columns differ from the catalog.
        """
        directory = Path(directory)
        manifest_path, frame_path = directory / CATALOG_FILE, directory / FRAME_FILE
        for path in (manifest_path, frame_path):
            if not path.is_file():
                raise FeatureSetError(
                    f"{path}: missing; build the feature set again with 'dynamargin features build'"
                )
        manifest = json.loads(manifest_path.read_text())
        config = FeatureConfig.from_dict(manifest["config"])
        catalog = [FeatureSpec(**spec) for spec in manifest["catalog"]]
        expected = _hash(manifest["library_version"], manifest["interval"], config, catalog)
        if expected != manifest["feature_set_hash"]:
            raise FeatureSetError(
                f"{manifest_path}: stored hash {manifest['feature_set_hash']} does not match "
                f"its config and catalog ({expected}); the file was edited, rebuild it"
            )
        table = pq.read_table(frame_path)
        stored = (table.schema.metadata or {}).get(b"dynamargin.feature_set_hash", b"").decode()
        if stored != expected:
            raise FeatureSetError(
                f"{frame_path}: hash {stored or '(none)'} differs from {manifest_path} "
                f"({expected}); the two files come from different builds, rebuild"
            )
        frame = table.to_pandas()
        columns = ["ts", "asset", *[spec.name for spec in catalog]]
        if list(frame.columns) != columns:
            raise FeatureSetError(
                f"{frame_path}: columns differ from the catalog in {manifest_path}; rebuild"
            )
        frame["asset"] = frame["asset"].astype("string")
        return cls(
            frame=frame,
            catalog=catalog,
            config=config,
            interval=manifest["interval"],
            feature_set_hash=expected,
            source=manifest.get("source", ""),
        )


# --------------------------------------------------------------------------------------
# The build
# --------------------------------------------------------------------------------------


def build_features(
    market: MarketData,
    config: FeatureConfig | None = None,
    *,
    progress: Callable[[str], None] | None = None,
) -> FeatureSet:
    """Build the feature matrix of every asset in ``market``.

    Parameters
    ----------
    market
        Spot bars, funding events and perp bars (:class:`features.market.MarketData`).
    config
        Windows and parameters; defaults to :class:`FeatureConfig()`.
    progress
        Called with each asset name as its stage-1 work finishes.

    Returns
    -------
    FeatureSet
        The matrix, its catalog and its hash.

    Raises
    ------
    FeatureInputError
        If the bars break the Bars contract (missing column, duplicate or off-grid bar,
        non-positive price) or a funding series is contradictory.
    FeatureConfigError
        If a window is not a whole number of bars at ``market.interval``.

    Examples
    --------
    >>> from features.synthetic import SyntheticMarketConfig, generate_market
    >>> fs = build_features(generate_market(SyntheticMarketConfig(n_assets=2, days=40)))
    >>> fs.feature_names == [c for c in fs.frame.columns if c not in ("ts", "asset")]
    True
    """
    config = config or FeatureConfig()
    interval = market.interval
    end = market.bars["ts"].max() if len(market.bars) else None
    stage_one = []
    for inputs in asset_inputs(market):
        stage_one.append(build_asset_features(inputs, config, interval, end=end))
        if progress is not None:
            progress(inputs.asset)
    context = build_market_context(stage_one, config, interval)
    frames = [build_cross_asset_features(frame, context, config, interval) for frame in stage_one]
    return assemble_feature_set(frames, config, interval, source=market.source)


def assemble_feature_set(
    frames: Sequence[pd.DataFrame],
    config: FeatureConfig,
    interval: str = "1h",
    source: str = "",
) -> FeatureSet:
    """Stage 4: concatenate the per-asset stage-3 frames into a :class:`FeatureSet`.

    Parameters
    ----------
    frames
        One frame per asset from :func:`build_cross_asset_features`, in asset order.
    config
        The configuration the frames were built with.
    interval
        Bar interval.
    source
        Where the market data came from.

    Returns
    -------
    FeatureSet
        Columns in catalog order, with the catalog and the feature-set hash.
    """
    catalog = feature_catalog(config, interval)
    columns = ["ts", "asset", *[spec.name for spec in catalog]]
    frame = pd.concat(frames, ignore_index=True) if len(frames) else _empty_frame(columns)
    return FeatureSet(
        frame=frame[columns],
        catalog=catalog,
        config=config,
        interval=interval,
        feature_set_hash=feature_set_hash(config, interval),
        source=source,
    )


def asset_inputs(market: MarketData) -> list[AssetInputs]:
    """Split a market into per-asset work units (sorted by asset)."""
    missing = [c for c in REQUIRED_COLUMNS if c not in market.bars.columns]
    if missing:
        raise FeatureInputError(
            f"market bars ({market.source or 'unknown source'}) lack column(s) {missing}; "
            "the Bars contract (features.bars.REQUIRED_COLUMNS) requires them"
        )
    funding = _by_asset(market.funding, ("ts", "asset", "funding_rate"), "funding")
    perp = _by_asset(market.perp, ("ts", "asset", "close"), "perp")
    empty_funding = market.funding.iloc[0:0] if "asset" in market.funding else pd.DataFrame()
    return [
        AssetInputs(
            asset=str(asset),
            bars=bars,
            funding=funding.get(str(asset), empty_funding),
            perp=perp.get(str(asset), pd.DataFrame()),
        )
        for asset, bars in market.bars.groupby(market.bars["asset"].astype(str), sort=True)
    ]


def build_asset_features(
    inputs: AssetInputs,
    config: FeatureConfig,
    interval: str = "1h",
    end: pd.Timestamp | None = None,
) -> pd.DataFrame:
    """Stage 1: the columns that need only this asset's own data.

    Parameters
    ----------
    inputs
        The asset's bars, funding events and perp bars.
    config
        Windows and parameters.
    interval
        Bar interval.
    end
        The market's last bar time; the asset's grid is extended to it so every asset has
        a row at the market's present even if its own latest bars are missing.

    Returns
    -------
    pandas.DataFrame
        ``ts, asset`` on the asset's complete grid (first bar to ``end``) plus the
        volatility, order-flow, funding, basis and calendar columns.
    """
    grid = complete_grid(inputs.bars, interval, columns=REQUIRED_COLUMNS[2:], end=end)
    columns = _asset_columns(grid, inputs, config, interval)
    keys = grid[["ts", "asset"]].reset_index(drop=True)
    return pd.concat([keys, columns.frame(len(keys))], axis=1)


def build_market_context(
    asset_frames: Sequence[pd.DataFrame], config: FeatureConfig, interval: str = "1h"
) -> MarketContext:
    """Stage 2: cross-sectional panels from the stage-1 frames of all assets."""
    names = _Names(config, interval)
    ret_parts, rv_parts = {}, {}
    for frame in asset_frames:
        if frame.empty:
            continue
        asset = str(frame["asset"].iloc[0])
        index = pd.DatetimeIndex(frame["ts"])
        ret_parts[asset] = pd.Series(frame[names.ret].to_numpy(), index=index)
        rv = frame[names.rv(names.day)].to_numpy()
        with np.errstate(divide="ignore", invalid="ignore"):
            rv_parts[asset] = pd.Series(np.where(rv > 0, np.log(rv), np.nan), index=index)
    ret = pd.DataFrame(ret_parts).sort_index()
    log_rv = pd.DataFrame(rv_parts).sort_index()
    assets = list(ret.columns)
    least = config.min_dispersion_assets
    return MarketContext(
        ret=ret,
        log_rv=log_rv,
        market_ret=cross_asset.cross_sectional_mean(ret),
        market_log_rv=cross_asset.cross_sectional_mean(log_rv),
        ret_dispersion=cross_asset.cross_sectional_dispersion(ret, least),
        log_rv_dispersion=cross_asset.cross_sectional_dispersion(log_rv, least),
        vol_rank=cross_asset.cross_sectional_rank(log_rv),
        btc_asset=_resolve_asset(config.btc_asset, assets),
        eth_asset=_resolve_asset(config.eth_asset, assets),
    )


def build_cross_asset_features(
    asset_frame: pd.DataFrame,
    context: MarketContext,
    config: FeatureConfig,
    interval: str = "1h",
) -> pd.DataFrame:
    """Stage 3: one asset's stage-1 frame plus its cross-asset columns."""
    columns = _cross_columns(asset_frame, context, config, interval)
    return pd.concat([asset_frame.reset_index(drop=True), columns.frame(len(asset_frame))], axis=1)


def feature_catalog(config: FeatureConfig | None = None, interval: str = "1h") -> list[FeatureSpec]:
    """The catalog of the matrix :func:`build_features` returns, without any data.

    It is produced by the same column builders run on an empty asset, so it cannot drift
    from the matrix.
    """
    config = config or FeatureConfig()
    empty = AssetInputs(asset="_", bars=_empty_bars(), funding=pd.DataFrame(), perp=pd.DataFrame())
    grid = complete_grid(empty.bars, interval, columns=REQUIRED_COLUMNS[2:])
    stage_one = _asset_columns(grid, empty, config, interval)
    frame = pd.concat(
        [pd.DataFrame({"ts": grid["ts"], "asset": grid["asset"]}), stage_one.frame(0)], axis=1
    )
    context = build_market_context([], config, interval)
    stage_three = _cross_columns(frame, context, config, interval)
    return stage_one.specs + stage_three.specs


def feature_set_hash(config: FeatureConfig | None = None, interval: str = "1h") -> str:
    """Stable sha256 of library version, interval, config and catalog."""
    config = config or FeatureConfig()
    return _hash(FEATURE_LIBRARY_VERSION, interval, config, feature_catalog(config, interval))


# --------------------------------------------------------------------------------------
# Column builders (private): each yields (spec, values) pairs in catalog order
# --------------------------------------------------------------------------------------


class _Columns:
    """Collects feature columns with their catalog entries, in order."""

    def __init__(self) -> None:
        self.specs: list[FeatureSpec] = []
        self.values: dict[str, np.ndarray] = {}

    def add(self, name: str, family: str, window: str, definition: str, values: Any) -> None:
        if name in self.values:
            raise FeatureConfigError(f"feature {name!r} defined twice; check the config windows")
        self.specs.append(FeatureSpec(name, family, window, definition))
        self.values[name] = np.asarray(values, dtype="float64")

    def frame(self, rows: int) -> pd.DataFrame:
        for name, values in self.values.items():
            if values.shape != (rows,):
                raise AssertionError(f"feature {name} has {values.shape} values for {rows} rows")
        return pd.DataFrame(self.values, index=pd.RangeIndex(rows))


class _Names:
    """Column naming and hour -> bar conversion for one config and interval."""

    def __init__(self, config: FeatureConfig, interval: str) -> None:
        self.config = config
        self.step = interval_to_timedelta(interval)
        self.interval = interval
        self.ret = f"ret_{interval}"
        self.day = config.har_windows_hours[0]

    def bars(self, hours: int, what: str, least: int = 1) -> int:
        window = pd.Timedelta(hours, unit="h")
        count = window / self.step
        if count != int(count) or count < least:
            raise FeatureConfigError(
                f"{what} window {hours}h is not a whole number (>= {least}) of "
                f"{self.interval} bars; choose windows that are multiples of the interval"
            )
        return int(count)

    def need(self, bars: int) -> int:
        return min_valid_count(bars, self.config.min_valid_fraction)

    @staticmethod
    def rv(hours: int) -> str:
        return f"rv_{hours}h"


def _asset_columns(
    grid: pd.DataFrame, inputs: AssetInputs, config: FeatureConfig, interval: str
) -> _Columns:
    names = _Names(config, interval)
    cols = _Columns()
    arrays = {c: grid[c].to_numpy(dtype="float64") for c in REQUIRED_COLUMNS[2:]}
    ret = volatility.close_returns(arrays["close"])
    _volatility_columns(cols, names, arrays, ret)
    _orderflow_columns(cols, names, arrays, ret)
    _funding_columns(cols, names, grid, inputs)
    _calendar_columns(cols, grid)
    return cols


def _volatility_columns(
    cols: _Columns, names: _Names, a: dict[str, np.ndarray], ret: np.ndarray
) -> None:
    cfg = names.config
    frac = f"NaN if < {cfg.min_valid_fraction:g} of the window is valid; rescaled to full window"
    cols.add(names.ret, "volatility", "1 bar", "log close-to-close return; NaN across a gap", ret)
    rv_cache: dict[int, np.ndarray] = {}

    def rv(hours: int) -> np.ndarray:
        if hours not in rv_cache:
            n = names.bars(hours, "realized variance")
            rv_cache[hours] = volatility.realized_variance(ret, n, names.need(n))
        return rv_cache[hours]

    for hours in cfg.rv_windows_hours:
        cols.add(
            names.rv(hours), "volatility", f"{hours}h", f"sum of squared returns; {frac}", rv(hours)
        )
    day, week, month = cfg.har_windows_hours
    for label, hours in (("d", day), ("w", week), ("m", month)):
        days = hours / day
        cols.add(
            f"har_{label}",
            "har",
            f"{hours}h",
            f"HAR component: RV over {hours}h divided by {days:g} (per-{day}h units)",
            rv(hours) / days,
        )
    j = names.bars(cfg.jump_window_hours, "jump", least=2)
    jn, jh = names.need(j), cfg.jump_window_hours
    up, down = volatility.realized_semivariances(ret, j, jn)
    cols.add(
        f"rq_{jh}h",
        "jump",
        f"{jh}h",
        "realized quarticity (n/3) sum r^4 (HARQ)",
        volatility.realized_quarticity(ret, j, jn),
    )
    cols.add(
        f"bv_{jh}h",
        "jump",
        f"{jh}h",
        "bipower variation (pi/2) n/(n-1) sum |r_t||r_t-1|",
        volatility.bipower_variation(ret, j, jn),
    )
    cols.add(
        f"jump_{jh}h",
        "jump",
        f"{jh}h",
        "jump variation max(RV - BV, 0)",
        volatility.jump_variation(ret, j, jn),
    )
    cols.add(f"rsv_up_{jh}h", "jump", f"{jh}h", "upside realized semivariance sum r^2 1{r>0}", up)
    cols.add(
        f"rsv_down_{jh}h", "jump", f"{jh}h", "downside realized semivariance sum r^2 1{r<0}", down
    )
    o, h, lo, c = a["open"], a["high"], a["low"], a["close"]
    park = volatility.parkinson_variance(h, lo)
    gk = volatility.garman_klass_variance(o, h, lo, c)
    rs = volatility.rogers_satchell_variance(o, h, lo, c)
    for hours in cfg.range_windows_hours:
        n = names.bars(hours, "range estimator", least=2)
        need = names.need(n)
        scale = f"per-bar estimate averaged over {hours}h times n (RV scale)"
        cols.add(
            f"parkinson_{hours}h",
            "range",
            f"{hours}h",
            f"Parkinson (ln H/L)^2/(4 ln 2), {scale}",
            volatility.window_total(park, n, need),
        )
        cols.add(
            f"garman_klass_{hours}h",
            "range",
            f"{hours}h",
            f"Garman-Klass, {scale}",
            volatility.window_total(gk, n, need),
        )
        cols.add(
            f"rogers_satchell_{hours}h",
            "range",
            f"{hours}h",
            f"Rogers-Satchell (drift-free), {scale}",
            volatility.window_total(rs, n, need),
        )
        cols.add(
            f"yang_zhang_{hours}h",
            "range",
            f"{hours}h",
            "Yang-Zhang open-jump + open-close + RS mix, RV scale",
            volatility.yang_zhang_variance(o, h, lo, c, n, need),
        )
    cols.add(
        "ewma_var",
        "volatility",
        f"lambda {cfg.ewma_lambda:g}",
        f"RiskMetrics per-bar variance; NaN before {cfg.ewma_min_bars} returns and when none "
        f"in the last {cfg.ewma_min_bars} bars",
        volatility.ewma_variance(ret, cfg.ewma_lambda, cfg.ewma_min_bars, cfg.ewma_min_bars),
    )


def _orderflow_columns(
    cols: _Columns, names: _Names, a: dict[str, np.ndarray], ret: np.ndarray
) -> None:
    cfg = names.config
    fh, lh = cfg.flow_window_hours, cfg.flow_long_window_hours
    f = names.bars(fh, "order-flow")
    lw = names.bars(lh, "long order-flow", least=2)
    fn, ln = names.need(f), names.need(lw)
    unit = f"1/{cfg.flow_scale:g} quote"
    volume, buy = a["volume"], a["taker_buy_volume"]
    imbalance = orderflow.taker_imbalance(volume, buy)
    window_imb = orderflow.window_taker_imbalance(volume, buy, f, fn)
    cols.add(
        "taker_imbalance",
        "orderflow",
        "1 bar",
        "(taker buy - taker sell)/volume in [-1, 1]",
        imbalance,
    )
    cols.add(
        "taker_imbalance_chg",
        "orderflow",
        "2 bars",
        "taker_imbalance minus its previous bar",
        _diff(imbalance, 1),
    )
    cols.add(
        f"taker_imbalance_{fh}h",
        "orderflow",
        f"{fh}h",
        "volume-weighted taker imbalance over the window",
        window_imb,
    )
    cols.add(
        f"taker_imbalance_{fh}h_chg",
        "orderflow",
        f"{2 * fh}h",
        f"taker_imbalance_{fh}h minus its value {fh}h earlier",
        _diff(window_imb, f),
    )
    signed = (
        orderflow.signed_volume(a["quote_volume"], a["taker_buy_quote_volume"]) / cfg.flow_scale
    )
    cvd = orderflow.cumulative_volume_delta(signed, f, fn)
    typical = volatility.window_mean(a["quote_volume"], lw, ln) * f / cfg.flow_scale
    with np.errstate(divide="ignore", invalid="ignore"):
        cvd_rel = np.where(typical > 0, cvd / typical, np.nan)
    cols.add(
        "signed_volume", "orderflow", "1 bar", f"taker buy minus sell quote volume ({unit})", signed
    )
    cols.add(
        f"cvd_{fh}h",
        "orderflow",
        f"{fh}h",
        f"cumulative volume delta over the window ({unit})",
        cvd,
    )
    cols.add(
        f"cvd_{fh}h_rel",
        "orderflow",
        f"{lh}h",
        f"cvd_{fh}h over the mean {fh}h quote volume of the last {lh}h",
        cvd_rel,
    )
    trades = a["trades"]
    cols.add(
        "trades_log", "orderflow", "1 bar", "log(1 + trade count) of the bar", np.log1p(trades)
    )
    cols.add(
        f"trade_surprise_{lh}h",
        "orderflow",
        f"{lh}h",
        f"log((1+trades)/(1+mean trades of previous {lh}h))",
        orderflow.trade_surprise(trades, lw, ln),
    )
    cols.add(
        f"avg_trade_size_{fh}h",
        "liquidity",
        f"{fh}h",
        "quote volume per trade over the window",
        orderflow.average_trade_size(a["quote_volume"], trades, f, fn),
    )
    cols.add(
        f"amihud_{fh}h",
        "liquidity",
        f"{fh}h",
        f"mean |ret| per {unit} volume (Amihud)",
        orderflow.amihud_illiquidity(ret, a["quote_volume"], f, fn, cfg.flow_scale),
    )
    cols.add(
        f"kyle_lambda_{lh}h",
        "liquidity",
        f"{lh}h",
        f"OLS slope of ret on signed volume ({unit}), with intercept",
        orderflow.kyle_lambda(ret, signed, lw, ln),
    )
    cols.add(
        f"roll_spread_{lh}h",
        "liquidity",
        f"{lh}h",
        "Roll 2 sqrt(-cov(r_t, r_t-1)), 0 if cov >= 0",
        orderflow.roll_spread(ret, lw, ln),
    )
    cols.add(
        f"corwin_schultz_{fh}h",
        "liquidity",
        f"{fh}h",
        "Corwin-Schultz high-low spread, window mean, floored at 0",
        orderflow.corwin_schultz_spread(a["high"], a["low"], f, fn),
    )
    cols.add(
        f"vpin_{fh}h",
        "orderflow",
        f"{fh}h",
        f"VPIN, bulk volume classification with trailing {lh}h sigma, in [0, 1]",
        orderflow.vpin_bvc(ret, volume, f, lw, fn, ln),
    )


def _funding_columns(
    cols: _Columns, names: _Names, grid: pd.DataFrame, inputs: AssetInputs
) -> None:
    cfg = names.config
    close_times = pd.DatetimeIndex(grid["ts"]) + names.step
    funding = inputs.funding
    if funding is not None and len(funding):
        level, change = cross_asset.funding_asof(
            close_times,
            pd.DatetimeIndex(funding["ts"]),
            funding["funding_rate"].to_numpy(dtype="float64"),
            pd.Timedelta(cfg.funding_max_age_hours, unit="h"),
            inputs.asset,
        )
    else:
        level = change = np.full(len(grid), np.nan)
    asof = f"as-of <= {cfg.funding_max_age_hours}h"
    absent = "NaN if the asset has no perpetual funding"
    cols.add(
        "funding_rate",
        "funding",
        asof,
        f"last funding rate known at the bar close; {absent}",
        level,
    )
    cols.add(
        "funding_rate_chg", "funding", asof, "last funding rate minus the one before it", change
    )
    cols.add("funding_rate_abs", "funding", asof, "absolute last funding rate", np.abs(level))
    perp_close = np.full(len(grid), np.nan)
    perp = inputs.perp
    if perp is not None and len(perp):
        series = pd.Series(
            perp["close"].to_numpy(dtype="float64"), index=pd.DatetimeIndex(perp["ts"])
        )
        repeated = series.index.duplicated()
        if repeated.any():
            raise FeatureInputError(
                f"asset {inputs.asset} perp bar {series.index[repeated][0]}: duplicate bar "
                "time; deduplicate the perp bars in the data layer"
            )
        perp_close = series.reindex(pd.DatetimeIndex(grid["ts"])).to_numpy()
    spot_close = grid["close"].to_numpy(dtype="float64")
    cols.add(
        "perp_basis",
        "basis",
        "1 bar",
        "ln(perp close / spot close) of the same bar; NaN without a perp",
        cross_asset.perp_basis(spot_close, perp_close),
    )


def _calendar_columns(cols: _Columns, grid: pd.DataFrame) -> None:
    encoded = cross_asset.calendar_encoding(pd.DatetimeIndex(grid["ts"]))
    definitions = {
        "hour_sin": "sin(2 pi hour/24) of the bar open (UTC)",
        "hour_cos": "cos(2 pi hour/24) of the bar open (UTC)",
        "dow_sin": "sin(2 pi (weekday + hour/24)/7) of the bar open (UTC)",
        "dow_cos": "cos(2 pi (weekday + hour/24)/7) of the bar open (UTC)",
    }
    for name, values in encoded.items():
        cols.add(name, "calendar", "none", definitions[name], values)


def _cross_columns(
    frame: pd.DataFrame, context: MarketContext, config: FeatureConfig, interval: str
) -> _Columns:
    names = _Names(config, interval)
    cols = _Columns()
    index = pd.DatetimeIndex(frame["ts"])
    ret = frame[names.ret].to_numpy(dtype="float64")
    ch, day = config.cross_window_hours, names.day
    n = names.bars(ch, "cross-asset", least=2)
    need = names.need(n)
    references = {
        "btc": _column(context.ret, context.btc_asset),
        "mkt": context.market_ret,
    }
    for label, series in references.items():
        beta, corr = cross_asset.rolling_beta_correlation(ret, _on(series, index), n, need)
        what = "BTC" if label == "btc" else "the equal-weight market index"
        cols.add(
            f"beta_{label}_{ch}h", "cross_asset", f"{ch}h", f"OLS beta of ret on {what} ret", beta
        )
        cols.add(
            f"corr_{label}_{ch}h",
            "cross_asset",
            f"{ch}h",
            f"correlation of ret with {what} ret",
            corr,
        )
    cols.add(
        "mkt_ret",
        "cross_asset",
        "1 bar",
        "equal-weight mean of all assets' bar returns",
        _on(context.market_ret, index),
    )
    cols.add(
        f"mkt_log_rv_{day}h",
        "cross_asset",
        f"{day}h",
        f"market volatility factor: cross-sectional mean of log rv_{day}h",
        _on(context.market_log_rv, index),
    )
    for label, asset in (("btc", context.btc_asset), ("eth", context.eth_asset)):
        series = _column(context.log_rv, asset)
        for lag in config.spillover_lags_bars:
            lagged = _lag_in_time(series, lag, names.step)
            cols.add(
                f"{label}_log_rv_{day}h_lag{lag}",
                "cross_asset",
                f"{day}h, lag {lag} bars",
                f"log rv_{day}h of {label.upper()} {lag} bar(s) earlier (spillover); NaN if absent",
                _on(lagged, index),
            )
    cols.add(
        "xs_ret_dispersion",
        "cross_asset",
        "1 bar",
        f"cross-sectional std of bar returns (>= {config.min_dispersion_assets} assets)",
        _on(context.ret_dispersion, index),
    )
    cols.add(
        f"xs_log_rv_dispersion_{day}h",
        "cross_asset",
        f"{day}h",
        f"cross-sectional std of log rv_{day}h",
        _on(context.log_rv_dispersion, index),
    )
    asset = str(frame["asset"].iloc[0]) if len(frame) else None
    cols.add(
        f"vol_rank_{day}h",
        "cross_asset",
        f"{day}h",
        f"rank of rv_{day}h across assets, 0 lowest .. 1 highest",
        _on(_column(context.vol_rank, asset), index),
    )
    return cols


# --------------------------------------------------------------------------------------
# Small private helpers
# --------------------------------------------------------------------------------------


def _diff(values: np.ndarray, lag: int) -> np.ndarray:
    out = np.full(values.shape, np.nan)
    if values.size > lag:
        out[lag:] = values[lag:] - values[:-lag]
    return out


def _column(wide: pd.DataFrame, asset: str | None) -> pd.Series:
    if asset is None or asset not in wide.columns:
        return pd.Series(dtype="float64", index=pd.DatetimeIndex([], tz="UTC"))
    return wide[asset]


def _on(series: pd.Series, index: pd.DatetimeIndex) -> np.ndarray:
    if series.empty:
        return np.full(len(index), np.nan)
    return series.reindex(index).to_numpy(dtype="float64")


def _lag_in_time(series: pd.Series, lag: int, step: pd.Timedelta) -> pd.Series:
    """Value ``lag`` bars earlier in *time* (a missing earlier bar gives NaN)."""
    if series.empty:
        return series
    return pd.Series(series.to_numpy(), index=series.index + lag * step)


def _resolve_asset(name: str, assets: Sequence[str]) -> str | None:
    if name in assets:
        return name
    base = name.upper().removesuffix("USDT")
    matches = [a for a in assets if a.upper().removesuffix("USDT") == base]
    return matches[0] if len(matches) == 1 else None


def _by_asset(frame: pd.DataFrame, columns: tuple[str, ...], what: str) -> dict[str, pd.DataFrame]:
    if frame is None or frame.empty:
        return {}
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise FeatureInputError(
            f"market {what} frame lacks column(s) {missing}; expected {list(columns)}"
        )
    if not isinstance(frame["ts"].dtype, pd.DatetimeTZDtype):
        raise FeatureInputError(
            f"market {what} column 'ts' has dtype {frame['ts'].dtype}; it must be tz-aware UTC"
        )
    return {
        str(asset): part.reset_index(drop=True)
        for asset, part in frame.groupby(frame["asset"].astype(str), sort=True)
    }


def _empty_bars() -> pd.DataFrame:
    frame = pd.DataFrame({c: pd.Series(dtype="float64") for c in REQUIRED_COLUMNS})
    frame["ts"] = pd.Series(dtype="datetime64[ns, UTC]")
    frame["asset"] = pd.Series(dtype="string")
    return frame


def _empty_frame(columns: list[str]) -> pd.DataFrame:
    frame = pd.DataFrame({c: pd.Series(dtype="float64") for c in columns})
    frame["ts"] = pd.Series(dtype="datetime64[ns, UTC]")
    frame["asset"] = pd.Series(dtype="string")
    return frame


def _hash(version: str, interval: str, config: FeatureConfig, catalog: list[FeatureSpec]) -> str:
    payload = {
        "library_version": version,
        "interval": interval,
        "config": config.to_dict(),
        "catalog": [dataclasses.asdict(spec) for spec in catalog],
    }
    text = json.dumps(payload, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()


def _iso(ts: pd.Timestamp) -> str:
    return pd.Timestamp(ts).isoformat()


def _atomic_write(target: Path, write: Callable[[str], None]) -> None:
    handle, temporary = tempfile.mkstemp(prefix=f".{target.name}.", dir=target.parent)
    os.close(handle)
    try:
        write(temporary)
        os.replace(temporary, target)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
