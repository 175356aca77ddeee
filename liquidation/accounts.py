"""Accounts, margin buckets and positions (the mutable records the state fold updates).

An account has one *cross* bucket (id = account id) holding its escrowed collateral and cross
positions, and one *isolated* bucket per isolated position (id = ``"account:ASSET"``) holding
the margin moved into it. Margin, health and liquidation are per bucket.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from liquidation.errors import UnknownAccountError


@dataclass
class Position:
    """A net perpetual position: ``lots`` (1e-8 units, long > 0) and signed entry ``cost``.

    ``cost`` is the signed micro-USD value paid for the open quantity, so the unrealized PnL at
    price ``p`` is ``value(lots, p) - cost``. ``risk_since_ms`` is when risk was last added: a
    position older than the last multiplier change rides the ramp.
    """

    asset: str
    lots: int
    cost: int
    risk_since_ms: int


@dataclass
class Bucket:
    """A margin bucket: collateral ``balance`` (micro-USD) and positions by asset.

    ``options`` holds option lots by series name (cross buckets only, see
    :mod:`liquidation.options.engine_book`).
    """

    bucket_id: str
    account: str
    isolated_asset: str | None
    balance: int = 0
    positions: dict[str, Position] = field(default_factory=dict)
    portfolio: bool = False
    last_liquidation_ms: int | None = None
    options: dict[str, int] = field(default_factory=dict)

    @property
    def is_isolated(self) -> bool:
        """True for an isolated-margin bucket."""
        return self.isolated_asset is not None

    def copy(self) -> Bucket:
        """An independent copy (positions copied too)."""
        return replace(
            self,
            positions={a: replace(p) for a, p in self.positions.items()},
            options=dict(self.options),
        )


def bucket_id(account: str, isolated_asset: str | None = None) -> str:
    """Id of the cross bucket of ``account`` or of its isolated bucket on an asset."""
    if not account or ":" in account:
        raise UnknownAccountError(f"account id {account!r} must be non-empty and free of ':'")
    return account if isolated_asset is None else f"{account}:{isolated_asset}"


def split_bucket_id(bucket: str) -> tuple[str, str | None]:
    """Inverse of :func:`bucket_id`."""
    account, _, asset = bucket.partition(":")
    return account, (asset or None)
