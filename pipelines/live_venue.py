"""The venue as a consumer of the live loop: every batch, polled through the API and applied.

:class:`VenueConsumer` is what ``dynamargin live --attach-venue`` and the demo's live segment
register with :class:`pipelines.live_loop.LiveLoop`. After each committed batch it offers the
batch's oracle medians (Binance spot, USDT-M and the second venue;
:class:`venue.median_feed.PublishedMedianFeed`) as prints with their healthy feeds as
references, polls the signed snapshots from the risk API (verified against the pinned key),
and ticks: health scan and waterfall, written to the venue's event log. It runs on the
batch's own venue time, so it stays consistent with an accelerated emulator clock, where a
venue ticking on the wall clock would find every snapshot expired.
"""

from __future__ import annotations

import logging
import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from pipelines.live_loop import LivePublication

logger = logging.getLogger("dynamargin.live.venue")


@dataclass(frozen=True)
class VenueHour:
    """What the venue did with one batch: applied snapshots, waterfall steps, accounts at risk."""

    applied: int
    liquidations: int
    at_risk: int


class VenueConsumer:
    """The venue (:class:`venue.service.Venue`) consuming each live batch through the API.

    Parameters
    ----------
    state_dir
        The venue's event log and pinned key; a restart with the same directory replays
        the log and continues.
    api
        Base URL of the risk API serving the live publication store.
    assets
        Assets the venue trades.
    demo_book
        Seed the deterministic demo book (:mod:`venue.demo_book`) at the first batch's
        prices (nothing when the log already holds it).
    fresh
        Start from an empty state directory (the demo; never the CLI's default).
    trusted_keys
        Ed25519 keys to trust; empty: pin the served key on first contact.
    status_port
        Serve the venue's read-only status and metrics on this loopback port (``None``:
        no endpoint; 0: any free port).
    """

    def __init__(
        self,
        state_dir: Path,
        api: str,
        assets: Sequence[str],
        *,
        demo_book: bool = True,
        fresh: bool = False,
        trusted_keys: Sequence[str] = (),
        status_port: int | None = None,
    ) -> None:
        from venue.median_feed import PublishedMedianFeed
        from venue.metrics import VenueMetrics
        from venue.risk_api import RiskApiClient
        from venue.service import Venue
        from venue.settings import VenueSettings
        from venue.status_http import StatusServer

        if fresh:
            shutil.rmtree(state_dir, ignore_errors=True)
        settings = VenueSettings(
            tuple(sorted(assets)), Path(state_dir), trusted_keys=tuple(trusted_keys)
        )
        metrics = VenueMetrics()
        self.feed = PublishedMedianFeed(metrics)
        self.venue = Venue(settings, self.feed, RiskApiClient(api), metrics)
        self.hours: dict[int, VenueHour] = {}
        self._seeded = not demo_book
        self.status: StatusServer | None = None
        if status_port is not None:
            self.status = StatusServer(
                lambda: self.venue.status, metrics.render, port=status_port
            ).start()
            logger.info("venue: status at %s/status, metrics at %s/metrics", *[self.status.url] * 2)

    def __call__(self, publication: LivePublication) -> None:
        """Offer the batch's medians, poll the API and tick at the batch's venue time."""
        from venue.demo_book import seed_demo_book

        now_ms = int(publication.venue_time.value // 1_000_000)
        self.feed.offer(publication.prices)
        if not self._seeded:
            # Prices first (the book opens at them); seeding is idempotent across restarts.
            self.venue.tick(now_ms)
            prices = {a: q.price for a, q in self.feed.quotes(now_ms).items()}
            count = seed_demo_book(self.venue.engine, prices, ts=now_ms)
            logger.info("venue: demo book: %d command(s) applied (0: already in the log)", count)
            self._seeded = True
        poll = self.venue.poll(now_ms)
        tick = self.venue.tick(now_ms)
        hour = VenueHour(
            applied=len(poll.applied),
            liquidations=len(tick.liquidations),
            at_risk=len(self.venue.accounts_at_risk()),
        )
        self.hours[publication.batch_id] = hour
        logger.info(
            "venue: batch %d: %d snapshot(s) applied, %d refused, %d liquidation step(s), "
            "%d account(s) at risk",
            publication.batch_id,
            hour.applied,
            len(poll.refusals),
            hour.liquidations,
            hour.at_risk,
        )

    def close(self) -> None:
        """Stop the status endpoint and close the event log."""
        if self.status is not None:
            self.status.stop()
        self.venue.close()


__all__ = ["VenueConsumer", "VenueHour"]
