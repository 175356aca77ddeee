"""The demo's venue step on a small work dir: it consumes the batch the demo serves."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from pipelines.commands.demo import _show_venue
from pipelines.settings import get_settings
from tests.venue.conftest import ASSETS, make_world


def test_the_demo_venue_step_applies_the_served_batch_and_prints_its_effect(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    world = make_world(tmp_path / "work")
    world.publish(world.end)
    _show_venue(get_settings(world.workdir))
    out = capsys.readouterr().out
    assert "Venue consumed the served batch at " + world.end.strftime("%Y-%m-%dT%H:%M:%SZ") in out
    assert "refused: none" in out
    for asset in ASSETS:
        assert re.search(rf"{asset} +│ +2\.000 -> \d\.\d{{3}} │", out), out
    assert re.search(r"accounts at risk \(equity/MM < 1\.5\): \d+ -> \d+", out)
    assert (world.workdir / "venue-demo" / "events.db").exists()
