"""Existing property tests, run again with hypothesis-crosshair's symbolic backend.

Hypothesis samples; with ``backend="crosshair"`` each example is a symbolic execution whose
path conditions CrossHair's solver steers towards unexplored branches, so the same test
explores the branches of the rule rather than the distribution of the strategy. The tests
are the existing ones, unchanged: only their settings differ. ``make verify`` runs more
examples (``DYNAMARGIN_VERIFY_SYMBOLIC_EXAMPLES``).
"""

from __future__ import annotations

import os

import pytest
from hypothesis import HealthCheck, settings

from serving.policy import MultiplierPolicy
from tests.liquidation import test_liquidation_regressions as regressions
from tests.serving import test_policy as policy_properties
from tests.verification.runtime_contracts import enforced

EXAMPLES = int(os.environ.get("DYNAMARGIN_VERIFY_SYMBOLIC_EXAMPLES", "12"))

SELECTED = [
    # The guard's stated liveness bound (the property the deadlock broke), on the engine.
    regressions.test_d1_guard_liveness_bound,
    # The ramp over random snapshot streams (the property the ramp reset broke).
    regressions.test_d4_ramp_properties,
    # The policy's limits and its fallback, with the contract of step checked on each call.
    policy_properties.test_no_step_exceeds_its_limit,
    policy_properties.test_nan_missing_or_implausible_input_gives_fallback,
    policy_properties.test_monotone_in_sigma_with_all_else_fixed,
]


def symbolic(test):
    """The hypothesis test ``test`` with the CrossHair backend and the example budget."""
    base = test._hypothesis_internal_use_settings
    test._hypothesis_internal_use_settings = settings(
        base,
        backend="crosshair",
        max_examples=EXAMPLES,
        deadline=None,
        suppress_health_check=list(HealthCheck),
    )
    return test, base


@pytest.mark.parametrize("test", SELECTED, ids=lambda t: t.__name__)
def test_property_holds_under_the_symbolic_backend(test) -> None:
    wrapped, base = symbolic(test)
    try:
        with enforced((MultiplierPolicy, "step")):
            wrapped()
    finally:
        test._hypothesis_internal_use_settings = base
