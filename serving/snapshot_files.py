"""Verify snapshot files: one snapshot, a JSON array of them, or JSON lines.

What ``dynamargin snapshots verify`` runs. Files are parsed as strict JSON
(:mod:`serving.strict_json`): a duplicate key, a non-finite number, an oversized integer or
deep nesting makes the file fail with one clear reason, never a crash. A single snapshot
file may also be required to be its canonical bytes (``strict``), which is how a served
``/v1/risk/{asset}`` body verifies as is.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import replace
from pathlib import Path
from typing import Any

from serving import strict_json
from serving.errors import SnapshotError
from serving.signing import VerificationResult, verify_snapshot, verify_snapshot_bytes
from serving.standard import canonical_json


class SnapshotFileError(SnapshotError):
    """A snapshot file cannot be read or holds no snapshot; the message names the file."""


def verify_snapshot_file(
    path: Path,
    *,
    strict: bool = False,
    trusted_public_keys: Collection[str] | None = None,
    trusted_signers: Collection[str] | None = None,
) -> list[VerificationResult]:
    """Verify every snapshot in ``path``.

    Parameters
    ----------
    path
        A snapshot JSON file, a JSON array of snapshots, or JSON lines.
    strict
        Require a single snapshot file to be exactly its canonical JSON bytes.
    trusted_public_keys, trusted_signers
        Pinned Ed25519 keys and EIP-712 addresses (see
        :func:`serving.signing.verify_snapshot`).

    Returns
    -------
    list of VerificationResult
        One per snapshot, in file order.

    Raises
    ------
    SnapshotFileError
        If the file cannot be read, is not strict JSON (nor JSON lines), or holds no
        snapshot objects.
    """
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise SnapshotFileError(f"cannot read {path}: {exc}") from exc
    pins: dict[str, Any] = {
        "trusted_public_keys": trusted_public_keys or None,
        "trusted_signers": trusted_signers or None,
    }
    document = _parse(raw, path)
    if isinstance(document, dict):
        if strict:
            return [verify_snapshot_bytes(raw, **pins)]
        result = verify_snapshot(document, **pins)
        if canonical_json(document) != raw.strip():
            result = replace(
                result,
                extra={**result.extra, "note": "file is not canonical JSON (content verified)"},
            )
        return [result]
    if isinstance(document, list) and document and all(isinstance(d, dict) for d in document):
        return [verify_snapshot(d, **pins) for d in document]
    raise SnapshotFileError(f"{path} holds neither a snapshot object nor a list of them")


def _parse(raw: bytes, path: Path) -> Any:
    try:
        return strict_json.loads(raw, what=str(path))
    except strict_json.StrictJsonError as whole:
        lines = [line for line in raw.splitlines() if line.strip()]
        if len(lines) < 2:
            raise SnapshotFileError(str(whole)) from None
        try:
            return [
                strict_json.loads(line, what=f"{path} line {number}")
                for number, line in enumerate(lines, start=1)
            ]
        except strict_json.StrictJsonError as exc:
            raise SnapshotFileError(f"{whole}; read as JSON lines: {exc}") from None
