"""The review report: written under <workdir>/reports, self-contained, with the numbers."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from models.evaluation import qlike
from models.registry import TAG_REPORT_HTML
from models.review_report import format_qlike
from tests.models.registry_factory import IN_CI, PROJECT_ROOT, ReviewedStore, training_run


def expected_pooled_qlike(reviewed: ReviewedStore) -> dict[str, float]:
    """Pooled QLIKE of challenger, champion and HAR, recomputed from the raw frames."""
    challenger = training_run(challenger_error=0.1, seed=2).forecasts
    champion = training_run(challenger_error=0.3, seed=1).forecasts
    truth = challenger.loc[challenger["model"] == "lgbm", ["ts", "asset", "rv"]]

    def pooled(frame, model: str) -> float:
        rows = truth.merge(frame.loc[frame["model"] == model, ["ts", "asset", "variance"]])
        return float(np.mean(qlike(rows["rv"], rows["variance"])))

    return {
        "challenger": pooled(challenger, "lgbm"),
        "champion": pooled(champion, "lgbm"),
        "har": pooled(challenger, "har"),
    }


def test_report_is_written_and_contains_the_comparison(reviewed: ReviewedStore) -> None:
    report = reviewed.second.report
    reports_dir = reviewed.backend.workdir / "reports"
    assert report.html.parent == reports_dir and report.markdown.parent == reports_dir
    html = report.html.read_text()
    markdown = report.markdown.read_text()
    numbers = expected_pooled_qlike(reviewed)
    for label, value in numbers.items():
        text = format_qlike(value)
        assert text in html, f"{label} pooled QLIKE {text} missing from the HTML report"
        assert text in markdown, f"{label} pooled QLIKE {text} missing from the Markdown summary"
    assert numbers["challenger"] < numbers["champion"] < numbers["har"]
    for needle in (
        "challenger v2 (lgbm)",
        "champion v1 (lgbm)",
        "har",
        "ewma",
        "qlike_vs_champion",
        "var_green_zone",
        "Feature-importance shift",
    ):
        assert needle in html and needle in markdown, needle
    assert "| qlike_vs_har | PASS |" in markdown


def test_report_is_self_contained(reviewed: ReviewedStore) -> None:
    html = reviewed.second.report.html.read_text()
    images = re.findall(r"<img[^>]*src='([^']*)'", html)
    assert len(images) == 3  # calibration, forecast vs realized, importance shift
    assert all(src.startswith("data:image/png;base64,") for src in images)
    assert not re.search(r"""(src|href)=["']?(https?:)?//""", html), "no external assets"
    assert "<style>" in html and "<link" not in html and "<script" not in html


def test_report_is_logged_to_mlflow_and_tagged(reviewed: ReviewedStore) -> None:
    client = reviewed.backend.store.client()
    run_id = reviewed.second.run.run_id
    logged = {a.path for a in client.list_artifacts(run_id, "review")}
    html = reviewed.second.report.html
    assert f"review/{html.name}" in logged
    assert f"review/{reviewed.second.report.markdown.name}" in logged
    assert reviewed.backend.registry().version("2").tags[TAG_REPORT_HTML] == str(html)


def test_report_renders_in_headless_chromium(reviewed: ReviewedStore, tmp_path: Path) -> None:
    sys.path.insert(0, str(PROJECT_ROOT / "scripts"))
    try:
        from screenshot_report import find_chromium
    finally:
        sys.path.pop(0)
    if find_chromium() is None:
        if IN_CI:
            pytest.fail("chromium is required in CI: apt-get install -y chromium")
        pytest.skip("chromium not installed (apt-get install -y chromium)")
    png = tmp_path / "report.png"
    result = subprocess.run(
        [
            sys.executable,
            str(PROJECT_ROOT / "scripts" / "screenshot_report.py"),
            str(reviewed.second.report.html),
            str(png),
        ],
        capture_output=True,
        text=True,
        timeout=180,
        env={**os.environ},
    )
    assert result.returncode == 0, result.stderr
    from matplotlib.image import imread

    pixels = imread(png)
    assert pixels.shape[:2] == (2000, 1280)
    assert float(pixels[..., :3].std()) > 0.05, "the screenshot is blank"
