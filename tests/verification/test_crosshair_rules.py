"""CrossHair on every contract of ``liquidation/rules``, with the short (CI) budget.

``make verify`` runs the same check with a long budget per condition (``scripts/verify.py``).
A finding is a counterexample to a contract, an unexpected exception, or a contract that does
not compile; any fails here.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

PROJECT = Path(__file__).resolve().parents[2]


def _verify_script():
    spec = importlib.util.spec_from_file_location("verify_script", PROJECT / "scripts/verify.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def test_crosshair_finds_no_counterexample_in_the_rules() -> None:
    script = _verify_script()
    budget = script.BUDGETS["short"]
    findings = script.run_crosshair(
        script.crosshair_targets("short"), budget.condition_s, budget.path_s
    )
    assert findings == [], "\n".join(findings)


def test_crosshair_reports_a_false_contract(tmp_path: Path) -> None:
    """The check is live: a contract that does not hold is reported with its input."""
    module = tmp_path / "false_rule.py"
    module.write_text(
        "def fund_cover(debt: int, available_left: int) -> int:\n"
        '    """\n'
        "    pre: available_left >= 0\n"
        "    post: __return__ <= available_left\n"
        '    """\n'
        "    return max(0, debt)\n"
    )
    script = _verify_script()
    findings = script.run_crosshair([str(module)], 10, 2)
    assert findings and "false when calling fund_cover" in findings[0]


def test_a_finding_that_holds_in_binary64_is_not_a_counterexample() -> None:
    """CrossHair once reported ``fund_available(1, 1e-06)`` (the real value of the float
    ``1e-06`` times 1e6 is below 1; in binary64 the product is exactly 1.0, and the contract
    holds): replayed concretely, such a finding is dropped; one that cannot be replayed or
    that a concrete call confirms is kept."""
    script = _verify_script()
    rules = PROJECT / "liquidation/rules/penalty.py"
    spurious = f"{rules}:65: error: false when calling fund_available(1, 1e-06) (which returns 1)"
    assert not script.reproduces(spurious)
    assert not script.reproduces(
        f"{rules}:80: error: false when calling fund_cover(5, -1) (which returns 0)"
    )  # the precondition fails concretely: no counterexample either
    assert script.reproduces(f"{rules}:65: error: TypeError when calling fund_available(1, 2)")
    assert script.reproduces("/elsewhere/r.py:3: error: false when calling f(1) (which returns 2)")
    # CrossHair exits 1 after reporting it; with the finding dropped the run is clean, while a
    # kept finding still fails and an exit 1 without any finding is still a crash.
    assert script._classify(1, spurious + "\n", "") == ("no counterexample", ())
    kept = f"{rules}:65: error: TypeError when calling fund_available(1, 2)"
    assert script._classify(1, kept + "\n", "")[0] == "COUNTEREXAMPLE"
    assert script._classify(1, "", "Traceback ...")[0] == "CRASH"
