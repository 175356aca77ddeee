"""Seeded random-command fuzzer of the liquidation engine, with every invariant checked.

A *sequence* drives one fresh engine, seeded by ``seed``, through random commands: trades
against the vault and between accounts (some at set prices, some isolated, some too large),
closes, deposits and withdrawals, price moves (drift, confirmed and unconfirmed jumps, slides,
single wild prints, wide confidence bands), reference-feed quotes with their own timestamps,
stale feeds, time jumps past the heartbeat and the guard escalation, funding, snapshots
(tightening, republished, stale, halted, expiring, out of bounds), margin-mode switches,
insurance reviews and liquidations, plus deliberately invalid commands (NaN and float inputs,
wild funding rates, times out of order, repeated idempotency keys, self-liquidation) that
must be refused.

After every command it checks:

* a refused command changed nothing (same state digest, same log);
* the invariants of :mod:`liquidation.invariants` (ledger identity, matched open interest,
  zero-sum PnL and funding, fund >= 0, no debt without positions, scan == exact check);
* the independent audit of :mod:`liquidation.audit` (every fill recomputed);

and every ``replay_every`` commands and at the end, that replaying the log gives the live
state's digest. Everything is deterministic in the seed, so a failure is reproduced by
running its sequence again (:func:`run_sequence`).

With ``options=True`` (:class:`OptionsDriver`, :data:`FUZZ_OPTIONS_CONFIG`) the mix also lists
option series and implied-vol surfaces, trades options between accounts and with the vault
(some beyond the accounts' margin), closes them, settles expiries, and runs Greek-limit
deleveraging under tight limits; the liquidations then run on the joint price x vol margin.
The perpetual-only sequences are unchanged (same seeds, same commands).
"""

from __future__ import annotations

import math
import random
import time
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from typing import Any

from liquidation.audit import LedgerAudit
from liquidation.config import (
    AssetConfig,
    EngineConfig,
    FeeConfig,
    LiquidationConfig,
    OracleGuardConfig,
    PortfolioMarginConfig,
)
from liquidation.engine import Engine
from liquidation.errors import (
    ClockError,
    DuplicateCommandError,
    GuardedAssetError,
    InputError,
    InsufficientBalanceError,
    InsufficientMarginError,
    NotLiquidatableError,
    RateLimitedError,
    SnapshotValidationError,
    StaleOracleError,
    UnknownAccountError,
    WithdrawalRestrictedError,
)
from liquidation.invariants import violations
from liquidation.money import MICRO, QTY_SCALE
from liquidation.options.config import GreekLimits, OptionsConfig
from liquidation.options.series import OptionSeries
from liquidation.options.surface import VolSurface

#: The engine configuration the fuzzer drives: three correlated assets, fees, a short ramp,
#: a small insurance cap, open-interest scaling that binds, and two-feed reference quorums.
FUZZ_CONFIG = EngineConfig(
    assets=(
        AssetConfig("BTCUSDT", size_imf_factor=0.01, oi_lower_usd=2e6, oi_upper_usd=2e7),
        AssetConfig("ETHUSDT", size_imf_factor=0.01),
        AssetConfig("SOLUSDT"),
    ),
    oracle=OracleGuardConfig(
        heartbeat_ms=120_000,
        reanchor_prints=4,
        min_reference_feeds=2,
        alert_after_ms=180_000,
        fallback_after_ms=360_000,
    ),
    fees=FeeConfig(taker_fee_rate=0.0005, maker_fee_rate=0.0001),
    liquidation=LiquidationConfig(
        cooldown_ms=10_000, insurance_cap_per_event_usd=3_000.0, min_partial_notional_usd=5_000.0
    ),
    portfolio=PortfolioMarginConfig(
        correlation=((1.0, 0.8, 0.6), (0.8, 1.0, 0.7), (0.6, 0.7, 1.0))
    ),
    ramp_ms=600_000,
)
#: The options mode: the same engine with Greek limits tight enough for the fuzz to breach.
FUZZ_OPTIONS_CONFIG = replace(
    FUZZ_CONFIG,
    options=OptionsConfig(limits=GreekLimits(delta_usd=150_000, gamma_usd=20_000, vega_usd=4_000)),
)
START_PRICES = {"BTCUSDT": 50_000.0, "ETHUSDT": 2_500.0, "SOLUSDT": 150.0}
ACCOUNTS = ("a0", "a1", "a2", "a3", "a4", "a5")
FEEDS = ("r1", "r2", "r3")
#: Refusals a valid command may meet: the engine said no, and must have changed nothing.
REFUSALS: tuple[type[Exception], ...] = (
    InsufficientMarginError,
    InsufficientBalanceError,
    WithdrawalRestrictedError,
    GuardedAssetError,
    StaleOracleError,
    UnknownAccountError,
    NotLiquidatableError,
    RateLimitedError,
    SnapshotValidationError,
    InputError,
)


@dataclass(frozen=True)
class Command:
    """One engine call. ``must_fail`` lists the errors a deliberately invalid call must raise."""

    name: str
    args: tuple[Any, ...] = ()
    kwargs: dict[str, Any] = field(default_factory=dict)
    must_fail: tuple[type[Exception], ...] = ()

    def apply(self, engine: Engine) -> Any:
        """Call the command on ``engine``."""
        return getattr(engine, self.name)(*self.args, **self.kwargs)

    def __str__(self) -> str:
        parts = [repr(a) for a in self.args] + [f"{k}={v!r}" for k, v in self.kwargs.items()]
        return f"{self.name}({', '.join(parts)})"


@dataclass(frozen=True)
class FuzzFailure:
    """An invariant that broke, or an error that should not happen, and how to reproduce it."""

    seed: int
    step: int
    command: str
    message: str


@dataclass
class FuzzReport:
    """Totals of a fuzz run. ``outcomes`` counts each command kind as accepted or refused."""

    sequences: int = 0
    commands: int = 0
    failures: list[FuzzFailure] = field(default_factory=list)
    outcomes: Counter[str] = field(default_factory=Counter)
    events: Counter[str] = field(default_factory=Counter)
    seconds: float = 0.0

    def merge(self, other: FuzzReport) -> None:
        """Add ``other``'s totals to this report."""
        self.sequences += other.sequences
        self.commands += other.commands
        self.failures.extend(other.failures)
        self.outcomes.update(other.outcomes)
        self.events.update(other.events)
        self.seconds += other.seconds

    def summary(self) -> str:
        """A few lines for a log or a terminal."""
        liquidations = Counter(
            {k.split(":", 1)[1]: v for k, v in self.events.items() if k.startswith("step:")}
        )
        lines = [
            f"{self.commands:,} commands in {self.sequences:,} sequences, "
            f"{len(self.failures)} invariant failures, {self.seconds:.1f} s",
            f"accepted {sum(v for k, v in self.outcomes.items() if k.endswith(':ok')):,}, "
            f"refused {sum(v for k, v in self.outcomes.items() if k.endswith(':refused')):,}, "
            f"invalid refused {self.outcomes['invalid:refused']:,}",
            "liquidation steps: "
            + ", ".join(f"{k} {v:,}" for k, v in sorted(liquidations.items())),
            f"ADL fills {self.events['fill:adl']:,}, backstop fills "
            f"{self.events['fill:backstop']:,}, socialized losses "
            f"{self.events['socialize']:,}, re-anchors {self.events['reanchor']:,}, "
            f"guard alerts {self.events['guard_alert']:,}, "
            f"reference fallbacks {self.events['fallback']:,}",
        ]
        return "\n".join(lines)


class Driver:
    """Generates and runs the commands of one sequence (see the module docstring).

    Parameters
    ----------
    seed : int
        Everything random in the sequence derives from it.
    config : EngineConfig
        The engine configuration (default :data:`FUZZ_CONFIG`).
    engine : Engine, optional
        Drive this engine (e.g. one writing to a store) instead of a fresh one.
    """

    def __init__(
        self, seed: int, config: EngineConfig = FUZZ_CONFIG, engine: Engine | None = None
    ) -> None:
        self.rng = random.Random(seed)
        self.config = config
        self.engine = engine if engine is not None else Engine(config)
        self.ts = 0
        self.level = {a.symbol: START_PRICES.get(a.symbol, 100.0) for a in config.assets}
        self.update_ids = {a.symbol: 0 for a in config.assets}
        self.keys: list[str] = []
        self._key_counter = 0
        # A primary feed gone wrong: it prints ``level * offset`` until ``until_ms``.
        self.broken: dict[str, tuple[float, int]] = {}

    # -- the opening and the mix ------------------------------------------------------------
    def opening(self) -> list[Command]:
        """Prices, snapshots, the fund, the vault and the accounts' first deposits."""
        rng = self.rng
        commands = []
        for symbol, level in self.level.items():
            commands.append(Command("update_price", (symbol, _micro(level)), {"ts": 0}))
            commands.append(self._snapshot(symbol, 1.0, "ok", 86_400_000))
        commands.append(
            Command("seed_insurance", (rng.choice([500, 2_000, 20_000]) * MICRO,), {"ts": 0})
        )
        vault = rng.choice([30_000, 300_000, 3_000_000])
        commands.append(Command("deposit", (self.config.vault, vault * MICRO), {"ts": 0}))
        for account in ACCOUNTS:
            amount = rng.randint(2_000, 40_000) * MICRO + rng.randint(0, 999_999)
            commands.append(Command("deposit", (account, amount), {"ts": 0}))
        return commands

    def next_commands(self) -> list[Command]:
        """The next step's commands (usually one; a keeper sweep gives one per bucket)."""
        kinds = (
            ("trade", 24),
            ("close", 5),
            ("price", 20),
            ("reference", 5),
            ("advance", 8),
            ("deposit", 4),
            ("withdraw", 5),
            ("vault", 2),
            ("funding", 3),
            ("snapshot_step", 5),
            ("margin_mode", 2),
            ("review", 1),
            ("liquidate", 4),
            ("sweep", 6),
            ("invalid", 3),
        )
        kind = self.rng.choices([k for k, _ in kinds], [w for _, w in kinds])[0]
        return getattr(self, f"_{kind}")()

    # -- generators -------------------------------------------------------------------------
    def _trade(self) -> list[Command]:
        rng, engine = self.rng, self.engine
        account = rng.choice(ACCOUNTS)
        symbol = rng.choice(list(self.level))
        isolated = rng.random() < 0.2
        base = engine.state.buckets.get(account)
        if base is None:
            return self._deposit()
        money = max(base.balance, 1_000 * MICRO) / MICRO
        leverage = rng.choice([0.5, 2, 5, 10, 15, 19, 25, 40])
        lots = int(money * leverage / self.level[symbol] * QTY_SCALE * rng.uniform(0.2, 1.0))
        lots = max(lots, 1) * rng.choice([1, -1])
        kwargs: dict[str, Any] = {"ts": self.ts, "isolated": isolated}
        if isolated:
            kwargs["margin"] = rng.choice([0, int(money * rng.uniform(0.05, 0.5)) * MICRO])
        if rng.random() < 0.25:
            kwargs["counterparty"] = rng.choice([a for a in ACCOUNTS if a != account])
        if rng.random() < 0.2:
            kwargs["price"] = _micro(self.level[symbol] * (1 + rng.uniform(-0.025, 0.025)))
        kwargs["key"] = self._key()
        return [Command("trade", (account, symbol, lots), kwargs)]

    def _close(self) -> list[Command]:
        held = [
            (b.account, symbol, b.is_isolated)
            for b in self.engine.state.buckets.values()
            for symbol in b.positions
            if b.account != self.config.vault
        ]
        if not held:
            return self._trade()
        account, symbol, isolated = self.rng.choice(sorted(held))
        return [Command("close", (account, symbol), {"ts": self.ts, "isolated": isolated})]

    def _price(self) -> list[Command]:
        rng = self.rng
        guarded = [s for s, a in self.engine.state.assets.items() if a.guarded]
        # A live feed keeps printing: a guarded asset is printed more often.
        symbol = rng.choice(guarded if guarded and rng.random() < 0.6 else list(self.level))
        move = rng.choices(
            ["drift", "jump", "jump_confirmed", "slide", "spike", "wide"], [60, 6, 8, 14, 7, 5]
        )[0]
        level = self.level[symbol]
        kwargs: dict[str, Any] = {"ts": self.ts}
        if move == "drift":
            level *= 1 + rng.gauss(0, 0.006)
        elif move in ("jump", "jump_confirmed"):
            level *= 1 + rng.choice([1, -1]) * rng.uniform(0.03, 0.35)
        elif move == "slide":
            level *= 1 + rng.choice([1, -1]) * 0.015
        if move == "jump_confirmed":
            kwargs["references"] = {f: _micro(level * rng.uniform(0.999, 1.001)) for f in FEEDS[:2]}
        printed = level
        if move == "spike":
            printed = level * rng.choice([0.3, 0.6, 1.8, 3.0])
        if rng.random() < 0.03 and symbol not in self.broken:
            self.broken[symbol] = (
                rng.choice([0.8, 1.25]),
                self.ts + rng.randint(200_000, 1_500_000),
            )
        printed *= self._offset(symbol)
        if move == "wide":
            kwargs["confidence"] = _micro(level * 0.03)
        self.level[symbol] = max(level, 0.01)
        return [Command("update_price", (symbol, _micro(max(printed, 0.01))), kwargs)]

    def _reference(self) -> list[Command]:
        rng = self.rng
        symbol = rng.choice(list(self.level))
        feed = rng.choice(FEEDS)
        lag = rng.choice([0, 1_000, 30_000, 200_000])
        quote = self.level[symbol] * (1 + rng.gauss(0, 0.002))
        if rng.random() < 0.1:
            quote *= rng.choice([0.7, 1.4])  # a deviating feed
        observed = max(0, self.ts - lag)
        kwargs = {"ts": self.ts, "observed_ms": observed}
        return [Command("update_reference", (symbol, feed, _micro(quote)), kwargs)]

    def _advance(self) -> list[Command]:
        """Time passes; usually every feed prints again (a stale one guards its asset)."""
        rng = self.rng
        steps = [1_000, 5_000, 10_000, 30_000, 60_000, 150_000, 400_000, 3_600_000]
        self.ts += rng.choices(steps, [20, 20, 20, 15, 10, 6, 5, 4])[0]
        commands = [Command("tick", (self.ts,))]
        for symbol in self.level:
            if rng.random() < 0.9:
                self.level[symbol] *= 1 + rng.gauss(0, 0.004)
                price = _micro(self.level[symbol])
                quotes = {f: price for f in FEEDS[:2]} if rng.random() < 0.3 else None
                kwargs = {"ts": self.ts, "references": quotes}
                printed = _micro(self.level[symbol] * self._offset(symbol))
                if printed != price:  # a broken primary: the references stay right
                    kwargs["references"] = {f: price for f in FEEDS[:2]}
                commands.append(Command("update_price", (symbol, printed), kwargs))
        return commands

    def _offset(self, symbol: str) -> float:
        """The broken primary feed's error factor for ``symbol`` now (1 when it is sound)."""
        offset, until = self.broken.get(symbol, (1.0, 0))
        if self.ts >= until:
            self.broken.pop(symbol, None)
            return 1.0
        return offset

    def _deposit(self) -> list[Command]:
        account = self.rng.choice(ACCOUNTS)
        amount = self.rng.randint(100, 20_000) * MICRO + self.rng.randint(0, 999_999)
        return [Command("deposit", (account, amount), {"ts": self.ts, "key": self._key()})]

    def _withdraw(self) -> list[Command]:
        account = self.rng.choice(ACCOUNTS)
        bucket = self.engine.state.buckets.get(account)
        cap = bucket.balance if bucket is not None and bucket.balance > 0 else MICRO
        amount = max(1, int(cap * self.rng.uniform(0.01, 1.1)))
        return [Command("withdraw", (account, amount), {"ts": self.ts})]

    def _vault(self) -> list[Command]:
        vault = self.config.vault
        if self.rng.random() < 0.5:
            amount = self.rng.choice([10_000, 100_000, 1_000_000]) * MICRO
            return [Command("deposit", (vault, amount), {"ts": self.ts})]
        bucket = self.engine.state.buckets.get(vault)
        balance = bucket.balance if bucket is not None else 0
        amount = max(1, int(max(balance, 1) * self.rng.uniform(0.1, 1.0)))
        return [Command("withdraw", (vault, amount), {"ts": self.ts})]

    def _funding(self) -> list[Command]:
        symbol = self.rng.choice(list(self.level))
        rate = self.rng.uniform(-0.003, 0.003)
        return [Command("apply_funding", (symbol, rate), {"ts": self.ts})]

    def _snapshot(self, symbol: str, multiplier: float, status: str, valid_ms: int) -> Command:
        self.update_ids[symbol] += 1
        return Command(
            "apply_snapshot",
            (_snapshot(symbol, self.update_ids[symbol], multiplier, status, self.ts, valid_ms),),
            {"ts": self.ts},
        )

    def _snapshot_step(self) -> list[Command]:
        return [self._snapshot_change()]

    def _snapshot_change(self) -> Command:
        rng = self.rng
        symbol = rng.choice(list(self.level))
        multiplier = rng.choice([0.5, 0.8, 1.0, 1.0, 1.5, 2.0, 3.0, 6.0])
        status = rng.choice(["ok", "ok", "ok", "fallback", "stale", "halted"])
        valid_ms = rng.choice([120_000, 600_000, 3_600_000, 86_400_000])
        return self._snapshot(symbol, multiplier, status, valid_ms)

    def _margin_mode(self) -> list[Command]:
        account = self.rng.choice(ACCOUNTS)
        flag = self.rng.random() < 0.6
        return [Command("set_margin_mode", (account, flag), {"ts": self.ts})]

    def _review(self) -> list[Command]:
        stressed = self.rng.choice([None, 0, 1_000 * MICRO, 50_000 * MICRO])
        return [Command("review_insurance", (), {"ts": self.ts, "stressed_loss": stressed})]

    def _liquidate(self) -> list[Command]:
        buckets = sorted(b for b, x in self.engine.state.buckets.items() if x.positions)
        if not buckets:
            return self._price()
        target = self.rng.choice(buckets)
        return [Command("liquidate", (target,), {"keeper": "keeper", "ts": self.ts})]

    def _sweep(self) -> list[Command]:
        """A keeper's pass: liquidate what the scan and exact check flag, one command each."""
        flagged = self.engine.liquidatable(self.ts)
        if not flagged:
            return self._advance()
        return [Command("liquidate", (b,), {"keeper": "keeper", "ts": self.ts}) for b in flagged]

    def _invalid(self) -> list[Command]:
        rng, ts = self.rng, self.ts
        symbol = rng.choice(list(self.level))
        account = rng.choice(ACCOUNTS)
        choices: list[Command] = [
            Command("update_price", (symbol, math.nan), {"ts": ts}, (InputError,)),
            Command("update_price", (symbol, -5), {"ts": ts}, (InputError,)),
            Command("update_price", (symbol, MICRO), {"ts": ts, "confidence": -1}, (InputError,)),
            Command("trade", (account, symbol, 0.5 * QTY_SCALE), {"ts": ts}, (InputError,)),
            Command("deposit", (account, 1.5), {"ts": ts}, (InputError,)),
            Command(
                "apply_funding",
                (symbol, rng.choice([3.0, math.nan, -math.inf])),
                {"ts": ts},
                (InputError,),
            ),
            Command("deposit", (account, MICRO), {"ts": 2**63}, (InputError,)),
            Command("withdraw", (f"{account}:{symbol}", MICRO), {"ts": ts}, (InputError,)),
            Command(
                "trade",
                (account, symbol, QTY_SCALE),
                {"ts": ts, "counterparty": account},
                (InputError,),
            ),
        ]
        if ts > 0:
            choices.append(Command("deposit", (account, MICRO), {"ts": ts - 1}, (ClockError,)))
        if self.keys:
            used = rng.choice(self.keys)
            choices.append(
                Command(
                    "deposit", (account, MICRO), {"ts": ts, "key": used}, (DuplicateCommandError,)
                )
            )
        held = sorted(
            b for b, x in self.engine.state.buckets.items() if x.positions and ":" not in b
        )
        if held:
            own = rng.choice(held)
            choices.append(Command("liquidate", (own,), {"keeper": own, "ts": ts}, (InputError,)))
        return [rng.choice(choices)]

    def _key(self) -> str | None:
        if self.rng.random() < 0.5:
            return None
        self._key_counter += 1
        return f"k{self._key_counter}"

    def note_success(self, command: Command) -> None:
        """Remember what an accepted command used (its idempotency key)."""
        key = command.kwargs.get("key")
        if key is not None:
            self.keys.append(key)


class OptionsDriver(Driver):
    """:class:`Driver` plus option commands (see the module docstring)."""

    EXPIRIES_MS = (600_000, 1_800_000, 7_200_000)

    def __init__(self, seed: int, config: EngineConfig = FUZZ_OPTIONS_CONFIG) -> None:
        super().__init__(seed, config)

    def opening(self) -> list[Command]:
        """The perpetual opening, then a first set of series."""
        return super().opening() + self._list()

    def next_commands(self) -> list[Command]:
        """The perpetual mix two times in three, option commands otherwise."""
        if self.rng.random() < 2 / 3:
            return super().next_commands()
        kinds = (
            ("option_trade", 12),
            ("option_close", 2),
            ("settle", 3),
            ("greeks", 3),
            ("surface", 1),
            ("list", 1),
            ("sweep", 3),
        )
        kind = self.rng.choices([k for k, _ in kinds], [w for _, w in kinds])[0]
        return getattr(self, f"_{kind}")()

    def _listed(self) -> list[str]:
        state = self.engine.state.options
        return sorted(n for n, s in state.series.items() if s.expiry_ms > self.ts)

    def _list(self) -> list[Command]:
        rng, commands = self.rng, []
        symbols = list(self.level)[:2]
        for symbol in symbols:
            expiry = self.ts + rng.choice(self.EXPIRIES_MS)
            for moneyness in rng.sample([0.9, 0.97, 1.0, 1.03, 1.1], 2):
                strike = _micro(self.level[symbol] * moneyness)
                for is_call in (True, False):
                    series = OptionSeries(symbol, expiry, strike, is_call)
                    commands.append(Command("list_option", (series,), {"ts": self.ts}))
        return commands

    def _surface(self) -> list[Command]:
        rng = self.rng
        symbol = rng.choice(list(self.level)[:2])
        surface = VolSurface(
            atm_vol=rng.uniform(0.3, 1.2),
            skew=rng.uniform(-0.3, 0.1),
            curvature=rng.uniform(0, 0.4),
        )
        return [Command("set_vol_surface", (symbol, surface), {"ts": self.ts})]

    def _option_trade(self) -> list[Command]:
        rng, engine = self.rng, self.engine
        listed = self._listed()
        if not listed:
            return self._list()
        name = rng.choice(listed)
        series = engine.state.options.series[name]
        account = rng.choice(ACCOUNTS)
        base = engine.state.buckets.get(account)
        if base is None:
            return self._deposit()
        try:
            mark = engine.option_mark(name, self.ts)
        except (StaleOracleError, GuardedAssetError):
            return self._advance()
        money = max(base.balance, 1_000 * MICRO) / MICRO
        leverage = rng.choice([0.2, 0.5, 1, 3, 8])
        lots = max(1, int(money * leverage / self.level[series.underlying] * QTY_SCALE))
        premium = max(0, round(mark * rng.uniform(0.97, 1.03)))
        other = (
            rng.choice([a for a in ACCOUNTS if a != account])
            if rng.random() < 0.4
            else self.config.vault
        )
        buyer, seller = (account, other) if rng.random() < 0.5 else (other, account)
        kwargs = {"ts": self.ts, "seller": seller, "key": self._key()}
        return [Command("trade_option", (buyer, name, lots, premium), kwargs)]

    def _option_close(self) -> list[Command]:
        held = sorted(
            b for b, x in self.engine.state.buckets.items() if x.options and b != self.config.vault
        )
        if not held:
            return self._option_trade()
        return [Command("close_options", (self.rng.choice(held),), {"ts": self.ts})]

    def _settle(self) -> list[Command]:
        listed = self.engine.state.options.series.values()
        due = sorted({s.expiry_ms for s in listed if s.expiry_ms <= self.ts})
        if not due:
            # Time passes towards the nearest expiry, prices follow.
            return self._advance()
        return [Command("settle_options", (due[0],), {"ts": self.ts}), *self._list()]

    def _greeks(self) -> list[Command]:
        held = sorted(
            b for b, x in self.engine.state.buckets.items() if x.options and b != self.config.vault
        )
        if not held:
            return self._option_trade()
        account = self.rng.choice(held)
        return [Command("deleverage_greeks", (account,), {"keeper": "keeper", "ts": self.ts})]


def run_sequence(
    seed: int, steps: int, replay_every: int = 50, *, options: bool = False
) -> FuzzReport:
    """Run one sequence of about ``steps`` commands and check everything after each.

    ``options`` drives the mix with option commands (:class:`OptionsDriver`).
    """
    started = time.perf_counter()
    report = FuzzReport(sequences=1)
    driver = OptionsDriver(seed) if options else Driver(seed)
    engine = driver.engine
    audit = LedgerAudit()
    audited = 0

    def fail(step: int, command: Command, message: str) -> None:
        report.failures.append(FuzzFailure(seed, step, str(command), message))

    plan: list[Command] = driver.opening()
    step = 0
    while step < steps:
        if not plan:
            plan = driver.next_commands()
        command = plan.pop(0)
        step += 1
        report.commands += 1
        kind = "invalid" if command.must_fail else command.name
        before, size = engine.digest(), len(engine.log)
        try:
            command.apply(engine)
        except command.must_fail or REFUSALS as exc:  # noqa: B030 (a tuple of classes)
            report.outcomes[f"{kind}:refused"] += 1
            if len(engine.log) != size or engine.digest() != before:
                fail(step, command, f"refused ({type(exc).__name__}) but the state changed")
                break
        except Exception as exc:
            fail(step, command, f"unexpected {type(exc).__name__}: {exc}")
            break
        else:
            if command.must_fail:
                fail(step, command, "an invalid command was accepted")
                break
            report.outcomes[f"{kind}:ok"] += 1
            driver.note_success(command)
        audited = _audit(engine, audit, audited, report)
        problems = violations(engine) + audit.compare(engine.state)
        if problems:
            fail(step, command, "; ".join(problems[:5]))
            break
        if (
            step % replay_every == 0
            and Engine.replay(list(engine.log), engine.config).digest() != engine.digest()
        ):
            fail(step, command, "replaying the log does not give the live state")
            break
    if (
        not report.failures
        and Engine.replay(list(engine.log), engine.config).digest() != engine.digest()
    ):
        report.failures.append(FuzzFailure(seed, step, "end", "final replay digest differs"))
    report.seconds = time.perf_counter() - started
    return report


def _audit(engine: Engine, audit: LedgerAudit, audited: int, report: FuzzReport) -> int:
    """Feed the audit the commands committed since ``audited`` events; count event kinds."""
    new = engine.log.since(audited)
    command: list[Any] = []
    for event in new:
        command.append(event)
        if event.last:
            audit.consume(command)
            command = []
        _count(event, report)
    return audited + len(new)


def _count(event: Any, report: FuzzReport) -> None:
    kind = event.kind
    if kind == "fill":
        report.events[f"fill:{event.data['reason']}"] += 1
    elif kind == "liquidation":
        report.events[f"step:{event.data['step']}"] += 1
    elif kind == "price" and event.data["reanchored"]:
        report.events["reanchor"] += 1
    elif kind == "mark_source" and event.data["source"] == "reference":
        report.events["fallback"] += 1
    elif kind in ("socialize", "guard_alert", "option_expiry", "greek_breach"):
        report.events[kind] += 1
    elif kind == "option_fill":
        report.events[f"option_fill:{event.data['reason']}"] += 1


def run(
    seeds: Iterable[int],
    steps: int,
    progress: Callable[[FuzzReport], None] | None = None,
    *,
    options: bool = False,
) -> FuzzReport:
    """Run a sequence per seed; ``progress`` is called with the running totals after each."""
    total = FuzzReport()
    for seed in seeds:
        total.merge(run_sequence(seed, steps, options=options))
        if progress is not None:
            progress(total)
    return total


def _micro(usd_price: float) -> int:
    return max(1, round(usd_price * MICRO))


def _snapshot(
    symbol: str, update_id: int, multiplier: float, status: str, as_of_ms: int, valid_ms: int
) -> dict[str, Any]:
    """A RiskSnapshot v1 dict with the fields the core reads."""
    from datetime import UTC, datetime

    def iso(ms: int) -> str:
        return datetime.fromtimestamp(ms / 1000, tz=UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")

    return {
        "schema": "dynamargin.risk/1",
        "asset": symbol,
        "update_id": update_id,
        "as_of": iso(as_of_ms),
        "valid_until": iso(as_of_ms + valid_ms),
        "horizon_hours": 24,
        "sigma": 0.04,
        "liquidity": {"spread_bps": 2.0, "slippage_bps": 10.0, "standard_size_usd": 1_000_000.0},
        "margin": {
            "multiplier": multiplier,
            "previous_multiplier": 1.0,
            "base_imf": 0.05,
            "base_mmf": 0.03,
        },
        "status": status,
    }
