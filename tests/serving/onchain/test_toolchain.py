"""The Solidity toolchain: pinned solcjs, the peer compiled in place, a source-hash cache;
and the revision rules of RiskSnapshot v1 and v2."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import jsonschema
import pytest

from serving.errors import EvmToolchainError, InvalidInputError
from serving.ethereum import to_checksum_address
from serving.signing import V1_DOMAIN, SnapshotSigner, configured_domain, verify_snapshot
from serving.solidity_build import (
    ONCHAIN_DIR,
    RISK_ORACLE_FILE,
    compile_contracts,
    default_peers_dir,
)
from serving.standard import json_schema
from serving.standard_vectors import VECTORS_PATH, vector_keys

VECTORS = json.loads(VECTORS_PATH.read_text(encoding="ascii"))


def test_the_pinned_compiler_and_libraries_are_locked():
    package = json.loads((ONCHAIN_DIR / "package.json").read_text())
    lock = json.loads((ONCHAIN_DIR / "package-lock.json").read_text())
    for name, version in package["dependencies"].items():
        assert version[0].isdigit(), f"{name} must be pinned exactly, not {version}"
        assert lock["packages"][f"node_modules/{name}"]["version"] == version
    assert package["dependencies"]["solc"] == "0.8.28"
    assert package["dependencies"]["@openzeppelin/contracts"].startswith("5.")


def test_compiles_once_then_reads_the_cache(tmp_path: Path):
    first = compile_contracts(cache_dir=tmp_path)
    assert not first.from_cache
    assert {"RiskOracle", "MarginSteward", "PerpMarket"} <= set(first.contracts)
    second = compile_contracts(cache_dir=tmp_path)
    assert second.from_cache and second.source_hash == first.source_hash
    assert second["MarginSteward"].bytecode == first["MarginSteward"].bytecode
    # A changed source is a new cache key: copy the sources, change a comment, compile.
    copy = tmp_path / "onchain"
    shutil.copytree(ONCHAIN_DIR / "src", copy / "src")
    shutil.copy(ONCHAIN_DIR / "package-lock.json", copy)
    (copy / "node_modules").symlink_to(ONCHAIN_DIR / "node_modules")
    (copy / "tools").symlink_to(ONCHAIN_DIR / "tools")
    market = copy / "src" / "PerpMarket.sol"
    market.write_text(market.read_text() + "\n// changed\n")
    changed = compile_contracts(cache_dir=tmp_path, onchain_dir=copy)
    assert not changed.from_cache and changed.source_hash != first.source_hash


def test_the_peer_contract_is_read_in_place_and_must_be_unchanged(tmp_path: Path):
    assert default_peers_dir({"DYNAMARGIN_SHARED_PEERS": str(tmp_path)}) == tmp_path
    with pytest.raises(EvmToolchainError, match="DYNAMARGIN_SHARED_PEERS"):
        compile_contracts(peers_dir=tmp_path / "missing", cache_dir=tmp_path)
    edited = tmp_path / RISK_ORACLE_FILE
    edited.parent.mkdir(parents=True)
    edited.write_text((default_peers_dir() / RISK_ORACLE_FILE).read_text() + "\n")
    with pytest.raises(EvmToolchainError, match="not the documented"):
        compile_contracts(peers_dir=tmp_path, cache_dir=tmp_path)
    assert not (ONCHAIN_DIR / "src" / "RiskOracle.sol").exists()  # never copied in


def test_a_v1_consumer_refuses_v2_and_v1_snapshots_still_verify():
    v1_doc, v2_doc = (
        json.loads(next(v["document"] for v in VECTORS["snapshots"] if v["schema"] == s))
        for s in ("dynamargin.risk/1", "dynamargin.risk/2")
    )
    v1_only = jsonschema.Draft202012Validator(json_schema(1))
    assert v1_only.is_valid(v1_doc) and not v1_only.is_valid(v2_doc)
    assert "eip712" in verify_snapshot(v1_doc).checks and verify_snapshot(v1_doc).ok
    assert verify_snapshot(v2_doc).ok
    # The revisions cannot be confused: the v1 digest of a v2 document recovers someone else.
    relabelled = {**v2_doc, "schema": "dynamargin.risk/1"}
    relabelled["signature"] = {**v2_doc["signature"]}
    relabelled["signature"]["eip712"] = {
        k: v for k, v in v2_doc["signature"]["eip712"].items() if k != "domain"
    }
    assert not verify_snapshot(relabelled).ok
    unknown = verify_snapshot({**v2_doc, "schema": "dynamargin.risk/3"})
    assert not unknown.ok and "unknown schema" in unknown.errors[0]


def test_the_domain_comes_from_the_environment():
    domain = configured_domain(
        {
            "DYNAMARGIN_EIP712_CHAIN_ID": "31337",
            "DYNAMARGIN_EIP712_VERIFYING_CONTRACT": "0x" + "ab" * 20,
        }
    )
    assert domain.chain_id == 31337 and domain.version == "2"
    assert domain.verifying_contract == to_checksum_address("0x" + "ab" * 20)
    assert configured_domain({}).chain_id == 1 and V1_DOMAIN.version == "1"
    for bad in (
        {"DYNAMARGIN_EIP712_CHAIN_ID": "0"},
        {"DYNAMARGIN_EIP712_VERIFYING_CONTRACT": "0x12"},
    ):
        with pytest.raises(InvalidInputError):
            configured_domain(bad)
    signer = SnapshotSigner(vector_keys())
    assert signer.domain == configured_domain()  # what the publisher signs under by default
