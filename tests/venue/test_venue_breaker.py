"""The venue runs the engine's circuit breaker: a crash halts the asset, its status and
metrics say so, nothing is liquidated during the halt (a restart included), and the
liquidations run once the cool-off ends."""

from __future__ import annotations

from collections.abc import Mapping

from liquidation.circuit_breaker import CircuitBreakerConfig
from liquidation.money import MICRO, qty, usd
from venue.metrics import VenueMetrics
from venue.price_feed import PriceQuote
from venue.service import Venue
from venue.settings import VenueSettings

BTC = "BTCUSDT"
MINUTE, HOUR = 60_000, 3_600_000
T0 = HOUR


class OneFeed:
    """A feed holding one quote (with an agreeing reference), given once observed."""

    def __init__(self) -> None:
        self.quote: PriceQuote | None = None

    def set(self, usd_price: float, observed_ms: int) -> None:
        p = round(usd_price * MICRO)
        self.quote = PriceQuote(BTC, p, observed_ms, "test", references=(("ref", p, observed_ms),))

    def quotes(self, at_ms: int) -> Mapping[str, PriceQuote]:
        if self.quote is None or self.quote.observed_ms > at_ms:
            return {}
        return {BTC: self.quote}


def test_a_crash_halts_the_venue_until_the_cool_off_then_it_liquidates(tmp_path):
    settings = VenueSettings((BTC,), tmp_path / "venue")
    assert settings.circuit_breaker == CircuitBreakerConfig()  # on by default, with the rules
    assert settings.rules()["circuit_breaker"] == CircuitBreakerConfig().to_dict()
    feed, metrics = OneFeed(), VenueMetrics()
    venue = Venue(settings, feed, metrics=metrics)
    feed.set(50_000.0, T0)
    venue.tick(T0)
    engine = venue.engine
    engine.deposit(engine.config.vault, usd("10000000"), ts=T0)
    for name in ("a", "b", "c"):
        engine.deposit(name, usd("6000"), ts=T0)
        engine.trade(name, BTC, qty("1"), ts=T0)
    # -9% in a minute: 9 fallback sigmas of an hour (5% a day), a halt; all three are
    # below maintenance.
    crash = T0 + MINUTE
    feed.set(45_500.0, crash)
    out = venue.tick(crash)
    assert out.prints == 1 and out.liquidations == ()
    assert len(engine.liquidatable(crash)) == 3
    row = venue.status["assets"][BTC]["breaker"]
    assert row["halted"] and row["halted_until"] == "1970-01-01T02:01:00Z"
    assert b'dynamargin_venue_halted{asset="BTCUSDT"} 1.0' in metrics.render()
    # Every minute of the cool-off, nothing is liquidated; a restart keeps the halt.
    for minute in range(1, 30):
        assert venue.tick(crash + minute * MINUTE).liquidations == ()
    digest = engine.digest()
    venue.close()
    venue = Venue(settings, feed, metrics=VenueMetrics())
    assert venue.engine.digest() == digest
    assert venue.status["assets"][BTC]["breaker"]["halted"]
    for minute in range(30, 60):
        assert venue.tick(crash + minute * MINUTE).liquidations == ()
    # The cool-off ends one hour after the halt: the waiting accounts are liquidated.
    resumed = venue.tick(crash + HOUR)
    assert {bucket for bucket, _ in resumed.liquidations} == {"a", "b", "c"}
    assert not venue.status["assets"][BTC]["breaker"]["halted"]
    kinds = [e.kind for e in venue.engine.log]
    assert kinds.count("breaker_halt") == 1 and kinds.count("breaker_resume") == 1
    venue.close()


def test_a_venue_without_the_breaker_liquidates_the_crash_at_once(tmp_path):
    settings = VenueSettings((BTC,), tmp_path / "venue", circuit_breaker=None)
    feed = OneFeed()
    venue = Venue(settings, feed)
    feed.set(50_000.0, T0)
    venue.tick(T0)
    engine = venue.engine
    engine.deposit(engine.config.vault, usd("10000000"), ts=T0)
    engine.deposit("a", usd("6000"), ts=T0)
    engine.trade("a", BTC, qty("1"), ts=T0)
    feed.set(45_500.0, T0 + MINUTE)
    assert [b for b, _ in venue.tick(T0 + MINUTE).liquidations] == ["a"]
    assert "breaker" not in venue.status["assets"][BTC]
    venue.close()
