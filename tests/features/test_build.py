"""Feature assembly: catalog = columns, models contract, hash, Parquet, stages, CLI, real data."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from features.build import (
    FeatureConfig,
    FeatureConfigError,
    FeatureSet,
    FeatureSetError,
    asset_inputs,
    build_asset_features,
    build_cross_asset_features,
    build_features,
    build_market_context,
    feature_catalog,
    feature_set_hash,
)
from features.market import MarketData
from features.synthetic import SyntheticMarketConfig, generate_market
from features.volatility import log_returns

FAMILIES = {
    "volatility",
    "har",
    "jump",
    "range",
    "orderflow",
    "liquidity",
    "cross_asset",
    "funding",
    "basis",
    "calendar",
    "funding_stress",
    "activity",
    "positioning",
    "macro_event",
    "cross_asset_lead",
}


@pytest.fixture(scope="module")
def market() -> MarketData:
    return generate_market(SyntheticMarketConfig(n_assets=4, days=45, seed=11))


@pytest.fixture(scope="module")
def built(market: MarketData) -> FeatureSet:
    return build_features(market)


def test_the_catalog_lists_every_column_and_nothing_else(built: FeatureSet) -> None:
    features = [c for c in built.frame.columns if c not in ("ts", "asset")]
    assert list(built.frame.columns[:2]) == ["ts", "asset"]
    assert built.feature_names == features
    assert len(set(features)) == len(features)
    assert feature_catalog(built.config, built.interval) == built.catalog
    for spec in built.catalog:
        assert spec.family in FAMILIES, spec
        assert spec.window and len(spec.definition) > 10, spec
        assert built.frame[spec.name].dtype == np.float64, spec.name


def test_the_catalog_follows_the_config_windows() -> None:
    config = FeatureConfig(rv_windows_hours=(12, 48), range_windows_hours=(12,))
    names = [spec.name for spec in feature_catalog(config, "2h")]
    assert "rv_12h" in names and "rv_48h" in names and "parkinson_12h" in names
    assert "ret_2h" in names and "parkinson_24h" not in names


def test_the_models_contract_columns(market: MarketData, built: FeatureSet) -> None:
    frame = built.frame
    for column in ("rv_24h", "har_d", "har_w", "har_m", "rq_24h", "ret_1h", "ewma_var"):
        assert column in frame.columns
    np.testing.assert_array_equal(frame["har_d"], frame["rv_24h"])
    np.testing.assert_allclose(frame["har_w"], frame["rv_168h"] / 7.0, rtol=1e-15)
    np.testing.assert_allclose(frame["har_m"], frame["rv_720h"] / 30.0, rtol=1e-15)
    # The features and the forecast target use the same returns.
    returns = log_returns(market.bars, market.interval)
    merged = frame[["ts", "asset", "ret_1h"]].merge(returns, on=["ts", "asset"])
    assert len(merged) == len(frame)
    np.testing.assert_array_equal(merged["ret_1h"], merged["ret"])
    # rv_24h is the sum of the last 24 squared returns, bar t included.
    one = frame[frame["asset"] == frame["asset"].iloc[0]].reset_index(drop=True)
    t = 500
    expected = np.nansum(one["ret_1h"].iloc[t - 23 : t + 1] ** 2)
    assert one["rv_24h"].iloc[t] == pytest.approx(expected, rel=1e-12)


def test_one_row_per_ts_and_asset_on_a_complete_grid(built: FeatureSet, market: MarketData) -> None:
    frame = built.frame
    assert not frame.duplicated(["ts", "asset"]).any()
    assert str(frame["ts"].dtype) == "datetime64[ns, UTC]"
    for _, part in frame.groupby("asset", observed=True):
        steps = part["ts"].diff().dropna().unique()
        assert list(steps) == [pd.Timedelta("1h")]
    assert set(frame["asset"].astype(str)) == set(market.assets)


def test_sane_value_ranges_on_the_synthetic_market(built: FeatureSet) -> None:
    f = built.frame
    for column in ("rv_24h", "bv_24h", "parkinson_24h", "ewma_var", "amihud_24h", "rq_24h"):
        assert (f[column].dropna() >= 0).all(), column
    assert f["vpin_24h"].dropna().between(0, 1).all()
    assert f["taker_imbalance"].dropna().between(-1, 1).all()
    for column in ("corr_btc_168h", "corr_mkt_168h"):
        assert f[column].dropna().between(-1, 1).all()
    assert f["vol_rank_24h"].dropna().between(0, 1).all()
    # Range estimators and RV measure the same variance on a diffusion-like market.
    ratio = f["parkinson_168h"].median() / f["rv_168h"].median()
    assert 0.5 < ratio < 1.5


def test_the_three_stages_reproduce_the_in_process_build(
    market: MarketData, built: FeatureSet
) -> None:
    config = built.config
    end = market.bars["ts"].max()
    stage_one = [build_asset_features(inputs, config, "1h", end) for inputs in asset_inputs(market)]
    context = build_market_context(stage_one, config, "1h")
    frames = [build_cross_asset_features(frame, context, config, "1h") for frame in stage_one]
    staged = pd.concat(frames, ignore_index=True)[built.frame.columns]
    pd.testing.assert_frame_equal(staged, built.frame)


def test_the_hash_is_stable_across_processes_and_changes_with_the_config() -> None:
    here = feature_set_hash()
    code = "from features.build import feature_set_hash; print(feature_set_hash())"
    env = {**os.environ, "PYTHONHASHSEED": "12345"}
    other = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env
    ).stdout.strip()
    assert other == here and len(here) == 64
    assert feature_set_hash(FeatureConfig(ewma_lambda=0.97)) != here
    assert feature_set_hash(interval="2h") != here


def test_parquet_round_trip_is_exact_and_atomic(built: FeatureSet, tmp_path: Path) -> None:
    target = built.to_parquet(tmp_path / "fs")
    assert sorted(p.name for p in target.iterdir()) == ["catalog.json", "features.parquet"]
    loaded = FeatureSet.from_parquet(target)
    pd.testing.assert_frame_equal(loaded.frame, built.frame)
    assert loaded.catalog == built.catalog
    assert loaded.config == built.config
    assert loaded.feature_set_hash == built.feature_set_hash


def test_a_tampered_catalog_is_refused(built: FeatureSet, tmp_path: Path) -> None:
    target = built.to_parquet(tmp_path / "fs")
    manifest = json.loads((target / "catalog.json").read_text())
    manifest["catalog"][0]["definition"] = "something else"
    (target / "catalog.json").write_text(json.dumps(manifest))
    with pytest.raises(FeatureSetError, match="does not match"):
        FeatureSet.from_parquet(target)
    with pytest.raises(FeatureSetError, match="missing"):
        FeatureSet.from_parquet(tmp_path / "nowhere")


@pytest.mark.parametrize(
    ("kwargs", "interval", "message"),
    [
        ({"rv_windows_hours": (0,)}, "1h", "positive whole hours"),
        ({"har_windows_hours": (168, 24, 720)}, "1h", "three increasing"),
        ({"min_valid_fraction": 1.5}, "1h", "min_valid_fraction"),
        ({"ewma_lambda": 1.0}, "1h", "ewma_lambda"),
        ({"rv_windows_hours": (3,)}, "2h", "not a whole number"),
    ],
)
def test_bad_configs_fail_with_a_sentence(kwargs: dict, interval: str, message: str) -> None:
    with pytest.raises(FeatureConfigError, match=message):
        feature_catalog(FeatureConfig(**kwargs), interval)


def test_an_empty_market_builds_an_empty_matrix_with_all_columns() -> None:
    market = generate_market(SyntheticMarketConfig(n_assets=2, days=2, seed=1))
    empty = MarketData(bars=market.bars.iloc[0:0], interval="1h")
    built = build_features(empty)
    assert built.frame.empty
    assert built.feature_names == [c for c in built.frame.columns if c not in ("ts", "asset")]


# --- CLI -----------------------------------------------------------------------------------


def test_cli_catalog_json_matches_the_library() -> None:
    from pipelines.cli import app

    result = CliRunner().invoke(app, ["features", "catalog", "--json"])
    assert result.exit_code == 0, result.output
    payload = json.loads(result.output)
    assert [f["name"] for f in payload["features"]] == [s.name for s in feature_catalog()]
    assert payload["feature_set_hash"] == feature_set_hash()


def test_cli_build_from_a_store(workdir: Path, market: MarketData) -> None:
    from features.store import MarketStore
    from pipelines.cli import app

    MarketStore(workdir / "store").ingest_market(market, source="test")
    result = CliRunner().invoke(app, ["features", "build", "--json"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.output)
    assert summary["assets"] == market.assets
    loaded = FeatureSet.from_parquet(workdir / "features")
    assert len(loaded.frame) == summary["rows"] > 0


def test_cli_build_reports_missing_data_in_one_line(workdir: Path) -> None:
    from pipelines.cli import app

    result = CliRunner().invoke(app, ["features", "build"])
    assert result.exit_code == 1
    assert "features build failed" in result.output


# --- real shared data ---------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.shared_data
def test_real_data_builds_with_sane_values(shared_data: Path, tmp_path: Path) -> None:
    from features.sources import load_market

    market, _ = load_market(
        shared_data, "1h", ["BTCUSDT", "ETHUSDT", "BNBUSDT"], start="2024-01-01", end="2024-05-01"
    )
    built = build_features(market)
    f = built.frame
    assert set(f["asset"].astype(str)) == {"BTCUSDT", "ETHUSDT", "BNBUSDT"}
    assert len(f) == 3 * 121 * 24
    annual_vol = np.sqrt(f.groupby("asset", observed=True)["rv_24h"].median() * 365)
    assert annual_vol.between(0.15, 1.5).all(), annual_vol
    assert f["vpin_24h"].dropna().between(0, 1).all()
    assert f["corr_btc_168h"].dropna().between(-1, 1).all()
    btc_eth = f[f["asset"] == "ETHUSDT"]["corr_btc_168h"].median()
    assert btc_eth > 0.5  # ETH and BTC co-move
    # BNB has no perpetual in the shared data: rows kept, funding and basis NaN.
    bnb = f[f["asset"] == "BNBUSDT"]
    assert bnb["funding_rate"].isna().all() and bnb["perp_basis"].isna().all()
    btc = f[f["asset"] == "BTCUSDT"]
    assert btc["funding_rate"].notna().mean() > 0.95
    assert btc["funding_rate"].abs().max() < 0.01
    assert btc["perp_basis"].abs().median() < 0.005
    assert not f.duplicated(["ts", "asset"]).any()
    FeatureSet.from_parquet(built.to_parquet(tmp_path / "real"))
