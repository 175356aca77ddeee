"""The venue: the event-sourced liquidation engine fed by served snapshots and a price feed.

:class:`Venue` is a library object with two steps a loop (or a test) calls in turn:

- :meth:`Venue.poll` reads ``/v1/risk`` (ETag), lets :mod:`venue.snapshot_gate` admit or refuse
  each snapshot, and applies the admitted ones (``Engine.apply_snapshot``). A refusal is one
  log line and one count of ``dynamargin_venue_snapshots_refused_total{reason}``; it changes
  nothing, so the last valid parameters stay in force until they expire, and then the
  engine's conservative fallback (:func:`liquidation.snapshot.target_multiplier`).
- :meth:`Venue.tick` submits the feed's new prints, advances the clock and runs the health
  scan and the waterfall until no bucket is liquidatable (or the step bound is reached).

Every command goes to the SQLite event log before it applies, with an idempotency key
derived from its input (``price:<asset>:<observed ms>``, ``snapshot:<asset>:<update id>``),
so a restart (:meth:`Engine.resume`) rebuilds the identical state and repeating an
interrupted tick repeats nothing. The liquidation pass recomputes the most-at-risk bucket
after every step, so an interrupted pass resumes with the step it would have taken.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from liquidation.account_spec import InForce
from liquidation.circuit_breaker import HaltedError
from liquidation.engine import Engine
from liquidation.errors import LiquidationCoreError, NotLiquidatableError, RateLimitedError
from liquidation.events import SQLiteEventStore
from liquidation.money import MICRO
from venue.errors import KeyPinError, RiskApiUnavailable
from venue.key_pins import KeyPins, served_key
from venue.metrics import VenueMetrics
from venue.price_feed import PriceFeed, submit_quote
from venue.risk_api import RiskApiClient
from venue.settings import VenueSettings
from venue.snapshot_gate import Refusal, admit, withheld_of

LOG = logging.getLogger("dynamargin.venue")

RECHECK_REASONS = frozenset({"not_yet_published", "tampered", "malformed", "unsigned", "wrong_key"})
"""Refusals a later fetch can cure (time passes; bytes damaged or replaced on the way): the
next poll asks for the full body again, without its ETag, and refuses again (one more log
line per poll) for as long as the damage lasts. The other refusals are the content itself."""


@dataclass(frozen=True)
class PollOutcome:
    """What one poll did: ``result`` is ``new``, ``not_modified`` or ``failed``."""

    result: str
    applied: tuple[tuple[str, int, float], ...] = ()
    refusals: tuple[Refusal, ...] = ()
    already_applied: int = 0
    failure: str | None = None


@dataclass(frozen=True)
class TickOutcome:
    """What one tick did: prints submitted and waterfall steps run (bucket, step)."""

    ts_ms: int
    prints: int
    liquidations: tuple[tuple[str, str], ...]
    errors: tuple[str, ...] = field(default_factory=tuple)


def iso(ms: int) -> str:
    """Epoch ms as an ISO-8601 UTC time."""
    return datetime.fromtimestamp(ms / 1000, UTC).isoformat().replace("+00:00", "Z")


class Venue:
    """The liquidation core run as a service on served snapshots.

    Parameters
    ----------
    settings
        Assets, state directory, keeper and thresholds.
    feed
        Oracle prices (:class:`venue.price_feed.PriceFeed`).
    client
        The risk API client; without one :meth:`poll` is unavailable (a venue on its fallback).
    metrics
        Prometheus metrics (a private registry by default).
    log
        Where refusals, failures and liquidations are logged.

    Notes
    -----
    One thread drives the venue (``poll``/``tick``); the status endpoint reads
    :attr:`status`, a plain dict rebuilt after every step, never the engine itself.
    """

    def __init__(
        self,
        settings: VenueSettings,
        feed: PriceFeed,
        client: RiskApiClient | None = None,
        metrics: VenueMetrics | None = None,
        log: logging.Logger = LOG,
    ) -> None:
        self.settings = settings
        self.config = settings.engine_config()
        self.feed = feed
        self.client = client
        self.metrics = metrics or VenueMetrics()
        self.log = log
        settings.state_dir.mkdir(parents=True, exist_ok=True)
        settings.check_rules()
        self._store = SQLiteEventStore(settings.log_path)
        self.engine = Engine.resume(self._store, self.config)
        self.pins = KeyPins(settings.pins_path, settings.trusted_keys)
        self.last_poll: dict[str, Any] = {}
        self.refusal_counts: dict[str, int] = {}
        self.status: dict[str, Any] = {}
        if len(self.engine.log):
            self.log.info(
                "venue: replayed %d events from %s to %s (state %s)",
                len(self.engine.log), settings.log_path, iso(self.engine.state.clock_ms),
                self.engine.digest()[:16],
            )  # fmt: skip
        self.refresh_status(self.engine.state.clock_ms)

    def close(self) -> None:
        """Close the event log and the HTTP client."""
        self._store.close()
        if self.client is not None:
            self.client.close()

    # -- snapshots ------------------------------------------------------------------------------
    def applied_update_ids(self) -> dict[str, int]:
        """Asset -> ``update_id`` of the snapshot in force (from the engine's state)."""
        return {
            symbol: asset.params.update_id
            for symbol, asset in self.engine.state.assets.items()
            if asset.params is not None
        }

    def parameters_in_force(self) -> InForce:
        """The engine configuration and the snapshot in force per asset (the parameters
        ``POST /v1/liquidation-price`` uses when the caller sends none)."""
        return InForce(
            self.config,
            {
                symbol: asset.params
                for symbol, asset in self.engine.state.assets.items()
                if asset.params is not None
            },
        )

    def poll(self, now_ms: int) -> PollOutcome:
        """Read ``/v1/risk`` once and apply what the gate admits, at venue time ``now_ms``."""
        if self.client is None:
            raise RiskApiUnavailable("unreachable", "this venue has no risk API client")
        try:
            outcome = self._poll(now_ms)
        except RiskApiUnavailable as exc:
            self.log.warning("venue: poll failed (%s): %s; parameters unchanged", exc.reason, exc)
            self.metrics.poll_failures.labels(exc.reason).inc()
            self.metrics.polls.labels("failed").inc()
            outcome = PollOutcome("failed", failure=exc.reason)
        self.last_poll = {
            "at": iso(now_ms),
            "result": outcome.result,
            "failure": outcome.failure,
            "applied": [list(a) for a in outcome.applied],
            "refused": [r.reason for r in outcome.refusals],
        }
        self.refresh_status(now_ms)
        return outcome

    def _poll(self, now_ms: int) -> PollOutcome:
        assert self.client is not None
        if not self.pins.trusted:
            try:
                trusted = self.pins.offer(served_key(self.client.keys()))
            except KeyPinError as exc:
                raise RiskApiUnavailable("no_trusted_key", str(exc)) from exc
            self.log.info("venue: pinned Ed25519 key %s (%s)", sorted(self.pins.trusted)[0][:16],
                          self.pins.path)  # fmt: skip
            assert trusted
        polled = self.client.poll()
        if polled.body is None:
            self.metrics.polls.labels("not_modified").inc()
            return PollOutcome("not_modified")
        self.metrics.polls.labels("new").inc()
        gate = admit(
            polled.body,
            trusted_keys=self.pins.trusted,
            config=self.config,
            applied=self.applied_update_ids(),
            now_ms=now_ms,
        )
        refusals = list(gate.refusals)
        for asset, why in sorted(withheld_of(polled.body).items()):
            # The API itself withholds an asset whose stored rows fail verification: the venue
            # keeps what it has (then the fallback) and says so.
            self.log.warning("venue: the API withholds %s (%s); parameters unchanged", asset, why)
        applied = []
        for item in gate.admitted:
            params = item.params
            try:
                self.engine.apply_snapshot(
                    item.document, ts=now_ms, key=f"snapshot:{params.asset}:{params.update_id}"
                )
            except LiquidationCoreError as exc:  # e.g. the clock: refused, logged, counted
                refusals.append(Refusal("engine", str(exc), params.asset, params.update_id))
                continue
            self.metrics.applied.labels(params.asset).inc()
            applied.append((params.asset, params.update_id, params.multiplier))
            self.log.info(
                "venue: applied %s update %d: multiplier %.4g, status %s, valid until %s",
                params.asset, params.update_id, params.multiplier, params.status,
                iso(params.valid_until_ms),
            )  # fmt: skip
        for refusal in refusals:
            self.log.warning("venue: %s; parameters unchanged", refusal.line())
            self.metrics.refused.labels(refusal.reason, refusal.asset or "-").inc()
            self.refusal_counts[refusal.reason] = self.refusal_counts.get(refusal.reason, 0) + 1
        if any(r.reason in RECHECK_REASONS for r in refusals):
            self.client.forget_etag()
        return PollOutcome("new", tuple(applied), tuple(refusals), gate.already_applied)

    # -- prices and liquidations ----------------------------------------------------------------
    def tick(self, now_ms: int) -> TickOutcome:
        """Submit new prints, advance the clock to ``now_ms``, liquidate what is below MM."""
        errors: list[str] = []
        prints = 0
        for asset, quote in sorted(self.feed.quotes(now_ms).items()):
            key = f"price:{asset}:{quote.observed_ms}"
            if key in self.engine.state.keys or asset not in self.config.symbols:
                continue
            age = now_ms - quote.observed_ms
            if age > self.config.oracle.heartbeat_ms or age < 0:
                # Submitted now, an old quote would pass for a fresh one: the engine stamps a
                # print with the command's time. Leave the asset stale (guarded) instead.
                self.metrics.prices.labels(asset, "stale_feed").inc()
                errors.append(self._tick_error(
                    "stale_feed",
                    f"{asset}: the feed's newest quote ({iso(quote.observed_ms)}) is "
                    f"{age / 1000:.0f} s from the venue clock; not submitted",
                ))  # fmt: skip
                continue
            try:
                verdict = submit_quote(self.engine, quote, now_ms=now_ms)
            except LiquidationCoreError as exc:
                errors.append(self._tick_error("price", f"{asset} print refused: {exc}"))
                continue
            prints += 1
            label = "accepted" if verdict.accepted else str(verdict.reason)
            self.metrics.prices.labels(asset, label).inc()
            if not verdict.accepted:
                self.log.warning("venue: %s print %s guarded: %s %s", asset, quote.price / MICRO,
                                 verdict.reason, verdict.detail)  # fmt: skip
        self.engine.tick(now_ms)
        steps = self._liquidate(now_ms, errors)
        self.metrics.ticks.inc()
        self.refresh_status(now_ms)
        return TickOutcome(now_ms, prints, tuple(steps), tuple(errors))

    def _liquidate(self, now_ms: int, errors: list[str]) -> list[tuple[str, str]]:
        keeper = self.settings.keeper
        waiting: set[str] = set()  # rate-limited or healthy after all: the next tick
        steps: list[tuple[str, str]] = []
        for _ in range(self.settings.max_steps_per_tick):
            candidates = [
                b
                for b in self.engine.liquidatable(now_ms)
                if b not in waiting and self.engine.state.buckets[b].account != keeper
            ]
            if not candidates:
                return steps
            bucket = candidates[0]
            try:
                report = self.engine.liquidate(bucket, keeper=keeper, ts=now_ms)
            except (NotLiquidatableError, RateLimitedError, HaltedError):
                waiting.add(bucket)  # healthy, in its cooldown, halted or over the catch-up
                continue
            except LiquidationCoreError as exc:
                errors.append(self._tick_error("liquidation", f"{bucket}: {exc}"))
                waiting.add(bucket)
                continue
            steps.append((bucket, str(report.step)))
            self.metrics.liquidations.labels(str(report.step)).inc()
            self.log.info(
                "venue: liquidated %s (%s, %.0f%%): equity %.2f -> %.2f USD, bad debt %.2f USD",
                bucket, report.step, 100 * report.fraction, report.equity_before / MICRO,
                report.equity_after / MICRO, report.bad_debt / MICRO,
            )  # fmt: skip
        self.log.warning("venue: %d waterfall steps this tick; the rest wait for the next",
                         self.settings.max_steps_per_tick)  # fmt: skip
        return steps

    def _tick_error(self, kind: str, message: str) -> str:
        self.log.error("venue: %s", message)
        self.metrics.tick_errors.labels(kind).inc()
        return message

    # -- what the venue holds -------------------------------------------------------------------
    def book_initial_margin(self, ts_ms: int | None = None) -> int:
        """Initial margin of every bucket with positions, micro-USD (at target multipliers)."""
        return sum(
            self.engine.initial_margin(b, ts_ms)
            for b, bucket in sorted(self.engine.state.buckets.items())
            if bucket.positions
        )

    def accounts_at_risk(self, ts_ms: int | None = None) -> list[dict[str, Any]]:
        """Buckets with positions and ``equity / MM`` below the at-risk line, worst first."""
        found = []
        for bid, bucket in sorted(self.engine.state.buckets.items()):
            if not bucket.positions:
                continue
            summary = self.engine.summary(bid, ts_ms)
            if summary.health < self.settings.at_risk_health:
                found.append(
                    {
                        "bucket": bid,
                        "health": round(summary.health, 4),
                        "equity_usd": summary.equity / MICRO,
                        "maintenance_margin_usd": summary.maintenance_margin / MICRO,
                        "initial_margin_usd": summary.initial_margin / MICRO,
                    }
                )
        return sorted(found, key=lambda row: (row["health"], row["bucket"]))

    def recent_liquidations(self) -> list[dict[str, Any]]:
        """The newest waterfall steps, from the event log (so a restart keeps them)."""
        limit = self.settings.recent_liquidations
        rows: list[dict[str, Any]] = []
        for event in reversed(list(self.engine.log)):
            if len(rows) >= limit:
                break
            if event.kind == "liquidation":
                data = event.data
                rows.append(
                    {
                        "at": iso(event.ts_ms),
                        "bucket": data["bucket"],
                        "step": data["step"],
                        "fraction": data["fraction"],
                        "closed": data["closed"],
                        "bad_debt_usd": data["bad_debt"] / MICRO,
                        "fund_paid_usd": data["fund_paid"] / MICRO,
                    }
                )
        return rows

    def refresh_status(self, now_ms: int) -> dict[str, Any]:
        """Rebuild :attr:`status` (and the gauges) at venue time ``now_ms``."""
        ts = max(now_ms, self.engine.state.clock_ms)
        view = self.engine.view(ts)
        assets: dict[str, Any] = {}
        breakers = self.engine.breaker_status(ts)
        for symbol in self.config.symbols:
            state = self.engine.state.assets[symbol]
            params = state.params
            target = view.assets[symbol].target
            self.metrics.multiplier.labels(symbol).set(target)
            row: dict[str, Any] = {
                "multiplier": target,
                "in_force": "fallback",
                "price_usd": (view.assets[symbol].price or 0) / MICRO or None,
            }
            if params is not None:
                lag = (ts - params.as_of_ms) / 1000
                to_expiry = (params.valid_until_ms - ts) / 1000
                usable = params.is_usable(ts)
                row |= {
                    "in_force": "snapshot" if usable else "fallback",
                    "update_id": params.update_id,
                    "status": params.status,
                    "as_of": iso(params.as_of_ms),
                    "valid_until": iso(params.valid_until_ms),
                    "snapshot_lag_s": lag,
                    "seconds_to_expiry": to_expiry,
                }
                self.metrics.snapshot_lag.labels(symbol).set(lag)
                self.metrics.seconds_to_expiry.labels(symbol).set(to_expiry)
            if self.config.breaker is not None:
                breaker = breakers.get(symbol, {"halted": False, "halted_until": None,
                                                "catch_up_budget": None})  # fmt: skip
                until = breaker["halted_until"]
                row["breaker"] = {
                    "halted": breaker["halted"],
                    "halted_until": None if until is None else iso(until),
                    "catch_up_budget": breaker["catch_up_budget"],
                }
                self.metrics.halted.labels(symbol).set(int(breaker["halted"]))
            assets[symbol] = row
        at_risk = self.accounts_at_risk(ts)
        liquidatable = self.engine.liquidatable(ts)
        fund = self.engine.state.insurance.fund
        im = self.book_initial_margin(ts)
        self.metrics.accounts_at_risk.set(len(at_risk))
        self.metrics.liquidatable.set(len(liquidatable))
        self.metrics.fund.set(fund / MICRO)
        self.metrics.initial_margin.set(im / MICRO)
        self.status = {
            "clock": iso(ts),
            "events": len(self.engine.log),
            "state_digest": self.engine.digest(),
            "assets": assets,
            "insurance_fund_usd": fund / MICRO,
            "initial_margin_usd": im / MICRO,
            "at_risk_health": self.settings.at_risk_health,
            "accounts_at_risk": at_risk,
            "liquidatable": liquidatable,
            "recent_liquidations": self.recent_liquidations(),
            "last_poll": dict(self.last_poll),
            "refusals": dict(self.refusal_counts),
            "trusted_keys": sorted(self.pins.trusted),
        }
        return self.status
