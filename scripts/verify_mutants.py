"""Reintroduce the day's defects one at a time and show that verification finds each one.

Each mutant is a textual patch of one function (the defect as it was, in today's code) applied
to a copy of the project in a temporary directory; the project itself is never touched. The
checks are the ones ``make verify`` runs: CrossHair on the mutated function's PEP 316 contract,
CrossHair on the guard-liveness claims (``asserts`` mode), the z3 encoding's drift test of the
mutated rule (the encoding is the proved rule, so a mutant that departs from it fails), and,
in the long run, the existing tests with every contract checked at run time. A mutant is
*found* if at least one check reports a counterexample or a contract violation; the script
exits 1 if any mutant survives.

==================  =====================================================================
mutant              defect (regression tests: ``tests/liquidation/test_liquidation_regressions.py``)
==================  =====================================================================
d4-ramp-reset       every snapshot restarts the ramp from where it began, even one that
                    republishes the same multiplier (``test_d4_*``)
d1-no-reanchor      the guard never re-anchors: after a genuine jump every print is compared
                    with the TWAP of accepted prints and rejected, forever (``test_d1_*``)
d1-window-on-accept the re-anchoring window only collects accepted prints, so a run of
                    rejected prints never completes (the same deadlock one level up)
d5-nan-input        the input boundary checks the range only (``value < low``), which NaN
                    and floats pass (``test_d5_*``)
==================  =====================================================================

Example
-------
``python scripts/verify_mutants.py`` (CrossHair checks only), ``--long`` adds the run-time
contract check of the regression tests.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

PROJECT = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class Check:
    """A command run in the mutated copy; it *finds* the mutant if its output contains
    ``marker`` (a counterexample or a contract violation)."""

    label: str
    command: tuple[str, ...]
    marker: str
    long_only: bool = False


@dataclass(frozen=True)
class Mutant:
    """A defect: in ``path``, replace each ``old`` (exactly one occurrence) by its ``new``."""

    name: str
    path: str
    edits: tuple[tuple[str, str], ...]
    checks: tuple[Check, ...]


def _crosshair(kind: str, target: str, seconds: int = 20) -> tuple[str, ...]:
    return (
        sys.executable, "-m", "crosshair", "check", f"--analysis_kind={kind}",
        f"--per_condition_timeout={seconds}", "--per_path_timeout=5", target,
    )  # fmt: skip


def _contracts(selection: str) -> tuple[str, ...]:
    return (
        sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
        "-p", "tests.verification.contract_plugin",
        "tests/liquidation/test_liquidation_regressions.py", "-k", selection,
    )  # fmt: skip


def _pytest(*selection: str) -> tuple[str, ...]:
    return (sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *selection)


#: A drift test of a z3 encoding fails on a mutant of its rule by an assertion (not a crash).
FALSIFIED = "AssertionError"

LIVENESS = Check(
    "CrossHair: guard liveness (asserts)",
    _crosshair("asserts", "tests.verification.guard_liveness"),
    ": error:",
)
COUNTEREXAMPLE = ": error:"
VIOLATION = "ContractViolation"

MUTANTS: tuple[Mutant, ...] = (
    Mutant(
        "d4-ramp-reset",
        "liquidation/rules/ramp.py",
        (
            (
                "    if target == state.target:\n        return state\n"
                "    base = base_level(state, ts_ms, ramp_ms)\n",
                "    base = state.base_from  # MUTANT d4: every snapshot restarts the ramp\n",
            ),
        ),
        (
            Check(
                "z3 encoding of retarget vs the code",
                _pytest(
                    "tests/verification/test_waterfall_z3.py", "-k", "retarget_encoding_is_retarget"
                ),
                FALSIFIED,
            ),
            Check(
                "CrossHair: ramp.retarget",
                _crosshair("PEP316", "liquidation.rules.ramp.retarget"),
                COUNTEREXAMPLE,
                long_only=True,  # minutes of CrossHair
            ),
            Check("run-time contracts: test_d4_*", _contracts("d4"), VIOLATION, long_only=True),
        ),
    ),
    Mutant(
        "d1-no-reanchor",
        "liquidation/rules/oracle_guard.py",
        (
            (
                "    if obs.reference is None:\n"
                "        run = next_window(window, obs.price, config)\n",
                "    if False:  # MUTANT d1: no re-anchoring (the guard deadlock)\n"
                "        run = next_window(window, obs.price, config)\n",
            ),
        ),
        (
            LIVENESS,
            Check("run-time contracts: test_d1_*", _contracts("d1"), VIOLATION, long_only=True),
        ),
    ),
    Mutant(
        "d1-window-on-accept",
        "liquidation/rules/oracle_guard.py",
        (
            (
                '    if verdict.reason not in ("confidence", "no_price"):\n',
                "    if verdict.accepted:  # MUTANT d1: only accepted prints join the window\n",
            ),
        ),
        (
            LIVENESS,
            Check(
                "CrossHair: oracle_guard.advance",
                _crosshair("PEP316", "liquidation.rules.oracle_guard.advance"),
                COUNTEREXAMPLE,
                long_only=True,  # its window post, with a symbolic config: missed in 20 s
            ),
            Check("run-time contracts: test_d1_*", _contracts("d1"), VIOLATION, long_only=True),
        ),
    ),
    Mutant(
        "d5-nan-input",
        "liquidation/inputs.py",
        (
            (
                "    if isinstance(value, bool) or not isinstance(value, int):\n",
                "    if isinstance(value, bool):  # MUTANT d5: no type check\n",
            ),
            (
                "    if not low <= value <= high:\n",
                "    if value < low or value > high:  # MUTANT d5: a range check NaN passes\n",
            ),
        ),
        (
            Check(
                "CrossHair: input boundary (asserts)",
                _crosshair("asserts", "tests.verification.input_boundary"),
                COUNTEREXAMPLE,
            ),
            Check("run-time contracts: test_d5_*", _contracts("d5"), VIOLATION, long_only=True),
        ),
    ),
)


def mutated_copy(mutant: Mutant, into: Path) -> Path:
    """A copy of the project's files (tracked and new, as in the working tree) with the
    mutant applied.

    Raises
    ------
    ValueError
        If the mutant's ``old`` text does not occur exactly once (the code moved on).
    """
    listed = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard"],
        cwd=PROJECT, capture_output=True, text=True, check=True,
    ).stdout.splitlines()  # fmt: skip
    for name in listed:
        source = PROJECT / name
        if source.is_file():
            (into / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, into / name)
    target = into / mutant.path
    text = target.read_text()
    for old, new in mutant.edits:
        if text.count(old) != 1:
            raise ValueError(
                f"mutant {mutant.name}: the patched text occurs {text.count(old)} times in "
                f"{mutant.path}, expected once; update the mutant to the current code"
            )
        text = text.replace(old, new)
    target.write_text(text)
    return into


@dataclass(frozen=True)
class Finding:
    """What one check printed on one mutant, and whether it found the defect."""

    mutant: str
    check: str
    found: bool
    seconds: float
    evidence: str


def run_check(check: Check, root: Path, timeout_s: int) -> tuple[bool, float, str]:
    """Run one check in ``root``; ``(found, seconds, evidence line)``."""
    started = time.time()
    try:
        result = subprocess.run(
            check.command, cwd=root, capture_output=True, text=True, timeout=timeout_s,
            env={**os.environ, "PYTHONPATH": str(root)},
        )  # fmt: skip
        output = result.stdout + result.stderr
    except subprocess.TimeoutExpired as exc:
        output = f"timed out after {timeout_s} s: {exc.stdout or ''}"
    lines = [line for line in output.splitlines() if check.marker in line]
    return bool(lines), time.time() - started, (lines[0] if lines else output[-300:]).strip()


#: The mutants whose short checks take seconds (the ramp reset's CrossHair check, minutes,
#: is long only: its short check is the z3 encoding's drift test).
CI_MUTANTS = ("d4-ramp-reset", "d1-no-reanchor", "d1-window-on-accept", "d5-nan-input")


def verify_mutant(mutant: Mutant, long: bool, timeout_s: int) -> list[Finding]:
    """Apply ``mutant`` in a temporary copy and run its checks (the long ones if ``long``)."""
    findings = []
    with tempfile.TemporaryDirectory(prefix=f"mutant-{mutant.name}-") as tmp:
        root = mutated_copy(mutant, Path(tmp))
        for check in mutant.checks:
            if check.long_only and not long:
                continue
            found, seconds, evidence = run_check(check, root, timeout_s)
            findings.append(Finding(mutant.name, check.label, found, seconds, evidence))
    return findings


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--long", action="store_true", help="add the run-time contract checks")
    parser.add_argument("--mutant", action="append", help="only these mutants (repeatable)")
    parser.add_argument("--timeout", type=int, default=900, help="wall seconds per check")
    args = parser.parse_args(argv)
    chosen = [m for m in MUTANTS if not args.mutant or m.name in args.mutant]
    survivors = []
    for mutant in chosen:
        findings = verify_mutant(mutant, args.long, args.timeout)
        for f in findings:
            status = "FOUND" if f.found else "missed"
            print(f"{f.mutant:<20} {status:<6} {f.seconds:5.0f} s  {f.check}\n    {f.evidence}")
        if not any(f.found for f in findings):
            survivors.append(mutant.name)
    print("all mutants found" if not survivors else f"SURVIVED: {', '.join(survivors)}")
    return 1 if survivors else 0


if __name__ == "__main__":
    raise SystemExit(main())
