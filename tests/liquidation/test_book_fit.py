"""scripts/fit_book.py never reads the test period (issue #19 item 4): handed data through the
end of the test period, the fit is the same to the last bit."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

import pandas as pd
import pytest

from liquidation.calibration import FIT_PERIOD, TEST_PERIOD

PROJECT = Path(__file__).resolve().parents[2]


def _script() -> ModuleType:
    spec = importlib.util.spec_from_file_location("fit_book", PROJECT / "scripts/fit_book.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_fit_never_reads_the_test_period(
    shared_data: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    script = _script()
    small = {"traders": 1_500, "hold_grid": (0.0,), "iterations": 1}
    chosen, candidates = script.fit(shared_data, **small)
    real = script.load_asset
    asked: list[pd.Timestamp] = []

    def widened(data: Path, asset: str, end: pd.Timestamp = TEST_PERIOD[1]):
        asked.append(pd.Timestamp(end))
        return real(data, asset, end=TEST_PERIOD[1])

    monkeypatch.setattr(script, "load_asset", widened)
    again, candidates_again = script.fit(shared_data, **small)
    assert asked and all(a <= FIT_PERIOD[1] for a in asked)
    assert (again, candidates_again) == (chosen, candidates)
    [candidate] = candidates
    for figures in candidate["assets"].values():
        # Both shares are measured, on the fit days with open interest (2022).
        assert figures["liq_oi_real"] > 0 and figures["liq_oi_sim"] > 0
        assert figures["scale"] > 0
