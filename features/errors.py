"""Exception types for market data.

Every message names what is wrong, where (file, row, asset, time) and what to do about it,
so an operator can act on the error text alone. All of them derive from
:class:`MarketDataError`, so a caller can catch the family in one place.
"""

from __future__ import annotations

from pathlib import Path


class MarketDataError(Exception):
    """Base class of every error raised by :mod:`features` (market data and features)."""


class DataValidationError(MarketDataError, ValueError):
    """Data that cannot be used as it is: wrong schema, wrong dtypes, naive timestamps."""


class FeatureInputError(DataValidationError):
    """Bars the feature builders cannot use as they are (off-grid time, bad price, ...).

    The message names the asset and bar time and says what to fix upstream.
    """


class MalformedFileError(DataValidationError):
    """A source file that cannot be parsed: truncated archive, junk header, empty file.

    Parameters
    ----------
    path
        The offending file.
    problem
        What is wrong with it, in one sentence.
    action
        What the operator should do.
    """

    def __init__(self, path: Path | str, problem: str, action: str = "") -> None:
        self.path = Path(path)
        self.problem = problem
        action = action or "re-download the file or remove it from the source directory"
        super().__init__(f"{self.path}: {problem}; {action}")


class ChecksumMismatchError(MalformedFileError):
    """A file whose SHA-256 differs from its ``.CHECKSUM`` companion."""

    def __init__(self, path: Path | str, expected: str, actual: str) -> None:
        self.expected = expected
        self.actual = actual
        super().__init__(
            path,
            f"sha256 {actual} does not match the published checksum {expected}",
            "the file is corrupt or incomplete: delete it and download it again",
        )


class ConflictingDuplicateError(DataValidationError):
    """Two rows for the same ``(asset, ts)`` whose values differ.

    Identical duplicates are harmless and dropped; conflicting ones mean two sources
    disagree, and picking one silently would hide a data problem.
    """

    def __init__(
        self,
        asset: str,
        ts: object,
        first: str,
        second: str,
        columns: list[str],
        count: int = 1,
    ) -> None:
        self.asset = asset
        self.ts = ts
        self.columns = columns
        self.count = count
        more = f" ({count} conflicting keys in total)" if count > 1 else ""
        super().__init__(
            f"asset {asset} bar {ts}: conflicting duplicate rows{more}, differing in "
            f"{', '.join(columns)}: {first} vs {second}; remove or correct one of the two "
            "sources and ingest again"
        )


class DownloadError(MarketDataError):
    """A remote file that could not be fetched after all retries."""

    def __init__(self, url: str, problem: str, attempts: int) -> None:
        self.url = url
        self.attempts = attempts
        super().__init__(
            f"{url}: {problem} after {attempts} attempt(s); check the base URL and the "
            "network, then run the command again (completed files are cached and resumed)"
        )


class RemoteFileNotFoundError(DownloadError):
    """The server answered 404: the file does not exist (e.g. a month before listing)."""

    def __init__(self, url: str) -> None:
        super().__init__(url, "not found (HTTP 404)", 1)


class StoreError(MarketDataError):
    """The Parquet store is inconsistent or was asked for something it cannot do."""


class EmptyMarketError(MarketDataError, ValueError):
    """The requested assets and period hold no bars in the chosen source."""


class SourceError(MarketDataError):
    """A live market-data source (a venue's REST API) that did not deliver.

    Parameters
    ----------
    source
        The source's name, e.g. ``"binance-spot"``.
    request
        Method, path and the identifying parameters.
    problem
        What went wrong: the status and the venue's own message, or the last failure.
    action
        What happens next or what to do.
    """

    def __init__(self, source: str, request: str, problem: str, action: str = "") -> None:
        self.source = source
        self.request = request
        self.problem = problem
        super().__init__(f"{source} {request}: {problem}" + (f"; {action}" if action else ""))


class SourceRequestError(SourceError):
    """The venue refused a request outright (4xx other than rate limiting); not retried."""

    def __init__(self, source: str, request: str, problem: str) -> None:
        super().__init__(
            source,
            request,
            problem,
            "check the symbol, interval and base URL (the request is not retried)",
        )


class SourceUnavailableError(SourceError):
    """Transient failures (rate limits, 5xx, timeouts) persisted through every retry."""

    def __init__(self, source: str, request: str, problem: str, attempts: int) -> None:
        self.attempts = attempts
        super().__init__(
            source,
            request,
            f"{problem} after {attempts} attempt(s)",
            "the feed is marked stale and the missed bars are backfilled once the venue "
            "answers again",
        )
