"""Independent audit of an event log: every fill and every bucket's cash, from first principles.

The fold books the amounts its events carry (realized PnL, cost deltas); a conservation check
built on those amounts holds by construction. This audit does not use them. It keeps its own
positions and its own cash per bucket from the primitive fields only (quantities, prices,
fees, concessions, amounts moved) with its own arithmetic, and checks:

* every fill has two legs whose quantities cancel, and each leg's booked realized PnL and cost
  delta equal the average-cost values recomputed here;
* every bucket's ``balance - entry cost of its positions`` equals the cash recomputed here,
  its positions equal the audit's, and the insurance fund equals the audit's;
* every funding settlement sums to zero;
* options: every fill's premium amount equals ``lots x premium`` recomputed here, option lots
  are shadowed per bucket and series and compared, every expiry pays each holder its
  intrinsic value recomputed from the settlement price and the strike (shorts truncated,
  longs sharing the shorts' total exactly) and sums to zero.

Use :meth:`LedgerAudit.consume` on each whole command as the engine commits it (void commands,
closed by ``abort``, are skipped like the fold skips them), then :meth:`LedgerAudit.compare`.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from fractions import Fraction
from typing import Any

from liquidation.events import Event
from liquidation.money import QTY_SCALE
from liquidation.options.series import OptionSeries
from liquidation.state import EngineState


class LedgerAudit:
    """Shadow books of an event log (see the module docstring)."""

    def __init__(self) -> None:
        self.positions: dict[tuple[str, str], list[int]] = {}
        self.cash: dict[str, int] = defaultdict(int)
        self.fund = 0
        self.options: dict[tuple[str, str], int] = defaultdict(int)
        self.problems: list[str] = []

    def consume(self, command: Sequence[Event]) -> None:
        """Audit one whole command (a no-op for a void one)."""
        if not command or command[-1].kind == "abort":
            return
        for event in command:
            handler = getattr(self, f"_on_{event.kind}", None)
            if handler is not None:
                handler(event)

    def compare(self, state: EngineState) -> list[str]:
        """Differences between the engine's state and the audit's books (empty if none)."""
        found = list(self.problems)
        buckets = dict(state.peek_buckets())
        for bucket_id in sorted(set(buckets) | set(self.cash)):
            bucket = buckets.get(bucket_id)
            balance = bucket.balance if bucket is not None else 0
            cost = sum(p.cost for p in bucket.positions.values()) if bucket else 0
            if balance - cost != self.cash[bucket_id]:
                found.append(
                    f"{bucket_id}: balance {balance} - entry cost {cost} != audited cash "
                    f"{self.cash[bucket_id]}"
                )
            held = {a: [p.lots, p.cost] for a, p in (bucket.positions.items() if bucket else ())}
            audited = {a: v for (b, a), v in self.positions.items() if b == bucket_id and v[0]}
            if held != audited:
                found.append(f"{bucket_id}: positions {held} != audited {audited}")
        held_options = {
            (b, name): lots for b, x in buckets.items() for name, lots in x.options.items()
        }
        audited_options = {k: v for k, v in self.options.items() if v}
        if held_options != audited_options:
            found.append(f"option lots {held_options} != audited {audited_options}")
        if state.insurance.fund != self.fund:
            found.append(f"insurance fund {state.insurance.fund} != audited {self.fund}")
        return found

    # -- money movements --------------------------------------------------------------------
    def _on_deposit(self, event: Event) -> None:
        self.cash[event.data["account"]] += event.data["amount"]

    def _on_withdraw(self, event: Event) -> None:
        self.cash[event.data["account"]] -= event.data["amount"]

    def _on_fund_deposit(self, event: Event) -> None:
        self.fund += event.data["amount"]

    def _on_transfer(self, event: Event) -> None:
        data = event.data
        self.cash[data["account"]] -= data["amount"]
        self.cash[f"{data['account']}:{data['asset']}"] += data["amount"]

    def _on_funding(self, event: Event) -> None:
        payments = event.data["payments"]
        if sum(amount for _, amount in payments) != 0:
            self.problems.append(f"event #{event.seq}: funding payments do not sum to zero")
        for bucket, amount in payments:
            self.cash[bucket] += amount

    def _on_penalty(self, event: Event) -> None:
        data = event.data
        self.cash[data["bucket"]] -= data["keeper_amount"] + data["fund_amount"]
        self.fund += data["fund_amount"]

    def _on_fund_cover(self, event: Event) -> None:
        self.fund -= event.data["amount"]
        self.cash[event.data["bucket"]] += event.data["amount"]

    def _on_concession(self, event: Event) -> None:
        data = event.data
        if data["amount"] <= 0:
            self.problems.append(f"event #{event.seq}: a concession of {data['amount']}")
        self.cash[data["counterparty"]] -= data["amount"]
        self.cash[data["bucket"]] += data["amount"]

    def _on_socialize(self, event: Event) -> None:
        charged = 0
        for bucket, amount in event.data["charges"]:
            if amount <= 0:
                self.problems.append(f"event #{event.seq}: a socialized charge of {amount}")
            self.cash[bucket] -= amount
            charged += amount
        self.cash[event.data["bucket"]] += charged + event.data["written_off"]

    # -- options ----------------------------------------------------------------------------
    def _on_option_fill(self, event: Event) -> None:
        data = event.data
        name = _series_name(data["series"])
        amount = _worth(data["lots"], data["premium"])
        if data["lots"] <= 0 or data["premium"] < 0 or data["buyer"] == data["seller"]:
            self.problems.append(f"event #{event.seq}: malformed option fill of {name}")
        if amount != data["amount"]:
            self.problems.append(
                f"event #{event.seq}: option premium booked {data['amount']}, recomputed {amount}"
            )
        self.options[(data["buyer"], name)] += data["lots"]
        self.options[(data["seller"], name)] -= data["lots"]
        self.cash[data["buyer"]] -= amount
        self.cash[data["seller"]] += amount

    def _on_option_expiry(self, event: Event) -> None:
        for item in event.data["series"]:
            series = item["series"]
            name = _series_name(series)
            gain = item["settlement"] - series["strike"]
            intrinsic = max(0, gain if series["is_call"] else -gain)
            holders = {b: q for (b, n), q in self.options.items() if n == name and q}
            paid = dict(item["payments"])
            if sum(paid.values()) != 0:
                self.problems.append(f"event #{event.seq}: {name} settlement is not zero-sum")
            shorts_pay = sum(_worth(-q, intrinsic) for q in holders.values() if q < 0)
            for bucket, q in holders.items():
                got = paid.get(bucket, 0)
                due = _worth(q, intrinsic)
                # Shorts pay exactly their truncated value; longs share what the shorts paid
                # (which the shorts' truncations make differ from the longs' own values by
                # at most one micro-USD per holder).
                if (q < 0 and got != due) or (q > 0 and abs(got - due) > len(holders)):
                    self.problems.append(
                        f"event #{event.seq}: {bucket} got {got} for {q} lots of {name}, "
                        f"its value at settlement is {due}"
                    )
            if intrinsic and sum(v for v in paid.values() if v > 0) != shorts_pay:
                self.problems.append(f"event #{event.seq}: {name} longs do not get what shorts pay")
            if dict(item["closed"]) != holders:
                self.problems.append(f"event #{event.seq}: {name} closes {item['closed']}")
            for bucket, amount in item["payments"]:
                self.cash[bucket] += amount
            for bucket in holders:
                self.options[(bucket, name)] = 0

    # -- fills ------------------------------------------------------------------------------
    def _on_fill(self, event: Event) -> None:
        data = event.data
        legs = data["legs"]
        where = f"event #{event.seq} ({data['reason']} fill of {data['asset']})"
        if len(legs) != 2:
            self.problems.append(f"{where}: {len(legs)} legs, a matched fill has two")
        if sum(leg["dq"] for leg in legs) != 0:
            self.problems.append(f"{where}: legs do not cancel")
        for leg in legs:
            self._leg(where, data["asset"], data["price"], leg)

    def _leg(self, where: str, asset: str, price: int, leg: dict[str, Any]) -> None:
        key = (leg["bucket"], asset)
        lots, cost = self.positions.get(key, [0, 0])
        dq = leg["dq"]
        if leg["fee"] < 0 or leg["fee_addon"] < 0:
            self.problems.append(f"{where}: negative fee")
        if lots == 0 or (lots > 0) == (dq > 0):
            realized, cost_delta = 0, _worth(dq, price)
        elif abs(dq) > abs(lots):
            self.problems.append(f"{where}: leg of {leg['bucket']} flips {lots} by {dq}")
            return
        else:
            released = _toward_zero(Fraction(cost * -dq, lots))
            realized = _worth(-dq, price) - released
            cost_delta = -released
        if (realized, cost_delta) != (leg["realized_pnl"], leg["cost_delta"]):
            self.problems.append(
                f"{where}: {leg['bucket']} booked realized {leg['realized_pnl']} and cost "
                f"{leg['cost_delta']}, recomputed {realized} and {cost_delta}"
            )
        self.positions[key] = [lots + dq, cost + cost_delta]
        self.cash[leg["bucket"]] += -_worth(dq, price) - leg["fee"] - leg["fee_addon"]
        self.fund += leg["fee_addon"]


def _series_name(series: dict[str, Any]) -> str:
    return OptionSeries(
        series["underlying"], series["expiry_ms"], series["strike"], series["is_call"]
    ).name


def _toward_zero(x: Fraction) -> int:
    return int(x)  # int() of a Fraction truncates toward zero


def _worth(lots: int, price: int) -> int:
    """Value of ``lots`` at ``price`` in micro-USD, truncated toward zero."""
    return _toward_zero(Fraction(lots * price, QTY_SCALE))
