"""What the API needs from the rest of ``serving/``, behind one narrow interface.

:class:`ApiBackend` is the contract the HTTP layer is written against: plain JSON data in
and out, blocking calls (the app runs them in worker threads). :class:`StoreBackend`
implements it on the real parts: :class:`serving.store.PublicationStore` (snapshots,
time travel, history, audit), :mod:`serving.standard` (JSON Schema, risk-oracle mapping),
:mod:`serving.keys` (public keys) and :func:`serving.publishing.apply_operator_action`
(halt/resume/override through :class:`serving.policy.MultiplierPolicy`).

Least privilege: the store is opened with ``create=False`` (no DDL, so a ``SELECT``-only
database role or a ``mode=ro`` SQLite URL serves every read) and ``/v1/keys`` reads only
the public key files (:func:`serving.keys.load_public_keys`), never a private key. Admin
actions need write access; against a read-only store they answer 503 ``store-read-only``.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

from serving.api_config import ApiConfig
from serving.errors import PublicationStoreError, SigningKeyError
from serving.keys import load_public_keys
from serving.policy import PolicyBook, load_policy_book
from serving.problems import BadParameterError, ProblemError
from serving.publishing import apply_operator_action
from serving.signing import DEFAULT_DOMAIN, EIP712_TYPES
from serving.standard import SCHEMA_VERSION, json_schema, oracle_updates, parse_time
from serving.store import PublicationStore, StoreReadOnlyError

SnapshotData = Mapping[str, Any]


@dataclass(frozen=True)
class SnapshotPage:
    """One page of history: snapshots oldest first, and the cursor of the next page."""

    snapshots: list[SnapshotData]
    next_cursor: str | None


class ApiBackend(Protocol):
    """Data access of the serving API (all calls may block)."""

    def latest(self) -> dict[str, SnapshotData]:
        """Newest snapshot of every asset."""
        ...

    def known_assets(self) -> set[str]:
        """Assets with at least one publication."""
        ...

    def snapshot_at(self, asset: str, at: datetime) -> SnapshotData | None:
        """The snapshot of ``asset`` in force at ``at`` (last published at or before it)."""
        ...

    def history(
        self,
        asset: str,
        start: datetime | None,
        end: datetime | None,
        limit: int,
        cursor: str | None,
    ) -> SnapshotPage:
        """Snapshots of ``asset`` published in ``[start, end]``, oldest first."""
        ...

    def week(self, asset: str, start: datetime, end: datetime) -> list[tuple[datetime, float]]:
        """``(published_at, multiplier)`` of ``asset`` in ``[start, end]``, oldest first."""
        ...

    def oracle_updates(self, snapshots: Sequence[SnapshotData]) -> list[dict[str, Any]]:
        """Risk-oracle updates of ``snapshots`` with ``previousValue`` from the store."""
        ...

    def json_schema(self) -> dict[str, Any]:
        """JSON Schema of RiskSnapshot v1."""
        ...

    def public_keys(self) -> dict[str, Any]:
        """Public verification keys (Ed25519, EIP-712 signer and domain)."""
        ...

    def policy_bounds(self, asset: str) -> tuple[float, float]:
        """``(floor, cap)`` of the asset's multiplier policy."""
        ...

    def operator_action(
        self,
        asset: str,
        action: str,
        operator: str,
        note: str,
        multiplier: float | None,
        until: datetime | None,
    ) -> dict[str, Any]:
        """Apply and audit an operator action; returns ``audit``, ``state``, ``effective``."""
        ...


class StoreBackend:
    """:class:`ApiBackend` on the publication store, policy, standard and keys.

    Parameters
    ----------
    config
        Supplies the store URL, work dir (keys) and policy file.

    Notes
    -----
    The store is opened on first use and without creating anything, so an app can start
    (and report "not ready") while the database is down or before the first
    ``dynamargin publish`` created it; a failed open raises (``PublicationStoreError``,
    ``StoreNotInitialisedError``) and is retried on the next call.
    """

    def __init__(self, config: ApiConfig) -> None:
        self.config = config
        self._store: PublicationStore | None = None
        self._lock = threading.Lock()

    @property
    def store(self) -> PublicationStore:
        """The publication store, opened lazily and read-only in intent (thread-safe)."""
        if self._store is None:
            with self._lock:
                if self._store is None:
                    self._store = PublicationStore(self.config.store_url, create=False)
        return self._store

    def close(self) -> None:
        """Release the store's connections."""
        if self._store is not None:
            self._store.close()

    def latest(self) -> dict[str, SnapshotData]:
        return {asset: pub.snapshot for asset, pub in self.store.latest().items()}

    def known_assets(self) -> set[str]:
        return set(self.store.last_update_ids())

    def snapshot_at(self, asset: str, at: datetime) -> SnapshotData | None:
        found = self.store.at(asset, at)
        return found.snapshot if found is not None else None

    def history(
        self,
        asset: str,
        start: datetime | None,
        end: datetime | None,
        limit: int,
        cursor: str | None,
    ) -> SnapshotPage:
        if cursor is not None and not (cursor.isdigit() and len(cursor) <= 18):
            # The store's cursor is an update id; anything else was not issued by us.
            raise BadParameterError(
                "cursor", f"cursor {cursor!r} was not issued by this API; use next_cursor."
            )
        try:
            page = self.store.history(asset, start, end, limit, cursor)
        except PublicationStoreError as exc:
            raise ProblemError(422, "invalid-parameter", str(exc)) from exc
        return SnapshotPage([item.snapshot for item in page.items], page.next_cursor)

    def week(self, asset: str, start: datetime, end: datetime) -> list[tuple[datetime, float]]:
        points: list[tuple[datetime, float]] = []
        cursor: str | None = None
        while True:
            page = self.store.history(asset, start, end, 1000, cursor)
            points.extend((item.published_at, item.multiplier) for item in page.items)
            if page.next_cursor is None:
                return points
            cursor = page.next_cursor

    def oracle_updates(self, snapshots: Sequence[SnapshotData]) -> list[dict[str, Any]]:
        # previousValue is keyed per market and update type: seed it from each asset's
        # publication just before the one being mapped.
        ordered = sorted(snapshots, key=lambda s: str(s["asset"]))
        seeded: list[SnapshotData] = []
        for snap in ordered:
            before = parse_time(snap["published_at"]) - timedelta(microseconds=1)
            prior = self.store.at(str(snap["asset"]), before)
            if prior is not None and prior.update_id < int(snap["update_id"]):
                seeded.append(prior.snapshot)
            seeded.append(snap)
        updates = oracle_updates(seeded)
        current = {(str(s["asset"]), int(s["update_id"])) for s in snapshots}
        return [u.to_dict() for u in updates if (u.market, u.updateId) in current]

    def json_schema(self) -> dict[str, Any]:
        return json_schema()

    def public_keys(self) -> dict[str, Any]:
        try:
            keys = load_public_keys(self.config.workdir)
        except SigningKeyError as exc:
            raise ProblemError(
                503,
                "signing-keys-unavailable",
                f"No signing keys to show yet: {exc}. They appear after the first "
                "'dynamargin publish'.",
            ) from exc
        return {
            "schema": SCHEMA_VERSION,
            "ed25519": {"public_key": keys.ed25519_public_hex, "encoding": "raw-32-bytes-hex"},
            "eip712": {
                "signer": keys.eip712_address,
                "domain": DEFAULT_DOMAIN.to_dict(),
                "types": EIP712_TYPES,
                "primary_type": "RiskUpdate",
            },
        }

    def policy_bounds(self, asset: str) -> tuple[float, float]:
        config = self._policy_book().for_asset(asset)
        return config.floor, config.cap

    def operator_action(
        self,
        asset: str,
        action: str,
        operator: str,
        note: str,
        multiplier: float | None,
        until: datetime | None,
    ) -> dict[str, Any]:
        now = datetime.now(UTC)
        try:
            record = apply_operator_action(
                self.store,
                self._policy_book(),
                asset,
                action,
                operator,
                note,
                now,
                multiplier=multiplier,
                until=until,
            )
        except StoreReadOnlyError as exc:
            raise ProblemError(
                503,
                "store-read-only",
                f"This API instance reads the store without write access, so it cannot "
                f"record the {action} of {asset}: {exc}",
            ) from exc
        state = self.store.policy_states()[asset]
        return {
            "audit": _jsonable(record.__dict__),
            "state": state.to_dict(),
            "effective": "with the next publication of " + asset,
        }

    def _policy_book(self) -> PolicyBook:
        # Read per call: operators edit the TOML and the bounds must follow without restart.
        return load_policy_book(self.config.policy_path)


def _jsonable(values: Mapping[str, Any]) -> dict[str, Any]:
    return {
        key: value.isoformat().replace("+00:00", "Z") if isinstance(value, datetime) else value
        for key, value in values.items()
    }
