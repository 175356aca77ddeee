"""``dynamargin publish --replay``: the publishing policy replayed over a baseline's history.

Orchestration only: the market (:func:`features.market_source.read_market`), the baseline's
out-of-sample walk-forward (:func:`models.walkforward.run_evaluation`), the policy replay
(:func:`serving.policy_replay.replay_policy`).
"""

from __future__ import annotations

import pandas as pd

from contracts.timestamps import utc_timestamp
from features.market_source import read_market
from models.spec import TargetSpec
from models.walkforward import EvaluationConfig, run_evaluation
from pipelines.flows.config import DataConfig, PublishConfig
from pipelines.settings import Settings
from pipelines.stores import market_store
from serving.policy import load_policy_book
from serving.policy_replay import replay_policy

DEFAULT_BASELINE = "har"
"""The forecasts replayed for ``--model champion``: its own evidence covers only its test."""
PUBLIC_TEST_START = "2024-07-01"
"""Default first scored day: the public test period of ``../shared/data``."""
PUBLIC_TEST_END = "2025-07-01"
"""Default end (exclusive) of the replayed data."""


def replay_policy_on_baseline(
    settings: Settings,
    publish: PublishConfig,
    data: DataConfig,
    test_start: str | None = None,
) -> list[dict[str, object]]:
    """Replay the policy over walk-forward forecasts of the test period.

    Forecasts are the out-of-sample walk-forward of the baseline named by ``publish.model``
    (``baseline:har`` for ``champion``: a champion's own evidence covers only its test
    window). The data ``[start, end)`` default to two years before ``test_start``
    (default :data:`PUBLIC_TEST_START`) through :data:`PUBLIC_TEST_END`.

    Returns
    -------
    list of dict
        Per asset: changes per week, time at floor and cap, fallback share, mean multiplier,
        median lead hours before the largest realized-vol spikes, spikes led / found.
    """
    scored_from = utc_timestamp(test_start or PUBLIC_TEST_START)
    stop = utc_timestamp(data.end or PUBLIC_TEST_END)
    first = utc_timestamp(data.start) if data.start else scored_from - pd.DateOffset(years=2)
    market = read_market(
        data.data,
        market_store(settings),
        data.interval,
        data.assets,
        first.isoformat(),
        stop.isoformat(),
    )
    kind = publish.baseline or DEFAULT_BASELINE
    target = TargetSpec(horizon=settings.horizon_hours)
    result = run_evaluation(
        market, scored_from, stop, EvaluationConfig().with_models([kind]), target=target
    )
    forecasts = result.contract_forecasts(f"baseline-{kind}", with_realized=True)
    book = load_policy_book(settings.policy_path(publish.policy_config))
    report = replay_policy(forecasts, book, horizon_hours=target.horizon)
    source = {"from": scored_from.isoformat(), "forecasts": f"baseline:{kind} walk-forward"}
    return [{**summary.summary_row(), **source} for summary in report.assets.values()]
