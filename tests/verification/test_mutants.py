"""Reintroduced defects are found by verification (the cheap ones; ``make verify-mutants`` runs
all of them, the ramp reset and the run-time contract checks included).

Each mutant is applied to a temporary copy of the project (``scripts/verify_mutants.py``); the
project itself is never modified.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

PROJECT = Path(__file__).resolve().parents[2]


def _script():
    spec = importlib.util.spec_from_file_location(
        "verify_mutants", PROJECT / "scripts/verify_mutants.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up
    spec.loader.exec_module(module)
    return module


SCRIPT = _script()


@pytest.mark.parametrize("name", SCRIPT.CI_MUTANTS)
def test_verification_finds_the_reintroduced_defect(name: str) -> None:
    mutant = next(m for m in SCRIPT.MUTANTS if m.name == name)
    findings = SCRIPT.verify_mutant(mutant, long=False, timeout_s=600)
    assert findings, f"no check ran on {name}"
    assert any(f.found for f in findings), "\n".join(f"{f.check}: {f.evidence}" for f in findings)


def test_every_mutant_still_applies_to_the_code(tmp_path: Path) -> None:
    """A mutant whose text no longer occurs once would silently test nothing."""
    for mutant in SCRIPT.MUTANTS:
        target = PROJECT / mutant.path
        text = target.read_text()
        for old, _ in mutant.edits:
            assert text.count(old) == 1, f"{mutant.name}: {old!r}"
