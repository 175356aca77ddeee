"""The seeded random-command fuzzer: a short run in CI (``make fuzz`` runs >= 1M commands).

The run must find no invariant failure, and must reach every part of the waterfall and of
the guard, so that its silence means something. A planted bug proves the checks have teeth.
"""

from __future__ import annotations

import pytest

from liquidation import funding, fuzz

CI_SEQUENCES = 24
STEPS = 400


def test_short_fuzz_run_finds_no_invariant_failure() -> None:
    report = fuzz.run(range(CI_SEQUENCES), STEPS)
    assert report.failures == [], "\n".join(map(str, report.failures[:5]))
    assert report.commands == CI_SEQUENCES * STEPS
    # Coverage: each waterfall step, ADL and backstop fills, the guard's re-anchoring and
    # escalation, and every kind of deliberately invalid command refused.
    for event in ("step:partial", "step:full", "step:backstop", "step:adl", "fill:adl"):
        assert report.events[event] > 0, f"the run never reached {event}"
    for event in ("reanchor", "guard_alert", "fallback"):
        assert report.events[event] > 0, f"the run never reached {event}"
    assert report.outcomes["invalid:refused"] > 50
    assert report.outcomes["trade:ok"] > 300


def test_fuzzer_catches_a_planted_bug(monkeypatch: pytest.MonkeyPatch) -> None:
    """Funding that credits one micro-USD too much is caught by the zero-sum check."""
    honest = funding.funding_payments

    def leaky(positions, mark, rate):  # type: ignore[no-untyped-def]
        payments = honest(positions, mark, rate)
        return [(b, a + 1) if a > 0 else (b, a) for b, a in payments]

    monkeypatch.setattr("liquidation.engine.funding_payments", leaky)
    report = fuzz.run(range(3), STEPS)
    assert report.failures
    assert any("funding" in f.message for f in report.failures)
