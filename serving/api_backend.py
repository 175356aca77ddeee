"""What the API needs from the rest of ``serving/``, behind one narrow interface.

:class:`ApiBackend` is the contract the HTTP layer is written against: plain JSON data in
and out, blocking calls (the app runs them in worker threads). :class:`StoreBackend`
implements it on the real parts: :class:`serving.store.PublicationStore` (snapshots,
time travel, history, audit), :class:`serving.log_integrity.LogVerifier` (every row it
hands out is verified first), :mod:`serving.standard` (JSON Schema, risk-oracle mapping),
:mod:`serving.keys` (public keys) and :func:`serving.publishing.apply_operator_action`
(halt/resume/override through :class:`serving.policy.MultiplierPolicy`).

Least privilege: the store is opened with ``create=False`` (no DDL, so a ``SELECT``-only
database role or a ``mode=ro`` SQLite URL serves every read) and signatures are checked
against the public key files only (:func:`serving.keys.load_public_keys`), never a private
key. Admin actions need write access; against a read-only store they answer 503
``store-read-only``.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

from serving import strict_json
from serving.api_config import ApiConfig
from serving.errors import IntegrityFailure, PublicationStoreError, SigningKeyError
from serving.keys import load_public_keys
from serving.latest_view import LoadedSnapshots
from serving.log_integrity import STORE_WIDE, LogVerifier, trusted_keys_from_env
from serving.policy import PolicyBook, load_policy_book
from serving.problems import BadParameterError, ProblemError
from serving.publishing import apply_operator_action
from serving.signing import EIP712_TYPES, EIP712_TYPES_V2, V1_DOMAIN, configured_domain
from serving.standard import SCHEMA_VERSION, json_schema, oracle_updates, parse_time
from serving.store import PublicationStore, StoredPublication, parse_cursor

logger = logging.getLogger(__name__)

SnapshotData = Mapping[str, Any]
IntegrityListener = Callable[[str | None, list[str]], None]


@dataclass(frozen=True)
class SnapshotPage:
    """One page of history: snapshots oldest first, their chain links, the next cursor.

    ``chain[i]`` holds ``update_id``, ``batch_id``, ``reason``, ``prev_hash`` and ``hash``
    of ``snapshots[i]`` (see :mod:`serving.hash_chain` for how a consumer checks them).
    """

    snapshots: list[SnapshotData]
    next_cursor: str | None
    chain: list[dict[str, Any]] = field(default_factory=list)


class ApiBackend(Protocol):
    """Data access of the serving API (all calls may block)."""

    def latest(self) -> LoadedSnapshots:
        """Newest verified snapshot of every asset, and the assets withheld."""
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

    def checkpoint(self) -> dict[str, Any]:
        """The newest signed checkpoint (body, signature, public key), verified."""
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
    on_integrity_failure
        Called once for each newly failing asset (``None``: the whole store) with the
        problems found, so the app can log it and count it.

    Notes
    -----
    The store is opened on first use and without creating anything, so an app can start
    (and report "not ready") while the database is down or before the first
    ``dynamargin publish`` created it; a failed open raises (``PublicationStoreError``,
    ``StoreNotInitialisedError``) and is retried on the next call.
    """

    def __init__(
        self, config: ApiConfig, on_integrity_failure: IntegrityListener | None = None
    ) -> None:
        self.config = config
        self.on_integrity_failure = on_integrity_failure
        self._store: PublicationStore | None = None
        self._verifier: LogVerifier | None = None
        self._reported: dict[str | None, tuple[str, ...]] = {}
        self._lock = threading.Lock()

    @property
    def store(self) -> PublicationStore:
        """The publication store, opened lazily and read-only in intent (thread-safe)."""
        if self._store is None:
            with self._lock:
                if self._store is None:
                    self._store = PublicationStore(
                        self.config.store_url,
                        create=False,
                        busy_timeout_s=self.config.write_timeout_seconds,
                    )
        return self._store

    @property
    def verifier(self) -> LogVerifier:
        """Checks rows against the published public key (and ``$DYNAMARGIN_TRUSTED_...``).

        Raises
        ------
        IntegrityFailure
            When no public key can be read: nothing can be verified, so nothing is served.
        """
        if self._verifier is None:
            try:
                keys = load_public_keys(self.config.workdir)
            except SigningKeyError as exc:
                raise IntegrityFailure(
                    None, [f"no public key to verify the store against: {exc}"]
                ) from exc
            self._verifier = LogVerifier({keys.ed25519_public_hex, *trusted_keys_from_env()})
        return self._verifier

    def close(self) -> None:
        """Release the store's connections."""
        if self._store is not None:
            self._store.close()

    def latest(self) -> LoadedSnapshots:
        store = self.store
        try:
            report = self.verifier.check_heads(store)
        except IntegrityFailure as exc:
            report_failures: dict[str | None, list[str]] = {STORE_WIDE: exc.problems}
            self._report(report_failures)
            return LoadedSnapshots({}, store_failure="; ".join(exc.problems), mode=store.mode)
        self._report(report.failures)
        withheld = {
            asset: "; ".join(problems)
            for asset, problems in report.failures.items()
            if asset is not STORE_WIDE
        }
        store_failure = report.failures.get(STORE_WIDE)
        return LoadedSnapshots(
            {asset: pub.snapshot for asset, pub in report.latest.items()},
            withheld=withheld,
            store_failure="; ".join(store_failure) if store_failure else None,
            mode=store.mode,
        )

    def known_assets(self) -> set[str]:
        return set(self.store.last_update_ids())

    def snapshot_at(self, asset: str, at: datetime) -> SnapshotData | None:
        found = self.store.at(asset, at)
        return self._verified(found).snapshot if found is not None else None

    def history(
        self,
        asset: str,
        start: datetime | None,
        end: datetime | None,
        limit: int,
        cursor: str | None,
    ) -> SnapshotPage:
        if cursor is not None:
            try:
                parse_cursor(cursor)
            except PublicationStoreError as exc:
                raise BadParameterError(
                    "cursor", f"cursor was not issued by this API ({exc}); use next_cursor."
                ) from exc
        try:
            page = self.store.history(asset, start, end, limit, cursor)
        except PublicationStoreError as exc:
            raise ProblemError(422, "invalid-parameter", str(exc)) from exc
        items = [self._verified(item) for item in page.items]
        return SnapshotPage(
            [item.snapshot for item in items],
            page.next_cursor,
            [
                {
                    "update_id": item.update_id,
                    "batch_id": item.batch_id,
                    "reason": item.reason,
                    "prev_hash": item.prev_hash,
                    "hash": item.entry_hash,
                }
                for item in items
            ],
        )

    def week(self, asset: str, start: datetime, end: datetime) -> list[tuple[datetime, float]]:
        return [
            (item.published_at, item.multiplier)
            for item in map(self._verified, self.store.iter_history(asset, start, end))
        ]

    def oracle_updates(self, snapshots: Sequence[SnapshotData]) -> list[dict[str, Any]]:
        # previousValue is keyed per market and update type: seed it from each asset's
        # publication just before the one being mapped.
        ordered = sorted(snapshots, key=lambda s: str(s["asset"]))
        seeded: list[SnapshotData] = []
        for snap in ordered:
            before = parse_time(snap["published_at"]) - timedelta(microseconds=1)
            prior = self.store.at(str(snap["asset"]), before)
            if prior is not None and prior.update_id < int(snap["update_id"]):
                seeded.append(self._verified(prior).snapshot)
            seeded.append(snap)
        updates = oracle_updates(seeded)
        current = {(str(s["asset"]), int(s["update_id"])) for s in snapshots}
        return [u.to_dict() for u in updates if (u.market, u.updateId) in current]

    def checkpoint(self) -> dict[str, Any]:
        report = self.verifier.check_heads(self.store)
        if STORE_WIDE in report.failures:
            raise IntegrityFailure(None, report.failures[STORE_WIDE])
        stored = self.store.latest_checkpoint()
        if stored is None:
            raise ProblemError(
                404, "no-checkpoint", "No checkpoint has been signed yet; publish a batch first."
            )
        # The body is canonical JSON, so canonical_json(checkpoint) gives back the exact
        # bytes the signature covers (serving.checkpoints documents the format).
        return {
            "checkpoint": strict_json.loads(stored.body, what="checkpoint body"),
            "public_key": stored.public_key,
            "signature": stored.signature,
            "hash": stored.entry_hash,
        }

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
                "domain": configured_domain().to_dict(),
                "types": EIP712_TYPES_V2,
                "primary_type": "RiskParameters",
                # Snapshots published before revision 2 verify under the v1 form.
                "v1": {
                    "domain": V1_DOMAIN.to_dict(),
                    "types": EIP712_TYPES,
                    "primary_type": "RiskUpdate",
                },
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
            verifier=self.verifier,
        )
        state = self.store.policy_states()[record.asset]
        return {
            "audit": _jsonable(record.__dict__),
            "state": state.to_dict(),
            "effective": "with the next publication of " + record.asset,
        }

    def _verified(self, publication: StoredPublication) -> StoredPublication:
        try:
            return self.verifier.verify_publication(publication)
        except IntegrityFailure as exc:
            self._report({exc.asset: exc.problems})
            raise

    def _report(self, failures: Mapping[str | None, list[str]]) -> None:
        # Each failure is logged and counted once when it appears, not at every reload.
        for asset, problems in failures.items():
            key = tuple(problems)
            if self._reported.get(asset) == key:
                continue
            self._reported[asset] = key
            logger.error(
                "integrity failure for %s: %s",
                f"asset {asset}" if asset else "the whole store",
                "; ".join(problems),
            )
            if self.on_integrity_failure is not None:
                self.on_integrity_failure(asset, list(problems))

    def _policy_book(self) -> PolicyBook:
        # Read per call: operators edit the TOML and the bounds must follow without restart.
        return load_policy_book(self.config.policy_path)


def _jsonable(values: Mapping[str, Any]) -> dict[str, Any]:
    return {
        key: value.isoformat().replace("+00:00", "Z") if isinstance(value, datetime) else value
        for key, value in values.items()
    }
