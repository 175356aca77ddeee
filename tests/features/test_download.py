"""Downloader against a real HTTP server on 127.0.0.1 serving the shared Binance dump.

The server (``dump_helpers.ServerControl``) is a ``ThreadingHTTPServer`` with Range support
and injectable faults: 503s for the first N requests, or bodies cut in half.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pandas as pd
import pytest

from features.errors import ChecksumMismatchError, DownloadError, RemoteFileNotFoundError
from features.sources.download import (
    DumpDownloader,
    RetryPolicy,
    download_months,
    kline_path,
    parse_months,
)
from features.store import MarketStore

REMOTE = kline_path("BTCUSDT", "1h", "2024-01")


class Sleeps(list):
    """Records requested waits instead of sleeping."""

    def __call__(self, seconds: float) -> None:
        self.append(seconds)


@pytest.fixture()
def served(shared_data: Path, file_server):
    base_url, control = file_server(shared_data / "binance")
    return base_url, control, shared_data / "binance"


def downloader(tmp_path: Path, base_url: str, attempts: int = 4) -> tuple[DumpDownloader, Sleeps]:
    sleeps = Sleeps()
    retry = RetryPolicy(attempts=attempts, backoff=0.5, max_backoff=4.0)
    return DumpDownloader(tmp_path / "cache", base_url, retry=retry, sleep=sleeps), sleeps


def zip_requests(control) -> list[tuple[str, str | None, int]]:
    return [entry for entry in control.log if entry[0].endswith(".zip")]


def test_fetch_mirrors_the_remote_layout_and_verifies(tmp_path: Path, served) -> None:
    base_url, control, source = served
    client, _ = downloader(tmp_path, base_url)
    path, downloaded = client.fetch(REMOTE)
    assert downloaded
    assert path == tmp_path / "cache" / REMOTE
    assert path.read_bytes() == (source / REMOTE).read_bytes()
    assert path.with_name(path.name + ".CHECKSUM").exists()
    again, downloaded_again = client.fetch(REMOTE)
    assert again == path and not downloaded_again
    assert len(zip_requests(control)) == 1  # the cached file is not fetched again


def test_transient_failures_are_retried_with_exponential_backoff(tmp_path: Path, served) -> None:
    base_url, control, source = served
    control.fail_first = 3
    client, sleeps = downloader(tmp_path, base_url, attempts=5)
    path, _ = client.fetch(REMOTE)
    assert path.read_bytes() == (source / REMOTE).read_bytes()
    assert [status for _, _, status in control.log[:3]] == [503, 503, 503]
    assert sleeps == [0.5, 1.0, 2.0]


def test_persistent_failure_is_a_download_error_naming_the_url(tmp_path: Path, served) -> None:
    base_url, control, _ = served
    control.fail_first = 100
    client, sleeps = downloader(tmp_path, base_url, attempts=3)
    with pytest.raises(DownloadError, match=r"HTTP 503 after 3 attempt\(s\)") as info:
        client.fetch(REMOTE)
    assert base_url in str(info.value)
    assert sleeps == [0.5, 1.0]


def test_missing_remote_file_is_not_found_and_collected(tmp_path: Path, served) -> None:
    base_url, _, _ = served
    client, sleeps = downloader(tmp_path, base_url)
    with pytest.raises(RemoteFileNotFoundError, match="404"):
        client.fetch(kline_path("BTCUSDT", "1h", "2030-01"))
    assert sleeps == []  # a 404 is final, not retried
    summary = client.fetch_many([REMOTE, kline_path("SOLUSDT", "1h", "2019-01")])
    assert [p.name for p in summary.downloaded] == ["BTCUSDT-1h-2024-01.zip"]
    assert summary.missing == [kline_path("SOLUSDT", "1h", "2019-01")]


def test_checksum_mismatch_raises_and_caches_nothing(
    tmp_path: Path, shared_data: Path, file_server
) -> None:
    mirror = tmp_path / "mirror"
    target = mirror / REMOTE
    target.parent.mkdir(parents=True)
    shutil.copy(shared_data / "binance" / REMOTE, target)
    target.with_name(target.name + ".CHECKSUM").write_text(f"{'ab' * 32}  {target.name}\n")
    base_url, control = file_server(mirror)
    client, _ = downloader(tmp_path, base_url)
    with pytest.raises(ChecksumMismatchError, match="ab" * 32):
        client.fetch(REMOTE)
    cached = tmp_path / "cache" / REMOTE
    assert not cached.exists()
    assert not cached.with_name(cached.name + ".part").exists()
    assert len(zip_requests(control)) == 2  # one fresh retry before giving up


def test_interrupted_transfer_resumes_with_a_range_request(tmp_path: Path, served) -> None:
    base_url, control, source = served
    control.truncate_first = 1
    client, sleeps = downloader(tmp_path, base_url)
    path, _ = client.fetch(REMOTE)
    assert path.read_bytes() == (source / REMOTE).read_bytes()
    first, second = zip_requests(control)
    assert first[1] is None and first[2] == 200
    assert second[1] is not None and second[1].startswith("bytes=") and second[2] == 206
    assert int(second[1].removeprefix("bytes=").rstrip("-")) > 0
    assert sleeps == [0.5]


def test_leftover_part_file_is_resumed_on_the_next_run(tmp_path: Path, served) -> None:
    base_url, control, source = served
    payload = (source / REMOTE).read_bytes()
    part = tmp_path / "cache" / (REMOTE + ".part")
    part.parent.mkdir(parents=True)
    part.write_bytes(payload[:1000])
    client, _ = downloader(tmp_path, base_url)
    path, _ = client.fetch(REMOTE)
    assert path.read_bytes() == payload
    assert zip_requests(control) == [("/" + REMOTE, "bytes=1000-", 206)]


def test_server_without_range_support_restarts_from_zero(tmp_path: Path, served) -> None:
    base_url, control, source = served
    control.support_range = False
    part = tmp_path / "cache" / (REMOTE + ".part")
    part.parent.mkdir(parents=True)
    part.write_bytes(b"stale bytes that are not a prefix")
    client, _ = downloader(tmp_path, base_url)
    path, _ = client.fetch(REMOTE)
    assert path.read_bytes() == (source / REMOTE).read_bytes()
    assert [status for _, _, status in zip_requests(control)] == [200]


def test_download_months_then_ingest_the_cache(tmp_path: Path, served) -> None:
    base_url, _, _ = served
    client, _ = downloader(tmp_path, base_url)
    summary = download_months(client, ["BTCUSDT"], ["1h"], parse_months("2024-01..2024-02"))
    assert len(summary.downloaded) == 4  # two kline months + two funding months
    store = MarketStore(tmp_path / "store")
    result = store.ingest_dump(tmp_path / "cache")
    assert result.report.unverified_files == []
    bars = store.read_bars("1h", ["BTCUSDT"])
    assert len(bars) == (31 + 29) * 24
    assert bars["ts"].iloc[0] == pd.Timestamp("2024-01-01", tz="UTC")
    assert len(store.read_funding(["BTCUSDT"])) == (31 + 29) * 3


def test_parse_months_expands_ranges_and_rejects_nonsense() -> None:
    assert parse_months("2023-11..2024-02") == ["2023-11", "2023-12", "2024-01", "2024-02"]
    assert parse_months("2024-05") == ["2024-05"]
    with pytest.raises(ValueError, match="ends before it starts"):
        parse_months("2024-03..2024-01")
    with pytest.raises(ValueError, match="YYYY-MM"):
        parse_months("March")


def test_retry_policy_validates_and_caps() -> None:
    policy = RetryPolicy(attempts=10, backoff=1.0, max_backoff=5.0)
    assert [policy.delay(k) for k in range(1, 6)] == [1.0, 2.0, 4.0, 5.0, 5.0]
    with pytest.raises(ValueError, match="attempts"):
        RetryPolicy(attempts=0)


def test_stale_cached_checksum_is_refetched(tmp_path: Path, served) -> None:
    base_url, _, source = served
    stale = tmp_path / "cache" / (REMOTE + ".CHECKSUM")
    stale.parent.mkdir(parents=True)
    stale.write_text(f"{'cd' * 32}  BTCUSDT-1h-2024-01.zip\n")  # from an older upload
    client, _ = downloader(tmp_path, base_url)
    path, downloaded = client.fetch(REMOTE)
    assert downloaded and path.read_bytes() == (source / REMOTE).read_bytes()
    assert stale.read_text() == (source / (REMOTE + ".CHECKSUM")).read_text()
