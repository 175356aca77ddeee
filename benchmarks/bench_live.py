"""Benchmark: bar close -> signed snapshot served, 10 assets, against the exchange emulator.

The store holds a year of history (the dump path, 2023-03..2024-01, or the synthetic
market); the emulator serves ten assets of ``../shared/data`` from there to 2024-03-05 and
``dynamargin serve`` serves the live store. For each of ``HOURS`` closes
the clock moves past the close, the live loop runs its cycle (ingest over HTTP, incremental
features, forecast, policy, signed batch) and the clock stops when ``GET /v1/risk/BTCUSDT``
returns the new ``update_id``. The baseline, measured in the same run on the same store, is
the full feature rebuild the incremental step replaces (with the same positioning and
macro calendar, read in place from ``../shared/data`` as known at the close). The forecast
source is the EWMA baseline (refitted and recalibrated every hour), so no MLflow training
is needed; the champion's LightGBM predict on the same rows costs less than that refit.

Aims: under 10 s from close to served, of which features under 1 s.
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import httpx
import pandas as pd

from features.build import build_features
from features.emulator.clock import SimulatedClock
from features.emulator.context import EmulatorContext
from features.emulator.control import EmulatorControl
from features.emulator.data import EmulatorMarket
from features.emulator.server import EmulatorServer
from features.live.ingest import LiveIngest, LiveIngestConfig
from features.live.metrics import LiveMetrics
from features.live.venues import VenueEndpoints
from features.market import MarketData
from features.sources.retry import RetryPolicy
from features.sources.side_data import SideFiles
from features.store import MarketStore
from models.spec import CalibrationSpec
from pipelines.flows.config import PublishConfig
from pipelines.live_loop import LiveLoop
from pipelines.settings import get_settings

ASSETS = [
    "BTCUSDT", "ETHUSDT", "BNBUSDT", "SOLUSDT", "XRPUSDT",
    "ADAUSDT", "DOGEUSDT", "AVAXUSDT", "DOTUSDT", "LINKUSDT",
]  # fmt: skip
DAY = pd.Timestamp("2024-03-05", tz="UTC")
HOURS = 6
SHARED = Path(__file__).resolve().parent.parent.parent / "shared" / "data"


def _prepare(store: MarketStore) -> tuple[EmulatorMarket, list[str]]:
    """A year of history in the store (the dump path), the emulator serving the days after."""
    if (SHARED / "binance").is_dir():
        store.ingest_dump(SHARED, ["1h"], ASSETS, months=("2023-03", "2024-01"))
        return EmulatorMarket.from_data(SHARED, "2024-01-25", "2024-03-07", ASSETS), ASSETS
    from features.synthetic import SyntheticMarketConfig, generate_market

    start = DAY - pd.Timedelta(days=365)
    market = generate_market(SyntheticMarketConfig(n_assets=10, days=367, start=start, seed=7))
    store.ingest_market(
        MarketData(
            bars=market.bars[market.bars["ts"] < DAY - pd.Timedelta(days=30)],
            funding=market.funding[market.funding["ts"] < DAY - pd.Timedelta(days=30)],
            perp=market.perp[market.perp["ts"] < DAY - pd.Timedelta(days=30)],
            interval=market.interval,
            source=market.source,
        )
    )
    return EmulatorMarket(market), market.assets


def _served(client: httpx.Client, asset: str, update_id: int, deadline: float) -> None:
    while time.perf_counter() < deadline:
        answer = client.get(f"/v1/risk/{asset}")
        if answer.status_code == 200 and answer.json()["update_id"] >= update_id:
            return
        time.sleep(0.005)
    raise TimeoutError(f"update {update_id} of {asset} not served in time")


def main() -> int:
    with tempfile.TemporaryDirectory() as tmp:
        settings = get_settings(Path(tmp) / "work")
        settings.workdir.mkdir(parents=True)
        market, assets = _prepare(MarketStore(settings.store_dir))
        store_url = f"sqlite:///{settings.workdir / 'publications.db'}"
        context = EmulatorContext(
            market, SimulatedClock(DAY + pd.Timedelta(seconds=5), 1.0, paused=True)
        )
        with EmulatorServer(context) as emulator:
            control = EmulatorControl(emulator.url)
            metrics = LiveMetrics()
            sources = VenueEndpoints.emulator(emulator.url, dump=False).build(
                metrics=metrics, retry=RetryPolicy(attempts=3, backoff=0.05, max_backoff=0.2)
            )
            ingest = LiveIngest(
                MarketStore(settings.store_dir),
                sources,
                assets,
                LiveIngestConfig(since=DAY - pd.Timedelta(days=30), repoll_seconds=0.05),
                metrics,
            )
            side = SideFiles(SHARED) if (SHARED / "positioning").is_dir() else None
            loop = LiveLoop(
                settings,
                ingest,
                PublishConfig(model="baseline:ewma", history_days=10),
                calibration=CalibrationSpec(window_days=10),
                store_url=store_url,
                side=side,
            )
            started = time.perf_counter()
            first = loop.step_once()  # history ingest and the one full build: not timed
            assert first is not None, "the first cycle published nothing"
            print(
                f"bootstrap: {len(assets)} assets, the gap to {DAY:%Y-%m-%d} ingested live and "
                f"the one full build in {time.perf_counter() - started:.1f} s"
            )
            port = _free_port()
            server = subprocess.Popen(
                [str(Path(sys.executable).with_name("dynamargin")), "--workdir", str(settings.workdir),  # noqa: E501
                 "serve", "--port", str(port), "--workers", "1", "--refresh", "0"],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            )  # fmt: skip
            try:
                client = httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=5.0)
                _wait_up(client)
                totals, features, full, stages = [], [], [], []
                for _ in range(HOURS):
                    control.advance(pd.Timedelta(hours=1))
                    mark = time.perf_counter()
                    publication = loop.step_once()
                    assert publication is not None, "a close published nothing"
                    update_id = publication.asset(assets[0]).update_id
                    _served(client, assets[0], update_id, mark + 60)
                    totals.append(time.perf_counter() - mark)
                    features.append(publication.seconds["features"])
                    stages.append(dict(publication.seconds))
                    rebuild = time.perf_counter()
                    everything = ingest.store.read_market("1h", assets)
                    if side is not None:
                        close = everything.bars["ts"].max() + pd.Timedelta(hours=1)
                        positioning, events = side.as_of(close, assets)
                        everything = replace(everything, positioning=positioning, events=events)
                    build_features(everything)
                    full.append(time.perf_counter() - rebuild)
            finally:
                server.terminate()
                server.wait(30)
                for source in sources:
                    source.close()
    med = statistics.median
    rows = len(everything.bars)
    print(
        f"{len(assets)} assets, {HOURS} closes, store {rows} bars per rebuild; positioning and "
        f"events: {side.name if side is not None else 'none'}"
    )
    for name in ("ingest", "features", "forecast", "publish"):
        print(f"  {name:9s} median {med(s[name] for s in stages):.3f} s")
    print(
        f"close -> signed snapshot served: median {med(totals):.2f} s, max {max(totals):.2f} s "
        f"(aim < 10 s)"
    )
    print(
        f"incremental features: median {med(features):.3f} s (aim < 1 s); full rebuild of "
        f"the same store: median {med(full):.3f} s; ratio x{med(full) / med(features):.1f}"
    )
    cpu = med(s["features_cpu"] for s in stages)
    print(
        f"incremental features, CPU time of the loop's thread: median {cpu:.3f} s (wall/CPU "
        f"x{med(features) / cpu:.1f}: the rest is waiting for a core on a loaded machine)"
    )
    return 0


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _wait_up(client: httpx.Client) -> None:
    deadline = time.perf_counter() + 60
    while time.perf_counter() < deadline:
        try:
            if client.get("/healthz").status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise TimeoutError("dynamargin serve did not start")


if __name__ == "__main__":
    sys.exit(main())
