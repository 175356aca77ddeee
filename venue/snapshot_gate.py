"""Which served snapshots the venue lets through to the engine, and why the others not.

A ``/v1/risk`` body is a list of signed RiskSnapshots (revision 1 or 2). Each one is checked
with serving's own verifier (:func:`serving.signing.verify_snapshot`: schema, canonical
reference id, Ed25519 over the canonical payload, EIP-712, the pinned key), then read by the
liquidation core's parser (:class:`liquidation.snapshot.MarginParameters`), then against the
venue: its asset is configured, its base fractions are the venue's, it is published, not
expired, and its ``update_id`` is above the one applied. Every refusal has one reason, the
label of the ``dynamargin_venue_snapshots_refused_total`` metric.
"""

from __future__ import annotations

import math
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from typing import Any, Final

from liquidation.config import EngineConfig
from liquidation.errors import LiquidationCoreError
from liquidation.snapshot import MarginParameters, check_bounds, parse_time_ms
from serving import strict_json
from serving.signing import verify_snapshot

REASONS: Final[tuple[str, ...]] = (
    "malformed",  # not JSON, not the batch shape, fails the schema or the core's parser
    "unsigned",  # no Ed25519 signature at all
    "tampered",  # a signature or the reference id does not match the content
    "wrong_key",  # correctly signed, but by a key the venue does not trust
    "unknown_asset",  # an asset the venue does not list
    "base_mismatch",  # base IMF/MMF other than the venue's: IM would not be what it says
    "out_of_bounds",  # multiplier outside the venue's [min, max]
    "not_yet_published",  # published_at after the venue's clock (beyond the allowed skew)
    "expired",  # valid_until before the venue's clock
    "out_of_order",  # update_id below the one applied
)
"""Every refusal reason, in the order they are checked."""

CLOCK_SKEW_MS: Final[int] = 5 * 60_000
"""How far ``published_at`` may be ahead of the venue's clock (publisher clock skew)."""

BASE_TOLERANCE: Final[float] = 1e-9
"""Relative tolerance of the base IMF/MMF comparison (canonical JSON keeps 12 digits)."""


@dataclass(frozen=True)
class Refusal:
    """One snapshot (or a whole body) the venue did not apply, and why."""

    reason: str
    detail: str
    asset: str | None = None
    update_id: int | None = None

    def line(self) -> str:
        """The log line."""
        what = f"{self.asset or '?'} update {self.update_id if self.update_id is not None else '?'}"
        return f"refused snapshot {what}: {self.reason}: {self.detail}"


@dataclass(frozen=True)
class Admitted:
    """A snapshot that passed every check: the document and what the core read from it."""

    document: Mapping[str, Any]
    params: MarginParameters


@dataclass(frozen=True)
class GateResult:
    """Outcome of one served body.

    Attributes
    ----------
    admitted
        Snapshots to apply, in body order.
    refusals
        Snapshots (or the body) refused.
    already_applied
        Snapshots whose ``update_id`` equals the one applied: the same publication again.
    """

    admitted: tuple[Admitted, ...]
    refusals: tuple[Refusal, ...]
    already_applied: int


def withheld_of(body: bytes) -> dict[str, str]:
    """Assets the API withholds (their stored rows failed its integrity checks), and why."""
    try:
        document = strict_json.loads(body, what="/v1/risk body")
    except strict_json.StrictJsonError:
        return {}
    withheld = document.get("withheld") if isinstance(document, dict) else None
    return {str(k): str(v) for k, v in withheld.items()} if isinstance(withheld, dict) else {}


def read_batch(body: bytes) -> list[Any] | Refusal:
    """The snapshots of a ``/v1/risk`` body, or the refusal of the whole body."""
    try:
        document = strict_json.loads(body, what="/v1/risk body")
    except strict_json.StrictJsonError as exc:
        return Refusal("malformed", f"body is not strict JSON: {exc}")
    snapshots = document.get("snapshots") if isinstance(document, dict) else None
    if not isinstance(snapshots, list):
        return Refusal("malformed", "body is not an object with a 'snapshots' list")
    return snapshots


def admit(
    body: bytes,
    *,
    trusted_keys: Collection[str],
    config: EngineConfig,
    applied: Mapping[str, int],
    now_ms: int,
) -> GateResult:
    """Check every snapshot of a served body.

    Parameters
    ----------
    body
        The ``/v1/risk`` response body.
    trusted_keys
        Ed25519 public keys (hex) the venue trusts.
    config
        The engine's configuration (assets, base fractions, multiplier bounds).
    applied
        Asset -> ``update_id`` in force.
    now_ms
        The venue's clock.
    """
    batch = read_batch(body)
    if isinstance(batch, Refusal):
        return GateResult((), (batch,), 0)
    admitted, refusals, repeats = [], [], 0
    newest: dict[str, int] = dict(applied)
    for document in batch:
        verdict = check_snapshot(document, trusted_keys, config, newest, now_ms)
        if isinstance(verdict, Refusal):
            refusals.append(verdict)
        elif verdict is None:
            repeats += 1
        else:
            admitted.append(verdict)
            newest[verdict.params.asset] = verdict.params.update_id
    return GateResult(tuple(admitted), tuple(refusals), repeats)


def check_snapshot(
    document: Any,
    trusted_keys: Collection[str],
    config: EngineConfig,
    applied: Mapping[str, int],
    now_ms: int,
) -> Admitted | Refusal | None:
    """Admit one snapshot, refuse it, or return None for the publication already applied."""
    if not isinstance(document, dict):
        return Refusal(
            "malformed", f"a snapshot must be a JSON object, got {type(document).__name__}"
        )
    asset = document.get("asset") if isinstance(document.get("asset"), str) else None
    raw_id = document.get("update_id")
    update_id = raw_id if isinstance(raw_id, int) and not isinstance(raw_id, bool) else None

    def refuse(reason: str, detail: str) -> Refusal:
        return Refusal(reason, detail, asset, update_id)

    signature = document.get("signature")
    if not isinstance(signature, dict) or not isinstance(signature.get("ed25519"), dict):
        return refuse("unsigned", "no Ed25519 signature")
    result = verify_snapshot(document, trusted_public_keys=trusted_keys)
    if not result.ok:
        checks = result.checks
        if not checks.get("schema", True):
            reason = "malformed"
        elif checks.get("trusted_key") is False and all(
            ok for name, ok in checks.items() if name != "trusted_key"
        ):
            reason = "wrong_key"
        else:
            reason = "tampered"
        return refuse(reason, "; ".join(result.errors))
    try:
        params = MarginParameters.from_risk_snapshot(document)
    except LiquidationCoreError as exc:
        return refuse("malformed", str(exc))
    if params.asset not in config.symbols:
        return refuse("unknown_asset", f"the venue lists {', '.join(config.symbols)}")
    asset_cfg = config.asset(params.asset)
    base_mmf = asset_cfg.base_imf * asset_cfg.maintenance_fraction
    if not (
        math.isclose(params.base_imf, asset_cfg.base_imf, rel_tol=BASE_TOLERANCE)
        and math.isclose(params.base_mmf, base_mmf, rel_tol=BASE_TOLERANCE)
    ):
        return refuse(
            "base_mismatch",
            f"base IMF/MMF {params.base_imf}/{params.base_mmf}, the venue's are "
            f"{asset_cfg.base_imf}/{base_mmf:.12g}; align the publisher's policy and the venue",
        )
    try:
        check_bounds(params, asset_cfg)
    except LiquidationCoreError as exc:
        return refuse("out_of_bounds", str(exc))
    published_ms = parse_time_ms(document["published_at"])
    if published_ms > now_ms + CLOCK_SKEW_MS:
        return refuse(
            "not_yet_published",
            f"published_at {document['published_at']} is after the venue's clock "
            f"({now_ms} ms) by more than {CLOCK_SKEW_MS // 1000} s",
        )
    if params.valid_until_ms < now_ms:
        return refuse(
            "expired", f"valid_until {document['valid_until']} is before the venue's clock"
        )
    last = applied.get(params.asset)
    if last is not None and params.update_id == last:
        return None
    if last is not None and params.update_id < last:
        return refuse("out_of_order", f"update_id {params.update_id} is below the applied {last}")
    return Admitted(document, params)
