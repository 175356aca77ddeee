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
the estimators and the min-valid rule for windows, and :mod:`features.columns` for the
column definitions of each family. :class:`FeatureConfig`, :class:`FeatureSpec`,
:class:`AssetInputs` and :class:`MarketContext` are defined there and re-exported here, the
public home of the feature-set API.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Final

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from contracts.files import atomic_write, atomic_write_text
from features import cross_asset
from features.bars import REQUIRED_COLUMNS, interval_to_timedelta
from features.columns.asset_columns import asset_columns
from features.columns.config import FeatureConfig, FeatureConfigError
from features.columns.cross_columns import cross_columns
from features.columns.inputs import AssetInputs, MarketContext
from features.columns.registry import ColumnNames, FeatureSpec
from features.errors import FeatureInputError, StoreError
from features.market import POSITIONING_COLUMNS, MarketData, empty_positioning
from features.volatility import complete_grid

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


class FeatureSetError(StoreError):
    """A persisted feature set that is incomplete or inconsistent with its catalog."""


# --------------------------------------------------------------------------------------
# Public types
# --------------------------------------------------------------------------------------


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

    @property
    def data_end(self) -> datetime:
        """Close of the last bar (UTC): the time the newest row's information is known."""
        return (self.frame["ts"].max() + interval_to_timedelta(self.interval)).to_pydatetime()

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
        atomic_write(directory / FRAME_FILE, lambda path: pq.write_table(table, path))
        text = json.dumps(manifest, indent=2, sort_keys=True)
        atomic_write_text(directory / CATALOG_FILE, text)
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
    positioning = _by_asset(market.positioning, POSITIONING_COLUMNS, "positioning")
    empty_funding = market.funding.iloc[0:0] if "asset" in market.funding else pd.DataFrame()
    # One empty frame shared by every asset without rows (building one per asset costs more
    # than some column families); the builders only read their inputs.
    no_positioning, no_perp = empty_positioning(), pd.DataFrame()
    return [
        AssetInputs(
            asset=str(asset),
            bars=bars,
            funding=funding.get(str(asset), empty_funding),
            perp=perp.get(str(asset), no_perp),
            positioning=positioning.get(str(asset), no_positioning),
            events=market.events,
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
    columns = asset_columns(grid, inputs, config, interval)
    keys = grid[["ts", "asset"]].reset_index(drop=True)
    return pd.concat([keys, columns.frame(len(keys))], axis=1)


def build_market_context(
    asset_frames: Sequence[pd.DataFrame], config: FeatureConfig, interval: str = "1h"
) -> MarketContext:
    """Stage 2: cross-sectional panels from the stage-1 frames of all assets."""
    names = ColumnNames(config, interval)
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
    columns = cross_columns(asset_frame, context, config, interval)
    return pd.concat([asset_frame.reset_index(drop=True), columns.frame(len(asset_frame))], axis=1)


def feature_catalog(config: FeatureConfig | None = None, interval: str = "1h") -> list[FeatureSpec]:
    """The catalog of the matrix :func:`build_features` returns, without any data.

    It is produced by the same column builders run on an empty asset, so it cannot drift
    from the matrix. The result is cached per ``(config, interval)`` (both immutable): every
    build assembles its matrix with it, and running the builders costs as much as a
    small asset (the hourly incremental update pays it on every bar otherwise).
    """
    config = config or FeatureConfig()
    if not _hashable(config):
        return list(_catalog.__wrapped__(config, interval))
    return list(_catalog(config, interval))


@functools.lru_cache(maxsize=32)
def _catalog(config: FeatureConfig, interval: str) -> tuple[FeatureSpec, ...]:
    empty = AssetInputs(asset="_", bars=_empty_bars(), funding=pd.DataFrame(), perp=pd.DataFrame())
    grid = complete_grid(empty.bars, interval, columns=REQUIRED_COLUMNS[2:])
    stage_one = asset_columns(grid, empty, config, interval)
    frame = pd.concat(
        [pd.DataFrame({"ts": grid["ts"], "asset": grid["asset"]}), stage_one.frame(0)], axis=1
    )
    context = build_market_context([], config, interval)
    stage_three = cross_columns(frame, context, config, interval)
    return (*stage_one.specs, *stage_three.specs)


def feature_set_hash(config: FeatureConfig | None = None, interval: str = "1h") -> str:
    """Stable sha256 of library version, interval, config and catalog (cached like the catalog)."""
    config = config or FeatureConfig()
    if not _hashable(config):
        return _set_hash.__wrapped__(config, interval)
    return _set_hash(config, interval)


@functools.lru_cache(maxsize=32)
def _set_hash(config: FeatureConfig, interval: str) -> str:
    return _hash(FEATURE_LIBRARY_VERSION, interval, config, feature_catalog(config, interval))


# --------------------------------------------------------------------------------------
# Small private helpers
# --------------------------------------------------------------------------------------


def _hashable(config: FeatureConfig) -> bool:
    # A config built with a list where a tuple is expected cannot key the cache.
    try:
        hash(config)
    except TypeError:
        return False
    return True


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
