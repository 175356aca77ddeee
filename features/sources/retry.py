"""How every remote source retries: exponential backoff with jitter, honouring ``Retry-After``.

One policy serves the dump downloader and the live REST sources, so a change to the retry
rule (how long, how many times, how much jitter) happens here once.
"""

from __future__ import annotations

import email.utils
import logging
import math
import random
import time
from dataclasses import dataclass
from typing import Final

RETRY_STATUS: Final[frozenset[int]] = frozenset({408, 418, 425, 429, 500, 502, 503, 504})
"""HTTP statuses worth another try: timeouts, rate limits (429, Binance's 418 ban) and 5xx."""

RATE_LIMIT_STATUS: Final[frozenset[int]] = frozenset({418, 429})
"""Statuses that mean "too many requests": wait as the server says before the next one."""


@dataclass(frozen=True)
class RetryPolicy:
    """How often and how patiently to retry a failing request.

    Attributes
    ----------
    attempts
        Total tries per request (first try included).
    backoff
        Seconds before the first retry; doubles at each further retry.
    max_backoff
        Upper bound on one backoff wait.
    jitter
        Fraction of each backoff drawn at random, ``wait * (1 - jitter * U)`` with ``U`` uniform
        on [0, 1): many clients that failed together do not retry in lockstep. ``0`` (the
        default) keeps waits deterministic.
    max_retry_after
        Longest ``Retry-After`` the client waits for; a longer one (e.g. an IP ban) fails the
        request at once instead of blocking the caller.

    Examples
    --------
    >>> RetryPolicy(backoff=1.0, max_backoff=5.0).delay(3)
    4.0
    >>> RetryPolicy().wait(1, retry_after=2.5)
    2.5
    """

    attempts: int = 5
    backoff: float = 0.5
    max_backoff: float = 30.0
    jitter: float = 0.0
    max_retry_after: float = 120.0

    def __post_init__(self) -> None:
        if self.attempts < 1:
            raise ValueError(f"attempts must be >= 1, got {self.attempts}")
        if self.backoff < 0 or self.max_backoff < 0 or self.max_retry_after < 0:
            raise ValueError("backoff, max_backoff and max_retry_after must be >= 0 seconds")
        if not 0.0 <= self.jitter <= 1.0:
            raise ValueError(f"jitter must lie in [0, 1], got {self.jitter}")

    def delay(self, retry: int) -> float:
        """Backoff in seconds before retry number ``retry`` (1-based), without jitter."""
        return min(self.backoff * 2 ** (retry - 1), self.max_backoff)

    def wait(
        self, retry: int, retry_after: float | None = None, rng: random.Random | None = None
    ) -> float:
        """Seconds to wait before retry number ``retry``.

        Parameters
        ----------
        retry
            1-based number of the retry about to happen.
        retry_after
            The server's ``Retry-After`` in seconds, when it sent one: it wins over the
            backoff (waiting less would only earn another rejection).
        rng
            Source of the jitter; the module's generator by default.
        """
        if retry_after is not None:
            return max(0.0, retry_after)
        base = self.delay(retry)
        if self.jitter == 0.0:
            return base
        draw = (rng or random).random()
        return base * (1.0 - self.jitter * draw)


def retry_after_seconds(value: str | None, now: float | None = None) -> float | None:
    """Parse a ``Retry-After`` header: delta seconds or an HTTP date; ``None`` if absent/bad.

    Examples
    --------
    >>> retry_after_seconds("3")
    3.0
    >>> retry_after_seconds("soon") is None
    True
    """
    if value is None:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        try:
            moment = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        seconds = moment.timestamp() - (time.time() if now is None else now)
    if not math.isfinite(seconds):
        return None
    return max(0.0, seconds)


def announce_retry(
    logger: logging.Logger,
    source: str,
    request: str,
    problem: str,
    attempt: int,
    policy: RetryPolicy,
    retry_after: float | None = None,
) -> None:
    """Log the one line a retried failure gets: what failed, which retry, how long the wait."""
    wait = (
        f"Retry-After {retry_after:g} s"
        if retry_after is not None
        else f"backoff ~{policy.delay(attempt):g} s"
    )
    logger.warning(
        "%s %s: %s; retry %d/%d after %s",
        source,
        request,
        problem,
        attempt,
        policy.attempts - 1,
        wait,
    )


def announce_give_up(
    logger: logging.Logger, source: str, request: str, problem: str, attempts: int
) -> None:
    """Log the line of a request given up after every retry."""
    logger.error("%s %s: giving up after %d attempts: %s", source, request, attempts, problem)


__all__ = [
    "RATE_LIMIT_STATUS",
    "RETRY_STATUS",
    "RetryPolicy",
    "announce_give_up",
    "announce_retry",
    "retry_after_seconds",
]
