"""The replay's output is pinned bit for bit: speed work must not change a single number.

The digest below was computed from the replay *before* the speed work of ``replay speed:``
commits (the integer replay of commit ``df44475``), on a small seeded case that exercises
every step: three assets with a crash bar, a churning dynamic path (ramp classes), a split
``stress`` maintenance path, a scenario with its own ramp, funding, partial steps, close-outs,
bad debt and top-ups. It covers every field of every :class:`ReplaySeries` (floats included,
byte for byte) and every integer of each scenario's :class:`VenueLedger`.

A change of the digest means the replay's results changed. That is legitimate only for a
deliberate change of the rules (then the engine-equivalence property must still hold and the
digest is regenerated with :func:`replay_digest`, saying why in the commit); never for an
optimisation.
"""

from __future__ import annotations

import hashlib
from dataclasses import fields, replace

import numpy as np

from liquidation.simulate import (
    ReplaySeries,
    Scenario,
    VenueLedger,
    constant_multiplier,
    maintenance_multipliers,
    simulate_ledger,
)
from tests.liquidation.replay_builders import random_walk_market, small_config

GOLDEN = "585aa94e491e66fbf793bde8933dc8382e470543533a6e6a604d351f392914e8"
"""sha256 of :func:`replay_digest` on :func:`golden_case`, from the pre-optimisation replay."""


def golden_case() -> tuple[list[ReplaySeries], list[VenueLedger]]:
    """The pinned replay: 3 assets x 700 bars, 4 000 traders per seed, four scenarios."""
    market = random_walk_market(11, n_assets=3, n_bars=700)
    cfg = small_config(4_000)
    cfg = replace(cfg, book=replace(cfg.book, topup_max_count=2))
    rng = np.random.default_rng(5)
    steps = rng.normal(0, 0.08, market.open.shape)
    dynamic = np.clip(np.round(np.exp(np.cumsum(steps, axis=1)), 1), 0.8, 3.0)
    scenarios = [
        Scenario("static", 0, constant_multiplier(market, 1.0)),
        Scenario("dyn", 0, dynamic),
        Scenario("stress", 1, dynamic, maintenance_multipliers(dynamic, "stress", 1.5)),
        Scenario("fast", 2, dynamic * 1.1, ramp_ms=2 * 3_600_000),
    ]
    return simulate_ledger(market, scenarios, cfg)


def replay_digest(series: list[ReplaySeries], ledgers: list[VenueLedger]) -> str:
    """sha256 over every field of every series (raw bytes) and every ledger integer."""
    h = hashlib.sha256()

    def add(name: str, value: object) -> None:
        h.update(name.encode())
        if isinstance(value, np.ndarray):
            h.update(np.ascontiguousarray(value).tobytes())
        else:
            h.update(repr(value).encode())

    for run in series:
        for f in fields(ReplaySeries):
            if f.name in _ADDED_SINCE_GOLDEN:
                continue
            add(f.name, getattr(run, f.name))
    for ledger in ledgers:
        for name, value in vars(ledger).items():
            if name in _ADDED_SINCE_GOLDEN:
                continue
            add(name, value)
    return h.hexdigest()


_ADDED_SINCE_GOLDEN: frozenset[str] = frozenset(
    {
        "topup_collateral",
        "fee_income",
        "fund_share",
        "fee_addon_bps",
        "liquidated_long",
        "initial_margin_asset",
    }
)
"""Fields added to the outputs after the digest was taken (checked by their own tests)."""


def test_replay_output_is_bit_identical_to_the_pinned_digest() -> None:
    series, ledgers = golden_case()
    # The case must exercise the waterfall, or the digest would pin an idle book.
    assert all(int(s.liquidations.sum()) > 0 for s in series)
    assert all(int(s.topups.sum()) > 0 for s in series)
    assert all(float(s.bad_debt.sum()) > 0 for s in series)
    assert replay_digest(series, ledgers) == GOLDEN


def test_the_posted_im_per_asset_adds_up_to_the_book_total() -> None:
    """``initial_margin_asset`` (issue #20's per-asset procyclicality figures) splits the
    book's posted IM by asset: same bars, same positions, every scenario."""
    series, _ = golden_case()
    for run in series:
        assert run.initial_margin_asset is not None
        assert run.initial_margin_asset.shape == (3, len(run.ts_ms))
        assert (run.initial_margin_asset >= 0).all()
        np.testing.assert_allclose(
            run.initial_margin_asset.sum(axis=0), run.initial_margin, rtol=1e-12, atol=1e-9
        )
        # Every asset carries margin at some bar: the split is not all on one row.
        assert (run.initial_margin_asset.max(axis=1) > 0).all()
