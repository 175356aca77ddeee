"""Option series: the contract terms of a listed European option on a perpetual."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

import numpy as np
from numpy.typing import NDArray

from liquidation.errors import InputError
from liquidation.money import MAX_PRICE, MICRO

#: Milliseconds in the year used to turn expiry times into Black-76's ``T`` (365 days, as
#: Deribit). Defined here, not in :mod:`~liquidation.options.black76`, so listing series
#: needs no scipy.
YEAR_MS: float = 365.0 * 24 * 3_600_000


@dataclass(frozen=True, order=True)
class OptionSeries:
    """A European option on ``underlying``, cash-settled in USD at expiry.

    One contract is one unit of the underlying (quantities are lots of 1e-8, as for perps);
    ``strike`` is micro-USD; ``expiry_ms`` the settlement instant (epoch ms, UTC).
    """

    underlying: str
    expiry_ms: int
    strike: int
    is_call: bool

    def __post_init__(self) -> None:
        if not isinstance(self.strike, int) or not 0 < self.strike <= MAX_PRICE:
            raise InputError(f"option strike must be an int in (0, {MAX_PRICE}] micro-USD")
        if not isinstance(self.expiry_ms, int) or self.expiry_ms <= 0:
            raise InputError("option expiry_ms must be a positive int (epoch ms)")
        if not isinstance(self.is_call, bool):
            raise InputError("option is_call must be a bool")

    @property
    def name(self) -> str:
        """Deribit-style instrument name, e.g. ``BTCUSDT-27JUN25-60000-C``."""
        day = datetime.fromtimestamp(self.expiry_ms / 1000, tz=UTC).strftime("%d%b%y").upper()
        strike = f"{self.strike / MICRO:g}"
        return f"{self.underlying}-{day}-{strike}-{'C' if self.is_call else 'P'}"

    def years_to_expiry(self, ts_ms: int) -> float:
        """``T`` of Black-76 at ``ts_ms`` (0 at and after expiry)."""
        return max(0.0, (self.expiry_ms - ts_ms) / YEAR_MS)

    def intrinsic(self, settlement: int) -> int:
        """Payoff per unit at a settlement price, micro-USD (exact integer)."""
        gain = settlement - self.strike if self.is_call else self.strike - settlement
        return max(0, gain)

    def to_dict(self) -> dict[str, object]:
        """Plain dict (for the event log)."""
        return {
            "underlying": self.underlying,
            "expiry_ms": self.expiry_ms,
            "strike": self.strike,
            "is_call": self.is_call,
        }


@dataclass(frozen=True)
class SeriesArrays:
    """Many series as aligned arrays (the vectorised path), underlyings as asset indices."""

    asset: NDArray[np.int64]
    strike: NDArray[np.float64]
    expiry_ms: NDArray[np.int64]
    is_call: NDArray[np.bool_]

    @classmethod
    def of(cls, series: list[OptionSeries], symbols: tuple[str, ...]) -> SeriesArrays:
        """Arrays of ``series`` with underlyings indexed in ``symbols`` order (USD strikes)."""
        index = {s: i for i, s in enumerate(symbols)}
        return cls(
            asset=np.array([index[s.underlying] for s in series], dtype=np.int64),
            strike=np.array([s.strike / MICRO for s in series], dtype=np.float64),
            expiry_ms=np.array([s.expiry_ms for s in series], dtype=np.int64),
            is_call=np.array([s.is_call for s in series], dtype=bool),
        )

    def years(self, ts_ms: int) -> NDArray[np.float64]:
        """Time to expiry of each series in years."""
        return np.maximum(0.0, (self.expiry_ms - ts_ms) / YEAR_MS)

    def __len__(self) -> int:
        return len(self.asset)
