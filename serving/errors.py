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


class PublicationStoreError(ServingError):
    """The publication store rejected an operation or cannot be opened."""


class UpdateIdConflictError(PublicationStoreError):
    """An ``update_id`` did not strictly increase for its asset; the batch was rolled back."""


class AppendOnlyViolationError(PublicationStoreError):
    """An UPDATE or DELETE reached the append-only publication store and was refused."""


class PublishError(ServingError):
    """A publication batch failed; nothing of it was written and the previous batch stays."""
