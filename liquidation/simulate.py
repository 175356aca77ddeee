"""Historical replay: a synthetic trader book through the liquidation core, bar by bar.

The simulator takes plain data only (this package imports nothing ML): per-asset OHLC,
quote-volume and funding arrays, and per margin policy a per-asset, per-bar multiplier path
(the effective target a RiskSnapshot stream gives, :mod:`liquidation.rules.multiplier`).
Several *scenarios* (policy x seed) run in one pass over the bars, each with its own venue:
insurance fund, fees, keeper rewards and a liquidity vault, the counterparty of every fill.

Everything is the engine's, in the engine's units: quantities in lots, money in micro-USD,
every rule from :mod:`liquidation.rules`, every fill booked by the engine's fill arithmetic
(:mod:`liquidation.fills`). ``tests/liquidation/test_replay_engine_equivalence.py`` proves it
by property: on random books, paths and snapshot streams the replay and a real
:class:`~liquidation.engine.Engine` fed the same ticks end with identical integers.

One bar is the path open -> nearer extreme -> farther extreme -> close (:func:`tick_prices` at
:func:`tick_times`):

1. at the open: the maintenance ramp of each (scenario, asset) retargets to the bar's
   multiplier (:func:`liquidation.rules.ramp.retarget`); funding settles at the open price,
   zero-sum between the holders and the vault (:func:`liquidation.funding.funding_payments`);
   arriving traders deposit and open the largest size within their target leverage that the
   IM check admits (:func:`open_lots`);
2. at each later tick a keeper pass: a float filter valued once per bar at each position's
   worst tick (it never misses: its tolerance covers the exact rounding) selects the
   positions to check exactly; those below maintenance (:mod:`liquidation.rules.margin`, ramp
   classes of :mod:`liquidation.rules.ramp`) get one waterfall step each, lowest health
   first: the emergency test and rate limit, a partial step sized by
   :func:`liquidation.rules.partial.partial_ppm` at the slippage of
   :mod:`liquidation.rules.closeout` (standard size ``participation`` of the bar's quote
   volume), or a full close-out; the penalty split and the fund's cap per event of
   :mod:`liquidation.rules.penalty`; a bankruptcy beyond the fund goes to the backstop vault
   at the mark with a concession (:mod:`liquidation.rules.backstop`);
3. at the close: defending traders top up (:mod:`liquidation.rules.topup`), planned closes
   trade with the vault (taker fee); the initial margin and notional of open positions are
   recorded.

The vault is deep (:attr:`ReplayConfig.vault_usd`): it admits every fill, so ADL and
socialization never trigger. The replay does not implement the engine's ADL, socialization or
a liquidation of the vault itself: after every fill it checks the vault's equity against its
initial margin and raises rather than go on, but that check is not the engine's whole story.
With a shallow vault (a few hundred thousand USD) a property run found cases where the
engine's keeper liquidates the vault bucket itself (an ``adl`` step on ``vault``) while the
replay, which never scans the vault, goes on: keep the vault deep (the default 1e10 USD; the
engine-equivalence property uses 1e9). Per-event steps (a partial step's fills, a
close-out) are scalar calls of the same rules on the few flagged positions; the per-bar scans
are vectorised.

Issue #19's options (:class:`ReplayConfig`; the defaults ``book_model="legacy"``,
``path="wick"``, ``impact="off"`` are the replay described above, bit for bit, as
``tests/liquidation/test_book_reproduction.py`` checks): ``book_model="market"`` draws the
market-aware book of :mod:`liquidation.market_book`; ``path="bridge"`` walks each bar along
the Brownian bridge of :mod:`liquidation.intrabar` (more ticks, same anchors) and marks a
liquidation where the path crosses the position's level; ``impact="on"`` lets each
scenario's liquidations move its own prices (:mod:`liquidation.impact`: square-root law,
cascade rounds within the bar, decay back onto the historical path).

A scenario may split its multiplier (:attr:`Scenario.maintenance`): the initial margin of new
risk then pays ``multiplier`` and maintenance follows the separate path (ramped as above);
:func:`maintenance_multipliers` builds the documented rules. Open-interest scaling of the
initial fraction is off (the synthetic book's open interest is not the venue's): the template
asset's OI band lies above any book the replay can hold.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from typing import Any

import numpy as np
from numpy.typing import NDArray

from liquidation.accounts import Position
from liquidation.config import (
    AssetConfig,
    EngineConfig,
    FeeConfig,
    InsuranceConfig,
    LiquidationConfig,
    OracleGuardConfig,
)
from liquidation.errors import LiquidationCoreError
from liquidation.fills import fill_amounts, segments
from liquidation.funding import funding_payments
from liquidation.impact import IMPACT_MODES, ImpactConfig, bar_sigma, decay, impact, shifted
from liquidation.intrabar import PATHS, BridgeConfig, crossing_price, path_ticks
from liquidation.market_book import BOOKS, MarketBookConfig, draw_market_book
from liquidation.money import MICRO, QTY_SCALE, charge, div_trunc, value
from liquidation.rules.backstop import (
    backstop_share,
    bankruptcy_deficit,
    market_closeout_fits,
    shortfall_beyond_fund,
)
from liquidation.rules.closeout import close_price, slippage_rate
from liquidation.rules.fixed import MAX_NOTIONAL_V, charge_v, check_bounds_v, value_v
from liquidation.rules.governance import historical_stressed_loss, review
from liquidation.rules.margin import (
    health,
    initial_requirement,
    initial_requirement_v,
    liquidatable,
    maintenance_requirement,
    maintenance_requirement_v,
    position_fraction_v,
)
from liquidation.rules.partial import (
    FRACTION_SCALE,
    close_cost,
    closed_lots,
    improves,
    is_emergency,
    partial_allowed,
    partial_ppm,
    rate_limited,
)
from liquidation.rules.penalty import fund_available, fund_cover, penalty_due, split_penalty
from liquidation.rules.ramp import RampState, classes, retarget
from liquidation.rules.ramp import multiplier as ramp_multiplier
from liquidation.rules.topup import topup_amount, topup_amount_v, wants_topup, wants_topup_v
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


#: Open interest no replay book reaches (100 000 positions at the vector bound of 9e9 USD).
OI_FREE_USD = 1e15


def _replay_guard() -> OracleGuardConfig:
    # A bar replay prints four prices per bar: the heartbeat spans a day of bars and the
    # deviation bound is wide, so that no print of a historical path is guarded.
    return OracleGuardConfig(heartbeat_ms=86_400_000, max_deviation=0.9, reanchor_band=0.5)


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
        The synthetic trader book (size, collateral, leverage tail, holding time, top-ups).
    book_model : str
        ``legacy`` (default: today's book, :func:`liquidation.trader_book.draw_book`) or
        ``market`` (:func:`liquidation.market_book.draw_market_book`: entries, sides,
        leverage and exits respond to the market; same ``book`` parameters).
    market_book : MarketBookConfig
        The market book's responses (defaults estimated by ``scripts/estimate_book.py``).
    path : str
        Intra-bar path: ``wick`` (default: open, nearer extreme, farther extreme, close, a
        liquidation filled at the tick) or ``bridge`` (:mod:`liquidation.intrabar`: a seeded
        Brownian bridge through the same four anchors, a liquidation marked where the path
        crosses the position's level, :func:`liquidation.intrabar.crossing_price`).
    bridge : BridgeConfig
        Sub-steps and roughness of the bridge.
    path_seed : int
        Seed of the bridge (one path for every scenario: policies face the same market).
    impact : str
        Liquidation price impact: ``off`` (default, the exogenous replay) or ``on``: each
        scenario's liquidated notional moves its own market by the square-root law of
        :mod:`liquidation.impact` (a cascade re-scans the bar at the moved prices, at most
        ``impact_model.max_rounds`` rounds) and the move decays back onto the historical
        path. With impact on, scenarios face different markets, so each runs its own pass.
    impact_model : ImpactConfig
        Coefficient, decay and cascade cap of the impact.
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
    vault_usd : float
        Collateral of the liquidity vault, the counterparty of every fill and the backstop
        (1e10 USD: deep; the replay raises if it would ever refuse a fill).
    oracle : OracleGuardConfig
        Guard of the engine the replay stands for (:meth:`engine_config`): wide enough that
        no print of a bar path is guarded.
    max_ramp_classes, max_funding_rate
        As in :class:`~liquidation.config.EngineConfig`.
    review_every_bars : int
        Insurance governance: every this many bars (at the open, after funding, before the
        opens) each scenario's venue applies :func:`liquidation.rules.governance.review` to
        its fund, with the stressed loss the ``stress_quantile`` of its own recorded bad-debt
        events (:func:`~liquidation.rules.governance.historical_stressed_loss`), and the new
        fund share of penalties and fee add-on on trades apply from then on, as
        :meth:`liquidation.engine.Engine.review_insurance` with that ``stressed_loss``
        does. The engine's default stressed loss also takes the book under a joint 3-sigma
        move; the replay has no per-asset sigma, so it uses the history only. 0 (default):
        no review, the initial share and no add-on throughout. With reviews the book sizes its
        opening orders for the largest add-on (:func:`opening_terms`).
    """

    asset: AssetConfig = field(default_factory=_default_asset)
    liquidation: LiquidationConfig = field(default_factory=LiquidationConfig)
    fees: FeeConfig = field(default_factory=FeeConfig)
    insurance: InsuranceConfig = field(default_factory=InsuranceConfig)
    ramp_ms: int = 8 * 3_600_000
    book: BookConfig = field(default_factory=BookConfig)
    book_model: str = "legacy"
    market_book: MarketBookConfig = field(default_factory=MarketBookConfig)
    path: str = "wick"
    bridge: BridgeConfig = field(default_factory=BridgeConfig)
    path_seed: int = 0
    impact: str = "off"
    impact_model: ImpactConfig = field(default_factory=ImpactConfig)
    spread_bps: float = 2.0
    impact_bps: float = 10.0
    participation: float = 0.01
    fund_seed_usd: float = 50_000.0
    maintenance_rule: str = "follow"
    stress_threshold: float = 2.0
    vault_usd: float = 1e10
    oracle: OracleGuardConfig = field(default_factory=_replay_guard)
    max_ramp_classes: int = 8
    max_funding_rate: float = 0.04
    review_every_bars: int = 0

    def __post_init__(self) -> None:
        if self.maintenance_rule not in MAINTENANCE_RULES:
            raise ReplayInputError(
                f"ReplayConfig.maintenance_rule {self.maintenance_rule!r} is unknown; choose "
                f"from {list(MAINTENANCE_RULES)}"
            )
        for name, chosen, allowed in (
            ("book_model", self.book_model, BOOKS),
            ("path", self.path, PATHS),
            ("impact", self.impact, IMPACT_MODES),
        ):
            if chosen not in allowed:
                raise ReplayInputError(
                    f"ReplayConfig.{name} {chosen!r} is unknown; choose from {list(allowed)}"
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
        if self.asset.oi_lower_usd < OI_FREE_USD:
            raise ReplayInputError(
                f"ReplayConfig.asset.oi_lower_usd must be >= {OI_FREE_USD:g}: the replay does "
                "not model open-interest scaling (its book's open interest is not the venue's)"
            )
        if self.vault_usd <= 0:
            raise ReplayInputError("ReplayConfig.vault_usd must be > 0")
        if self.review_every_bars < 0:
            raise ReplayInputError("ReplayConfig.review_every_bars must be >= 0 (0: no review)")

    def engine_config(self, assets: Sequence[str]) -> EngineConfig:
        """The :class:`EngineConfig` with the same rules (for cross-checks with the engine)."""
        return EngineConfig(
            assets=tuple(replace(self.asset, symbol=s) for s in assets),
            oracle=self.oracle,
            liquidation=self.liquidation,
            fees=self.fees,
            insurance=self.insurance,
            ramp_ms=self.ramp_ms,
            max_funding_rate=self.max_funding_rate,
            max_ramp_classes=self.max_ramp_classes,
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
    ``topups`` counts top-ups and ``topup_collateral`` is what they deposit (USD);
    ``fee_income`` is the trading fees the venue collects in the bar (USD).
    ``liquidated_long`` is the part of ``liquidated_notional`` that closed long positions
    (the long/short split of issue #19's calibration). ``initial_margin_asset`` splits
    ``initial_margin`` by asset, shape ``(n_assets, n_bars)`` in the market's asset order
    (the per-asset procyclicality figures of issue #20); None in series built by hand.
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
    topup_collateral: NDArray[np.float64] | None = None
    fee_income: NDArray[np.float64] | None = None
    liquidated_long: NDArray[np.float64] | None = None
    initial_margin_asset: NDArray[np.float64] | None = None

    def __post_init__(self) -> None:
        # Series made before these were recorded (hand-built in tests) read as zeros.
        for name in ("topup_collateral", "fee_income", "liquidated_long"):
            if getattr(self, name) is None:
                object.__setattr__(self, name, np.zeros(len(self.ts_ms)))


def simulate(
    market: MarketPaths,
    scenarios: Sequence[Scenario],
    config: ReplayConfig | None = None,
    progress: Progress | None = None,
    books: Mapping[int, TraderBook] | None = None,
    units: Sequence[Sequence[int]] | None = None,
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
    units : sequence of sequences of int, optional
        A partition of the scenarios' indices into independent units (e.g. one per seed,
        :func:`liquidation.runners.replay_units`). Each unit's results are then bit for bit
        those of :func:`simulate` on that unit's scenarios alone, while the pass over the
        bars (whose per-bar cost dominates a small book) is shared. Without it the
        scenarios share one pool of position slots, so the last bits of the float sums
        ``initial_margin``, ``open_notional`` and ``topup_collateral`` (summed in slot
        order) depend on which scenarios ran together.

    Returns
    -------
    list of ReplaySeries
        One per scenario, in order.

    Raises
    ------
    ReplayInputError
        If a multiplier path has the wrong shape, is not finite or not positive, or
        ``units`` is not a partition of the scenarios.
    """
    cfg = config or ReplayConfig()
    if cfg.impact == "on" and len(scenarios) > 1:
        return [r for sc in scenarios for r in simulate(market, [sc], cfg, progress, books)]
    return _checked(market, scenarios, cfg, books, units).run(progress)


def simulate_ledger(
    market: MarketPaths,
    scenarios: Sequence[Scenario],
    config: ReplayConfig | None = None,
    books: Mapping[int, TraderBook] | None = None,
) -> tuple[list[ReplaySeries], list[VenueLedger]]:
    """:func:`simulate`, plus each scenario's integer end state (for checks against the engine)."""
    cfg = config or ReplayConfig()
    if cfg.impact == "on" and len(scenarios) > 1:
        parts = [simulate_ledger(market, [sc], cfg, books) for sc in scenarios]
        return [p[0][0] for p in parts], [p[1][0] for p in parts]
    replay = _checked(market, scenarios, cfg, books)
    series = replay.run(None)
    return series, [replay.ledger(s) for s in range(len(scenarios))]


def _checked(
    market: MarketPaths,
    scenarios: Sequence[Scenario],
    cfg: ReplayConfig,
    books: Mapping[int, TraderBook] | None,
    units: Sequence[Sequence[int]] | None = None,
) -> _Replay:
    if not scenarios:
        raise ReplayInputError("simulate needs at least one scenario")
    if units is not None:
        flat = sorted(i for unit in units for i in unit)
        if flat != list(range(len(scenarios))) or not all(units):
            raise ReplayInputError(
                f"simulate units {[list(u) for u in units]} are not a partition of the "
                f"{len(scenarios)} scenarios' indices into non-empty units"
            )
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
    return _Replay(market, list(scenarios), cfg, dict(books or {}), units)


# -- the venue of the replay -------------------------------------------------------------------
#: The path within a bar: open, first extreme, second extreme, close (see :func:`tick_prices`).
TICKS = 4
#: Ticks at which the keeper scans and liquidates: both extremes and the close.
SCAN_TICKS = (1, 2, 3)
#: Up to this many flagged positions, the scalar rules are cheaper than numpy's call overhead.
SCALAR_ROWS = 32
_NEVER = np.iinfo(np.int64).min
#: Factor on the vault's notional in its admission bound: 2 (no fraction exceeds 1, and
#: equity loses at most the notional) with room for float rounding.
_BOUND = 2.0 * (1 + 1e-6)


def tick_prices(market: MarketPaths) -> NDArray[np.int64]:
    """Integer micro-USD prices of the path within each bar, shape ``(n_assets, n_bars, 4)``.

    Open, then the extreme nearer the open's side first (the low of a rising bar, the high of
    a falling one), then the other extreme, then the close. The engine fed these prices tick
    by tick at :func:`tick_times` sees what the replay sees.
    """
    micro = [np.round(x * MICRO).astype(np.int64) for x in (market.open, market.high,
             market.low, market.close)]  # fmt: skip
    o, h, lo, c = micro
    up = c >= o
    return np.stack([o, np.where(up, lo, h), np.where(up, h, lo), c], axis=-1)


def tick_times(market: MarketPaths, ticks: int = TICKS) -> NDArray[np.int64]:
    """Epoch ms of each tick of :func:`tick_prices` (or of a ``ticks``-point intra-bar path),
    shape ``(n_bars, ticks)``."""
    step = market.interval_ms // ticks
    return market.ts_ms[:, None] + step * np.arange(ticks, dtype=np.int64)[None, :]


def trader_account(index: int) -> str:
    """Account id of the ``index``-th trader of a book (ids sort like the indices)."""
    return f"t{index:08d}"


def open_lots(
    collateral: NDArray[np.int64],
    leverage: NDArray[np.float64],
    side: NDArray[np.int8],
    price: NDArray[np.int64],
    multiplier: NDArray[np.float64],
    asset: AssetConfig,
    fee_rate: float,
    min_order: int,
    slack: int | None = None,
) -> NDArray[np.int64]:
    """Signed lots each trader opens: the largest within its target leverage that the venue
    admits, i.e. ``collateral - fee >= IM`` after the trade (the engine's check on a new
    position, :func:`liquidation.rules.margin.may_update`), found by bisection on the exact
    integer rules, with ``SEGMENT_SLACK`` micro-USD to spare for the rounding of a fill split
    where the vault's position changes sign. 0 for an order below the minimum notional.
    """
    wanted = np.floor(collateral * leverage / price * QTY_SCALE)
    cap = np.minimum(wanted, MAX_NOTIONAL_V / price * QTY_SCALE).astype(np.int64)

    def fits(lots: NDArray[np.int64]) -> NDArray[np.bool_]:
        notional = value_v(lots, price)
        fee = charge_v(notional, fee_rate)
        im = initial_requirement_v(notional, multiplier, 0.0, asset)
        return collateral - fee - (SEGMENT_SLACK if slack is None else slack) >= im

    cap = np.maximum(cap, 0)
    ok = fits(cap)
    low, high = np.where(ok, cap, 0), cap
    while True:
        open_ = ~ok & (high - low > 1)
        if not open_.any():
            break
        middle = low + (high - low) // 2
        good = fits(middle)
        low = np.where(open_ & good, middle, low)
        high = np.where(open_ & ~good, middle, high)
    lots = low
    dust = value_v(lots, price) < min_order
    return np.where(dust, 0, lots * side.astype(np.int64))


#: Micro-USD an opening trader leaves unused: a fill split in segments rounds each one.
SEGMENT_SLACK = 4


def opening_terms(config: ReplayConfig) -> tuple[float, int]:
    """Fee rate and slack (micro-USD) the book sizes its opening orders with (:func:`open_lots`).

    The taker fee; with governance reviews (:attr:`ReplayConfig.review_every_bars`) plus the
    largest fee add-on, and twice the slack (the add-on rounds up per segment too), so that
    every order the book draws is admitted whatever add-on is in force when it arrives.
    """
    if config.review_every_bars:
        addon = config.insurance.fee_addon_max_bps / 10_000
        return config.fees.taker_fee_rate + addon, 2 * SEGMENT_SLACK
    return config.fees.taker_fee_rate, SEGMENT_SLACK


def _one_segment(dq: int, taker: int, maker: int) -> bool:
    """True when :func:`liquidation.fills.segments` would not split the trade (a fast test:
    neither side holds the opposite of its leg with less than the traded size)."""
    size = abs(dq)
    return (not taker or (taker > 0) == (dq > 0) or size <= abs(taker)) and (
        not maker or (maker > 0) == (dq < 0) or size <= abs(maker)
    )


@dataclass
class VenueLedger:
    """Integer end state of one scenario's venue (micro-USD, lots): what the engine would hold.

    ``balance[i]``, ``lots[i]`` and ``cost[i]`` are trader ``i``'s (account :func:`trader_account`);
    ``vault`` maps asset to the vault's (lots, cost); ``liquidated`` lists the traders hit.
    """

    balance: NDArray[np.int64]
    lots: NDArray[np.int64]
    cost: NDArray[np.int64]
    opened_lots: NDArray[np.int64]
    fund: int
    fees: int
    keeper: int
    vault_balance: int
    vault: dict[str, tuple[int, int]]
    liquidated: list[int]
    steps: int
    bad_debt: int
    backstop: int
    adl: int
    socialized: int
    deposits: int
    fund_share: float = 0.0
    fee_addon_bps: float = 0.0


class _Venue:
    """One scenario's venue: insurance fund, fees, keeper, the liquidity vault (Python ints)."""

    def __init__(self, assets: tuple[str, ...], fund: int, vault: int, fund_share: float) -> None:
        self.assets = assets
        self.fund = fund
        self.fees = 0
        self.fees_booked = 0  # fees up to the last bar close (ReplaySeries.fee_income)
        self.addon_income = 0  # governance fee add-on paid to the fund
        self.fund_share = fund_share
        self.fee_addon_bps = 0.0
        self.bad_debts: list[int] = []  # bad-debt events, the governance history
        self.keeper = 0
        self.vault_balance = vault
        self.vault: list[Position | None] = [None] * len(assets)
        # Per asset, |cost| + 2 |lots| * highest price (float USD-micro): _require_vault's bound.
        self.bound: list[float] = [0.0] * len(assets)
        self.deposits = fund + vault
        self.bad_debt = self.backstop = self.adl = self.socialized = 0

    def vault_equity_and_im(
        self, price: NDArray[np.int64], target: NDArray[np.float64], asset: AssetConfig
    ) -> tuple[int, int]:
        eq, im = self.vault_balance, 0
        for a, pos in enumerate(self.vault):
            if pos is None:
                continue
            val = value(pos.lots, int(price[a]))
            eq += val - pos.cost
            im += initial_requirement(abs(val), float(target[a]), 0.0, asset)
        return eq, im


class _Replay:
    """Mutable state of one pass; kept private so the public surface is :func:`simulate`."""

    def __init__(
        self,
        market: MarketPaths,
        scenarios: list[Scenario],
        cfg: ReplayConfig,
        books: dict[int, TraderBook],
        units: Sequence[Sequence[int]] | None = None,
    ) -> None:
        self.m, self.sc, self.cfg = market, scenarios, cfg
        n_s, n_a, n_t = len(scenarios), len(market.assets), market.n_bars
        self.n_s, self.n_a, self.n_t = n_s, n_a, n_t
        # Position slots: unit u owns the rows v * n_u + u (v its own slot number), so a
        # unit's rows keep the order they would have in a pass of their own (see simulate).
        self.n_u = len(units) if units else 1
        self.scen_unit = [0] * n_s
        for u, unit in enumerate(units or ()):
            for i in unit:
                self.scen_unit[i] = u
        self.asset = cfg.asset
        # The wick path is tick_prices' four ticks exactly; a bridge has more (same anchors).
        self.px = path_ticks(
            market.open, market.high, market.low, market.close, cfg.path, cfg.path_seed,
            cfg.bridge,
        )  # fmt: skip
        self.scan_ticks = tuple(range(1, self.px.shape[2]))
        self.close_k = self.px.shape[2] - 1
        self.px_f = self.px.astype(np.float64)
        self.px_open = self.px[:, :, 0].T.tolist()  # per bar, the open of each asset
        self.px_max = self.px_f.max(axis=(1, 2)).tolist()
        # The scan filter values each position once per bar, at its worst scan tick: equity
        # - MM moves with the price as the position does while 1.5 * cap * mmf < 1 (the size
        # term's elasticity is 1/2), so the worst tick is the lowest price for a long and the
        # highest for a short. Otherwise every scan tick is valued.
        scan = self.px_f[:, :, list(self.scan_ticks)]
        self.worst_f = np.stack([scan.max(axis=2), scan.min(axis=2)])  # [short, long]
        self.monotone = 1.5 * self.asset.imf_cap * self.asset.maintenance_fraction < 1.0
        self.tms = tick_times(market, self.px.shape[2])
        # Impact on: one scenario per pass (simulate splits them), whose bar prices are
        # rewritten in place from the historical ones as its offset moves (_shift_bar).
        self.impact = cfg.impact == "on"
        if self.impact:
            if n_s != 1:
                raise ReplayInputError("a replay with impact on runs one scenario per pass")
            self.hist_px = self.px.copy()
            # The vault's admission bound prices at the highest price impact can reach.
            lift = math.exp(cfg.impact_model.max_impact) * (1 + 1e-9)
            self.px_max = [p * lift for p in self.px_max]
            self.offset = np.zeros(n_a)
            self.sigma = bar_sigma(market.close, cfg.impact_model.vol_window)
            self.bar_liq = np.zeros((2, n_a))  # [long, short] notional liquidated, USD
            self.cascade_rounds = np.zeros(n_t, dtype=np.int64)
        check_bounds_v(self.px, np.zeros(1, dtype=np.int64), "replay prices")
        self.target = np.stack([sc.multiplier for sc in scenarios]).reshape(n_s * n_a, n_t)
        self.mm_target = np.stack([sc.maintenance_path for sc in scenarios]).reshape(n_s * n_a, n_t)
        # The initial fraction of every lane and bar, which the close records (unscaled by size).
        self.imf = np.minimum(self.asset.base_imf * self.target, self.asset.imf_cap)
        self.lane_ramp_ms = [
            cfg.ramp_ms
            if scenarios[lane // n_a].ramp_ms is None
            else scenarios[lane // n_a].ramp_ms
            for lane in range(n_s * n_a)
        ]
        self.ramps = [RampState.start(self.asset.fallback_multiplier) for _ in range(n_s * n_a)]
        # Each lane's ramp target, as an array: a bar retargets only the lanes that differ.
        self.ramp_target = np.array([state.target for state in self.ramps], dtype=np.float64)
        # A ramp depends only on its lane's maintenance path and ramp length, not on the book:
        # lanes that share both (one policy over several seeds) share one (immutable) state.
        first: dict[tuple[bytes, int], int] = {}
        self.ramp_group = [
            first.setdefault((self.mm_target[lane].tobytes(), self.lane_ramp_ms[lane]), lane)
            for lane in range(n_s * n_a)
        ]
        # Venues whose fund or fees moved since the last close (the others repeat theirs).
        self.dirty: set[int] = set()
        self.lane_classes: list[tuple[NDArray[np.int64], NDArray[np.float64]] | None] = [None] * (
            n_s * n_a
        )
        self.std = np.maximum(cfg.participation * market.quote_volume, 1.0)
        self.min_order = math.ceil(cfg.fees.min_order_notional_usd * MICRO)
        self.venues = [
            _Venue(
                market.assets,
                round(cfg.fund_seed_usd * MICRO),
                round(cfg.vault_usd * MICRO),
                cfg.insurance.initial_fund_share,
            )
            for _ in scenarios
        ]
        self.stream = self._merge_books(books)
        self._allocate(self._initial_capacity())
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
                ("topup_collateral", np.float64),
                ("fee_income", np.float64),
                ("liquidated_long", np.float64),
            )
        }
        # Posted IM per (scenario, asset, bar): the per-asset split of out["initial_margin"].
        self.im_asset = np.zeros((n_s, n_a, n_t))
        self.liquidated: list[list[int]] = [[] for _ in scenarios]

    # -- setup ---------------------------------------------------------------------------------
    def _merge_books(self, books: dict[int, TraderBook]) -> dict[str, NDArray[Any]]:
        weights = self.m.quote_volume.mean(axis=1)
        bar_hours = self.m.interval_ms / 3_600_000
        parts = []
        for s, sc in enumerate(self.sc):
            if sc.seed not in books:
                books[sc.seed] = self._draw_book(sc.seed, bar_hours, weights)
            parts.append((s, books[sc.seed]))
        self.book_sizes = [len(b) for _, b in parts]
        cat = {
            "scen": np.concatenate([np.full(len(b), s, dtype=np.int64) for s, b in parts]),
            "trader": np.concatenate([np.arange(len(b), dtype=np.int64) for _, b in parts]),
            **{
                name: np.concatenate([getattr(b, name) for _, b in parts])
                for name in ("arrival", "asset", "side", "collateral", "leverage", "hold_bars",
                             "topup")
            },
        }  # fmt: skip
        cat["collateral"] = np.round(cat["collateral"] * MICRO).astype(np.int64)
        lane = cat["scen"] * self.n_a + cat["asset"]
        fee_rate, slack = opening_terms(self.cfg)
        cat["lots"] = open_lots(
            cat["collateral"],
            cat["leverage"],
            cat["side"],
            self.px[cat["asset"], cat["arrival"], 0],
            self.target[lane, cat["arrival"]],
            self.asset,
            fee_rate,
            self.min_order,
            slack,
        )
        self.ledger_balance = [np.zeros(len(b), dtype=np.int64) for _, b in parts]
        self.ledger_lots = [np.zeros(len(b), dtype=np.int64) for _, b in parts]
        self.ledger_cost = [np.zeros(len(b), dtype=np.int64) for _, b in parts]
        self.opened_lots = [np.zeros(len(b), dtype=np.int64) for _, b in parts]
        order = np.lexsort((cat["trader"], cat["scen"], cat["arrival"]))
        merged = {k: v[order] for k, v in cat.items()}
        merged["bounds"] = np.searchsorted(merged["arrival"], np.arange(self.n_t + 1))
        # The opening loop reads one trader at a time: Python lists index far faster than
        # numpy scalars.
        self.stream_rows = list(
            zip(
                *(merged[k].tolist() for k in ("scen", "trader", "lots", "asset", "collateral",
                                               "hold_bars", "topup")),
                strict=True,
            )
        )  # fmt: skip
        return merged

    def _draw_book(self, seed: int, bar_hours: float, weights: NDArray[np.float64]) -> TraderBook:
        """The seed's book under :attr:`ReplayConfig.book_model`."""
        cfg = self.cfg
        if cfg.book_model == "market":
            return draw_market_book(
                cfg.market_book, cfg.book, self.m.close, self.m.funding_rate, seed, bar_hours,
                self.m.open, weights,
            )  # fmt: skip
        return draw_book(cfg.book, self.n_t, self.n_a, seed, bar_hours, weights)

    def _initial_capacity(self) -> int:
        held = float(np.minimum(self.stream["hold_bars"], self.n_t).sum())
        return max(64, int(2 * held / self.n_t / self.n_u) + 64)

    def _allocate(self, capacity: int) -> None:
        """Room for ``capacity`` slots per unit. The free slots of each unit are a stack:
        released slots first (last released first), then the lowest never used, so growing
        never changes which slot a position takes."""
        old = getattr(self, "cap", 0)
        self.cap = capacity
        n_u = self.n_u
        fields = {
            "active": bool,
            "scen": np.int64,
            "asset": np.int64,
            "lane": np.int64,
            "trader": np.int64,
            "close_bar": np.int64,
            "topups_left": np.int64,
            "first_deposit": np.int64,
            "hit": bool,
            "lots": np.int64,
            "cost": np.int64,
            "balance": np.int64,
            "risk_since": np.int64,
            "last_step": np.int64,
        }
        for name, dtype in fields.items():
            grown = np.zeros(capacity * n_u, dtype=dtype)
            if old:
                grown[: old * n_u] = getattr(self, f"s_{name}")
            setattr(self, f"s_{name}", grown)
        fresh = list(range(capacity - 1, old - 1, -1))
        self.free = [fresh + (self.free[u] if old else []) for u in range(n_u)]

    # -- the loop ------------------------------------------------------------------------------
    def run(self, progress: Progress | None) -> list[ReplaySeries]:
        for t in range(self.n_t):
            if self.impact:
                self._carry(t)
            self._retarget(t)
            self._funding(t)
            if self.cfg.review_every_bars and t and t % self.cfg.review_every_bars == 0:
                self._review()
            self._open(t)
            at_risk, topup = self._at_risk(t)
            self._scan(t, at_risk)
            if self.impact and self._cascade(t):
                # The cascade moved the bar's prices: filter the top-ups at the moved close.
                at_risk, topup = self._at_risk(t)
            self._close_of_bar(t, at_risk, topup)
            if progress is not None and (t + 1) % 1000 == 0:
                progress(t + 1, self.n_t)
        if progress is not None:
            progress(self.n_t, self.n_t)
        return [self._series(s) for s in range(self.n_s)]

    def _scan(self, t: int, at_risk: NDArray[np.int64]) -> None:
        """The keeper's passes over the bar's scan ticks, on the rows :meth:`_at_risk` flagged."""
        if len(at_risk):
            for k in self.scan_ticks:
                self._liquidate(t, k, at_risk)

    # -- liquidation price impact (ReplayConfig.impact == "on") --------------------------------
    def _shift_bar(self, t: int, offset: NDArray[np.float64]) -> None:
        """Bar ``t``'s prices moved by ``offset`` (log, per asset) from the historical ones."""
        self.px[:, t, :] = shifted(self.hist_px[:, t, :], offset)
        self.px_f[:, t, :] = self.px[:, t, :]
        scan = self.px_f[:, t, list(self.scan_ticks)]
        self.worst_f[0, :, t] = scan.max(axis=1)
        self.worst_f[1, :, t] = scan.min(axis=1)

    def _carry(self, t: int) -> None:
        """At the bar's open the last bar's impact has decayed toward the historical path."""
        if t:
            self.offset = decay(self.offset, self.cfg.impact_model)
        self.carried = self.offset.copy()
        self.bar_liq[:] = 0.0
        if self.offset.any():
            self._shift_bar(t, self.offset)

    def _cascade(self, t: int) -> bool:
        """The bar's liquidations move its price; re-scan at the moved prices until nothing
        moves (a fixed point of :func:`liquidation.impact.impact`) or the round cap.

        Liquidations already booked stay booked: each round adds those the further move
        reaches, so on a one-sided bar the rounds climb to the smallest fixed point. Returns
        whether the bar's prices moved."""
        im = self.cfg.impact_model
        volume, sigma = self.m.quote_volume[:, t], self.sigma[:, t]
        rounds = 0
        while rounds < im.max_rounds:
            target = self.carried + impact(self.bar_liq[0], self.bar_liq[1], volume, sigma, im)
            if np.array_equal(target, self.offset):
                break
            rounds += 1
            self.offset = target
            self._shift_bar(t, target)
            self._scan(t, self._at_risk(t)[0])
        self.cascade_rounds[t] = rounds
        return rounds > 0

    def _resized(self, lo: int, hi: int, t: int, fee: float) -> list[tuple[int, ...]]:
        """The bar's arrivals (``stream_rows[lo:hi]``) sized at the open impact moved: a
        trader opens the largest size within its leverage at the price it sees."""
        st = {k: self.stream[k][lo:hi] for k in ("scen", "asset", "collateral", "leverage",
                                                  "side")}  # fmt: skip
        lane = st["scen"] * self.n_a + st["asset"]
        lots = open_lots(
            st["collateral"], st["leverage"], st["side"], self.px[st["asset"], t, 0],
            self.target[lane, t], self.asset, fee, self.min_order,
        ).tolist()  # fmt: skip
        return [
            (s, trader, size, a, collateral, hold, topup)
            for (s, trader, _, a, collateral, hold, topup), size in zip(
                self.stream_rows[lo:hi], lots, strict=True
            )
        ]

    def _count_liquidated(self, s: int, t: int, a: int, lots: int, notional: int) -> None:
        """Book liquidated notional (micro-USD) of a position of ``lots`` in asset ``a``."""
        self.out["liquidated_notional"][s, t] += notional / MICRO
        if lots > 0:
            self.out["liquidated_long"][s, t] += notional / MICRO
        if self.impact:
            self.bar_liq[0 if lots > 0 else 1, a] += notional / MICRO

    def _retarget(self, t: int) -> None:
        """Each lane's maintenance ramp takes the bar's target (the engine's snapshot step)."""
        column = self.mm_target[:, t]
        changed = np.flatnonzero(column != self.ramp_target)
        if len(changed) == 0:
            return
        ts = int(self.tms[t, 0])
        done: dict[int, RampState] = {}
        for lane in changed.tolist():
            group = self.ramp_group[lane]
            state = done.get(group)
            if state is None:
                state = done[group] = retarget(
                    self.ramps[lane], float(column[lane]), ts, self.lane_ramp_ms[lane],
                    self.cfg.max_ramp_classes,
                )  # fmt: skip
            self.ramps[lane] = state
            self.ramp_target[lane] = state.target

    def _review(self) -> None:
        """Insurance governance of every venue (the engine's review with its history's loss)."""
        ins = self.cfg.insurance
        for venue in self.venues:
            loss = historical_stressed_loss(venue.bad_debts, ins.stress_quantile)
            decision = review(venue.fund, loss, venue.fund_share, venue.fee_addon_bps, ins)
            venue.fund_share, venue.fee_addon_bps = decision.fund_share, decision.fee_addon_bps

    def _mm_multiplier(
        self, lane: NDArray[np.int64], since: NDArray[np.int64], ts: int
    ) -> NDArray[np.float64]:
        """Maintenance multiplier of each position: its ramp class's (rules.ramp)."""
        mult = np.empty(len(lane))
        for ln in np.unique(lane) if len(lane) > 1 else lane:
            rows = lane == ln
            state = self.ramps[ln]
            ramp_ms = self.lane_ramp_ms[ln]
            if not state.floors and (
                state.target <= state.base_from or ts - state.base_start_ms >= ramp_ms
            ):
                mult[rows] = state.target
                continue
            bounds, paid = classes(state, ts, ramp_ms)
            k = np.searchsorted(np.asarray(bounds, dtype=np.int64), since[rows], side="right") - 1
            mult[rows] = np.asarray(paid)[k]
        return mult

    def _health(
        self, rows: NDArray[np.int64], t: int, k: int
    ) -> tuple[NDArray[np.int64], NDArray[np.int64], NDArray[np.int64]]:
        """Exact equity, maintenance and notional of ``rows`` at tick ``k`` of bar ``t``."""
        asset = self.s_asset[rows]
        price = self.px[asset, t, k]
        val = value_v(self.s_lots[rows], price)
        notional = np.abs(val)
        lane = self.s_lane[rows]
        mult = self._mm_multiplier(lane, self.s_risk_since[rows], int(self.tms[t, k]))
        mm = maintenance_requirement_v(notional, mult, self.asset)
        return self.s_balance[rows] + val - self.s_cost[rows], mm, notional

    # -- fills against the vault ---------------------------------------------------------------
    def _plan_fill(
        self, s: int, row: int, dq: int, price: int, ts: int, fee_rate: float, addon: float = 0.0
    ) -> tuple[tuple[int, int, int], Position | None, int, int, int, int]:
        """Row ``row`` taking ``dq`` lots from the vault at ``price``, as the engine books it
        (:func:`liquidation.fills.fill_events`: the trade split where either side would flip,
        each segment's cost and PnL by :func:`~liquidation.fills.fill_amounts`, the taker fee
        charged per segment, and the governance fee add-on ``addon`` (a rate) for the fund).
        Returns the row's (lots, cost, risk_since), the vault's position, the row's and the
        vault's balance changes, the fees and the add-on; books nothing."""
        a = int(self.s_asset[row])
        symbol = self.m.assets[a]
        lots = int(self.s_lots[row])
        if lots:
            cost, since = int(self.s_cost[row]), int(self.s_risk_since[row])
        else:
            cost = since = 0
        theirs = self.venues[s].vault[a]
        held = theirs.lots if theirs is not None else 0
        parts = [dq] if _one_segment(dq, lots, held) else segments(dq, lots, held)
        mine_delta = vault_delta = fees = addons = 0
        for part in parts:
            traded = abs(value(part, price))
            fee = charge(traded, fee_rate)
            extra = charge(traded, addon) if addon else 0
            mine = fill_amounts(
                Position(symbol, lots, cost, since) if lots else None, part, price, ts
            )
            other = fill_amounts(theirs, -part, price, ts)
            lots, cost, since = lots + part, cost + mine.cost_delta, mine.risk_since_ms
            if lots == 0:
                cost, since = 0, 0
            held -= part
            theirs = (
                Position(symbol, held, (theirs.cost if theirs else 0) + other.cost_delta,
                         other.risk_since_ms)
                if held
                else None
            )  # fmt: skip
            mine_delta += mine.realized_pnl - fee - extra
            vault_delta += other.realized_pnl
            fees += fee
            addons += extra
        return (lots, cost, since), theirs, mine_delta, vault_delta, fees, addons

    def _fill(
        self,
        s: int,
        row: int,
        dq: int,
        price: int,
        ts: int,
        fee_rate: float,
        planned: tuple[tuple[int, int, int], Position | None, int, int, int, int] | None = None,
        addon: float = 0.0,
    ) -> None:
        """Book row ``row`` taking ``dq`` lots from the vault at ``price`` (:meth:`_plan_fill`)."""
        venue = self.venues[s]
        (lots, cost, since), theirs, mine_delta, vault_delta, fees, addons = (
            planned
            if planned is not None
            else self._plan_fill(s, row, dq, price, ts, fee_rate, addon)
        )
        a = int(self.s_asset[row])
        venue.vault[a] = theirs
        venue.bound[a] = (
            abs(theirs.cost) + _BOUND * abs(theirs.lots) * self.px_max[a] / QTY_SCALE
            if theirs is not None
            else 0.0
        )
        venue.vault_balance += vault_delta
        venue.fees += fees
        self.dirty.add(s)
        if addons:
            venue.fund += addons
            venue.addon_income += addons
        self.s_balance[row] += mine_delta
        self.s_lots[row], self.s_cost[row], self.s_risk_since[row] = lots, cost, since

    def _require_vault(self, s: int, t: int, k: int) -> None:
        """The replay's vault is deep: refuse to go on if it would not admit a fill.

        Admitted for sure if a float lower bound of its equity covers the whole notional it
        holds (no margin fraction exceeds 1); otherwise the exact rules decide.
        """
        venue = self.venues[s]
        # First at every asset's highest price of the replay (one sum, kept up to date by
        # _fill), then at the tick's prices.
        if venue.vault_balance - sum(venue.bound) - 2 * self.n_a > 0:
            return
        gross = cost = 0.0
        for a, pos in enumerate(venue.vault):
            if pos is not None:
                gross += abs(pos.lots) * float(self.px_f[a, t, k]) / QTY_SCALE
                cost += abs(pos.cost)
        if venue.vault_balance - cost - 2.0 * gross * (1 + 1e-9) - 2 * self.n_a > 0:
            return
        lanes = s * self.n_a + np.arange(self.n_a)
        eq, im = venue.vault_equity_and_im(self.px[:, t, k], self.target[lanes, t], self.asset)
        if eq < im:
            raise ReplayInputError(
                f"scenario {self.sc[s].label!r}: the liquidity vault's equity {eq} fell below "
                f"its initial margin {im} at bar {t}; the replay assumes a vault deep enough to "
                "take every fill (raise ReplayConfig.vault_usd)"
            )

    # -- bar steps -----------------------------------------------------------------------------
    def _funding(self, t: int) -> None:
        rates = self.m.funding_rate[:, t]
        if not rates.any():
            return
        act = self.s_active.nonzero()[0]
        # Holders grouped by (asset, scenario), each group in account order (as the engine).
        act = act[np.lexsort((self.s_trader[act], self.s_scen[act], self.s_asset[act]))]
        group = self.s_asset[act] * self.n_s + self.s_scen[act]
        edges = np.searchsorted(group, np.arange(self.n_a * self.n_s + 1)).tolist()
        rows_all, lots_all = act.tolist(), self.s_lots[act].tolist()
        for a in np.flatnonzero(rates).tolist():
            rate = float(rates[a])
            if abs(rate) >= self.cfg.max_funding_rate:
                raise ReplayInputError(
                    f"funding rate {rate} of {self.m.assets[a]} at bar {t} exceeds the venue's "
                    f"bound {self.cfg.max_funding_rate}"
                )
            mark = int(self.px[a, t, 0])
            for s, venue in enumerate(self.venues):
                lo, hi = edges[a * self.n_s + s], edges[a * self.n_s + s + 1]
                holders = list(zip(rows_all[lo:hi], lots_all[lo:hi], strict=True))
                vault = venue.vault[a]
                if vault is not None and vault.lots:
                    holders.append((-1, vault.lots))
                for who, amount in funding_payments(holders, mark, rate):
                    if who == -1:
                        venue.vault_balance += amount
                    else:
                        self.s_balance[who] += amount

    def _open(self, t: int) -> None:
        lo, hi = self.stream["bounds"][t], self.stream["bounds"][t + 1]
        if lo == hi:
            return
        if min(len(free) for free in self.free) < hi - lo:
            self._allocate(max(2 * self.cap, self.cap + (hi - lo) + 64))
        free, n_u, unit_of = self.free, self.n_u, self.scen_unit
        ts = int(self.tms[t, 0])
        fee = self.cfg.fees.taker_fee_rate
        opens = self.px_open[t] if not self.impact else self.px[:, t, 0].tolist()
        rows = self.stream_rows[lo:hi]
        if self.impact and self.offset.any():
            rows = self._resized(lo, hi, t, fee)
        touched = set()
        for s, trader, lots, a, collateral, hold, topup in rows:
            venue = self.venues[s]
            venue.deposits += collateral
            if lots == 0:
                self.ledger_balance[s][trader] = collateral
                continue
            u = unit_of[s]
            row = free[u].pop() * n_u + u
            self.s_active[row] = True
            self.s_hit[row] = False
            self.s_scen[row] = s
            self.s_asset[row] = a
            self.s_lane[row] = s * self.n_a + a
            self.s_trader[row] = trader
            self.s_close_bar[row] = min(t + hold - 1, self.n_t - 1)
            self.s_topups_left[row] = self.cfg.book.topup_max_count if topup else 0
            self.s_first_deposit[row] = collateral
            self.s_balance[row] = collateral
            self.s_lots[row] = 0
            self.s_cost[row] = 0
            self.s_last_step[row] = _NEVER
            self._fill(s, row, lots, opens[a], ts, fee, addon=venue.fee_addon_bps / 10_000)
            self._require_vault(s, t, 0)  # the engine checks the counterparty of each trade
            self.opened_lots[s][trader] = lots
            self.out["opened"][s, t] += 1
            touched.add(s)

    def _float_margin(
        self, rows: NDArray[np.int64], t: int, ticks: Sequence[int | None], scales: Sequence[float]
    ) -> list[NDArray[np.float64]]:
        """Float ``equity - scale * MM`` of ``rows`` at each tick of ``ticks`` (None: each
        position's worst scan tick) with every position paying its lane's target (no ramp
        class pays more), less a tolerance covering the exact rules' rounding and the float
        error: a *filter* that never misses an exact breach. The rows' state is gathered once
        and every tick is valued in the same array operations (one row per tick: the per-bar
        cost of a small book is the number of numpy calls, not their size)."""
        asset = self.s_asset[rows]
        lots = self.s_lots[rows].astype(np.float64)
        target = self.target_now[self.s_lane[rows]]
        # balance - cost is exact in int64; the float sum errs by far less than the tolerance.
        held = self.s_balance[rows] - self.s_cost[rows]
        slack = 1e-9 * np.abs(held) + 64.0
        price = np.empty((len(ticks), len(rows)))
        for i, k in enumerate(ticks):
            if k is None:
                price[i] = self.worst_f[(lots > 0).astype(np.int64), asset, t]
            else:
                price[i] = self.px_f[asset, t, k]
        val = lots * price / QTY_SCALE
        notional = np.abs(val)
        frac = position_fraction_v(notional / MICRO, target, self.asset)
        mm = notional * frac * self.asset.maintenance_fraction
        scale = np.asarray(scales, dtype=np.float64)[:, None]
        return list(held + val - scale * mm - (slack + 1e-9 * notional))

    def _at_risk(self, t: int) -> tuple[NDArray[np.int64], NDArray[np.int64]]:
        """Positions that may be below maintenance at some scan tick of bar ``t``, and those
        that may want a top-up at its close (the same filter at the close, trigger health).

        The top-up filter is taken before the keeper's passes: only positions the keeper
        touches (a subset of the first array) can change before the close, and
        :meth:`_topups` adds them back.
        """
        act = self.s_active.nonzero()[0]
        if len(act) == 0:
            return act, act
        self.target_now = self.mm_target[:, t]
        trigger = self.cfg.book.topup_trigger_health
        if self.monotone:
            worst, close = self._float_margin(act, t, (None, self.close_k), (1.0, trigger))
        else:
            scan = self.scan_ticks
            *scans, close = self._float_margin(
                act, t, (*scan, self.close_k), (1.0,) * len(scan) + (trigger,)
            )
            worst = np.minimum.reduce(scans)
        topup = (close < 0) & (self.s_topups_left[act] > 0)
        return act[worst < 0], act[topup]

    def _liquidate(self, t: int, k: int, candidates: NDArray[np.int64]) -> None:
        act = candidates[self.s_active[candidates]]
        if len(act) == 0:
            return
        found = []
        for row in act.tolist():
            eq, mm, _ = self._health_one(row, t, k)
            if liquidatable(eq, mm):
                s, trader = int(self.s_scen[row]), int(self.s_trader[row])
                found.append((s, health(eq, mm), trader, row))
        # The keeper's order: lowest equity / MM first, then account id (the engine's).
        ts = int(self.tms[t, k])
        for *_, row in sorted(found):
            self._step(row, t, k, ts, self._mark(row, t, k, ts))

    def _mark(self, row: int, t: int, k: int, ts: int) -> int | None:
        """Mark of a liquidation at tick ``k`` on the bridge path (None: the tick's price).

        The bridge is continuous between ticks, so a position healthy at tick ``k - 1`` is
        marked where the path crossed its level (:func:`liquidation.intrabar.crossing_price`);
        one already due at the open gapped there and is marked at the open; one already due at
        an earlier tick of the bar is marked at the tick, as on the wick path.
        """
        if self.cfg.path == "wick":
            return None
        a = int(self.s_asset[row])
        before, after = int(self.px[a, t, k - 1]), int(self.px[a, t, k])
        if self._liquidatable_at(row, before, ts):
            return before if k == 1 else None
        return crossing_price(lambda p: self._liquidatable_at(row, p, ts), before, after)

    def _liquidatable_at(self, row: int, price: int, ts: int) -> bool:
        """Whether one position is below maintenance at ``price`` (the scalar rules)."""
        s, a = int(self.s_scen[row]), int(self.s_asset[row])
        lane = s * self.n_a + a
        mult = ramp_multiplier(
            self.ramps[lane], int(self.s_risk_since[row]), ts, self.lane_ramp_ms[lane]
        )
        val = value(int(self.s_lots[row]), price)
        eq = int(self.s_balance[row]) + val - int(self.s_cost[row])
        return liquidatable(eq, maintenance_requirement(abs(val), mult, self.asset))

    def _health_one(self, row: int, t: int, k: int) -> tuple[int, int, int]:
        """Exact equity, maintenance and notional of one position (the scalar rules)."""
        s, a = int(self.s_scen[row]), int(self.s_asset[row])
        lane = s * self.n_a + a
        mult = ramp_multiplier(
            self.ramps[lane], int(self.s_risk_since[row]), int(self.tms[t, k]),
            self.lane_ramp_ms[lane],
        )  # fmt: skip
        val = value(int(self.s_lots[row]), int(self.px[a, t, k]))
        notional = abs(val)
        eq = int(self.s_balance[row]) + val - int(self.s_cost[row])
        return eq, maintenance_requirement(notional, mult, self.asset), notional

    def _step(self, row: int, t: int, k: int, ts: int, at: int | None = None) -> None:
        """One waterfall step on a one-position bucket, with the shared rules, as the engine
        (marked at ``at`` when given, else at tick ``k``'s price)."""
        lc = self.cfg.liquidation
        s, a = int(self.s_scen[row]), int(self.s_asset[row])
        mark = int(self.px[a, t, k]) if at is None else at
        lots, cost = int(self.s_lots[row]), int(self.s_cost[row])
        lane = s * self.n_a + a
        mult = ramp_multiplier(
            self.ramps[lane], int(self.s_risk_since[row]), ts, self.lane_ramp_ms[lane]
        )
        val = value(lots, mark)
        notional = abs(val)
        eq = int(self.s_balance[row]) + val - cost
        mm = maintenance_requirement(notional, mult, self.asset)
        if eq >= mm:
            return  # healthy again after an earlier step of this pass
        std = float(self.std[a, t])
        slip_full = self._slip(notional, std)
        emergency = is_emergency(eq, mm, charge(notional, slip_full), lc.emergency_health)
        last = int(self.s_last_step[row])
        if rate_limited(emergency, None if last == _NEVER else last, ts, lc.cooldown_ms):
            return
        first = not self.s_hit[row]
        self.s_hit[row] = True
        self.out["liquidations"][s, t] += 1
        if first:
            self.out["positions_liquidated"][s, t] += 1
            self.liquidated[s].append(int(self.s_trader[row]))
        self.s_last_step[row] = ts
        if partial_allowed(emergency, notional, lc.min_partial_notional_usd):
            ppm = partial_ppm(eq, mm, close_cost(notional, slip_full, lc.penalty_rate), lc)
            closed = closed_lots(lots, ppm) if ppm else 0
            if closed:
                closed_notional = abs(value(-closed, mark))
                exec_price = close_price(mark, closed, self._slip(closed_notional, std))
                cost_share = div_trunc(cost * closed, lots)
                balance = int(self.s_balance[row]) + value(closed, exec_price) - cost_share
                left = lots - closed
                eq_fills = balance + value(left, mark) - (cost - cost_share)
                pen = penalty_due(closed_notional, eq_fills, lc.penalty_rate)
                mm_after = maintenance_requirement(abs(value(left, mark)), mult, self.asset)
                if improves(eq, mm, eq_fills, pen, mm_after):
                    self._fill(s, row, -closed, exec_price, ts, 0.0)
                    self._require_vault(s, t, k)
                    self._penalty(s, row, pen)
                    self._count_liquidated(s, t, a, lots, closed_notional)
                    return
        self._full_closeout(s, row, t, k, ts, eq, notional, slip_full, mark)

    def _full_closeout(
        self,
        s: int,
        row: int,
        t: int,
        k: int,
        ts: int,
        eq: int,
        notional: int,
        slip: float,
        mark: int,
    ) -> None:
        lc, venue = self.cfg.liquidation, self.venues[s]
        lots, cost = int(self.s_lots[row]), int(self.s_cost[row])
        available = fund_available(venue.fund, lc.insurance_cap_per_event_usd)
        exec_price = close_price(mark, lots, slip)
        market_debt = max(0, -(int(self.s_balance[row]) + value(lots, exec_price) - cost))
        if market_closeout_fits(market_debt, available):
            bad_debt = market_debt
            self._fill(s, row, -lots, exec_price, ts, 0.0)
        else:
            # Bankruptcy: the backstop vault takes the position at the mark with a concession
            # covering the deficit beyond what the fund may pay (it admits the whole: it is deep).
            bad_debt, deficit = bankruptcy_deficit(eq, available)
            self._fill(s, row, -closed_lots(lots, FRACTION_SCALE), mark, ts, 0.0)
            share = backstop_share(deficit, FRACTION_SCALE)
            self.s_balance[row] += share
            venue.vault_balance -= share
            short = shortfall_beyond_fund(int(self.s_balance[row]), available)
            if short > 0 and share > 0:
                self.s_balance[row] += short
                venue.vault_balance -= short
                share += short
            venue.backstop += share
        self._require_vault(s, t, k)
        balance = int(self.s_balance[row])
        if balance > 0:
            self._penalty(s, row, penalty_due(notional, balance, lc.penalty_rate))
        debt = max(0, -int(self.s_balance[row]))
        cover = fund_cover(debt, available)
        venue.fund -= cover
        self.dirty.add(s)
        self.s_balance[row] += cover
        if debt > cover:  # unreachable with a deep vault; kept explicit, never silent
            raise ReplayInputError(f"scenario {self.sc[s].label!r}: bad debt left after the vault")
        venue.bad_debt += bad_debt
        if bad_debt > 0:  # the history the governance review reads (as the engine records it)
            venue.bad_debts.append(bad_debt)
            del venue.bad_debts[: -self.cfg.insurance.history_size]
        self.out["full_closeouts"][s, t] += 1
        self.out["bad_debt"][s, t] += bad_debt / MICRO
        self._count_liquidated(s, t, int(self.s_asset[row]), lots, notional)
        self._release(np.array([row]))

    def _penalty(self, s: int, row: int, penalty: int) -> None:
        if penalty <= 0:
            return
        keeper, fund = split_penalty(penalty, self.venues[s].fund_share)
        self.s_balance[row] -= penalty
        self.venues[s].keeper += keeper
        self.venues[s].fund += fund
        self.dirty.add(s)

    def _slip(self, notional: int, std: float) -> float:
        return slippage_rate(
            notional / MICRO, self.cfg.spread_bps, self.cfg.impact_bps, std,
            self.asset.max_slippage_bps,
        )  # fmt: skip

    def _close_of_bar(self, t: int, at_risk: NDArray[np.int64], topup: NDArray[np.int64]) -> None:
        act = self.s_active.nonzero()[0]
        if len(act):
            self._topups(t, at_risk, topup)  # deposits only: the active set stays
            ending = act[self.s_close_bar[act] <= t]
            if len(ending):
                # Closes trade with the vault one after another, in account order (as the
                # engine).
                if len(ending) > 1:
                    ending = ending[np.lexsort((self.s_trader[ending], self.s_scen[ending]))]
                if self._closes(t, ending):
                    act = self.s_active.nonzero()[0]
        n_s = self.n_s
        asset = self.s_asset[act]
        notional = np.abs(self.s_lots[act] * self.px_f[asset, t, self.close_k]) / (
            QTY_SCALE * MICRO
        )
        imf = self.imf[self.s_lane[act], t]
        scen = self.s_scen[act]
        posted = notional * imf
        self.out["initial_margin"][:, t] = np.bincount(scen, weights=posted, minlength=n_s)
        n_a = self.n_a
        self.im_asset[:, :, t] = np.bincount(
            scen * n_a + asset, weights=posted, minlength=n_s * n_a
        ).reshape(n_s, n_a)
        self.out["open_notional"][:, t] = np.bincount(scen, weights=notional, minlength=n_s)
        fund, fee_income = self.out["fund"], self.out["fee_income"]
        if t == 0:
            fund[:, 0] = [v.fund / MICRO for v in self.venues]
        else:
            fund[:, t] = fund[:, t - 1]  # a venue nobody touched keeps its fund, earns no fee
        for s in self.dirty:
            v = self.venues[s]
            fund[s, t] = v.fund / MICRO
            fee_income[s, t] = (v.fees + v.addon_income - v.fees_booked) / MICRO
            v.fees_booked = v.fees + v.addon_income
        self.dirty.clear()

    def _topups(self, t: int, at_risk: NDArray[np.int64], topup: NDArray[np.int64]) -> None:
        """Top-ups at the close: the exact rules on the rows :meth:`_at_risk` flagged, plus
        those the keeper touched since (in row order, as one filter over all rows gives)."""
        book = self.cfg.book
        if len(at_risk):
            touched = at_risk[self.s_active[at_risk] & (self.s_topups_left[at_risk] > 0)]
            act = np.union1d(topup, touched) if len(touched) else topup
        else:
            act = topup
        if len(act) == 0:
            return
        if len(act) > SCALAR_ROWS:
            self._topups_v(t, act)
            return
        for row in act.tolist():
            eq, mm, notional = self._health_one(row, t, self.close_k)
            left = int(self.s_topups_left[row])
            if not wants_topup(eq, mm, left, book.topup_trigger_health):
                continue
            s, a = int(self.s_scen[row]), int(self.s_asset[row])
            im = initial_requirement(notional, float(self.target[s * self.n_a + a, t]), 0.0,
                                     self.asset)  # fmt: skip
            amount = topup_amount(eq, im, int(self.s_first_deposit[row]), book.topup_max_fraction)
            if amount > 0:
                self._deposit(s, row, t, amount)

    def _topups_v(self, t: int, act: NDArray[np.int64]) -> None:
        """:meth:`_topups` on many positions at once (the vector forms of the same rules)."""
        book = self.cfg.book
        eq, mm, notional = self._health(act, t, self.close_k)
        want = wants_topup_v(eq, mm, self.s_topups_left[act], book.topup_trigger_health)
        rows = act[want]
        lane = self.s_lane[rows]
        im = initial_requirement_v(notional[want], self.target[lane, t], 0.0, self.asset)
        amount = topup_amount_v(eq[want], im, self.s_first_deposit[rows], book.topup_max_fraction)
        for row, paid in zip(rows.tolist(), amount.tolist(), strict=True):
            if paid > 0:
                self._deposit(int(self.s_scen[row]), row, t, paid)

    def _deposit(self, s: int, row: int, t: int, amount: int) -> None:
        self.s_balance[row] += amount
        self.s_topups_left[row] -= 1
        self.venues[s].deposits += amount
        self.out["topups"][s, t] += 1
        self.out["topup_collateral"][s, t] += amount / MICRO

    def _closes(self, t: int, rows: NDArray[np.int64]) -> int:
        """Planned closes at the close price, taker fee, if the venue admits them; how many."""
        ts = int(self.tms[t, self.close_k])
        fee = self.cfg.fees.taker_fee_rate
        closing = []
        closes = self.px[:, t, self.close_k].tolist()
        for row, s, a, lots in zip(rows.tolist(), self.s_scen[rows].tolist(),
                                   self.s_asset[rows].tolist(), self.s_lots[rows].tolist(),
                                   strict=True):  # fmt: skip
            if abs(value(lots, closes[a])) < self.min_order:
                continue  # the venue refuses dust: the remnant stays open
            addon = self.venues[s].fee_addon_bps / 10_000
            planned = self._plan_fill(s, row, -lots, closes[a], ts, fee, addon)
            after = int(self.s_balance[row]) + planned[2]
            # Without positions the dYdX rule admits a change only to equity >= 0.
            if after < 0:
                continue
            self._fill(s, row, -lots, closes[a], ts, fee, planned)
            self._require_vault(s, t, 3)
            closing.append(row)
        if closing:
            self._release(np.array(closing, dtype=np.int64))
        return len(closing)

    def _release(self, rows: NDArray[np.int64]) -> None:
        scen = self.s_scen[rows]
        for s in set(scen.tolist()):
            mine = rows[scen == s] if self.n_s > 1 else rows
            trader = self.s_trader[mine]
            self.ledger_balance[s][trader] = self.s_balance[mine]
            self.ledger_lots[s][trader] = self.s_lots[mine]
            self.ledger_cost[s][trader] = self.s_cost[mine]
        self.s_active[rows] = False
        self.s_lots[rows] = 0
        self.s_cost[rows] = 0
        self.s_balance[rows] = 0
        if self.n_u == 1:
            self.free[0].extend(rows.tolist())
        else:
            n_u = self.n_u
            for row in rows.tolist():
                self.free[row % n_u].append(row // n_u)

    def ledger(self, s: int) -> VenueLedger:
        """The integer end state of scenario ``s`` (open positions included)."""
        balance = self.ledger_balance[s].copy()
        lots = self.ledger_lots[s].copy()
        cost = self.ledger_cost[s].copy()
        act = np.flatnonzero(self.s_active & (self.s_scen == s))
        balance[self.s_trader[act]] = self.s_balance[act]
        lots[self.s_trader[act]] = self.s_lots[act]
        cost[self.s_trader[act]] = self.s_cost[act]
        v = self.venues[s]
        return VenueLedger(
            balance=balance, lots=lots, cost=cost, opened_lots=self.opened_lots[s],
            fund=v.fund, fees=v.fees, keeper=v.keeper, vault_balance=v.vault_balance,
            vault={self.m.assets[a]: (p.lots, p.cost) for a, p in enumerate(v.vault) if p},
            liquidated=sorted(self.liquidated[s]), steps=int(self.out["liquidations"][s].sum()),
            bad_debt=v.bad_debt, backstop=v.backstop, adl=v.adl, socialized=v.socialized,
            deposits=v.deposits, fund_share=v.fund_share, fee_addon_bps=v.fee_addon_bps,
        )  # fmt: skip

    def _series(self, s: int) -> ReplaySeries:
        sc = self.sc[s]
        return ReplaySeries(
            label=sc.label,
            seed=sc.seed,
            ts_ms=self.m.ts_ms,
            multiplier=sc.multiplier,
            fund_seed=self.cfg.fund_seed_usd,
            initial_margin_asset=self.im_asset[s].copy(),
            **{name: values[s].copy() for name, values in self.out.items()},
        )


def position_fractions(
    notional: NDArray[np.float64], multiplier: NDArray[np.float64], asset: AssetConfig
) -> NDArray[np.float64]:
    """The size-scaled fraction of every position (``rules.margin.position_fraction_v``)."""
    return position_fraction_v(notional, multiplier, asset)


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
