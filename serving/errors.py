"""Exception types of the serving layer.

Every message names the asset, time, file or row involved and says what to do, so an
operator reading a log line can act without opening the code.
"""

from __future__ import annotations


class ServingError(Exception):
    """Base class of every error raised by :mod:`serving`."""


class PolicyConfigError(ServingError, ValueError):
    """A multiplier-policy configuration is inconsistent or cannot be read."""


class OperatorActionError(ServingError, ValueError):
    """An operator halt or override was rejected (e.g. an override above the cap)."""


class LiquidityDataError(ServingError, ValueError):
    """Bars cannot support a liquidity estimate (missing columns, too few bars)."""


class SnapshotError(ServingError, ValueError):
    """A RiskSnapshot cannot be built, parsed or canonicalised."""


class SigningKeyError(ServingError):
    """A signing key is missing, malformed or stored with unsafe permissions."""


class InvalidInputError(ServingError, ValueError):
    """A value typed by an operator or sent by a client is malformed.

    Attributes
    ----------
    field
        The parameter, option or body member that was wrong.
    """

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


class UnpublishedAssetError(ServingError, LookupError):
    """An operator or client named an asset this store has never published."""

    def __init__(self, asset: str, known: list[str]) -> None:
        shown = ", ".join(known[:20]) or "none yet"
        super().__init__(
            f"no snapshot has ever been published for asset {asset!r} in this store; "
            f"known assets: {shown}"
        )
        self.asset = asset
        self.known = known


class PublicationStoreError(ServingError):
    """The publication store rejected an operation or cannot be opened."""


class StoreNotInitialisedError(PublicationStoreError):
    """The store was opened without ``create`` and its schema does not exist (yet)."""


class StoreReadOnlyError(PublicationStoreError):
    """A write reached a store opened read-only (``mode=ro``, a read-only database role,
    or a read-only or immutable file)."""


class StoreBusyError(PublicationStoreError):
    """Another connection holds the store's write lock longer than this writer waits."""


class StoreIdentityError(PublicationStoreError):
    """The store's file was deleted or replaced (or its schema recreated) since it was
    opened; nothing more is read from or written to the old handle."""


class StoreModeError(PublicationStoreError):
    """A live publisher opened a replay store, or the other way round."""


class IntegrityFailure(PublicationStoreError):
    """Stored rows do not verify: a hash chain is broken, a signature fails, or a signed
    checkpoint no longer matches the rows it covers.

    Attributes
    ----------
    asset
        The asset whose rows fail, or ``None`` when the failure is store-wide (batches,
        checkpoints, store metadata).
    problems
        One sentence per failed check.
    """

    def __init__(self, asset: str | None, problems: list[str]) -> None:
        where = f"asset {asset}" if asset else "the store"
        shown = "; ".join(problems[:3]) + (
            f" (+{len(problems) - 3} more)" if len(problems) > 3 else ""
        )
        super().__init__(
            f"integrity failure for {where}: {shown}. Run `dynamargin snapshots audit` and "
            "restore the store from a verified copy"
        )
        self.asset = asset
        self.problems = problems


class UpdateIdConflictError(PublicationStoreError):
    """An ``update_id`` did not strictly increase for its asset; the batch was rolled back."""


class AppendOnlyViolationError(PublicationStoreError):
    """An UPDATE or DELETE reached the append-only publication store and was refused."""


class AdminKeyFileError(ServingError, ValueError):
    """An admin key hash (file line or env entry) is malformed."""


class PublishError(ServingError):
    """A publication batch failed; nothing of it was written and the previous batch stays."""


class EvmToolchainError(ServingError):
    """The Solidity toolchain (node, solcjs, the npm packages, a peer contract) cannot build."""


class OracleEncodingError(ServingError, ValueError):
    """A snapshot cannot be encoded for the RiskOracle, or an on-chain record cannot be decoded."""


class OraclePushError(ServingError):
    """Publishing snapshots to a RiskOracle failed; the message says which chunk and why."""


class ContractRevert(ServingError):
    """A contract call or transaction reverted; the message is the contract's reason."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason
