"""Errors raised by :mod:`venue`: one hierarchy, rooted at :class:`VenueError`."""

from __future__ import annotations


class VenueError(Exception):
    """Base class of every error raised by :mod:`venue`."""


class VenueConfigError(VenueError, ValueError):
    """A venue setting that cannot work (unknown asset, bad URL, bad threshold)."""


class RiskApiUnavailable(VenueError):
    """The risk API could not be read: it is down, answered 5xx or an unexpected status.

    Attributes
    ----------
    reason
        ``unreachable``, ``http_5xx`` or ``http_status``: the label of the poll-failure metric.
    """

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


class PriceFeedError(VenueError):
    """The price feed has nothing usable for an asset at the time asked."""


class KeyPinError(VenueError):
    """No trusted Ed25519 key yet, or the pinned-key file is unreadable."""
