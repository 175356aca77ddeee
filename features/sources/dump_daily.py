"""The public dump's daily kline files as a live source, for backfill.

``data.binance.vision`` publishes one zip per symbol, interval and UTC day
(``data/spot/daily/klines/SYM/IV/SYM-IV-YYYY-MM-DD.zip`` with its ``.CHECKSUM``), a few hours
after the day ends. A venue's REST API is the faster path for recent bars; the daily files
are the archive to fall back on when a series is behind or has holes the REST API does not
fill. Files are fetched with the dump downloader (verified against their checksum, cached,
resumable) and parsed with the dump's own reader, so a backfilled bar is byte for byte what
the monthly dump path stores.

The dump has no clock; the source takes the venue's (normally the primary REST source's) so
that "the day has ended" means ended on the venue's clock, which also holds for the
emulator's simulated time.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from features.bars import empty_bars, interval_to_timedelta
from features.errors import (
    ChecksumMismatchError,
    DownloadError,
    RemoteFileNotFoundError,
    SourceUnavailableError,
)
from features.sources.binance import read_klines
from features.sources.download import DEFAULT_BASE_URL, DumpDownloader, daily_kline_path
from features.sources.live import Feed, FeedBatch, PerpSnapshot, closed_rows, empty_rejected
from features.sources.retry import RetryPolicy
from features.sources.venue_clock import VenueClock

logger = logging.getLogger("dynamargin.live.sources")

DUMP_FEED = Feed("binance-dump", "bars", "binance", role="backfill")


class DumpDailySource:
    """Daily spot kline files of the public dump as a backfill :class:`LiveSource`.

    Parameters
    ----------
    cache_dir
        Local mirror of the dump (the downloader's cache).
    base_url
        Dump root, e.g. ``https://data.binance.vision`` or the emulator's ``.../dump``.
    clock
        The venue clock that decides which days have ended (share the primary source's);
        ``None`` syncs nothing and uses the local UTC time.
    interval
        Kline interval.
    retry
        Retry policy of the downloader.

    Examples
    --------
    >>> dump = DumpDailySource(cache, emulator + "/dump", clock=binance.clock)  # doctest: +SKIP
    """

    name = "binance-dump"

    def __init__(
        self,
        cache_dir: Path,
        base_url: str = DEFAULT_BASE_URL,
        *,
        clock: VenueClock | None = None,
        interval: str = "1h",
        retry: RetryPolicy | None = None,
    ) -> None:
        self.interval = interval
        self.step = interval_to_timedelta(interval)
        self.downloader = DumpDownloader(
            Path(cache_dir), base_url, retry=retry or RetryPolicy(attempts=3, backoff=0.5)
        )
        self.feeds: tuple[Feed, ...] = (DUMP_FEED,)
        self.clock = clock or VenueClock()
        self._local_clock = clock is None

    def sync_time(self) -> pd.Timestamp:
        """The shared venue clock's last reading (or the local time without one)."""
        if self._local_clock:
            moment = time.monotonic()
            self.clock.observe(int(time.time() * 1000), moment, moment)
        return self.clock.observed

    def listed(self, feed: Feed) -> frozenset[str]:
        """The dump has no listing: every requested asset is tried (a 404 is a missing day)."""
        return _EVERYTHING

    def fetch(self, feed: Feed, asset: str, start: pd.Timestamp, end: pd.Timestamp) -> FeedBatch:
        """Bars of ``asset`` in ``[start, end)`` from the daily files of days that ended."""
        now = self.clock.observed
        first_day = start.floor("D")
        last_day = min(end, now).floor("D")
        frames, rejected, paths = [], [], []
        for day in pd.date_range(first_day, last_day, freq="D", inclusive="left"):
            remote = daily_kline_path(asset, self.interval, day.strftime("%Y-%m-%d"))
            try:
                path, downloaded = self.downloader.fetch(remote)
            except RemoteFileNotFoundError:
                logger.info("binance-dump %s: %s is not published (yet)", asset, remote)
                continue
            except (DownloadError, ChecksumMismatchError) as exc:
                raise SourceUnavailableError(self.name, f"GET {remote}", str(exc), 1) from exc
            if downloaded:
                logger.info("binance-dump %s: downloaded %s", asset, remote)
            read = read_klines(path, asset)
            frames.append(read.frame)
            rejected.append(read.quarantine)
            paths.append(str(path))
        frame = pd.concat(frames, ignore_index=True) if frames else empty_bars()
        kept, unclosed = closed_rows(frame, start, end, self.step, now)
        failures = [r for r in rejected if len(r)]
        rejects = (
            pd.concat(failures, ignore_index=True).assign(dataset="bars", interval=self.interval)
            if failures
            else empty_rejected()
        )
        label = ", ".join(paths) if paths else f"binance-dump {asset} {first_day:%Y-%m-%d}"
        return FeedBatch(feed, asset, kept, rejects, label, now, unclosed)

    def snapshots(self, assets: Sequence[str]) -> list[PerpSnapshot]:
        """The dump has no live state."""
        return []

    def close(self) -> None:
        """Nothing to release (the downloader opens a client per file)."""


class _Everything(frozenset[str]):
    def __contains__(self, item: object) -> bool:
        return True


_EVERYTHING = _Everything()

__all__ = ["DUMP_FEED", "DumpDailySource"]
