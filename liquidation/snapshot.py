"""Read RiskSnapshot v1 dicts (``dynamargin.risk/1``) as plain data.

The liquidation core never imports ``serving``: it parses the JSON shape itself, validates what
it uses and keeps the rest out. Signature checking belongs to the transport that delivers the
snapshot; this module only refuses malformed or out-of-range content.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any, Final, Literal

from liquidation.config import AssetConfig
from liquidation.errors import SnapshotValidationError
from liquidation.rules.multiplier import is_usable

SCHEMA: Final[str] = "dynamargin.risk/1"
# Revision 2 changes only the EIP-712 signature; the payload read here is the same.
SCHEMAS: Final[frozenset[str]] = frozenset({SCHEMA, "dynamargin.risk/2"})
STATUSES: Final[frozenset[str]] = frozenset({"ok", "fallback", "stale", "halted"})
Status = Literal["ok", "fallback", "stale", "halted"]


@dataclass(frozen=True)
class MarginParameters:
    """The part of a RiskSnapshot the liquidation core uses.

    Times are epoch milliseconds (UTC). ``multiplier`` is only trusted while :meth:`is_usable`.
    """

    asset: str
    update_id: int
    multiplier: float
    previous_multiplier: float
    base_imf: float
    base_mmf: float
    sigma: float
    horizon_hours: float
    spread_bps: float
    slippage_bps: float
    standard_size_usd: float
    status: str
    as_of_ms: int
    valid_until_ms: int

    @classmethod
    def from_risk_snapshot(cls, snapshot: Mapping[str, Any]) -> MarginParameters:
        """Validate a RiskSnapshot v1 dict and keep the fields margin needs.

        Parameters
        ----------
        snapshot : Mapping
            The decoded JSON of one snapshot.

        Returns
        -------
        MarginParameters

        Raises
        ------
        SnapshotValidationError
            If the schema tag, a required field, a type, a time or a bound is wrong.
        """
        if not isinstance(snapshot, Mapping):
            raise SnapshotValidationError(
                f"RiskSnapshot must be a JSON object, got {type(snapshot).__name__}"
            )
        asset = snapshot.get("asset")
        where = f"RiskSnapshot(asset={asset!r}, update_id={snapshot.get('update_id')!r})"
        schema = snapshot.get("schema")
        if not isinstance(schema, str) or schema not in SCHEMAS:  # a list is unhashable
            raise SnapshotValidationError(
                f"{where}: schema is {snapshot.get('schema')!r}, expected one of "
                f"{sorted(SCHEMAS)}; upgrade the liquidation core or republish in v1"
            )
        if not isinstance(asset, str) or not asset:
            raise SnapshotValidationError(f"{where}: 'asset' must be a non-empty string")
        update_id = snapshot.get("update_id")
        if not isinstance(update_id, int) or isinstance(update_id, bool) or update_id < 0:
            raise SnapshotValidationError(f"{where}: 'update_id' must be a non-negative int")
        status = snapshot.get("status")
        if not isinstance(status, str) or status not in STATUSES:
            raise SnapshotValidationError(
                f"{where}: 'status' is {status!r}, expected one of {sorted(STATUSES)}"
            )
        margin = _mapping(snapshot, "margin", where)
        liquidity = _mapping(snapshot, "liquidity", where)
        as_of_ms = _time_ms(snapshot, "as_of", where)
        valid_until_ms = _time_ms(snapshot, "valid_until", where)
        if valid_until_ms <= as_of_ms:
            raise SnapshotValidationError(f"{where}: 'valid_until' must be after 'as_of'")
        params = cls(
            asset=asset,
            update_id=update_id,
            multiplier=_positive(margin, "multiplier", where),
            previous_multiplier=_positive(margin, "previous_multiplier", where),
            base_imf=_fraction(margin, "base_imf", where),
            base_mmf=_fraction(margin, "base_mmf", where),
            sigma=_positive(snapshot, "sigma", where),
            horizon_hours=_positive(snapshot, "horizon_hours", where),
            spread_bps=_non_negative(liquidity, "spread_bps", where),
            slippage_bps=_non_negative(liquidity, "slippage_bps", where),
            standard_size_usd=_positive(liquidity, "standard_size_usd", where),
            status=status,
            as_of_ms=as_of_ms,
            valid_until_ms=valid_until_ms,
        )
        if params.base_mmf > params.base_imf:
            raise SnapshotValidationError(f"{where}: margin.base_mmf exceeds margin.base_imf")
        return params

    def is_usable(self, ts_ms: int) -> bool:
        """True if the status is ``ok``/``fallback`` and ``ts_ms`` is not past expiry."""
        return is_usable(self.status, self.valid_until_ms, ts_ms)

    def to_dict(self) -> dict[str, Any]:
        """Plain dict (for the event log)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> MarginParameters:
        """Inverse of :meth:`to_dict`."""
        return cls(**dict(data))


def check_bounds(params: MarginParameters, asset: AssetConfig) -> None:
    """Refuse a snapshot whose multiplier lies outside the asset's configured bounds."""
    if not asset.min_multiplier <= params.multiplier <= asset.max_multiplier:
        raise SnapshotValidationError(
            f"RiskSnapshot(asset={params.asset!r}, update_id={params.update_id}): multiplier "
            f"{params.multiplier} outside [{asset.min_multiplier}, {asset.max_multiplier}] "
            "configured for this asset; check the publisher's policy caps"
        )


def parse_time_ms(text: str) -> int:
    """Parse an ISO-8601 UTC time with ``Z`` (or an explicit offset) to epoch milliseconds."""
    dt = datetime.fromisoformat(text.replace("Z", "+00:00"))
    if dt.tzinfo is None:
        raise ValueError(f"time {text!r} has no timezone; RiskSnapshot times end in 'Z'")
    return int(dt.astimezone(UTC).timestamp() * 1000)


def _mapping(data: Mapping[str, Any], key: str, where: str) -> Mapping[str, Any]:
    value = data.get(key)
    if not isinstance(value, Mapping):
        raise SnapshotValidationError(f"{where}: '{key}' must be an object")
    return value


def _number(data: Mapping[str, Any], key: str, where: str) -> float:
    value = data.get(key)
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise SnapshotValidationError(f"{where}: '{key}' must be a number, got {value!r}")
    number = float(value)
    if not math.isfinite(number):
        raise SnapshotValidationError(f"{where}: '{key}' must be finite, got {value!r}")
    return number


def _positive(data: Mapping[str, Any], key: str, where: str) -> float:
    number = _number(data, key, where)
    if number <= 0:
        raise SnapshotValidationError(f"{where}: '{key}' must be > 0, got {number}")
    return number


def _non_negative(data: Mapping[str, Any], key: str, where: str) -> float:
    number = _number(data, key, where)
    if number < 0:
        raise SnapshotValidationError(f"{where}: '{key}' must be >= 0, got {number}")
    return number


def _fraction(data: Mapping[str, Any], key: str, where: str) -> float:
    number = _positive(data, key, where)
    if number > 1:
        raise SnapshotValidationError(f"{where}: '{key}' must be a fraction <= 1, got {number}")
    return number


def _time_ms(data: Mapping[str, Any], key: str, where: str) -> int:
    text = data.get(key)
    if not isinstance(text, str):
        raise SnapshotValidationError(f"{where}: '{key}' must be an ISO-8601 string")
    try:
        return parse_time_ms(text)
    except ValueError as exc:
        raise SnapshotValidationError(f"{where}: '{key}' = {text!r}: {exc}") from exc
