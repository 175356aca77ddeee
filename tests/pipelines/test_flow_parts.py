"""The plain parts behind the flows: digests, configs, schedules, training and publish glue.

No Prefect server needed: these run in seconds.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from features.build import build_features
from features.synthetic import SyntheticMarketConfig, generate_market
from pipelines.flows.config import (
    PipelineConfig,
    PublishConfig,
    TrainConfig,
    demo_config,
)
from pipelines.flows.digest import content_digest

PROJECT_ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def feature_set():  # type: ignore[no-untyped-def]
    market = generate_market(SyntheticMarketConfig(n_assets=3, days=120, seed=3))
    return build_features(market)


# -- content digest -------------------------------------------------------------------


frames = st.integers(min_value=1, max_value=30).flatmap(
    lambda n: st.lists(
        st.floats(allow_nan=True, allow_infinity=False, width=64), min_size=n, max_size=n
    )
)


@given(values=frames, position=st.integers(min_value=0))
@settings(max_examples=50, deadline=None)
def test_digest_is_a_function_of_content(values: list[float], position: int) -> None:
    frame = pd.DataFrame({"x": values, "asset": ["BTC"] * len(values)})
    assert content_digest(frame) == content_digest(frame.copy())
    changed = frame.copy()
    i = position % len(values)
    old = changed.loc[i, "x"]
    changed.loc[i, "x"] = 1.0 if (np.isnan(old) or old != 1.0) else 2.0
    assert content_digest(changed) != content_digest(frame)


def test_digest_sees_dtypes_names_and_rejects_unknown_objects() -> None:
    frame = pd.DataFrame({"x": [1, 2, 3]})
    assert content_digest(frame) != content_digest(frame.astype("float64"))
    assert content_digest(frame) != content_digest(frame.rename(columns={"x": "y"}))
    assert content_digest({"a": 1, "b": 2}) == content_digest({"b": 2, "a": 1})
    with pytest.raises(TypeError, match="cannot hash a object"):
        content_digest(object())


# -- configuration and schedules --------------------------------------------------------


def test_configs_reject_what_cannot_run() -> None:
    # pydantic wraps the FlowConfigError raised by the validators; the message survives.
    with pytest.raises(ValueError, match="candidate 'lgbm'"):
        TrainConfig(models=("ewma", "har"), candidate="lgbm")
    with pytest.raises(ValueError, match="har"):
        TrainConfig(models=("ewma", "lgbm"))
    with pytest.raises(ValueError, match="unknown publish model"):
        PublishConfig(model="baseline:garch")
    demo = demo_config()
    assert demo.review.auto_promote and demo.publish.publish_time == "data-end"
    assert PipelineConfig().review.auto_promote is False  # production waits for a human


def test_deployments_follow_the_issue_schedules(tmp_path: Path) -> None:
    from pipelines.flows.deploy import SCHEDULES, build_deployments, deployment_parameters

    crons = {s.name: s.cron for s in SCHEDULES}
    assert crons == {
        "retrain-daily": "30 0 * * *",
        "publish-hourly": "5 * * * *",
        "backtest-weekly": "0 2 * * 1",
    }
    params = deployment_parameters(str(tmp_path), PipelineConfig())
    json.dumps(params)  # a deployment's parameters must be JSON
    retrain = PipelineConfig.model_validate(params["retrain-daily"]["config"])
    assert retrain.backtest.enabled is False
    deployments = build_deployments(str(tmp_path), PipelineConfig())
    assert [d.name for d in deployments] == list(crons)
    for deployment in deployments:
        (schedule,) = deployment.schedules
        assert schedule.schedule.cron == crons[deployment.name]
        assert schedule.schedule.timezone == "UTC"


def test_prefect_yaml_matches_the_served_deployments() -> None:
    from pipelines.flows.deploy import SCHEDULES

    document = yaml.safe_load((PROJECT_ROOT / "prefect.yaml").read_text())
    declared = {d["name"]: d for d in document["deployments"]}
    assert set(declared) == {s.name for s in SCHEDULES}
    for item in SCHEDULES:
        deployment = declared[item.name]
        assert deployment["schedules"] == [{"cron": item.cron, "timezone": "UTC"}]
        # An importable module path, never a script path (see test_module_names.py).
        module, _, name = deployment["entrypoint"].rpartition(".")
        assert ":" not in module and "/" not in module, deployment["entrypoint"]
        flow = getattr(__import__(module, fromlist=[name]), name)
        assert flow.name == item.flow
        # Every parameter the file sets is one the flow accepts.
        assert set(deployment["parameters"]) <= set(flow.parameters.properties)
    retrain = declared["retrain-daily"]["parameters"]["config"]
    assert PipelineConfig.model_validate(retrain).backtest.enabled is False


# -- training helpers ---------------------------------------------------------------------


def test_scored_window_refuses_too_short_data(feature_set) -> None:  # type: ignore[no-untyped-def]
    from pipelines.flows.training import TrainingInputError, scored_window

    window = scored_window(feature_set, TrainConfig(test_days=20), 24)
    assert window.end - window.start == pd.Timedelta(days=20)
    assert window.end <= feature_set.frame["ts"].max() - pd.Timedelta(hours=23)
    with pytest.raises(TrainingInputError, match="too short"):
        scored_window(feature_set, TrainConfig(test_days=60), 24)


def test_leakage_evidence_flags_a_model_reading_targets() -> None:
    from pipelines.flows.training import leakage_evidence

    class Reads:
        def __init__(self, names: list[str]) -> None:
            self.feature_names_ = names

    passed, detail = leakage_evidence(Reads(["rv_24h", "rv_fwd"]), True, "features ok")
    assert not passed and "rv_fwd" in detail
    passed, detail = leakage_evidence(Reads(["rv_24h"]), True, "features ok")
    assert passed and "none a target" in detail
    assert leakage_evidence(Reads(["rv_24h"]), False, "features leak")[0] is False


def test_training_panel_targets_are_the_forward_sum(feature_set) -> None:  # type: ignore[no-untyped-def]
    from pipelines.flows.training import training_panel

    panel = training_panel(feature_set, 24)
    one = panel[panel["asset"] == panel["asset"].iloc[0]].reset_index(drop=True)
    r = one["ret_1h"].to_numpy()
    expected = np.sum(r[1:25] ** 2)
    assert one.loc[0, "rv_fwd"] == pytest.approx(expected, rel=1e-12)
    assert one["rv_fwd"].tail(24).isna().all()


# -- publish glue ---------------------------------------------------------------------


def test_baseline_forecasts_meet_the_contract(feature_set) -> None:  # type: ignore[no-untyped-def]
    from contracts.forecast import validate_forecasts
    from pipelines.publish import baseline_forecasts

    bundle = baseline_forecasts("har", feature_set, 24, history_days=10, calibration_days=30)
    frame = bundle.forecasts
    validate_forecasts(frame)
    assert bundle.source == "baseline:har" and not bundle.is_fallback
    assert frame["ts"].max() == feature_set.frame["ts"].max()
    assert (frame["sigma_lower"] <= frame["sigma"]).all()
    assert (frame["var_99"] <= frame["es_99"]).all()
    assert set(frame["asset"]) == set(feature_set.frame["asset"].astype(str))


def test_fallback_bundle_is_a_valid_empty_forecast(feature_set) -> None:  # type: ignore[no-untyped-def]
    from contracts.forecast import validate_forecasts
    from pipelines.publish import fallback_bundle, publication_time

    bundle = fallback_bundle("no champion", feature_set)
    assert bundle.is_fallback and bundle.forecasts.empty
    validate_forecasts(bundle.forecasts)
    end = publication_time(feature_set, "data-end")
    assert pd.Timestamp(end) == feature_set.frame["ts"].max() + pd.Timedelta(hours=1)


def test_retry_only_transient_errors() -> None:
    from features.errors import MalformedFileError
    from pipelines.flows.runtime import retry_transient

    class State:
        def __init__(self, error: BaseException) -> None:
            self.error = error

        def result(self, raise_on_failure: bool = True) -> BaseException:
            return self.error

    assert retry_transient(None, None, State(TimeoutError("slow disk")))
    assert retry_transient(None, None, State(OSError("database is locked")))
    assert not retry_transient(None, None, State(MalformedFileError("x.zip", "corrupt")))
    assert not retry_transient(None, None, State(ValueError("bad config")))


def test_automatic_promotion_follows_the_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    from pipelines.commands.flows import _flow_config
    from pipelines.settings import get_settings

    monkeypatch.delenv("DYNAMARGIN_AUTO_PROMOTE", raising=False)
    assert _flow_config(get_settings(), None, None, 2, 240, 1).review.auto_promote is False
    monkeypatch.setenv("DYNAMARGIN_AUTO_PROMOTE", "true")
    assert _flow_config(get_settings(), None, None, 2, 240, 1).review.auto_promote is True
