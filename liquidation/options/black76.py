"""Black-76 prices and analytic Greeks of European options on a forward, vectorised.

For forward ``F``, strike ``K``, time to expiry ``T`` (years), implied volatility ``s``
(annualised) and discount rate ``r``, with ``D = exp(-r T)``,
``d1 = (ln(F / K) + s^2 T / 2) / (s sqrt(T))`` and ``d2 = d1 - s sqrt(T)``:

* call ``D (F N(d1) - K N(d2))``, put ``D (K N(-d2) - F N(-d1))`` (put-call parity
  ``C - P = D (F - K)`` holds to rounding);
* delta ``dV/dF``: call ``D N(d1)``, put ``-D N(-d1)``;
* gamma ``d2V/dF2 = D phi(d1) / (F s sqrt(T))``;
* vega ``dV/ds = D F phi(d1) sqrt(T)`` (per unit of volatility, i.e. per 100 vol points);
* theta ``dV/dt = -dV/dT = r V - D F phi(d1) s / (2 sqrt(T))`` (per year of calendar time).

At or after expiry (``T <= 0``) or with zero volatility the price is the discounted intrinsic
value and gamma, vega and theta are zero. The perpetual is the underlying, so ``r`` defaults
to 0 (a USD-margined venue pays no carry on the premium; Deribit's linear options do the same).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy.special import ndtr

from liquidation.options.series import YEAR_MS

__all__ = ["YEAR_MS", "Greeks", "greeks", "price"]


@dataclass(frozen=True)
class Greeks:
    """Price and first-order sensitivities of one unit of underlying, arrays of one shape."""

    price: NDArray[np.float64]
    delta: NDArray[np.float64]
    gamma: NDArray[np.float64]
    vega: NDArray[np.float64]
    theta: NDArray[np.float64]


def _phi(x: NDArray[np.float64]) -> NDArray[np.float64]:
    return np.exp(-0.5 * x * x) / np.sqrt(2.0 * np.pi)


def _terms(
    forward: ArrayLike, strike: ArrayLike, expiry_years: ArrayLike, vol: ArrayLike
) -> tuple[NDArray[np.float64], ...]:
    f, k, t, s = np.broadcast_arrays(
        *(np.asarray(a, dtype=np.float64) for a in (forward, strike, expiry_years, vol))
    )
    live = (t > 0) & (s > 0)
    root_t = np.sqrt(np.where(live, t, 1.0))
    width = np.where(live, s, 1.0) * root_t
    with np.errstate(divide="ignore", invalid="ignore"):
        d1 = (np.log(f / k) + 0.5 * width * width) / width
    d1 = np.where(live, d1, 0.0)
    return f, k, t, s, live, root_t, d1, d1 - width


def price(
    forward: ArrayLike,
    strike: ArrayLike,
    expiry_years: ArrayLike,
    vol: ArrayLike,
    is_call: ArrayLike,
    rate: float = 0.0,
) -> NDArray[np.float64]:
    """Black-76 price of one unit of underlying (USD per unit), broadcast over the inputs.

    Parameters
    ----------
    forward, strike : array_like
        Positive USD prices.
    expiry_years : array_like
        Time to expiry in years; ``<= 0`` gives the intrinsic value.
    vol : array_like
        Annualised implied volatility (0.6 = 60%), ``>= 0``.
    is_call : array_like of bool
    rate : float
        Continuously compounded discount rate.
    """
    f, k, t, _s, live, _rt, d1, d2 = _terms(forward, strike, expiry_years, vol)
    call = np.asarray(is_call, dtype=bool)
    discount = np.exp(-rate * np.maximum(t, 0.0))
    value_call = f * ndtr(d1) - k * ndtr(d2)
    value_put = k * ndtr(-d2) - f * ndtr(-d1)
    model = np.where(call, value_call, value_put)
    intrinsic = np.where(call, np.maximum(f - k, 0.0), np.maximum(k - f, 0.0))
    return discount * np.where(live, model, intrinsic)


def greeks(
    forward: ArrayLike,
    strike: ArrayLike,
    expiry_years: ArrayLike,
    vol: ArrayLike,
    is_call: ArrayLike,
    rate: float = 0.0,
) -> Greeks:
    """Price, delta, gamma, vega and theta (analytic), broadcast over the inputs.

    Units: delta per unit of underlying, gamma per USD of forward, vega per 1.0 of
    volatility, theta per year (``dV/dt``, negative for a long option at ``r = 0``).
    """
    f, k, t, s, live, root_t, d1, _d2 = _terms(forward, strike, expiry_years, vol)
    call = np.asarray(is_call, dtype=bool)
    discount = np.exp(-rate * np.maximum(t, 0.0))
    value = price(f, k, t, s, call, rate)
    itm = np.where(call, f > k, f < k)
    expired_delta = np.where(itm, np.where(call, 1.0, -1.0), 0.0)
    delta = discount * np.where(live, np.where(call, ndtr(d1), -ndtr(-d1)), expired_delta)
    density = np.where(live, _phi(d1), 0.0)
    safe_s = np.where(live, s, 1.0)
    gamma = discount * density / (f * safe_s * root_t)
    vega = discount * f * density * root_t
    theta = np.where(live, rate * value - discount * f * density * safe_s / (2.0 * root_t), 0.0)
    return Greeks(price=value, delta=delta, gamma=gamma, vega=vega, theta=theta)
