"""Admin API keys: generated once, stored only as hashes, checked in constant time.

Keys are 256-bit random tokens, so a single SHA-256 is enough to make a leaked hash file
useless (no dictionary to search; a slow KDF only protects low-entropy secrets). Hashes
come from ``DYNAMARGIN_ADMIN_KEY_HASHES`` (comma-separated) and from
``<workdir>/admin_keys`` (one ``sha256:<hex> [label]`` per line). The plain key is shown
once by ``dynamargin admin keygen`` and never stored, logged or echoed back.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import os
import secrets
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from serving.errors import AdminKeyFileError
from serving.problems import ProblemError

logger = logging.getLogger(__name__)

ADMIN_KEY_HASHES_ENV = "DYNAMARGIN_ADMIN_KEY_HASHES"
ADMIN_KEYS_FILENAME = "admin_keys"
KEY_PREFIX = "dmk_"
_HASH_SCHEME = "sha256:"


@dataclass(frozen=True)
class AdminKeyring:
    """The set of accepted admin key hashes.

    Parameters
    ----------
    hashes
        Hashes in ``sha256:<64 hex>`` form, as written by :func:`hash_admin_key`.
    """

    hashes: tuple[str, ...]

    @property
    def enabled(self) -> bool:
        """Whether any admin key is configured (no key means the admin API is closed)."""
        return bool(self.hashes)

    def identify(self, presented: str) -> str | None:
        """The stored hash matching ``presented``, or ``None``.

        Every stored hash is compared with :func:`hmac.compare_digest` and the loop never
        exits early, so timing reveals neither which key matched nor how many exist.
        """
        candidate = hash_admin_key(presented).encode()
        matched: str | None = None
        for stored in self.hashes:
            if hmac.compare_digest(candidate, stored.encode()):
                matched = stored
        return matched


def generate_admin_key() -> tuple[str, str]:
    """Create a new admin key.

    Returns
    -------
    tuple[str, str]
        ``(plain_key, hash)``; show the plain key once, store only the hash.
    """
    key = KEY_PREFIX + secrets.token_urlsafe(32)
    return key, hash_admin_key(key)


def hash_admin_key(key: str) -> str:
    """``sha256:<hex>`` of ``key`` (UTF-8)."""
    return _HASH_SCHEME + hashlib.sha256(key.encode()).hexdigest()


def admin_keys_path(workdir: Path) -> Path:
    """Where :func:`store_admin_key_hash` writes hashes for this work dir."""
    return workdir / ADMIN_KEYS_FILENAME


def store_admin_key_hash(workdir: Path, key_hash: str, label: str) -> Path:
    """Append ``key_hash`` (with a label and creation time) to the work dir's key file.

    The file is created with mode 0600: hashes are not secrets, but they should not be
    world-readable either.
    """
    _check_hash(key_hash, source="new key")
    path = admin_keys_path(workdir)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    stamp = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    clean_label = " ".join(label.split()) or "unnamed"
    with os.fdopen(fd, "a", encoding="utf-8") as handle:
        handle.write(f"{key_hash} {clean_label} {stamp}\n")
    return path


def load_keyring(workdir: Path | None, env_value: str | None = None) -> AdminKeyring:
    """Collect admin key hashes from the environment and the work dir's key file.

    Parameters
    ----------
    workdir
        Work dir whose ``admin_keys`` file is read if it exists.
    env_value
        Comma-separated hashes; defaults to ``$DYNAMARGIN_ADMIN_KEY_HASHES``.

    Raises
    ------
    AdminKeyFileError
        If an entry is not ``sha256:<64 hex>``; names the file and line.
    """
    raw_env = os.environ.get(ADMIN_KEY_HASHES_ENV, "") if env_value is None else env_value
    hashes = [
        _check_hash(item.strip(), source=ADMIN_KEY_HASHES_ENV)
        for item in raw_env.split(",")
        if item.strip()
    ]
    if workdir is not None:
        path = admin_keys_path(workdir)
        if path.exists():
            hashes.extend(_read_key_file(path))
    return AdminKeyring(hashes=tuple(dict.fromkeys(hashes)))


def require_admin(
    keyring: Callable[[], AdminKeyring], authorization: str | None, api_key: str | None
) -> str:
    """Check the presented admin key and name the operator it belongs to.

    Parameters
    ----------
    keyring
        Returns the accepted key hashes; called only once a key was presented, so a
        broken key file never changes what an anonymous caller learns.
    authorization
        ``Authorization`` header (``Bearer <key>``).
    api_key
        ``X-API-Key`` header, an alternative for clients that cannot set ``Authorization``.

    Returns
    -------
    str
        ``admin-key:<12 hex of the key's hash>``: identifies the key in audit rows
        without revealing it.

    Raises
    ------
    ProblemError
        401 when no key was sent, 403 when the key is wrong or no key is configured, 503
        when the configured keys cannot be read (the reason goes to the server log).
    """
    presented = _presented_key(authorization, api_key)
    if presented is None:
        raise ProblemError(
            401,
            "missing-credentials",
            "Admin endpoints need an API key: send 'Authorization: Bearer <key>'.",
            headers={"WWW-Authenticate": 'Bearer realm="dynamargin-admin"'},
        )
    try:
        accepted = keyring()
    except AdminKeyFileError as exc:
        logger.error("admin keys cannot be loaded, every admin call is refused: %s", exc)
        raise ProblemError(
            503,
            "admin-keys-unavailable",
            "The server's admin key configuration is invalid, so no key can be checked; "
            "the operator has been told in the server log. Retry later.",
        ) from exc
    if not accepted.enabled:
        raise ProblemError(
            403,
            "admin-disabled",
            "No admin key is configured on this server; run 'dynamargin admin keygen' "
            f"or set {ADMIN_KEY_HASHES_ENV}.",
        )
    matched = accepted.identify(presented)
    if matched is None:
        raise ProblemError(403, "invalid-credentials", "The API key is not valid.")
    return operator_name(matched)


def operator_name(key_hash: str) -> str:
    """Audit name of the operator holding the key with ``key_hash``."""
    return "admin-key:" + key_hash.removeprefix(_HASH_SCHEME)[:12]


def _presented_key(authorization: str | None, api_key: str | None) -> str | None:
    if authorization:
        scheme, _, token = authorization.strip().partition(" ")
        if scheme.lower() == "bearer" and token.strip():
            return token.strip()
    if api_key and api_key.strip():
        return api_key.strip()
    return None


def _read_key_file(path: Path) -> Iterable[str]:
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise AdminKeyFileError(f"{path}: cannot read the admin key file: {exc}") from exc
    hashes = []
    for lineno, line in enumerate(text.splitlines(), start=1):
        entry = line.split("#", 1)[0].strip()
        if entry:
            hashes.append(_check_hash(entry.split()[0], source=f"{path}:{lineno}"))
    return hashes


def _check_hash(value: str, *, source: str) -> str:
    digest = value.removeprefix(_HASH_SCHEME)
    valid = value.startswith(_HASH_SCHEME) and len(digest) == 64
    if not valid or any(c not in "0123456789abcdef" for c in digest):
        raise AdminKeyFileError(
            f"{source}: admin key hash must look like 'sha256:<64 lowercase hex>' "
            f"(got {len(value)} characters); regenerate it with 'dynamargin admin keygen'."
        )
    return value
