"""Signing keys: generated on first use with mode 0600, or loaded from a path or env var.

Resolution, for each of the two keys (Ed25519 and the secp256k1 key of EIP-712):

1. ``DYNAMARGIN_ED25519_KEY`` / ``DYNAMARGIN_EIP712_KEY``: the private key as hex (32 bytes);
2. ``DYNAMARGIN_ED25519_KEY_PATH`` / ``DYNAMARGIN_EIP712_KEY_PATH``: a key file;
3. ``DYNAMARGIN_SIGNING_KEY_PATH``: a directory holding ``ed25519.pem`` and ``eip712.key``
   (operator-managed: a missing file there is an error, never silently generated);
4. ``<workdir>/keys/``: the default, where missing keys are generated (directory 0700,
   files 0600, created exclusively so two processes never overwrite each other's key).

A key file readable by group or others is refused, as ssh does. :class:`SigningKeys`
never shows private material in ``repr`` and refuses to be pickled, so it cannot leak into
logs, snapshots or MLflow artifacts by accident.

Public material
---------------
Whenever :func:`load_signing_keys` resolves the keys with ``create=True`` (the publisher),
it also writes their public halves into the key directory (``$DYNAMARGIN_SIGNING_KEY_PATH``
or ``<workdir>/keys/``), atomically and mode 0644, if they are missing or stale:

* ``ed25519.pub``: the raw 32-byte Ed25519 public key, lowercase hex;
* ``eip712.address``: the checksummed address of the EIP-712 signer.

:func:`load_public_keys` (the API) reads only those two files, so the serving process never
needs read access to a private key: point its ``$DYNAMARGIN_SIGNING_KEY_PATH`` at a
directory holding just the two public files. The default key directory is 0700, so an API
running as another OS user needs such a copy (or the directory made 0711; the private
files stay 0600). A key directory from before these files existed is upgraded once by
:func:`load_public_keys` when it can still read the private keys.
"""

from __future__ import annotations

import logging
import os
import stat
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from contracts.files import atomic_write_bytes
from serving.errors import SigningKeyError
from serving.ethereum import Account, LocalAccount, is_checksum_address

ED25519_FILE = "ed25519.pem"
EIP712_FILE = "eip712.key"
ENV_KEY_DIR = "DYNAMARGIN_SIGNING_KEY_PATH"
ENV_ED25519 = "DYNAMARGIN_ED25519_KEY"
ENV_ED25519_PATH = "DYNAMARGIN_ED25519_KEY_PATH"
ENV_EIP712 = "DYNAMARGIN_EIP712_KEY"
ENV_EIP712_PATH = "DYNAMARGIN_EIP712_KEY_PATH"
ED25519_PUBLIC_FILE = "ed25519.pub"
EIP712_ADDRESS_FILE = "eip712.address"

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class PublicKeys:
    """The public halves of the signing keys: what verifiers pin.

    Attributes
    ----------
    ed25519_public_hex
        Raw 32-byte Ed25519 public key, lowercase hex.
    eip712_address
        Checksummed Ethereum address of the EIP-712 signer.
    source
        Where they were read from (a directory, or the private keys they were derived from).
    """

    ed25519_public_hex: str
    eip712_address: str
    source: str = ""


@dataclass(frozen=True, repr=False)
class SigningKeys:
    """The publisher's two private keys; only public parts are ever shown.

    Attributes
    ----------
    ed25519
        Ed25519 private key.
    eth_private_key
        32-byte secp256k1 private key for EIP-712 signatures.
    source
        Where the keys came from (paths or env var names, never values).
    """

    ed25519: Ed25519PrivateKey
    eth_private_key: bytes = field(repr=False)
    source: str = ""

    @property
    def ed25519_public_hex(self) -> str:
        """Raw 32-byte Ed25519 public key, lowercase hex."""
        raw = self.ed25519.public_key().public_bytes(
            serialization.Encoding.Raw, serialization.PublicFormat.Raw
        )
        return raw.hex()

    @cached_property
    def eth_account(self) -> LocalAccount:
        """The EIP-712 signing account (derived once: key derivation is slow in pure Python)."""
        return Account.from_key(self.eth_private_key)

    @property
    def eip712_address(self) -> str:
        """Checksummed Ethereum address of the EIP-712 signer."""
        return self.eth_account.address

    def __repr__(self) -> str:
        return (
            f"SigningKeys(ed25519_public={self.ed25519_public_hex}, "
            f"eip712_signer={self.eip712_address}, source={self.source!r})"
        )

    def __reduce__(self) -> tuple[object, ...]:
        raise TypeError("SigningKeys must not be pickled or serialised (private key material)")

    def public_keys(self) -> PublicKeys:
        """The public halves only (safe to log, serve and write anywhere)."""
        return PublicKeys(self.ed25519_public_hex, self.eip712_address, source=self.source)


def load_signing_keys(
    workdir: Path, environ: Mapping[str, str] | None = None, create: bool = True
) -> SigningKeys:
    """Resolve both signing keys (see the module docstring for the order).

    Parameters
    ----------
    workdir
        dynamargin work dir; default keys live in ``<workdir>/keys/``.
    environ
        Environment to read (``os.environ`` by default).
    create
        Generate missing keys in the default directory, and write (or refresh) the public
        files ``ed25519.pub`` / ``eip712.address`` in the key directory.

    Raises
    ------
    SigningKeyError
        If a key is malformed, missing where configured, or has unsafe permissions.
    """
    env = os.environ if environ is None else environ
    key_dir = _key_dir(workdir, env)
    may_create = create and not env.get(ENV_KEY_DIR)

    ed_key, ed_source = _resolve(
        env, ENV_ED25519, ENV_ED25519_PATH, key_dir / ED25519_FILE, may_create, "ed25519"
    )
    eth_key, eth_source = _resolve(
        env, ENV_EIP712, ENV_EIP712_PATH, key_dir / EIP712_FILE, may_create, "eip712"
    )
    keys = SigningKeys(ed25519=ed_key, eth_private_key=eth_key, source=f"{ed_source}, {eth_source}")
    if create and key_dir.is_dir():
        _publish_public_keys(key_dir, keys.public_keys())
    return keys


def load_public_keys(workdir: Path, environ: Mapping[str, str] | None = None) -> PublicKeys:
    """Read the public keys from ``ed25519.pub`` and ``eip712.address`` in the key dir.

    The key directory is ``$DYNAMARGIN_SIGNING_KEY_PATH`` or ``<workdir>/keys/``. Private
    keys are read only when the public files are absent (a key directory written before
    they existed): they are then derived, written once, and returned.

    Parameters
    ----------
    workdir
        dynamargin work dir.
    environ
        Environment to read (``os.environ`` by default).

    Raises
    ------
    SigningKeyError
        If the public files are malformed, or absent with no readable private keys to
        derive them from (run ``dynamargin publish`` once, or copy the two files in).
    """
    env = os.environ if environ is None else environ
    key_dir = _key_dir(workdir, env)
    ed_path, eth_path = key_dir / ED25519_PUBLIC_FILE, key_dir / EIP712_ADDRESS_FILE
    if ed_path.exists() or eth_path.exists():
        return PublicKeys(
            ed25519_public_hex=_read_public_ed25519(ed_path),
            eip712_address=_read_address(eth_path),
            source=str(key_dir),
        )
    try:
        derived = load_signing_keys(workdir, environ=env, create=False).public_keys()
    except SigningKeyError as exc:
        raise SigningKeyError(
            f"no public keys in {key_dir} ({ED25519_PUBLIC_FILE}, {EIP712_ADDRESS_FILE}) and "
            f"they cannot be derived: {exc}. Run `dynamargin publish` once (it writes them), "
            "or copy the two public files there."
        ) from exc
    if key_dir.is_dir():
        _publish_public_keys(key_dir, derived)
    return derived


def _key_dir(workdir: Path, env: Mapping[str, str]) -> Path:
    explicit_dir = env.get(ENV_KEY_DIR)
    return Path(explicit_dir) if explicit_dir else Path(workdir) / "keys"


def _publish_public_keys(key_dir: Path, public: PublicKeys) -> None:
    """Write the public files when missing or stale (the private keys are the truth)."""
    wanted = {
        key_dir / ED25519_PUBLIC_FILE: public.ed25519_public_hex + "\n",
        key_dir / EIP712_ADDRESS_FILE: public.eip712_address + "\n",
    }
    for path, content in wanted.items():
        try:
            if path.is_file() and path.read_text(encoding="ascii") == content:
                continue
            atomic_write_bytes(path, content.encode("ascii"), mode=0o644, durable=True)
        except OSError as exc:
            # The keys still sign; only the API's copy of the public half is missing.
            # Logged rather than raised so a read-only operator key dir keeps working.
            logger.warning(
                "cannot write public key file %s: %s; the API's /v1/keys needs it, copy "
                "it there by hand or make %s writable",
                path,
                exc,
                key_dir,
            )


def _read_public_ed25519(path: Path) -> str:
    text = _read_public_file(path)
    try:
        raw = bytes.fromhex(text.removeprefix("0x"))
        Ed25519PublicKey.from_public_bytes(raw)
    except ValueError as exc:
        raise SigningKeyError(
            f"{path} is not a 32-byte Ed25519 public key in hex; delete it and run "
            "`dynamargin publish` to rewrite it"
        ) from exc
    return raw.hex()


def _read_address(path: Path) -> str:
    text = _read_public_file(path)
    if not is_checksum_address(text):
        raise SigningKeyError(
            f"{path} does not hold a checksummed Ethereum address (got {text[:60]!r}); "
            "delete it and run `dynamargin publish` to rewrite it"
        )
    return text


def _read_public_file(path: Path) -> str:
    try:
        return path.read_text(encoding="ascii").strip()
    except (OSError, UnicodeDecodeError) as exc:
        raise SigningKeyError(
            f"public key file {path} cannot be read: {exc}; run `dynamargin publish` once "
            "to write it, or copy it from the publisher's key directory"
        ) from exc


def _resolve(
    env: Mapping[str, str],
    value_var: str,
    path_var: str,
    default_path: Path,
    may_create: bool,
    kind: str,
) -> tuple[object, str]:
    if env.get(value_var):
        return _parse_hex_key(env[value_var], kind, f"${value_var}"), f"${value_var}"
    if env.get(path_var):
        path = Path(env[path_var])
        return _read_key_file(path, kind), str(path)
    if not default_path.exists():
        if not may_create:
            raise SigningKeyError(
                f"{kind} signing key not found at {default_path}; create it or point "
                f"{path_var} / {value_var} at the key"
            )
        _generate(default_path, kind)
    return _read_key_file(default_path, kind), str(default_path)


def _generate(path: Path, kind: str) -> None:
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    if kind == "ed25519":
        data = Ed25519PrivateKey.generate().private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    else:
        data = (bytes(Account.create().key).hex() + "\n").encode("ascii")
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return  # another process generated it first; use theirs
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())


def _read_key_file(path: Path, kind: str) -> object:
    try:
        mode = path.stat().st_mode
    except OSError as exc:
        raise SigningKeyError(f"{kind} signing key {path} cannot be read: {exc}") from exc
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise SigningKeyError(
            f"{kind} signing key {path} is accessible by group or others "
            f"(mode {stat.S_IMODE(mode):o}); run `chmod 600 {path}`"
        )
    data = path.read_bytes()
    if kind == "ed25519" and data.lstrip().startswith(b"-----BEGIN"):
        try:
            key = serialization.load_pem_private_key(data, password=None)
        except ValueError as exc:
            raise SigningKeyError(f"{path} is not an unencrypted PEM private key") from exc
        if not isinstance(key, Ed25519PrivateKey):
            raise SigningKeyError(f"{path} holds a {type(key).__name__}, not an Ed25519 key")
        return key
    return _parse_hex_key(data.decode("ascii", errors="replace").strip(), kind, str(path))


def _parse_hex_key(text: str, kind: str, where: str) -> object:
    try:
        raw = bytes.fromhex(text.strip().removeprefix("0x"))
    except ValueError:
        raw = b""
    if len(raw) != 32:
        # Never echo the value: it may be a private key with a typo.
        raise SigningKeyError(f"{kind} key from {where} is not 32 bytes of hex")
    if kind == "ed25519":
        return Ed25519PrivateKey.from_private_bytes(raw)
    return raw
