"""CrossHair on the guard-liveness and input-boundary claims, with the short (CI) budget.

``make verify`` runs the same claims with its long budget; any counterexample fails here.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

PROJECT = Path(__file__).resolve().parents[2]


def test_crosshair_finds_no_counterexample_to_liveness_or_the_boundary() -> None:
    spec = importlib.util.spec_from_file_location("verify_script", PROJECT / "scripts/verify.py")
    assert spec is not None and spec.loader is not None
    script = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = script  # its dataclasses look their module up
    spec.loader.exec_module(script)
    findings = script.run_crosshair(script.liveness_targets(), 5, 2, kind="asserts")
    assert findings == [], "\n".join(findings)
