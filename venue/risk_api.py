"""The venue's HTTP client of the risk API: ``/v1/risk`` with ETags, and ``/v1/keys``."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import httpx

from serving import strict_json
from venue.errors import RiskApiUnavailable


@dataclass(frozen=True)
class Poll:
    """One ``GET /v1/risk``: a new body, or ``None`` when the server said 304."""

    body: bytes | None
    etag: str | None


class RiskApiClient:
    """Reads the risk API; every failure becomes :class:`RiskApiUnavailable` with a reason.

    Parameters
    ----------
    base_url
        Where ``dynamargin serve`` listens, e.g. ``http://127.0.0.1:8000``.
    timeout_s
        Connect and read timeout of every request.
    """

    def __init__(self, base_url: str, timeout_s: float = 5.0) -> None:
        self.base_url = base_url.rstrip("/")
        self._client = httpx.Client(base_url=self.base_url, timeout=timeout_s)
        self._etag: str | None = None

    @property
    def etag(self) -> str | None:
        """The ETag the next poll sends (None: it asks for the whole body)."""
        return self._etag

    def close(self) -> None:
        self._client.close()

    def poll(self) -> Poll:
        """``GET /v1/risk`` with ``If-None-Match``; the body only when it changed."""
        headers = {"If-None-Match": self._etag} if self._etag else {}
        response = self._get("/v1/risk", headers)
        if response.status_code == 304:
            return Poll(None, self._etag)
        # Kept even if the venue refuses the body's content (an old update_id would be refused
        # again); the venue forgets it when a refetch could cure the refusal (forget_etag).
        self._etag = response.headers.get("etag")
        return Poll(response.content, self._etag)

    def keys(self) -> dict[str, Any]:
        """``GET /v1/keys``, parsed strictly."""
        response = self._get("/v1/keys", {})
        try:
            document = strict_json.loads(response.content, what="/v1/keys body")
        except strict_json.StrictJsonError as exc:
            raise RiskApiUnavailable("http_status", f"/v1/keys is not strict JSON: {exc}") from exc
        if not isinstance(document, dict):
            raise RiskApiUnavailable("http_status", "/v1/keys is not a JSON object")
        return document

    def forget_etag(self) -> None:
        """Ask for the full body next time (after a restart or a key change)."""
        self._etag = None

    def _get(self, path: str, headers: dict[str, str]) -> httpx.Response:
        try:
            response = self._client.get(path, headers=headers)
        except httpx.TransportError as exc:
            raise RiskApiUnavailable(
                "unreachable", f"GET {self.base_url}{path}: {type(exc).__name__}: {exc}"
            ) from exc
        if response.status_code >= 500:
            raise RiskApiUnavailable(
                "http_5xx", f"GET {self.base_url}{path} -> {response.status_code}"
            )
        if response.status_code not in (200, 304):
            raise RiskApiUnavailable(
                "http_status", f"GET {self.base_url}{path} -> {response.status_code}"
            )
        return response
