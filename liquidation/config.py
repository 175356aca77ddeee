"""Engine configuration: frozen dataclasses with documented, validated defaults.

The defaults are those of a mid-size perpetuals venue (values in the comments). A whole engine
is described by one :class:`EngineConfig`, so a replay with the same config and the same event
log gives the same state.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from liquidation.circuit_breaker import CircuitBreakerConfig
from liquidation.errors import ConfigError, UnknownAssetError
from liquidation.options.config import OptionsConfig


@dataclass(frozen=True)
class AssetConfig:
    """Margin, liquidity and fallback parameters of one perpetual.

    Parameters
    ----------
    symbol : str
        Asset name as in the RiskSnapshot (``"BTCUSDT"``).
    base_imf : float
        Base initial margin fraction; ``imf = base_imf * multiplier`` (0.05 = 20x).
    maintenance_fraction : float
        ``MM = IM * maintenance_fraction`` (0.6, i.e. base MMF 0.03 for base IMF 0.05).
    fallback_multiplier : float
        Multiplier used when the snapshot is absent, expired, ``stale`` or ``halted`` (2.0).
        The engine uses the larger of this and the last snapshot's multiplier.
    min_multiplier, max_multiplier : float
        Bounds a snapshot multiplier must lie in, or the snapshot is refused (0.5, 5.0).
    imf_cap : float
        Upper bound of any margin fraction (1.0: never more than the notional).
    oi_lower_usd, oi_upper_usd, oi_imf_max : float
        dYdX-style open-interest scaling of the *initial* fraction: linear from the position's
        fraction at ``oi_lower_usd`` of long open interest to ``oi_imf_max`` at ``oi_upper_usd``.
        It applies to new risk only, so one trader's order never liquidates another.
    size_imf_factor, size_reference_usd : float
        Drift-style size scaling of both fractions:
        ``imf = max(base_imf * m, size_imf_factor * sqrt(notional / size_reference_usd))``.
    fallback_sigma, stress_sigma_floor : float
        Horizon sigma (fraction of notional) used by portfolio margin without a snapshot, and
        the stress-period floor under any snapshot sigma (anti-procyclicality).
    default_spread_bps, default_slippage_bps, standard_size_usd : float
        Liquidity used by the close-out slippage model when no snapshot gives it.
    max_slippage_bps : float
        Cap of the modelled close-out slippage.
    """

    symbol: str
    base_imf: float = 0.05
    maintenance_fraction: float = 0.6
    fallback_multiplier: float = 2.0
    min_multiplier: float = 0.5
    max_multiplier: float = 5.0
    imf_cap: float = 1.0
    oi_lower_usd: float = 50e6
    oi_upper_usd: float = 500e6
    oi_imf_max: float = 0.2
    size_imf_factor: float = 0.01
    size_reference_usd: float = 1e6
    fallback_sigma: float = 0.05
    stress_sigma_floor: float = 0.02
    default_spread_bps: float = 5.0
    default_slippage_bps: float = 20.0
    standard_size_usd: float = 1e6
    max_slippage_bps: float = 500.0

    def __post_init__(self) -> None:
        where = f"AssetConfig({self.symbol!r})"
        if not self.symbol or ":" in self.symbol:
            raise ConfigError(f"{where}: symbol must be non-empty and free of ':'")
        _check(0 < self.base_imf <= 1, f"{where}: base_imf must be in (0, 1]")
        _check(
            0 < self.maintenance_fraction < 1, f"{where}: maintenance_fraction must be in (0, 1)"
        )
        _check(
            0 < self.min_multiplier <= self.max_multiplier,
            f"{where}: need 0 < min_multiplier <= max_multiplier",
        )
        _check(
            self.fallback_multiplier >= 1.0,
            f"{where}: fallback_multiplier must be >= 1 (the fallback is the conservative rule)",
        )
        _check(self.base_imf < self.imf_cap <= 1.0, f"{where}: need base_imf < imf_cap <= 1")
        _check(
            0 <= self.oi_lower_usd < self.oi_upper_usd,
            f"{where}: need 0 <= oi_lower_usd < oi_upper_usd",
        )
        _check(0 < self.oi_imf_max <= self.imf_cap, f"{where}: oi_imf_max must be in (0, imf_cap]")
        _check(self.size_imf_factor >= 0, f"{where}: size_imf_factor must be >= 0")
        _check(self.size_reference_usd > 0, f"{where}: size_reference_usd must be > 0")
        _check(self.fallback_sigma > 0, f"{where}: fallback_sigma must be > 0")
        _check(self.stress_sigma_floor >= 0, f"{where}: stress_sigma_floor must be >= 0")
        _check(
            self.default_spread_bps >= 0 and self.default_slippage_bps >= 0,
            f"{where}: liquidity defaults must be >= 0",
        )
        _check(self.standard_size_usd > 0, f"{where}: standard_size_usd must be > 0")
        _check(0 < self.max_slippage_bps < 10_000, f"{where}: max_slippage_bps in (0, 10000)")


@dataclass(frozen=True)
class OracleGuardConfig:
    """Oracle guard rails (Drift v2 style) with a stated liveness bound.

    A print is accepted if its confidence band is narrow enough and it lies within
    ``max_deviation`` of the reference: the median of the fresh reference feeds when at least
    ``min_reference_feeds`` of them are fresh, else the TWAP of accepted prints.

    **Liveness bound.** Without a reference quorum, ``reanchor_prints`` (N) consecutive
    prints that pass the confidence check and stay within a relative band ``reanchor_band``
    (x: ``max <= (1 + x) * min``) clear the guard at the N-th print, whatever the TWAP, and
    the TWAP re-anchors to it. With a quorum, a print within ``max_deviation`` of its median
    clears the guard at once. A guard that lasts ``alert_after_ms`` is logged as an alert;
    one that lasts ``fallback_after_ms`` switches the mark to the reference median (if a
    quorum is fresh) until the primary feed agrees with it again.

    Parameters
    ----------
    heartbeat_ms : int
        A price older than this is stale (120 s; a bar replay sets it to a bar or two).
    max_deviation : float
        Largest relative distance from the reference price (0.05).
    max_confidence_ratio : float
        Largest ``confidence / price`` band (0.01).
    twap_window_ms : int
        Time constant of the TWAP of accepted prices (1 h).
    reanchor_prints : int
        N of the liveness bound (5).
    reanchor_band : float
        x of the liveness bound (0.05).
    reference_heartbeat_ms : int
        A reference quote observed longer ago than this is ignored (120 s).
    min_reference_feeds : int
        Fresh reference feeds needed for a reference median (1).
    alert_after_ms, fallback_after_ms : int
        Escalation of a long guard: alert after 5 minutes, reference mark after 15.
    """

    heartbeat_ms: int = 120_000
    max_deviation: float = 0.05
    max_confidence_ratio: float = 0.01
    twap_window_ms: int = 3_600_000
    reanchor_prints: int = 5
    reanchor_band: float = 0.05
    reference_heartbeat_ms: int = 120_000
    min_reference_feeds: int = 1
    alert_after_ms: int = 300_000
    fallback_after_ms: int = 900_000

    def __post_init__(self) -> None:
        _check(self.heartbeat_ms > 0, "OracleGuardConfig.heartbeat_ms must be > 0")
        _check(0 < self.max_deviation < 1, "OracleGuardConfig.max_deviation must be in (0, 1)")
        _check(
            0 < self.max_confidence_ratio < 1,
            "OracleGuardConfig.max_confidence_ratio must be in (0, 1)",
        )
        _check(self.twap_window_ms > 0, "OracleGuardConfig.twap_window_ms must be > 0")
        _check(self.reanchor_prints >= 2, "OracleGuardConfig.reanchor_prints must be >= 2")
        _check(0 < self.reanchor_band < 1, "OracleGuardConfig.reanchor_band must be in (0, 1)")
        _check(self.reference_heartbeat_ms > 0, "reference_heartbeat_ms must be > 0")
        _check(self.min_reference_feeds >= 1, "min_reference_feeds must be >= 1")
        _check(
            0 < self.alert_after_ms <= self.fallback_after_ms,
            "OracleGuardConfig: need 0 < alert_after_ms <= fallback_after_ms",
        )


@dataclass(frozen=True)
class MarkConfig:
    """The mark price: the guarded oracle plus a bounded basis learned from traded prices.

    ``mark = oracle + clip(basis, +/- basis_cap * oracle)``. Each fill at a price the
    counterparties set (not at the mark) moves the basis toward ``price - oracle`` by
    ``basis_weight``; the basis decays linearly to zero over ``basis_window_ms`` without
    such fills. Margin, equity, funding and liquidation use the mark; the guard uses the
    oracle. ``max_trade_deviation`` bounds a trade price around the mark, so wash trades at
    absurd prices cannot move value between accounts.
    """

    basis_cap: float = 0.005
    basis_weight: float = 0.1
    basis_window_ms: int = 3_600_000
    max_trade_deviation: float = 0.02

    def __post_init__(self) -> None:
        _check(0 <= self.basis_cap < 0.1, "MarkConfig.basis_cap must be in [0, 0.1)")
        _check(0 <= self.basis_weight <= 1, "MarkConfig.basis_weight must be in [0, 1]")
        _check(self.basis_window_ms > 0, "MarkConfig.basis_window_ms must be > 0")
        _check(0 < self.max_trade_deviation < 0.5, "MarkConfig.max_trade_deviation in (0, 0.5)")


@dataclass(frozen=True)
class FeeConfig:
    """Trading fees and order limits.

    ``taker_fee_rate`` (5 bps) is charged to the taker on traded notional, ``maker_fee_rate``
    (0) to the counterparty. An order worth less than ``min_order_notional_usd`` (1 USD) is
    refused: below a micro-USD of value a fill would book no cost and no fee.
    """

    taker_fee_rate: float = 0.0005
    maker_fee_rate: float = 0.0
    min_order_notional_usd: float = 1.0

    def __post_init__(self) -> None:
        _check(0 <= self.taker_fee_rate < 0.01, "FeeConfig.taker_fee_rate must be in [0, 0.01)")
        _check(0 <= self.maker_fee_rate < 0.01, "FeeConfig.maker_fee_rate must be in [0, 0.01)")
        _check(self.min_order_notional_usd > 0, "FeeConfig.min_order_notional_usd must be > 0")


@dataclass(frozen=True)
class LiquidationConfig:
    """Liquidation waterfall parameters (Hyperliquid / dYdX style).

    Parameters
    ----------
    penalty_rate : float
        Penalty on liquidated notional, paid from remaining equity only (1%).
    max_step_fraction : float
        Largest fraction of a bucket closed by one partial step (0.2, as Hyperliquid).
    cooldown_ms : int
        Minimum time between two partial steps on one bucket (30 s).
    health_buffer : float
        A partial step aims at ``equity >= (1 + health_buffer) * MM`` (0.1).
    min_partial_notional_usd : float
        Buckets with less gross notional are closed in full (10 000 USD).
    emergency_health : float
        Below ``equity / MM`` of this, the rate limit is skipped and the bucket closed out
        in full (0.5).
    insurance_cap_per_event_usd : float
        Most the insurance fund pays for one bucket's bad debt (5 000 000 USD).
    """

    penalty_rate: float = 0.01
    max_step_fraction: float = 0.2
    cooldown_ms: int = 30_000
    health_buffer: float = 0.1
    min_partial_notional_usd: float = 10_000.0
    emergency_health: float = 0.5
    insurance_cap_per_event_usd: float = 5_000_000.0

    def __post_init__(self) -> None:
        _check(0 <= self.penalty_rate < 0.1, "LiquidationConfig.penalty_rate in [0, 0.1)")
        _check(0 < self.max_step_fraction <= 1, "LiquidationConfig.max_step_fraction in (0, 1]")
        _check(self.cooldown_ms >= 0, "LiquidationConfig.cooldown_ms must be >= 0")
        _check(self.health_buffer >= 0, "LiquidationConfig.health_buffer must be >= 0")
        _check(self.min_partial_notional_usd >= 0, "min_partial_notional_usd must be >= 0")
        _check(0 <= self.emergency_health < 1, "LiquidationConfig.emergency_health in [0, 1)")
        _check(self.insurance_cap_per_event_usd >= 0, "insurance_cap_per_event_usd must be >= 0")


@dataclass(frozen=True)
class InsuranceConfig:
    """Insurance-fund governance: a bounded rule on coverage = fund / stressed loss.

    Below ``target_coverage`` the fund's share of the penalty and the fee add-on step up;
    above ``comfort_coverage`` they step down; each stays in its bounds.
    """

    initial_fund_share: float = 0.5
    fund_share_min: float = 0.2
    fund_share_max: float = 0.9
    share_step: float = 0.1
    fee_addon_max_bps: float = 5.0
    fee_addon_step_bps: float = 1.0
    target_coverage: float = 1.0
    comfort_coverage: float = 2.0
    stress_quantile: float = 0.99
    history_size: int = 10_000

    def __post_init__(self) -> None:
        _check(
            0 <= self.fund_share_min <= self.initial_fund_share <= self.fund_share_max <= 1,
            "InsuranceConfig: need 0 <= fund_share_min <= initial_fund_share"
            " <= fund_share_max <= 1",
        )
        _check(self.share_step > 0, "InsuranceConfig.share_step must be > 0")
        _check(0 <= self.fee_addon_max_bps < 100, "InsuranceConfig.fee_addon_max_bps in [0, 100)")
        _check(self.fee_addon_step_bps > 0, "InsuranceConfig.fee_addon_step_bps must be > 0")
        _check(
            0 < self.target_coverage < self.comfort_coverage,
            "InsuranceConfig: need 0 < target_coverage < comfort_coverage",
        )
        _check(0.5 <= self.stress_quantile < 1, "InsuranceConfig.stress_quantile in [0.5, 1)")
        _check(self.history_size >= 1, "InsuranceConfig.history_size must be >= 1")


@dataclass(frozen=True)
class PortfolioMarginConfig:
    """Portfolio margin: a price x volatility scenario grid (SPAN 2 / Prisma style).

    Parameters
    ----------
    price_levels : tuple of float
        Price shocks in units of each asset's (multiplier-scaled) sigma along each joint
        direction (the columns of the correlation matrix and its principal components).
    vol_levels : tuple of float
        Volatility states; each scales the price shock and the close-out liquidity cost.
    correlation : tuple of tuple of float or None
        Correlation matrix in the order of ``EngineConfig.assets``; None is the identity.
    floor_fraction : float
        Stress floor: portfolio IM is at least this fraction of the standard IM (0.3).
    """

    price_levels: tuple[float, ...] = (-3.0, -2.0, -1.0, 0.0, 1.0, 2.0, 3.0)
    vol_levels: tuple[float, ...] = (0.75, 1.0, 1.5)
    correlation: tuple[tuple[float, ...], ...] | None = None
    floor_fraction: float = 0.3

    def __post_init__(self) -> None:
        _check(len(self.price_levels) > 0, "PortfolioMarginConfig.price_levels is empty")
        _check(
            len(self.vol_levels) > 0 and all(v > 0 for v in self.vol_levels),
            "PortfolioMarginConfig.vol_levels must be positive",
        )
        _check(0 < self.floor_fraction <= 1, "PortfolioMarginConfig.floor_fraction in (0, 1]")


@dataclass(frozen=True)
class EngineConfig:
    """Everything that parameterises an :class:`~liquidation.engine.Engine`.

    Parameters
    ----------
    assets : tuple of AssetConfig
        The tradable perpetuals, in a fixed order (the order of scan arrays and correlation).
    ramp_ms : int
        Multiplier ramp: when a multiplier rises, existing positions' maintenance follows it
        linearly over this time (8 h); new positions pay it at once.
    vault : str
        Account of the liquidity vault: the default counterparty of every trade, the market
        that partial liquidations and close-outs trade against, and the backstop that takes
        over a bankrupt position before ADL (Hyperliquid's HLP). It is an ordinary account
        with its own collateral and margin; it takes a fill only if its margin allows.
    max_funding_rate : float
        Largest absolute funding rate per settlement (0.04).
    max_ramp_classes : int
        Most distinct ramp classes kept per asset (8); beyond, the two closest merge upward.
    options : OptionsConfig
        Option portfolio margin and Greek limits (:mod:`liquidation.options`).
    breaker : CircuitBreakerConfig or None
        Price bands and volatility halts as engine events (:mod:`liquidation.circuit_breaker`);
        ``None`` (the default) turns them off.
    """

    assets: tuple[AssetConfig, ...]
    oracle: OracleGuardConfig = field(default_factory=OracleGuardConfig)
    mark: MarkConfig = field(default_factory=MarkConfig)
    fees: FeeConfig = field(default_factory=FeeConfig)
    liquidation: LiquidationConfig = field(default_factory=LiquidationConfig)
    insurance: InsuranceConfig = field(default_factory=InsuranceConfig)
    portfolio: PortfolioMarginConfig = field(default_factory=PortfolioMarginConfig)
    ramp_ms: int = 8 * 3_600_000
    vault: str = "vault"
    max_funding_rate: float = 0.04
    max_ramp_classes: int = 8
    options: OptionsConfig = field(default_factory=OptionsConfig)
    breaker: CircuitBreakerConfig | None = None

    def __post_init__(self) -> None:
        symbols = [a.symbol for a in self.assets]
        _check(len(symbols) > 0, "EngineConfig.assets is empty")
        _check(len(set(symbols)) == len(symbols), f"EngineConfig.assets repeats: {symbols}")
        _check(self.ramp_ms >= 0, "EngineConfig.ramp_ms must be >= 0")
        _check(bool(self.vault) and ":" not in self.vault, "EngineConfig.vault: account id")
        _check(0 < self.max_funding_rate < 1, "EngineConfig.max_funding_rate in (0, 1)")
        _check(self.max_ramp_classes >= 3, "EngineConfig.max_ramp_classes must be >= 3")
        corr = self.portfolio.correlation
        if corr is not None:
            n = len(symbols)
            _check(
                len(corr) == n and all(len(row) == n for row in corr),
                f"PortfolioMarginConfig.correlation must be {n}x{n} (one row per asset)",
            )
            for i in range(n):
                _check(abs(corr[i][i] - 1.0) < 1e-12, "correlation diagonal must be 1")
                for j in range(n):
                    _check(abs(corr[i][j] - corr[j][i]) < 1e-12, "correlation must be symmetric")
                    _check(-1 <= corr[i][j] <= 1, "correlation entries must be in [-1, 1]")

    @property
    def symbols(self) -> tuple[str, ...]:
        """Asset symbols in configuration order."""
        return tuple(a.symbol for a in self.assets)

    def asset(self, symbol: str) -> AssetConfig:
        """The configuration of ``symbol``; raises :class:`UnknownAssetError` if absent."""
        for a in self.assets:
            if a.symbol == symbol:
                return a
        raise UnknownAssetError(
            f"asset {symbol!r} is not configured (known: {', '.join(self.symbols)}); "
            "add an AssetConfig for it to EngineConfig.assets"
        )

    def asset_index(self, symbol: str) -> int:
        """Position of ``symbol`` in :attr:`assets`."""
        for i, a in enumerate(self.assets):
            if a.symbol == symbol:
                return i
        self.asset(symbol)  # raises the explanatory error
        raise AssertionError("unreachable")


def _check(condition: bool, message: str) -> None:
    if not condition:
        raise ConfigError(message)
