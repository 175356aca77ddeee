"""A second venue through ccxt: perpetual OHLCV and funding of any exchange ccxt supports.

ccxt is the ecosystem's standard client, so a venue is configuration, not code: an exchange
id (``"bybit"``, ``"okx"``, ...), optional ccxt options, and optionally an API root that
replaces every URL in ``exchange.urls['api']`` (how the source is pointed at
``dynamargin emulate``). The asset ``BTCUSDT`` maps to the venue's linear perpetual with base
``BTC`` and quote ``USDT`` (ccxt symbol ``BTC/USDT:USDT``), whatever the venue calls it.

ccxt paces requests itself (``enableRateLimit`` with the venue's ``rateLimit``); on top,
this source retries ccxt's transient errors (rate limits, unavailability, timeouts, network)
with the shared :class:`~features.sources.retry.RetryPolicy`, waiting the venue's
``Retry-After`` (or Bybit's ``X-Bapi-Limit-Reset-Timestamp``) when it sends one. The venue's
time comes from ``fetch_time``, so closure is decided on its clock. ccxt's OHLCV has no quote
volume, trade count or taker flow: those columns are NaN (unknown), and the rows land in the
``perp`` dataset under ``ASSET@VENUE`` (e.g. ``BTCUSDT@BYBIT``), validated as the dump's
perp files are.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import ccxt
import numpy as np
import pandas as pd

from features.bars import REQUIRED_COLUMNS, interval_to_timedelta
from features.errors import SourceRequestError, SourceUnavailableError
from features.live.metrics import LiveMetrics
from features.sources.live import (
    Feed,
    FeedBatch,
    PerpSnapshot,
    closed_rows,
    empty_rejected,
    epoch_ms,
    fetch_label,
)
from features.sources.retry import (
    RetryPolicy,
    announce_give_up,
    announce_retry,
    retry_after_seconds,
)
from features.sources.venue_clock import VenueClock

logger = logging.getLogger("dynamargin.live.sources")

_T = TypeVar("_T")

OHLCV_LIMIT = 1000
FUNDING_LIMIT = 200


class CcxtSource:
    """A ccxt exchange's linear perpetuals as a :class:`~features.sources.live.LiveSource`.

    Parameters
    ----------
    exchange_id
        ccxt exchange id, e.g. ``"bybit"``.
    interval
        Bar interval (a ccxt timeframe such as ``"1h"``).
    api_url
        Replace every API URL of the exchange with this root (e.g. the emulator's
        ``http://127.0.0.1:PORT/bybit``); ``None`` for the venue itself.
    options
        ccxt options merged into the exchange's, e.g. ``{"fetchMarkets": {"types":
        ["linear"]}}`` (the default for bybit: only linear markets are loaded).
    settle
        Settlement currency of the perpetuals to use.
    retry, timeout
        Retry policy and per-request timeout in seconds.
    metrics
        Shared metrics.
    sleep
        Waiting function.

    Examples
    --------
    >>> source = CcxtSource("bybit", api_url="http://127.0.0.1:8900/bybit")  # doctest: +SKIP
    >>> [f.name for f in source.feeds]  # doctest: +SKIP
    ['bybit-linear', 'bybit-funding']
    """

    def __init__(
        self,
        exchange_id: str = "bybit",
        *,
        interval: str = "1h",
        api_url: str | None = None,
        options: dict[str, Any] | None = None,
        settle: str = "USDT",
        retry: RetryPolicy | None = None,
        timeout: float = 10.0,
        metrics: LiveMetrics | None = None,
        sleep: Callable[[float], object] = time.sleep,
    ) -> None:
        if exchange_id not in ccxt.exchanges:
            raise ValueError(f"ccxt has no exchange {exchange_id!r}; see ccxt.exchanges")
        self.name = exchange_id
        self.interval = interval
        self.step = interval_to_timedelta(interval)
        self.settle = settle
        self.retry = retry or RetryPolicy(attempts=5, backoff=0.5, max_backoff=8.0, jitter=0.5)
        self.metrics = metrics or LiveMetrics()
        self.sleep = sleep
        self.rng = random.Random()
        merged = dict(_DEFAULT_OPTIONS.get(exchange_id, {}))
        merged.update(options or {})
        self.exchange: ccxt.Exchange = getattr(ccxt, exchange_id)(
            {"enableRateLimit": True, "timeout": int(timeout * 1000), "options": merged}
        )
        if api_url is not None:
            root = api_url.rstrip("/")
            self.exchange.urls["api"] = _replace_urls(self.exchange.urls["api"], root)
        # The store upper-cases asset labels, so the venue suffix is upper case too.
        suffix = f"@{exchange_id.upper()}"
        self.feeds: tuple[Feed, ...] = (
            Feed(f"{exchange_id}-linear", "perp", exchange_id, suffix, price=True),
            Feed(f"{exchange_id}-funding", "funding", exchange_id, suffix),
        )
        self.clock = VenueClock()
        self._markets: dict[str, dict[str, Any]] | None = None

    def sync_time(self) -> pd.Timestamp:
        """Read the venue's time with ``fetch_time`` and update :attr:`clock`."""
        sent = time.monotonic()
        venue_ms = self._call("fetch_time", "", self.exchange.fetch_time)
        self.clock.observe(int(venue_ms), sent, time.monotonic())
        return self.clock.observed

    def listed(self, feed: Feed) -> frozenset[str]:
        """Assets (``BASEQUOTE``) with an active linear perpetual settled in :attr:`settle`."""
        return frozenset(self._perpetuals())

    def fetch(self, feed: Feed, asset: str, start: pd.Timestamp, end: pd.Timestamp) -> FeedBatch:
        """Closed OHLCV bars or settled funding events of ``asset`` in ``[start, end)``."""
        market = self._perpetuals().get(asset)
        if market is None:
            raise SourceRequestError(
                self.name, f"{feed.name} {asset}", f"no {self.settle} linear perpetual listed"
            )
        if feed == self.feeds[0]:
            return self._fetch_ohlcv(feed, asset, market["symbol"], start, end)
        if feed == self.feeds[1]:
            return self._fetch_funding(feed, asset, market["symbol"], start, end)
        raise ValueError(f"{self.name} serves {[f.name for f in self.feeds]}, not {feed.name}")

    def snapshots(self, assets: Sequence[str]) -> list[PerpSnapshot]:
        """Not collected from the second venue (its bar closes feed the oracle median)."""
        return []

    def close(self) -> None:
        """Close ccxt's HTTP session."""
        session = getattr(self.exchange, "session", None)
        if session is not None:
            session.close()

    # --- internals ---------------------------------------------------------------------

    def _perpetuals(self) -> dict[str, dict[str, Any]]:
        if self._markets is None:
            markets = self._call("load_markets", "", self.exchange.load_markets)
            self._markets = {
                f"{m['base']}{m['quote']}": m
                for m in markets.values()
                if m.get("swap")
                and m.get("linear")
                and m.get("settle") == self.settle
                and m.get("active", True) is not False
            }
        return self._markets

    def _fetch_ohlcv(
        self, feed: Feed, asset: str, symbol: str, start: pd.Timestamp, end: pd.Timestamp
    ) -> FeedBatch:
        cursor, stop = epoch_ms(start), epoch_ms(end) - 1
        step_ms = int(self.step / pd.Timedelta(1, "ms"))
        rows: list[list[Any]] = []
        # Pages of at most OHLCV_LIMIT bars by construction: venues differ in which end of a
        # longer range they truncate, so a bounded range is the only unambiguous page.
        while cursor <= stop:
            until = min(stop, cursor + OHLCV_LIMIT * step_ms - 1)
            page = self._call(
                "fetch_ohlcv",
                asset,
                lambda c=cursor, u=until: self.exchange.fetch_ohlcv(
                    symbol, self.interval, since=c, limit=OHLCV_LIMIT, params={"until": u}
                ),
            )
            rows += page
            cursor = until + 1
        label = fetch_label(
            f"{self.name} fetch_ohlcv {symbol} {self.interval} since={epoch_ms(start)}",
            self.clock.observed,
        )
        frame = _ohlcv_frame(rows, feed.store_asset(asset), label)
        kept, unclosed = closed_rows(frame, start, end, self.step, self.clock.observed)
        self.metrics.note_unclosed(feed.name, asset, unclosed)
        return FeedBatch(feed, asset, kept, empty_rejected(), label, self.clock.observed, unclosed)

    def _fetch_funding(
        self, feed: Feed, asset: str, symbol: str, start: pd.Timestamp, end: pd.Timestamp
    ) -> FeedBatch:
        cursor, stop = epoch_ms(start), epoch_ms(end) - 1
        events: list[dict[str, Any]] = []
        # Funding settles at most hourly, so a range of FUNDING_LIMIT hours is one full page.
        span_ms = FUNDING_LIMIT * 3_600_000
        while cursor <= stop:
            until = min(stop, cursor + span_ms - 1)
            page = self._call(
                "fetch_funding_rate_history",
                asset,
                lambda c=cursor, u=until: self.exchange.fetch_funding_rate_history(
                    symbol, since=c, limit=FUNDING_LIMIT, params={"until": u}
                ),
            )
            events += page
            cursor = until + 1
        label = fetch_label(
            f"{self.name} fetch_funding_rate_history {symbol} since={epoch_ms(start)}",
            self.clock.observed,
        )
        stamps = pd.to_numeric(pd.Series([e.get("timestamp") for e in events]), errors="coerce")
        frame = pd.DataFrame(
            {
                "ts": pd.to_datetime(stamps, unit="ms", utc=True).dt.round("s"),
                "asset": feed.store_asset(asset),
                "funding_rate": pd.to_numeric(
                    pd.Series([e.get("fundingRate") for e in events], dtype="object"),
                    errors="coerce",
                ).astype("float64"),
                "source_file": label,
                "source_row": np.arange(1, len(events) + 1, dtype="int64"),
            }
        )
        kept, unsettled = closed_rows(frame, start, end, pd.Timedelta(0), self.clock.observed)
        return FeedBatch(feed, asset, kept, empty_rejected(), label, self.clock.observed, unsettled)

    def _call(self, what: str, asset: str, action: Callable[[], _T]) -> _T:
        """Run a ccxt call with retries on its transient errors; raise ours when giving up."""
        request = f"{what} {asset}".strip()
        last_problem = ""
        retry_after: float | None = None
        for attempt in range(1, self.retry.attempts + 1):
            if attempt > 1:
                self.sleep(self.retry.wait(attempt - 1, retry_after, self.rng))
            retry_after = None
            try:
                result = action()
            except ccxt.RateLimitExceeded as exc:
                reason, last_problem = "rate_limited", f"rate limited ({_short(exc)})"
                retry_after = self._retry_after()
                self.metrics.requests.labels(self.name, what, "rate_limited").inc()
            except ccxt.RequestTimeout as exc:
                reason, last_problem = "timeout", f"timeout ({_short(exc)})"
                self.metrics.requests.labels(self.name, what, "timeout").inc()
            except ccxt.ExchangeNotAvailable as exc:
                reason, last_problem = "server_error", f"unavailable ({_short(exc)})"
                self.metrics.requests.labels(self.name, what, "unavailable").inc()
            except ccxt.NetworkError as exc:
                reason, last_problem = "network", f"network error ({_short(exc)})"
                self.metrics.requests.labels(self.name, what, "network").inc()
            except ccxt.BaseError as exc:
                self.metrics.requests.labels(self.name, what, "refused").inc()
                self.metrics.failures.labels(self.name, what).inc()
                logger.error("%s %s: refused: %s", self.name, request, _short(exc))
                raise SourceRequestError(self.name, request, _short(exc)) from exc
            else:
                self.metrics.requests.labels(self.name, what, "ok").inc()
                return result
            if retry_after is not None and retry_after > self.retry.max_retry_after:
                break
            if attempt < self.retry.attempts:
                self.metrics.retries.labels(self.name, what, reason).inc()
                announce_retry(
                    logger, self.name, request, last_problem, attempt, self.retry, retry_after
                )
        self.metrics.failures.labels(self.name, what).inc()
        announce_give_up(logger, self.name, request, last_problem, self.retry.attempts)
        raise SourceUnavailableError(self.name, request, last_problem, self.retry.attempts)

    def _retry_after(self) -> float | None:
        headers = self.exchange.last_response_headers or {}
        seconds = retry_after_seconds(headers.get("Retry-After"))
        if seconds is not None:
            return seconds
        reset = headers.get("X-Bapi-Limit-Reset-Timestamp")
        if reset is not None and str(reset).isdigit():
            return max(0.0, int(reset) / 1000.0 - time.time())
        return None


_DEFAULT_OPTIONS: dict[str, dict[str, Any]] = {
    # Only linear perpetuals: spot, inverse and option markets are not used, and loading them
    # costs requests (options alone are one per underlying).
    "bybit": {"fetchMarkets": {"types": ["linear"]}},
    "okx": {"fetchMarkets": {"types": ["swap"]}},
}


def _replace_urls(urls: Any, root: str) -> Any:
    """Every URL string in ccxt's nested ``urls['api']`` replaced by ``root``."""
    if isinstance(urls, dict):
        return {key: _replace_urls(value, root) for key, value in urls.items()}
    return root if isinstance(urls, str) else urls


def _ohlcv_frame(rows: list[list[Any]], store_asset: str, label: str) -> pd.DataFrame:
    """ccxt OHLCV rows ``[ms, open, high, low, close, volume]`` in the Bars schema."""
    table = pd.DataFrame(
        [r[:6] for r in rows], columns=["ms", "open", "high", "low", "close", "volume"]
    )
    frame = pd.DataFrame(
        {"ts": pd.to_datetime(pd.to_numeric(table["ms"], errors="coerce"), unit="ms", utc=True)}
    )
    frame["asset"] = store_asset
    for column in ("open", "high", "low", "close", "volume"):
        frame[column] = pd.to_numeric(table[column], errors="coerce").astype("float64")
    for column in ("quote_volume", "trades", "taker_buy_volume", "taker_buy_quote_volume"):
        frame[column] = np.nan
    frame = frame[list(REQUIRED_COLUMNS)]
    frame["source_file"] = label
    frame["source_row"] = np.arange(1, len(frame) + 1, dtype="int64")
    return frame


def _short(exc: BaseException) -> str:
    text = f"{type(exc).__name__}: {exc}"
    return text if len(text) <= 300 else text[:297] + "..."


__all__ = ["CcxtSource"]
