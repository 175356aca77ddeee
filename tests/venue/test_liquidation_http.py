"""``POST /v1/liquidation-price`` on a real venue HTTP server: the library's answer or a problem.

The round trip compares the endpoint with :func:`account_liquidation_prices` on the engine
replayed from the same JSON, tick for tick. Bad bodies (hand-picked, then hypothesis-mutated
accounts and hostile bytes) must each be an RFC 9457 problem with a 4xx status, never a 500.
"""

from __future__ import annotations

import copy
import http.client
import json
import os
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import response_schema_conformance

from liquidation.account_spec import (
    AccountSpec,
    InForce,
    engine_for_account,
    with_parameters_in_force,
)
from liquidation.config import AssetConfig, EngineConfig, PortfolioMarginConfig
from liquidation.engine import Engine
from liquidation.liquidation_price import account_liquidation_prices
from liquidation.money import MICRO
from tests.pipelines.test_liquidation_price_command import account
from venue.liquidation_http import (
    COMPUTING,
    MAX_BODY_BYTES,
    MAX_CONCURRENT,
    MAX_POSITIONS,
    OPENAPI,
    OPENAPI_PATH,
    PATH,
)
from venue.metrics import VenueMetrics
from venue.status_http import StatusServer

PROBLEM = "application/problem+json"
# CI runs a short version; `make fuzz` runs the long one (DYNAMARGIN_FUZZ_EXAMPLES=5000).
EXAMPLES = int(os.environ.get("DYNAMARGIN_FUZZ_EXAMPLES", "400")) // 8
FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


@pytest.fixture(scope="module")
def server() -> Iterator[StatusServer]:
    running = StatusServer(lambda: {}, VenueMetrics().render).start()
    yield running
    running.stop()


SYMBOLS = ("BTCUSDT", "ETHUSDT", "SOLUSDT")


def venue_in_force() -> InForce:
    """A real engine with the account's latest snapshots applied (update 2, multiplier 1.8),
    its own asset parameters and a correlation: what ``Venue.parameters_in_force`` reads."""
    config = EngineConfig(
        assets=(
            AssetConfig("BTCUSDT", maintenance_fraction=0.5),
            AssetConfig("ETHUSDT"),
            AssetConfig("SOLUSDT", maintenance_fraction=0.7),
        ),
        portfolio=PortfolioMarginConfig(
            correlation=((1.0, 0.8, 0.6), (0.8, 1.0, 0.7), (0.6, 0.7, 1.0))
        ),
    )
    engine = Engine(config)
    for snap in account()["snapshots"]:
        engine.apply_snapshot(snap, ts=0)
    return InForce(engine.config, {s: a.params for s, a in engine.state.assets.items() if a.params})


@pytest.fixture(scope="module")
def venue_server() -> Iterator[StatusServer]:
    """The endpoint with a venue's parameters in force behind it (mode (b))."""
    in_force = venue_in_force()
    running = StatusServer(lambda: {}, VenueMetrics().render, in_force=lambda: in_force).start()
    yield running
    running.stop()


def post(server: StatusServer, body: bytes, content_type: str = "application/json"):
    return httpx.post(
        server.url + PATH, content=body, headers={"Content-Type": content_type}, timeout=60
    )


def assert_problem(response: httpx.Response, status: int | None = None) -> dict[str, Any]:
    """A 4xx RFC 9457 problem (of ``status`` if given) whose members agree with the response."""
    assert 400 <= response.status_code < 500, (response.status_code, response.text[:300])
    if status is not None:
        assert response.status_code == status, response.text
    assert response.headers["content-type"] == PROBLEM
    problem = response.json()
    assert problem["status"] == response.status_code
    assert problem["type"].startswith("https://dynamargin.dev/problems/")
    assert problem["title"] and problem["detail"]
    return problem


def test_the_endpoint_answers_what_the_library_computes(server: StatusServer) -> None:
    response = post(server, json.dumps(account()).encode())
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/json"
    served = response.json()
    spec = AccountSpec.parse(account())
    expected = account_liquidation_prices(
        engine_for_account(spec), spec.account, spec.at_ms, accrued_funding=spec.accrued_funding
    )
    assert served["account"] == "alice" and served["at_ms"] == spec.at_ms
    assert len(served["positions"]) == len(expected) == 3
    for row, result in zip(served["positions"], expected, strict=True):
        assert (row["bucket"], row["asset"]) == (result.bucket, result.asset)
        for field, micro in (
            ("oracle", result.oracle),
            ("mark", result.mark),
            ("liquidation_below", result.below),
            ("liquidation_above", result.above),
        ):
            # Tick-exact: the decimal string is the library's micro-USD integer.
            assert (None if row[field] is None else int(Decimal(row[field]) * MICRO)) == micro
        assert row["liquidatable_now"] is result.liquidatable_now
    # A crossing exists on the side that loses for each leg, so the comparison is not vacuous.
    assert all(r.below is not None or r.above is not None for r in expected)


def test_without_snapshots_the_venue_parameters_in_force_are_used_and_named(
    venue_server: StatusServer, server: StatusServer
) -> None:
    body = _without("snapshots")
    response = post(venue_server, json.dumps(body).encode())
    assert response.status_code == 200, response.text
    served = response.json()
    assert served["parameters"] == {
        "source": "venue",
        "update_ids": {"BTCUSDT": 2, "ETHUSDT": 2, "SOLUSDT": 2},
    }
    spec, config = with_parameters_in_force(AccountSpec.parse(body), venue_in_force())
    assert config.assets[0].maintenance_fraction == 0.5  # the venue's asset parameters
    expected = account_liquidation_prices(
        engine_for_account(spec, config), spec.account, spec.at_ms,
        accrued_funding=spec.accrued_funding,
    )  # fmt: skip
    for row, result in zip(served["positions"], expected, strict=True):
        for field, micro in (
            ("liquidation_below", result.below),
            ("liquidation_above", result.above),
        ):
            assert (None if row[field] is None else int(Decimal(row[field]) * MICRO)) == micro
    # The caller's own parameters give other prices (default assets), named as the request's.
    own = post(venue_server, json.dumps(account()).encode()).json()
    assert own["parameters"]["source"] == "request"
    assert own["positions"] != served["positions"]
    # The caller's earlier snapshots (update 1 only): the answer names those.
    earlier = account() | {"snapshots": account()["snapshots"][:3]}
    first = post(venue_server, json.dumps(earlier).encode()).json()
    assert first["parameters"]["update_ids"] == dict.fromkeys(SYMBOLS, 1)
    # Without a venue behind the server, mode (b) is a problem naming what to send.
    problem = assert_problem(post(server, json.dumps(body).encode()), 422)
    assert problem["type"].endswith("no-parameters-in-force") and "snapshots" in problem["detail"]


def test_an_asset_the_venue_does_not_list_is_a_422_problem(venue_server: StatusServer) -> None:
    body = _without("snapshots")
    body["prices"]["DOGEUSDT"] = "0.1"
    problem = assert_problem(post(venue_server, json.dumps(body).encode()), 422)
    assert "DOGEUSDT" in problem["detail"]


def test_an_account_with_options_is_a_422_problem_that_says_why(server: StatusServer) -> None:
    body = account() | {"options": [{"series": "BTC-30D-60000-C", "qty": "1"}]}
    problem = assert_problem(post(server, json.dumps(body).encode()), 422)
    assert "'options'" in problem["detail"] and "perpetual positions only" in problem["detail"]


def test_the_openapi_document_is_served(server: StatusServer) -> None:
    document = httpx.get(server.url + OPENAPI_PATH).json()
    assert PATH in document["paths"] and "post" in document["paths"][PATH]


def _without(key: str) -> dict[str, Any]:
    data = account()
    del data[key]
    return data


def _position(**changes: Any) -> dict[str, Any]:
    data = account()
    data["positions"][0] |= changes
    return data


BAD_ACCOUNTS = {
    "not an object": [1, 2],
    "no positions": _without("positions"),
    "no collateral": _without("collateral"),
    "no time": _without("at"),
    "unknown field": account() | {"leverage": 100},
    "qty a float": _position(qty=0.5),
    "qty not a number": _position(qty="half"),
    "qty zero lots": _position(qty="0.000000001"),
    "asset a list": _position(asset=["BTCUSDT"]),
    "asset an object": _position(asset={"a": 1}),
    "asset without a price": _position(asset="DOGEUSDT"),
    "entry negative": _position(entry="-1"),
    "entry huge": _position(entry="1e40"),
    "time garbage": account() | {"at": "yesterday"},
    "time a huge integer": account() | {"at": 10**40},
    "opened after at": _position(opened_at="2999-01-01T00:00:00Z"),
    "snapshot garbage": account() | {"snapshots": [{"as_of": "2024-01-01T00:00:00Z"}]},
    "snapshot not an object": account() | {"snapshots": [1]},
    "snapshot schema a list": account()
    | {"snapshots": [account()["snapshots"][0] | {"schema": ["x"]}]},
    "snapshot status a list": account()
    | {"snapshots": [account()["snapshots"][0] | {"status": ["ok"]}]},
    "funding a string": account() | {"accrued_funding": {"BTCUSDT": "0.1"}},
    "funding unknown asset": account() | {"accrued_funding": {"XYZ": 0.1}},
    "funding absurd": account() | {"accrued_funding": {"BTCUSDT": 1e300}},
    "too many positions": account() | {"positions": account()["positions"] * MAX_POSITIONS},
    "cannot open at entry": account() | {"collateral": "1"},
}


@pytest.mark.parametrize("name", sorted(BAD_ACCOUNTS))
def test_a_bad_account_is_a_422_problem(server: StatusServer, name: str) -> None:
    assert_problem(post(server, json.dumps(BAD_ACCOUNTS[name]).encode()), 422)


@pytest.mark.parametrize(
    "body",
    [
        b"",
        b"{",
        b'{"at": 1, "at": 2}',
        b'{"collateral": NaN}',
        b"[" * 5000 + b"]" * 5000,
        b'{"collateral": ' + b"9" * 5000 + b"}",
        b"\xff\xfe{}",
        b"\xef\xbb\xbf{}",
    ],
)
def test_bad_json_is_a_422_problem(server: StatusServer, body: bytes) -> None:
    assert_problem(post(server, body), 422)


def test_other_media_types_sizes_and_methods_are_refused(server: StatusServer) -> None:
    assert_problem(post(server, json.dumps(account()).encode(), "text/plain"), 415)
    assert_problem(post(server, b" " * (MAX_BODY_BYTES + 1)), 413)
    refused = httpx.get(server.url + PATH)
    assert_problem(refused, 405)
    assert refused.headers["allow"] == "POST"
    # No Content-Length (http.client sends none for an explicit empty header set).
    host, port = server.url.removeprefix("http://").split(":")
    connection = http.client.HTTPConnection(host, int(port), timeout=30)
    connection.putrequest("POST", PATH)
    connection.putheader("Content-Type", "application/json")
    connection.endheaders()
    response = connection.getresponse()
    assert response.status == 411
    assert response.getheader("Content-Type") == PROBLEM
    assert json.loads(response.read())["status"] == 411
    connection.close()
    # The venue's other routes stay read-only.
    assert httpx.post(server.url + "/status", content=b"{}").status_code == 405


def test_requests_beyond_the_concurrency_bound_are_429(server: StatusServer) -> None:
    for _ in range(MAX_CONCURRENT):  # as if that many requests were being computed
        assert COMPUTING.acquire(blocking=False)
    try:
        assert_problem(post(server, json.dumps(account()).encode()), 429)
    finally:
        for _ in range(MAX_CONCURRENT):
            COMPUTING.release()
    assert post(server, json.dumps(account()).encode()).status_code == 200


json_leaf = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(10**30), max_value=10**30),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=30),
)
json_values = st.recursive(
    json_leaf,
    lambda children: st.one_of(
        st.lists(children, max_size=3), st.dictionaries(st.text(max_size=10), children, max_size=3)
    ),
    max_leaves=8,
)


@st.composite
def mutated_accounts(draw: st.DrawFn) -> dict[str, Any]:
    """The valid account with one field (top level or of a position) replaced or removed."""
    data = copy.deepcopy(account())
    target = draw(st.sampled_from(["top", "position", "snapshot"]))
    if target == "top":
        holder = data
    elif target == "position":
        holder = data["positions"][draw(st.integers(0, len(data["positions"]) - 1))]
    else:
        holder = data["snapshots"][draw(st.integers(0, len(data["snapshots"]) - 1))]
    key = draw(st.sampled_from(sorted(holder)))
    if draw(st.booleans()):
        del holder[key]
    else:
        holder[key] = draw(json_values)
    return data


@FUZZ
@given(data=mutated_accounts())
def test_mutated_accounts_never_fail_the_server(server: StatusServer, data: dict) -> None:
    response = post(server, json.dumps(data).encode())
    if response.status_code == 200:
        assert {"account", "at_ms", "positions"} <= set(response.json())
    else:
        assert_problem(response)


@FUZZ
@given(body=st.one_of(st.binary(max_size=300), json_values.map(lambda v: json.dumps(v).encode())))
def test_hostile_bodies_are_problems(server: StatusServer, body: bytes) -> None:
    assert_problem(post(server, body))


# Schemathesis over the endpoint's own OpenAPI document (the one served at /v1/openapi.json),
# against the real server. Drawn bodies conform to the schema; nearly all are accounts the
# engine refuses (random decimal strings), so each must be a 4xx problem. The valid account,
# added as the document's example, is a 200 checked against the response schema.
def _with_example(document: dict[str, Any]) -> dict[str, Any]:
    document = copy.deepcopy(document)
    body = document["paths"][PATH]["post"]["requestBody"]["content"]["application/json"]
    body["example"] = account()
    return document


schema = schemathesis.openapi.from_dict(_with_example(OPENAPI))


@schema.parametrize()
@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck))
def test_schemathesis_finds_no_server_error(case: schemathesis.Case, server: StatusServer) -> None:
    response = case.call(base_url=server.url)
    case.validate_response(response, checks=[not_a_server_error, response_schema_conformance])
    _check_case(case, response)


@schema.parametrize()
@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck))
def test_schemathesis_finds_no_server_error_with_a_venue_behind(
    case: schemathesis.Case, venue_server: StatusServer
) -> None:
    """The same over the server with the venue's parameters in force (bodies without
    ``snapshots`` are computed against them)."""
    response = case.call(base_url=venue_server.url)
    case.validate_response(response, checks=[not_a_server_error, response_schema_conformance])
    _check_case(case, response)


def _check_case(case: schemathesis.Case, response: Any) -> None:
    if case.body == account() and case.method.upper() == "POST":
        # The valid account is a 200 unless schemathesis sent it without its media type.
        assert response.status_code in {200, 415}, response.text
    if response.status_code != 200:
        assert 400 <= response.status_code < 500, response.text[:300]
        assert response.headers["content-type"] == [PROBLEM], (case.method, response.headers)
        assert response.json()["status"] == response.status_code


def test_a_real_venue_answers_against_the_snapshots_it_applied(served) -> None:  # type: ignore[no-untyped-def]
    """End to end: a venue consumes real signed snapshots from a real ``dynamargin serve``,
    and its endpoint computes a posted account against them (``Venue.parameters_in_force``),
    naming the update ids it applied."""
    from datetime import UTC, datetime

    from tests.venue.conftest import ASSETS
    from venue.risk_api import RiskApiClient
    from venue.service import Venue
    from venue.settings import VenueSettings

    world, api = served
    venue = Venue(
        VenueSettings(ASSETS, world.workdir / "venue"), world.feed(), RiskApiClient(api.base)
    )
    try:
        venue.tick(world.end_ms)
        assert venue.poll(world.end_ms).result == "new"
        applied = venue.applied_update_ids()
        quotes = {a: q.price for a, q in world.feed().quotes(world.end_ms).items()}
        at = datetime.fromtimestamp(world.end_ms / 1000, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        body = {
            "at": at,
            "collateral": f"{quotes[ASSETS[1]] / MICRO * 0.2:.6f}",  # 5x leverage
            "prices": {a: f"{quotes[a] / MICRO:.6f}" for a in ASSETS},
            "positions": [
                {"asset": ASSETS[1], "qty": "1", "entry": f"{quotes[ASSETS[1]] / MICRO:.6f}"}
            ],
        }
        status = StatusServer(
            lambda: {}, VenueMetrics().render, in_force=venue.parameters_in_force
        ).start()
        try:
            response = post(status, json.dumps(body).encode())
        finally:
            status.stop()
        assert response.status_code == 200, response.text
        parameters = response.json()["parameters"]
        assert parameters == {"source": "venue", "update_ids": applied}
        # The same account with the venue's snapshots posted explicitly: the same prices.
        spec, config = with_parameters_in_force(
            AccountSpec.parse(body), venue.parameters_in_force()
        )
        expected = account_liquidation_prices(
            engine_for_account(spec, config), spec.account, spec.at_ms
        )
        (row,) = response.json()["positions"]
        assert row["liquidation_below"] is not None
        assert int(Decimal(row["liquidation_below"]) * MICRO) == expected[0].below
    finally:
        venue.close()
