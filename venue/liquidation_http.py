"""``POST /v1/liquidation-price``: reproducible liquidation prices on the venue's HTTP server.

The body is the JSON account of ``dynamargin liquidation-price`` (see
:mod:`liquidation.account_spec`: collateral, positions with entry prices and opening times,
the RiskSnapshots in force, the prices now, funding accrued). It is replayed into a fresh
engine (never the venue's own: a request cannot touch the venue's state) and answered with
:func:`liquidation.liquidation_price.account_liquidation_prices`, exactly the CLI's ``--json``.

Two modes, echoed in the answer's ``parameters``:

* **(a) the caller's parameters**: the body carries ``snapshots`` (an empty list means the
  engine's conservative fallback) and default asset parameters apply;
* **(b) the venue's parameters in force**: a body *without* ``snapshots`` is computed against
  what the venue applies now (:class:`liquidation.account_spec.InForce`: its asset
  configuration and the snapshot in force per asset, read from its engine), and the answer
  names the ``update_id`` used per asset (``null``: the asset runs on its fallback). A server
  without a venue behind it answers (b) with a 422 problem ``no-parameters-in-force``.

Every refusal is an RFC 9457 problem (``application/problem+json``) with a 4xx status and the
field named: a body over :data:`MAX_BODY_BYTES` (413), no ``Content-Length`` (411), a media
type other than JSON (415), JSON that :func:`serving.strict_json.loads` refuses, an account
the spec refuses or the engine could not have opened (422), more positions or snapshots than
the cost bounds allow (422), more than :data:`MAX_CONCURRENT` requests at once (429). The
endpoint's OpenAPI document is :data:`OPENAPI`, served at
``GET /v1/openapi.json`` (what schemathesis fuzzes).
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable
from http import HTTPStatus
from typing import Any, Final

from liquidation.account_spec import (
    AccountSpec,
    InForce,
    engine_for_account,
    with_parameters_in_force,
)
from liquidation.errors import InputError, LiquidationCoreError
from liquidation.liquidation_price import account_liquidation_prices, wire_row
from serving.strict_json import StrictJsonError, loads

LOG = logging.getLogger("dynamargin.venue")

PATH: Final[str] = "/v1/liquidation-price"
OPENAPI_PATH: Final[str] = "/v1/openapi.json"
PROBLEM_MEDIA_TYPE: Final[str] = "application/problem+json"
PROBLEM_TYPE_BASE: Final[str] = "https://dynamargin.dev/problems/"

MAX_BODY_BYTES: Final[int] = 256 * 1024
"""Largest body read. A snapshot of ``tests/liquidation/liq_builders.snapshot`` is 772 bytes of
JSON, so three assets with a day of hourly snapshots (72) fit in ~56 KiB."""
MAX_POSITIONS: Final[int] = 64
"""Most positions per request: each costs ~100 exact maintenance tests (walk + bisection)."""
MAX_SNAPSHOTS: Final[int] = 512
"""Most snapshots per request: each is verified and applied by the replay."""

MAX_CONCURRENT: Final[int] = 2
"""Requests computed at once (the machine's cores); one more is a 429, so a flood of posts
cannot starve the venue's own loop of the interpreter."""

Answer = tuple[int, bytes, str]

COMPUTING = threading.BoundedSemaphore(MAX_CONCURRENT)
"""Held while a request is computed (see :data:`MAX_CONCURRENT`)."""


class Problem(Exception):
    """A refusal answered as an RFC 9457 problem."""

    def __init__(self, status: int, slug: str, detail: str) -> None:
        super().__init__(detail)
        self.status, self.slug, self.detail = status, slug, detail

    def answer(self) -> Answer:
        """``(status, body, media type)`` of the problem."""
        return problem(self.status, self.slug, self.detail)


def problem(status: int, slug: str, detail: str) -> Answer:
    """An RFC 9457 problem body (``type``, ``title``, ``status``, ``detail``)."""
    body = {
        "type": PROBLEM_TYPE_BASE + slug,
        "title": HTTPStatus(status).phrase,
        "status": status,
        "detail": detail,
    }
    return status, json.dumps(body, sort_keys=True).encode(), PROBLEM_MEDIA_TYPE


def content_length(header: str | None) -> int:
    """The declared body length, checked against :data:`MAX_BODY_BYTES` before any read."""
    if header is None:
        raise Problem(411, "length-required", "send the account with a Content-Length header")
    if not header.isascii() or not header.isdigit() or len(header) > 12:
        raise Problem(400, "bad-content-length", "Content-Length must be a decimal byte count")
    length = int(header)
    if length > MAX_BODY_BYTES:
        raise Problem(
            413, "body-too-large", f"the body has {length} bytes; at most {MAX_BODY_BYTES}"
        )
    return length


def answer(
    body: bytes, content_type: str | None, in_force: Callable[[], InForce] | None = None
) -> Answer:
    """Liquidation prices of the account in ``body`` as ``(status, body, media type)``.

    ``in_force`` returns the venue's parameters now (mode (b), see the module docstring).

    Never raises for any input: a refusal is a 4xx problem; an unexpected failure is logged
    with its traceback and answered as a 500 problem (the fuzz tests assert none occurs).
    """
    if not COMPUTING.acquire(blocking=False):
        return problem(
            429, "too-many-requests", f"{MAX_CONCURRENT} requests are being computed; retry"
        )
    try:
        result = json.dumps(_prices(body, content_type, in_force), sort_keys=True).encode()
        return 200, result, "application/json"
    except Problem as exc:
        return exc.answer()
    except Exception:  # a bug, not an input error: logged, never a dropped connection
        LOG.exception("venue: %s failed", PATH)
        return problem(500, "internal-error", "the venue failed to compute this; see its log")
    finally:
        COMPUTING.release()


def _prices(
    body: bytes, content_type: str | None, in_force: Callable[[], InForce] | None
) -> dict[str, Any]:
    media = (content_type or "").split(";", 1)[0].strip().lower()
    if media != "application/json":
        raise Problem(415, "unsupported-media-type", "send the account as application/json")
    try:
        data = loads(body, what="request body")
    except StrictJsonError as exc:
        raise Problem(422, "invalid-json", str(exc)) from None
    if isinstance(data, dict):
        for key, bound in (("positions", MAX_POSITIONS), ("snapshots", MAX_SNAPSHOTS)):
            if isinstance(data.get(key), list) and len(data[key]) > bound:
                raise Problem(422, "too-large", f"'{key}': at most {bound} per request")
    venue_mode = isinstance(data, dict) and "snapshots" not in data
    if venue_mode and in_force is None:
        raise Problem(
            422,
            "no-parameters-in-force",
            "this server has no venue behind it: send the 'snapshots' to compute against",
        )
    try:
        spec = AccountSpec.parse(data)
        config = None
        if venue_mode:
            assert in_force is not None
            spec, config = with_parameters_in_force(spec, in_force())
        engine = engine_for_account(spec, config)
        results = account_liquidation_prices(
            engine, spec.account, spec.at_ms, accrued_funding=spec.accrued_funding
        )
    except InputError as exc:
        raise Problem(422, "invalid-account", str(exc)) from None
    except LiquidationCoreError as exc:
        raise Problem(422, "account-rejected", f"{type(exc).__name__}: {exc}") from None
    # The snapshot each asset's margin used at 'at' (None: expired, halted or none: fallback).
    in_force_ids = {
        s: a.params.update_id if a.params is not None and a.params.is_usable(spec.at_ms) else None
        for s, a in engine.state.assets.items()
    }
    return {
        "account": spec.account,
        "at_ms": spec.at_ms,
        "positions": [wire_row(r) for r in results],
        "parameters": {
            "source": "venue" if venue_mode else "request",
            "update_ids": {s: in_force_ids.get(s) for s in sorted(spec.prices)},
        },
    }


_DECIMAL = {"type": "string", "description": 'decimal string, e.g. "1.5"'}
_TIME = {"type": "string", "description": "ISO-8601 UTC time"}
_NULLABLE_DECIMAL = {"type": ["string", "null"]}
_PROBLEM = {
    "description": "RFC 9457 problem",
    "content": {
        PROBLEM_MEDIA_TYPE: {
            "schema": {
                "type": "object",
                "required": ["type", "title", "status", "detail"],
                "properties": {
                    "type": {"type": "string"},
                    "title": {"type": "string"},
                    "status": {"type": "integer"},
                    "detail": {"type": "string"},
                },
            }
        }
    },
}

OPENAPI: Final[dict[str, Any]] = {
    "openapi": "3.1.0",
    "info": {"title": "dynamargin venue", "version": "1"},
    "paths": {
        PATH: {
            "post": {
                "operationId": "liquidationPrice",
                "summary": "Oracle price at which the engine liquidates each position",
                "requestBody": {
                    "required": True,
                    "content": {
                        "application/json": {
                            "schema": {
                                "type": "object",
                                "required": ["at", "collateral", "prices", "positions"],
                                "additionalProperties": False,
                                "properties": {
                                    "at": _TIME,
                                    "account": {"type": "string", "minLength": 1},
                                    "collateral": _DECIMAL,
                                    "portfolio": {"type": "boolean"},
                                    "prices": {
                                        "type": "object",
                                        "additionalProperties": _DECIMAL,
                                    },
                                    "positions": {
                                        "type": "array",
                                        "minItems": 1,
                                        "maxItems": MAX_POSITIONS,
                                        "items": {
                                            "type": "object",
                                            "required": ["asset", "qty", "entry"],
                                            "additionalProperties": False,
                                            "properties": {
                                                "asset": {"type": "string", "minLength": 1},
                                                "qty": _DECIMAL,
                                                "entry": _DECIMAL,
                                                "opened_at": _TIME,
                                                "isolated": {"type": "boolean"},
                                                "margin": _DECIMAL,
                                            },
                                        },
                                    },
                                    "snapshots": {
                                        "description": ("absent: the venue's parameters in force"),
                                        "type": "array",
                                        "maxItems": MAX_SNAPSHOTS,
                                        "items": {"type": "object"},
                                    },
                                    "accrued_funding": {
                                        "type": "object",
                                        "additionalProperties": {"type": "number"},
                                    },
                                },
                            }
                        }
                    },
                },
                "responses": {
                    "200": {
                        "description": "one row per position (the CLI's --json)",
                        "content": {
                            "application/json": {
                                "schema": {
                                    "type": "object",
                                    "required": [
                                        "account",
                                        "at_ms",
                                        "positions",
                                        "parameters",
                                    ],
                                    "properties": {
                                        "account": {"type": "string"},
                                        "at_ms": {"type": "integer"},
                                        "parameters": {
                                            "type": "object",
                                            "required": ["source", "update_ids"],
                                            "properties": {
                                                "source": {"enum": ["request", "venue"]},
                                                "update_ids": {
                                                    "type": "object",
                                                    "additionalProperties": {
                                                        "type": ["integer", "null"]
                                                    },
                                                },
                                            },
                                        },
                                        "positions": {
                                            "type": "array",
                                            "items": {
                                                "type": "object",
                                                "properties": {
                                                    "bucket": {"type": "string"},
                                                    "asset": {"type": "string"},
                                                    "qty": {"type": "string"},
                                                    "oracle": {"type": "string"},
                                                    "mark": {"type": "string"},
                                                    "liquidation_below": _NULLABLE_DECIMAL,
                                                    "liquidation_above": _NULLABLE_DECIMAL,
                                                    "liquidatable_now": {"type": "boolean"},
                                                },
                                            },
                                        },
                                    },
                                }
                            }
                        },
                    },
                    **{str(s): _PROBLEM for s in (400, 405, 411, 413, 415, 422, 429)},
                },
            }
        }
    },
}
"""OpenAPI 3.1 document of the endpoint (served at :data:`OPENAPI_PATH`)."""
