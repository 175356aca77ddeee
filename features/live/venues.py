"""Which venues a live runner talks to, and where: one typed description, built into sources.

``VenueEndpoints.emulator(url)`` points every source at ``dynamargin emulate``; the defaults
are the real venues. :meth:`VenueEndpoints.build` returns the sources in the order the
runner wants them (the primary venue first: its clock schedules the cycles).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict

from features.live.metrics import LiveMetrics
from features.sources.binance_rest import SPOT_URL, USDM_URL, BinanceRestSource
from features.sources.ccxt_venue import CcxtSource
from features.sources.download import DEFAULT_BASE_URL
from features.sources.dump_daily import DumpDailySource
from features.sources.live import LiveSource
from features.sources.retry import RetryPolicy


class VenueEndpoints(BaseModel):
    """Where the live sources are.

    Attributes
    ----------
    binance_spot_url, binance_usdm_url
        Binance spot and USDT-M API roots.
    usdm
        Also ingest USDT-M perp bars, funding and snapshots.
    second_venue
        ccxt exchange id of the second venue (``None``: none).
    second_venue_url
        Its API root (``None``: the venue's own URLs).
    dump_url
        Root of the public dump for daily-file backfill (``None``: no dump backfill).
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    binance_spot_url: str = SPOT_URL
    binance_usdm_url: str = USDM_URL
    usdm: bool = True
    second_venue: str | None = "bybit"
    second_venue_url: str | None = None
    dump_url: str | None = DEFAULT_BASE_URL

    @classmethod
    def emulator(
        cls, url: str, *, second_venue: str | None = "bybit", dump: bool = True
    ) -> VenueEndpoints:
        """Every source pointed at the emulator on ``url``."""
        root = url.rstrip("/")
        return cls(
            binance_spot_url=root,
            binance_usdm_url=root,
            second_venue=second_venue,
            second_venue_url=f"{root}/{second_venue}" if second_venue else None,
            dump_url=f"{root}/dump" if dump else None,
        )

    def build(
        self,
        *,
        interval: str = "1h",
        cache_dir: Path | None = None,
        metrics: LiveMetrics | None = None,
        retry: RetryPolicy | None = None,
        timeout: float = 10.0,
        sleep: Callable[[float], object] = time.sleep,
    ) -> list[LiveSource]:
        """The sources, primary first.

        Parameters
        ----------
        interval
            Bar interval.
        cache_dir
            Download cache of the dump source (required when ``dump_url`` is set).
        metrics
            Shared metrics.
        retry, timeout
            Retry policy and per-request timeout of the REST sources.
        sleep
            Waiting function (pass one that returns at once on shutdown).
        """
        common: dict[str, Any] = {
            "interval": interval,
            "retry": retry,
            "timeout": timeout,
            "metrics": metrics or LiveMetrics(),
            "sleep": sleep,
        }
        binance = BinanceRestSource(
            self.binance_spot_url, self.binance_usdm_url, usdm=self.usdm, **common
        )
        sources: list[LiveSource] = [binance]
        if self.second_venue is not None:
            sources.append(CcxtSource(self.second_venue, api_url=self.second_venue_url, **common))
        if self.dump_url is not None:
            if cache_dir is None:
                raise ValueError("the dump backfill source needs a cache_dir")
            sources.append(
                DumpDailySource(cache_dir, self.dump_url, clock=binance.clock, interval=interval)
            )
        return sources


__all__ = ["VenueEndpoints"]
