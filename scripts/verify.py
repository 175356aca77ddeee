"""Formal verification of the liquidation rules and the multiplier policy (``make verify``).

Runs, with a time budget per function:

1. **CrossHair** on every PEP 316 contract of ``liquidation/rules`` (and, in the long run,
   ``MultiplierPolicy.step``): symbolic execution of the code itself; any counterexample,
   unexpected exception or contract that does not compile fails the run.
2. **z3** proofs of ``MultiplierPolicy.step``'s contract, with the encoding tested against
   the code (``tests/verification/test_policy_verification.py``).
3. **hypothesis-crosshair**: selected existing property tests with the symbolic backend.
4. **Run-time contracts**: the whole liquidation suite (the seeded fuzzer included) with every
   contract checked on every call.

``--budget short`` is what CI runs inside ``make test`` (``tests/verification``); ``long`` is
``make verify``. Prints one line per step and exits non-zero on any failure.

Example
-------
``python scripts/verify.py --budget long``
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

from liquidation.rules import CONTRACTED_MODULES as RULE_MODULES

PROJECT = Path(__file__).resolve().parents[1]
POLICY_STEP = "serving.policy.MultiplierPolicy.step"
#: Per budget: CrossHair seconds per condition and per path, z3 ms per proof, symbolic
#: examples per property test.
BUDGETS = {
    "short": {"condition_s": 2, "path_s": 1, "z3_ms": 120_000, "examples": 12},
    "long": {"condition_s": 60, "path_s": 10, "z3_ms": 900_000, "examples": 200},
}


def crosshair_targets(budget: str) -> list[str]:
    """Dotted names CrossHair checks: every rules module, and ``step`` in the long run."""
    targets = [f"liquidation.rules.{module}" for module in RULE_MODULES]
    return [*targets, POLICY_STEP] if budget == "long" else targets


def crosshair_command(targets: list[str], condition_s: float, path_s: float) -> list[str]:
    """The ``crosshair check`` command line for ``targets``."""
    return [
        sys.executable,
        "-m",
        "crosshair",
        "check",
        "--analysis_kind=PEP316",
        f"--per_condition_timeout={condition_s}",
        f"--per_path_timeout={path_s}",
        *targets,
    ]


def run_crosshair(targets: list[str], condition_s: float, path_s: float) -> list[str]:
    """Run CrossHair; return its findings (one line each; empty means none found).

    Raises
    ------
    RuntimeError
        If CrossHair itself fails without reporting a finding (a crash, a bad target).
    """
    result = subprocess.run(
        crosshair_command(targets, condition_s, path_s),
        cwd=PROJECT,
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(PROJECT)},
    )
    findings = [line for line in result.stdout.splitlines() if line.strip()]
    if result.returncode not in (0, 1) or (result.returncode == 1 and not findings):
        raise RuntimeError(f"crosshair failed ({result.returncode}): {result.stderr[-2000:]}")
    return findings


def _pytest(args: list[str], env: dict[str, str]) -> int:
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *args],
        cwd=PROJECT,
        env={**os.environ, "PYTHONPATH": str(PROJECT), **env},
    ).returncode


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--budget", choices=sorted(BUDGETS), default="long")
    parser.add_argument(
        "--step",
        action="append",
        choices=["crosshair", "z3", "symbolic", "contracts"],
        help="run only these steps (repeatable); default: all",
    )
    args = parser.parse_args(argv)
    budget = BUDGETS[args.budget]
    steps = args.step or ["crosshair", "z3", "symbolic", "contracts"]
    failed: list[str] = []

    def report(step: str, ok: bool, started: float, detail: str = "") -> None:
        print(
            f"[verify] {step}: {'ok' if ok else 'FAILED'} in {time.time() - started:.0f} s {detail}"
        )
        if not ok:
            failed.append(step)

    if "crosshair" in steps:
        started = time.time()
        targets = crosshair_targets(args.budget)
        findings = run_crosshair(targets, budget["condition_s"], budget["path_s"])
        for line in findings:
            print(f"  {line}")
        report("crosshair", not findings, started, f"({len(targets)} targets)")
    if "z3" in steps:
        started = time.time()
        code = _pytest(
            ["tests/verification/test_policy_verification.py"],
            {"DYNAMARGIN_VERIFY_Z3_TIMEOUT_MS": str(budget["z3_ms"])},
        )
        report("z3", code == 0, started)
    if "symbolic" in steps:
        started = time.time()
        code = _pytest(
            ["tests/verification/test_symbolic_properties.py"],
            {"DYNAMARGIN_VERIFY_SYMBOLIC_EXAMPLES": str(budget["examples"])},
        )
        report("hypothesis-crosshair", code == 0, started)
    if "contracts" in steps:
        started = time.time()
        code = _pytest(
            [
                "-p",
                "tests.verification.contract_plugin",
                "tests/liquidation",
                "tests/serving/test_policy.py",
            ],
            {},
        )
        report("run-time contracts", code == 0, started)
    print(f"[verify] {'FAILED: ' + ', '.join(failed) if failed else 'all steps passed'}")
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
