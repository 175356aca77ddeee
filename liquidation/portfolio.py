"""Portfolio margin: worst loss over a joint price x volatility scenario grid.

For a book of linear perpetuals with signed USD notionals ``d`` and per-asset horizon sigmas
``s`` (snapshot sigma times the margin multiplier, floored by the stress sigma), a scenario is a
joint return vector ``r = p * v * (s ⊙ u)`` where

* ``u`` is a unit-sigma joint move: each column of the correlation matrix (asset ``j`` moves
  one sigma and the others by their regression-implied amount) and each principal component
  scaled by the square root of its eigenvalue, with both signs;
* ``p`` runs over the price levels (in sigmas) and ``v`` over the volatility levels.

The loss of a scenario is ``-d · r`` plus the close-out liquidity cost ``v * Σ |d_i| c_i`` (a
volatile market widens the cost of unwinding). Requirement = ``max(worst loss, floor)``, the
floor being a fraction of the standard (isolated-sum) requirement, against procyclicality.
"""

from __future__ import annotations

import functools

import numpy as np
from numpy.typing import NDArray

from liquidation.config import PortfolioMarginConfig


def scenario_directions(correlation: NDArray[np.float64]) -> NDArray[np.float64]:
    """Unit-sigma joint moves (assets x directions), both signs, deterministic order.

    Parameters
    ----------
    correlation : ndarray, shape (n, n)
        A symmetric correlation matrix.

    Returns
    -------
    ndarray, shape (n, 4n)
    """
    corr = np.asarray(correlation, dtype=np.float64)
    eigenvalues, eigenvectors = np.linalg.eigh(corr)
    # Fix the sign of each eigenvector so the grid does not depend on LAPACK's choice.
    signs = np.where(
        eigenvectors[np.argmax(np.abs(eigenvectors), axis=0), range(len(corr))] < 0, -1.0, 1.0
    )
    components = eigenvectors * signs * np.sqrt(np.clip(eigenvalues, 0.0, None))
    base = np.concatenate([corr, components], axis=1)
    return np.concatenate([base, -base], axis=1)


def scenario_returns(
    sigmas: NDArray[np.float64], correlation: NDArray[np.float64], config: PortfolioMarginConfig
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """The grid as an (assets x scenarios) return matrix and each scenario's vol level.

    Returns
    -------
    returns : ndarray, shape (n, n_scenarios)
    vol_level : ndarray, shape (n_scenarios,)
    """
    directions = _directions(np.asarray(correlation, dtype=np.float64).tobytes(), len(sigmas))
    levels = np.asarray(config.price_levels, dtype=np.float64)
    vols = np.asarray(config.vol_levels, dtype=np.float64)
    grid_scale = (vols[:, None, None] * levels[None, :, None]).reshape(-1, 1)  # (V*P, 1)
    vol_of = np.repeat(vols, len(levels))
    # (n, D) -> (n, V*P*D)
    scaled = (directions[None, :, :] * grid_scale[:, :, None]).transpose(1, 0, 2)
    returns = (scaled * np.asarray(sigmas, dtype=np.float64)[:, None, None]).reshape(
        len(sigmas), -1
    )
    vol_level = np.repeat(vol_of, directions.shape[1])
    return returns, vol_level


@functools.lru_cache(maxsize=64)
def _directions(correlation: bytes, n: int) -> NDArray[np.float64]:
    """:func:`scenario_directions` cached by the matrix (an eigendecomposition per view)."""
    return scenario_directions(np.frombuffer(correlation, dtype=np.float64).reshape(n, n))


def portfolio_requirement(
    signed_notional_usd: NDArray[np.float64],
    gross_notional_usd: NDArray[np.float64],
    liquidity_cost: NDArray[np.float64],
    returns: NDArray[np.float64],
    vol_level: NDArray[np.float64],
    floor_usd: float,
) -> float:
    """Worst scenario loss of one book in USD, at least ``floor_usd``.

    Parameters
    ----------
    signed_notional_usd : ndarray, shape (n,)
        Position notionals per asset, long positive (scaled by ``m_existing / m_target`` for
        positions on the ramp, since the grid is built at target multipliers).
    gross_notional_usd : ndarray, shape (n,)
        Absolute notionals per asset (what the close-out liquidity cost applies to).
    liquidity_cost : ndarray, shape (n,)
        Close-out cost fraction of each asset at base volatility.
    returns, vol_level : ndarray
        From :func:`scenario_returns`.
    floor_usd : float
        The stress floor.
    """
    d = np.asarray(signed_notional_usd, dtype=np.float64)
    gross = np.asarray(gross_notional_usd, dtype=np.float64)
    losses = -(d @ returns) + vol_level * float(gross @ liquidity_cost)
    return max(float(losses.max(initial=0.0)), floor_usd)
