"""The options ``dynamargin ingest live`` and ``dynamargin live`` share, defined once.

Each alias is an ``Annotated`` type carrying its ``typer.Option``; a command gives its own
default as the parameter's default (``--lookback-days`` is a week for a bare ingest, two
months for ``live``, whose features need the history). The helpers turn the shared options
into the live ingest's endpoints and configuration, so both commands read them the same way.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Annotated, Any

import typer

if TYPE_CHECKING:
    from features.live.ingest import LiveIngestConfig
    from features.live.metrics import LiveMetrics
    from features.live.venues import VenueEndpoints

AssetsOption = Annotated[str, typer.Option(help="Comma-separated symbols, e.g. BTCUSDT,ETHUSDT.")]
EmulatorOption = Annotated[
    str | None,
    typer.Option(help="Base URL of `dynamargin emulate`; every source points there."),
]
SecondVenueOption = Annotated[
    str, typer.Option("--venue", help="Second venue: a ccxt exchange id, or 'none'.")
]
DumpUrlOption = Annotated[
    str | None, typer.Option(help="Dump root for daily-file backfill ('none' for none).")
]
SinceOption = Annotated[
    str | None, typer.Option(help="First bar for a series the store does not hold (UTC).")
]
LookbackDaysOption = Annotated[
    float, typer.Option(min=0.0, help="Default history when --since is not given.")
]
UntilOption = Annotated[
    str | None, typer.Option(help="Stop once the venue's clock passes this time (UTC).")
]
CyclesOption = Annotated[
    int | None, typer.Option(min=1, help="Stop after this many ingest cycles (1 for cron).")
]
LateGraceOption = Annotated[
    str, typer.Option(help="How long a missing bar is 'late' before the feed is stale.")
]
RepollOption = Annotated[
    float, typer.Option(min=0.01, help="Seconds between cycles while a feed is late/stale.")
]
MaxSleepOption = Annotated[
    float, typer.Option(min=0.01, help="Longest wait between cycles, in seconds.")
]
MetricsPortOption = Annotated[
    int | None, typer.Option(min=0, max=65535, help="Serve Prometheus metrics on this port.")
]


def live_endpoints(
    emulator: str | None,
    venue: str,
    dump_url: str | None,
    **overrides: Any,
) -> VenueEndpoints:
    """The sources' endpoints from ``--emulator``, ``--venue``, ``--dump-url`` and overrides.

    ``overrides`` are further :class:`features.live.venues.VenueEndpoints` fields (a
    command's own URL options); ``None`` values are left at their defaults.
    """
    from features.live.venues import VenueEndpoints

    second = None if venue.lower() == "none" else venue.lower()
    second_url = overrides.pop("second_venue_url", None)
    if emulator is not None:
        endpoints = VenueEndpoints.emulator(emulator, second_venue=second)
    else:
        endpoints = VenueEndpoints(second_venue=second, second_venue_url=second_url)
    update = {k: v for k, v in overrides.items() if v is not None}
    if dump_url is not None:
        update["dump_url"] = None if dump_url.lower() == "none" else dump_url
    return endpoints.model_copy(update=update) if update else endpoints


def live_ingest_config(
    since: str | None,
    lookback_days: float,
    late_grace: str,
    repoll: float,
    max_sleep: float,
    interval: str = "1h",
) -> LiveIngestConfig:
    """The live ingest's configuration from the shared options."""
    import pandas as pd

    from contracts.timestamps import optional_utc_timestamp
    from features.live.ingest import LiveIngestConfig

    return LiveIngestConfig(
        interval=interval,
        since=optional_utc_timestamp(since),
        lookback=pd.Timedelta(days=lookback_days),
        late_grace=pd.Timedelta(late_grace),
        repoll_seconds=repoll,
        max_sleep_seconds=max_sleep,
    )


def serve_metrics(port: int | None, metrics: LiveMetrics, log: logging.Logger) -> None:
    """``--metrics-port``: serve the live metrics on loopback (nothing when ``None``)."""
    if port is None:
        return
    from prometheus_client import start_http_server

    server, _ = start_http_server(port, addr="127.0.0.1", registry=metrics.registry)
    log.info("metrics on http://127.0.0.1:%d/metrics", server.server_port)


def cycle_counter(cycles: int | None, stop: Callable[[], None]) -> Callable[[], None]:
    """``--cycles``: a callable to run after each cycle that calls ``stop`` after the last."""
    done = [0]

    def count() -> None:
        done[0] += 1
        if cycles is not None and done[0] >= cycles:
            stop()

    return count


__all__ = [
    "AssetsOption",
    "CyclesOption",
    "DumpUrlOption",
    "EmulatorOption",
    "LateGraceOption",
    "LookbackDaysOption",
    "MaxSleepOption",
    "MetricsPortOption",
    "RepollOption",
    "SecondVenueOption",
    "SinceOption",
    "UntilOption",
    "cycle_counter",
    "live_endpoints",
    "live_ingest_config",
    "serve_metrics",
]
