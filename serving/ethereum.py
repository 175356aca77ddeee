"""The eth-account API the project uses, imported with the recursion limit left alone.

Importing ``eth_account`` pulls in ``py_ecc``, which raises the interpreter's recursion
limit to 100000 at import time. With that limit a deeply nested JSON document (or any
deep recursion) overflows the C stack and kills the process with a segfault instead of
raising :class:`RecursionError`. Everything in :mod:`serving` imports the Ethereum names
from here, so the limit is put back the moment the import is done.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager

_LIMIT = sys.getrecursionlimit()
try:
    from eth_abi import decode as abi_decode
    from eth_abi import encode as abi_encode
    from eth_account import Account
    from eth_account.messages import encode_typed_data
    from eth_account.signers.local import LocalAccount
    from eth_utils import is_checksum_address, keccak, to_checksum_address
finally:
    if sys.getrecursionlimit() > _LIMIT:
        sys.setrecursionlimit(_LIMIT)


@contextmanager
def preserved_recursion_limit() -> Iterator[None]:
    """Put the recursion limit back after importing something that pulls in ``py_ecc``
    (web3, eth-tester): the same guard as this module's own imports."""
    limit = sys.getrecursionlimit()
    try:
        yield
    finally:
        if sys.getrecursionlimit() > limit:
            sys.setrecursionlimit(limit)


__all__ = [
    "Account",
    "LocalAccount",
    "abi_decode",
    "abi_encode",
    "encode_typed_data",
    "is_checksum_address",
    "keccak",
    "preserved_recursion_limit",
    "to_checksum_address",
]
