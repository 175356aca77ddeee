"""What a training run logs: params, metrics, artifacts, model, lineage."""

from __future__ import annotations

from pathlib import Path

import mlflow
import pytest
from hypothesis import given
from hypothesis import strategies as st

from models.tracking import evaluation_metrics, feature_set_hash, sanitize_key
from tests.models.registry_factory import DATA_THROUGH, ReviewedStore, training_run


@pytest.fixture(scope="module")
def logged(reviewed: ReviewedStore):
    client = reviewed.backend.store.client()
    return client, client.get_run(reviewed.second.run.run_id)


def test_params_cover_model_features_data_and_code(logged) -> None:
    _, run = logged
    params = run.data.params
    assert params["model.class"] == "sklearn.linear_model._ridge.Ridge"
    assert params["model.alpha"] == "1.0"
    assert params["feature.windows"] == "[1, 24]"
    assert params["feature_set_hash"] == feature_set_hash(training_run().feature_catalog)
    assert params["data.through"] == DATA_THROUGH.isoformat()
    assert params["data.start"] < params["data.through"]
    assert params["git.commit"] != ""
    assert params["model.serialization"] == "skops"


def test_metrics_cover_every_asset_and_pooled_number(logged) -> None:
    _, run = logged
    expected = evaluation_metrics(training_run(challenger_error=0.1, seed=2).evaluation)
    assert expected.keys() <= run.data.metrics.keys()
    for key in (
        "assets.BTCUSDT.qlike.lgbm",
        "assets.ETHUSDT.var99.kupiec_p",
        "mean.qlike.har",
        "assets.BTCUSDT.var99.zone_level",
    ):
        assert run.data.metrics[key] == pytest.approx(expected[key])


def test_artifacts_model_and_lineage(logged, reviewed: ReviewedStore) -> None:
    client, run = logged
    paths = {
        a.path
        for sub in ("evaluation", "features", "plots")
        for a in client.list_artifacts(run.info.run_id, sub)
    }
    assert {
        "evaluation/evaluation.json",
        "evaluation/forecasts.parquet",
        "features/catalog.csv",
        "features/importance.csv",
        "plots/calibration.png",
        "plots/forecast_vs_realized.png",
    } <= paths
    artifact_dir = Path(run.info.artifact_uri.removeprefix("file://"))
    assert artifact_dir.is_relative_to(reviewed.backend.workdir)
    inputs = run.inputs.dataset_inputs
    assert len(inputs) == 1 and inputs[0].dataset.name.startswith("features-")
    assert {t.key: t.value for t in inputs[0].tags}["mlflow.data.context"] == "training"
    with reviewed.backend.store.bound():
        info = mlflow.models.get_model_info(reviewed.second.run.model_uri)
    assert info.signature is not None and info.saved_input_example_info is not None
    assert [c.name for c in info.signature.inputs.inputs][:2] == ["rv_1h", "rv_24h"]


@given(st.text(max_size=300))
def test_sanitized_keys_only_use_mlflow_characters(key: str) -> None:
    clean = sanitize_key(key)
    assert 0 < len(clean) <= 250
    assert all(c.isascii() and (c.isalnum() or c in "_-./ ") for c in clean)
    assert ".." not in clean and not clean.startswith("/")


def test_feature_set_hash_ignores_row_and_column_order() -> None:
    catalog = training_run().feature_catalog
    shuffled = catalog.sample(frac=1.0, random_state=3)[list(reversed(catalog.columns))]
    assert feature_set_hash(shuffled) == feature_set_hash(catalog)
    assert feature_set_hash(catalog.iloc[1:]) != feature_set_hash(catalog)
