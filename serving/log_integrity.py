"""Verify what is read from a publication store before anyone relies on it.

The triggers of :mod:`serving.store` refuse every rewriting statement, but whoever can
disable them (a PostgreSQL superuser, anyone who can write the SQLite file) can change any
row. :class:`LogVerifier` makes such a change visible wherever a row is used:

* a **publication** verifies when its own hash matches its content, it links to the rows
  before and after it, its snapshot is canonical strict JSON that passes the schema, the
  reference id and the Ed25519 signature of a trusted key, and the stored columns
  (asset, times, status, multiplier, reference id) equal the snapshot's fields;
* the **heads** of every chain verify against the newest signed checkpoint
  (:mod:`serving.checkpoints`): a signed head must still be there with the same hash and
  the same chain length, and every row after it must extend it link by link.

Failures are reported per asset (a per-asset chain) or for the whole store (``None``: the
batches, the checkpoints, the store's identity). The API answers 503 for what fails and
keeps serving the rest; the publisher refuses to publish; ``dynamargin snapshots audit``
(:mod:`serving.store_audit`) checks every row.
"""

from __future__ import annotations

import hashlib
import os
from collections import OrderedDict
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

from serving import strict_json
from serving.checkpoints import Checkpoint, SignedHead, verify_checkpoint
from serving.errors import IntegrityFailure
from serving.hash_chain import GENESIS, PER_ASSET_CHAINS, Chain, ChainRow, broken_links
from serving.keys import load_public_keys
from serving.signing import verify_snapshot
from serving.standard import canonical_json, parse_time
from serving.store import (
    ChainHead,
    PublicationStore,
    StoredCheckpoint,
    StoredPublication,
    to_epoch_us,
)

TRUSTED_KEYS_ENV: Final[str] = "DYNAMARGIN_TRUSTED_ED25519_KEYS"
"""Comma-separated extra Ed25519 public keys (hex) to trust, e.g. keys rotated out."""

_CACHE_SIZE: Final[int] = 50_000

STORE_WIDE: Final = None
"""Key of store-wide failures in :attr:`HeadsReport.failures`."""


def trusted_keys_from_env(environ: Mapping[str, str] | None = None) -> set[str]:
    """The extra trusted keys of :data:`TRUSTED_KEYS_ENV` (lowercase hex)."""
    raw = (os.environ if environ is None else environ).get(TRUSTED_KEYS_ENV, "")
    return {item.strip().lower() for item in raw.split(",") if item.strip()}


def workdir_verifier(
    workdir: Path, pinned: Collection[str] = (), *, check_eip712: bool = False
) -> LogVerifier:
    """A verifier trusting ``pinned`` keys, or else the work dir's published public key,
    plus those of :data:`TRUSTED_KEYS_ENV`.

    Raises
    ------
    serving.errors.SigningKeyError
        If nothing is pinned and the work dir has no public key to trust.
    """
    keys = {key.lower() for key in pinned} | trusted_keys_from_env()
    if not pinned:
        keys.add(load_public_keys(workdir).ed25519_public_hex)
    return LogVerifier(keys, check_eip712=check_eip712)


@dataclass
class HeadsReport:
    """What :meth:`LogVerifier.check_heads` found.

    Attributes
    ----------
    latest
        Newest publication of every asset whose chains verify.
    failures
        Problems per asset, and under ``None`` for the whole store.
    checkpoint
        The newest signed checkpoint, parsed (``None`` when the store has none).
    """

    latest: dict[str, StoredPublication] = field(default_factory=dict)
    failures: dict[str | None, list[str]] = field(default_factory=dict)
    checkpoint: Checkpoint | None = None

    def failed(self, asset: str) -> list[str]:
        """Problems that make ``asset`` untrustworthy (its own and store-wide ones)."""
        return [*self.failures.get(STORE_WIDE, []), *self.failures.get(asset, [])]

    def require(self, asset: str) -> None:
        """Raise :class:`IntegrityFailure` if ``asset`` (or the store) failed."""
        if STORE_WIDE in self.failures:
            raise IntegrityFailure(None, self.failures[STORE_WIDE])
        if asset in self.failures:
            raise IntegrityFailure(asset, self.failures[asset])


class LogVerifier:
    """Checks rows of a publication store against the hash chains and trusted keys.

    Parameters
    ----------
    trusted_public_keys
        Ed25519 public keys (hex) whose snapshot and checkpoint signatures are accepted.
        ``None`` accepts the key each checkpoint names: the chains and heads are still
        checked, but a forged signature is not (use it only where no key is at hand).
    check_eip712
        Also recover every snapshot's EIP-712 signer (slow; the offline audit does).

    Notes
    -----
    Results are cached by content hash, so a row is verified once per process however
    often it is read.
    """

    def __init__(
        self, trusted_public_keys: Collection[str] | None, *, check_eip712: bool = False
    ) -> None:
        self.trusted = (
            None if trusted_public_keys is None else {k.lower() for k in trusted_public_keys}
        )
        self.check_eip712 = check_eip712
        self._snapshots: OrderedDict[str, tuple[str, ...]] = OrderedDict()
        self._rows: OrderedDict[str, tuple[str, ...]] = OrderedDict()
        # The newest checkpoint this verifier has seen verify: a store that later shows an
        # older one (or another one under the same number) was rolled back or rewritten.
        self._high_water: tuple[int, str] | None = None
        self._checkpoints: OrderedDict[str, tuple[Checkpoint | None, tuple[str, ...]]] = (
            OrderedDict()
        )

    # -- single publications -----------------------------------------------------------

    def check_publication(self, publication: StoredPublication) -> list[str]:
        """Every problem of one stored publication (empty when it verifies).

        The outcome is remembered under a digest of everything checked (the row, its
        neighbours' hashes, its columns), so a row read again unchanged costs one hash.
        """
        fingerprint = _fingerprint(publication)
        cached = self._rows.get(fingerprint)
        if cached is None:
            cached = tuple(self._publication_problems(publication))
            _remember(self._rows, fingerprint, cached)
        return list(cached)

    def _publication_problems(self, publication: StoredPublication) -> list[str]:
        where = f"publications/{publication.asset} update {publication.update_id}"
        row = publication.chain_row()
        problems = [f"{where}: {p.split(': ', 1)[1]}" for p in broken_links([row], None)]
        if publication.predecessor_hash is not None and (
            publication.prev_hash != publication.predecessor_hash
        ):
            problems.append(
                f"{where}: does not link to the row before it (a row was removed or rewritten)"
            )
        if publication.successor_prev_hash is not None and (
            publication.successor_prev_hash != publication.entry_hash
        ):
            problems.append(
                f"{where}: the row after it does not link to it (a row was removed or rewritten)"
            )
        problems.extend(self._snapshot_problems(publication, where))
        return problems

    def verify_publication(self, publication: StoredPublication) -> StoredPublication:
        """``publication`` if it verifies.

        Raises
        ------
        IntegrityFailure
            With the problems found, for the publication's asset.
        """
        problems = self.check_publication(publication)
        if problems:
            raise IntegrityFailure(publication.asset, problems)
        return publication

    def verify_publications(self, items: Iterable[StoredPublication]) -> list[StoredPublication]:
        """Every item verified (raises :class:`IntegrityFailure` at the first failure)."""
        return [self.verify_publication(item) for item in items]

    # -- chain heads against the newest checkpoint ------------------------------------

    def check_heads(self, store: PublicationStore) -> HeadsReport:
        """Verify the head of every chain against the newest signed checkpoint.

        Raises
        ------
        serving.errors.StoreIdentityError
            If the store's file or schema is no longer the one that was opened.
        """
        store.check_identity()
        report = HeadsReport()
        stored = store.latest_checkpoint()
        latest = store.latest()
        rolled_back = self._rolled_back(store, stored)
        if rolled_back:
            report.failures[STORE_WIDE] = [rolled_back]
        if stored is None:
            signed: dict[str, dict[str, SignedHead]] = {}
            if latest:
                report.failures[STORE_WIDE] = [
                    "no signed checkpoint covers the published rows (the checkpoints were "
                    "removed, or the store was written without the publisher's key)"
                ]
        else:
            checkpoint, problems = self._checkpoint(stored)
            problems = list(problems)
            if stored.row_id > 1:
                previous = list(store.chain_rows("checkpoints", after_row_id=stored.row_id - 2))
                problems += broken_links(previous, None)
                if len(previous) != 2:
                    problems.append("the checkpoint before the newest one is missing")
            else:
                problems += broken_links([stored.chain_row()], GENESIS)
            if checkpoint is not None:
                if checkpoint.store_id != store.meta.store_id:
                    problems.append(
                        f"newest checkpoint belongs to store {checkpoint.store_id}, not "
                        f"{store.meta.store_id}"
                    )
                if checkpoint.mode != store.meta.mode:
                    problems.append(
                        f"newest checkpoint says mode {checkpoint.mode}, the store {store.mode}"
                    )
            if problems:
                report.failures.setdefault(STORE_WIDE, []).extend(problems)
            report.checkpoint = checkpoint
            signed = checkpoint.heads if checkpoint is not None else {}
        for chain in ("batches", *PER_ASSET_CHAINS):
            signed_heads = signed.get(chain, {})
            current = store.chain_heads(chain)
            head_ids = {head.row_id for head in signed_heads.values()}
            by_key: dict[str, list[ChainRow]] = {}
            for row in store.chain_rows_at(chain, head_ids, max(head_ids, default=0)):
                by_key.setdefault(row.key, []).append(row)
            for key in sorted(set(current) | set(signed_heads)):
                problems = _head_problems(
                    chain, key, current.get(key), signed_heads.get(key), by_key.get(key, [])
                )
                if problems:
                    report.failures.setdefault(key or STORE_WIDE, []).extend(problems)
        for asset, publication in latest.items():
            problems = self.check_publication(publication)
            if problems:
                report.failures.setdefault(asset, []).extend(problems)
            elif asset not in report.failures:
                report.latest[asset] = publication
        if STORE_WIDE in report.failures:
            report.latest = {}
        elif stored is not None:
            self._high_water = (stored.row_id, stored.entry_hash)
        return report

    # -- helpers ----------------------------------------------------------------------

    def _rolled_back(self, store: PublicationStore, stored: StoredCheckpoint | None) -> str | None:
        if self._high_water is None:
            return None
        sequence, digest = self._high_water
        if stored is None or stored.row_id < sequence:
            now = "none" if stored is None else str(stored.row_id)
            return (
                f"the store was rolled back: its newest checkpoint is {now}, but checkpoint "
                f"{sequence} was seen verified before"
            )
        seen = store.chain_rows_at("checkpoints", {sequence}, stored.row_id)
        if not seen or seen[0].entry_hash != digest:
            return f"checkpoint {sequence} changed since it was seen verified (history forked)"
        return None

    def _checkpoint(self, stored: StoredCheckpoint) -> tuple[Checkpoint | None, tuple[str, ...]]:
        cached = self._checkpoints.get(stored.entry_hash)
        if cached is None:
            keys = self.trusted if self.trusted is not None else {stored.public_key.lower()}
            parsed, problems = verify_checkpoint(stored, keys)
            problems += broken_links([stored.chain_row()], None)
            cached = (parsed, tuple(problems))
            _remember(self._checkpoints, stored.entry_hash, cached)
        return cached

    def _snapshot_problems(self, publication: StoredPublication, where: str) -> list[str]:
        digest = hashlib.sha256(publication.raw.encode("utf-8", "surrogatepass")).hexdigest()
        cached = self._snapshots.get(digest)
        if cached is None:
            cached = tuple(self._verify_snapshot_text(publication.raw, where))
            _remember(self._snapshots, digest, cached)
        problems = list(cached)
        if not cached:
            problems.extend(_column_problems(publication, where))
        return problems

    def _verify_snapshot_text(self, raw: str, where: str) -> list[str]:
        try:
            document = strict_json.loads(raw, what="stored snapshot")
        except strict_json.StrictJsonError as exc:
            return [f"{where}: {exc}"]
        if not isinstance(document, dict):
            return [f"{where}: stored snapshot is not a JSON object"]
        try:
            canonical = canonical_json(document).decode("ascii")
        except Exception as exc:  # any value canonical JSON cannot hold is a failure
            return [f"{where}: not canonical JSON ({exc})"]
        problems = [] if canonical == raw else [f"{where}: stored bytes are not canonical JSON"]
        result = verify_snapshot(
            document,
            trusted_public_keys=self.trusted,
            check_eip712=self.check_eip712,
        )
        problems.extend(f"{where}: {error}" for error in result.errors)
        return problems


def _head_problems(
    chain: Chain,
    key: str,
    current: ChainHead | None,
    signed: SignedHead | None,
    rows: list[ChainRow],
) -> list[str]:
    """Problems of one chain's end: the signed head row and every row after it.

    ``rows`` are that row (when signed) and the chain's rows appended after the checkpoint.
    """
    where = f"{chain}/{key}" if key else chain
    if signed is None:
        if current is None:
            return []
        # Nothing signed for this chain yet: every row of it came after the checkpoint and
        # must link from the very first one.
        problems = broken_links(rows, GENESIS)
        if current.length != len(rows):
            problems.append(f"{where}: rows written behind the newest checkpoint's back")
        return problems
    if current is None or current.row_id < signed.row_id:
        return [
            f"{where}: the signed head (row {signed.row_id}, length {signed.length}) is gone: "
            "rows were removed after they were signed"
        ]
    if not rows or rows[0].row_id != signed.row_id or rows[0].entry_hash != signed.hash:
        return [f"{where}: the signed head row {signed.row_id} was removed or rewritten"]
    problems = broken_links(rows, None)
    if current.length - (len(rows) - 1) != signed.length:
        problems.append(
            f"{where}: the chain up to the signed head no longer has {signed.length} rows "
            "(rows were removed or inserted before it)"
        )
    return problems


def _column_problems(publication: StoredPublication, where: str) -> list[str]:
    # The columns are copies the store queries by (latest, time travel); a column that
    # disagrees with the signed snapshot would route readers to the wrong row.
    snap = publication.snapshot
    expected = {
        "asset": snap["asset"],
        "update_id": snap["update_id"],
        "status": snap["status"],
        "multiplier": float(snap["margin"]["multiplier"]),
        "published_at_us": to_epoch_us(parse_time(snap["published_at"])),
        "valid_until_us": to_epoch_us(parse_time(snap["valid_until"])),
        "as_of_us": to_epoch_us(parse_time(snap["as_of"])),
        "reference_id": snap["provenance"]["reference_id"],
    }
    actual = {
        "asset": publication.asset,
        "update_id": publication.update_id,
        "status": publication.status,
        "multiplier": publication.multiplier,
        **publication.columns,
    }
    wrong = sorted(name for name, value in expected.items() if actual.get(name) != value)
    return (
        [f"{where}: column(s) {', '.join(wrong)} differ from the signed snapshot"] if wrong else []
    )


def _fingerprint(publication: StoredPublication) -> str:
    digest = hashlib.sha256(publication.raw.encode("utf-8", "surrogatepass"))
    parts = (
        publication.asset,
        publication.update_id,
        publication.batch_id,
        publication.status,
        publication.reason,
        repr(publication.multiplier),
        publication.row_id,
        publication.prev_hash,
        publication.entry_hash,
        publication.predecessor_hash,
        publication.successor_prev_hash,
        sorted(publication.columns.items()),
    )
    digest.update(repr(parts).encode("utf-8", "surrogatepass"))
    return digest.hexdigest()


def _remember(cache: OrderedDict, key: str, value: object) -> None:
    cache[key] = value
    if len(cache) > _CACHE_SIZE:
        cache.popitem(last=False)
