"""Engine state and the fold ``apply_event(state, event)``.

Only this module mutates state. Each handler is plain integer bookkeeping of amounts the event
already carries, so folding the same log always gives the same state. The structure-of-arrays
:class:`~liquidation.scan.PositionBook` is a derived index kept in step by the same handlers.

Ledger (all micro-USD, cumulative)::

    deposits - withdrawals + realized_pnl + funding
        == sum(bucket balances) + insurance fund + fees + keeper_rewards + socialized_loss

where ``deposits`` include insurance-fund seeding, ``fees`` are base trading fees (the
governance fee add-on goes to the fund), ``keeper_rewards`` the keepers' share of penalties,
and ``socialized_loss = socialized_charged - socialized_credited``: haircuts charged to other
buckets minus deficits credited to bankrupt buckets. It is zero when a loss is fully spread
and equals minus the deficit nobody could absorb otherwise.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

from liquidation.accounts import Bucket, Position, split_bucket_id
from liquidation.config import EngineConfig
from liquidation.errors import EventLogError
from liquidation.events import Event
from liquidation.scan import PositionBook
from liquidation.snapshot import MarginParameters


@dataclass
class AssetState:
    """Oracle, guard, snapshot and ramp state of one asset."""

    symbol: str
    index: int
    ramp_from: float
    ramp_start_ms: int = 0
    price: int | None = None
    price_ms: int | None = None
    confidence: int = 0
    twap: int | None = None
    twap_ms: int | None = None
    guarded: bool = True
    guard_reason: str = "no_price"
    params: MarginParameters | None = None
    long_oi_lots: int = 0
    rejected_prices: int = 0


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
    """Insurance fund balance and its governed parameters."""

    fund: int
    fund_share: float
    fee_addon_bps: float = 0.0
    coverage: float | None = None
    bad_debts: list[int] = field(default_factory=list)


@dataclass
class EngineState:
    """Everything the fold produces. Build with :func:`initial_state`."""

    clock_ms: int
    n_events: int
    assets: dict[str, AssetState]
    buckets: dict[str, Bucket]
    ledger: Ledger
    insurance: InsuranceState
    book: PositionBook
    liquidations: int = 0
    adl_fills: int = 0
    keepers: dict[str, int] = field(default_factory=dict)


def initial_state(config: EngineConfig) -> EngineState:
    """Empty state for ``config``: no accounts, empty fund, every asset guarded (no price)."""
    return EngineState(
        clock_ms=0,
        n_events=0,
        assets={
            a.symbol: AssetState(symbol=a.symbol, index=i, ramp_from=a.fallback_multiplier)
            for i, a in enumerate(config.assets)
        },
        buckets={},
        ledger=Ledger(),
        insurance=InsuranceState(fund=0, fund_share=config.insurance.initial_fund_share),
        book=PositionBook(len(config.assets)),
    )


def apply_event(state: EngineState, event: Event) -> None:
    """Fold one event into ``state`` (in place)."""
    if event.seq != state.n_events:
        raise EventLogError(
            f"event #{event.seq} ({event.kind}) applied to a state at #{state.n_events}; "
            "replay the log from its first event in order"
        )
    if event.ts_ms < state.clock_ms:
        raise EventLogError(
            f"event #{event.seq} ({event.kind}) at ts={event.ts_ms} is before the state clock "
            f"{state.clock_ms}"
        )
    _HANDLERS[event.kind](state, event.ts_ms, event.data)
    state.clock_ms = event.ts_ms
    state.n_events += 1


def ensure_bucket(state: EngineState, bucket: str) -> Bucket:
    """The bucket ``bucket``, created empty if absent."""
    found = state.buckets.get(bucket)
    if found is None:
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
        sum(b.balance for b in state.buckets.values())
        + state.insurance.fund
        + led.fees
        + led.keeper_rewards
        + led.socialized_loss
    )
    return sources - sinks


def state_digest(state: EngineState) -> str:
    """SHA-256 of a canonical serialisation of the state (the book index excluded)."""
    payload = {
        "clock_ms": state.clock_ms,
        "n_events": state.n_events,
        "assets": {k: _asset_dict(v) for k, v in sorted(state.assets.items())},
        "buckets": {
            k: {
                **{f: getattr(b, f) for f in ("account", "isolated_asset", "balance")},
                "portfolio": b.portfolio,
                "last_liquidation_ms": b.last_liquidation_ms,
                "positions": {a: asdict(p) for a, p in sorted(b.positions.items())},
            }
            for k, b in sorted(state.buckets.items())
        },
        "ledger": asdict(state.ledger),
        "insurance": asdict(state.insurance),
        "liquidations": state.liquidations,
        "adl_fills": state.adl_fills,
        "keepers": dict(sorted(state.keepers.items())),
    }
    text = json.dumps(payload, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()


def _asset_dict(asset: AssetState) -> dict[str, Any]:
    data = asdict(asset)
    data["params"] = asset.params.to_dict() if asset.params is not None else None
    return data


# -- handlers -------------------------------------------------------------------------------
def _set_balance(state: EngineState, bucket: Bucket, delta: int) -> None:
    bucket.balance += delta
    state.book.set_balance(bucket.bucket_id, bucket.balance)


def _on_clock(state: EngineState, ts: int, data: dict[str, Any]) -> None:
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
    if data["accepted"]:
        asset.price = data["price"]
        asset.price_ms = ts
        asset.confidence = data["confidence"]
        asset.twap = data["twap"]
        asset.twap_ms = ts
    else:
        asset.rejected_prices += 1


def _on_guard(state: EngineState, ts: int, data: dict[str, Any]) -> None:
    asset = state.assets[data["asset"]]
    asset.guarded = data["guarded"]
    asset.guard_reason = data["reason"]


def _on_snapshot(state: EngineState, ts: int, data: dict[str, Any]) -> None:
    asset = state.assets[data["asset"]]
    asset.params = MarginParameters.from_dict(data["params"])
    asset.ramp_from = data["ramp_from"]
    asset.ramp_start_ms = data["ramp_start"]


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
    bucket = ensure_bucket(state, data["bucket"])
    symbol = data["asset"]
    asset = state.assets[symbol]
    position = bucket.positions.get(symbol)
    old_lots = position.lots if position is not None else 0
    if position is None:
        position = Position(symbol, 0, 0, data["risk_since"])
        bucket.positions[symbol] = position
    position.lots += data["dq"]
    position.cost += data["cost_delta"]
    position.risk_since_ms = data["risk_since"]
    asset.long_oi_lots += max(position.lots, 0) - max(old_lots, 0)
    if position.lots == 0:
        if position.cost != 0:
            raise EventLogError(
                f"fill at ts={ts} closes {data['bucket']} {symbol} but leaves cost "
                f"{position.cost}; the event's cost_delta is wrong"
            )
        del bucket.positions[symbol]
    state.book.set_position(
        bucket.bucket_id, asset.index, position.lots, position.cost, position.risk_since_ms
    )
    _set_balance(state, bucket, data["realized_pnl"] - data["fee"] - data["fee_addon"])
    state.ledger.realized_pnl += data["realized_pnl"]
    state.ledger.fees += data["fee"]
    state.insurance.fund += data["fee_addon"]
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
        state.insurance.bad_debts.append(data["bad_debt"])


def _on_insurance(state: EngineState, ts: int, data: dict[str, Any]) -> None:
    state.insurance.fund_share = data["fund_share"]
    state.insurance.fee_addon_bps = data["fee_addon_bps"]
    state.insurance.coverage = data["coverage"]


_HANDLERS: dict[str, Callable[[EngineState, int, dict[str, Any]], None]] = {
    "clock": _on_clock,
    "deposit": _on_deposit,
    "withdraw": _on_withdraw,
    "fund_deposit": _on_fund_deposit,
    "price": _on_price,
    "guard": _on_guard,
    "snapshot": _on_snapshot,
    "margin_mode": _on_margin_mode,
    "transfer": _on_transfer,
    "fill": _on_fill,
    "funding": _on_funding,
    "penalty": _on_penalty,
    "fund_cover": _on_fund_cover,
    "socialize": _on_socialize,
    "liquidation": _on_liquidation,
    "insurance": _on_insurance,
}
