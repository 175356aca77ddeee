"""Per-asset data freshness of the live ingest, as the status page shows it.

The live ingest (``dynamargin live`` / ``ingest live``) writes one JSON record per asset
after every cycle (schema ``dynamargin.freshness/1``: status ``ok``/``late``/``stale``, the
reason, ``data_through`` and ``age_seconds`` at the venue's time). The API reads the file
as plain data, strictly parsed: serving depends on no market-data code, and a missing or
unreadable file only means the page shows no live data, never an error page.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Final

from serving.errors import ServingError
from serving.strict_json import loads

logger = logging.getLogger("dynamargin.serving.live_data")

LIVE_DATA_SCHEMA: Final[str] = "dynamargin.freshness/1"
MAX_FILE_BYTES: Final[int] = 4 * 1024 * 1024


def read_live_data(path: Path | None) -> dict[str, Mapping[str, Any]]:
    """Each asset's freshness record from ``path``; empty when absent or unreadable.

    Returns
    -------
    dict
        ``asset -> record`` with at least ``status``, ``reason``, ``venue_time``,
        ``data_through`` and ``age_seconds``.
    """
    if path is None or not Path(path).is_file():
        return {}
    try:
        raw = Path(path).read_bytes()
        if len(raw) > MAX_FILE_BYTES:
            raise ValueError(f"{len(raw)} bytes > {MAX_FILE_BYTES}")
        payload = loads(raw, what="live data file")
    except (OSError, ValueError, ServingError) as exc:
        logger.warning("live data file %s unreadable, not shown: %s", path, exc)
        return {}
    if not isinstance(payload, dict) or payload.get("schema") != LIVE_DATA_SCHEMA:
        logger.warning("live data file %s is not %s, not shown", path, LIVE_DATA_SCHEMA)
        return {}
    assets = payload.get("assets")
    if not isinstance(assets, dict):
        return {}
    return {str(k): v for k, v in assets.items() if isinstance(v, dict)}


__all__ = ["LIVE_DATA_SCHEMA", "read_live_data"]
