"""Push signed snapshots to a RiskOracle: verified first, idempotent, resumable, gas-chunked.

:func:`push_snapshots` publishes each snapshot's six records (:mod:`serving.oracle_encoding`)
with ``publishBulkRiskParameterUpdates``:

* **Checked before anything is sent.** Every snapshot must be a signed v2 snapshot whose
  signatures verify and whose EIP-712 domain is this chain and this oracle, so a steward
  reading the records will accept them. A refusal sends nothing.
* **Idempotent.** The chain is the record of what was pushed: for each asset and update type
  the oracle's newest record is read, and a record whose ``referenceId`` is already there
  (or whose update id is older than the one there) is not pushed again.
* **Resumable.** An asset's six records always travel in one transaction, so an asset is
  never half-published. Sent transactions are journaled (``journal``) before their receipt is
  awaited; a crashed run left pending hashes there, and the next run waits for them before it
  reads the chain, so nothing is sent twice.
* **Chunked under a gas limit.** Assets are packed greedily into calls whose estimated gas
  stays under ``gas_limit`` (10 assets x 6 types in one call is about 27M gas).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

from contracts.files import atomic_write_bytes
from serving.errors import ContractRevert, OraclePushError
from serving.evm_chain import EvmChain
from serving.oracle_encoding import OracleRecord, bulk_arguments, oracle_records
from serving.signing import verify_snapshot
from serving.standard import Eip712Domain

DEFAULT_GAS_LIMIT: Final[int] = 15_000_000
"""Half of a mainnet block: a bulk call stays includable next to other traffic."""
GAS_MARGIN: Final[float] = 1.1
"""Gas sent over the estimate (storage costs of the RiskOracle are deterministic)."""

Progress = Callable[[str, Mapping[str, Any]], None]
"""``progress(event, details)`` with events ``sent``, ``confirmed`` and ``skipped``."""


@dataclass(frozen=True)
class PushedCall:
    """One ``publishBulkRiskParameterUpdates`` transaction."""

    tx_hash: str
    assets: tuple[str, ...]
    records: int
    gas_used: int
    block: int

    @property
    def gas_per_asset(self) -> float:
        return self.gas_used / len(self.assets)


@dataclass(frozen=True)
class PushReport:
    """What a push did.

    Attributes
    ----------
    calls
        Transactions sent and mined, in order.
    already_on_chain
        Assets whose records (this update or a newer one) the oracle already held.
    resumed
        Pending transactions of an earlier run that this run waited for.
    """

    chain_id: int
    oracle: str
    calls: list[PushedCall] = field(default_factory=list)
    already_on_chain: list[str] = field(default_factory=list)
    resumed: list[str] = field(default_factory=list)

    @property
    def gas_used(self) -> int:
        return sum(c.gas_used for c in self.calls)

    @property
    def assets_pushed(self) -> list[str]:
        return [a for c in self.calls for a in c.assets]


def push_snapshots(
    chain: EvmChain,
    oracle: Any,
    snapshots: Sequence[Mapping[str, Any]],
    *,
    gas_limit: int = DEFAULT_GAS_LIMIT,
    journal: Path | None = None,
    trusted_signers: Sequence[str] | None = None,
    progress: Progress | None = None,
) -> PushReport:
    """Publish ``snapshots`` (one per asset) to the RiskOracle ``oracle``.

    Parameters
    ----------
    chain
        Where to send (the sender must be an authorized RiskOracle sender).
    oracle
        The RiskOracle web3 contract.
    snapshots
        Signed ``dynamargin.risk/2`` snapshot dicts, at most one per asset.
    gas_limit
        Largest gas of one call.
    journal
        JSON file of sent, unconfirmed transactions (resume after a crash).
    trusted_signers
        EIP-712 signers the snapshots must come from (default: any that verifies).
    progress
        Called on each sent, confirmed or skipped step.

    Raises
    ------
    OraclePushError
        For a snapshot that is not pushable (nothing is sent), an asset that alone needs
        more than ``gas_limit``, or a revert (earlier calls stay on chain; run again).
    """
    domain = Eip712Domain(chain_id=chain.chain_id, verifying_contract=oracle.address)
    records = _checked_records(snapshots, domain, trusted_signers)
    report = PushReport(chain_id=domain.chain_id, oracle=oracle.address)
    pending = _Journal(journal, domain)
    report.resumed.extend(pending.settle(chain))

    todo: dict[str, list[OracleRecord]] = {}
    for asset, asset_records in records.items():
        if _on_chain(chain, oracle, asset_records):
            report.already_on_chain.append(asset)
            if progress:
                progress("skipped", {"asset": asset, "reason": "already on chain"})
        else:
            todo[asset] = asset_records

    queue = sorted(todo)
    while queue:
        chunk, estimate = _fit_chunk(chain, oracle, queue, todo, gas_limit)
        batch = [r for asset in chunk for r in todo[asset]]
        call = oracle.functions.publishBulkRiskParameterUpdates(*bulk_arguments(batch))

        def sent(tx_hash: str, chunk: list[str] = chunk) -> None:
            pending.add(tx_hash, chunk)
            if progress:
                progress("sent", {"tx_hash": tx_hash, "assets": chunk})

        try:
            receipt = chain.transact(
                call, gas=min(gas_limit, int(estimate * GAS_MARGIN)), on_sent=sent, simulate=False
            )
        except ContractRevert as exc:
            raise OraclePushError(
                f"pushing {', '.join(chunk)} to RiskOracle {oracle.address} reverted: "
                f"{exc.reason}; "
                f"{len(report.calls)} earlier call(s) are on chain, run again to resume"
            ) from exc
        tx_hash = receipt["transactionHash"].to_0x_hex()
        pending.remove(tx_hash)
        pushed = PushedCall(
            tx_hash, tuple(chunk), len(batch), int(receipt["gasUsed"]), int(receipt["blockNumber"])
        )
        report.calls.append(pushed)
        if progress:
            progress(
                "confirmed", {"tx_hash": tx_hash, "assets": chunk, "gas_used": pushed.gas_used}
            )
        queue = queue[len(chunk) :]
    return report


def _checked_records(
    snapshots: Sequence[Mapping[str, Any]],
    domain: Eip712Domain,
    trusted_signers: Sequence[str] | None,
) -> dict[str, list[OracleRecord]]:
    records: dict[str, list[OracleRecord]] = {}
    for snapshot in snapshots:
        asset = str(snapshot.get("asset"))
        if asset in records:
            raise OraclePushError(f"two snapshots of {asset} in one push; push the newest only")
        result = verify_snapshot(snapshot, domain=domain, trusted_signers=trusted_signers)
        if not result.ok:
            hint = ""
            if result.checks.get("domain") is False:
                hint = (
                    f" Publish with DYNAMARGIN_EIP712_CHAIN_ID={domain.chain_id} and "
                    f"DYNAMARGIN_EIP712_VERIFYING_CONTRACT={domain.verifying_contract}."
                )
            raise OraclePushError(
                f"{asset} update {snapshot.get('update_id')} cannot go on chain: "
                + "; ".join(result.errors)
                + hint
            )
        records[asset] = oracle_records(snapshot)
    if not records:
        raise OraclePushError("no snapshots to push")
    return records


def _on_chain(chain: EvmChain, oracle: Any, records: Sequence[OracleRecord]) -> bool:
    """True if every record (or a newer update of it) is the oracle's newest for its key."""
    for record in records:
        try:
            newest = chain.view(
                oracle.functions.getLatestUpdateByParameterAndMarket(
                    record.update_type, record.market
                )
            )
        except ContractRevert:
            return False  # "No update found": never published
        reference = newest[2]
        if reference != record.reference_id and _update_id(reference) <= _update_id(
            record.reference_id
        ):
            return False
    return True


def _update_id(reference_id: str) -> int:
    # <asset>:<update_id>:<hash>; a foreign record (not ours) counts as older than ours.
    parts = reference_id.split(":")
    return int(parts[1]) if len(parts) == 3 and parts[1].isdigit() else -1


def _fit_chunk(
    chain: EvmChain,
    oracle: Any,
    queue: Sequence[str],
    todo: Mapping[str, Sequence[OracleRecord]],
    gas_limit: int,
) -> tuple[list[str], int]:
    """The longest prefix of ``queue`` whose call fits ``gas_limit`` (at least one asset),
    with its gas estimate."""

    def gas(assets: Sequence[str]) -> int:
        batch = [r for a in assets for r in todo[a]]
        call = oracle.functions.publishBulkRiskParameterUpdates(*bulk_arguments(batch))
        try:
            return chain.estimate_gas(call)
        except ContractRevert as exc:
            raise OraclePushError(
                f"RiskOracle {oracle.address} refuses {', '.join(assets)}: {exc.reason} "
                f"(is {chain.sender} an authorized sender?)"
            ) from exc

    one = gas(queue[:1])
    if one * GAS_MARGIN > gas_limit:
        raise OraclePushError(
            f"{queue[0]} alone needs {one:,} gas (+{GAS_MARGIN - 1:.0%}), above the gas limit "
            f"{gas_limit:,}; raise --gas-limit"
        )
    # Gas grows about linearly per asset: start from the extrapolation, then step down.
    size = max(1, min(len(queue), int(gas_limit / (one * GAS_MARGIN))))
    estimate = one if size == 1 else gas(queue[:size])
    while size > 1 and estimate * GAS_MARGIN > gas_limit:
        size -= 1
        estimate = one if size == 1 else gas(queue[:size])
    return list(queue[:size]), estimate


class _Journal:
    """Sent, unconfirmed transactions of one (chain, oracle), in a JSON file."""

    def __init__(self, path: Path | None, domain: Eip712Domain) -> None:
        self.path = path
        self.key = f"{domain.chain_id}:{domain.verifying_contract.lower()}"
        self.entries: dict[str, list[str]] = {}
        if path is not None and path.exists():
            try:
                data = json.loads(path.read_text(encoding="utf-8"))
            except ValueError as exc:
                raise OraclePushError(
                    f"push journal {path} is not JSON ({exc}); inspect it"
                ) from exc
            if data.get("target") == self.key:
                self.entries = {str(k): list(v) for k, v in data.get("pending", {}).items()}

    def add(self, tx_hash: str, assets: Sequence[str]) -> None:
        self.entries[tx_hash] = list(assets)
        self._save()

    def remove(self, tx_hash: str) -> None:
        if self.entries.pop(tx_hash, None) is not None:
            self._save()

    def settle(self, chain: EvmChain) -> list[str]:
        """Wait for every journaled transaction; return their hashes."""
        settled = []
        for tx_hash in list(self.entries):
            chain.wait(tx_hash)  # mined or failed: the chain state read next decides
            self.remove(tx_hash)
            settled.append(tx_hash)
        return settled

    def _save(self) -> None:
        if self.path is None:
            return
        body = {"target": self.key, "pending": self.entries}
        self.path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(
            self.path, json.dumps(body, sort_keys=True).encode("utf-8"), durable=True
        )
