"""Public key files beside the private keys, and reading them without any private key."""

from __future__ import annotations

import logging
import stat
import tempfile
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from serving.errors import SigningKeyError
from serving.ethereum import Account
from serving.keys import (
    ED25519_FILE,
    ED25519_PUBLIC_FILE,
    EIP712_ADDRESS_FILE,
    EIP712_FILE,
    ENV_ED25519,
    ENV_EIP712,
    ENV_KEY_DIR,
    PublicKeys,
    load_public_keys,
    load_signing_keys,
)
from serving.signing import SnapshotSigner, verify_snapshot
from tests.serving.test_standard_signing import unsigned

SECP256K1_ORDER = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141


def mode_of(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def drop_private_keys(key_dir: Path) -> None:
    for name in (ED25519_FILE, EIP712_FILE):
        (key_dir / name).unlink()


def test_generated_keys_come_with_world_readable_public_files(tmp_path: Path) -> None:
    keys = load_signing_keys(tmp_path, environ={})
    key_dir = tmp_path / "keys"
    assert (key_dir / ED25519_PUBLIC_FILE).read_text() == keys.ed25519_public_hex + "\n"
    assert (key_dir / EIP712_ADDRESS_FILE).read_text() == keys.eip712_address + "\n"
    assert mode_of(key_dir / ED25519_PUBLIC_FILE) == 0o644
    assert mode_of(key_dir / EIP712_ADDRESS_FILE) == 0o644
    assert mode_of(key_dir / ED25519_FILE) == mode_of(key_dir / EIP712_FILE) == 0o600
    assert mode_of(key_dir) == 0o700
    # Atomic writes leave no temp file behind.
    assert sorted(p.name for p in key_dir.iterdir()) == sorted(
        [ED25519_FILE, EIP712_FILE, ED25519_PUBLIC_FILE, EIP712_ADDRESS_FILE]
    )


def test_public_keys_load_without_the_private_files(tmp_path: Path) -> None:
    keys = load_signing_keys(tmp_path, environ={})
    drop_private_keys(tmp_path / "keys")
    public = load_public_keys(tmp_path, environ={})
    assert public == PublicKeys(
        keys.ed25519_public_hex, keys.eip712_address, source=str(tmp_path / "keys")
    )


def test_public_keys_verify_what_the_private_keys_signed(tmp_path: Path) -> None:
    signed = SnapshotSigner(load_signing_keys(tmp_path, environ={})).sign(unsigned()).to_dict()
    drop_private_keys(tmp_path / "keys")
    public = load_public_keys(tmp_path, environ={})
    result = verify_snapshot(
        signed,
        trusted_public_keys=[public.ed25519_public_hex],
        trusted_signers=[public.eip712_address],
    )
    assert result.ok, result.errors


def test_an_older_key_dir_is_upgraded_once(tmp_path: Path) -> None:
    keys = load_signing_keys(tmp_path, environ={})
    key_dir = tmp_path / "keys"
    for name in (ED25519_PUBLIC_FILE, EIP712_ADDRESS_FILE):
        (key_dir / name).unlink()
    public = load_public_keys(tmp_path, environ={})
    assert (public.ed25519_public_hex, public.eip712_address) == (
        keys.ed25519_public_hex,
        keys.eip712_address,
    )
    assert (key_dir / EIP712_ADDRESS_FILE).read_text() == keys.eip712_address + "\n"
    assert mode_of(key_dir / ED25519_PUBLIC_FILE) == 0o644
    drop_private_keys(key_dir)
    assert load_public_keys(tmp_path, environ={}).eip712_address == keys.eip712_address


def test_no_keys_at_all_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(SigningKeyError, match="dynamargin publish") as excinfo:
        load_public_keys(tmp_path, environ={})
    assert str(tmp_path / "keys") in str(excinfo.value)
    assert not (tmp_path / "keys").exists()  # reading never generates keys


def test_malformed_public_files_are_refused_by_name(tmp_path: Path) -> None:
    load_signing_keys(tmp_path, environ={})
    key_dir = tmp_path / "keys"
    (key_dir / ED25519_PUBLIC_FILE).write_text("abcd\n")
    with pytest.raises(SigningKeyError, match=ED25519_PUBLIC_FILE):
        load_public_keys(tmp_path, environ={})
    load_signing_keys(tmp_path, environ={})  # the publisher rewrites the stale file
    (key_dir / EIP712_ADDRESS_FILE).write_text("0xabc\n")
    with pytest.raises(SigningKeyError, match="checksummed"):
        load_public_keys(tmp_path, environ={})
    (key_dir / EIP712_ADDRESS_FILE).unlink()
    with pytest.raises(SigningKeyError, match=EIP712_ADDRESS_FILE):
        load_public_keys(tmp_path, environ={})  # one file present: no silent re-derivation


def test_publisher_refreshes_stale_public_files_from_the_keys_that_sign(tmp_path: Path) -> None:
    load_signing_keys(tmp_path, environ={})
    env = {ENV_ED25519: "01" * 32, ENV_EIP712: "02" * 32}
    keys = load_signing_keys(tmp_path, environ=env)
    public = load_public_keys(tmp_path, environ={})
    assert public.eip712_address == Account.from_key(bytes.fromhex("02" * 32)).address
    assert public.ed25519_public_hex == keys.ed25519_public_hex


def test_api_key_dir_may_hold_only_the_public_files(tmp_path: Path) -> None:
    keys = load_signing_keys(tmp_path / "publisher", environ={})
    public_only = tmp_path / "api-keys"
    public_only.mkdir()
    for name in (ED25519_PUBLIC_FILE, EIP712_ADDRESS_FILE):
        (public_only / name).write_bytes((tmp_path / "publisher" / "keys" / name).read_bytes())
    public = load_public_keys(tmp_path / "api", environ={ENV_KEY_DIR: str(public_only)})
    assert public.eip712_address == keys.eip712_address
    assert public.source == str(public_only)


def test_unwritable_key_dir_is_logged_not_fatal(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    # Root ignores directory permissions, so simulate the refused write instead.
    def refuse(*_args: object, **_kwargs: object) -> None:
        raise PermissionError("read-only file system")

    monkeypatch.setattr("serving.keys.atomic_write_bytes", refuse)
    with caplog.at_level(logging.WARNING, logger="serving.keys"):
        keys = load_signing_keys(tmp_path, environ={})
    assert keys.eip712_address.startswith("0x")
    assert "cannot write public key file" in caplog.text
    assert keys.eth_private_key.hex() not in caplog.text


def test_public_material_never_contains_private_material(tmp_path: Path) -> None:
    keys = load_signing_keys(tmp_path, environ={})
    secret = keys.eth_private_key.hex()
    pem_body = (tmp_path / "keys" / ED25519_FILE).read_text().splitlines()[1]
    public = load_public_keys(tmp_path, environ={})
    for text in (
        repr(public),
        repr(keys.public_keys()),
        (tmp_path / "keys" / ED25519_PUBLIC_FILE).read_text(),
        (tmp_path / "keys" / EIP712_ADDRESS_FILE).read_text(),
    ):
        assert secret not in text and pem_body not in text


@settings(max_examples=25, deadline=None)
@given(
    ed_seed=st.binary(min_size=32, max_size=32),
    eth_scalar=st.integers(min_value=1, max_value=SECP256K1_ORDER - 1),
)
def test_public_files_round_trip_any_key_pair(ed_seed: bytes, eth_scalar: int) -> None:
    eth_hex = eth_scalar.to_bytes(32, "big").hex()
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        (workdir / "keys").mkdir()
        env = {ENV_ED25519: ed_seed.hex(), ENV_EIP712: eth_hex}
        keys = load_signing_keys(workdir, environ=env)
        public = load_public_keys(workdir, environ={})
    assert public.ed25519_public_hex == keys.ed25519_public_hex
    assert public.eip712_address == keys.eip712_address
    assert len(public.ed25519_public_hex) == 64
