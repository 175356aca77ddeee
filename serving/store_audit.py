"""Audit a whole publication store offline: every row, every link, every signature.

What ``dynamargin snapshots audit`` runs. Where the API checks the rows it loads and the
chain heads (:mod:`serving.log_integrity`), the audit walks everything:

* every chain (publications, policy states and audit rows per asset; batches and
  checkpoints for the store): each row's own hash and its link to the row before it;
* every publication: canonical strict JSON, schema, reference id, Ed25519 signature by a
  trusted key, EIP-712 signature (unless ``fast``), stored columns equal to the signed
  fields, ``update_id`` strictly and ``published_at`` weakly increasing, its batch present;
* every batch: as many publications as it says;
* every checkpoint: its signature by a trusted key, its store id and mode, and that each
  head it signed is still the row at that place of its chain, with that hash.

The audit only reads (``create=False`` is enough) and keeps one hash per row in memory.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Callable, Collection
from dataclasses import dataclass, field

from serving.checkpoints import verify_checkpoint
from serving.hash_chain import GENESIS, PER_ASSET_CHAINS, STORE_CHAINS, Chain
from serving.log_integrity import LogVerifier
from serving.store import PublicationStore, StoredPublication

Progress = Callable[[str, int], None]
"""Called with a stage name and the rows done so far (for a progress display)."""


@dataclass
class AuditReport:
    """What :func:`audit_store` found.

    Attributes
    ----------
    problems
        One sentence per failed check, naming the chain, asset and row.
    rows
        Rows checked per chain.
    publications, checkpoints
        Publications and checkpoints verified.
    """

    problems: list[str] = field(default_factory=list)
    rows: dict[str, int] = field(default_factory=dict)
    publications: int = 0
    checkpoints: int = 0

    @property
    def ok(self) -> bool:
        """Whether every check passed."""
        return not self.problems

    def to_dict(self) -> dict[str, object]:
        """JSON-ready summary."""
        return {
            "ok": self.ok,
            "problems": list(self.problems),
            "rows": dict(self.rows),
            "publications": self.publications,
            "checkpoints": self.checkpoints,
        }


def audit_store(
    store: PublicationStore,
    trusted_public_keys: Collection[str],
    *,
    fast: bool = False,
    progress: Progress | None = None,
) -> AuditReport:
    """Verify every row of ``store`` (see the module docstring).

    Parameters
    ----------
    store
        The store (opened with ``create=False`` for a read-only audit).
    trusted_public_keys
        Ed25519 keys (hex) whose signatures are accepted.
    fast
        Skip the EIP-712 recovery (about 12 ms per snapshot in pure Python); the Ed25519
        signature, the chains and the checkpoints are still checked.
    progress
        Called now and then with the stage and the rows done.
    """
    report = AuditReport()
    tick = progress or (lambda _stage, _done: None)
    positions: dict[tuple[str, str, int], tuple[int, str]] = {}
    for chain in (*STORE_CHAINS, *PER_ASSET_CHAINS):
        _walk_chain(store, chain, report, positions, tick)
    verifier = LogVerifier(trusted_public_keys, check_eip712=not fast)
    _audit_publications(store, verifier, report, tick)
    _audit_checkpoints(store, trusted_public_keys, report, positions, tick)
    return report


def _walk_chain(
    store: PublicationStore,
    chain: Chain,
    report: AuditReport,
    positions: dict[tuple[str, str, int], tuple[int, str]],
    tick: Progress,
) -> None:
    last: dict[str, str] = {}
    length: Counter[str] = Counter()
    done = 0
    for row in store.chain_rows(chain):
        expected_prev = last.get(row.key, GENESIS)
        if row.prev_hash != expected_prev:
            report.problems.append(
                f"{row.where()}: link broken (it names {row.prev_hash[:12]}…, the row before it "
                f"hashes to {expected_prev[:12]}…): a row was removed, inserted or rewritten"
            )
        if row.expected_hash() != row.entry_hash:
            report.problems.append(f"{row.where()}: content does not match its entry_hash")
        last[row.key] = row.entry_hash
        length[row.key] += 1
        positions[(chain, row.key, row.row_id)] = (length[row.key], row.entry_hash)
        done += 1
        if done % 5000 == 0:
            tick(chain, done)
    report.rows[chain] = done


def _audit_publications(
    store: PublicationStore, verifier: LogVerifier, report: AuditReport, tick: Progress
) -> None:
    batches = {receipt.batch_id: receipt.n_snapshots for receipt in store.batches()}
    per_batch: Counter[int] = Counter()
    previous: dict[str, StoredPublication] = {}
    for publication in store.iter_publications():
        where = f"publications/{publication.asset} update {publication.update_id}"
        report.problems.extend(
            problem
            for problem in verifier.check_publication(publication)
            if "link" not in problem  # links are the chain walk's business
        )
        before = previous.get(publication.asset)
        if before is not None:
            if publication.update_id <= before.update_id:
                report.problems.append(f"{where}: update_id does not increase")
            if publication.published_at < before.published_at:
                report.problems.append(f"{where}: published_at goes back in time")
        if publication.batch_id not in batches:
            report.problems.append(f"{where}: batch {publication.batch_id} does not exist")
        per_batch[publication.batch_id] += 1
        previous[publication.asset] = publication
        report.publications += 1
        if report.publications % 500 == 0:
            tick("signatures", report.publications)
    for batch_id, expected in batches.items():
        if per_batch[batch_id] != expected:
            report.problems.append(
                f"batches row {batch_id}: says {expected} snapshots, the store holds "
                f"{per_batch[batch_id]}"
            )


def _audit_checkpoints(
    store: PublicationStore,
    trusted_public_keys: Collection[str],
    report: AuditReport,
    positions: dict[tuple[str, str, int], tuple[int, str]],
    tick: Progress,
) -> None:
    seen_heads: dict[tuple[str, str], int] = defaultdict(int)
    for stored in store.iter_checkpoints():
        checkpoint, problems = verify_checkpoint(stored, trusted_public_keys)
        report.problems.extend(problems)
        report.checkpoints += 1
        if checkpoint is None:
            continue
        where = f"checkpoint {stored.row_id}"
        if checkpoint.store_id != store.meta.store_id or checkpoint.mode != store.meta.mode:
            report.problems.append(f"{where}: signed for another store or mode")
        for chain, by_key in checkpoint.heads.items():
            for key, head in by_key.items():
                found = positions.get((chain, key, head.row_id))
                label = f"{chain}/{key}" if key else chain
                if found is None:
                    report.problems.append(
                        f"{where}: signed head {label} row {head.row_id} no longer exists"
                    )
                elif found != (head.length, head.hash):
                    report.problems.append(
                        f"{where}: signed head {label} row {head.row_id} changed (the chain "
                        "before it was rewritten, or rows removed)"
                    )
                if head.row_id < seen_heads[(chain, key)]:
                    report.problems.append(f"{where}: head {label} moved backwards")
                seen_heads[(chain, key)] = head.row_id
        tick("checkpoints", report.checkpoints)
    if report.publications and not report.checkpoints:
        report.problems.append("no signed checkpoint covers the published rows")
