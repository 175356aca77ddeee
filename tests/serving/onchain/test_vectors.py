"""The spec's test vectors pass in Python, Solidity (the steward) and JavaScript (node)."""

from __future__ import annotations

import hashlib
import json
import math
import random
import shutil
import struct
import subprocess

import pytest

from serving import strict_json
from serving.evm_chain import in_process_chain
from serving.oracle_encoding import decode_envelope, decode_value, oracle_records
from serving.signing import verify_snapshot_bytes
from serving.solidity_build import ONCHAIN_DIR, Artifacts
from serving.standard import canonical_json
from serving.standard_vectors import VECTORS_PATH, vector_keys, vectors_text
from serving.steward_deployment import relay_arguments
from tests.serving.onchain.conftest import PUBLISHED_AT

VECTORS = json.loads(VECTORS_PATH.read_text(encoding="ascii"))
NODE = shutil.which("node")


def test_the_committed_vectors_are_what_the_code_produces():
    # A change to the canonical form, a hash, a signature or the encoding fails here first.
    assert VECTORS_PATH.read_text(encoding="ascii") == vectors_text(), (
        "spec/risk-snapshot/vectors.json differs from serving.standard_vectors.build_vectors(): "
        "a change of the standard needs a new revision, not new vectors"
    )


@pytest.mark.parametrize("case", VECTORS["canonical"], ids=lambda c: c["name"])
def test_canonical_vectors_in_python(case):
    out = canonical_json(strict_json.loads(case["input"]))
    assert out.decode("ascii") == case["canonical"]
    assert hashlib.sha256(out).hexdigest() == case["sha256"]


@pytest.mark.parametrize("vector", VECTORS["snapshots"], ids=lambda v: v["name"])
def test_snapshot_vectors_in_python(vector):
    raw = vector["document"].encode("ascii")
    result = verify_snapshot_bytes(
        raw,
        trusted_public_keys=[VECTORS["keys"]["ed25519_public_key"]],
        trusted_signers=[VECTORS["keys"]["eip712_signer"]],
    )
    assert result.ok, result.errors
    document = strict_json.loads(raw)
    assert document["provenance"]["reference_id"] == vector["reference_id"]
    if document["schema"] == "dynamargin.risk/2":
        records = oracle_records(document)
        assert [
            {
                "updateType": r.update_type,
                "market": "0x" + r.market.hex(),
                "newValue": "0x" + r.new_value.hex(),
                "referenceId": r.reference_id,
                "additionalData": "0x" + r.additional_data.hex(),
            }
            for r in records
        ] == vector["risk_oracle"]
        envelope = decode_envelope(records[0].additional_data)
        assert envelope.update_id == document["update_id"]
        assert "0x" + envelope.signature.hex() == vector["eip712"]["signature"]


def test_vectors_in_javascript_with_noble_curves():
    assert NODE is not None, "node is not on PATH; the toolchain needs Node.js 20"
    done = subprocess.run(
        [NODE, "verifier/verify_vectors.mjs", str(VECTORS_PATH)],
        cwd=ONCHAIN_DIR,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    summary = done.stdout.strip().splitlines()[-1]
    passed, failed = (int(part.split()[0]) for part in summary.split(", "))
    assert failed == 0 and passed >= 80, summary


def test_the_javascript_float_format_equals_pythons_on_random_doubles():
    assert NODE is not None, "node is not on PATH; the toolchain needs Node.js 20"
    rng = random.Random(18)
    values = []
    while len(values) < 4000:
        x = struct.unpack("<d", rng.getrandbits(64).to_bytes(8, "little"))[0]
        if math.isfinite(x) and x != 0:
            values.append(x)
    values += [rng.uniform(0, 10) * 10 ** rng.randint(-20, 20) for _ in range(2000)]
    script = (
        "import('./verifier/canonical.mjs').then(m => {"
        "const xs = JSON.parse(require('fs').readFileSync(0, 'utf8'));"
        "process.stdout.write(JSON.stringify(xs.map(r => m.formatG12(Number(r)))));})"
    )
    done = subprocess.run(
        [NODE, "-e", script],
        cwd=ONCHAIN_DIR,
        input=json.dumps([repr(x) for x in values]),
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    assert json.loads(done.stdout) == [format(x, ".12g") for x in values]


def test_vectors_in_solidity(artifacts: Artifacts):
    # The steward's own hashing and decoding code, run on the EVM against every v2 vector.
    chain = in_process_chain(int(PUBLISHED_AT.timestamp()))
    steward, _ = chain.deploy(
        artifacts["MarginSteward"],
        "0x" + "00" * 20,
        "0x" + "00" * 20,
        [vector_keys().eip712_address],
        3600,
    )
    checked = 0
    for vector in VECTORS["snapshots"]:
        if vector["schema"] != "dynamargin.risk/2":
            continue
        document = json.loads(vector["document"])
        parameters, domain, signature = relay_arguments(document)
        eip = vector["eip712"]
        assert "0x" + steward.functions.RISK_PARAMETERS_TYPEHASH().call().hex() == eip["typeHash"]
        separator = steward.functions.domainSeparatorFor(
            domain.chain_id, domain.verifying_contract
        ).call()
        assert "0x" + separator.hex() == eip["domainSeparator"]
        assert (
            "0x" + steward.functions.hashRiskParameters(parameters).call().hex()
            == eip["structHash"]
        )
        digest = steward.functions.digestFor(
            parameters, domain.chain_id, domain.verifying_contract
        ).call()
        assert "0x" + digest.hex() == eip["digest"]
        signer = steward.functions.recoverSigner(
            parameters, domain.chain_id, domain.verifying_contract, signature
        ).call()
        assert signer == eip["signer"] == VECTORS["keys"]["eip712_signer"]
        for record in vector["risk_oracle"]:
            raw = bytes.fromhex(record["newValue"][2:])
            assert steward.functions.decodeValue(raw).call() == decode_value(raw)
        checked += 1
    assert checked == 2
