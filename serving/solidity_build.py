"""Compile the project's Solidity and the peer RiskOracle with the pinned solcjs, cached.

The compiler is solcjs from npm, pinned exactly in ``onchain/package.json`` and its lock
file (``npm ci`` in ``onchain/``, run by ``make install``); OpenZeppelin 5 comes from the same
``node_modules``. Nothing is downloaded at compile time.

Sources
    * ``onchain/src/*.sol``: :data:`PROJECT_SOURCES` (our steward and perp market);
    * the peer ``RiskOracle.sol`` of Chaos Labs, read *in place* from the shared peers folder
      (``DYNAMARGIN_SHARED_PEERS`` or ``../shared/peers``), never copied into the repository.
      Its SHA-256 must equal :data:`RISK_ORACLE_SHA256` (the hash its README records), so the
      interoperability tests always run against the contract the peers folder documents.

Cache
    The standard-JSON output is cached under ``onchain/.build/`` (gitignored;
    ``DYNAMARGIN_SOLC_CACHE`` moves it), keyed by the SHA-256 of the compiler settings, the
    lock file (which pins solc and OpenZeppelin) and every source's name and bytes. An
    unchanged tree skips the compile (about 5 s per contract set on 2 cores).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from contracts.files import atomic_write_bytes
from serving.errors import EvmToolchainError

ONCHAIN_DIR: Final[Path] = Path(__file__).resolve().parents[1] / "onchain"
"""The Solidity and node folder of the repository."""

ENV_PEERS: Final[str] = "DYNAMARGIN_SHARED_PEERS"
ENV_CACHE: Final[str] = "DYNAMARGIN_SOLC_CACHE"

EVM_VERSION: Final[str] = "cancun"
"""OpenZeppelin 5.7 uses ``mcopy``, so cancun is the oldest target that works."""

PROJECT_SOURCES: Final[tuple[str, ...]] = ("src/PerpMarket.sol", "src/MarginSteward.sol")
RISK_ORACLE_FILE: Final[str] = "chaoslabs-risk-oracle/RiskOracle.sol"
RISK_ORACLE_UNIT: Final[str] = "peers/chaoslabs-risk-oracle/RiskOracle.sol"
RISK_ORACLE_SHA256: Final[str] = "29b3f81d0f2a2e06a160c46da090688696cd8e82572f23f45687c3d66bac1271"

_SETTINGS: Final[dict[str, Any]] = {
    "optimizer": {"enabled": True, "runs": 200},
    "evmVersion": EVM_VERSION,
    "outputSelection": {"*": {"*": ["abi", "evm.bytecode.object"]}},
}


def default_peers_dir(environ: Mapping[str, str] | None = None) -> Path:
    """The shared peers folder: ``$DYNAMARGIN_SHARED_PEERS`` or ``../shared/peers``."""
    env = os.environ if environ is None else environ
    if env.get(ENV_PEERS):
        return Path(env[ENV_PEERS])
    return ONCHAIN_DIR.parent.parent / "shared" / "peers"


def default_cache_dir(environ: Mapping[str, str] | None = None) -> Path:
    """Where compiled artifacts are cached: ``$DYNAMARGIN_SOLC_CACHE`` or ``onchain/.build``."""
    env = os.environ if environ is None else environ
    return Path(env[ENV_CACHE]) if env.get(ENV_CACHE) else ONCHAIN_DIR / ".build"


@dataclass(frozen=True)
class CompiledContract:
    """ABI and creation bytecode of one contract."""

    name: str
    abi: list[dict[str, Any]]
    bytecode: str


@dataclass(frozen=True)
class Artifacts:
    """The compiled contracts, by name (``RiskOracle``, ``MarginSteward``, ``PerpMarket``).

    Attributes
    ----------
    source_hash
        The cache key: SHA-256 of settings, lock file and sources.
    from_cache
        True when the compile was skipped.
    """

    contracts: dict[str, CompiledContract]
    source_hash: str
    from_cache: bool

    def __getitem__(self, name: str) -> CompiledContract:
        try:
            return self.contracts[name]
        except KeyError:
            raise EvmToolchainError(
                f"no compiled contract {name!r}; have {sorted(self.contracts)}"
            ) from None


def compile_contracts(
    peers_dir: Path | None = None,
    cache_dir: Path | None = None,
    *,
    onchain_dir: Path = ONCHAIN_DIR,
) -> Artifacts:
    """Compile (or load from the cache) RiskOracle, MarginSteward and PerpMarket.

    Parameters
    ----------
    peers_dir
        The shared peers folder (default :func:`default_peers_dir`).
    cache_dir
        Artifact cache (default :func:`default_cache_dir`).
    onchain_dir
        The folder holding ``package-lock.json``, ``node_modules`` and ``src/``.

    Raises
    ------
    EvmToolchainError
        If the peer contract is missing or changed, node or the npm packages are missing, or
        solc reports an error (its messages are included).
    """
    sources = _sources(peers_dir or default_peers_dir(), onchain_dir)
    lock = _read(onchain_dir / "package-lock.json", "run `npm install` in onchain/ once")
    key = _cache_key(sources, lock)
    cache = (cache_dir or default_cache_dir()) / f"solc-{key}.json"
    if cache.exists():
        try:
            return _artifacts(json.loads(cache.read_text(encoding="utf-8")), key, True)
        except (ValueError, KeyError):
            cache.unlink()  # a torn or foreign file: compile again
    output = _run_solc(sources, onchain_dir)
    artifacts = _artifacts(output, key, False)
    cache.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(cache, json.dumps(output, sort_keys=True).encode("utf-8"))
    return artifacts


def _sources(peers_dir: Path, onchain_dir: Path) -> dict[str, str]:
    oracle_path = peers_dir / RISK_ORACLE_FILE
    oracle = _read(
        oracle_path,
        f"the peer contract is read from the shared peers folder; set {ENV_PEERS} to it",
    )
    digest = hashlib.sha256(oracle.encode("utf-8")).hexdigest()
    if digest != RISK_ORACLE_SHA256:
        raise EvmToolchainError(
            f"{oracle_path} has SHA-256 {digest}, not the documented {RISK_ORACLE_SHA256}; "
            "the peer must be used as published (see the peers README)"
        )
    sources = {RISK_ORACLE_UNIT: oracle}
    for name in PROJECT_SOURCES:
        sources[name] = _read(onchain_dir / name, "the onchain/ folder is incomplete")
    return sources


def _read(path: Path, hint: str) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except OSError as exc:
        raise EvmToolchainError(f"cannot read {path}: {exc.strerror}; {hint}") from exc


def _cache_key(sources: Mapping[str, str], lock: str) -> str:
    digest = hashlib.sha256()
    for part in (json.dumps(_SETTINGS, sort_keys=True), lock, *_flatten(sources)):
        digest.update(hashlib.sha256(part.encode("utf-8")).digest())
    return digest.hexdigest()


def _flatten(sources: Mapping[str, str]) -> list[str]:
    return [item for name in sorted(sources) for item in (name, sources[name])]


def _run_solc(sources: Mapping[str, str], onchain_dir: Path) -> dict[str, Any]:
    node = shutil.which("node")
    if node is None:
        raise EvmToolchainError("node is not on PATH; install Node.js 20 to compile Solidity")
    if not (onchain_dir / "node_modules" / "solc").is_dir():
        raise EvmToolchainError(
            f"{onchain_dir / 'node_modules'} lacks solc; run `make install` (npm ci in onchain/)"
        )
    request = {
        "language": "Solidity",
        "sources": {name: {"content": text} for name, text in sources.items()},
        "settings": _SETTINGS,
    }
    done = subprocess.run(
        [node, str(onchain_dir / "tools" / "compile.mjs")],
        input=json.dumps(request).encode("utf-8"),
        capture_output=True,
        check=False,
        cwd=onchain_dir,
    )
    if done.returncode != 0:
        raise EvmToolchainError(
            f"solcjs failed (exit {done.returncode}): "
            f"{done.stderr.decode(errors='replace')[-2000:]}"
        )
    output = json.loads(done.stdout)
    errors = [e for e in output.get("errors", []) if e.get("severity") == "error"]
    if errors:
        shown = "\n".join(e.get("formattedMessage", e.get("message", "?")) for e in errors[:5])
        raise EvmToolchainError(f"solc reported {len(errors)} error(s):\n{shown}")
    return output


def _artifacts(output: Mapping[str, Any], key: str, from_cache: bool) -> Artifacts:
    contracts: dict[str, CompiledContract] = {}
    for unit in output["contracts"].values():
        for name, compiled in unit.items():
            bytecode = compiled["evm"]["bytecode"]["object"]
            if bytecode:  # interfaces have none
                contracts[name] = CompiledContract(name, compiled["abi"], "0x" + bytecode)
    return Artifacts(contracts, key, from_cache)
