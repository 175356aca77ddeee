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

from liquidation.equal_margin import EqualMarginConfig
from liquidation.simulate import ReplayConfig
from models.review import GateConfig
from models.spec import LGBMParams
from models.walkforward import EvaluationConfig
from pipelines.flows.config import (
    BacktestConfig,
    FlowConfigError,
    PipelineConfig,
    PublishConfig,
    TrainConfig,
    demo_config,
    load_pipeline_config,
)
from pipelines.flows.digest import content_digest

PROJECT_ROOT = Path(__file__).resolve().parents[2]


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
    # pydantic wraps the errors raised by the validators; the message survives.
    with pytest.raises(ValueError, match="primary 'lgbm' is not among"):
        EvaluationConfig(models=("ewma", "har"))
    with pytest.raises(ValueError, match="review gates compare against \\['har'\\]"):
        PipelineConfig(train=TrainConfig(evaluation=EvaluationConfig(models=("ewma", "lgbm"))))
    with pytest.raises(ValueError, match="baseline:garch"):
        PublishConfig(model="baseline:garch")
    with pytest.raises(ValueError, match="extra"):
        TrainConfig.model_validate({"lgbm": {"n_estimators": 5}})
    with pytest.raises(ValueError, match="unknown policies"):
        BacktestConfig(policies=("static", "magic"))
    demo = demo_config()
    assert demo.review.auto_promote and demo.publish.publish_time == "data-end"
    assert PipelineConfig().review.auto_promote is False  # production waits for a human


def test_one_set_of_defaults_per_concept() -> None:
    # Each concept has one config class; the pipeline nests it with that class's defaults.
    config = PipelineConfig()
    assert config.train.evaluation == EvaluationConfig()
    assert config.review.gates == GateConfig()
    assert config.backtest.replay == ReplayConfig()
    assert config.backtest.equal_margin == EqualMarginConfig()
    # The demo's short-market training is explicit values of the same classes.
    short = demo_config().train.evaluation
    assert (short.warmup_months, short.tune_months, short.calibration.window_days) == (1, 1, 60)
    assert isinstance(short.estimators["lgbm"], LGBMParams)


def test_a_pipeline_config_round_trips_through_json_and_toml(tmp_path: Path) -> None:
    import tomllib

    config = demo_config()
    path = tmp_path / "pipeline.json"
    path.write_text(config.model_dump_json())
    assert load_pipeline_config(path) == config
    toml = tmp_path / "pipeline.toml"
    toml.write_text(
        '[train.evaluation]\nmodels = ["har", "lgbm"]\n'
        '[train.evaluation.estimators.lgbm]\nkind = "lgbm"\nn_estimators = 50\n'
        "[backtest.replay.book]\nn_traders = 1000\n"
    )
    loaded = load_pipeline_config(toml)
    assert loaded.train.evaluation.estimators["lgbm"].n_estimators == 50
    assert loaded.backtest.replay.book.n_traders == 1000
    assert tomllib.loads(toml.read_text())  # the file is plain TOML
    toml.write_text("[train]\nlgbm = {n_estimators = 5}\n")
    with pytest.raises(FlowConfigError, match="not a valid pipeline config"):
        load_pipeline_config(toml)


def test_deployments_follow_the_documented_schedules(tmp_path: Path) -> None:
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
