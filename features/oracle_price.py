"""A multi-source oracle price: the median of several feeds, guarded for staleness and deviation.

Inputs are plain records, one per feed: ``(feed name, price, time)``. The rule:

1. **Validity**: a feed whose price is not a finite positive number is ``invalid``.
2. **Staleness**: a feed older than its maximum age at ``now`` is ``stale``. A feed dated in
   the future (beyond a small clock tolerance) is ``invalid``: it cannot be trusted to be
   what it claims.
3. **Median**: the price is the median of the remaining (fresh, valid) feeds.
4. **Deviation**: a fresh feed more than ``max_deviation`` (relative) away from that median is
   ``deviating``: it is dropped from the healthy set, logged and counted by the caller.
5. **Guard**: with fewer than ``min_healthy`` healthy feeds the asset is ``guarded``: no
   liquidation and no new risk may happen on this price.

Why the price is the median of *all fresh feeds* and not re-computed over the healthy ones:
the median of three feeds always lies between the two honest ones, whatever the third says;
re-taking the median after dropping feeds can leave an even pair that averages an honest feed
with a manipulated one that happened to sit just inside the band, and move the price outside
the honest range. Dropping only decides health, so the guarantees are:

- with at least three fresh feeds of which at most one is manipulated, the price lies within
  the range of the honest feeds (any manipulation, any size);
- whenever the asset is not guarded, at least ``min_healthy`` feeds lie within
  ``max_deviation`` of the price.

Pure functions on numpy; the output is again plain records, so it feeds the liquidation
core's oracle guard (a set of named reference feeds, each with its own timestamp) directly.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Final, Literal

import numpy as np

FeedState = Literal["healthy", "stale", "deviating", "invalid"]

FUTURE_TOLERANCE_MS: Final[int] = 5_000
"""How far in the future a feed's time may lie (clock skew between venues) before it is invalid."""


@dataclass(frozen=True)
class FeedPrice:
    """One feed's latest price.

    Attributes
    ----------
    feed
        Feed name, e.g. ``"binance-spot"``.
    price
        Price in quote currency.
    ts_ms
        When the price was known (epoch milliseconds), e.g. the close of its bar.
    """

    feed: str
    price: float
    ts_ms: int


@dataclass(frozen=True)
class MedianConfig:
    """The guards of the median.

    Attributes
    ----------
    max_age_ms
        Maximum age of a feed at evaluation, in ms: one value for every feed, or a mapping
        from feed name to its own maximum (feeds not in the mapping get ``default_max_age_ms``).
    default_max_age_ms
        Maximum age of feeds missing from a ``max_age_ms`` mapping.
    max_deviation
        Largest relative distance from the median for a feed to count as healthy.
    min_healthy
        Fewest healthy feeds for an unguarded price (at least 1).
    """

    max_age_ms: int | Mapping[str, int] = 2 * 3_600_000
    default_max_age_ms: int = 2 * 3_600_000
    max_deviation: float = 0.02
    min_healthy: int = 2

    def __post_init__(self) -> None:
        if not (math.isfinite(self.max_deviation) and self.max_deviation > 0):
            raise ValueError(f"max_deviation must be a positive number, got {self.max_deviation}")
        if self.min_healthy < 1:
            raise ValueError(f"min_healthy must be >= 1, got {self.min_healthy}")

    def max_age_of(self, feed: str) -> int:
        """Maximum age in ms of one feed."""
        if isinstance(self.max_age_ms, Mapping):
            return int(self.max_age_ms.get(feed, self.default_max_age_ms))
        return int(self.max_age_ms)


@dataclass(frozen=True)
class FeedVerdict:
    """What the median made of one feed."""

    feed: str
    price: float
    ts_ms: int
    state: FeedState
    detail: str = ""


@dataclass(frozen=True)
class MedianPrice:
    """The oracle price of one asset at one time.

    Attributes
    ----------
    asset
        The asset.
    price
        Median of the fresh, valid feeds; NaN when there is none. Informational only when
        ``guarded``.
    ts_ms
        Evaluation time (epoch ms).
    guarded
        Too few healthy feeds: no liquidation and no new risk on this price.
    reason
        Why it is guarded (empty otherwise).
    verdicts
        One per input feed, in input order.
    """

    asset: str
    price: float
    ts_ms: int
    guarded: bool
    reason: str
    verdicts: tuple[FeedVerdict, ...] = field(default_factory=tuple)

    @property
    def healthy(self) -> tuple[FeedVerdict, ...]:
        """The feeds that count."""
        return tuple(v for v in self.verdicts if v.state == "healthy")

    @property
    def dropped(self) -> tuple[FeedVerdict, ...]:
        """The feeds left out, with their state and detail."""
        return tuple(v for v in self.verdicts if v.state != "healthy")

    def reference_feeds(self) -> tuple[tuple[str, float, int], ...]:
        """Healthy feeds as ``(name, price, ts_ms)`` records, the oracle guard's reference input."""
        return tuple((v.feed, v.price, v.ts_ms) for v in self.healthy)

    def to_dict(self) -> dict[str, object]:
        """A JSON-ready form (NaN price as ``None``)."""
        return {
            "asset": self.asset,
            "price": self.price if math.isfinite(self.price) else None,
            "ts_ms": self.ts_ms,
            "guarded": self.guarded,
            "reason": self.reason,
            "feeds": [
                {
                    "feed": v.feed,
                    "price": v.price if math.isfinite(v.price) else None,
                    "ts_ms": v.ts_ms,
                    "state": v.state,
                    "detail": v.detail,
                }
                for v in self.verdicts
            ],
        }


def median_price(
    asset: str, feeds: Sequence[FeedPrice], now_ms: int, config: MedianConfig | None = None
) -> MedianPrice:
    """Median oracle price of ``asset`` from its feeds at ``now_ms``.

    Parameters
    ----------
    asset
        The asset (for the record and messages).
    feeds
        Each feed's latest price; feed names must be unique.
    now_ms
        Evaluation time, epoch ms (the venue's clock, not the local one).
    config
        Guards; the defaults allow 2 h of age, 2 % deviation and need 2 healthy feeds.

    Returns
    -------
    MedianPrice
        The price, whether the asset is guarded and why, and a verdict per feed.

    Raises
    ------
    ValueError
        If two feeds share a name.

    Examples
    --------
    >>> feeds = [FeedPrice("a", 100.0, 0), FeedPrice("b", 101.0, 0), FeedPrice("c", 250.0, 0)]
    >>> result = median_price("BTCUSDT", feeds, now_ms=1_000)
    >>> result.price, result.guarded, [v.state for v in result.verdicts]
    (101.0, False, ['healthy', 'healthy', 'deviating'])
    """
    config = config or MedianConfig()
    names = [f.feed for f in feeds]
    if len(set(names)) != len(names):
        raise ValueError(f"{asset}: feed names must be unique, got {names}")
    prices = np.asarray([f.price for f in feeds], dtype="float64")
    stamps = np.asarray([f.ts_ms for f in feeds], dtype="int64")
    max_age = np.asarray([config.max_age_of(f.feed) for f in feeds], dtype="int64")
    with np.errstate(invalid="ignore"):
        valid = np.isfinite(prices) & (prices > 0)
    future = stamps > now_ms + FUTURE_TOLERANCE_MS
    stale = (now_ms - stamps) > max_age
    fresh = valid & ~future & ~stale
    median = float(np.median(prices[fresh])) if fresh.any() else math.nan
    with np.errstate(invalid="ignore", divide="ignore"):
        deviation = np.abs(prices - median) / median
    deviating = fresh & ~(deviation <= config.max_deviation)
    healthy = fresh & ~deviating

    verdicts = []
    for i, item in enumerate(feeds):
        if not valid[i]:
            state: FeedState = "invalid"
            detail = f"price {item.price!r} is not a finite positive number"
        elif future[i]:
            state, detail = "invalid", f"time {item.ts_ms} lies {item.ts_ms - now_ms} ms ahead"
        elif stale[i]:
            state = "stale"
            detail = f"{(now_ms - item.ts_ms) / 1000:.0f} s old > {max_age[i] / 1000:.0f} s"
        elif deviating[i]:
            state = "deviating"
            detail = f"{deviation[i]:.2%} from the median {median:.8g} > {config.max_deviation:.2%}"
        else:
            state, detail = "healthy", ""
        verdicts.append(FeedVerdict(item.feed, float(item.price), int(item.ts_ms), state, detail))

    n_healthy = int(np.count_nonzero(healthy))
    guarded = n_healthy < config.min_healthy
    reason = ""
    if guarded:
        dropped = "; ".join(f"{v.feed} {v.state} ({v.detail})" for v in verdicts if v.detail)
        reason = (
            f"{asset}: {n_healthy} healthy feed(s) of {len(feeds)}, "
            f"{config.min_healthy} needed" + (f": {dropped}" if dropped else "")
        )
    return MedianPrice(asset, median, int(now_ms), guarded, reason, tuple(verdicts))


__all__ = ["FeedPrice", "FeedState", "FeedVerdict", "MedianConfig", "MedianPrice", "median_price"]
