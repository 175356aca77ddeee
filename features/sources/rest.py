"""A polite JSON-over-HTTP client for a venue's REST API.

Every request of a live source goes through :meth:`RestClient.get_json`, which

- spends the request's weight from the venue's budget first (:class:`RequestWeightLimiter`)
  and adopts the weight the venue reports having counted;
- retries rate limits (429, 418), 5xx, timeouts and connection errors with the shared
  :class:`~features.sources.retry.RetryPolicy` (exponential backoff with jitter), waiting
  exactly the server's ``Retry-After`` when it sends one and holding the whole budget for
  that long;
- logs one line per fault and counts it (:class:`~features.live.metrics.LiveMetrics`), and
  raises our own errors when it gives up, so a caller never sees a raw ``httpx`` exception.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable, Mapping
from typing import Any

import httpx

from features.errors import SourceRequestError, SourceUnavailableError
from features.live.metrics import LiveMetrics
from features.sources.request_weight import RequestWeightLimiter
from features.sources.retry import (
    RATE_LIMIT_STATUS,
    RETRY_STATUS,
    RetryPolicy,
    announce_give_up,
    announce_retry,
    retry_after_seconds,
)
from features.sources.venue_clock import VenueClock

logger = logging.getLogger("dynamargin.live.sources")

USER_AGENT = "dynamargin-live/1"


class RestClient:
    """GET JSON from one venue API with rate limiting, retries, logging and metrics.

    Parameters
    ----------
    name
        Source name for logs and metrics, e.g. ``"binance-spot"``.
    base_url
        API root, e.g. ``https://api.binance.com``.
    retry
        Retry policy; the default retries 4 times with jittered backoff.
    timeout
        Seconds for connect and for each read.
    limiter
        The venue's request-weight budget; ``None`` for none.
    used_weight_header
        Response header carrying the weight the venue counted (Binance:
        ``X-MBX-USED-WEIGHT-1M``).
    metrics
        Where faults are counted.
    sleep
        Waiting function; a live runner passes one that returns early on shutdown.
    rng
        Jitter source.
    """

    def __init__(
        self,
        name: str,
        base_url: str,
        *,
        retry: RetryPolicy | None = None,
        timeout: float = 10.0,
        limiter: RequestWeightLimiter | None = None,
        used_weight_header: str | None = None,
        metrics: LiveMetrics | None = None,
        sleep: Callable[[float], object] = time.sleep,
        rng: random.Random | None = None,
    ) -> None:
        self.name = name
        self.base_url = base_url.rstrip("/")
        self.retry = retry or RetryPolicy(attempts=5, backoff=0.5, max_backoff=8.0, jitter=0.5)
        self.limiter = limiter
        self.used_weight_header = used_weight_header
        self.metrics = metrics or LiveMetrics()
        self.sleep = sleep
        self.rng = rng or random.Random()
        self.clock = VenueClock()
        self._client = httpx.Client(
            timeout=httpx.Timeout(timeout),
            headers={"User-Agent": USER_AGENT, "Accept": "application/json"},
        )

    def get_json(
        self,
        path: str,
        params: Mapping[str, Any] | None = None,
        *,
        weight: int = 1,
        what: str = "",
    ) -> Any:
        """GET ``base_url + path`` and decode its JSON body.

        Parameters
        ----------
        path
            Endpoint path, e.g. ``/api/v3/klines``; also the ``endpoint`` metric label.
        params
            Query parameters.
        weight
            The endpoint's request weight.
        what
            Identifying detail for messages (e.g. the symbol).

        Raises
        ------
        SourceUnavailableError
            If every attempt failed transiently, or the venue asked for a longer pause than
            ``retry.max_retry_after``.
        SourceRequestError
            If the venue refused the request (4xx other than rate limits) or the body is
            not JSON.
        """
        return self._request(path, params, weight, what)[0]

    def sync_time(self, path: str, field: str = "serverTime", *, weight: int = 1) -> int:
        """Read the venue's time (epoch ms) from ``path`` and update :attr:`clock`."""
        sent = time.monotonic()
        body, received = self._request(path, None, weight, "")
        try:
            venue_ms = int(_dig(body, field))
        except (KeyError, TypeError, ValueError) as exc:
            raise SourceRequestError(
                self.name, f"GET {path}", f"no {field!r} in the answer {str(body)[:200]}"
            ) from exc
        self.clock.observe(venue_ms, sent, received)
        return venue_ms

    def close(self) -> None:
        """Close the connection pool."""
        self._client.close()

    def _request(
        self, path: str, params: Mapping[str, Any] | None, weight: int, what: str
    ) -> tuple[Any, float]:
        request = f"GET {path}" + (f" {what}" if what else "")
        last_problem = ""
        retry_after: float | None = None
        for attempt in range(1, self.retry.attempts + 1):
            if attempt > 1:
                pause = self.retry.wait(attempt - 1, retry_after, self.rng)
                self.sleep(pause)
            retry_after = None
            if self.limiter is not None:
                waited = self.limiter.acquire(weight)
                if waited > 0:
                    self.metrics.rate_limit_waits.labels(self.name).inc(waited)
                    logger.info(
                        "%s %s: waited %.2f s for the request-weight budget",
                        self.name,
                        request,
                        waited,
                    )
            try:
                response = self._client.get(self.base_url + path, params=params)
            except httpx.TimeoutException as exc:
                last_problem = f"timeout ({type(exc).__name__})"
                self._retrying(request, path, "timeout", last_problem, attempt)
                continue
            except httpx.TransportError as exc:
                last_problem = f"{type(exc).__name__}: {exc}"
                self._retrying(request, path, "network", last_problem, attempt)
                continue
            received = time.monotonic()
            self._observe_weight(response)
            status = response.status_code
            if status == 200:
                self.metrics.requests.labels(self.name, path, "ok").inc()
                try:
                    return response.json(), received
                except ValueError as exc:
                    self.metrics.failures.labels(self.name, path).inc()
                    raise SourceRequestError(
                        self.name, request, f"the answer is not JSON: {response.text[:200]!r}"
                    ) from exc
            self.metrics.requests.labels(self.name, path, f"http_{status}").inc()
            problem = f"HTTP {status} {_venue_message(response)}".rstrip()
            if status not in RETRY_STATUS:
                self.metrics.failures.labels(self.name, path).inc()
                logger.error("%s %s: refused: %s", self.name, request, problem)
                raise SourceRequestError(self.name, request, problem)
            last_problem = problem
            if status in RATE_LIMIT_STATUS:
                retry_after = retry_after_seconds(response.headers.get("Retry-After"))
                if retry_after is not None:
                    if retry_after > self.retry.max_retry_after:
                        self.metrics.failures.labels(self.name, path).inc()
                        raise SourceUnavailableError(
                            self.name,
                            request,
                            f"{problem}; Retry-After {retry_after:.0f} s is longer than "
                            f"{self.retry.max_retry_after:.0f} s",
                            attempt,
                        )
                    if self.limiter is not None:
                        self.limiter.block_for(retry_after)
                    self.metrics.rate_limit_waits.labels(self.name).inc(retry_after)
                reason = "rate_limited"
            else:
                reason = "server_error"
            self._retrying(request, path, reason, problem, attempt, retry_after)
        self.metrics.failures.labels(self.name, path).inc()
        announce_give_up(logger, self.name, request, last_problem, self.retry.attempts)
        raise SourceUnavailableError(self.name, request, last_problem, self.retry.attempts)

    def _retrying(
        self,
        request: str,
        path: str,
        reason: str,
        problem: str,
        attempt: int,
        retry_after: float | None = None,
    ) -> None:
        if reason in ("timeout", "network"):
            self.metrics.requests.labels(self.name, path, reason).inc()
        if attempt >= self.retry.attempts:
            return
        self.metrics.retries.labels(self.name, path, reason).inc()
        problem = f"{problem} ({reason.replace('_', ' ')})"
        announce_retry(logger, self.name, request, problem, attempt, self.retry, retry_after)

    def _observe_weight(self, response: httpx.Response) -> None:
        if self.limiter is None or self.used_weight_header is None:
            return
        used = response.headers.get(self.used_weight_header)
        if used is not None and used.isdigit():
            self.limiter.observe_used(int(used))


def _venue_message(response: httpx.Response) -> str:
    """The venue's own error text: Binance ``{"code", "msg"}``, else the start of the body."""
    try:
        body = response.json()
    except ValueError:
        return response.text[:200].strip()
    if isinstance(body, dict) and "msg" in body:
        return f"(code {body.get('code')}: {body['msg']})"
    return str(body)[:200]


def _dig(body: Any, dotted: str) -> Any:
    for key in dotted.split("."):
        body = body[key]
    return body


__all__ = ["RestClient"]
