"""The implied-volatility input of option marks: a per-asset surface parameter.

**Decision.** The implied volatility is a per-asset *surface parameter* of the options ledger,
set by an audited ``surface`` event (:meth:`liquidation.options.ledger.OptionsLedger.set_surface`),
not a new field of the signed RiskSnapshot: the standard (``spec/risk-snapshot``, its EIP-712
encoding and the on-chain RiskOracle) stays unchanged, and an options venue can take its
surface from its own order book or a vendor. Without a surface, the at-the-money vol is the
published sigma forecast annualised (``sigma * sqrt(8760 / horizon_hours)``), so marks exist
from the first snapshot on.

The surface is a smile in standardised moneyness ``z = ln(K / F) / (atm_vol sqrt(T))``:
``vol = clip(atm_vol * (1 + skew * z + curvature * z^2), floor, cap)``, with ``z`` clipped to
+/-4 so far wings stay bounded. Scenario repricing is sticky-strike: a scenario shifts the
whole surface by its vol shock and keeps each strike's vol.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike, NDArray

from liquidation.errors import ConfigError

HOURS_PER_YEAR = 8760.0


@dataclass(frozen=True)
class VolSurface:
    """A per-asset implied-volatility smile (annualised vols).

    Parameters
    ----------
    atm_vol : float
        At-the-money implied volatility (0.6 = 60%).
    skew : float
        Slope in standardised moneyness (negative: puts richer, the crypto norm after crashes).
    curvature : float
        Smile convexity, ``>= 0``.
    floor, cap : float
        Bounds of any vol on the surface (0.05, 5.0).
    """

    atm_vol: float
    skew: float = 0.0
    curvature: float = 0.0
    floor: float = 0.05
    cap: float = 5.0

    def __post_init__(self) -> None:
        for name in ("atm_vol", "skew", "curvature", "floor", "cap"):
            if not math.isfinite(getattr(self, name)):
                raise ConfigError(f"VolSurface.{name} must be finite")
        if not 0 < self.floor <= self.atm_vol <= self.cap <= 10:
            raise ConfigError(
                f"VolSurface needs 0 < floor <= atm_vol <= cap <= 10, got floor={self.floor}, "
                f"atm_vol={self.atm_vol}, cap={self.cap}"
            )
        if self.curvature < 0 or abs(self.skew) > 1:
            raise ConfigError("VolSurface needs curvature >= 0 and |skew| <= 1")

    def vol(
        self, forward: ArrayLike, strike: ArrayLike, expiry_years: ArrayLike
    ) -> NDArray[np.float64]:
        """Implied vol at each (forward, strike, expiry)."""
        f, k, t = (np.asarray(a, dtype=np.float64) for a in (forward, strike, expiry_years))
        width = self.atm_vol * np.sqrt(np.maximum(t, 1e-12))
        z = np.clip(np.log(k / f) / width, -4.0, 4.0)
        smile = self.atm_vol * (1.0 + self.skew * z + self.curvature * z * z)
        return np.clip(smile, self.floor, self.cap)

    def to_dict(self) -> dict[str, float]:
        """Plain dict (for the event log)."""
        return {
            "atm_vol": self.atm_vol,
            "skew": self.skew,
            "curvature": self.curvature,
            "floor": self.floor,
            "cap": self.cap,
        }


def annualised_sigma(horizon_sigma: float, horizon_hours: float) -> float:
    """A horizon sigma as an annual volatility (square-root-of-time)."""
    return horizon_sigma * math.sqrt(HOURS_PER_YEAR / horizon_hours)


def from_forecast(horizon_sigma: float, horizon_hours: float) -> VolSurface:
    """The flat fallback surface at the published forecast's annualised sigma."""
    atm = min(5.0, max(0.05, annualised_sigma(horizon_sigma, horizon_hours)))
    return VolSurface(atm_vol=atm)
