"""Vectorised health scan of accounts holding perpetuals and options.

The exact requirement of a book is a maximum over the scenario grid
(:func:`liquidation.options.risk.requirement`), which costs ``positions x scenarios``. The
scan avoids paying it for every account with a bound that never misses. Group the scenarios
by (vol level, joint direction), each group holding the price levels along it. Within a group
the book's worst loss is at most the sum of its positions' own worst losses in that group
(``max(a + b) <= max a + max b``), so

``MM <= max over groups g of sum over positions of max_{s in g} loss_position(s)``.

Each position's group maxima are one row of a (series or perpetual, side) x groups table, so
the bound of every account is one sparse matrix product (accounts x instruments, cached until
the positions change) with that table: ``positions x groups`` work instead of ``positions x
scenarios`` (60 groups against 540 scenarios for 10 uncorrelated underlyings). Along a
direction only the positions it moves change, so the bound is nearly tight; an account whose
equity covers ``max(bound, short-option minimum)`` is healthy, and the rest get the exact
grid, in chunks.

Equity is ``cash + sum perp_qty * price + sum option_qty * mark``: ``cash`` holds the
collateral, minus the perpetuals' cost, plus option premiums and settlements.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np
from numpy.typing import NDArray
from scipy import sparse

from liquidation.money import QTY_SCALE
from liquidation.options.config import OptionsMarginConfig
from liquidation.options.risk import Grid, OptionsMarket, SeriesRisk

if TYPE_CHECKING:
    from liquidation.accounts import Bucket
    from liquidation.options.engine_book import OptionsView
    from liquidation.scan import PositionBook

#: Accounts per chunk of the exact grid (bounds the dense chunk x scenarios temporaries).
CHUNK = 8_192
#: Float tolerance of the filter, USD per position and relative to the amounts involved.
TOLERANCE_PER_POSITION_USD = 1e-6
TOLERANCE_RELATIVE = 1e-9


@dataclass(frozen=True)
class HealthResult:
    """Accounts below maintenance, and how many needed the exact grid."""

    liquidatable: NDArray[np.int64]
    equity: NDArray[np.float64]
    exact_checked: int


@dataclass
class OptionsBook:
    """Structure-of-arrays book: one perpetual row per (account, asset), one option row per
    (account, series).

    Parameters
    ----------
    n_accounts : int
    cash : ndarray, shape (n_accounts,)
        USD.
    perp_account, perp_asset : ndarray of int
    perp_qty : ndarray of float
        Signed units.
    opt_account, opt_series : ndarray of int
    opt_qty : ndarray of float
        Signed units of each series.
    """

    n_accounts: int
    cash: NDArray[np.float64]
    perp_account: NDArray[np.int64]
    perp_asset: NDArray[np.int64]
    perp_qty: NDArray[np.float64]
    opt_account: NDArray[np.int64]
    opt_series: NDArray[np.int64]
    opt_qty: NDArray[np.float64]
    _sides: tuple[tuple[int, int], sparse.csr_matrix] | None = field(
        default=None, init=False, repr=False
    )

    @property
    def n_rows(self) -> int:
        """Positions in the book (perpetual plus option rows)."""
        return len(self.perp_qty) + len(self.opt_qty)

    def scan(
        self,
        market: OptionsMarket,
        risk: SeriesRisk,
        grid: Grid,
        config: OptionsMarginConfig,
    ) -> HealthResult:
        """Accounts with equity below maintenance at ``market`` (exact on every flagged one)."""
        equity, upper, minimum = self.bounds(market, risk, grid)
        n = self.n_accounts
        count = np.bincount(self.perp_account, minlength=n) + np.bincount(
            self.opt_account, minlength=n
        )
        tolerance = TOLERANCE_PER_POSITION_USD * (count + 1) + TOLERANCE_RELATIVE * (
            np.abs(self.cash) + upper
        )
        candidates = np.flatnonzero(equity < upper + tolerance)
        if candidates.size == 0:
            return HealthResult(np.empty(0, dtype=np.int64), equity, 0)
        maintenance = self.exact_maintenance(candidates, market, risk, grid)
        below = equity[candidates] < np.maximum(maintenance, minimum[candidates])
        return HealthResult(candidates[below], equity, int(candidates.size))

    def bounds(
        self, market: OptionsMarket, risk: SeriesRisk, grid: Grid
    ) -> tuple[NDArray[np.float64], NDArray[np.float64], NDArray[np.float64]]:
        """Per account: equity, the upper bound of maintenance, the short-option minimum.

        The bound is ``max(grouped sum of the positions' worst losses, short-option minimum)``
        (module docstring).
        """
        n = self.n_accounts
        perp_signed = self.perp_qty * market.price.take(self.perp_asset)
        opt_value = self.opt_qty * risk.value.take(self.opt_series)
        equity = (
            self.cash
            + np.bincount(self.perp_account, weights=perp_signed, minlength=n)
            + np.bincount(self.opt_account, weights=opt_value, minlength=n)
        )
        sides = self._side_matrices(len(risk.value), len(market.price))
        liquidity = risk.liquidity[:, None]
        close_perp = (market.liquidity_cost * market.price)[:, None]
        unit = market.price[:, None]
        # One product of the cached [long options | short options | long perps | short perps]
        # matrix with the stacked worst-loss-per-group tables.
        table = np.concatenate(
            [
                grid.group_max(-risk.pnl) + liquidity,
                grid.group_max(risk.pnl) + liquidity,
                grid.group_max(-grid.returns) * unit + close_perp,
                grid.group_max(grid.returns) * unit + close_perp,
            ]
        )
        grouped = sides @ table
        bound = np.maximum(np.asarray(grouped).max(axis=1), 0.0)
        minimum_rows = np.maximum(-self.opt_qty, 0.0) * risk.short_minimum.take(self.opt_series)
        minimum = np.bincount(self.opt_account, weights=minimum_rows, minlength=n)
        return equity, np.maximum(bound, minimum), minimum

    def _side_matrices(self, n_series: int, n_assets: int) -> sparse.csr_matrix:
        """Accounts x [long options | short options | long perps | short perps] matrix of
        |quantity| (cached: the rows are fixed once the book is built, only ``cash`` may
        change)."""
        key = (n_series, n_assets)
        if self._sides is not None and self._sides[0] == key:
            return self._sides[1]
        opt_col = np.where(self.opt_qty > 0, self.opt_series, n_series + self.opt_series)
        perp_col = 2 * n_series + np.where(
            self.perp_qty > 0, self.perp_asset, n_assets + self.perp_asset
        )
        matrix = sparse.csr_matrix(
            (
                np.abs(np.concatenate([self.opt_qty, self.perp_qty])),
                (
                    np.concatenate([self.opt_account, self.perp_account]),
                    np.concatenate([opt_col, perp_col]),
                ),
            ),
            shape=(self.n_accounts, 2 * (n_series + n_assets)),
        )
        self._sides = (key, matrix)
        return matrix

    def exact_maintenance(
        self,
        accounts: NDArray[np.int64],
        market: OptionsMarket,
        risk: SeriesRisk,
        grid: Grid,
    ) -> NDArray[np.float64]:
        """Worst grid loss (liquidity included, floored at 0) of each of ``accounts``."""
        n_assets, n_series = len(market.price), len(risk.value)
        local = np.full(self.n_accounts, -1, dtype=np.int64)
        local[accounts] = np.arange(len(accounts))
        p_rows = np.flatnonzero(local.take(self.perp_account) >= 0)
        o_rows = np.flatnonzero(local.take(self.opt_account) >= 0)
        p_acc = local.take(self.perp_account[p_rows])
        o_acc = local.take(self.opt_account[o_rows])
        notional = self.perp_qty[p_rows] * market.price.take(self.perp_asset[p_rows])
        perp = sparse.csr_matrix(
            (notional, (p_acc, self.perp_asset[p_rows])), shape=(len(accounts), n_assets)
        )
        opts = sparse.csr_matrix(
            (self.opt_qty[o_rows], (o_acc, self.opt_series[o_rows])),
            shape=(len(accounts), n_series),
        )
        liquidity = np.abs(perp) @ market.liquidity_cost + np.abs(opts) @ risk.liquidity
        result = np.empty(len(accounts))
        for start in range(0, len(accounts), CHUNK):
            stop = min(start + CHUNK, len(accounts))
            pnl = perp[start:stop] @ grid.returns + opts[start:stop] @ risk.pnl
            worst = (liquidity[start:stop, None] - pnl).max(axis=1)
            result[start:stop] = np.maximum(worst, 0.0)
        return result


#: Slack of the engine's filter on top of the float tolerance: the exact check is in integer
#: micro-USD (equity rounded down, maintenance up), so it may flag up to 2 micro-USD earlier.
INTEGER_SLACK_USD = 3e-6


@dataclass(frozen=True)
class OptionRows:
    """The option positions of the buckets holding options, as arrays (the engine caches
    them until an option changes: a price tick rebuilds nothing).

    ``holders`` are bucket ids, ``holder_index`` their rows in the engine's
    :class:`~liquidation.scan.PositionBook`; ``account`` indexes ``holders``, ``series`` the
    view's priced series (sorted names).
    """

    holders: list[str]
    holder_index: NDArray[np.int64]
    account: NDArray[np.int64]
    series: NDArray[np.int64]
    qty: NDArray[np.float64]

    @classmethod
    def of(
        cls,
        buckets: Sequence[Bucket],
        book_index: Mapping[str, int],
        series_index: Mapping[str, int],
    ) -> OptionRows:
        """Rows of every option of ``buckets`` (each holding at least one)."""
        account, series, qty = [], [], []
        for j, bucket in enumerate(buckets):
            for name, lots in bucket.options.items():
                account.append(j)
                series.append(series_index[name])
                qty.append(lots / QTY_SCALE)
        return cls(
            holders=[b.bucket_id for b in buckets],
            holder_index=np.array([book_index[b.bucket_id] for b in buckets], dtype=np.int64),
            account=np.array(account, dtype=np.int64),
            series=np.array(series, dtype=np.int64),
            qty=np.array(qty, dtype=np.float64),
        )


@dataclass
class EngineOptionBook:
    """The scan book of the option holders built from the engine's position book, with each
    holder's perpetual entry cost (cached by the engine until a position changes: a price
    tick reuses it, sparse side matrix included, and only the balances are read again)."""

    book: OptionsBook
    entry_cost: NDArray[np.float64]

    @classmethod
    def build(cls, rows: OptionRows, book: PositionBook) -> EngineOptionBook:
        """Perpetual rows of ``rows.holders`` from ``book``, option rows from ``rows``."""
        n = len(rows.holders)
        local = np.full(len(book.bucket_ids), -1, dtype=np.int64)
        local[rows.holder_index] = np.arange(n)
        used = book.n_rows
        owner = local.take(book.row_bucket[:used])
        keep = (owner >= 0) & (book.qty[:used] != 0)
        perp_account = owner[keep]
        scan = OptionsBook(
            n_accounts=n,
            cash=np.zeros(n),
            perp_account=perp_account,
            perp_asset=book.row_asset[:used][keep],
            perp_qty=book.qty[:used][keep],
            opt_account=rows.account,
            opt_series=rows.series,
            opt_qty=rows.qty,
        )
        cost = np.bincount(perp_account, weights=book.cost[:used][keep], minlength=n)
        return cls(scan, cost)


def engine_scan(
    options: OptionsView,
    rows: OptionRows,
    built: EngineOptionBook,
    book: PositionBook,
    *,
    exact: bool = False,
) -> tuple[NDArray[np.float64], NDArray[np.float64], NDArray[np.bool_]]:
    """The option holders' part of the engine's scan, per holder (``rows.holders`` order).

    Returns equity (USD), maintenance (USD) and the flag "may be below maintenance" (a
    superset of those below it, within the float and integer tolerances). Without ``exact``
    the maintenance is the grouped upper bound (:meth:`OptionsBook.bounds`: the vectorised
    filter, what :meth:`liquidation.engine.Engine.liquidatable` runs); with it, the exact
    grid of every holder (``max(worst grid loss, short-option minimum)``, in chunks).

    Each bucket's cash is its balance (read from ``book`` now) minus the entry cost of its
    perpetuals, so ``cash + perp_qty * price + option_qty * mark`` is its equity.
    """
    n = len(rows.holders)
    priced = options.priced
    scan = built.book
    scan.cash = book.balance[rows.holder_index] - built.entry_cost
    equity, upper, minimum = scan.bounds(options.market, priced.risk, priced.grid)
    if exact and n:
        grid_loss = scan.exact_maintenance(np.arange(n), options.market, priced.risk, priced.grid)
        upper = np.maximum(grid_loss, minimum)
    count = np.bincount(scan.perp_account, minlength=n) + np.bincount(rows.account, minlength=n)
    tolerance = (
        TOLERANCE_PER_POSITION_USD * (count + 1)
        + TOLERANCE_RELATIVE * (np.abs(scan.cash) + np.abs(equity) + upper)
        + INTEGER_SLACK_USD
    )
    return equity, upper, equity < upper + tolerance


def engine_candidates(
    options: OptionsView, rows: OptionRows, built: EngineOptionBook, book: PositionBook
) -> list[str]:
    """Ids of the option-holding buckets the bound cannot clear (a superset of those below
    maintenance): the vectorised filter of the engine's scan (:func:`engine_scan`)."""
    if not rows.holders:
        return []
    _, _, flagged = engine_scan(options, rows, built, book)
    return [rows.holders[i] for i in np.flatnonzero(flagged)]
