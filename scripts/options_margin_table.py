"""Print how option portfolio margin responds to the vol shock and the published sigma.

Book: short one 30-day at-the-money BTC straddle (60,000 USD forward, 60% implied vol),
delta-hedged with the perpetual; and a short 30-day ATM call alone, the perpetual hedge
alone and the two together. Margin inputs: 24 h sigma 3% (multiplier 1), liquidity cost
7 bps, the default :class:`~liquidation.options.config.OptionsMarginConfig`.
Run: ``.venv/bin/python scripts/options_margin_table.py``.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from liquidation.options.config import OptionsMarginConfig
from liquidation.options.risk import OptionsMarket, build_grid, requirement, series_risk
from liquidation.options.series import SeriesArrays

YEAR_MS = 365 * 24 * 3_600_000
F, VOL, DAYS = 60_000.0, 0.6, 30


def market(sigma: float) -> OptionsMarket:
    annual = sigma * np.sqrt(365.0)
    return OptionsMarket(
        ts_ms=0, price=np.array([F]), sigma_horizon=np.array([sigma]),
        sigma_annual=np.array([annual]), forecast_vol=np.array([annual]),
        liquidity_cost=np.array([0.0007]), correlation=np.eye(1),
    )  # fmt: skip


def margin(m: OptionsMarket, config: OptionsMarginConfig, calls: float, puts: float, perp: float):
    series = SeriesArrays(
        np.array([0, 0]), np.array([F, F]), np.array([DAYS * YEAR_MS // 365] * 2),
        np.array([True, False]),
    )  # fmt: skip
    grid = build_grid(m, config)
    risk = series_risk(series, np.array([VOL, VOL]), m, grid, config)
    req = requirement(np.array([perp * F]), np.array([calls, puts]), risk, m, grid, config)
    return req, risk


def main() -> None:
    base = OptionsMarginConfig()
    _, risk = margin(market(0.03), base, -1, -1, 0)
    hedge = float(risk.greeks.delta.sum())
    print(
        f"short 1 ATM straddle, {DAYS} d, {VOL:.0%} vol, F = {F:,.0f}: premium "
        f"{risk.value.sum():,.0f} USD, hedged with {hedge:+.4f} perp"
    )
    print("\nmaintenance (USD) of the delta-hedged short straddle")
    print("vol_shock_scale | sigma 24h: 1.5%      3%      4.5%      6%")
    for scale in (0.0, 0.1, 0.25, 0.5):
        config = replace(base, vol_shock_scale=scale)
        row = [
            margin(market(s), config, -1, -1, hedge)[0].maintenance
            for s in (0.015, 0.03, 0.045, 0.06)
        ]
        print(f"{scale:15.2f} | " + "  ".join(f"{v:9,.0f}" for v in row))
    m = market(0.03)
    call_only, r = margin(m, base, -1, 0, 0)
    delta = float(r.greeks.delta[0])
    perp_only, _ = margin(m, base, 0, 0, delta)
    both, _ = margin(m, base, -1, 0, delta)
    print(
        f"\nshort ATM call {call_only.maintenance:,.0f} + perp hedge ({delta:+.3f}) "
        f"{perp_only.maintenance:,.0f} = {call_only.maintenance + perp_only.maintenance:,.0f}; "
        f"together {both.maintenance:,.0f}"
    )
    far = SeriesArrays(
        np.array([0]), np.array([2.5 * F]), np.array([7 * YEAR_MS // 365]), np.array([True])
    )
    grid = build_grid(m, base)
    far_risk = series_risk(far, np.array([VOL]), m, grid, base)
    som = requirement(np.zeros(1), np.array([-1.0]), far_risk, m, grid, base)
    print(
        f"short 1 call at 2.5x the forward, 7 d: grid loss {som.worst_loss:,.2f}, "
        f"short-option minimum {som.short_minimum:,.0f} -> maintenance {som.maintenance:,.0f}"
    )


if __name__ == "__main__":
    main()
