"""Binance REST, the primary live source: spot and USDT-M klines, funding, OI, premium index.

Endpoints (public, no key) and their request weights:

============================  ==========================  =====================================
feed / use                    endpoint                    weight
============================  ==========================  =====================================
venue time                    ``GET /api/v3/time``        1 (spot), ``/fapi/v1/time`` 1
listed symbols, rate limits   ``GET /api/v3/exchangeInfo``  20 (spot), ``/fapi/v1/exchangeInfo`` 1
``binance-spot`` (bars)       ``GET /api/v3/klines``      2
``binance-usdm`` (perp)       ``GET /fapi/v1/klines``     1 / 2 / 5 / 10 by ``limit``
``binance-funding``           ``GET /fapi/v1/fundingRate`` 1
perp snapshot                 ``GET /fapi/v1/premiumIndex`` and ``/fapi/v1/openInterest``, 1 each
============================  ==========================  =====================================

Klines carry taker volume and trade counts, and go through the dump's own kline parser
(:func:`features.sources.binance.parse_kline_rows`), so a bar from REST and the same bar from
the dump are the same floats. Spot and USDT-M are separate servers with separate weight
budgets (6000 and 2400 per minute, adopted from ``exchangeInfo``) and separate clocks.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from typing import Any, Final

import numpy as np
import pandas as pd

from features.bars import interval_to_timedelta
from features.errors import SourceError, SourceRequestError
from features.live.metrics import LiveMetrics
from features.sources.binance import epoch_to_utc, parse_kline_rows
from features.sources.live import (
    Feed,
    FeedBatch,
    PerpSnapshot,
    closed_rows,
    empty_rejected,
    epoch_ms,
    fetch_label,
)
from features.sources.request_weight import RequestWeightLimiter
from features.sources.rest import RestClient
from features.sources.retry import RetryPolicy

logger = logging.getLogger("dynamargin.live.sources")

SPOT_URL: Final[str] = "https://api.binance.com"
USDM_URL: Final[str] = "https://fapi.binance.com"
USED_WEIGHT_HEADER: Final[str] = "X-MBX-USED-WEIGHT-1M"

SPOT_FEED: Final[Feed] = Feed("binance-spot", "bars", "binance", price=True, role="required")
USDM_FEED: Final[Feed] = Feed("binance-usdm", "perp", "binance", price=True)
FUNDING_FEED: Final[Feed] = Feed("binance-funding", "funding", "binance")

KLINE_LIMIT: Final[int] = 1000
FUNDING_LIMIT: Final[int] = 1000
LISTING_TTL_SECONDS: Final[float] = 3600.0


class BinanceRestSource:
    """Binance spot and USDT-M futures REST API as a :class:`~features.sources.live.LiveSource`.

    Parameters
    ----------
    spot_url, usdm_url
        API roots; point both at ``dynamargin emulate`` to run against the emulator.
    interval
        Kline interval, e.g. ``"1h"``.
    usdm
        Also serve the USDT-M feeds (perp bars, funding, snapshots).
    retry, timeout
        Retry policy and per-request timeout of both clients.
    metrics
        Shared metrics.
    sleep
        Waiting function (a runner passes one that returns early on shutdown).

    Examples
    --------
    >>> emulator = "http://127.0.0.1:8900"
    >>> source = BinanceRestSource(emulator, emulator)  # doctest: +SKIP
    >>> now = source.sync_time()  # doctest: +SKIP
    >>> day = pd.Timedelta("1D")
    >>> batch = source.fetch(SPOT_FEED, "BTCUSDT", now - day, now.floor("h"))  # doctest: +SKIP
    """

    name = "binance"

    def __init__(
        self,
        spot_url: str = SPOT_URL,
        usdm_url: str = USDM_URL,
        *,
        interval: str = "1h",
        usdm: bool = True,
        retry: RetryPolicy | None = None,
        timeout: float = 10.0,
        metrics: LiveMetrics | None = None,
        sleep: Callable[[float], object] = time.sleep,
    ) -> None:
        self.interval = interval
        self.step = interval_to_timedelta(interval)
        self.metrics = metrics or LiveMetrics()
        common: dict[str, Any] = {
            "retry": retry,
            "timeout": timeout,
            "used_weight_header": USED_WEIGHT_HEADER,
            "metrics": self.metrics,
            "sleep": sleep,
        }
        self.spot = RestClient(
            "binance-spot",
            spot_url,
            limiter=RequestWeightLimiter(6000, sleep=sleep),
            **common,
        )
        self.usdm: RestClient | None = None
        feeds = [SPOT_FEED]
        if usdm:
            self.usdm = RestClient(
                "binance-usdm",
                usdm_url,
                limiter=RequestWeightLimiter(2400, sleep=sleep),
                **common,
            )
            feeds += [USDM_FEED, FUNDING_FEED]
        self.feeds: tuple[Feed, ...] = tuple(feeds)
        self.clock = self.spot.clock
        self._listings: dict[str, tuple[float, frozenset[str]]] = {}

    # --- LiveSource --------------------------------------------------------------------

    def sync_time(self) -> pd.Timestamp:
        """Sync both servers' clocks; returns the spot server's time."""
        if self.usdm is not None:
            self.usdm.sync_time("/fapi/v1/time")
        self.spot.sync_time("/api/v3/time")
        return self.spot.clock.observed

    def listed(self, feed: Feed) -> frozenset[str]:
        """Symbols in ``TRADING`` status on the feed's server (cached for an hour)."""
        client = self._client(feed)
        cached = self._listings.get(client.name)
        if cached is not None and time.monotonic() - cached[0] < LISTING_TTL_SECONDS:
            return cached[1]
        spot = client is self.spot
        info = client.get_json(
            "/api/v3/exchangeInfo" if spot else "/fapi/v1/exchangeInfo", weight=20 if spot else 1
        )
        for rule in info.get("rateLimits", []):
            if rule.get("rateLimitType") == "REQUEST_WEIGHT" and rule.get("interval") == "MINUTE":
                if client.limiter is not None and rule.get("intervalNum", 1) == 1:
                    client.limiter.set_limit(int(rule.get("limit", client.limiter.limit)))
        symbols = frozenset(
            s["symbol"] for s in info.get("symbols", []) if s.get("status") == "TRADING"
        )
        self._listings[client.name] = (time.monotonic(), symbols)
        return symbols

    def fetch(self, feed: Feed, asset: str, start: pd.Timestamp, end: pd.Timestamp) -> FeedBatch:
        """Closed klines (or settled funding events) of ``asset`` in ``[start, end)``."""
        if feed == FUNDING_FEED:
            return self._fetch_funding(asset, start, end)
        if feed not in (SPOT_FEED, USDM_FEED):
            raise ValueError(f"binance serves {[f.name for f in self.feeds]}, not {feed.name}")
        return self._fetch_klines(feed, asset, start, end)

    def snapshots(self, assets: Sequence[str]) -> list[PerpSnapshot]:
        """Mark, index, estimated funding and open interest of each listed perpetual."""
        if self.usdm is None:
            return []
        listed = self.listed(USDM_FEED)
        found = []
        for asset in assets:
            if asset not in listed:
                continue
            try:
                premium = self.usdm.get_json(
                    "/fapi/v1/premiumIndex", {"symbol": asset}, weight=1, what=asset
                )
                interest = self.usdm.get_json(
                    "/fapi/v1/openInterest", {"symbol": asset}, weight=1, what=asset
                )
            except SourceError as exc:
                logger.warning("binance-usdm %s: no perp snapshot this cycle: %s", asset, exc)
                continue
            found.append(_snapshot(asset, premium, interest, self.usdm.clock.observed))
        return found

    def close(self) -> None:
        """Close both connection pools."""
        self.spot.close()
        if self.usdm is not None:
            self.usdm.close()

    # --- internals ---------------------------------------------------------------------

    def _client(self, feed: Feed) -> RestClient:
        if feed == SPOT_FEED:
            return self.spot
        if self.usdm is None:
            raise ValueError(f"{feed.name} needs the USDT-M API (usdm=True)")
        return self.usdm

    def _fetch_klines(
        self, feed: Feed, asset: str, start: pd.Timestamp, end: pd.Timestamp
    ) -> FeedBatch:
        client = self._client(feed)
        path = "/api/v3/klines" if client is self.spot else "/fapi/v1/klines"
        step_ms = int(self.step / pd.Timedelta(1, "ms"))
        cursor, stop = epoch_ms(start), epoch_ms(end) - 1
        frames, rejects = [], []
        label = ""
        while cursor <= stop:
            params = {
                "symbol": asset,
                "interval": self.interval,
                "startTime": cursor,
                "endTime": stop,
                "limit": KLINE_LIMIT,
            }
            rows = _list_answer(client, path, params, _kline_weight(client, KLINE_LIMIT), asset)
            label = fetch_label(
                f"GET {client.base_url}{path}?symbol={asset}&startTime={cursor}",
                client.clock.observed,
            )
            frame, rejected = parse_kline_rows(rows, feed.store_asset(asset), label)
            frames.append(frame)
            rejects.append(rejected)
            if len(rows) < KLINE_LIMIT or frame.empty:
                break
            cursor = epoch_ms(frame["ts"].max()) + step_ms
        frame = pd.concat(frames, ignore_index=True)
        kept, unclosed = closed_rows(frame, start, end, self.step, client.clock.observed)
        self.metrics.note_unclosed(feed.name, asset, unclosed)
        return FeedBatch(
            feed,
            asset,
            kept,
            _as_rejected(rejects, feed, self.interval),
            label,
            client.clock.observed,
            unclosed,
        )

    def _fetch_funding(self, asset: str, start: pd.Timestamp, end: pd.Timestamp) -> FeedBatch:
        client = self._client(FUNDING_FEED)
        path = "/fapi/v1/fundingRate"
        cursor, stop = epoch_ms(start), epoch_ms(end) - 1
        records: list[dict[str, Any]] = []
        label = ""
        while cursor <= stop:
            params = {"symbol": asset, "startTime": cursor, "endTime": stop, "limit": FUNDING_LIMIT}
            rows = _list_answer(client, path, params, 1, asset)
            label = fetch_label(
                f"GET {client.base_url}{path}?symbol={asset}&startTime={cursor}",
                client.clock.observed,
            )
            offset = len(records)
            records += [
                {"row": offset + i + 1, "label": label, **r}
                for i, r in enumerate(rows)
                if isinstance(r, dict)
            ]
            if len(rows) < FUNDING_LIMIT:
                break
            last = max(int(r.get("fundingTime", 0)) for r in rows if isinstance(r, dict))
            cursor = last + 1
        frame, rejected = _funding_frame(records, FUNDING_FEED.store_asset(asset))
        kept, unsettled = closed_rows(frame, start, end, pd.Timedelta(0), client.clock.observed)
        return FeedBatch(
            FUNDING_FEED,
            asset,
            kept,
            _as_rejected([rejected], FUNDING_FEED, ""),
            label,
            client.clock.observed,
            unsettled,
        )


def _list_answer(
    client: RestClient, path: str, params: dict[str, Any], weight: int, asset: str
) -> list[Any]:
    rows = client.get_json(path, params, weight=weight, what=asset)
    if not isinstance(rows, list):
        raise SourceRequestError(
            client.name, f"GET {path} {asset}", f"expected a JSON list, got {str(rows)[:200]}"
        )
    return rows


def _kline_weight(client: RestClient, limit: int) -> int:
    """Request weight of a klines call: 2 on spot; by ``limit`` on USDT-M futures."""
    if client.name == "binance-spot":
        return 2
    if limit < 100:
        return 1
    if limit < 500:
        return 2
    return 5 if limit <= 1000 else 10


def _funding_frame(
    records: list[dict[str, Any]], store_asset: str
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Funding rows ``ts, asset, funding_rate`` (+ provenance) from ``/fapi/v1/fundingRate``.

    ``ts`` is ``fundingTime`` rounded to the second, exactly as the dump reader does
    (:func:`features.sources.binance.read_funding`), so both paths store the same time.
    """
    stamps = pd.to_numeric(pd.Series([r.get("fundingTime") for r in records]), errors="coerce")
    ts, bad = epoch_to_utc(stamps.to_numpy(dtype="float64"))
    rates = pd.to_numeric(pd.Series([r.get("fundingRate") for r in records]), errors="coerce")
    frame = pd.DataFrame(
        {
            "ts": ts.round("s"),
            "asset": store_asset,
            "funding_rate": rates.to_numpy(dtype="float64"),
            "source_file": [r["label"] for r in records],
            "source_row": np.asarray([r["row"] for r in records], dtype="int64"),
        }
    )
    rejected = frame[bad].assign(
        reason="fundingTime is neither epoch milliseconds nor microseconds",
        raw=[repr(records[i])[:300] for i in np.flatnonzero(bad)],
    )
    return frame[~bad].reset_index(drop=True), rejected.reset_index(drop=True)


def _as_rejected(frames: list[pd.DataFrame], feed: Feed, interval: str) -> pd.DataFrame:
    frames = [f for f in frames if len(f)]
    if not frames:
        return empty_rejected()
    dataset = "funding" if not feed.is_bars else feed.dataset
    return pd.concat(frames, ignore_index=True).assign(dataset=dataset, interval=interval)


def _snapshot(
    asset: str, premium: dict[str, Any], interest: dict[str, Any], answered: pd.Timestamp
) -> PerpSnapshot:
    def number(body: dict[str, Any], key: str) -> float | None:
        try:
            value = float(body[key])
        except (KeyError, TypeError, ValueError):
            return None
        return value if np.isfinite(value) else None

    def moment(body: dict[str, Any], key: str) -> pd.Timestamp | None:
        try:
            return pd.Timestamp(int(body[key]), unit="ms", tz="UTC")
        except (KeyError, TypeError, ValueError):
            return None

    ts = moment(premium, "time") or moment(interest, "time") or answered
    return PerpSnapshot(
        venue="binance",
        asset=asset,
        ts=ts,
        open_interest=number(interest, "openInterest"),
        mark_price=number(premium, "markPrice"),
        index_price=number(premium, "indexPrice"),
        funding_rate_estimate=number(premium, "lastFundingRate"),
        next_funding_time=moment(premium, "nextFundingTime"),
    )


__all__ = [
    "FUNDING_FEED",
    "SPOT_FEED",
    "SPOT_URL",
    "USDM_FEED",
    "USDM_URL",
    "BinanceRestSource",
]
