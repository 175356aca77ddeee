"""Admin endpoints: halt, resume and override one asset's multiplier.

Every call needs an admin API key (:mod:`serving.admin_auth`) and a written reason, and
writes an audit row through the backend before answering. The override value is checked
against the asset's policy bounds ``[floor, cap]``: an operator can move the multiplier
only where the policy itself could. Actions change the policy state the publisher reads,
so they reach consumers with the next publication (the response says when that is due).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

import anyio.to_thread
from fastapi import APIRouter, Depends, Header, Path, Request
from pydantic import BaseModel, ConfigDict, Field

from contracts.timestamps import utc_datetime
from serving.admin_auth import AdminKeyring, require_admin
from serving.api_backend import ApiBackend
from serving.errors import OperatorActionError
from serving.problems import (
    PROBLEM_MEDIA_TYPE,
    BadParameterError,
    ProblemError,
    UnknownAssetError,
)

logger = logging.getLogger(__name__)

AdminAction = Literal["halt", "resume", "override", "clear_override"]
ASSET_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,39}$"

_PROBLEM = {"description": "RFC 9457 problem", "content": {PROBLEM_MEDIA_TYPE: {}}}
_ADMIN_RESPONSES: dict[int | str, dict[str, Any]] = {
    401: _PROBLEM,
    403: _PROBLEM,
    404: _PROBLEM,
    409: _PROBLEM,
    413: _PROBLEM,
}


class OperatorRequest(BaseModel):
    """Body of ``halt`` and ``resume``: why the operator acts (stored in the audit row)."""

    model_config = ConfigDict(extra="forbid")
    reason: str = Field(min_length=3, max_length=500, pattern=r"\S")


class OverrideRequest(OperatorRequest):
    """Body of ``override``: the forced multiplier, until when, and why."""

    multiplier: float = Field(gt=0, allow_inf_nan=False)
    until: datetime | None = Field(
        default=None, description="End of the override (UTC); none means until cleared."
    )


class AdminResult(BaseModel):
    """What an admin call did: the audit row written and the asset's new policy state."""

    action: AdminAction
    asset: str
    audit: dict[str, Any]
    state: dict[str, Any]
    effective: str


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

    async def operator(
        request: Request,
        authorization: Annotated[str | None, Header()] = None,
        x_api_key: Annotated[str | None, Header()] = None,
    ) -> str:
        # A dependency, so credentials are checked before the body is validated.
        try:
            return require_admin(keyring(), authorization, x_api_key)
        except ProblemError as exc:
            client = request.client.host if request.client else "?"
            # Only the refusal is logged, never the presented key.
            logger.warning("admin call %s refused (%s) from %s", request.url.path, exc.slug, client)
            raise

    # Defaults rather than Annotated aliases: local aliases are unresolvable forward
    # references under ``from __future__ import annotations``.
    who_dep = Depends(operator)
    asset_path = Path(
        pattern=ASSET_PATTERN, description="Asset symbol, e.g. BTCUSDT.", examples=["BTCUSDT"]
    )

    async def act(asset: str, action: AdminAction, body: OperatorRequest, who: str) -> AdminResult:
        canonical = asset.upper()
        known = await anyio.to_thread.run_sync(backend.known_assets)
        if canonical not in known:
            raise UnknownAssetError(asset, sorted(known))
        multiplier = until = None
        if isinstance(body, OverrideRequest):
            multiplier, until = body.multiplier, _utc(body.until)
            if until is not None and until <= datetime.now(UTC):
                raise BadParameterError(
                    "until", f"until={until.isoformat()} is not in the future; give a later end."
                )
            floor, cap = await anyio.to_thread.run_sync(backend.policy_bounds, canonical)
            if not (math.isfinite(multiplier) and floor <= multiplier <= cap):
                raise BadParameterError(
                    "multiplier",
                    f"Override {multiplier} for {canonical} is outside the policy bounds "
                    f"[floor={floor}, cap={cap}]; change the policy config to go further.",
                )
        reason = body.reason.strip()
        try:
            result = await anyio.to_thread.run_sync(
                lambda: backend.operator_action(canonical, action, who, reason, multiplier, until)
            )
        except OperatorActionError as exc:
            raise ProblemError(409, "operator-action-rejected", str(exc)) from exc
        on_change()
        logger.info("admin %s on %s by %s: %s", action, canonical, who, reason)
        return AdminResult(action=action, asset=canonical, **result)

    @router.post("/assets/{asset}/halt", responses=_ADMIN_RESPONSES)
    async def halt(
        body: OperatorRequest, asset: str = asset_path, who: str = who_dep
    ) -> AdminResult:
        """Freeze the asset's multiplier; snapshots carry status ``halted``."""
        return await act(asset, "halt", body, who)

    @router.post("/assets/{asset}/resume", responses=_ADMIN_RESPONSES)
    async def resume(
        body: OperatorRequest, asset: str = asset_path, who: str = who_dep
    ) -> AdminResult:
        """Lift a halt; the policy resumes from the frozen value under its limits."""
        return await act(asset, "resume", body, who)

    @router.post("/assets/{asset}/override", responses={**_ADMIN_RESPONSES, 422: _PROBLEM})
    async def override(
        body: OverrideRequest, asset: str = asset_path, who: str = who_dep
    ) -> AdminResult:
        """Force a multiplier within ``[floor, cap]`` until ``until`` or until cleared."""
        return await act(asset, "override", body, who)

    @router.post("/assets/{asset}/clear-override", responses=_ADMIN_RESPONSES)
    async def clear_override(
        body: OperatorRequest, asset: str = asset_path, who: str = who_dep
    ) -> AdminResult:
        """End an active override; the policy resumes from that value under its limits."""
        return await act(asset, "clear_override", body, who)

    return router


def _utc(value: datetime | None) -> datetime | None:
    return None if value is None else utc_datetime(value)
