"""Pre-rendered responses with ETag / If-None-Match, Cache-Control and gzip.

A publication changes at most once per update interval, while readers poll it constantly.
So each read response is rendered once per store version (:class:`RenderedBody`: bytes,
their gzip form and a validator) and served from memory: a conditional GET with a
matching ``If-None-Match`` gets a bodiless 304, a client accepting gzip gets the
pre-compressed bytes, and ``Cache-Control: max-age`` counts down to the next expected
publication so shared caches never serve past it.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from starlette.responses import Response

JSON_MEDIA_TYPE = "application/json"
# Below this size gzip costs more than it saves (headers, CPU).
GZIP_MIN_BYTES = 512
# Responses about the past (time travel, closed history windows) never change in an
# append-only store; a day is long enough to matter and short enough to be safe.
IMMUTABLE_MAX_AGE_SECONDS = 86_400


@dataclass(frozen=True)
class RenderedBody:
    """A response body rendered once, with its validator and compressed form.

    Attributes
    ----------
    body
        Identity-encoded bytes.
    media_type
        ``Content-Type`` of ``body``.
    etag
        Weak entity tag over ``body`` (weak because the gzip form shares it).
    gzipped
        ``body`` gzip-compressed, or ``None`` when too small to be worth it.
    fresh_until
        When clients should revalidate (``max-age`` counts down to it); ``None`` for
        immutable content.
    """

    body: bytes
    media_type: str
    etag: str
    gzipped: bytes | None = None
    fresh_until: datetime | None = None
    extra_headers: Mapping[str, str] = field(default_factory=dict)


def render_json(
    payload: Any,
    *,
    fresh_until: datetime | None,
    media_type: str = JSON_MEDIA_TYPE,
) -> RenderedBody:
    """Serialize ``payload`` to compact JSON and wrap it as a :class:`RenderedBody`.

    Parameters
    ----------
    payload
        JSON-serializable data (datetimes are rendered with ``str``).
    fresh_until
        Next expected change; ``None`` means immutable.
    media_type
        Content type to announce.
    """
    data = json.dumps(payload, separators=(",", ":"), sort_keys=True, default=str).encode()
    return render_bytes(data, media_type=media_type, fresh_until=fresh_until)


def render_bytes(data: bytes, *, media_type: str, fresh_until: datetime | None) -> RenderedBody:
    """Wrap already-serialized ``data`` as a :class:`RenderedBody` (ETag + gzip)."""
    digest = hashlib.sha256(data).hexdigest()[:32]
    # mtime=0 makes the compressed bytes deterministic for identical bodies.
    packed = gzip.compress(data, compresslevel=6, mtime=0) if len(data) >= GZIP_MIN_BYTES else None
    return RenderedBody(
        body=data,
        media_type=media_type,
        etag=f'W/"{digest}"',
        gzipped=packed,
        fresh_until=fresh_until,
    )


def max_age_seconds(fresh_until: datetime | None, now: datetime) -> int:
    """Seconds until ``fresh_until`` (floored at 0), or the immutable max-age for ``None``."""
    if fresh_until is None:
        return IMMUTABLE_MAX_AGE_SECONDS
    return max(0, math.floor((fresh_until - now).total_seconds()))


def etag_matches(if_none_match: str | None, etag: str) -> bool:
    """Weak comparison of an ``If-None-Match`` header against ``etag`` (RFC 9110 13.1.2).

    Parameters
    ----------
    if_none_match
        Raw header value: ``*`` or a comma-separated list of (weak or strong) tags.
    etag
        The current representation's tag.
    """
    if not if_none_match:
        return False
    if if_none_match.strip() == "*":
        return True
    current = _opaque(etag)
    return any(_opaque(tag) == current for tag in if_none_match.split(",") if tag.strip())


class PreparedResponse(Response):
    """A Starlette response built from ready raw headers (skips header normalisation).

    Parameters
    ----------
    status
        HTTP status.
    raw_headers
        Lower-case header names and values as bytes, ``content-length`` included.
    body
        Response body.
    """

    def __init__(self, status: int, raw_headers: list[tuple[bytes, bytes]], body: bytes) -> None:
        self.status_code = status
        self.raw_headers = raw_headers
        self.body = body
        self.background = None


def conditional_response(
    rendered: RenderedBody,
    *,
    if_none_match: str | None,
    accept_encoding: str | None,
    now: datetime | None = None,
    public: bool = True,
) -> PreparedResponse:
    """Serve ``rendered`` as a 200 (gzip when accepted) or a bodiless 304.

    Parameters
    ----------
    rendered
        The pre-rendered body.
    if_none_match, accept_encoding
        The request's ``If-None-Match`` and ``Accept-Encoding`` headers.
    now
        Current time (UTC) for ``max-age``; defaults to the wall clock.
    public
        Whether shared caches may store the response.
    """
    now = now or datetime.now(UTC)
    age = max_age_seconds(rendered.fresh_until, now)
    cache_control = f"{'public' if public else 'private'}, max-age={age}" + (
        ", immutable" if rendered.fresh_until is None else ""
    )
    headers = [
        (b"etag", rendered.etag.encode()),
        (b"cache-control", cache_control.encode()),
        (b"vary", b"Accept-Encoding"),
        *((k.lower().encode(), v.encode()) for k, v in rendered.extra_headers.items()),
    ]
    if etag_matches(if_none_match, rendered.etag):
        return PreparedResponse(304, headers, b"")
    body = rendered.body
    if rendered.gzipped is not None and accepts_gzip(accept_encoding):
        body = rendered.gzipped
        headers.append((b"content-encoding", b"gzip"))
    headers.append((b"content-type", rendered.media_type.encode()))
    headers.append((b"content-length", str(len(body)).encode()))
    return PreparedResponse(200, headers, body)


def _opaque(tag: str) -> str:
    tag = tag.strip()
    return tag[2:] if tag.startswith("W/") else tag


def accepts_gzip(accept_encoding: str | None) -> bool:
    """Whether an ``Accept-Encoding`` header accepts gzip (``gzip;q=0`` refuses it)."""
    if not accept_encoding:
        return False
    if accept_encoding == "gzip" or accept_encoding.startswith("gzip, "):
        return True  # the common forms, on the hot path
    for item in accept_encoding.split(","):
        name, _, params = item.strip().partition(";")
        if name.strip().lower() in {"gzip", "*"}:
            q = params.strip().lower().replace(" ", "")
            return q not in {"q=0", "q=0.0", "q=0.00", "q=0.000"}
    return False
