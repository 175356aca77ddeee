"""Helpers for the market-data tests: write dump files, serve a directory over HTTP."""

from __future__ import annotations

import hashlib
import http.server
import threading
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

KLINE_HEADER = (
    "open_time,open,high,low,close,volume,close_time,quote_volume,count,"
    "taker_buy_volume,taker_buy_quote_volume,ignore"
)


def kline_lines(
    start: str, n: int, unit: str = "ms", step_hours: int = 1, price: float = 100.0
) -> list[str]:
    """``n`` consistent kline CSV lines from ``start``, stamps in ``ms`` or ``us``."""
    scale = 1_000 if unit == "ms" else 1_000_000
    t0 = int(pd.Timestamp(start, tz="UTC").timestamp())
    lines = []
    for i in range(n):
        open_s = t0 + i * 3600 * step_hours
        o = price + i
        c = o + 0.5
        open_time = open_s * scale
        close_time = (open_s + 3600 * step_hours) * scale - 1
        lines.append(
            f"{open_time},{o:.2f},{c + 1:.2f},{o - 1:.2f},{c:.2f},10.5,{close_time},"
            f"{10.5 * o:.4f},42,4.25,{4.25 * o:.4f},0"
        )
    return lines


def write_zip(path: Path, text: str, *, checksum: bool = True, member: str | None = None) -> Path:
    """Write ``text`` as the single CSV of a dump zip, with its ``.CHECKSUM``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        archive.writestr(member or path.name.replace(".zip", ".csv"), text)
    if checksum:
        write_checksum(path)
    return path


def write_checksum(path: Path, digest: str | None = None) -> None:
    digest = digest or hashlib.sha256(path.read_bytes()).hexdigest()
    path.with_name(path.name + ".CHECKSUM").write_text(f"{digest}  {path.name}\n")


def kline_zip_path(root: Path, symbol: str, interval: str, month: str) -> Path:
    """Where a monthly kline zip lives in a dump rooted at ``root`` (the binance/ dir)."""
    return (
        root / "data/spot/monthly/klines" / symbol / interval / f"{symbol}-{interval}-{month}.zip"
    )


# --- a real HTTP server over a directory, with Range support and fault injection --------


@dataclass
class ServerControl:
    """Knobs and a log shared between a test and its :class:`FileServer` handler."""

    directory: Path
    fail_first: int = 0  # answer 503 to the first N requests
    truncate_first: int = 0  # send half of the body, then close, for the first N zip GETs
    support_range: bool = True
    log: list[tuple[str, str | None, int]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)


class _Handler(http.server.SimpleHTTPRequestHandler):
    control: ServerControl

    def log_message(self, format: str, *args: object) -> None:
        """Keep the test output quiet."""

    def do_GET(self) -> None:
        control = self.control
        with control.lock:
            number = len(control.log)
            failing = number < control.fail_first
            truncating = not failing and control.truncate_first > 0 and self.path.endswith(".zip")
            if truncating:
                control.truncate_first -= 1
        path = Path(self.translate_path(self.path))
        range_header = self.headers.get("Range")
        if failing:
            self._record(range_header, 503)
            self.send_error(503, "injected failure")
            return
        if not path.is_file():
            self._record(range_header, 404)
            self.send_error(404)
            return
        payload = path.read_bytes()
        start = 0
        if range_header and control.support_range:
            start = int(range_header.removeprefix("bytes=").split("-")[0])
            if start >= len(payload):
                self._record(range_header, 416)
                self.send_error(416)
                return
        status = 206 if start and control.support_range else 200
        body = payload[start:] if status == 206 else payload
        self._record(range_header, status)
        self.send_response(status)
        self.send_header("Content-Length", str(len(body)))
        if status == 206:
            self.send_header("Content-Range", f"bytes {start}-{len(payload) - 1}/{len(payload)}")
        self.end_headers()
        if truncating:
            self.wfile.write(body[: len(body) // 2])
            self.wfile.flush()
            self.close_connection = True
            return
        self.wfile.write(body)

    def _record(self, range_header: str | None, status: int) -> None:
        with self.control.lock:
            self.control.log.append((self.path, range_header, status))


def assert_no_rows_lost(n_input: int, clean: pd.DataFrame, quarantine: pd.DataFrame) -> None:
    """Every input row is either kept or quarantined."""
    assert len(clean) + len(quarantine) == n_input, (len(clean), len(quarantine), n_input)


def handler_for(control: ServerControl) -> type[http.server.SimpleHTTPRequestHandler]:
    """A request handler class bound to ``control``."""
    return type("Handler", (_Handler,), {"control": control})
