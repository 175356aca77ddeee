"""Where a replay's independent units run: in this process (``local``) or on a Dask cluster.

The unit of work is one seed: every scenario of a seed (all its policies and levels, in the
caller's order) replayed as if in a :func:`liquidation.simulate.simulate` pass of its own.
Seeds share nothing: each scenario has its own venue, and a seed's trader book is drawn from
the seed alone. Assets are *not* independent (a scenario's insurance fund and vault serve all
its assets), so the unit never splits them.

Both runners run exactly the same units, so a Dask run equals a local run bit for bit for the
same seeds (``tests/liquidation/test_replay_runners.py``). Dask runs one task per unit; the
local runner runs all units in one pass over the bars that keeps them apart
(``simulate(..., units=...)``: each unit has its own position slots), so a unit's result
never depends on the other units. (A plain pass over *all* seeds would share the slots, and
the last bits of a few float sums, ``initial_margin``, ``open_notional`` and
``topup_collateral``, summed in slot order, would depend on which seeds ran together.)

The Dask runner takes a connected ``distributed.Client`` (duck-typed: ``scatter``,
``submit``, ``gather``); building it from an address or a LocalCluster is orchestration
(``pipelines.runners.dask_client``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

from liquidation.simulate import (
    MarketPaths,
    Progress,
    ReplayConfig,
    ReplayInputError,
    ReplaySeries,
    Scenario,
    simulate,
)

REPLAY_RUNNERS: tuple[str, ...] = ("local", "dask")
"""Names of the replay runners (``--runner``)."""


class ReplayRunner(Protocol):
    """Runs a replay's scenarios; the same results whatever the runner."""

    name: str

    def simulate(
        self,
        market: MarketPaths,
        scenarios: Sequence[Scenario],
        config: ReplayConfig,
        progress: Progress | None = None,
    ) -> list[ReplaySeries]:
        """Replay ``scenarios`` over ``market``; one series per scenario, in order."""
        ...


def replay_units(scenarios: Sequence[Scenario]) -> list[list[int]]:
    """The independent units: per seed (in order of first appearance), its scenarios' indices.

    Parameters
    ----------
    scenarios
        Scenarios of a replay.

    Returns
    -------
    list of list of int
        Indices into ``scenarios``, one list per seed, each in the scenarios' order.
    """
    units: dict[int, list[int]] = {}
    for index, scenario in enumerate(scenarios):
        units.setdefault(scenario.seed, []).append(index)
    return list(units.values())


class LocalRunner:
    """Runs every unit in this process, in one pass over the bars.

    :func:`~liquidation.simulate.simulate` keeps the units apart (its ``units``: each
    unit's position slots are its own), so every unit's results are bit for bit those of a
    pass of its own, while the per-bar cost, which dominates a small book, is paid once
    for all seeds instead of once per seed.
    """

    name = "local"

    def simulate(
        self,
        market: MarketPaths,
        scenarios: Sequence[Scenario],
        config: ReplayConfig,
        progress: Progress | None = None,
    ) -> list[ReplaySeries]:
        """Replay every unit here (see :class:`ReplayRunner`)."""
        if not scenarios:
            return []
        return simulate(market, scenarios, config, progress, units=replay_units(scenarios))


class DaskRunner:
    """Submits each unit to a Dask cluster; the market is scattered to the workers once.

    Parameters
    ----------
    client
        A connected ``distributed.Client`` (to a remote scheduler or a LocalCluster).
    """

    name = "dask"

    def __init__(self, client: Any) -> None:
        self.client = client

    def simulate(
        self,
        market: MarketPaths,
        scenarios: Sequence[Scenario],
        config: ReplayConfig,
        progress: Progress | None = None,
    ) -> list[ReplaySeries]:
        """Replay every unit on the cluster (see :class:`ReplayRunner`).

        A unit failing on a worker raises its error here (``gather`` re-raises it): no
        partial result is returned.
        """
        units = replay_units(scenarios)
        if not units:
            return []
        # hash=False: a fresh key per call. A content-hashed key is shared by successive
        # calls on the same market, and the previous call's release of it races this one.
        shared = self.client.scatter(market, broadcast=True, hash=False)
        futures = [
            # pure=False: two units with equal inputs are still two runs, never deduplicated.
            self.client.submit(_run_unit, shared, [scenarios[i] for i in unit], config, pure=False)
            for unit in units
        ]
        done = self.client.gather(futures)
        if progress is not None:
            progress(market.n_bars, market.n_bars)
        return _in_order(units, done, len(scenarios))


def make_replay_runner(name: str, client: Any = None) -> ReplayRunner:
    """The runner called ``name``: ``local``, or ``dask`` on ``client``.

    Raises
    ------
    ReplayInputError
        If the name is unknown, or ``dask`` comes without a client.
    """
    if name == "local":
        return LocalRunner()
    if name == "dask":
        if client is None:
            raise ReplayInputError("the dask replay runner needs a distributed.Client")
        return DaskRunner(client)
    raise ReplayInputError(f"unknown replay runner {name!r}; choose from {list(REPLAY_RUNNERS)}")


def _run_unit(
    market: MarketPaths, scenarios: list[Scenario], config: ReplayConfig
) -> list[ReplaySeries]:
    # Module-level so Dask pickles it by reference.
    return simulate(market, scenarios, config)


def _in_order(
    units: list[list[int]],
    done: Sequence[list[ReplaySeries]],
    n: int,
) -> list[ReplaySeries]:
    """The units' series back in the scenarios' order."""
    out: list[ReplaySeries | None] = [None] * n
    for unit, series in zip(units, done, strict=True):
        for index, one in zip(unit, series, strict=True):
            out[index] = one
    return [s for s in out if s is not None]
