"""Structure-of-arrays position book and the vectorised health scan.

The book mirrors the engine state in float64 numpy arrays (USD, base units): one row per
(margin bucket, asset) position, one slot per bucket. :meth:`PositionBook.scan` values every
bucket at a price vector. Because margin excess is linear in prices once the per-asset rates
are fixed, the scan keeps a bucket x asset exposure matrix (aggregated from the rows, then
updated in O(1) per position change) and a price tick is one matrix-vector product: well
under a millisecond for 100,000 buckets x 10 assets. :meth:`PositionBook.scan_rows` is the
row-wise path (gather + ``np.bincount``) for books too wide for a dense matrix.

The scan is a *filter* that never misses: it flags every bucket whose float margin excess is
below a tolerance covering the exact check's rounding (a truncation of value and a round-up of
requirement per position, plus float error relative to the amounts involved), and the engine
re-checks each flagged bucket with exact integer money before it liquidates. So the buckets
liquidated are exactly those the integer check finds below maintenance.

Positions pay the multiplier of their *ramp class* (:mod:`liquidation.rules.ramp`): per asset, the
classes are intervals of ``risk_since``; the exposure matrix keeps one quantity block per class.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from liquidation.money import MICRO, QTY_SCALE

#: Largest bucket x asset matrix the scan keeps dense (40 MB per float64 matrix).
DENSE_CELL_LIMIT = 5_000_000
#: Tolerance of the scan filter: USD per position (the exact check rounds each position's
#: value and requirement by under one micro-USD each) and relative float error.
TOLERANCE_PER_POSITION_USD = 1e-5
TOLERANCE_RELATIVE = 1e-12
_NO_CLASS = np.iinfo(np.int64).max


@dataclass(frozen=True)
class MarginArrays:
    """Per-asset margin inputs of a scan, aligned with the engine's asset order.

    ``price`` is the mark. ``guarded`` marks assets whose oracle is stale or tripped: buckets
    holding them are never reported liquidatable. Ramp classes: a position of asset ``a``
    whose risk dates from ``class_since[a, k] <= risk_since < class_since[a, k + 1]`` pays
    multiplier ``class_mult[a, k]`` (``class_since[a, 0]`` is the smallest int64; unused
    classes start at the largest). The portfolio fields (``returns``, ``vol_level``,
    ``liquidity_cost``, ``floor_fraction``) are built at ``mult_target``; ``sigma`` is the
    multiplier-scaled horizon sigma per asset.
    """

    price: NDArray[np.float64]
    guarded: NDArray[np.bool_]
    base_imf: NDArray[np.float64]
    maintenance_fraction: NDArray[np.float64]
    size_imf_factor: NDArray[np.float64]
    size_reference_usd: NDArray[np.float64]
    imf_cap: NDArray[np.float64]
    mult_target: NDArray[np.float64]
    class_since: NDArray[np.int64]
    class_mult: NDArray[np.float64]
    sigma: NDArray[np.float64]
    returns: NDArray[np.float64]
    vol_level: NDArray[np.float64]
    liquidity_cost: NDArray[np.float64]
    floor_fraction: float

    @classmethod
    def class_arrays(
        cls, since: list[tuple[int, ...]], multipliers: list[tuple[float, ...]]
    ) -> tuple[NDArray[np.int64], NDArray[np.float64]]:
        """Pad per-asset class tuples into ``(n_assets, K)`` arrays (empty classes last)."""
        width = max(len(s) for s in since)
        since_array = np.full((len(since), width), _NO_CLASS, dtype=np.int64)
        mult_array = np.zeros((len(since), width))
        for a, (bounds, mults) in enumerate(zip(since, multipliers, strict=True)):
            since_array[a, : len(bounds)] = bounds
            mult_array[a, : len(mults)] = mults
            mult_array[a, len(mults) :] = mults[-1]
        return since_array, mult_array

    def parameter_key(self) -> bytes:
        """Bytes of every price-independent per-asset input (the scan's cache key)."""
        parts = (
            self.base_imf,
            self.maintenance_fraction,
            self.size_imf_factor,
            self.size_reference_usd,
            self.imf_cap,
            self.mult_target,
            self.class_since,
            self.class_mult,
        )
        return b"".join(np.ascontiguousarray(p).tobytes() for p in parts)

    def with_prices(self, price: NDArray[np.float64]) -> MarginArrays:
        """Same parameters at another price vector (one tick of a replay)."""
        return MarginArrays(**{**self.__dict__, "price": np.asarray(price, dtype=np.float64)})

    def classes_of(self, asset: NDArray[np.int64], since: NDArray[np.int64]) -> NDArray[np.int64]:
        """Ramp class of each (asset, risk_since) pair."""
        result = np.zeros(len(asset), dtype=np.int64)
        for a in np.unique(asset):
            rows = np.flatnonzero(asset == a)
            result[rows] = np.searchsorted(self.class_since[a], since[rows], side="right") - 1
        return result


@dataclass(frozen=True)
class ScanResult:
    """Outcome of one scan.

    ``liquidatable`` holds bucket indices (ascending) whose float excess ``equity -
    maintenance`` is below the rounding tolerance and that hold no guarded asset: a superset
    of the buckets the exact integer check finds below maintenance. ``equity`` and
    ``maintenance`` are per bucket index, in USD.
    """

    liquidatable: NDArray[np.int64]
    equity: NDArray[np.float64]
    maintenance: NDArray[np.float64]


class PositionBook:
    """Positions as structure-of-arrays for vectorised valuation.

    Rows (``row_bucket``, ``row_asset``, ``qty``, ``cost``, ``risk_since``) hold one position
    per (bucket, asset); buckets hold ``balance`` and the ``portfolio`` flag. The scan keeps
    a derived bucket x asset exposure matrix, updated in O(1) by every position change.

    Parameters
    ----------
    n_assets : int
        Number of configured assets (row ``asset`` values are indices into it).
    capacity : int
        Initial row and bucket capacity; arrays double when full.
    """

    def __init__(self, n_assets: int, capacity: int = 1024) -> None:
        self.n_assets = n_assets
        self.bucket_ids: list[str] = []
        self.bucket_index: dict[str, int] = {}
        self.balance = np.zeros(capacity)
        self.portfolio = np.zeros(capacity, dtype=bool)
        self.count = np.zeros(capacity, dtype=np.int64)
        self.row_index: dict[tuple[int, int], int] = {}
        self._free_rows: list[int] = []
        self.n_rows = 0
        self.row_bucket = np.zeros(capacity, dtype=np.int64)
        self.row_asset = np.zeros(capacity, dtype=np.int64)
        self.qty = np.zeros(capacity)
        self.cost = np.zeros(capacity)
        self.risk_since = np.zeros(capacity, dtype=np.int64)
        self._version = 0  # bumped by every change the row path's caches depend on
        self._exposure: _Exposure | None = None
        self._rates: tuple[tuple[int, bytes], _RowRates] | None = None
        self._work: tuple[NDArray[np.float64], NDArray[np.float64]] | None = None

    # -- construction -----------------------------------------------------------------------
    @classmethod
    def from_arrays(
        cls,
        n_assets: int,
        bucket_ids: list[str],
        balance_usd: NDArray[np.float64],
        row_bucket: NDArray[np.int64],
        row_asset: NDArray[np.int64],
        qty: NDArray[np.float64],
        cost_usd: NDArray[np.float64],
        risk_since_ms: NDArray[np.int64] | None = None,
        portfolio: NDArray[np.bool_] | None = None,
    ) -> PositionBook:
        """Build a book directly from arrays (benchmarks, simulators' bulk loads).

        Each (bucket, asset) pair may appear at most once.
        """
        n_rows = len(row_bucket)
        book = cls(n_assets, capacity=max(1, len(bucket_ids), n_rows))
        book.bucket_ids = list(bucket_ids)
        book.bucket_index = {b: i for i, b in enumerate(bucket_ids)}
        book.balance[: len(bucket_ids)] = balance_usd
        if portfolio is not None:
            book.portfolio[: len(bucket_ids)] = portfolio
        book.row_bucket[:n_rows] = row_bucket
        book.count[: len(bucket_ids)] = np.bincount(row_bucket, minlength=len(bucket_ids))
        book.row_asset[:n_rows] = row_asset
        book.qty[:n_rows] = qty
        book.cost[:n_rows] = cost_usd
        if risk_since_ms is not None:
            book.risk_since[:n_rows] = risk_since_ms
        book.n_rows = n_rows
        book.row_index = {
            (int(b), int(a)): i for i, (b, a) in enumerate(zip(row_bucket, row_asset, strict=True))
        }
        if len(book.row_index) != n_rows:
            raise ValueError("from_arrays: a (bucket, asset) pair appears more than once")
        return book

    # -- incremental updates (called by the state fold) -------------------------------------
    def bucket(self, bucket_id: str) -> int:
        """Index of ``bucket_id``, creating its slot if new."""
        index = self.bucket_index.get(bucket_id)
        if index is None:
            index = len(self.bucket_ids)
            if index >= len(self.balance):
                self.balance = _grow(self.balance)
                self.portfolio = _grow(self.portfolio)
                self.count = _grow(self.count)
                self._exposure = None  # sized to the old capacity
            self.bucket_ids.append(bucket_id)
            self.bucket_index[bucket_id] = index
            self._version += 1
        return index

    def set_balance(self, bucket_id: str, balance_micro: int) -> None:
        """Mirror a bucket's collateral balance."""
        self.balance[self.bucket(bucket_id)] = balance_micro / MICRO

    def set_portfolio(self, bucket_id: str, portfolio: bool) -> None:
        """Mirror a bucket's portfolio-margin flag."""
        self.portfolio[self.bucket(bucket_id)] = portfolio
        self._version += 1

    def set_position(
        self, bucket_id: str, asset: int, lots: int, cost_micro: int, risk_since_ms: int
    ) -> None:
        """Mirror one position; ``lots == 0`` frees its row."""
        self._version += 1
        index = self.bucket(bucket_id)
        key = (index, asset)
        row = self.row_index.get(key)
        if lots == 0:
            if row is not None:
                self.qty[row] = 0.0
                self.cost[row] = 0.0
                del self.row_index[key]
                self._free_rows.append(row)
                self.count[index] -= 1
        else:
            if row is None:
                row = self._free_rows.pop() if self._free_rows else self._new_row()
                self.row_index[key] = row
                self.count[index] += 1
                self.row_bucket[row] = index
                self.row_asset[row] = asset
            self.qty[row] = lots / QTY_SCALE
            self.cost[row] = cost_micro / MICRO
            self.risk_since[row] = risk_since_ms
        if self._exposure is not None:
            # Re-sum the bucket's entry costs from its rows (no drift from running deltas).
            rows = (self.row_index.get((index, a)) for a in range(self.n_assets))
            bucket_cost = sum(self.cost[r] for r in rows if r is not None)
            self._exposure.update(index, asset, lots / QTY_SCALE, bucket_cost, risk_since_ms)

    def _new_row(self) -> int:
        row = self.n_rows
        if row >= len(self.qty):
            self.row_bucket = _grow(self.row_bucket)
            self.row_asset = _grow(self.row_asset)
            self.qty = _grow(self.qty)
            self.cost = _grow(self.cost)
            self.risk_since = _grow(self.risk_since)
        self.n_rows += 1
        return row

    # -- the scan ---------------------------------------------------------------------------
    def scan(self, margin: MarginArrays, detail: bool = True) -> ScanResult:
        """Value every position at ``margin.price`` and flag buckets at or below maintenance.

        A bucket's margin excess is linear in prices and in the per-class maintenance rates:
        ``excess = balance - C + [Q_0 .. Q_K-1 | |Q_0| .. |Q_K-1|] @ [p .. p | -p r_0 ..
        -p r_K-1]`` where ``Q_k`` are bucket x asset net quantities of ramp class ``k`` and
        ``r_k`` its maintenance rate. That matrix is built once with ``np.bincount``-style
        aggregation and kept current by :meth:`set_position`, so a price tick is a few
        matrix-vector products. Positions large enough for the size scaling to bind are fixed
        up column by column, only for assets whose price crosses the smallest such threshold.
        Books wider than ``DENSE_CELL_LIMIT`` cells use :meth:`scan_rows`.

        Parameters
        ----------
        margin : MarginArrays
            Prices and margin parameters per asset (see :meth:`Engine.margin_arrays`).
        detail : bool
            Also return per-bucket equity and maintenance; without it ``equity`` and
            ``maintenance`` are empty.

        Returns
        -------
        ScanResult
        """
        nb, na = len(self.bucket_ids), self.n_assets
        if nb * na > DENSE_CELL_LIMIT:
            return self.scan_rows(margin, detail)
        exposure = self._exposure_for(margin)
        k = exposure.n_classes
        price = margin.price
        rates = _class_rates(margin)  # (na, K)
        matrix = exposure.matrix[:nb]
        signed_block, abs_block = matrix[:, : k * na], matrix[:, k * na :]
        pm = np.flatnonzero(self.portfolio[:nb])
        extra = exposure.size_excess(margin, rates, nb)
        prices = np.tile(price, k)
        requirement = (price[:, None] * rates).T.ravel()
        balance, cost = self.balance[:nb], exposure.cost[:nb]
        tolerance = _tolerance(self.count[:nb], balance, cost)
        if detail or pm.size:
            equity = balance - cost + _matvec(signed_block, prices)
            maintenance = _matvec(abs_block, requirement)
            # The relative float error scales with sum |q| p, bounded from the requirement.
            tolerance += TOLERANCE_RELATIVE * maintenance / rates.min()
            if extra is not None:
                maintenance += extra
            if pm.size:
                ratio = margin.class_mult / margin.mult_target[:, None]  # (na, K)
                blocks = signed_block[pm].reshape(len(pm), k, na)
                scaled = np.einsum("bka,ak->ba", blocks, ratio) * price
                signed = blocks.sum(axis=1) * price
                maintenance = _grid_maintenance(
                    margin, scaled, signed, np.abs(signed), maintenance, pm
                )
            excess = equity - maintenance
            if not detail:
                equity = maintenance = np.empty(0)
        else:
            # One pass over the matrix; the relative tolerance rides on the rates, so a bucket
            # is flagged when its excess is below the tolerance plus ``rel * sum |q| p``.
            vector = np.concatenate([prices, -(requirement + TOLERANCE_RELATIVE * prices)])
            excess = balance - cost + _matvec(matrix, vector)
            if extra is not None:
                excess -= extra
            equity = maintenance = np.empty(0)
        below = excess < tolerance
        if margin.guarded.any():
            cols = np.flatnonzero(margin.guarded)
            held = (abs_block.reshape(nb, k, na)[:, :, cols] != 0).any(axis=(1, 2))
            below &= ~held
        return ScanResult(np.flatnonzero(below), equity, maintenance)

    def scan_rows(self, margin: MarginArrays, detail: bool = True) -> ScanResult:
        """The row path of :meth:`scan`: gather prices per position, ``np.bincount`` per bucket.

        Used for books too wide for the dense matrix; same result.
        """
        n, nb = self.n_rows, len(self.bucket_ids)
        rates = self._row_rates(margin)
        bucket = self.row_bucket[:n]
        # Reused work buffers: fresh 8 MB temporaries per pass cost more in page faults
        # than the arithmetic itself.
        signed, required = self._buffers(n)
        np.take(margin.price, self.row_asset[:n], out=signed)
        np.multiply(signed, self.qty[:n], out=signed)
        notional = np.abs(signed, out=required)
        gross = np.bincount(bucket, weights=notional, minlength=nb)
        rows = np.flatnonzero(notional > rates.threshold) if rates.any_size else None
        if rows is not None and rows.size:
            big = notional[rows]
            scaled = np.minimum(
                np.maximum(rates.rate[rows], rates.size_coef[rows] * np.sqrt(big)),
                rates.cap[rows],
            )
        np.multiply(notional, rates.rate, out=required)
        if rows is not None and rows.size:
            required[rows] = big * scaled
        pm_buckets = np.flatnonzero(self.portfolio[:nb])
        balance = self.balance[:nb]
        cost = np.bincount(bucket, weights=self.cost[:n], minlength=nb)
        if detail or pm_buckets.size:
            maintenance = np.bincount(bucket, weights=required, minlength=nb)
            if pm_buckets.size:
                local = np.full(nb, -1, dtype=np.int64)
                local[pm_buckets] = np.arange(len(pm_buckets))
                pm_rows = np.flatnonzero(local.take(bucket) >= 0)
                cells = local.take(bucket[pm_rows]) * self.n_assets + self.row_asset[pm_rows]
                size = len(pm_buckets) * self.n_assets
                shape = (len(pm_buckets), self.n_assets)
                scaled_book = np.bincount(
                    cells, weights=signed[pm_rows] * rates.ratio[pm_rows], minlength=size
                ).reshape(shape)
                signed_book = np.bincount(cells, weights=signed[pm_rows], minlength=size)
                signed_book = signed_book.reshape(shape)
                maintenance = _grid_maintenance(
                    margin,
                    scaled_book,
                    signed_book,
                    np.abs(signed_book),
                    maintenance,
                    pm_buckets,
                )
            pnl = np.subtract(signed, self.cost[:n], out=signed)
            equity = balance + np.bincount(bucket, weights=pnl, minlength=nb)
            excess = equity - maintenance
        else:
            pnl = np.subtract(signed, self.cost[:n], out=signed)
            pnl -= required
            excess = balance + np.bincount(bucket, weights=pnl, minlength=nb)
            equity = maintenance = np.empty(0)
        below = excess < _tolerance(self.count[:nb], balance, cost) + TOLERANCE_RELATIVE * gross
        if margin.guarded.any():
            guarded = np.bincount(
                bucket,
                weights=margin.guarded.take(self.row_asset[:n]) & (self.qty[:n] != 0),
                minlength=nb,
            )
            below &= guarded == 0
        return ScanResult(np.flatnonzero(below), equity, maintenance)

    # -- caches -----------------------------------------------------------------------------
    def _exposure_for(self, margin: MarginArrays) -> _Exposure:
        """The exposure matrix for ``margin``'s ramp classes, rebuilt only when they change."""
        exposure = self._exposure
        if exposure is None or not np.array_equal(exposure.class_since, margin.class_since):
            exposure = _Exposure.build(self, margin)
            self._exposure = exposure
        return exposure

    def _buffers(self, n: int) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
        if self._work is None or len(self._work[0]) != n:
            self._work = (np.empty(n), np.empty(n))
        return self._work

    def _row_rates(self, margin: MarginArrays) -> _RowRates:
        """Per-row maintenance rates, cached on (book version, margin parameters)."""
        key = (self._version, margin.parameter_key())
        if self._rates is not None and self._rates[0] == key:
            return self._rates[1]
        asset = self.row_asset[: self.n_rows]
        klass = margin.classes_of(asset, self.risk_since[: self.n_rows])
        rate = _class_rates(margin)[asset, klass]
        coef = _size_coefficients(margin)
        size_coef = coef.take(asset)
        with np.errstate(divide="ignore"):
            # Size scaling binds where coef * sqrt(N) > rate, i.e. N > (rate / coef)^2.
            threshold = np.where(
                size_coef > 0, (rate / np.where(size_coef > 0, size_coef, 1.0)) ** 2, np.inf
            )
        ratio = margin.class_mult[asset, klass] / margin.mult_target.take(asset)
        rates = _RowRates(
            rate=rate,
            ratio=ratio,
            cap=(margin.imf_cap * margin.maintenance_fraction).take(asset),
            size_coef=size_coef,
            any_size=bool((coef > 0).any()),
            threshold=threshold,
        )
        self._rates = (key, rates)
        return rates


def scan(book: PositionBook, prices: NDArray[np.float64], margin: MarginArrays) -> ScanResult:
    """Liquidatable buckets of ``book`` at ``prices`` (USD per unit, engine asset order).

    Shorthand for ``book.scan(margin.with_prices(prices))``; ``margin`` carries the multipliers,
    ramp classes, guard flags and portfolio grid (see :meth:`Engine.margin_arrays`).
    """
    return book.scan(margin.with_prices(prices))


class _Exposure:
    """Bucket x asset quantities per ramp class ``[Q_0 .. Q_K-1 | |Q_0| .. |Q_K-1|]``.

    ``Q_k`` holds positions of ramp class ``k`` (see :class:`MarginArrays`). One position per
    (bucket, asset), so each position fills one cell of one class block.
    """

    def __init__(self, n_assets: int, capacity: int, class_since: NDArray[np.int64]) -> None:
        self.n_assets = n_assets
        self.n_classes = class_since.shape[1]
        self.class_since = class_since.copy()
        self.matrix = np.zeros((capacity, 2 * self.n_classes * n_assets))
        self.cost = np.zeros(capacity)
        # Upper bound of |Q| per (class, asset) column, to skip the size fix-up cheaply.
        self.col_max = np.zeros(self.n_classes * n_assets)

    @classmethod
    def build(cls, book: PositionBook, margin: MarginArrays) -> _Exposure:
        na, n = book.n_assets, book.n_rows
        exposure = cls(na, len(book.balance), margin.class_since)
        active = np.flatnonzero(book.qty[:n] != 0)
        bucket, asset = book.row_bucket[active], book.row_asset[active]
        qty = book.qty[active]
        column = asset + na * margin.classes_of(asset, book.risk_since[active])
        exposure.matrix[bucket, column] = qty
        exposure.matrix[bucket, column + exposure.n_classes * na] = np.abs(qty)
        exposure.cost[: len(book.balance)] = np.bincount(
            bucket, weights=book.cost[active], minlength=len(book.balance)
        )
        np.maximum.at(exposure.col_max, column, np.abs(qty))
        return exposure

    def update(self, bucket: int, asset: int, qty: float, bucket_cost: float, since: int) -> None:
        """Set the cell of (bucket, asset) to ``qty`` (0 closes it) and the bucket's cost."""
        na, k = self.n_assets, self.n_classes
        row = self.matrix[bucket]
        row[asset : 2 * k * na : na] = 0.0
        klass = int(np.searchsorted(self.class_since[asset], since, side="right")) - 1
        column = asset + na * klass
        row[column] = qty
        row[column + k * na] = abs(qty)
        self.cost[bucket] = bucket_cost
        self.col_max[column] = max(self.col_max[column], abs(qty))

    def size_excess(
        self, margin: MarginArrays, rates: NDArray[np.float64], nb: int
    ) -> NDArray[np.float64] | None:
        """Extra maintenance of positions whose size scaling binds (None if there are none)."""
        coef = _size_coefficients(margin)
        if not (coef > 0).any():
            return None
        na, k = self.n_assets, self.n_classes
        extra: NDArray[np.float64] | None = None
        cap = margin.imf_cap * margin.maintenance_fraction
        for klass in range(k):
            class_rates = rates[:, klass]
            with np.errstate(divide="ignore"):
                threshold = np.where(
                    coef > 0, (class_rates / np.where(coef > 0, coef, 1.0)) ** 2, np.inf
                )
            hot = self.col_max[klass * na : (klass + 1) * na] * margin.price > threshold
            for asset in np.flatnonzero(hot):
                notional = self.matrix[:nb, k * na + klass * na + asset] * margin.price[asset]
                rows = np.flatnonzero(notional > threshold[asset])
                if not rows.size:
                    continue
                big = notional[rows]
                fraction = np.minimum(
                    np.maximum(class_rates[asset], coef[asset] * np.sqrt(big)), cap[asset]
                )
                if extra is None:
                    extra = np.zeros(nb)
                extra[rows] += big * (fraction - class_rates[asset])
        return extra


@dataclass(frozen=True)
class _RowRates:
    """Price-independent per-row maintenance inputs (see :meth:`PositionBook._row_rates`)."""

    rate: NDArray[np.float64]
    ratio: NDArray[np.float64]
    cap: NDArray[np.float64]
    size_coef: NDArray[np.float64]
    any_size: bool
    threshold: NDArray[np.float64]


def _class_rates(margin: MarginArrays) -> NDArray[np.float64]:
    """Maintenance rate (fraction of notional) of each asset's ramp classes, ``(na, K)``."""
    base = np.minimum(margin.base_imf[:, None] * margin.class_mult, margin.imf_cap[:, None])
    return base * margin.maintenance_fraction[:, None]


def _tolerance(
    count: NDArray[np.int64], balance: NDArray[np.float64], cost: NDArray[np.float64]
) -> NDArray[np.float64]:
    """Per-bucket margin of the float filter over the exact check (USD), before the part
    proportional to the gross notional, which the callers add."""
    return TOLERANCE_PER_POSITION_USD * (count + 1) + TOLERANCE_RELATIVE * (
        np.abs(balance) + np.abs(cost)
    )


def _size_coefficients(margin: MarginArrays) -> NDArray[np.float64]:
    """``coef`` with size-scaled maintenance rate ``coef * sqrt(notional)`` per asset."""
    return margin.size_imf_factor * margin.maintenance_fraction / np.sqrt(margin.size_reference_usd)


def _grid_maintenance(
    margin: MarginArrays,
    scaled: NDArray[np.float64],
    signed: NDArray[np.float64],
    gross: NDArray[np.float64],
    standard_mm: NDArray[np.float64],
    pm_buckets: NDArray[np.int64],
) -> NDArray[np.float64]:
    """``max(worst scenario loss * book MMF, floor * standard MM)`` for portfolio books.

    ``margin.returns`` is built at the target multipliers; a position on the ramp scales its
    moves by ``m_existing / m_target`` (returns are linear in sigma), applied in ``scaled``;
    ``signed`` are the unscaled signed USD notionals (books x assets), ``gross`` their
    absolute values. Scaling one leg of a hedge can *raise* the worst loss, so the ramped
    loss is capped by the loss at target: the ramp never lifts MM above its target.
    """
    liquidity = np.outer(_matvec(gross, margin.liquidity_cost), margin.vol_level)
    ramped = (liquidity - np.einsum("ba,as->bs", scaled, margin.returns)).max(axis=1)
    target = (liquidity - np.einsum("ba,as->bs", signed, margin.returns)).max(axis=1)
    worst = np.maximum(np.minimum(ramped, target), 0.0)
    # Maintenance fraction of a book: notional-weighted over its assets.
    total = gross.sum(axis=1)
    mean_mf = _matvec(gross, margin.maintenance_fraction) / np.where(total > 0, total, 1.0)
    result = standard_mm.copy()
    floor = margin.floor_fraction * standard_mm[pm_buckets]
    result[pm_buckets] = np.maximum(worst * mean_mf, floor)
    return result


def _matvec(matrix: NDArray[np.float64], vector: NDArray[np.float64]) -> NDArray[np.float64]:
    """``matrix @ vector`` without BLAS threads.

    A multi-threaded BLAS on a loaded 2-core machine turned a 0.2 ms product into 25 ms in our
    measurements; einsum's own loop is steady and fast enough for tall, narrow matrices.
    """
    return np.einsum("ij,j->i", matrix, vector)


def _grow(array: NDArray) -> NDArray:
    grown = np.zeros(max(2 * len(array), 16), dtype=array.dtype)
    grown[: len(array)] = array
    return grown
