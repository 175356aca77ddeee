"""Downloader of Binance dump files into a local cache with the same layout.

The cache mirrors the remote paths (``<cache>/data/spot/monthly/klines/...``), so the cache
directory is itself a dump root that :func:`features.sources.load_market` and
:meth:`features.store.MarketStore.ingest_dump` read directly.

Behaviour:

- **retries with exponential backoff** on connection errors, timeouts, HTTP 429 and 5xx
  (``backoff * 2**k`` seconds, capped); other HTTP errors fail at once, and a 404 raises
  :class:`~features.errors.RemoteFileNotFoundError` (the month or symbol does not exist).
- **checksum verification**: the ``.CHECKSUM`` companion is fetched first and the file is
  only moved into place when its SHA-256 matches; a mismatch is retried once from scratch,
  then raised as :class:`~features.errors.ChecksumMismatchError` and nothing is cached.
- **resumable cache**: bytes go to ``<name>.part``; after an interruption the next attempt
  (or the next run) asks for the rest with an HTTP ``Range`` header. A server that ignores
  ranges answers 200 and the download restarts from zero. Verified files are never fetched
  again.
- **progress**: an optional callback receives bytes as they arrive;
  :func:`download_months` can drive a ``rich`` progress bar.
"""

from __future__ import annotations

import hashlib
import os
import re
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final, TypeVar

import httpx
import pandas as pd

from contracts.files import atomic_write_bytes
from features.errors import (
    ChecksumMismatchError,
    DownloadError,
    MalformedFileError,
    RemoteFileNotFoundError,
)
from features.sources.binance import parse_checksum_file
from features.sources.retry import RETRY_STATUS, RetryPolicy, retry_after_seconds

DEFAULT_BASE_URL: Final[str] = "https://data.binance.vision"
_MONTH = re.compile(r"\d{4}-(0[1-9]|1[0-2])")

_T = TypeVar("_T")

ByteProgress = Callable[[str, int, int | None], None]
"""``(relative path, bytes received so far, total bytes or None)``."""


@dataclass
class DownloadSummary:
    """Outcome of a batch of downloads.

    Attributes
    ----------
    downloaded
        Files fetched (fully or by resuming) and verified in this run.
    cached
        Files already present and verified, not fetched again.
    missing
        Remote paths that do not exist (HTTP 404), e.g. months before a listing.
    """

    downloaded: list[Path] = field(default_factory=list)
    cached: list[Path] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)

    @property
    def files(self) -> list[Path]:
        """Every local file now available, downloaded or cached."""
        return sorted([*self.downloaded, *self.cached])


class DumpDownloader:
    """Fetch dump files from ``base_url`` into ``cache_dir``, verified and resumable.

    Parameters
    ----------
    cache_dir
        Local mirror root; files land at ``cache_dir / <remote path>``.
    base_url
        Server root, e.g. ``https://data.binance.vision``.
    retry
        Retry policy for transient failures.
    timeout
        Seconds for connect and for each read.
    sleep
        Waiting function (injectable so tests do not actually sleep).
    """

    def __init__(
        self,
        cache_dir: Path,
        base_url: str = DEFAULT_BASE_URL,
        *,
        retry: RetryPolicy | None = None,
        timeout: float = 30.0,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.cache_dir = Path(cache_dir)
        self.base_url = base_url.rstrip("/")
        self.retry = retry or RetryPolicy()
        self.timeout = timeout
        self.sleep = sleep

    def fetch(self, remote_path: str, on_bytes: ByteProgress | None = None) -> tuple[Path, bool]:
        """Make one dump file and its ``.CHECKSUM`` available and verified in the cache.

        Parameters
        ----------
        remote_path
            Path under the base URL, e.g.
            ``data/spot/monthly/klines/BTCUSDT/1h/BTCUSDT-1h-2024-01.zip``.
        on_bytes
            Progress callback.

        Returns
        -------
        path : pathlib.Path
            The verified local file.
        downloaded : bool
            False when the cache already held it.

        Raises
        ------
        RemoteFileNotFoundError
            The server has no such file (or no checksum for it).
        DownloadError
            Transient failures persisted through every retry, or a non-retryable status.
        ChecksumMismatchError
            The file never matched its checksum; nothing is left in the cache.
        """
        with httpx.Client(timeout=self.timeout, follow_redirects=True) as client:
            return self._fetch(client, remote_path, on_bytes)

    def fetch_many(
        self,
        remote_paths: Iterable[str],
        *,
        on_bytes: ByteProgress | None = None,
        on_file: Callable[[str], None] | None = None,
    ) -> DownloadSummary:
        """Fetch several files; 404s are collected in ``missing``, other errors raise."""
        summary = DownloadSummary()
        # One client for the batch, so connections are reused between files.
        with httpx.Client(timeout=self.timeout, follow_redirects=True) as client:
            for remote_path in remote_paths:
                try:
                    path, downloaded = self._fetch(client, remote_path, on_bytes)
                except RemoteFileNotFoundError:
                    summary.missing.append(remote_path)
                else:
                    (summary.downloaded if downloaded else summary.cached).append(path)
                if on_file is not None:
                    on_file(remote_path)
        return summary

    # --- internals -------------------------------------------------------------------

    def _fetch(
        self, client: httpx.Client, remote_path: str, on_bytes: ByteProgress | None
    ) -> tuple[Path, bool]:
        remote_path = remote_path.lstrip("/")
        target = self.cache_dir / remote_path
        checksum_path = target.with_name(target.name + ".CHECKSUM")
        if not checksum_path.exists():
            self._fetch_checksum(client, remote_path, checksum_path)
        expected = parse_checksum_file(checksum_path)
        if target.exists():
            if _sha256(target) == expected:
                return target, False
            target.unlink()  # stale or corrupt cache entry: fetch it again
        part = target.with_name(target.name + ".part")
        for fresh_start in (False, True):
            if fresh_start:
                # Start over from nothing: the partial bytes or a cached checksum from an
                # older upload may be what disagrees.
                part.unlink(missing_ok=True)
                expected = self._fetch_checksum(client, remote_path, checksum_path)
            self._download_to_part(client, remote_path, part, on_bytes)
            actual = _sha256(part)
            if actual == expected:
                os.replace(part, target)
                return target, True
        part.unlink(missing_ok=True)
        raise ChecksumMismatchError(self._url(remote_path), expected, actual)

    def _fetch_checksum(self, client: httpx.Client, remote_path: str, local: Path) -> str:
        atomic_write_bytes(local, self._get_small(client, remote_path + ".CHECKSUM"))
        try:
            return parse_checksum_file(local)
        except MalformedFileError:
            local.unlink()  # a garbled companion must not stick in the cache
            raise

    def _url(self, remote_path: str) -> str:
        return f"{self.base_url}/{remote_path}"

    def _retrying(self, remote_path: str, action: Callable[[], _T]) -> _T:
        """Run ``action`` with retries on transient errors; map failures to our errors."""
        url = self._url(remote_path)
        last_problem = ""
        retry_after: float | None = None
        for attempt in range(1, self.retry.attempts + 1):
            if attempt > 1:
                self.sleep(self.retry.wait(attempt - 1, retry_after))
            retry_after = None
            try:
                return action()
            except httpx.HTTPStatusError as exc:
                status = exc.response.status_code
                if status == 404:
                    raise RemoteFileNotFoundError(url) from exc
                if status not in RETRY_STATUS:
                    raise DownloadError(url, f"HTTP {status}", attempt) from exc
                last_problem = f"HTTP {status}"
                retry_after = retry_after_seconds(exc.response.headers.get("Retry-After"))
                if retry_after is not None and retry_after > self.retry.max_retry_after:
                    raise DownloadError(
                        url, f"HTTP {status} with Retry-After {retry_after:.0f} s", attempt
                    ) from exc
            except (httpx.TransportError, _ShortBody) as exc:
                last_problem = f"{type(exc).__name__}: {exc}"
        raise DownloadError(url, last_problem, self.retry.attempts)

    def _get_small(self, client: httpx.Client, remote_path: str) -> bytes:
        def get() -> bytes:
            response = client.get(self._url(remote_path))
            response.raise_for_status()
            return response.content

        return self._retrying(remote_path, get)

    def _download_to_part(
        self,
        client: httpx.Client,
        remote_path: str,
        part: Path,
        on_bytes: ByteProgress | None,
    ) -> None:
        part.parent.mkdir(parents=True, exist_ok=True)

        def attempt() -> None:
            have = part.stat().st_size if part.exists() else 0
            headers = {"Range": f"bytes={have}-"} if have else {}
            with client.stream("GET", self._url(remote_path), headers=headers) as response:
                if response.status_code == 416:
                    # Our partial file is not a prefix the server recognises: start over.
                    part.unlink(missing_ok=True)
                    raise _ShortBody("range not satisfiable; restarting from zero")
                response.raise_for_status()
                resumed = response.status_code == 206
                mode = "ab" if resumed else "wb"
                done = have if resumed else 0
                total = _total_size(response, done)
                with part.open(mode) as out:
                    # No chunk size: write bytes as they arrive, so an interruption keeps them.
                    for chunk in response.iter_bytes():
                        out.write(chunk)
                        done += len(chunk)
                        if on_bytes is not None:
                            on_bytes(remote_path, done, total)
                if total is not None and done < total:
                    raise _ShortBody(f"received {done} of {total} bytes")

        self._retrying(remote_path, attempt)


class _ShortBody(Exception):
    """A transfer that ended before its declared length (retried, then resumed)."""


def kline_path(symbol: str, interval: str, month: str) -> str:
    """Remote path of a monthly spot kline file."""
    symbol = symbol.upper()
    return f"data/spot/monthly/klines/{symbol}/{interval}/{symbol}-{interval}-{month}.zip"


def daily_kline_path(symbol: str, interval: str, day: str) -> str:
    """Remote path of a daily spot kline file (``day`` as ``YYYY-MM-DD``)."""
    symbol = symbol.upper()
    return f"data/spot/daily/klines/{symbol}/{interval}/{symbol}-{interval}-{day}.zip"


def funding_path(symbol: str, month: str) -> str:
    """Remote path of a monthly USDT-M funding-rate file."""
    symbol = symbol.upper()
    return f"data/futures/um/monthly/fundingRate/{symbol}/{symbol}-fundingRate-{month}.zip"


def parse_months(spec: str) -> list[str]:
    """Expand ``"2024-01..2024-03"`` (or a single ``"2024-01"``) to a list of months.

    Raises
    ------
    ValueError
        If the bounds are not ``YYYY-MM`` or the range is reversed.
    """
    first, _, last = (part.strip() for part in spec.partition(".."))
    last = last or first
    if not (_MONTH.fullmatch(first) and _MONTH.fullmatch(last)):
        raise ValueError(f"months {spec!r} is not YYYY-MM or YYYY-MM..YYYY-MM")
    start, stop = pd.Period(first, freq="M"), pd.Period(last, freq="M")
    if stop < start:
        raise ValueError(f"months {spec!r} ends before it starts")
    return [str(p) for p in pd.period_range(start, stop, freq="M")]


def download_months(
    downloader: DumpDownloader,
    symbols: Sequence[str],
    intervals: Sequence[str],
    months: Sequence[str],
    *,
    funding: bool = True,
    progress: bool = False,
) -> DownloadSummary:
    """Fetch the monthly kline (and funding) files of some symbols and months.

    Parameters
    ----------
    downloader
        Configured downloader (cache and base URL).
    symbols, intervals, months
        The cross product to fetch; months as ``YYYY-MM``.
    funding
        Also fetch the funding files of those symbols and months.
    progress
        Show a ``rich`` progress bar on stderr.

    Returns
    -------
    DownloadSummary
        Downloaded, cached and missing (404) files. Months before a symbol's listing are
        simply missing, not errors.
    """
    paths = [kline_path(s, i, m) for s in symbols for i in intervals for m in months]
    if funding:
        paths += [funding_path(s, m) for s in symbols for m in months]
    if not progress:
        return downloader.fetch_many(paths)
    from rich.console import Console
    from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn

    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        TextColumn("{task.completed}/{task.total} files"),
        DownloadColumn(),
        console=Console(stderr=True),
        transient=True,
    ) as bar:
        files_task = bar.add_task("downloading", total=len(paths))
        bytes_task = bar.add_task("current file", total=None)

        def on_bytes(path: str, done: int, total: int | None) -> None:
            bar.update(bytes_task, description=Path(path).name, completed=done, total=total)

        def on_file(_: str) -> None:
            bar.advance(files_task)

        return downloader.fetch_many(paths, on_bytes=on_bytes, on_file=on_file)


def _total_size(response: httpx.Response, already: int) -> int | None:
    length = response.headers.get("Content-Length")
    return already + int(length) if length is not None and length.isdigit() else None


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


__all__ = [
    "DEFAULT_BASE_URL",
    "DownloadSummary",
    "DumpDownloader",
    "RetryPolicy",
    "daily_kline_path",
    "download_months",
    "funding_path",
    "kline_path",
    "parse_months",
]
