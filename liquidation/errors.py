"""Exceptions of the liquidation core.

Every message names the asset, account or bucket and the engine time involved, and says what
to do. All of them derive from :class:`LiquidationCoreError` so a caller can catch the family.
"""

from __future__ import annotations


class LiquidationCoreError(Exception):
    """Base class of every error raised by ``liquidation``."""


class ConfigError(LiquidationCoreError, ValueError):
    """An engine configuration value is out of its allowed range."""


class SnapshotValidationError(LiquidationCoreError, ValueError):
    """A RiskSnapshot dict does not follow the ``dynamargin.risk/1`` shape or its bounds."""


class UnknownAssetError(LiquidationCoreError, KeyError):
    """An asset is not configured in the engine."""

    def __str__(self) -> str:  # KeyError would quote the whole message
        return str(self.args[0]) if self.args else ""


class UnknownAccountError(LiquidationCoreError, KeyError):
    """An account or margin bucket does not exist."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


class InputError(LiquidationCoreError, ValueError):
    """A command argument has the wrong type or lies outside its allowed range."""


class ClockError(LiquidationCoreError, ValueError):
    """A command carries a timestamp earlier than the engine clock (the log is append-only)."""


class StaleOracleError(LiquidationCoreError):
    """The oracle price of an asset is missing or older than the heartbeat."""


class GuardedAssetError(LiquidationCoreError):
    """The oracle guard has tripped on an asset: no new risk, no liquidation, no withdrawal."""


class InsufficientMarginError(LiquidationCoreError):
    """A trade, transfer or withdrawal would leave equity below the initial margin."""


class InsufficientLiquidityError(InsufficientMarginError):
    """The counterparty of a fill (by default the liquidity vault) cannot take it."""


class InsufficientBalanceError(LiquidationCoreError):
    """A withdrawal or transfer exceeds the collateral balance held in escrow."""


class WithdrawalRestrictedError(LiquidationCoreError):
    """A withdrawal is blocked because the account holds a position on a guarded asset."""


class NotLiquidatableError(LiquidationCoreError):
    """A liquidation was requested for a bucket whose equity is at or above maintenance."""


class RateLimitedError(LiquidationCoreError):
    """A partial liquidation step came before the bucket's liquidation cooldown ended."""


class EventLogError(LiquidationCoreError):
    """The event log is malformed, out of order, or the store refused an append."""


class DuplicateCommandError(LiquidationCoreError):
    """A command carries an idempotency key that an earlier command already used.

    Nothing was done: the earlier command's effects stand. ``command`` is its number.
    """

    def __init__(self, message: str, key: str, command: int) -> None:
        super().__init__(message)
        self.key = key
        self.command = command
