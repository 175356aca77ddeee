"""Load benchmark of the serving API: ``dynamargin serve --workers 2`` with 10 assets.

Publishes 10 assets (real signed snapshots through ``publish_batch``) into a temp work
dir, starts the server on a free loopback port, then loads each endpoint for a bounded
time: ``/healthz`` first as the baseline (no store, no rendering), then
``/v1/multipliers`` and ``/v1/risk/BTCUSDT``. The load generator is ``wrk`` when
installed (``apt-get install -y wrk``), else an async aiohttp client (which needs more CPU
per request and so reports lower figures on a small machine). Prints req/s, p50/p99
latency, errors and the ratio to the baseline, and checks the aim: >= 3000 req/s,
p99 < 20 ms, 0 errors. Exit code 0 unless the server failed; missing the aim is reported,
not fatal, because the machine is shared.

Usage: ``python benchmarks/bench_api.py [--seconds 10] [--connections 32] [--python]``
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests" / "api"))

from api_seeding import seed_store  # noqa: E402

ASSETS = (
    "BTCUSDT",
    "ETHUSDT",
    "SOLUSDT",
    "BNBUSDT",
    "XRPUSDT",
    "ADAUSDT",
    "DOGEUSDT",
    "AVAXUSDT",
    "LINKUSDT",
    "DOTUSDT",
)
AIM_RPS, AIM_P99_MS = 3000.0, 20.0
ENDPOINTS = ("/healthz", "/v1/multipliers", "/v1/risk/BTCUSDT")


@dataclass(frozen=True)
class LoadResult:
    """Figures of one load run."""

    path: str
    requests: int
    seconds: float
    p50_ms: float
    p99_ms: float
    errors: int

    @property
    def rps(self) -> float:
        return self.requests / self.seconds


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--python", action="store_true", help="use the aiohttp generator")
    args = parser.parse_args()

    wrk = None if args.python else shutil.which("wrk")
    tool = "wrk" if wrk else "aiohttp"
    workdir = Path(tempfile.mkdtemp(prefix="dynamargin-bench-api-"))
    try:
        started = time.perf_counter()
        seed_store(workdir, ASSETS, batches=3).close()
        print(
            f"published 3 batches x {len(ASSETS)} assets in {time.perf_counter() - started:.1f} s"
        )
        port = _free_port()
        with _server(workdir, port, args.workers) as base:
            print(
                f"server: dynamargin serve --workers {args.workers} on {base}; "
                f"load: {tool}, {args.connections} connections, {args.seconds:.0f} s per endpoint, "
                f"{os.cpu_count()} cores shared by server and load generator"
            )
            results = []
            for path in ENDPOINTS:
                if wrk:
                    result = _run_wrk(wrk, base, path, args.seconds, args.connections)
                else:
                    result = asyncio.run(_run_aiohttp(base, path, args.seconds, args.connections))
                results.append(result)
        _report(results)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    return 0


def _report(results: list[LoadResult]) -> None:
    baseline = results[0]
    print(
        f"\n{'endpoint':<22}{'req/s':>10}{'p50 ms':>9}{'p99 ms':>9}{'errors':>8}{'vs /healthz':>13}"
    )
    for r in results:
        print(
            f"{r.path:<22}{r.rps:>10.0f}{r.p50_ms:>9.2f}{r.p99_ms:>9.2f}{r.errors:>8d}"
            f"{r.rps / baseline.rps:>12.2f}x"
        )
    for r in results[1:]:
        met = r.rps >= AIM_RPS and r.p99_ms < AIM_P99_MS and r.errors == 0
        verdict = "MET" if met else "NOT MET"
        print(
            f"aim {r.path}: >= {AIM_RPS:.0f} req/s, p99 < {AIM_P99_MS:.0f} ms, 0 errors: {verdict}"
        )


def _run_wrk(wrk: str, base: str, path: str, seconds: float, connections: int) -> LoadResult:
    command = [
        wrk,
        "-t",
        "1",
        "-c",
        str(connections),
        "-d",
        f"{seconds:.0f}s",
        "--latency",
        "-H",
        "Accept-Encoding: gzip",
        base + path,
    ]
    out = subprocess.run(command, check=True, capture_output=True, text=True).stdout
    requests = int(re.search(r"(\d+) requests in ([\d.]+)(m?s)", out).group(1))
    duration = re.search(r"requests in ([\d.]+)(ms|s|m)", out)
    scale = {"ms": 1e-3, "s": 1.0, "m": 60.0}[duration.group(2)]
    errors = 0
    non_2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    if non_2xx:
        errors += int(non_2xx.group(1))
    socket_errors = re.search(
        r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out
    )
    if socket_errors:
        errors += sum(int(g) for g in socket_errors.groups())
    return LoadResult(
        path=path,
        requests=requests,
        seconds=float(duration.group(1)) * scale,
        p50_ms=_wrk_latency(out, "50%"),
        p99_ms=_wrk_latency(out, "99%"),
        errors=errors,
    )


def _wrk_latency(out: str, label: str) -> float:
    value, unit = re.search(rf"{label}\s+([\d.]+)(us|ms|s)", out).groups()
    return float(value) * {"us": 1e-3, "ms": 1.0, "s": 1e3}[unit]


async def _run_aiohttp(base: str, path: str, seconds: float, connections: int) -> LoadResult:
    import aiohttp

    latencies: list[float] = []
    errors = 0
    deadline = time.perf_counter() + seconds
    url = base + path

    async def worker(session: aiohttp.ClientSession) -> None:
        nonlocal errors
        while time.perf_counter() < deadline:
            began = time.perf_counter()
            try:
                async with session.get(url, headers={"Accept-Encoding": "gzip"}) as response:
                    await response.read()
                    if response.status >= 400:
                        errors += 1
            except aiohttp.ClientError:
                errors += 1
            latencies.append(time.perf_counter() - began)

    connector = aiohttp.TCPConnector(limit=connections)
    started = time.perf_counter()
    async with aiohttp.ClientSession(connector=connector) as session:
        await asyncio.gather(*(worker(session) for _ in range(connections)))
    elapsed = time.perf_counter() - started
    latencies.sort()
    return LoadResult(
        path=path,
        requests=len(latencies),
        seconds=elapsed,
        p50_ms=latencies[len(latencies) // 2] * 1e3,
        p99_ms=latencies[int(len(latencies) * 0.99)] * 1e3,
        errors=errors,
    )


class _server:
    """Context manager running ``dynamargin serve``; always terminated on exit."""

    def __init__(self, workdir: Path, port: int, workers: int) -> None:
        self.workdir, self.port, self.workers = workdir, port, workers
        self.process: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> str:
        self.log = (self.workdir / "serve.log").open("wb")
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-c",
                "from pipelines.cli import app; app()",
                "--workdir",
                str(self.workdir),
                "serve",
                "--host",
                "127.0.0.1",
                "--port",
                str(self.port),
                "--workers",
                str(self.workers),
                "--log-level",
                "warning",
            ],
            stdout=self.log,
            stderr=subprocess.STDOUT,
            cwd=ROOT,
        )
        base = f"http://127.0.0.1:{self.port}"
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"server exited: {(self.workdir / 'serve.log').read_text()}")
            try:
                # Both workers must answer before the clock starts: poll until ready twice.
                if httpx.get(base + "/readyz", timeout=1).status_code == 200:
                    return base
            except httpx.TransportError:
                pass
            time.sleep(0.2)
        raise RuntimeError("server did not become ready within 60 s")

    def __exit__(self, *exc: object) -> None:
        assert self.process is not None
        self.process.terminate()
        try:
            self.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=15)
        self.log.close()


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


if __name__ == "__main__":
    sys.exit(main())
