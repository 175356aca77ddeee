"""Hostile JSON: deep nesting, duplicate keys, huge integers and booleans posing as numbers."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from serving.signing import verify_snapshot_bytes
from tests.serving.security.conftest import Seeded, invoke


def signed_snapshot(seeded: Seeded) -> bytes:
    from serving.store import PublicationStore

    with PublicationStore(seeded.url) as store:
        return store.latest("BTCUSDT").raw.encode()


def run_cli_subprocess(workdir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            sys.executable,
            "-c",
            "from pipelines.cli import app; app()",
            "--workdir",
            str(workdir),
            *args,
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_importing_the_signing_stack_keeps_the_recursion_limit() -> None:
    code = (
        "import sys; before = sys.getrecursionlimit(); "
        "import serving.signing, serving.keys, serving.api; "
        "print(before, sys.getrecursionlimit())"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    before, after = out.stdout.split()
    assert before == after


@pytest.mark.parametrize("opening", [b"[" * 100_000, b'{"a":' * 50_000])
def test_snapshots_verify_refuses_deep_nesting_with_one_line(
    seeded: Seeded, tmp_path: Path, opening: bytes
) -> None:
    path = tmp_path / "deep.json"
    path.write_bytes(opening)
    result = run_cli_subprocess(seeded.workdir, "snapshots", "verify", str(path))
    assert result.returncode == 1, (result.returncode, result.stderr[-500:])
    assert "Traceback" not in result.stderr
    assert "nest" in (result.stdout + result.stderr).lower()


def test_snapshots_verify_refuses_a_5000_digit_integer_with_one_line(
    seeded: Seeded, tmp_path: Path
) -> None:
    document = json.loads(signed_snapshot(seeded))
    text = json.dumps(document).replace(
        f'"update_id": {document["update_id"]}', '"update_id": ' + "9" * 5000
    )
    path = tmp_path / "huge.json"
    path.write_text(text)
    result = invoke(seeded, "snapshots", "verify", str(path))
    assert result.exit_code == 1
    assert "Traceback" not in result.output
    assert "digits" in result.output


def _duplicate_multiplier(raw: bytes, forged: str) -> bytes:
    # The forged value first, the signed one last: Python's json keeps the last, another
    # parser may keep the first. Both readers must see the same number, or no number.
    return raw.replace(b'"margin":{', b'"margin":{"multiplier":' + forged.encode() + b",", 1)


def test_a_duplicate_key_makes_a_signed_snapshot_fail_verification(
    seeded: Seeded, tmp_path: Path
) -> None:
    tampered = _duplicate_multiplier(signed_snapshot(seeded), "0.5")
    assert json.loads(tampered)["margin"]["multiplier"] != 0.5  # python keeps the last
    result = verify_snapshot_bytes(tampered)
    assert not result.ok
    assert any("duplicate" in error for error in result.errors)
    path = tmp_path / "dup.json"
    path.write_bytes(tampered)
    cli_result = invoke(seeded, "snapshots", "verify", str(path))
    assert cli_result.exit_code == 1
    assert "duplicate" in cli_result.output


@pytest.mark.anyio
@pytest.mark.parametrize(
    "body",
    [
        {"multiplier": True, "reason": "a boolean is not a number"},
        {"multiplier": "1.5", "reason": "a string is not a number"},
    ],
)
async def test_override_refuses_a_boolean_or_string_multiplier(
    api: httpx.AsyncClient, seeded: Seeded, body: dict
) -> None:
    response = await api.post("/v1/admin/assets/BTCUSDT/override", json=body, headers=seeded.auth)
    assert response.status_code == 422, response.text
    assert response.headers["content-type"] == "application/problem+json"


@pytest.mark.anyio
async def test_admin_bodies_with_duplicate_keys_are_refused(
    api: httpx.AsyncClient, seeded: Seeded
) -> None:
    response = await api.post(
        "/v1/admin/assets/BTCUSDT/override",
        content=b'{"multiplier": 2.5, "reason": "dup key test", "multiplier": 1.0}',
        headers={"Content-Type": "application/json", **seeded.auth},
    )
    assert response.status_code == 422, response.text
    assert "duplicate" in response.json()["detail"]
