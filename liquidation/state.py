"""Engine state, the fold ``apply_event(state, event)`` and whole-command application.

Only this module mutates state. Each handler is plain integer bookkeeping of amounts the event
already carries, so folding the same log always gives the same state. The structure-of-arrays
:class:`~liquidation.scan.PositionBook` is a derived index kept in step by the same handlers.

A command is applied whole (:func:`apply_command`): its events are folded together, or, if it
ends in ``abort`` (a torn write closed on restart), not at all. A command is planned on a
:meth:`EngineState.fork`, a cheap copy-on-access view of the state, so validation and
planning never touch the live state.

Ledger (all micro-USD, cumulative)::

    deposits - withdrawals + realized_pnl + funding
        == sum(bucket balances) + insurance fund + fees + keeper_rewards + socialized_loss

where ``deposits`` include insurance-fund seeding, ``fees`` are base trading fees (the
governance fee add-on goes to the fund), ``keeper_rewards`` the keepers' share of penalties,
and ``socialized_loss = socialized_charged - socialized_credited``: haircuts charged to
position holders minus deficits credited to bankrupt buckets. In a matched book ``funding``
is always 0 and ``realized_pnl`` equals the entry cost of the open positions.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterator, MutableMapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from liquidation.accounts import Bucket, Position, split_bucket_id
from liquidation.circuit_breaker import BREAKER_HANDLERS, BreakerState
from liquidation.config import EngineConfig
from liquidation.errors import EventLogError
from liquidation.events import Event
from liquidation.options.engine_book import OPTION_HANDLERS, OptionsState
from liquidation.rules.oracle_guard import ReferenceQuote
from liquidation.rules.ramp import RampState
from liquidation.scan import PositionBook
from liquidation.snapshot import MarginParameters


@dataclass
class AssetState:
    """Oracle, guard, reference feeds, mark basis, snapshot and ramp state of one asset.

    ``price`` is the last accepted print of the primary oracle; ``mark_source`` says whether
    the mark follows it (``"oracle"``) or the reference median after an escalated guard
    (``"reference"``). ``window`` holds the recent confidence-passing prints of the
    re-anchoring rule.
    """

    symbol: str
    index: int
    ramp: RampState
    trusted: float | None = None
    price: int | None = None
    price_ms: int | None = None
    confidence: int = 0
    twap: int | None = None
    twap_ms: int | None = None
    window: tuple[int, ...] = ()
    guarded: bool = True
    guard_reason: str = "no_price"
    guard_since_ms: int | None = 0
    alerted: bool = False
    mark_source: str = "oracle"
    references: dict[str, ReferenceQuote] = field(default_factory=dict)
    basis: int = 0
    basis_ms: int = 0
    params: MarginParameters | None = None
    long_oi_lots: int = 0
    rejected_prices: int = 0
    reanchors: int = 0

    def copy(self) -> AssetState:
        """An independent copy (the reference quotes dict is the only mutable field)."""
        return replace(self, references=dict(self.references))


@dataclass
class Ledger:
    """Cumulative value flows (see the module docstring for the identity)."""

    deposits: int = 0
    withdrawals: int = 0
    realized_pnl: int = 0
    funding: int = 0
    fees: int = 0
    keeper_rewards: int = 0
    socialized_charged: int = 0
    socialized_credited: int = 0

    @property
    def socialized_loss(self) -> int:
        """Haircuts charged minus deficits credited (see module docstring)."""
        return self.socialized_charged - self.socialized_credited


@dataclass
class InsuranceState:
    """Insurance fund balance, its governed parameters and recent bad-debt events."""

    fund: int
    fund_share: float
    fee_addon_bps: float = 0.0
    coverage: float | None = None
    bad_debts: tuple[int, ...] = ()
    history_size: int = 10_000


class NullBook:
    """The position book of a fork: planning needs no vectorised index."""

    def bucket(self, bucket_id: str) -> int:
        return 0

    def set_balance(self, bucket_id: str, balance_micro: int) -> None:
        return None

    def set_portfolio(self, bucket_id: str, portfolio: bool) -> None:
        return None

    def set_position(
        self, bucket_id: str, asset: int, lots: int, cost_micro: int, risk_since_ms: int
    ) -> None:
        return None


class BucketOverlay(MutableMapping[str, Bucket]):
    """Copy-on-access view of a bucket dict: reads through, writes stay local.

    ``overlay[b]`` copies bucket ``b`` on first access, so a planned command can fold events
    without touching the live state. :meth:`peek` and :meth:`peek_items` read without
    copying; their results must not be mutated.
    """

    def __init__(self, base: MutableMapping[str, Bucket]) -> None:
        self._base = base
        self._local: dict[str, Bucket] = {}

    def __getitem__(self, key: str) -> Bucket:
        found = self._local.get(key)
        if found is None:
            base = self._base.peek(key) if isinstance(self._base, BucketOverlay) else None
            found = (base if base is not None else self._base[key]).copy()
            self._local[key] = found
        return found

    def __setitem__(self, key: str, value: Bucket) -> None:
        self._local[key] = value

    def __delitem__(self, key: str) -> None:
        raise EventLogError(f"buckets are never deleted (tried {key!r})")

    def __iter__(self) -> Iterator[str]:
        yield from self._base
        yield from (k for k in self._local if k not in self._base)

    def __contains__(self, key: object) -> bool:
        return key in self._local or key in self._base

    def __len__(self) -> int:
        return len(self._base) + sum(1 for k in self._local if k not in self._base)

    def peek(self, key: str) -> Bucket | None:
        """The bucket without copying it (read only), or None."""
        found = self._local.get(key)
        if found is not None:
            return found
        if isinstance(self._base, BucketOverlay):
            return self._base.peek(key)
        return self._base.get(key)

    def peek_items(self) -> Iterator[tuple[str, Bucket]]:
        """Every (id, bucket) without copying (read only)."""
        for key in self:
            found = self.peek(key)
            if found is not None:
                yield key, found


@dataclass
class EngineState:
    """Everything the fold produces. Build with :func:`initial_state`."""

    clock_ms: int
    n_events: int
    assets: dict[str, AssetState]
    buckets: MutableMapping[str, Bucket]
    ledger: Ledger
    insurance: InsuranceState
    book: PositionBook | NullBook
    n_commands: int = 0
    liquidations: int = 0
    adl_fills: int = 0
    keepers: dict[str, int] = field(default_factory=dict)
    keys: dict[str, int] = field(default_factory=dict)
    options: OptionsState = field(default_factory=OptionsState)
    breakers: dict[str, BreakerState] = field(default_factory=dict)

    def fork(self) -> EngineState:
        """A copy to plan one command on: buckets copied on access, no position book.

        The idempotency keys are shared read-only (only :func:`apply_command` adds to them).
        """
        return EngineState(
            clock_ms=self.clock_ms,
            n_events=self.n_events,
            assets={symbol: asset.copy() for symbol, asset in self.assets.items()},
            buckets=BucketOverlay(self.buckets),
            ledger=replace(self.ledger),
            insurance=replace(self.insurance),
            book=NullBook(),
            n_commands=self.n_commands,
            liquidations=self.liquidations,
            adl_fills=self.adl_fills,
            keepers=dict(self.keepers),
            keys=self.keys,
            options=self.options.copy(),
            breakers=dict(self.breakers),
        )

    def peek_bucket(self, bucket: str) -> Bucket | None:
        """A bucket for reading only (no copy on a fork), or None."""
        if isinstance(self.buckets, BucketOverlay):
            return self.buckets.peek(bucket)
        return self.buckets.get(bucket)

    def peek_buckets(self) -> Iterator[tuple[str, Bucket]]:
        """Every (id, bucket) for reading only (no copies on a fork)."""
        if isinstance(self.buckets, BucketOverlay):
            return self.buckets.peek_items()
        return iter(self.buckets.items())


def initial_state(config: EngineConfig) -> EngineState:
    """Empty state for ``config``: no accounts, empty fund, every asset guarded (no price)."""
    return EngineState(
        clock_ms=0,
        n_events=0,
        assets={
            a.symbol: AssetState(
                symbol=a.symbol, index=i, ramp=RampState.start(a.fallback_multiplier)
            )
            for i, a in enumerate(config.assets)
        },
        buckets={},
        ledger=Ledger(),
        insurance=InsuranceState(
            fund=0,
            fund_share=config.insurance.initial_fund_share,
            history_size=config.insurance.history_size,
        ),
        book=PositionBook(len(config.assets)),
    )


def apply_command(state: EngineState, events: Sequence[Event]) -> None:
    """Fold one whole command into ``state`` (in place).

    A command ending in ``abort`` is void: its events are counted (the log keeps them) but
    not applied. Its idempotency key is recorded for a command that took effect.

    Raises
    ------
    EventLogError
        If the events are not one command continuing the state (numbering, order, end).
    """
    if not events:
        return
    first, final = events[0], events[-1]
    if first.cmd != state.n_commands:
        raise EventLogError(
            f"command {first.cmd} (event #{first.seq}) applied to a state after "
            f"{state.n_commands} commands; replay the log from its first event in order"
        )
    if (
        not final.last
        or any(e.last for e in events[:-1])
        or any(e.cmd != first.cmd for e in events)
    ):
        raise EventLogError(f"events #{first.seq}..#{final.seq} are not one whole command")
    if final.kind == "abort":
        for event in events:
            _check_order(state, event, check_clock=False)
            state.n_events += 1
    else:
        for event in events:
            apply_event(state, event)
        if first.key is not None:
            state.keys[first.key] = first.cmd
    state.n_commands += 1


def apply_event(state: EngineState, event: Event) -> None:
    """Fold one event into ``state`` (in place); :func:`apply_command` is the public path."""
    _check_order(state, event, check_clock=True)
    _HANDLERS[event.kind](state, event.ts_ms, event.data)
    state.clock_ms = event.ts_ms
    state.n_events += 1


def _check_order(state: EngineState, event: Event, check_clock: bool) -> None:
    if event.seq != state.n_events:
        raise EventLogError(
            f"event #{event.seq} ({event.kind}) applied to a state at #{state.n_events}; "
            "replay the log from its first event in order"
        )
    if check_clock and event.ts_ms < state.clock_ms:
        raise EventLogError(
            f"event #{event.seq} ({event.kind}) at ts={event.ts_ms} is before the state clock "
            f"{state.clock_ms}"
        )


def ensure_bucket(state: EngineState, bucket: str) -> Bucket:
    """The bucket ``bucket``, created empty if absent."""
    if bucket in state.buckets:
        return state.buckets[bucket]
    account, asset = split_bucket_id(bucket)
    found = Bucket(bucket_id=bucket, account=account, isolated_asset=asset)
    state.buckets[bucket] = found
    state.book.bucket(bucket)
    return found


def ledger_discrepancy(state: EngineState) -> int:
    """Left side minus right side of the ledger identity; 0 when value is conserved."""
    led = state.ledger
    sources = led.deposits - led.withdrawals + led.realized_pnl + led.funding
    sinks = (
        sum(b.balance for _, b in state.peek_buckets())
        + state.insurance.fund
        + led.fees
        + led.keeper_rewards
        + led.socialized_loss
    )
    return sources - sinks


def state_digest(state: EngineState, *, counters: bool = True) -> str:
    """SHA-256 of a canonical serialisation of the state (the book index excluded).

    ``counters=False`` leaves out the log's bookkeeping (event and command counts, keys), to
    compare the economic state of two logs that differ only by void commands.
    """
    ledger, ins = state.ledger, state.insurance
    payload: dict[str, Any] = {
        "clock_ms": state.clock_ms,
        "assets": {k: _asset_dict(v) for k, v in sorted(state.assets.items())},
        "buckets": {
            k: [
                b.account,
                b.isolated_asset,
                b.balance,
                b.portfolio,
                b.last_liquidation_ms,
                [[a, p.lots, p.cost, p.risk_since_ms] for a, p in sorted(b.positions.items())],
                *([sorted(b.options.items())] if b.options else []),
            ]
            for k, b in sorted(state.peek_buckets())
        },
        "ledger": [
            ledger.deposits,
            ledger.withdrawals,
            ledger.realized_pnl,
            ledger.funding,
            ledger.fees,
            ledger.keeper_rewards,
            ledger.socialized_charged,
            ledger.socialized_credited,
        ],
        "insurance": [ins.fund, ins.fund_share, ins.fee_addon_bps, ins.coverage, ins.bad_debts],
        "liquidations": state.liquidations,
        "adl_fills": state.adl_fills,
        "keepers": dict(sorted(state.keepers.items())),
        "options": state.options.digest_payload(),
    }
    if state.breakers:  # only with circuit breakers on: digests without them are unchanged
        payload["breakers"] = {k: v.to_list() for k, v in sorted(state.breakers.items())}
    if counters:
        payload["log"] = [state.n_events, state.n_commands, dict(sorted(state.keys.items()))]
    text = json.dumps(payload, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()


def _asset_dict(asset: AssetState) -> dict[str, Any]:
    data = {k: v for k, v in vars(asset).items() if k not in ("ramp", "params", "references")}
    data["ramp"] = asset.ramp.to_dict()
    data["params"] = dict(vars(asset.params)) if asset.params is not None else None
    data["references"] = {k: [q.price, q.observed_ms] for k, q in sorted(asset.references.items())}
    return data


# -- handlers -------------------------------------------------------------------------------
def _set_balance(state: EngineState, bucket: Bucket, delta: int) -> None:
    bucket.balance += delta
    state.book.set_balance(bucket.bucket_id, bucket.balance)


def _on_nothing(state: EngineState, ts: int, data: dict[str, Any]) -> None:
    return None


def _on_deposit(state: EngineState, ts: int, data: dict[str, Any]) -> None:
    _set_balance(state, ensure_bucket(state, data["account"]), data["amount"])
    state.ledger.deposits += data["amount"]


def _on_withdraw(state: EngineState, ts: int, data: dict[str, Any]) -> None:
    _set_balance(state, state.buckets[data["account"]], -data["amount"])
    state.ledger.withdrawals += data["amount"]


def _on_fund_deposit(state: EngineState, ts: int, data: dict[str, Any]) -> None:
    state.insurance.fund += data["amount"]
    state.ledger.deposits += data["amount"]


def _on_price(state: EngineState, ts: int, data: dict[str, Any]) -> None:
    asset = state.assets[data["asset"]]
    asset.window = tuple(data["window"])
    if data["accepted"]:
        asset.price = data["price"]
        asset.price_ms = ts
        asset.confidence = data["confidence"]
        asset.twap = data["twap"]
        asset.twap_ms = ts
        asset.reanchors += bool(data["reanchored"])
    else:
        asset.rejected_prices += 1


def _on_reference(state: EngineState, ts: int, data: dict[str, Any]) -> None:
    asset = state.assets[data["asset"]]
    asset.references[data["feed"]] = ReferenceQuote(
        data["feed"], data["price"], data["observed_ms"]
    )


def _on_guard(state: EngineState, ts: int, data: dict[str, Any]) -> None:
    asset = state.assets[data["asset"]]
    if data["guarded"] and not asset.guarded:
        asset.guard_since_ms = ts
        asset.alerted = False
    elif not data["guarded"]:
        asset.guard_since_ms = None
        asset.alerted = False
    asset.guarded = data["guarded"]
    asset.guard_reason = data["reason"]


def _on_guard_alert(state: EngineState, ts: int, data: dict[str, Any]) -> None:
    state.assets[data["asset"]].alerted = True


def _on_mark_source(state: EngineState, ts: int, data: dict[str, Any]) -> None:
    state.assets[data["asset"]].mark_source = data["source"]


def _on_snapshot(state: EngineState, ts: int, data: dict[str, Any]) -> None:
    asset = state.assets[data["asset"]]
    asset.params = MarginParameters.from_dict(data["params"])
    asset.ramp = RampState.from_dict(data["ramp"])
    asset.trusted = data["trusted"]


def _on_margin_mode(state: EngineState, ts: int, data: dict[str, Any]) -> None:
    bucket = state.buckets[data["account"]]
    bucket.portfolio = data["portfolio"]
    state.book.set_portfolio(bucket.bucket_id, bucket.portfolio)


def _on_transfer(state: EngineState, ts: int, data: dict[str, Any]) -> None:
    cross = state.buckets[data["account"]]
    isolated = ensure_bucket(state, f"{data['account']}:{data['asset']}")
    _set_balance(state, cross, -data["amount"])
    _set_balance(state, isolated, data["amount"])


def _on_fill(state: EngineState, ts: int, data: dict[str, Any]) -> None:
    symbol = data["asset"]
    asset = state.assets[symbol]
    for leg in data["legs"]:
        bucket = ensure_bucket(state, leg["bucket"])
        position = bucket.positions.get(symbol)
        old_lots = position.lots if position is not None else 0
        if position is None:
            position = Position(symbol, 0, 0, leg["risk_since"])
            bucket.positions[symbol] = position
        position.lots += leg["dq"]
        position.cost += leg["cost_delta"]
        position.risk_since_ms = leg["risk_since"]
        asset.long_oi_lots += max(position.lots, 0) - max(old_lots, 0)
        if position.lots == 0:
            if position.cost != 0:
                raise EventLogError(
                    f"fill at ts={ts} closes {leg['bucket']} {symbol} but leaves cost "
                    f"{position.cost}; the event's cost_delta is wrong"
                )
            del bucket.positions[symbol]
        state.book.set_position(
            bucket.bucket_id, asset.index, position.lots, position.cost, position.risk_since_ms
        )
        _set_balance(state, bucket, leg["realized_pnl"] - leg["fee"] - leg["fee_addon"])
        state.ledger.realized_pnl += leg["realized_pnl"]
        state.ledger.fees += leg["fee"]
        state.insurance.fund += leg["fee_addon"]
    if data["basis"] is not None:
        asset.basis = data["basis"]
        asset.basis_ms = ts
    if data["reason"] == "adl":
        state.adl_fills += 1


def _on_funding(state: EngineState, ts: int, data: dict[str, Any]) -> None:
    for bucket, amount in data["payments"]:
        _set_balance(state, state.buckets[bucket], amount)
        state.ledger.funding += amount


def _on_penalty(state: EngineState, ts: int, data: dict[str, Any]) -> None:
    keeper_amount, fund_amount = data["keeper_amount"], data["fund_amount"]
    _set_balance(state, state.buckets[data["bucket"]], -(keeper_amount + fund_amount))
    state.ledger.keeper_rewards += keeper_amount
    state.insurance.fund += fund_amount
    state.keepers[data["keeper"]] = state.keepers.get(data["keeper"], 0) + keeper_amount


def _on_fund_cover(state: EngineState, ts: int, data: dict[str, Any]) -> None:
    state.insurance.fund -= data["amount"]
    _set_balance(state, state.buckets[data["bucket"]], data["amount"])


def _on_concession(state: EngineState, ts: int, data: dict[str, Any]) -> None:
    _set_balance(state, state.buckets[data["counterparty"]], -data["amount"])
    _set_balance(state, state.buckets[data["bucket"]], data["amount"])


def _on_socialize(state: EngineState, ts: int, data: dict[str, Any]) -> None:
    charged = 0
    for bucket, amount in data["charges"]:
        _set_balance(state, state.buckets[bucket], -amount)
        charged += amount
    credited = charged + data["written_off"]
    _set_balance(state, state.buckets[data["bucket"]], credited)
    state.ledger.socialized_charged += charged
    state.ledger.socialized_credited += credited


def _on_liquidation(state: EngineState, ts: int, data: dict[str, Any]) -> None:
    state.buckets[data["bucket"]].last_liquidation_ms = ts
    state.liquidations += 1
    if data["bad_debt"] > 0:
        ins = state.insurance
        ins.bad_debts = (*ins.bad_debts, data["bad_debt"])[-ins.history_size :]


def _on_insurance(state: EngineState, ts: int, data: dict[str, Any]) -> None:
    state.insurance.fund_share = data["fund_share"]
    state.insurance.fee_addon_bps = data["fee_addon_bps"]
    state.insurance.coverage = data["coverage"]


_HANDLERS: dict[str, Callable[[EngineState, int, dict[str, Any]], None]] = {
    "clock": _on_nothing,
    "abort": _on_nothing,
    "guard_alert": _on_guard_alert,
    "deposit": _on_deposit,
    "withdraw": _on_withdraw,
    "fund_deposit": _on_fund_deposit,
    "price": _on_price,
    "reference": _on_reference,
    "guard": _on_guard,
    "mark_source": _on_mark_source,
    "snapshot": _on_snapshot,
    "margin_mode": _on_margin_mode,
    "transfer": _on_transfer,
    "fill": _on_fill,
    "funding": _on_funding,
    "penalty": _on_penalty,
    "fund_cover": _on_fund_cover,
    "concession": _on_concession,
    "socialize": _on_socialize,
    "liquidation": _on_liquidation,
    "insurance": _on_insurance,
    **OPTION_HANDLERS,
    **BREAKER_HANDLERS,
}
