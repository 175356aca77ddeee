"""Historical replay: a synthetic trader book through the liquidation rules, bar by bar.

The simulator takes plain data only (this package imports nothing ML): per-asset OHLC,
quote-volume and funding arrays, and per margin policy a per-asset, per-bar multiplier path.
Several *scenarios* (policy x seed) run in one pass over the bars: positions of every scenario
live in one structure-of-arrays book (one slot per open position, the layout of the engine's
:class:`liquidation.scan.PositionBook`), keyed by a *lane* = (scenario, asset, side), so the
per-bar Python overhead is paid once for all of them while each scenario keeps its own
insurance fund and accounting. The engine's per-event API (integer money, one Python call per
fill) would take hours for 100 000 traders x 5 seeds x 4 policies; the rules are the engine's
and the tests check them against it (see ``tests/replay``).

One bar ``t`` (open time ``ts``, evaluation time ``ts + interval``) does, in order:

1. **funding** at the bar open (longs pay ``rate * qty * open``, shorts receive it);
2. **opens** of the traders arriving at ``t`` at the open price; the notional is capped so that
   equity after the taker fee covers the initial margin at the multiplier in force
   (``notional <= collateral / (base_imf * m + fee)``, the engine's IM check);
3. **liquidation scan at the wick**: longs are valued at the bar's low and shorts at its high
   (a vectorised health scan with the engine's size-scaled fractions and the multiplier
   ramp: positions older than the last tightening pay the ramped multiplier), then the
   waterfall of :mod:`liquidation.waterfall` on each flagged position: a partial step sized as
   in the engine (restore ``(1 + buffer) * MM`` after costs, at most ``max_step_fraction``),
   or a full close-out for small, deep (``equity < emergency_health * MM``) or hopeless ones;
   close-out at the wick price moved by :func:`liquidation.rules.margin.slippage_rate` with the
   standard size set to ``participation`` of the bar's quote volume; the penalty is paid from
   remaining equity and split with the insurance fund; bad debt is paid by the fund (capped per
   event), then by auto-deleveraging of profitable opposite positions ranked with
   :func:`liquidation.rules.adl.rank_candidates`, then socialized;
4. **top-ups** at the close by the defending traders whose health fell below their trigger;
5. **planned closes** at the close price (taker fee).

A scenario may split its multiplier (:attr:`Scenario.maintenance`): the initial margin of new
risk then pays ``multiplier`` at once and maintenance pays the separate path (ramped for
existing positions as above); :func:`maintenance_multipliers` builds the documented rules.

Simplifications (each documented where it happens): one waterfall step per position per bar
(the engine's cooldown is shorter than a bar, so a bar replay cannot resolve several); the
close-out executes at the wick extreme, i.e. a liquidation triggered inside the bar is filled
as badly as the bar allows (conservative for bad debt); open-interest scaling of the initial
fraction is off by default because the synthetic book's open interest is not the venue's.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from typing import Any

import numpy as np
from numpy.typing import NDArray

from liquidation.config import (
    AssetConfig,
    EngineConfig,
    FeeConfig,
    InsuranceConfig,
    LiquidationConfig,
)
from liquidation.errors import LiquidationCoreError
from liquidation.rules.adl import AdlCandidate, rank_candidates
from liquidation.rules.closeout import slippage_rate
from liquidation.rules.ramp import ramped_multiplier
from liquidation.trader_book import BookConfig, TraderBook, draw_book

Progress = Callable[[int, int], None]
MAINTENANCE_RULES: tuple[str, ...] = ("follow", "stress", "initial-only")
"""How a dynamic policy's multiplier reaches maintenance (see :func:`maintenance_multipliers`)."""


class ReplayInputError(LiquidationCoreError, ValueError):
    """Market paths or multiplier paths handed to the replay are malformed."""


def _default_asset() -> AssetConfig:
    # OI scaling would price the synthetic book's open interest as if it were the venue's;
    # the caps sit far above any book the simulator draws, which switches it off.
    return AssetConfig("REPLAY", oi_lower_usd=1e15, oi_upper_usd=1e16)


@dataclass(frozen=True)
class ReplayConfig:
    """Everything that parameterises a replay besides the market and the policies.

    Parameters
    ----------
    asset : AssetConfig
        Margin template applied to every asset (``base_imf`` 5%, maintenance 60% of IM, size
        scaling, slippage cap); the symbol is replaced by each asset's.
    liquidation, fees, insurance : engine configs
        The waterfall, taker fee and penalty split of the engine (defaults of the engine).
    ramp_ms : int
        Multiplier ramp of existing positions' maintenance (engine default 8 h).
    book : BookConfig
        The synthetic trader book.
    spread_bps : float
        Quoted spread of a close-out (half of it is paid), 2 bps.
    impact_bps : float
        Square-root impact of closing the standard size, 10 bps.
    participation : float
        Standard size as a fraction of the bar's quote volume (1%): closing 1% of an hour's
        volume costs ``spread / 2 + impact``, four times that size twice the impact.
    fund_seed_usd : float
        Initial insurance fund per scenario (50 000 USD).
    maintenance_rule : str
        How a *dynamic* policy's multiplier reaches maintenance, applied by the backtest
        through :func:`maintenance_multipliers`: ``follow`` (default, the engine's rule),
        ``stress`` or ``initial-only``. :func:`simulate` itself only sees the resulting
        :attr:`Scenario.maintenance` paths.
    stress_threshold : float
        Multiplier from which the ``stress`` rule passes a tightening to maintenance (2.0).
    """

    asset: AssetConfig = field(default_factory=_default_asset)
    liquidation: LiquidationConfig = field(default_factory=LiquidationConfig)
    fees: FeeConfig = field(default_factory=FeeConfig)
    insurance: InsuranceConfig = field(default_factory=InsuranceConfig)
    ramp_ms: int = 8 * 3_600_000
    book: BookConfig = field(default_factory=BookConfig)
    spread_bps: float = 2.0
    impact_bps: float = 10.0
    participation: float = 0.01
    fund_seed_usd: float = 50_000.0
    maintenance_rule: str = "follow"
    stress_threshold: float = 2.0

    def __post_init__(self) -> None:
        if self.maintenance_rule not in MAINTENANCE_RULES:
            raise ReplayInputError(
                f"ReplayConfig.maintenance_rule {self.maintenance_rule!r} is unknown; choose "
                f"from {list(MAINTENANCE_RULES)}"
            )
        if not self.stress_threshold >= 1.0:
            raise ReplayInputError("ReplayConfig.stress_threshold must be >= 1")
        if self.ramp_ms < 0:
            raise ReplayInputError("ReplayConfig.ramp_ms must be >= 0")
        if self.spread_bps < 0 or self.impact_bps < 0:
            raise ReplayInputError("ReplayConfig.spread_bps and impact_bps must be >= 0")
        if not 0 < self.participation <= 1:
            raise ReplayInputError("ReplayConfig.participation must be in (0, 1]")
        if self.fund_seed_usd < 0:
            raise ReplayInputError("ReplayConfig.fund_seed_usd must be >= 0")

    def engine_config(self, assets: Sequence[str]) -> EngineConfig:
        """The :class:`EngineConfig` with the same rules (for cross-checks with the engine)."""
        return EngineConfig(
            assets=tuple(replace(self.asset, symbol=s) for s in assets),
            liquidation=self.liquidation,
            fees=self.fees,
            insurance=self.insurance,
            ramp_ms=self.ramp_ms,
        )

    def describe(self) -> dict[str, Any]:
        """JSON-able form (for reports and run tracking)."""
        return asdict(self)


@dataclass(frozen=True)
class MarketPaths:
    """Per-asset bar arrays on one common time grid (shape ``(n_assets, n_bars)``).

    Attributes
    ----------
    assets : tuple of str
        Asset names, the row order of every array.
    ts_ms : int64 array, shape (n_bars,)
        Bar open times, epoch ms, strictly increasing.
    interval_ms : int
        Bar length.
    open, high, low, close : float arrays
        Prices; ``low <= min(open, close)`` and ``high >= max(open, close)``.
    quote_volume : float array
        Quote volume of the bar (drives close-out slippage); zero is allowed (max slippage).
    funding_rate : float array
        Funding rate settled at the bar's open, 0 where none.
    """

    assets: tuple[str, ...]
    ts_ms: NDArray[np.int64]
    interval_ms: int
    open: NDArray[np.float64]
    high: NDArray[np.float64]
    low: NDArray[np.float64]
    close: NDArray[np.float64]
    quote_volume: NDArray[np.float64]
    funding_rate: NDArray[np.float64]

    def __post_init__(self) -> None:
        n_assets, n_bars = len(self.assets), len(self.ts_ms)
        if n_assets == 0 or n_bars == 0:
            raise ReplayInputError("MarketPaths needs at least one asset and one bar")
        if self.interval_ms <= 0:
            raise ReplayInputError(f"MarketPaths.interval_ms must be > 0, got {self.interval_ms}")
        if n_bars > 1 and np.any(np.diff(self.ts_ms) <= 0):
            raise ReplayInputError("MarketPaths.ts_ms must be strictly increasing")
        names = ("open", "high", "low", "close", "quote_volume", "funding_rate")
        for name in names:
            array = getattr(self, name)
            if array.shape != (n_assets, n_bars):
                raise ReplayInputError(
                    f"MarketPaths.{name} has shape {array.shape}, expected {(n_assets, n_bars)}"
                )
            bad = ~np.isfinite(array)
            if bad.any():
                self._fail(name, "is not finite (fill or drop the bar before the replay)", bad)
        self._require(self.low > 0, "low", "must be > 0")
        tol = 1e-9
        self._require(
            self.low <= np.minimum(self.open, self.close) * (1 + tol), "low", "exceeds open/close"
        )
        self._require(
            self.high >= np.maximum(self.open, self.close) * (1 - tol), "high", "below open/close"
        )
        self._require(self.quote_volume >= 0, "quote_volume", "must be >= 0")

    @property
    def n_bars(self) -> int:
        """Number of bars."""
        return len(self.ts_ms)

    def _require(self, ok: NDArray[np.bool_], name: str, what: str) -> None:
        if not ok.all():
            self._fail(name, what, ~ok)

    def _fail(self, name: str, what: str, bad: NDArray[np.bool_]) -> None:
        a, t = np.argwhere(bad)[0]
        when = np.datetime64(int(self.ts_ms[t]), "ms")
        raise ReplayInputError(
            f"MarketPaths.{name} of {self.assets[a]} at {when}Z {what} "
            f"({int(bad.sum())} bad values); check the bars of that asset"
        )


@dataclass(frozen=True)
class Scenario:
    """One policy run: a target multiplier per asset and bar, and the book's seed.

    ``multiplier[a, t]`` is the multiplier in force during bar ``t`` (the caller lags the
    forecast so that it is known at the bar's open). A static IMF level ``k * base_imf`` is
    the constant path ``k``.

    By default the same path drives the initial margin of new risk and the maintenance of
    every position (existing positions follow a tightening over the ramp). A policy may split
    the two: ``maintenance`` is then the multiplier of the maintenance fraction, ramped for
    positions older than its last increase exactly like the default, while ``multiplier``
    still caps the leverage at open and prices the posted initial margin. ``ramp_ms``
    overrides :attr:`ReplayConfig.ramp_ms` for this scenario (a constant path never ramps,
    so a static level is unaffected by it).
    """

    label: str
    seed: int
    multiplier: NDArray[np.float64]
    maintenance: NDArray[np.float64] | None = None
    ramp_ms: int | None = None

    @property
    def maintenance_path(self) -> NDArray[np.float64]:
        """The multiplier of the maintenance fraction (``multiplier`` unless split)."""
        return self.multiplier if self.maintenance is None else self.maintenance


@dataclass(frozen=True)
class ReplaySeries:
    """Per-bar outcome of one scenario (arrays of shape ``(n_bars,)``, USD where money).

    ``liquidations`` counts waterfall steps (partial or full), ``positions_liquidated`` the
    positions hit for the first time; ``bad_debt`` is the shortfall of full close-outs before
    anyone covers it; ``fund`` is the insurance fund at the bar's end; ``initial_margin`` and
    ``open_notional`` are measured at the close over open positions, at the target multiplier.
    """

    label: str
    seed: int
    ts_ms: NDArray[np.int64]
    multiplier: NDArray[np.float64]
    liquidations: NDArray[np.int64]
    positions_liquidated: NDArray[np.int64]
    full_closeouts: NDArray[np.int64]
    liquidated_notional: NDArray[np.float64]
    bad_debt: NDArray[np.float64]
    fund: NDArray[np.float64]
    adl_events: NDArray[np.int64]
    adl_absorbed: NDArray[np.float64]
    socialized: NDArray[np.float64]
    initial_margin: NDArray[np.float64]
    open_notional: NDArray[np.float64]
    opened: NDArray[np.int64]
    topups: NDArray[np.int64]
    fund_seed: float


def market_ramp(
    target: NDArray[np.float64], ts_ms: NDArray[np.int64], eval_ms: NDArray[np.int64], ramp_ms: int
) -> tuple[NDArray[np.float64], NDArray[np.int64]]:
    """Ramped multiplier of existing positions and the ramp start, per bar, as the engine does.

    A new target published at ``ts_ms[t]`` starts a ramp from the value then in force
    (:func:`liquidation.rules.ramp.ramped_multiplier` gives it); ``existing[t]`` is the ramped value
    at ``eval_ms[t]``. The first bar counts as a publication with no ramp.

    Parameters
    ----------
    target : array, shape (n_bars,)
        Multiplier paid by new risk during each bar.
    ts_ms, eval_ms : int64 arrays
        Publication (bar open) and evaluation (bar close) times.
    ramp_ms : int
        Ramp length.

    Returns
    -------
    existing, change_start : arrays of shape (n_bars,)
    """
    n = len(target)
    existing = np.empty(n)
    change_start = np.empty(n, dtype=np.int64)
    changes = np.concatenate([[0], np.flatnonzero(np.diff(target) != 0) + 1, [n]])
    ramp_from, start, current = float(target[0]), int(ts_ms[0]), float(target[0])
    for begin, end in itertools.pairwise(changes):
        if begin > 0:
            # The value in force at the instant the new target lands is where the ramp starts.
            ramp_from = ramped_multiplier(ramp_from, current, start, ramp_ms, int(ts_ms[begin]))
            start, current = int(ts_ms[begin]), float(target[begin])
        segment = slice(begin, end)
        change_start[segment] = start
        if current <= ramp_from or ramp_ms == 0:
            existing[segment] = current
        else:
            progress = np.clip((eval_ms[segment] - start) / ramp_ms, 0.0, 1.0)
            existing[segment] = np.minimum(current, ramp_from + (current - ramp_from) * progress)
    return existing, change_start


def simulate(
    market: MarketPaths,
    scenarios: Sequence[Scenario],
    config: ReplayConfig | None = None,
    progress: Progress | None = None,
    books: Mapping[int, TraderBook] | None = None,
) -> list[ReplaySeries]:
    """Replay every scenario over the market in one pass (see the module docstring).

    Parameters
    ----------
    market : MarketPaths
        The bars.
    scenarios : sequence of Scenario
        Policies and seeds; every scenario with the same seed faces the same trader book.
    config : ReplayConfig, optional
        Rules, book and liquidity parameters (defaults documented there).
    progress : callable, optional
        ``progress(bars_done, n_bars)`` every 1 000 bars.
    books : mapping of seed to TraderBook, optional
        Hand-made books (scenario tests); seeds not in it are drawn from ``config.book``.

    Returns
    -------
    list of ReplaySeries
        One per scenario, in order.

    Raises
    ------
    ReplayInputError
        If a multiplier path has the wrong shape, is not finite or not positive.
    """
    cfg = config or ReplayConfig()
    if not scenarios:
        raise ReplayInputError("simulate needs at least one scenario")
    for sc in scenarios:
        for name, path in (("multiplier", sc.multiplier), ("maintenance", sc.maintenance_path)):
            if path.shape != market.open.shape:
                raise ReplayInputError(
                    f"scenario {sc.label!r}: {name} shape {path.shape} != market "
                    f"{market.open.shape} (one row per asset in {market.assets}, one column "
                    "per bar)"
                )
            if not np.all(np.isfinite(path) & (path > 0)):
                raise ReplayInputError(f"scenario {sc.label!r}: {name} must be finite and > 0")
        if sc.ramp_ms is not None and sc.ramp_ms < 0:
            raise ReplayInputError(f"scenario {sc.label!r}: ramp_ms must be >= 0")
    return _Replay(market, list(scenarios), cfg, dict(books or {})).run(progress)


# -- the engine of the replay ------------------------------------------------------------------
class _Replay:
    """Mutable state of one pass; kept private so the public surface is :func:`simulate`."""

    def __init__(
        self,
        market: MarketPaths,
        scenarios: list[Scenario],
        cfg: ReplayConfig,
        books: dict[int, TraderBook],
    ) -> None:
        self.m, self.sc, self.cfg = market, scenarios, cfg
        n_s, n_a, n_t = len(scenarios), len(market.assets), market.n_bars
        self.n_s, self.n_a, self.n_t = n_s, n_a, n_t
        self.eval_ms = market.ts_ms + market.interval_ms
        # Lanes: (scenario, asset); scan keys: (lane, side) with side 0 long, 1 short.
        self.target = np.stack([sc.multiplier for sc in scenarios]).reshape(n_s * n_a, n_t)
        # Maintenance target per lane, and each lane's ramp (the scenario's, else the config's).
        self.mm_target = np.stack([sc.maintenance_path for sc in scenarios]).reshape(n_s * n_a, n_t)
        lane_ramp = [cfg.ramp_ms if sc.ramp_ms is None else sc.ramp_ms for sc in scenarios]
        ramps = [
            market_ramp(row, market.ts_ms, self.eval_ms, lane_ramp[lane // n_a])
            for lane, row in enumerate(self.mm_target)
        ]
        self.existing = np.stack([r[0] for r in ramps])
        self.change_start = np.stack([r[1] for r in ramps])
        self.key_lane = np.repeat(np.arange(n_s * n_a), 2)
        self.key_short = np.tile([False, True], n_s * n_a)
        self.key_asset = self.key_lane % n_a
        self.key_scen = self.key_lane // n_a
        a = cfg.asset
        self.stream = self._merge_books(books)
        self._allocate(self._initial_capacity())
        self.fund = np.full(n_s, cfg.fund_seed_usd)
        self.out = {
            name: np.zeros((n_s, n_t), dtype=dtype)
            for name, dtype in (
                ("liquidations", np.int64),
                ("positions_liquidated", np.int64),
                ("full_closeouts", np.int64),
                ("liquidated_notional", np.float64),
                ("bad_debt", np.float64),
                ("fund", np.float64),
                ("adl_events", np.int64),
                ("adl_absorbed", np.float64),
                ("socialized", np.float64),
                ("initial_margin", np.float64),
                ("open_notional", np.float64),
                ("opened", np.int64),
                ("topups", np.int64),
            )
        }
        self._slip = np.vectorize(
            lambda n, std: slippage_rate(
                n, cfg.spread_bps, cfg.impact_bps, std, a.max_slippage_bps
            ),
            otypes=[np.float64],
        )

    # -- setup ---------------------------------------------------------------------------------
    def _merge_books(self, books: dict[int, TraderBook]) -> dict[str, NDArray[Any]]:
        weights = self.m.quote_volume.mean(axis=1)
        bar_hours = self.m.interval_ms / 3_600_000
        parts = []
        for s, sc in enumerate(self.sc):
            if sc.seed not in books:
                books[sc.seed] = draw_book(
                    self.cfg.book, self.n_t, self.n_a, sc.seed, bar_hours, weights
                )
            book = books[sc.seed]
            parts.append((s, book))
        cat = {
            "scen": np.concatenate([np.full(len(b), s, dtype=np.int64) for s, b in parts]),
            **{
                name: np.concatenate([getattr(b, name) for _, b in parts])
                for name in (
                    "arrival",
                    "asset",
                    "side",
                    "collateral",
                    "leverage",
                    "hold_bars",
                    "topup",
                )
            },
        }
        order = np.argsort(cat["arrival"], kind="stable")
        merged = {k: v[order] for k, v in cat.items()}
        merged["bounds"] = np.searchsorted(merged["arrival"], np.arange(self.n_t + 1))
        return merged

    def _initial_capacity(self) -> int:
        held = float(np.minimum(self.stream["hold_bars"], self.n_t).sum())
        return max(64, int(2 * held / self.n_t) + 64)

    def _allocate(self, capacity: int) -> None:
        old = getattr(self, "cap", 0)
        self.cap = capacity
        fields = {
            "active": bool,
            "scen": np.int64,
            "asset": np.int64,
            "key": np.int64,
            "close_bar": np.int64,
            "topups_left": np.int64,
            "first_deposit": np.float64,
            "hit": bool,
            "qty": np.float64,
            "cost": np.float64,
            "balance": np.float64,
            "risk_since": np.int64,
        }
        for name, dtype in fields.items():
            grown = np.zeros(capacity, dtype=dtype)
            if old:
                grown[:old] = getattr(self, f"s_{name}")
            setattr(self, f"s_{name}", grown)
        self.free = list(range(capacity - 1, old - 1, -1)) + (self.free if old else [])

    # -- the loop ------------------------------------------------------------------------------
    def run(self, progress: Progress | None) -> list[ReplaySeries]:
        for t in range(self.n_t):
            self._funding(t)
            self._open(t)
            self._liquidate(t)
            self._close_of_bar(t)
            if progress is not None and (t + 1) % 1000 == 0:
                progress(t + 1, self.n_t)
        if progress is not None:
            progress(self.n_t, self.n_t)
        return [self._series(s) for s in range(self.n_s)]

    def _health(
        self, t: int, price: NDArray[np.float64]
    ) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
        """Equity and maintenance of every slot with ``price`` per scan key (free slots: 0, 0).

        The maintenance rule is the engine's: positions whose risk predates the last
        multiplier change pay the ramped multiplier, newer ones the target; the fraction is
        :func:`position_fractions` times the maintenance fraction.
        """
        key = self.s_key
        px = price[key]
        signed = self.s_qty * px
        notional = np.abs(signed)
        lane = key // 2
        is_new = self.s_risk_since >= self.change_start[lane, t]
        mult = np.where(is_new, self.mm_target[lane, t], self.existing[lane, t])
        fraction = position_fractions(notional, mult, self.cfg.asset)
        maintenance = notional * fraction * self.cfg.asset.maintenance_fraction
        return self.s_balance + signed - self.s_cost, maintenance

    def _funding(self, t: int) -> None:
        rates = self.m.funding_rate[:, t]
        if not rates.any():
            return
        act = np.flatnonzero(self.s_active)
        asset = self.s_asset[act]
        self.s_balance[act] -= self.s_qty[act] * self.m.open[asset, t] * rates[asset]

    def _open(self, t: int) -> None:
        lo, hi = self.stream["bounds"][t], self.stream["bounds"][t + 1]
        if lo == hi:
            return
        if len(self.free) < hi - lo:
            self._allocate(max(2 * self.cap, self.cap + (hi - lo) + 64))
        st = {k: v[lo:hi] for k, v in self.stream.items() if k != "bounds"}
        slots = np.array([self.free.pop() for _ in range(hi - lo)], dtype=np.int64)
        lane = st["scen"] * self.n_a + st["asset"]
        price = self.m.open[st["asset"], t]
        fee = self.cfg.fees.taker_fee_rate
        imf = np.minimum(self.cfg.asset.base_imf * self.target[lane, t], self.cfg.asset.imf_cap)
        # The engine's IM check after the fee: collateral - fee * N >= imf * N.
        notional = st["collateral"] * np.minimum(st["leverage"], 1.0 / (imf + fee))
        qty = st["side"] * notional / price
        self.s_active[slots] = True
        self.s_hit[slots] = False
        self.s_scen[slots] = st["scen"]
        self.s_asset[slots] = st["asset"]
        self.s_key[slots] = 2 * lane + (st["side"] < 0)
        self.s_close_bar[slots] = np.minimum(t + st["hold_bars"] - 1, self.n_t - 1)
        self.s_topups_left[slots] = np.where(st["topup"], self.cfg.book.topup_max_count, 0)
        self.s_first_deposit[slots] = st["collateral"]
        self.s_qty[slots] = qty
        self.s_cost[slots] = qty * price
        self.s_balance[slots] = st["collateral"] - fee * notional
        self.s_risk_since[slots] = self.m.ts_ms[t]
        np.add.at(self.out["opened"][:, t], st["scen"], 1)

    def _liquidate(self, t: int) -> None:
        key_asset = self.key_asset
        wick = np.where(self.key_short, self.m.high[key_asset, t], self.m.low[key_asset, t])
        equity, maintenance = self._health(t, wick)
        rows = np.flatnonzero(self.s_active & (equity < maintenance))
        if len(rows) == 0:
            return
        lc, cfg = self.cfg.liquidation, self.cfg
        share = cfg.insurance.initial_fund_share
        q, cost = self.s_qty[rows], self.s_cost[rows]
        px = wick[self.s_key[rows]]
        asset, scen = self.s_asset[rows], self.s_scen[rows]
        side = np.sign(q)
        gross = np.abs(q) * px
        eq, mm = equity[rows], maintenance[rows]
        std = np.maximum(cfg.participation * self.m.quote_volume[asset, t], 1.0)
        slip_full = self._slip(gross, std)
        # -- plan a partial step exactly as the engine's _plan_partial does.
        emergency = (
            (eq < lc.emergency_health * mm)
            | (eq - gross * slip_full <= 0)
            | (gross < lc.min_partial_notional_usd)
        )
        target = (1.0 + lc.health_buffer) * mm
        denominator = target - gross * (slip_full + lc.penalty_rate)
        with np.errstate(divide="ignore", invalid="ignore"):
            needed = np.where(denominator > 0, (target - eq) / denominator, np.inf)
        fraction = np.ceil(np.minimum(needed, lc.max_step_fraction) * 1e6) / 1e6
        fraction = np.clip(fraction, 1e-6, 1.0)
        slip_part = self._slip(fraction * gross, std)
        equity_fills = eq - fraction * gross * slip_part
        penalty_part = np.minimum(lc.penalty_rate * fraction * gross, np.maximum(equity_fills, 0))
        improves = (equity_fills - penalty_part) - mm * (1 - fraction) > eq - mm
        partial = ~emergency & (denominator > 0) & (fraction < 1.0) & improves
        first_hit = ~self.s_hit[rows]
        self.s_hit[rows] = True
        n_s = self.n_s
        self.out["liquidations"][:, t] += np.bincount(scen, minlength=n_s)
        self.out["positions_liquidated"][:, t] += np.bincount(scen[first_hit], minlength=n_s)

        # -- partial steps: close `fraction` at the wick with slippage, pay the penalty.
        p = np.flatnonzero(partial)
        if len(p):
            r, f = rows[p], fraction[p]
            exec_price = px[p] * (1 - side[p] * slip_part[p])
            realized = f * (q[p] * exec_price - cost[p])
            self.s_balance[r] += realized - penalty_part[p]
            self.s_qty[r] *= 1 - f
            self.s_cost[r] *= 1 - f
            self.fund += np.bincount(scen[p], weights=share * penalty_part[p], minlength=n_s)
            self.out["liquidated_notional"][:, t] += np.bincount(
                scen[p], weights=f * gross[p], minlength=n_s
            )

        # -- full close-outs: the rest of the flagged positions.
        full = np.flatnonzero(~partial)
        if len(full) == 0:
            return
        r = rows[full]
        exec_price = px[full] * (1 - side[full] * slip_full[full])
        after = self.s_balance[r] + q[full] * exec_price - cost[full]
        penalty = np.minimum(lc.penalty_rate * gross[full], np.maximum(after, 0.0))
        after -= penalty
        bad = np.maximum(-after, 0.0)
        sc_full = scen[full]
        self.fund += np.bincount(sc_full, weights=share * penalty, minlength=n_s)
        self.out["liquidated_notional"][:, t] += np.bincount(
            sc_full, weights=gross[full], minlength=n_s
        )
        self.out["full_closeouts"][:, t] += np.bincount(sc_full, minlength=n_s)
        self.out["bad_debt"][:, t] += np.bincount(sc_full, weights=bad, minlength=n_s)
        self._release(r)
        for i in np.flatnonzero(bad > 0):
            self._cover(
                int(sc_full[i]),
                int(asset[full][i]),
                float(side[full][i]),
                float(bad[i]),
                abs(float(q[full][i])),
                wick,
                t,
            )

    def _cover(
        self, s: int, a: int, side: float, bad: float, qty: float, wick: NDArray[np.float64], t: int
    ) -> None:
        """Fund (capped per event), then ADL of ranked opposite positions, then socialization."""
        cap = self.cfg.liquidation.insurance_cap_per_event_usd
        paid = min(bad, self.fund[s], cap)
        self.fund[s] -= paid
        rest = bad - paid
        if rest <= 0:
            return
        self.out["adl_events"][s, t] += 1
        # Counterparties: open, profitable positions of the other side in the same lane,
        # valued at the price the liquidated position was closed at (their favourable wick).
        lane_key = 2 * (s * self.n_a + a) + (1 if side > 0 else 0)
        cand = np.flatnonzero(self.s_active & (self.s_key == lane_key))
        price = wick[2 * (s * self.n_a + a) + (0 if side > 0 else 1)]
        absorbed = 0.0
        if len(cand):
            upnl = self.s_qty[cand] * price - self.s_cost[cand]
            equity = self.s_balance[cand] + upnl
            ranked = rank_candidates(
                [
                    AdlCandidate(
                        bucket=f"{int(c):012d}",
                        lots=round(self.s_qty[c] * 1e8),
                        cost=round(self.s_cost[c] * 1e6),
                        upnl=int(upnl[i] * 1e6),
                        notional=int(abs(self.s_qty[c] * price) * 1e6),
                        equity=int(equity[i] * 1e6),
                    )
                    for i, c in enumerate(cand)
                ]
            )
            remaining = qty
            for candidate in ranked:
                if remaining <= 0 or rest - absorbed <= 0:
                    break
                c = int(candidate.bucket)
                held = abs(self.s_qty[c])
                take = min(remaining, held)
                profit = (self.s_qty[c] * price - self.s_cost[c]) * take / held
                concession = min((rest - absorbed) * take / qty if qty > 0 else 0.0, profit)
                # The counterparty is closed out of `take` at the bankruptcy price: it realizes
                # its profit on that quantity minus the concession.
                frac = take / held
                self.s_balance[c] += profit - concession
                self.s_qty[c] *= 1 - frac
                self.s_cost[c] *= 1 - frac
                absorbed += concession
                remaining -= take
                if self.s_qty[c] == 0 or frac >= 1.0:
                    self._release(np.array([c]))
        self.out["adl_absorbed"][s, t] += absorbed
        self.out["socialized"][s, t] += rest - absorbed

    def _close_of_bar(self, t: int) -> None:
        close = self.m.close[self.key_asset, t]
        equity, maintenance = self._health(t, close)
        act = np.flatnonzero(self.s_active)
        n_s = self.n_s
        if len(act):
            self._topups(t, act, equity, maintenance, close)
            act = np.flatnonzero(self.s_active)
            ending = act[self.s_close_bar[act] <= t]
            if len(ending):
                # The trader closes at the close and takes the balance home: only the slot
                # matters to the venue's metrics.
                self._release(ending)
            act = np.flatnonzero(self.s_active)
        notional = np.abs(self.s_qty[act]) * close[self.s_key[act]]
        lane = self.s_key[act] // 2
        imf = np.minimum(self.cfg.asset.base_imf * self.target[lane, t], self.cfg.asset.imf_cap)
        scen = self.s_scen[act]
        self.out["initial_margin"][:, t] = np.bincount(scen, weights=notional * imf, minlength=n_s)
        self.out["open_notional"][:, t] = np.bincount(scen, weights=notional, minlength=n_s)
        self.out["fund"][:, t] = self.fund

    def _topups(
        self,
        t: int,
        act: NDArray[np.int64],
        equity: NDArray[np.float64],
        maintenance: NDArray[np.float64],
        close: NDArray[np.float64],
    ) -> None:
        book = self.cfg.book
        eq, mm = equity[act], maintenance[act]
        want = (self.s_topups_left[act] > 0) & (mm > 0) & (eq < book.topup_trigger_health * mm)
        rows = act[want]
        if len(rows) == 0:
            return
        notional = np.abs(self.s_qty[rows]) * close[self.s_key[rows]]
        imf = np.minimum(
            self.cfg.asset.base_imf * self.target[self.s_key[rows] // 2, t], self.cfg.asset.imf_cap
        )
        amount = np.minimum(
            notional * imf - eq[want], book.topup_max_fraction * self.s_first_deposit[rows]
        )
        ok = amount > 0
        self.s_balance[rows[ok]] += amount[ok]
        self.s_topups_left[rows[ok]] -= 1
        np.add.at(self.out["topups"][:, t], self.s_scen[rows[ok]], 1)

    def _release(self, rows: NDArray[np.int64]) -> None:
        self.s_active[rows] = False
        self.s_qty[rows] = 0.0
        self.s_cost[rows] = 0.0
        self.s_balance[rows] = 0.0
        self.free.extend(int(r) for r in rows)

    def _series(self, s: int) -> ReplaySeries:
        sc = self.sc[s]
        return ReplaySeries(
            label=sc.label,
            seed=sc.seed,
            ts_ms=self.m.ts_ms,
            multiplier=sc.multiplier,
            fund_seed=self.cfg.fund_seed_usd,
            **{name: values[s].copy() for name, values in self.out.items()},
        )


def position_fractions(
    notional: NDArray[np.float64], multiplier: NDArray[np.float64], asset: AssetConfig
) -> NDArray[np.float64]:
    """Vectorised :func:`liquidation.rules.margin.position_fraction` (size-scaled, capped).

    ``min(cap, max(base_imf * m, size_imf_factor * sqrt(N / size_reference)))``; a property
    test checks it against the engine's scalar function element by element.
    """
    base = asset.base_imf * multiplier
    size = asset.size_imf_factor * np.sqrt(np.maximum(notional, 0.0) / asset.size_reference_usd)
    return np.minimum(asset.imf_cap, np.maximum(base, size))


def constant_multiplier(market: MarketPaths, level: float) -> NDArray[np.float64]:
    """The multiplier path of a static IMF of ``level * base_imf`` on every asset and bar."""
    if not (math.isfinite(level) and level > 0):
        raise ReplayInputError(f"static level must be finite and > 0, got {level}")
    return np.full(market.open.shape, float(level))


def maintenance_multipliers(
    multiplier: NDArray[np.float64], rule: str, stress_threshold: float = 2.0
) -> NDArray[np.float64] | None:
    """Multiplier of the maintenance fraction under a split IM/MM rule.

    The initial margin of new risk always pays ``multiplier`` at once (it caps the leverage
    a trader can open). What differs is how maintenance, which decides who is liquidated,
    follows it:

    * ``follow`` (the engine's default): maintenance pays the same multiplier, and existing
      positions follow a tightening over the replay's ramp. Returns ``None`` (no split).
    * ``initial-only``: a tightening reaches the initial margin only; maintenance pays
      ``min(m, 1)``, so relaxations below the base pass through and nobody is liquidated
      because the forecast rose.
    * ``stress``: as ``initial-only`` while ``m < stress_threshold``; from the threshold on,
      maintenance pays the full multiplier (ramped for existing positions), i.e. forced
      de-risking is kept for real stress only.

    Every rule keeps ``maintenance <= multiplier``: the maintenance / initial ratio of a
    dynamic policy never exceeds the static policy's (the backtest applies the rule to the
    dynamic policies only; a static level keeps maintenance at 60% of its initial margin), so
    the equal-margin comparison cannot be won by a relatively higher maintenance.

    Raises
    ------
    ReplayInputError
        For an unknown rule or a threshold below 1.
    """
    if rule not in MAINTENANCE_RULES:
        raise ReplayInputError(
            f"unknown maintenance rule {rule!r}; choose from {list(MAINTENANCE_RULES)}"
        )
    if not (np.isfinite(stress_threshold) and stress_threshold >= 1.0):
        raise ReplayInputError(f"stress_threshold must be >= 1, got {stress_threshold}")
    if rule == "follow":
        return None
    capped = np.minimum(multiplier, 1.0)
    if rule == "initial-only":
        return capped
    return np.where(multiplier >= stress_threshold, multiplier, capped)
