"""A documented, deterministic book of accounts for a demo venue.

``DEMO_TRADERS`` traders, numbered ``trader-000`` .., each deposits
``10,000 + 1,000 × (i mod 5)`` USD and opens one position on asset ``i mod n`` (the venue's
assets in order), long for even ``i // n`` and short for odd, at leverage
``LEVERAGE[i mod 7]`` of its deposit (2x .. 8x: every order meets initial margin under the
fallback multiplier 2.0, which allows 10x at base IMF 5%). The liquidity vault, the
counterparty of every trade, deposits ``VAULT_USD``; the insurance fund starts at
``FUND_USD``. Every command carries a ``demo-book:`` idempotency key, so seeding an engine
that already holds the book (a restarted venue) does nothing.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final

from liquidation.engine import Engine
from liquidation.money import MICRO, QTY_SCALE, usd

DEMO_TRADERS: Final[int] = 60
LEVERAGE: Final[tuple[int, ...]] = (2, 3, 4, 5, 6, 7, 8)
VAULT_USD: Final[int] = 50_000_000
FUND_USD: Final[int] = 1_000_000


def demo_deposit(i: int) -> int:
    """Deposit of trader ``i``, micro-USD."""
    return usd(10_000 + 1_000 * (i % 5))


def seed_demo_book(
    engine: Engine, prices: Mapping[str, int], *, ts: int, traders: int = DEMO_TRADERS
) -> int:
    """Deposit and open the demo book at ``prices`` (micro-USD, accepted prints at ``ts``).

    Returns
    -------
    int
        Commands applied now (0 when the book was already there).
    """
    assets = [s for s in engine.config.symbols if s in prices]
    done = 0

    def run(key: str, command: object) -> None:
        nonlocal done
        if key in engine.state.keys:
            return
        command()  # type: ignore[operator]
        done += 1

    vault = engine.config.vault
    run(
        "demo-book:vault",
        lambda: engine.deposit(vault, usd(VAULT_USD), ts=ts, key="demo-book:vault"),
    )
    run("demo-book:fund", lambda: engine.seed_insurance(usd(FUND_USD), ts=ts, key="demo-book:fund"))
    for i in range(traders):
        account = f"trader-{i:03d}"
        asset = assets[i % len(assets)]
        side = 1 if (i // len(assets)) % 2 == 0 else -1
        deposit = demo_deposit(i)
        lots = deposit * LEVERAGE[i % len(LEVERAGE)] * QTY_SCALE // prices[asset]
        dkey, tkey = f"demo-book:deposit:{account}", f"demo-book:trade:{account}"
        run(dkey, lambda a=account, d=deposit, k=dkey: engine.deposit(a, d, ts=ts, key=k))
        run(
            tkey,
            lambda a=account, s=asset, q=side * lots, k=tkey: engine.trade(a, s, q, ts=ts, key=k),
        )
    return done


def book_notional_usd(engine: Engine) -> float:
    """Gross notional of the traders' positions at the engine's marks, USD (for printing)."""
    view = engine.view()
    total = 0
    for bucket in engine.state.buckets.values():
        if bucket.account == engine.config.vault:
            continue
        for asset, position in bucket.positions.items():
            total += abs(position.lots) * view.price(asset) // QTY_SCALE
    return total / MICRO
