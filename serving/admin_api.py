"""Admin endpoints: halt, resume and override one asset's multiplier.

Every call is checked in this order, so what a caller learns never depends on a step it
has not passed:

1. **credentials** (:mod:`serving.admin_auth`): no key is 401, a wrong key 403, whatever
   the path or the body;
2. **body**: ``application/json`` of at most the configured size, parsed as strict JSON
   (:mod:`serving.strict_json`: bounded nesting, no duplicate keys, finite numbers) and
   validated strictly (a boolean or a string is not a multiplier); 415 or 422 otherwise;
3. **asset and note** (:mod:`serving.input_validation`, the same rules as the CLI): 422
   for a malformed name or a note without three visible characters, 404 for an asset
   never published;
4. **the action** through :func:`serving.publishing.apply_operator_action`: an override
   must lie in the policy's ``[floor, cap]`` and end in the future (422), a resume needs a
   halt (409), a store that cannot be written or trusted is a 503.

Each accepted call writes an audit row before answering. Actions change the policy state
the publisher reads, so they reach consumers with the next publication (the response
says when that is due).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, Literal, TypeVar

import anyio.to_thread
from fastapi import APIRouter, Path, Request
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from serving import strict_json
from serving.admin_auth import AdminKeyring, require_admin
from serving.api_backend import ApiBackend
from serving.errors import PublicationStoreError, ServingError
from serving.input_validation import (
    ASSET_INPUT_PATTERN,
    loggable,
    normalise_asset,
    normalise_note,
    parse_utc_time,
)
from serving.problems import (
    PROBLEM_MEDIA_TYPE,
    BadParameterError,
    ProblemError,
    problem_for,
    validation_problem,
)

logger = logging.getLogger(__name__)

AdminAction = Literal["halt", "resume", "override", "clear_override"]
MAX_BODY_DEPTH = 2

_PROBLEM = {"description": "RFC 9457 problem", "content": {PROBLEM_MEDIA_TYPE: {}}}
_ADMIN_RESPONSES: dict[int | str, dict[str, Any]] = {
    401: _PROBLEM,
    403: _PROBLEM,
    404: _PROBLEM,
    409: _PROBLEM,
    413: _PROBLEM,
    415: _PROBLEM,
    422: _PROBLEM,
    503: _PROBLEM,
}


class OperatorRequest(BaseModel):
    """Body of ``halt``, ``resume`` and ``clear-override``: why the operator acts (audited)."""

    model_config = ConfigDict(extra="forbid", strict=True)
    reason: str = Field(min_length=3, max_length=500)


class OverrideRequest(OperatorRequest):
    """Body of ``override``: the forced multiplier, until when, and why."""

    multiplier: float = Field(gt=0, allow_inf_nan=False)
    until: str | None = Field(
        default=None,
        max_length=64,
        description="End of the override, ISO-8601 (UTC if no zone); none: until cleared.",
        json_schema_extra={"format": "date-time"},
    )


class AdminResult(BaseModel):
    """What an admin call did: the audit row written and the asset's new policy state."""

    action: AdminAction
    asset: str
    audit: dict[str, Any]
    state: dict[str, Any]
    effective: str


Body = TypeVar("Body", bound=OperatorRequest)


def build_admin_router(
    backend: ApiBackend,
    keyring: Callable[[], AdminKeyring],
    *,
    on_change: Callable[[], None],
) -> APIRouter:
    """Router for ``POST /v1/admin/assets/{asset}/halt|resume|override|clear-override``.

    Parameters
    ----------
    backend
        Applies the action through the policy and writes the audit row.
    keyring
        Returns the accepted key hashes; read per call so new keys work without restart.
    on_change
        Called after a successful action (invalidates cached views).
    """
    router = APIRouter(prefix="/v1/admin", tags=["admin"])
    # No pattern on the path parameter: credentials are checked before the name is,
    # so an anonymous caller gets 401 whatever it sends.
    asset_path = Path(description="Asset symbol, e.g. BTCUSDT.", examples=["BTCUSDT"])

    async def act(
        request: Request, asset: str, action: AdminAction, model: type[Body]
    ) -> AdminResult:
        who = _authorise(request, keyring)
        body = await _read_body(request, model)
        try:
            canonical = normalise_asset(asset)
            reason = normalise_note(body.reason, "reason")
        except ServingError as exc:
            raise problem_for(exc) from exc
        multiplier = until = None
        if isinstance(body, OverrideRequest):
            multiplier, until = await _checked_override(backend, canonical, body)
        try:
            result = await anyio.to_thread.run_sync(
                lambda: backend.operator_action(canonical, action, who, reason, multiplier, until)
            )
        except ServingError as exc:
            raise problem_for(exc) from exc
        on_change()
        logger.info("admin %s on %s by %s: %s", action, canonical, who, loggable(reason))
        return AdminResult(action=action, asset=canonical, **result)

    @router.post(
        "/assets/{asset}/halt", responses=_ADMIN_RESPONSES, openapi_extra=_body(OperatorRequest)
    )
    async def halt(request: Request, asset: str = asset_path) -> AdminResult:
        """Freeze the asset's multiplier; snapshots carry status ``halted``."""
        return await act(request, asset, "halt", OperatorRequest)

    @router.post(
        "/assets/{asset}/resume", responses=_ADMIN_RESPONSES, openapi_extra=_body(OperatorRequest)
    )
    async def resume(request: Request, asset: str = asset_path) -> AdminResult:
        """Lift a halt; the policy resumes from the frozen value under its limits."""
        return await act(request, asset, "resume", OperatorRequest)

    @router.post(
        "/assets/{asset}/override",
        responses=_ADMIN_RESPONSES,
        openapi_extra=_body(OverrideRequest),
    )
    async def override(request: Request, asset: str = asset_path) -> AdminResult:
        """Force a multiplier within ``[floor, cap]`` until ``until`` or until cleared."""
        return await act(request, asset, "override", OverrideRequest)

    @router.post(
        "/assets/{asset}/clear-override",
        responses=_ADMIN_RESPONSES,
        openapi_extra=_body(OperatorRequest),
    )
    async def clear_override(request: Request, asset: str = asset_path) -> AdminResult:
        """End an active override; the policy resumes from that value under its limits."""
        return await act(request, asset, "clear_override", OperatorRequest)

    return router


def _authorise(request: Request, keyring: Callable[[], AdminKeyring]) -> str:
    headers = request.headers
    try:
        return require_admin(keyring, headers.get("authorization"), headers.get("x-api-key"))
    except ProblemError as exc:
        client = request.client.host if request.client else "?"
        # Only the refusal is logged, never the presented key; the path is the client's
        # text, so it is escaped.
        logger.warning(
            "admin call %s refused (%s) from %s", loggable(request.url.path), exc.slug, client
        )
        raise


async def _read_body(request: Request, model: type[Body]) -> Body:
    media_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if media_type != "application/json":
        raise ProblemError(
            415,
            "unsupported-media-type",
            "Admin bodies are JSON: send 'Content-Type: application/json' (UTF-8).",
        )
    raw = await request.body()
    try:
        data = strict_json.loads(raw, max_depth=MAX_BODY_DEPTH, what="request body")
    except strict_json.StrictJsonError as exc:
        raise problem_for(exc) from exc
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise validation_problem(exc.errors(), prefix="body") from None


async def _checked_override(
    backend: ApiBackend, asset: str, body: OverrideRequest
) -> tuple[float, datetime | None]:
    until = None
    if body.until is not None:
        try:
            until = parse_utc_time(body.until, "until")
        except ServingError as exc:
            raise problem_for(exc) from exc
        if until <= datetime.now(UTC):
            raise BadParameterError(
                "until", f"until={until.isoformat()} is not in the future; give a later end."
            )
    try:
        floor, cap = await anyio.to_thread.run_sync(backend.policy_bounds, asset)
    except (ServingError, PublicationStoreError) as exc:
        raise problem_for(exc) from exc
    multiplier = body.multiplier
    if not (math.isfinite(multiplier) and floor <= multiplier <= cap):
        raise BadParameterError(
            "multiplier",
            f"Override {multiplier} for {asset} is outside the policy bounds "
            f"[floor={floor}, cap={cap}]; change the policy config to go further.",
        )
    return multiplier, until


def _body(model: type[BaseModel]) -> dict[str, Any]:
    # The body is read by hand (credentials first, strict JSON), so its schema is
    # declared here for the OpenAPI document.
    return {
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": model.model_json_schema()}},
        },
        "parameters": [
            {
                "name": "asset",
                "in": "path",
                "required": True,
                "schema": {"type": "string", "pattern": ASSET_INPUT_PATTERN},
            }
        ],
    }
