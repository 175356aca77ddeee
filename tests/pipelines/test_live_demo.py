"""The demo's live segment: a real stress day replayed, published hour by hour, on the page.

The emulator replays 2022-06-13 (BTC fell about 15% that day) from ``../shared/data``; the
live loop publishes after every close. Mid-stress, ``dynamargin serve`` on the segment's
store renders the status page in headless Chromium: every asset is there, with its data
age from the live ingest, and the multipliers have tightened.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from models.spec import CalibrationSpec
from pipelines.flows.config import PublishConfig
from pipelines.live_demo import STRESS_ASSETS, STRESS_DAY, run_live_segment
from pipelines.live_summary import render_live_summary
from pipelines.settings import get_settings
from tests.api.live_server import live_server
from tests.api.test_served_process import CHROMIUM_FLAGS, IN_CI, _chromium

pytestmark = pytest.mark.timeout(600)


def test_stress_day_replay_tightens_and_the_status_page_shows_it(
    shared_data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    settings = get_settings(tmp_path / "work")
    settings.workdir.mkdir(parents=True)
    consumed: list[int] = []
    result = run_live_segment(
        settings,
        shared_data,
        hours=9,  # to 09:00 UTC, in the middle of the sell-off
        consumers=[lambda p: consumed.append(p.batch_id)],
        publish=PublishConfig(model="baseline:ewma", history_days=10),
        calibration=CalibrationSpec(window_days=10),
    )
    assert result.day == STRESS_DAY
    assert len(result.publications) == 10  # the bar before the day, then one per close
    assert consumed == [p.batch_id for p in result.publications]
    # The venue consumed every batch through the API and applied every asset's snapshot.
    assert sorted(result.venue) == [p.batch_id for p in result.publications]
    assert all(h.applied == len(STRESS_ASSETS) for h in result.venue.values())
    assert all(p.statuses == {a: "ok" for a in STRESS_ASSETS} for p in result.publications)
    frame = result.multipliers()
    # The stress tightens every asset's multiplier at some hour of the day.
    for asset in STRESS_ASSETS:
        assert frame[asset].max() > frame[asset].iloc[0], asset
    render_live_summary(result)
    assert "one batch per close" in capsys.readouterr().out
    browser = _chromium()
    if browser is None:
        message = "Chromium not installed (apt-get install -y chromium)"
        if IN_CI:
            pytest.fail(message)
        pytest.skip(message)
    env = {
        "DYNAMARGIN_PUBLICATIONS_URL": f"sqlite:///{result.workdir / 'publications.db'}",
        "DYNAMARGIN_LIVE_DATA_FILE": str(result.workdir / "store" / "_live" / "freshness.json"),
    }
    with live_server(settings.workdir, env=env) as server:
        shot = tmp_path / "live_status_page.png"
        common = [browser, *CHROMIUM_FLAGS, f"--user-data-dir={tmp_path / 'profile'}"]
        subprocess.run(
            [*common, f"--screenshot={shot}", "--window-size=1400,600", server.base + "/"],
            check=True,
            capture_output=True,
            timeout=90,
        )
        dom = subprocess.run(
            [*common, "--dump-dom", server.base + "/"],
            check=True,
            capture_output=True,
            timeout=90,
            text=True,
        ).stdout
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert shot.stat().st_size > 10_000
    last = result.publications[-1]
    for asset in STRESS_ASSETS:
        row = dom[dom.index(f'id="asset-{asset}"') :]
        row = row[: row.index("</tr>")]
        assert f"{last.asset(asset).multiplier:.3f}" in row  # the newest multiplier
        assert "data ok" in row and "at venue time 2022-06-13T09:00" in row  # the data age
