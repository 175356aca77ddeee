"""Render a review report in headless Chromium and save a PNG screenshot.

Usage::

    .venv/bin/python scripts/screenshot_report.py REPORT.html OUT.png [--chromium PATH]
        [--height PIXELS]

It checks that the self-contained HTML page renders with no network access (Debian's
``chromium``; install with ``apt-get install -y chromium``). The browser profile goes to a
temporary directory, never ``~``. Exit status 0 means the PNG was written and is non-empty.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

CANDIDATES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")


class ScreenshotError(RuntimeError):
    """Chromium is missing or did not produce the screenshot."""


def find_chromium(explicit: str | None = None) -> str | None:
    """Path of a Chromium-compatible browser, or None."""
    if explicit:
        return explicit if Path(explicit).exists() else shutil.which(explicit)
    for name in CANDIDATES:
        found = shutil.which(name)
        if found:
            return found
    return None


def screenshot(
    html: Path,
    png: Path,
    chromium: str | None = None,
    window: tuple[int, int] = (1280, 2000),
    timeout: float = 120.0,
) -> Path:
    """Screenshot ``html`` into ``png`` with headless Chromium.

    Raises
    ------
    ScreenshotError
        If no browser is found, it fails, or the PNG is missing or empty.
    """
    browser = find_chromium(chromium)
    if browser is None:
        raise ScreenshotError(
            "no chromium found; install it with `apt-get install -y chromium` or pass --chromium"
        )
    html, png = Path(html).resolve(), Path(png).resolve()
    if not html.is_file():
        raise ScreenshotError(f"report {html} does not exist")
    png.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="dynamargin-chromium-") as profile:
        command = [
            browser,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-background-networking",
            "--disable-component-update",
            "--no-first-run",
            "--hide-scrollbars",
            f"--user-data-dir={profile}",
            f"--screenshot={png}",
            f"--window-size={window[0]},{window[1]}",
            html.as_uri(),
        ]
        # HOME points into the temp profile too, so the browser writes nothing under ~.
        env = {"HOME": profile, "PATH": "/usr/bin:/bin"}
        result = subprocess.run(command, capture_output=True, text=True, timeout=timeout, env=env)
    if result.returncode != 0 or not png.is_file() or png.stat().st_size == 0:
        raise ScreenshotError(
            f"chromium exited {result.returncode} without a screenshot of {html}: "
            f"{result.stderr.strip()[-2000:]}"
        )
    return png


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("html", type=Path)
    parser.add_argument("png", type=Path)
    parser.add_argument("--chromium", default=None)
    parser.add_argument("--height", type=int, default=2000, help="window height in pixels")
    args = parser.parse_args(argv)
    try:
        out = screenshot(args.html, args.png, args.chromium, window=(1280, args.height))
    except ScreenshotError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
