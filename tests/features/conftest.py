"""Fixtures for the market-data tests: a dump directory and a real local HTTP server."""

from __future__ import annotations

import http.server
import threading
from collections.abc import Callable, Iterator
from functools import partial
from pathlib import Path

import pytest

from features.emulator.data import EmulatorMarket
from features.store import MarketStore
from tests.features.dump_helpers import ServerControl, handler_for
from tests.features.live_helpers import dump_path_store


@pytest.fixture()
def dump_root(tmp_path: Path) -> Path:
    """An empty ``binance/`` directory to write dump files into."""
    root = tmp_path / "binance"
    (root / "data/spot/monthly/klines").mkdir(parents=True)
    return root


@pytest.fixture()
def file_server() -> Iterator[Callable[[Path], tuple[str, ServerControl]]]:
    """Start threaded HTTP servers on 127.0.0.1 over a directory; stop them after the test."""
    servers: list[http.server.ThreadingHTTPServer] = []

    def start(directory: Path) -> tuple[str, ServerControl]:
        control = ServerControl(directory=directory)
        server = http.server.ThreadingHTTPServer(
            ("127.0.0.1", 0), partial(handler_for(control), directory=str(directory))
        )
        server.daemon_threads = True
        # A short poll interval keeps shutdown() (and so each test) fast.
        threading.Thread(target=server.serve_forever, args=(0.02,), daemon=True).start()
        servers.append(server)
        return f"http://127.0.0.1:{server.server_address[1]}", control

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()


@pytest.fixture(scope="session")
def live_market(shared_data: Path) -> EmulatorMarket:
    """Real data of 2022-06-11..16 (BTC, ETH, SOL) for the exchange emulator."""
    return EmulatorMarket.from_data(
        shared_data, "2022-06-11", "2022-06-17", ["BTCUSDT", "ETHUSDT", "SOLUSDT"]
    )


@pytest.fixture(scope="session")
def reference_store(shared_data: Path, tmp_path_factory: pytest.TempPathFactory) -> MarketStore:
    """What the dump path stores for June 2022 (BTC, ETH, SOL): the live path must match it."""
    root = tmp_path_factory.mktemp("dump-path") / "store"
    return dump_path_store(root, shared_data, ("BTCUSDT", "ETHUSDT", "SOLUSDT"))
