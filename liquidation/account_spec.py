"""An account described as plain JSON, replayed into an engine to ask it questions.

This is the input of ``dynamargin liquidation-price`` (and of an HTTP endpoint later): the
account's collateral, its positions with entry prices and opening times, the RiskSnapshots
in force and the prices now. :func:`engine_for_account` replays it through the public
:class:`~liquidation.engine.Engine` commands, so every rule (margin, ramp, size scaling,
mark) is the engine's own and nothing is re-implemented::

    {
      "at": "2025-05-19T12:00:00Z",
      "account": "alice",
      "collateral": "25000",
      "portfolio": false,
      "prices": {"BTCUSDT": "60000"},
      "positions": [
        {"asset": "BTCUSDT", "qty": "0.5", "entry": "59000",
         "opened_at": "2025-05-19T08:00:00Z", "isolated": false, "margin": "0"}
      ],
      "snapshots": [ {RiskSnapshot v1 or v2 JSON} ],
      "accrued_funding": {"BTCUSDT": 0.0001}
    }

Amounts and prices are decimal strings (USD), quantities decimal strings of units; ``at``
and ``opened_at`` ISO-8601 UTC. Snapshots apply at their ``as_of`` (in time order with the
openings); a position opens at its entry price, confirmed by an agreeing reference quote so
the oracle guard accepts it; at ``at`` every asset is printed at its price. Settled funding
belongs in ``collateral``; funding accrued since the last settlement in ``accrued_funding``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any

from liquidation.config import AssetConfig, EngineConfig, OracleGuardConfig
from liquidation.engine import Engine
from liquidation.errors import InputError, LiquidationCoreError
from liquidation.money import price as to_price
from liquidation.money import qty as to_qty
from liquidation.money import usd
from liquidation.snapshot import MarginParameters, parse_time_ms

#: Collateral of the counterparty vault the replay trades against (never a constraint).
VAULT_COLLATERAL = usd("1000000000000")


@dataclass(frozen=True)
class AccountSpec:
    """A validated account description (see the module docstring)."""

    at_ms: int
    account: str
    collateral: int
    portfolio: bool
    prices: dict[str, int]
    positions: list[dict[str, Any]]
    snapshots: list[Mapping[str, Any]]
    accrued_funding: dict[str, float]

    @classmethod
    def parse(cls, data: Any) -> AccountSpec:
        """Validate a decoded JSON document; raises :class:`InputError` with the field."""
        if not isinstance(data, Mapping):
            raise InputError("the account description must be a JSON object")
        unknown = set(data) - {
            "at", "account", "collateral", "portfolio", "prices", "positions", "snapshots",
            "accrued_funding",
        }  # fmt: skip
        if "options" in unknown:
            raise InputError(
                "'options': an account description holds perpetual positions only; option "
                "positions need their listed series and the vol surface of a running engine, "
                "so their liquidation prices come from that engine "
                "(liquidation.liquidation_price.liquidation_prices)"
            )
        if unknown:
            raise InputError(f"unknown fields in the account description: {sorted(unknown)}")
        prices = _mapping(data, "prices")
        if not prices:
            raise InputError("'prices' must give the price now of every asset held")
        positions = data.get("positions", [])
        if not isinstance(positions, list) or not positions:
            raise InputError("'positions' must be a non-empty list")
        parsed = []
        for i, p in enumerate(positions):
            if not isinstance(p, Mapping) or not {"asset", "qty", "entry"} <= set(p):
                raise InputError(f"positions[{i}] needs 'asset', 'qty' and 'entry'")
            extra = set(p) - {"asset", "qty", "entry", "opened_at", "isolated", "margin"}
            if extra:
                raise InputError(f"positions[{i}]: unknown fields {sorted(extra)}")
            asset = _text(p["asset"], f"positions[{i}].asset")  # before hashing it
            if asset not in prices:
                raise InputError(f"positions[{i}]: no price now for {asset!r} in 'prices'")
            parsed.append(
                {
                    "asset": asset,
                    "lots": _decimal(to_qty, p["qty"], f"positions[{i}].qty"),
                    "entry": _decimal(to_price, p["entry"], f"positions[{i}].entry"),
                    "opened_ms": _time(p.get("opened_at", data.get("at")), f"positions[{i}]"),
                    "isolated": _bool(p.get("isolated", False), f"positions[{i}].isolated"),
                    "margin": _decimal(usd, p.get("margin", "0"), f"positions[{i}].margin"),
                }
            )
        snapshots = data.get("snapshots", [])
        if not isinstance(snapshots, list) or not all(isinstance(s, Mapping) for s in snapshots):
            raise InputError("'snapshots' must be a list of RiskSnapshot objects")
        funding = _mapping(data, "accrued_funding")
        for asset, rate in funding.items():
            if isinstance(rate, bool) or not isinstance(rate, int | float):
                raise InputError(f"accrued_funding[{asset!r}] must be a number")
        return cls(
            at_ms=_time(data.get("at"), "at"),
            account=_text(data.get("account", "account"), "account"),
            collateral=_decimal(usd, data.get("collateral"), "collateral"),
            portfolio=_bool(data.get("portfolio", False), "portfolio"),
            prices={
                _text(a, "prices key"): _decimal(to_price, p, f"prices[{a!r}]")
                for a, p in prices.items()
            },
            positions=parsed,
            snapshots=list(snapshots),
            accrued_funding={a: float(r) for a, r in funding.items()},
        )

    def engine_config(self, base: AssetConfig | None = None) -> EngineConfig:
        """Default asset parameters for every priced asset; a heartbeat covering the replay."""
        span = max(1, self.at_ms - min([p["opened_ms"] for p in self.positions] + [self.at_ms]))
        assets = tuple(AssetConfig(symbol) for symbol in sorted(self.prices))
        return EngineConfig(assets=assets, oracle=OracleGuardConfig(heartbeat_ms=span + 1))


def engine_for_account(spec: AccountSpec, config: EngineConfig | None = None) -> Engine:
    """Replay ``spec`` into a fresh engine; the account is ready to query at ``spec.at_ms``.

    Raises
    ------
    LiquidationCoreError
        A snapshot is invalid, a position could not have been opened (its initial margin at
        entry), or a time is out of order; the message names the step.
    """
    config = config or spec.engine_config()
    engine = Engine(config)
    steps: list[tuple[int, int, str, Any]] = []
    for i, snap in enumerate(spec.snapshots):
        as_of = snap.get("as_of")
        steps.append((_time(as_of, f"snapshots[{i}].as_of"), 0, "snapshot", snap))
    for p in spec.positions:
        steps.append((p["opened_ms"], 1, "open", p))
    steps.sort(key=lambda s: (s[0], s[1]))
    start = min([s[0] for s in steps] + [spec.at_ms])
    if any(s[0] > spec.at_ms for s in steps):
        raise InputError("a snapshot or an opening is after 'at'")
    for symbol, now in sorted(spec.prices.items()):
        engine.update_price(symbol, now, ts=start, reference=now)
    engine.deposit(config.vault, VAULT_COLLATERAL, ts=start)
    engine.deposit(spec.account, spec.collateral, ts=start)
    if spec.portfolio:
        engine.set_margin_mode(spec.account, True, ts=start)
    for ts, _, kind, item in steps:
        try:
            if kind == "snapshot":
                engine.apply_snapshot(item, ts=ts)
                continue
            engine.update_price(item["asset"], item["entry"], ts=ts, reference=item["entry"])
            engine.trade(
                spec.account,
                item["asset"],
                item["lots"],
                ts=ts,
                isolated=item["isolated"],
                margin=item["margin"],
            )
        except LiquidationCoreError as exc:
            what = "applying a snapshot" if kind == "snapshot" else f"opening {item['asset']}"
            raise InputError(f"{what} at {ts}: {exc}") from exc
    for symbol, now in sorted(spec.prices.items()):
        engine.update_price(symbol, now, ts=spec.at_ms, reference=now)
    return engine


def _mapping(data: Mapping[str, Any], key: str) -> Mapping[str, Any]:
    value = data.get(key, {})
    if not isinstance(value, Mapping):
        raise InputError(f"'{key}' must be an object")
    return value


def _text(value: Any, what: str) -> str:
    if not isinstance(value, str) or not value:
        raise InputError(f"{what} must be a non-empty string")
    return value


def _bool(value: Any, what: str) -> bool:
    if not isinstance(value, bool):
        raise InputError(f"{what} must be true or false")
    return value


def _decimal(convert: Any, value: Any, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise InputError(f'{what} must be a decimal string, e.g. "1.5"')
    try:
        return convert(value)
    except (TypeError, ValueError) as exc:
        raise InputError(f"{what}: {exc}") from exc


def _time(value: Any, what: str) -> int:
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if not isinstance(value, str):
        raise InputError(f"{what}: a time must be an ISO-8601 UTC string")
    try:
        return parse_time_ms(value)
    except ValueError as exc:
        raise InputError(f"{what}: {exc}") from exc


# -- the venue's parameters in force ---------------------------------------------------------------
@dataclass(frozen=True)
class InForce:
    """What a venue applies now: its engine configuration and each asset's snapshot in force.

    ``params`` holds the :class:`~liquidation.snapshot.MarginParameters` of the snapshot in
    force per asset (absent: the asset runs on its conservative fallback).
    """

    config: EngineConfig
    params: Mapping[str, MarginParameters]


def snapshot_document(params: MarginParameters) -> dict[str, Any]:
    """The RiskSnapshot v1 document of ``params`` (the fields the core reads, nothing else):
    :meth:`MarginParameters.from_risk_snapshot` of it gives ``params`` back."""
    return {
        "schema": "dynamargin.risk/1",
        "asset": params.asset,
        "update_id": params.update_id,
        "as_of": iso_ms(params.as_of_ms),
        "valid_until": iso_ms(params.valid_until_ms),
        "horizon_hours": params.horizon_hours,
        "sigma": params.sigma,
        "liquidity": {
            "spread_bps": params.spread_bps,
            "slippage_bps": params.slippage_bps,
            "standard_size_usd": params.standard_size_usd,
        },
        "margin": {
            "multiplier": params.multiplier,
            "previous_multiplier": params.previous_multiplier,
            "base_imf": params.base_imf,
            "base_mmf": params.base_mmf,
        },
        "status": params.status,
    }


def with_parameters_in_force(spec: AccountSpec, venue: InForce) -> tuple[AccountSpec, EngineConfig]:
    """``spec`` against the venue's parameters: its asset configuration and the snapshots it
    applies now, instead of any the caller sent.

    Each snapshot in force replays at its own ``as_of`` like a posted one (so a position
    opened before it rides its ramp from ``previous_multiplier``, as on the venue).

    Raises
    ------
    InputError
        An asset of the account is not listed on the venue.
    """
    listed = {a.symbol: a for a in venue.config.assets}
    unknown = sorted(set(spec.prices) - set(listed))
    if unknown:
        raise InputError(f"'prices': {unknown} not listed on this venue ({sorted(listed)})")
    symbols = sorted(spec.prices)
    documents = [snapshot_document(venue.params[s]) for s in symbols if s in venue.params]
    # The account's assets only, so the venue's correlation is cut to their rows and columns.
    order = [venue.config.symbols.index(s) for s in symbols]
    corr = venue.config.portfolio.correlation
    config = replace(
        venue.config,
        assets=tuple(listed[s] for s in symbols),
        oracle=replace(venue.config.oracle, heartbeat_ms=spec.engine_config().oracle.heartbeat_ms),
        portfolio=replace(
            venue.config.portfolio,
            correlation=None
            if corr is None
            else tuple(tuple(corr[i][j] for j in order) for i in order),
        ),
        # The account is rebuilt by replaying its entries, not a market: a band or a halt
        # would move the prices it was given. Liquidation prices ignore the breaker.
        breaker=None,
    )
    return replace(spec, snapshots=documents), config


def iso_ms(ms: int) -> str:
    """Epoch ms as the ISO-8601 UTC text of a snapshot (microseconds, ``Z``)."""
    return datetime.fromtimestamp(ms / 1000, tz=UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
