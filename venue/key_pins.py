"""The Ed25519 keys the venue trusts: configured, or pinned on first contact.

A venue that verifies with whatever key ``/v1/keys`` names trusts whoever answers on that
URL. So the key is pinned: given by the operator (``--trusted-key``), or else the one served
on first contact, written to ``<state dir>/trusted-keys.json`` and kept across restarts. A
different key served later is not adopted; it is logged and counted, and the snapshots it
signs are refused as ``wrong_key`` until the operator pins it (a key rotation is an operator
decision, never the network's).
"""

from __future__ import annotations

import json
import re
from collections.abc import Collection
from pathlib import Path
from typing import Any

from contracts.files import atomic_write_text
from venue.errors import KeyPinError

_HEX_KEY = re.compile(r"^[0-9a-f]{64}$")


def checked_key(value: str) -> str:
    """A raw 32-byte Ed25519 public key as lowercase hex, or :class:`KeyPinError`."""
    key = value.strip().lower() if isinstance(value, str) else ""
    if not _HEX_KEY.match(key):
        raise KeyPinError(f"Ed25519 public key {value!r} is not 64 hex digits")
    return key


def served_key(keys_document: dict[str, Any]) -> str:
    """The Ed25519 key of a ``/v1/keys`` document."""
    ed = keys_document.get("ed25519")
    if not isinstance(ed, dict) or not isinstance(ed.get("public_key"), str):
        raise KeyPinError("/v1/keys has no ed25519.public_key")
    return checked_key(ed["public_key"])


class KeyPins:
    """The trusted key set of one venue.

    Parameters
    ----------
    path
        The pin file (``trusted-keys.json``).
    configured
        Keys given by the operator; when given, nothing is pinned from the network.
    """

    def __init__(self, path: Path, configured: Collection[str] = ()) -> None:
        self.path = Path(path)
        self.configured = frozenset(checked_key(k) for k in configured)
        self._pinned = self.configured or self._read()

    @property
    def trusted(self) -> frozenset[str]:
        """Keys snapshots must be signed with (empty until the first contact)."""
        return self._pinned

    def offer(self, key: str) -> bool:
        """The key ``/v1/keys`` serves now; True if it is trusted (pinned now if first)."""
        key = checked_key(key)
        if not self._pinned:
            atomic_write_text(self.path, json.dumps({"ed25519": [key]}, indent=1) + "\n")
            self._pinned = frozenset({key})
        return key in self._pinned

    def _read(self) -> frozenset[str]:
        if not self.path.exists():
            return frozenset()
        try:
            keys = json.loads(self.path.read_text(encoding="utf-8"))["ed25519"]
            return frozenset(checked_key(k) for k in keys)
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise KeyPinError(
                f"{self.path} is unreadable ({exc}); restore it or delete it to pin the "
                "served key again"
            ) from exc
