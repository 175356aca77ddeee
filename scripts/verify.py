"""Formal verification of the liquidation rules and the multiplier policy (``make verify``).

Runs, each child process under a CPU-time cap so that no function can hold the run:

1. **CrossHair** on every PEP 316 contract of ``liquidation/rules`` (and ``MultiplierPolicy.step``
   in the long run): symbolic execution of the code itself. The long run checks one function
   per process and reports each one as

   * ``verified``: CrossHair explored every path (``Confirmed over all paths``);
   * ``no counterexample``: none found within the per-condition budget;
   * ``budget cap``: the process hit its CPU cap (a solver call that did not return); no
     counterexample was found before;
   * ``COUNTEREXAMPLE``: a contract is false (or raised) on the input shown: the run fails.

   Then the guard's bounded liveness at its documented parameters
   (``tests/verification/guard_liveness.py``, CrossHair ``asserts`` mode).
2. **z3** proofs of ``MultiplierPolicy.step``'s contract and of the rules that mix integer
   money with float rates (``ramped_multiplier``, ``split_penalty``, ``close_price``,
   ``governance.review``), of the guard's decision (``check_observation``, ``advance``) and of
   the list rules (``adl.allocate``, ``adl.rank_candidates``, ``socialization.socialize``,
   ``ramp.retarget``), each encoding tested against the code
   (``tests/verification/test_policy_verification.py``, ``test_rules_z3.py``,
   ``test_waterfall_z3.py``). The long run proves the list rules at larger list sizes. The
   CrossHair line of a function z3 proves says so.
3. **hypothesis-crosshair**: selected existing property tests with the symbolic backend.
4. **Run-time contracts**: the rules' and the policy's tests, the regressions and the seeded
   fuzzer with every contract checked on every call.

``--budget short`` is what CI runs inside ``make test`` (``tests/verification``); ``long`` is
``make verify``. The worst case is the sum of the caps (printed first); exits 1 on any
counterexample or failing step, 0 otherwise.

Example
-------
``python scripts/verify.py --budget long --jobs 2``
"""

from __future__ import annotations

import argparse
import os
import re
import resource
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

PROJECT = Path(__file__).resolve().parents[1]
if str(PROJECT) not in sys.path:  # run as a script: the project's packages are importable
    sys.path.insert(0, str(PROJECT))

from liquidation.rules import CONTRACTED_MODULES as RULE_MODULES  # noqa: E402

POLICY_STEP = "serving.policy.MultiplierPolicy.step"
LIVENESS = "tests.verification.guard_liveness"
#: Functions whose contract the z3 step proves (CrossHair on them is bounded evidence only).
Z3_PROVED = (
    POLICY_STEP,
    "liquidation.rules.ramp.ramped_multiplier",
    "liquidation.rules.penalty.split_penalty",
    "liquidation.rules.closeout.close_price",
    "liquidation.rules.governance.review",
    "liquidation.rules.oracle_guard.check_observation",
    "liquidation.rules.oracle_guard.advance",
    "liquidation.rules.adl.allocate",
    "liquidation.rules.adl.rank_candidates",
    "liquidation.rules.socialization.socialize",
    "liquidation.rules.ramp.retarget",
)
Z3_TESTS = (
    "tests/verification/test_policy_verification.py",
    "tests/verification/test_rules_z3.py",
    "tests/verification/test_waterfall_z3.py",
)


@dataclass(frozen=True)
class Budget:
    """CrossHair CPU seconds per condition and per path, the CPU cap of one CrossHair process,
    the z3 budget per proof, symbolic examples per property test, and the CPU cap of each
    pytest step."""

    condition_s: float
    path_s: float
    function_cap_s: int
    z3_ms: int
    examples: int
    step_cap_s: int


BUDGETS = {
    "short": Budget(condition_s=2, path_s=1, function_cap_s=600, z3_ms=120_000, examples=12,
                    step_cap_s=900),
    "long": Budget(condition_s=15, path_s=5, function_cap_s=30, z3_ms=240_000, examples=40,
                   step_cap_s=420),
}  # fmt: skip


def crosshair_targets(budget: str) -> list[str]:
    """Modules CrossHair checks in one process in the short run (CI)."""
    targets = [f"liquidation.rules.{module}" for module in RULE_MODULES]
    return [*targets, POLICY_STEP] if budget == "long" else targets


def contracted_functions() -> list[str]:
    """Dotted name of every contracted public scalar rule, and of ``MultiplierPolicy.step``."""
    from tests.verification.runtime_contracts import contracted_rules

    rules = [f"{module.__name__}.{name}" for module, name in contracted_rules()]
    return [*rules, POLICY_STEP]


def crosshair_command(
    targets: list[str], condition_s: float, path_s: float, kind: str = "PEP316"
) -> list[str]:
    """The ``crosshair check`` command line for ``targets``."""
    return [
        sys.executable,
        "-m",
        "crosshair",
        "check",
        f"--analysis_kind={kind}",
        f"--per_condition_timeout={condition_s}",
        f"--per_path_timeout={path_s}",
        "--report_all",
        *targets,
    ]


def _cpu_cap(seconds: int) -> Callable[[], None]:
    """A ``preexec_fn`` limiting the child's CPU time (SIGXCPU, then SIGKILL 5 s later)."""

    def limit() -> None:
        resource.setrlimit(resource.RLIMIT_CPU, (seconds, seconds + 5))

    return limit


def _child_env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(PROJECT)}


@dataclass(frozen=True)
class CrosshairResult:
    """Outcome of one CrossHair process: status, findings (error lines), CPU seconds."""

    target: str
    status: str
    findings: tuple[str, ...]
    cpu_s: float


_FALSE_CALL = re.compile(
    r"^(?P<file>[^:]+):\d+: error: false when calling (?P<name>\w+)\((?P<args>.*)\)"
    r" \(which returns .*\)$"
)


def reproduces(finding: str) -> bool:
    """False only for a "false when calling f(args)" finding that, replayed concretely with
    the run-time contract checker, satisfies every pre- and postcondition.

    CrossHair models a float as a real, so it can report a call whose contract holds in
    Python's binary64 (``fund_available(1, 1e-06)``: ``1e-06 * 10**6`` is exactly 1.0 as a
    float, a little less as the real value of the float ``1e-06``). Such a finding is no
    counterexample to the Python program. Any finding that cannot be replayed (another
    message, a method, arguments that do not evaluate) counts as reproduced.
    """
    import importlib
    import inspect

    match = _FALSE_CALL.match(finding)
    if match is None:
        return True
    try:
        relative = Path(match["file"]).resolve().relative_to(PROJECT)
        module = importlib.import_module(".".join(relative.with_suffix("").parts))
        if not inspect.isfunction(getattr(module, match["name"], None)):
            return True
        from tests.verification.runtime_contracts import ContractViolation, checking

        checked = checking(module, match["name"])
        namespace = {**vars(module), "_capture": lambda *a, **k: (a, k)}
        # The arguments as CrossHair printed them (reprs of ints, floats, the rules' types).
        args, kwargs = eval(f"_capture({match['args']})", namespace)
    except Exception:  # not replayable: keep the finding
        return True
    try:
        checked(*args, **kwargs)
    except ContractViolation as exc:
        return not str(exc).startswith("precondition")
    except Exception:  # an exception the contract does not allow is a finding
        return True
    return False


def _classify(returncode: int, stdout: str, stderr: str) -> tuple[str, tuple[str, ...]]:
    lines = [line for line in stdout.splitlines() if line.strip()]
    reported = tuple(line for line in lines if ": error:" in line)
    for line in reported:
        if not reproduces(line):
            print(f"  not reproduced in binary64 (CrossHair's reals), ignored: {line}", flush=True)
    errors = tuple(line for line in reported if reproduces(line))
    if errors:
        return "COUNTEREXAMPLE", errors
    if returncode in (-signal.SIGXCPU, -signal.SIGKILL):
        return "budget cap", ()
    # CrossHair exits 1 when it reports a finding; if every finding was dropped above, that
    # exit is not a crash (a run that drew fund_available(1, 1e-06) failed CI on it).
    if returncode == 1 and reported:
        return "no counterexample", ()
    if returncode != 0:
        return "CRASH", (f"crosshair exited {returncode}: {stderr[-1500:]}",)
    infos = [line for line in lines if ": info:" in line]
    if infos and all("Confirmed over all paths" in line for line in infos):
        return "verified", ()
    return "no counterexample", ()


def check_one(target: str, budget: Budget, kind: str = "PEP316") -> CrosshairResult:
    """Run CrossHair on one target under the CPU cap of ``budget``; its own CPU time is read
    from ``wait4`` (exact even with several children at once)."""
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        child = subprocess.Popen(
            crosshair_command([target], budget.condition_s, budget.path_s, kind),
            cwd=PROJECT,
            stdout=out,
            stderr=err,
            text=True,
            env=_child_env(),
            preexec_fn=_cpu_cap(budget.function_cap_s),
        )
        _, status, usage = os.wait4(child.pid, 0)
        child.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        stdout, stderr = out.read(), err.read()
    status_text, findings = _classify(child.returncode, stdout, stderr)
    return CrosshairResult(target, status_text, findings, usage.ru_utime + usage.ru_stime)


def run_crosshair(
    targets: list[str], condition_s: float, path_s: float, kind: str = "PEP316"
) -> list[str]:
    """Run CrossHair once over ``targets``; return its findings (empty means none found).

    Raises
    ------
    RuntimeError
        If CrossHair itself fails without reporting a finding (a crash, a bad target).
    """
    result = subprocess.run(
        crosshair_command(targets, condition_s, path_s, kind),
        cwd=PROJECT,
        capture_output=True,
        text=True,
        env=_child_env(),
    )
    status, findings = _classify(result.returncode, result.stdout, result.stderr)
    if status == "CRASH":
        raise RuntimeError(findings[0])
    return list(findings)


def liveness_targets() -> list[str]:
    """The guard-liveness claims and the input boundary's (CrossHair ``asserts`` mode)."""
    return [
        f"{LIVENESS}.steady_feed_clears",
        f"{LIVENESS}.steady_feed_with_confidence_clears",
        "tests.verification.input_boundary.only_integer_prices_pass",
    ]


def _pytest(args: list[str], env: dict[str, str], cap_s: int) -> int:
    """Run pytest under a CPU cap; its exit code (negative: killed by the cap)."""
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *args],
        cwd=PROJECT,
        env={**_child_env(), **env},
        preexec_fn=_cpu_cap(cap_s),
    ).returncode


def _capped(code: int) -> str:
    """Detail for a pytest step killed by its CPU cap (an incomplete step fails the run)."""
    return "(killed by its CPU cap: incomplete)" if code < 0 else ""


STEPS = ("crosshair", "liveness", "z3", "symbolic", "contracts")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--budget", choices=sorted(BUDGETS), default="long")
    parser.add_argument("--jobs", type=int, default=2, help="CrossHair processes at once")
    parser.add_argument(
        "--step", action="append", choices=STEPS, help="run only these steps (repeatable)"
    )
    parser.add_argument(
        "--only", help="CrossHair: only functions whose dotted name matches this regex"
    )
    args = parser.parse_args(argv)
    budget = BUDGETS[args.budget]
    steps = args.step or list(STEPS)
    failed: list[str] = []
    functions = contracted_functions() if args.budget == "long" else []
    if args.only:
        functions = [f for f in functions if re.search(args.only, f)]
    n_cross = len(functions) + len(liveness_targets())
    worst = n_cross * budget.function_cap_s / max(1, args.jobs) + 3 * budget.step_cap_s
    print(
        f"[verify] budget {args.budget}: CrossHair {budget.condition_s} s per condition, "
        f"cap {budget.function_cap_s} s CPU per function; z3 {budget.z3_ms // 1000} s per proof; "
        f"{budget.examples} symbolic examples; cap {budget.step_cap_s} s CPU per pytest step; "
        f"worst case ~{worst / 60:.0f} min on {args.jobs} free cores",
        flush=True,
    )
    run_started = time.time()

    def report(step: str, ok: bool, started: float, detail: str = "") -> None:
        status = "ok" if ok else "FAILED"
        print(f"[verify] {step}: {status} in {time.time() - started:.0f} s {detail}", flush=True)
        if not ok:
            failed.append(step)

    def check_all(targets: list[str], kind: str) -> list[CrosshairResult]:
        with ThreadPoolExecutor(max_workers=max(1, args.jobs)) as pool:
            results = []
            for result in pool.map(lambda t: check_one(t, budget, kind), targets):
                also = "  (z3 proves its contract: step z3)" if result.target in Z3_PROVED else ""
                print(
                    f"  {result.status:<18} {result.cpu_s:6.0f} s CPU  {result.target}{also}",
                    flush=True,
                )
                for line in result.findings:
                    print(f"      {line}", flush=True)
                results.append(result)
        return results

    if "crosshair" in steps:
        started = time.time()
        if args.budget == "long":
            results = check_all(functions, "PEP316")
            bad = [r for r in results if r.status in ("COUNTEREXAMPLE", "CRASH")]
            counts = {
                s: sum(r.status == s for r in results) for s in sorted({r.status for r in results})
            }
            report("crosshair", not bad, started, f"({len(results)} functions: {counts})")
        else:
            targets = crosshair_targets(args.budget)
            findings = run_crosshair(targets, budget.condition_s, budget.path_s)
            for line in findings:
                print(f"  {line}")
            report("crosshair", not findings, started, f"({len(targets)} modules)")
    if "liveness" in steps:
        started = time.time()
        results = check_all(liveness_targets(), "asserts")
        bad = [r for r in results if r.status in ("COUNTEREXAMPLE", "CRASH")]
        report("guard liveness, input boundary (CrossHair asserts)", not bad, started)
    if "z3" in steps:
        started = time.time()
        code = _pytest(
            list(Z3_TESTS),
            {
                "DYNAMARGIN_VERIFY_Z3_TIMEOUT_MS": str(budget.z3_ms),
                # the larger list sizes and the float lemmas (tests/verification/*_z3.py)
                "DYNAMARGIN_VERIFY_Z3_BUDGET": "long" if args.budget == "long" else "ci",
            },
            budget.step_cap_s,
        )
        report("z3", code == 0, started, _capped(code))
    if "symbolic" in steps:
        started = time.time()
        code = _pytest(
            ["tests/verification/test_symbolic_properties.py"],
            {"DYNAMARGIN_VERIFY_SYMBOLIC_EXAMPLES": str(budget.examples)},
            budget.step_cap_s,
        )
        report("hypothesis-crosshair", code == 0, started, _capped(code))
    if "contracts" in steps:
        started = time.time()
        code = _pytest(
            [
                "-p",
                "tests.verification.contract_plugin",
                "tests/liquidation/test_rules.py",
                "tests/liquidation/test_liquidation_regressions.py",
                "tests/liquidation/test_liquidation_units.py",
                "tests/liquidation/test_liquidation_fuzz.py",
                "tests/liquidation/test_replay_engine_equivalence.py",
                "tests/serving/test_policy.py",
            ],
            {},
            budget.step_cap_s,
        )
        report("run-time contracts", code == 0, started, _capped(code))
    total = time.time() - run_started
    verdict = "FAILED: " + ", ".join(failed) if failed else "all steps passed"
    print(f"[verify] {verdict} in {total / 60:.1f} min", flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
