"""Every contract of the rules and of ``MultiplierPolicy.step``, checked on the existing tests.

The rules' own property tests (scalar against vector forms), the regression test of each
finding of the adversarial review, and the unit tests run in a child pytest with
:mod:`tests.verification.contract_plugin`, which checks every call of a contracted function
against its PEP 316 contract. The long fuzz runs under the same plugin in ``make verify``.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tests.verification.runtime_contracts import RULE_MODULES, conditions_of, contracted_rules

PROJECT = Path(__file__).resolve().parents[2]
SUITES = (
    "tests/liquidation/test_rules.py",
    "tests/liquidation/test_liquidation_regressions.py",
    "tests/liquidation/test_liquidation_units.py",
    "tests/serving/test_policy.py",
)


def test_every_public_scalar_rule_carries_a_contract() -> None:
    targets = contracted_rules()
    assert {module.__name__.rsplit(".", 1)[1] for module, _ in targets} == set(RULE_MODULES)
    for module, name in targets:
        conditions = conditions_of(module, name)  # raises if absent or not compiling
        assert [c for c in conditions.post if c.expr_source], f"{module.__name__}.{name}"


def test_existing_tests_pass_with_every_contract_checked() -> None:
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            "-p",
            "tests.verification.contract_plugin",
            *SUITES,
        ],
        cwd=PROJECT,
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(PROJECT)},
        timeout=1800,
    )
    tail = "\n".join(result.stdout.splitlines()[-40:])
    assert result.returncode == 0, f"{tail}\n{result.stderr[-2000:]}"
    assert " passed" in tail and "failed" not in tail
