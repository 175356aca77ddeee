"""scripts/estimate_book.py: the book's defaults are its estimates, and it never reads the
test period (issue #19 items 1 and 4)."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

import pandas as pd
import pytest

from liquidation.calibration import FIT_PERIOD, TEST_PERIOD
from liquidation.market_book import MarketBookConfig

PROJECT = Path(__file__).resolve().parents[2]


def _script() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "estimate_book", PROJECT / "scripts/estimate_book.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def estimates(shared_data: Path) -> dict[str, dict[str, float]]:
    return _script().estimate(shared_data)


def test_defaults_are_the_estimates(estimates: dict[str, dict[str, float]]) -> None:
    script = _script()
    defaults = MarketBookConfig()
    for name in script.ESTIMATED:
        assert round(estimates[name]["value"], 2) == round(getattr(defaults, name), 2), name
        assert estimates[name]["n"] > 300


def test_estimates_never_read_the_test_period(
    shared_data: Path, estimates: dict[str, dict[str, float]], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Hand the script data through the end of the test period: nothing may change."""
    script = _script()
    real = script.load_market
    asked: list[pd.Timestamp] = []

    def widened(root, interval, assets, start, end):
        asked.append(pd.Timestamp(end))
        return real(root, interval, assets, start, TEST_PERIOD[1])

    monkeypatch.setattr(script, "load_market", widened)
    again = script.estimate(shared_data)
    # One day beyond the fit period at most: the day the fit's last daily row becomes known.
    assert asked and all(a <= FIT_PERIOD[1] + pd.Timedelta(days=1) for a in asked)
    assert again == estimates
