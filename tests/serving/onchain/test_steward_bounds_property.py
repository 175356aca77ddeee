"""The steward's bounds, driven from Python: random update sequences on the real contract,
checked step by step against a Python model of the same rules.

``DYNAMARGIN_STEWARD_EXAMPLES`` sets the number of sequences (CI: 25; ``make fuzz-steward``:
500).
"""

from __future__ import annotations

import itertools
import os
from dataclasses import dataclass, field
from datetime import UTC, datetime

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from serving.errors import ContractRevert
from serving.signing import to_wad
from serving.steward_deployment import IMF, MMF, ParameterBounds, apply_signed
from tests.serving.onchain.conftest import Stack, make_stack, signed_update

EXAMPLES = int(os.environ.get("DYNAMARGIN_STEWARD_EXAMPLES", "25"))
BPS = 10_000
_names = (f"P{n:05d}USDT" for n in itertools.count())


@dataclass
class BoundsModel:
    """Python restatement of ``MarginSteward._bounded`` (WAD integers)."""

    floor: int
    cap: int
    bps: int
    min_delay: int
    clamp: bool

    def bounded(
        self, current: int, requested: int, changed_at: int, now: int
    ) -> tuple[bool, int, str]:
        if requested == current:
            return True, current, ""
        if changed_at and now < changed_at + self.min_delay:
            return False, 0, "too soon after the last change"
        step = current * self.bps // BPS
        lo, hi = max(current - step, 0), current + step
        if not self.clamp:
            if requested < self.floor:
                return False, 0, "below the floor"
            if requested > self.cap:
                return False, 0, "above the cap"
            if requested < lo or requested > hi:
                return False, 0, "step beyond the maximum relative change"
            return True, requested, ""
        low, high = max(lo, self.floor), min(hi, self.cap)
        if low > high:
            return False, 0, "no value within both the absolute and the relative bounds"
        if requested < low:
            return True, low, "floor" if low == self.floor else "maximum step down"
        if requested > high:
            return True, high, "cap" if high == self.cap else "maximum step up"
        return True, requested, ""


@dataclass
class StewardModel:
    """One market under the steward: what the contract should do with each update."""

    bounds: dict[int, BoundsModel]
    margin: dict[int, int]
    last_id: int = 0
    changed_at: dict[int, int] = field(default_factory=lambda: {IMF: 0, MMF: 0})

    def apply(self, update_id: int, imf: int, mmf: int, now: int) -> tuple[str, str]:
        if update_id <= self.last_id:
            return "revert", "update id is not above the last applied"
        result = {}
        for parameter, requested, name in ((IMF, imf, "imf"), (MMF, mmf, "mmf")):
            ok, value, why = self.bounds[parameter].bounded(
                self.margin[parameter], requested, self.changed_at[parameter], now
            )
            if not ok:
                return "rejected", f"{name}: {why}"
            result[parameter] = value
        if result[MMF] > result[IMF]:
            return "rejected", "mmf above imf after bounds"
        for parameter, value in result.items():
            if value != self.margin[parameter]:
                self.changed_at[parameter] = now
            self.margin[parameter] = value
        self.last_id = update_id
        return "applied", ""


@pytest.fixture(scope="module")
def property_stack(artifacts, tmp_path_factory) -> Stack:
    return make_stack(artifacts, tmp_path_factory.mktemp("steward-property"), assets=())


fractions = st.integers(1, 400).map(lambda k: k / 1000)  # 0.1% .. 40%, exact in WAD


@st.composite
def bounds(draw: st.DrawFn) -> ParameterBounds:
    floor, cap = sorted(draw(st.lists(st.integers(5, 400), min_size=2, max_size=2, unique=True)))
    return ParameterBounds(
        floor=floor / 1000,
        cap=cap / 1000,
        max_change=draw(st.sampled_from([0.05, 0.2, 0.5, 1.0])),
        min_delay_s=draw(st.sampled_from([0, 60, 3600])),
        clamp=draw(st.booleans()),
    )


updates = st.lists(
    st.tuples(
        st.sampled_from([1, 30, 600, 4000]),  # seconds since the previous update
        fractions,  # imf
        fractions,  # mmf
        st.sampled_from([1, 1, 1, 2, 0, -1]),  # update id step (0 and -1 replay)
    ),
    min_size=1,
    max_size=6,
)


@settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    imf_bounds=bounds(),
    mmf_bounds=bounds(),
    sequence=updates,
    start=st.tuples(fractions, fractions),
)
def test_the_steward_follows_the_model_on_random_update_sequences(
    property_stack: Stack, imf_bounds, mmf_bounds, sequence, start
):
    stack = property_stack
    chain, steward, market = stack.chain, stack.deployment.steward, stack.deployment.market
    start_imf, start_mmf = max(start), min(start)
    asset = next(_names)
    chain.transact(steward.functions.setBounds(IMF, imf_bounds.as_struct()))
    chain.transact(steward.functions.setBounds(MMF, mmf_bounds.as_struct()))
    chain.transact(market.functions.list(asset, to_wad(start_imf), to_wad(start_mmf)))
    model = StewardModel(
        bounds={
            IMF: BoundsModel(*imf_bounds.as_struct()),
            MMF: BoundsModel(*mmf_bounds.as_struct()),
        },
        margin={IMF: to_wad(start_imf), MMF: to_wad(start_mmf)},
    )
    update_id = 0
    for gap, imf, mmf, id_step in sequence:
        update_id = max(update_id + id_step, 1)
        now = chain.advance(gap)
        published = datetime.fromtimestamp(now, UTC)
        update = signed_update(stack.signer, asset, update_id, published, imf=imf, mmf=mmf)
        expected, reason = model.apply(update_id, to_wad(imf), to_wad(mmf), now)
        if expected == "revert":
            with pytest.raises(ContractRevert, match=reason):
                apply_signed(stack.deployment, update)
        else:
            outcome = apply_signed(stack.deployment, update)
            assert outcome.applied == (expected == "applied")
            assert outcome.rejection == (reason or None)
        on_chain = market.functions.marginFractions(asset).call()
        assert (on_chain[0], on_chain[1]) == (model.margin[IMF], model.margin[MMF])
        assert steward.functions.latest(asset).call()[0] == model.last_id
