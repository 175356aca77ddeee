"""``published_at`` never goes backwards for an asset, and live and replay stores never mix."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from serving.errors import PublicationStoreError, PublishError
from serving.store import PublicationStore
from tests.api.api_seeding import seed_store
from tests.serving.security.conftest import Seeded


def test_a_publication_older_than_the_previous_one_is_refused(seeded_any: Seeded) -> None:
    with PublicationStore(seeded_any.url) as store:
        before = {a: p.update_id for a, p in store.latest().items()}
        newest = max(p.published_at for p in store.latest().values())
    earlier = newest - timedelta(hours=1)
    with pytest.raises(PublishError, match="published_at"):
        seed_store(
            seeded_any.workdir, ("BTCUSDT", "ETHUSDT"), batches=1, end=earlier, url=seeded_any.url
        )
    with PublicationStore(seeded_any.url) as store:
        assert {a: p.update_id for a, p in store.latest().items()} == before
        latest = store.latest("BTCUSDT")
        assert store.at("BTCUSDT", datetime.now(UTC)).update_id == latest.update_id


def test_live_and_replay_stores_never_mix(tmp_path: Path) -> None:
    replay_url = f"sqlite:///{tmp_path / 'replay.db'}"
    with PublicationStore(replay_url, mode="replay") as store:
        assert store.mode == "replay"
    with pytest.raises(PublicationStoreError, match="replay"):
        PublicationStore(replay_url, mode="live")
    live_url = f"sqlite:///{tmp_path / 'live.db'}"
    with PublicationStore(live_url) as store:
        assert store.mode == "live"
    with pytest.raises(PublicationStoreError, match="live"):
        PublicationStore(live_url, mode="replay")


def test_publish_at_data_end_after_now_is_refused_by_the_command(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from typer.testing import CliRunner

    from features.store import MarketStore
    from features.synthetic import SyntheticMarketConfig, generate_market
    from pipelines.cli import app as cli

    workdir = tmp_path / "workdir"
    monkeypatch.delenv("DYNAMARGIN_PUBLICATIONS_URL", raising=False)
    days = 120
    # A market whose last bar closes at the current hour, so "now" and "data-end" differ
    # by minutes, as on a live deployment.
    start = datetime.now(UTC).replace(minute=0, second=0, microsecond=0) - timedelta(days=days)
    market = generate_market(SyntheticMarketConfig(n_assets=2, days=days, seed=3, start=start))
    MarketStore(workdir / "store").ingest_market(market)
    runner = CliRunner()
    # A short calibration window, so 120 days of bars are enough for a baseline publish.
    base = ["--workdir", str(workdir)]
    baseline = ["publish", "--model", "baseline:ewma", "--calibration-days", "60"]
    now = runner.invoke(cli, [*base, *baseline, "--at", "now"])
    assert now.exit_code == 0, now.output
    data_end = runner.invoke(cli, [*base, *baseline, "--at", "data-end"])
    assert data_end.exit_code == 1, data_end.output
    assert "replay" in data_end.output
