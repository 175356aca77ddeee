"""The demo's last step: a venue runs on stored bars, then consumes the served batch.

The venue (:class:`venue.service.Venue`) starts empty in ``<workdir>/venue-demo`` (wiped at
each demo, it is the demo's own rehearsal), seeds the deterministic demo book
(:mod:`venue.demo_book`) ``hours`` bars before the publication and runs the health scan and
the waterfall bar by bar on its conservative fallback, without parameters. At the
publication time it polls the API, verifies the batch against the pinned key and applies
it. What the new multipliers did is measured by the engine itself before and after: the
multiplier new risk pays, the traders' initial margin per asset and the accounts at risk.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

from features.store import MarketStore
from liquidation.money import MICRO
from venue.demo_book import DEMO_TRADERS, seed_demo_book
from venue.price_feed import StorePriceFeed
from venue.risk_api import RiskApiClient
from venue.service import PollOutcome, Venue, iso
from venue.settings import VenueSettings


@dataclass(frozen=True)
class BookState:
    """The venue's book at one instant: per asset (multiplier, traders' IM USD), at risk."""

    multipliers: dict[str, float]
    traders_im_usd: dict[str, float]
    at_risk: int
    liquidatable: int


@dataclass(frozen=True)
class Rehearsal:
    """Before and after the served batch, and what happened on the way."""

    start: str
    published: str
    before: BookState
    after: BookState
    poll: PollOutcome
    liquidation_steps: int
    fund_usd: float
    at_risk_health: float
    traders: int
    log_path: Path
    status_digest: str


def rehearse(
    workdir: Path,
    store: MarketStore,
    api: str,
    assets: list[str],
    hours: int = 48,
    published: int | None = None,
) -> Rehearsal:
    """Run the rehearsal against the API at ``api`` (see the module docstring).

    ``published`` is the venue time of the poll, epoch ms: the batch's ``published_at``
    (default: the newest bar close, which is when the demo stamps its batch).
    """
    state_dir = Path(workdir) / "venue-demo"
    shutil.rmtree(state_dir, ignore_errors=True)
    settings = VenueSettings(tuple(sorted(assets)), state_dir)
    feed = StorePriceFeed(store, settings.assets)
    venue = Venue(settings, feed, RiskApiClient(api))
    try:
        if published is None:
            published = int(feed.bar_closes(settings.assets[0])[-1])
        start = published - hours * feed.bar_ms
        venue.tick(start)
        prices = {a: q.price for a, q in feed.quotes(start).items()}
        seed_demo_book(venue.engine, prices, ts=start)
        steps = 0
        for k in range(1, hours + 1):
            steps += len(venue.tick(start + k * feed.bar_ms).liquidations)
        before = _book(venue)
        outcome = venue.poll(published)
        steps += len(venue.tick(published).liquidations)
        after = _book(venue)
        return Rehearsal(
            start=iso(start),
            published=iso(published),
            before=before,
            after=after,
            poll=outcome,
            liquidation_steps=steps,
            fund_usd=venue.engine.state.insurance.fund / MICRO,
            at_risk_health=settings.at_risk_health,
            traders=DEMO_TRADERS,
            log_path=settings.log_path,
            status_digest=venue.engine.digest(),
        )
    finally:
        venue.close()


def _book(venue: Venue) -> BookState:
    engine = venue.engine
    view = engine.view()
    im: dict[str, float] = dict.fromkeys(venue.config.symbols, 0.0)
    for bid, bucket in sorted(engine.state.buckets.items()):
        if bucket.account == venue.config.vault or len(bucket.positions) != 1:
            continue  # the demo's traders hold one position each; the vault holds the rest
        (asset,) = bucket.positions
        im[asset] += engine.initial_margin(bid) / MICRO
    return BookState(
        multipliers={s: view.assets[s].target for s in venue.config.symbols},
        traders_im_usd=im,
        at_risk=len(venue.accounts_at_risk()),
        liquidatable=len(engine.liquidatable()),
    )
