"""The replay runners: a Dask cluster gives the local runner's results bit for bit.

The cluster is a real 2-worker ``distributed.LocalCluster`` of worker *processes*, so the
market, scenarios and config cross a pickle boundary as they do to a remote cluster.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import fields, replace

import numpy as np
import pytest
from distributed import Client, LocalCluster

from liquidation.runners import DaskRunner, LocalRunner, make_replay_runner, replay_units
from liquidation.simulate import (
    ReplayInputError,
    ReplaySeries,
    Scenario,
    constant_multiplier,
    simulate,
)
from tests.liquidation.replay_builders import random_walk_market, small_config


@pytest.fixture(scope="module")
def client() -> Iterator[Client]:
    with (
        LocalCluster(
            n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None
        ) as cluster,
        Client(cluster) as connected,
    ):
        yield connected


def _scenarios(market, seeds=(0, 1, 2)) -> list[Scenario]:  # type: ignore[no-untyped-def]
    rng = np.random.default_rng(3)
    dynamic = np.clip(np.exp(np.cumsum(rng.normal(0, 0.05, market.open.shape), axis=1)), 0.8, 3)
    # Seeds interleaved on purpose: the runners must regroup them and restore this order.
    return [
        Scenario(label, seed, path)
        for label, path in (("static", constant_multiplier(market, 1.0)), ("dyn", dynamic))
        for seed in seeds
    ]


def _assert_identical(left: list[ReplaySeries], right: list[ReplaySeries]) -> None:
    assert len(left) == len(right)
    for a, b in zip(left, right, strict=True):
        for f in fields(ReplaySeries):
            x, y = getattr(a, f.name), getattr(b, f.name)
            if isinstance(x, np.ndarray):
                assert x.dtype == y.dtype, f.name
                np.testing.assert_array_equal(x, y, err_msg=f"{a.label}/{a.seed} {f.name}")
            else:
                assert x == y, f.name


def test_units_are_seeds_in_order() -> None:
    market = random_walk_market(1, n_bars=10)
    assert replay_units(_scenarios(market)) == [[0, 3], [1, 4], [2, 5]]
    assert replay_units([]) == []


def test_dask_replay_equals_local_bit_for_bit(client: Client) -> None:
    market = random_walk_market(7, n_assets=3, n_bars=500)
    cfg = small_config(3_000)
    scenarios = _scenarios(market)
    local = LocalRunner().simulate(market, scenarios, cfg)
    on_dask = DaskRunner(client).simulate(market, scenarios, cfg)
    _assert_identical(local, on_dask)
    assert [(r.label, r.seed) for r in on_dask] == [(s.label, s.seed) for s in scenarios]
    # Not a vacuous equality: the replay liquidates, and the seeds differ.
    assert sum(int(r.liquidations.sum()) for r in local) > 0
    assert not np.array_equal(local[0].liquidations, local[1].liquidations)
    # A seed's unit is the same pass on its own: the result of a seed does not depend on
    # which other seeds run.
    _assert_identical([local[1], local[4]], simulate(market, [scenarios[1], scenarios[4]], cfg))


def test_dask_replay_with_impact_and_bridge_equals_local(client: Client) -> None:
    market = random_walk_market(8, n_assets=2, n_bars=300)
    cfg = replace(small_config(2_000), path="bridge", impact="on", book_model="market")
    scenarios = _scenarios(market, seeds=(0, 1))
    _assert_identical(
        LocalRunner().simulate(market, scenarios, cfg),
        DaskRunner(client).simulate(market, scenarios, cfg),
    )


def test_unknown_runner_and_dask_without_client_are_clear_errors() -> None:
    assert make_replay_runner("local").name == "local"
    with pytest.raises(ReplayInputError, match="unknown replay runner 'spark'"):
        make_replay_runner("spark")
    with pytest.raises(ReplayInputError, match=r"needs a distributed\.Client"):
        make_replay_runner("dask")


def test_one_pass_with_units_equals_a_pass_per_unit_bit_for_bit() -> None:
    # simulate(units=...) shares the pass over the bars but not the position slots, so each
    # seed's results (the slot-order float sums included) are those of its own pass. A plain
    # shared pass is not: the test would be vacuous if it were.
    market = random_walk_market(11, n_assets=3, n_bars=400)
    cfg = replace(small_config(3_000), book=replace(small_config().book, topup_max_count=2))
    scenarios = _scenarios(market)
    units = replay_units(scenarios)
    together = simulate(market, scenarios, cfg, units=units)
    assert sum(int(r.topups.sum()) for r in together) > 0
    assert sum(int(r.liquidations.sum()) for r in together) > 0
    for unit in units:
        alone = simulate(market, [scenarios[i] for i in unit], cfg)
        _assert_identical([together[i] for i in unit], alone)
    shared = simulate(market, scenarios, cfg)
    assert any(
        not np.array_equal(a.initial_margin, b.initial_margin)
        for a, b in zip(together, shared, strict=True)
    )
    assert LocalRunner().simulate(market, [], cfg) == []


def test_units_must_partition_the_scenarios() -> None:
    market = random_walk_market(1, n_bars=10)
    scenarios = _scenarios(market, seeds=(0,))
    for bad in ([[0]], [[0, 1], [1]], [[0, 1], []], [[0, 2]]):
        with pytest.raises(ReplayInputError, match="not a partition"):
            simulate(market, scenarios, small_config(100), units=bad)
