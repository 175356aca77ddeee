"""Per-worker limits: requests in flight, and the settings that carry every limit."""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx
import pytest
from starlette.responses import PlainTextResponse
from starlette.types import Receive, Scope, Send
from typer.testing import CliRunner

from pipelines.cli import app as cli
from serving.api_config import ApiConfig, ApiConfigError
from serving.request_limits import InFlightLimitMiddleware

pytestmark = pytest.mark.anyio


async def test_requests_beyond_the_in_flight_cap_get_503_at_once() -> None:
    release = asyncio.Event()
    entered = asyncio.Event()

    async def slow(scope: Scope, receive: Receive, send: Send) -> None:
        entered.set()
        await release.wait()
        await PlainTextResponse("done")(scope, receive, send)

    limited = InFlightLimitMiddleware(slow, max_in_flight=1)
    transport = httpx.ASGITransport(app=limited)
    async with httpx.AsyncClient(transport=transport, base_url="http://api") as client:
        first = asyncio.create_task(client.get("/v1/risk"))
        await entered.wait()
        second = await client.get("/v1/risk")
        health = asyncio.create_task(client.get("/healthz"))
        release.set()
        assert (await first).status_code == 200
        assert (await health).status_code == 200  # liveness is never refused
    assert second.status_code == 503
    assert second.headers["content-type"] == "application/problem+json"
    assert second.headers["retry-after"] == "1"
    assert second.json()["type"].endswith("/overloaded")
    assert limited.in_flight == 0


def test_every_limit_round_trips_through_the_environment(tmp_path: Path) -> None:
    config = ApiConfig.from_workdir(
        tmp_path,
        max_body_bytes=300,
        header_timeout_seconds=2.5,
        body_timeout_seconds=3.5,
        keep_alive_seconds=1.5,
        max_connections=40,
        max_in_flight=8,
        write_timeout_seconds=0.5,
        refresh_seconds=0.25,
    )
    assert ApiConfig.from_env(config.to_env()) == config


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("DYNAMARGIN_API_MAX_BODY_BYTES", "lots"),
        ("DYNAMARGIN_API_HEADER_TIMEOUT_S", "nan"),
        ("DYNAMARGIN_API_MAX_CONNECTIONS", "0"),
    ],
)
def test_a_bad_setting_is_one_error_line_naming_it(
    tmp_path: Path, variable: str, value: str
) -> None:
    with pytest.raises(ApiConfigError):
        ApiConfig.from_env({"DYNAMARGIN_WORKDIR": str(tmp_path), variable: value})
    result = CliRunner().invoke(
        cli, ["--workdir", str(tmp_path), "serve", "--port", "0"], env={variable: value}
    )
    assert result.exit_code == 1
    assert "error:" in result.output and (variable in result.output or "must be" in result.output)
