"""Values typed by operators or sent by clients: asset names, notes and times.

The CLI and the API validate with these functions and nothing else, so both accept the
same inputs and store the same canonical values:

* **asset names** are ASCII, upper-cased with ASCII rules only (no Unicode case folding:
  ``BTCUſDT`` is not ``BTCUSDT``), and match :data:`ASSET_PATTERN`;
* **notes** (the reason of an operator action) have their whitespace collapsed and need
  at least :data:`MIN_NOTE_CHARS` visible characters; control and format characters
  (escape sequences, zero-width spaces, bidirectional overrides) are refused;
* **times** are ISO-8601; a time without a zone is UTC; one whose conversion to UTC
  leaves the representable range is refused rather than crashing.

:func:`loggable` renders any client-supplied text safely for a log line.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Collection
from datetime import datetime
from typing import Final

from contracts.timestamps import utc_datetime
from serving.errors import InvalidInputError, UnpublishedAssetError

ASSET_PATTERN: Final[str] = r"^[A-Z0-9][A-Z0-9_.\-]{0,39}$"
"""Canonical asset symbol: upper-case ASCII letters and digits, then ``_ . -``; 1-40 long."""

ASSET_INPUT_PATTERN: Final[str] = r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,39}$"
"""What a client may send (either case); :func:`normalise_asset` upper-cases it."""

MIN_NOTE_CHARS: Final[int] = 3
MAX_NOTE_CHARS: Final[int] = 500
MAX_OPERATOR_CHARS: Final[int] = 200

_ASSET = re.compile(ASSET_PATTERN)
# Control (Cc), format (Cf), surrogate (Cs), private-use (Co) and unassigned (Cn) code
# points: invisible or terminal-controlling, never part of an honest note.
_HIDDEN_CATEGORIES = frozenset({"Cc", "Cf", "Cs", "Co", "Cn"})


def normalise_asset(name: str) -> str:
    """The canonical spelling of an asset symbol.

    Parameters
    ----------
    name
        As typed or sent, e.g. ``btcusdt``.

    Returns
    -------
    str
        ``BTCUSDT``.

    Raises
    ------
    InvalidInputError
        If the name has non-ASCII characters or does not match :data:`ASSET_PATTERN`.

    Examples
    --------
    >>> normalise_asset("ethusdt")
    'ETHUSDT'
    """
    if not isinstance(name, str) or not name.isascii():
        raise InvalidInputError(
            "asset",
            f"asset name {loggable(name)} is not plain ASCII; write it like BTCUSDT",
        )
    canonical = name.upper()
    if not _ASSET.fullmatch(canonical):
        raise InvalidInputError(
            "asset",
            f"asset name {loggable(name)} is not a symbol (1-40 of A-Z, 0-9, '_', '.', '-', "
            "starting with a letter or digit); write it like BTCUSDT",
        )
    return canonical


def require_published_asset(name: str, published: Collection[str]) -> str:
    """:func:`normalise_asset`, and the asset must have been published to the store.

    Raises
    ------
    InvalidInputError
        If the name is malformed.
    UnpublishedAssetError
        If the store has never published it (the message lists the known assets).
    """
    canonical = normalise_asset(name)
    if canonical not in published:
        raise UnpublishedAssetError(canonical, sorted(published))
    return canonical


def normalise_note(text: str, field: str = "note") -> str:
    """An operator's reason with whitespace collapsed, checked for visible length.

    Raises
    ------
    InvalidInputError
        If it holds control or format characters, or has fewer than
        :data:`MIN_NOTE_CHARS` or more than :data:`MAX_NOTE_CHARS` characters once
        whitespace is collapsed.
    """
    return _visible_text(text, field, MIN_NOTE_CHARS, MAX_NOTE_CHARS)


def normalise_operator(text: str) -> str:
    """An operator name (audited): visible characters only, 1 to 200 of them."""
    return _visible_text(text, "operator", 1, MAX_OPERATOR_CHARS)


def parse_utc_time(text: str, field: str) -> datetime:
    """Parse an ISO-8601 time given by a person or a client into an aware UTC datetime.

    A trailing ``Z`` and a missing zone both mean UTC.

    Raises
    ------
    InvalidInputError
        If the text is not ISO-8601, or its UTC equivalent is out of range.
    """
    if not isinstance(text, str) or not 0 < len(text) <= 64:
        raise InvalidInputError(field, f"{field}: give an ISO-8601 time, e.g. 2025-06-30T23:00Z")
    try:
        value = datetime.fromisoformat(text)
    except ValueError as exc:
        raise InvalidInputError(
            field,
            f"{field}={loggable(text)} is not an ISO-8601 time ({exc}); "
            "write it like 2025-06-30T23:00Z",
        ) from None
    return to_utc(value, field)


def to_utc(value: datetime, field: str) -> datetime:
    """``value`` in UTC (a naive value is taken as UTC).

    Raises
    ------
    InvalidInputError
        If the conversion leaves the representable range (e.g. 9999-12-31T23:00-05:00).
    """
    try:
        return utc_datetime(value)
    except (OverflowError, ValueError):
        raise InvalidInputError(
            field, f"{field}={value.isoformat()} is outside the representable range in UTC"
        ) from None


def loggable(value: object, limit: int = 120) -> str:
    """Quoted text of ``value`` safe for one log line or message: no raw control characters.

    Non-printable characters (newlines, escape sequences, zero-width and bidirectional
    marks) are shown as ``\\x..``/``\\u....`` escapes and long values are cut, so a
    client cannot forge log lines or hide text in them.

    Examples
    --------
    >>> print(loggable("BTC\\nUSDT"))
    'BTC\\nUSDT'
    """
    text = value if isinstance(value, str) else str(value)
    escaped = "".join(
        ch
        if ch.isprintable() and unicodedata.category(ch) not in _HIDDEN_CATEGORIES
        else ch.encode("unicode_escape").decode("ascii")
        for ch in text[:limit]
    )
    return f"'{escaped}{'…' if len(text) > limit else ''}'"


def _visible_text(text: str, field: str, minimum: int, maximum: int) -> str:
    if not isinstance(text, str):
        raise InvalidInputError(field, f"{field} must be text")
    hidden = sorted({f"U+{ord(ch):04X}" for ch in text if _is_hidden(ch)})
    if hidden:
        raise InvalidInputError(
            field,
            f"{field} holds control or invisible characters ({', '.join(hidden[:5])}); "
            "write it in plain text",
        )
    collapsed = " ".join(text.split())
    if not minimum <= len(collapsed) <= maximum:
        raise InvalidInputError(
            field,
            f"{field} must have {minimum} to {maximum} visible characters "
            f"(got {len(collapsed)} after collapsing whitespace); say what and why",
        )
    return collapsed


def _is_hidden(ch: str) -> bool:
    # Whitespace (tabs, newlines, exotic spaces) is collapsed, not refused.
    return not ch.isspace() and unicodedata.category(ch) in _HIDDEN_CATEGORIES
