"""The narrow protocols the rules read their parameters from.

The rules never import the engine or its state: they take plain ints and floats, and the
parameters of a market or of the waterfall through these protocols, which the frozen config
dataclasses (:class:`~liquidation.config.AssetConfig`, :class:`~liquidation.config.
LiquidationConfig`) satisfy structurally.
"""

from __future__ import annotations

from typing import Protocol


class MarginTerms(Protocol):
    """What the margin rules read of one asset (see :class:`liquidation.config.AssetConfig`)."""

    @property
    def base_imf(self) -> float: ...
    @property
    def maintenance_fraction(self) -> float: ...
    @property
    def imf_cap(self) -> float: ...
    @property
    def size_imf_factor(self) -> float: ...
    @property
    def size_reference_usd(self) -> float: ...
    @property
    def oi_lower_usd(self) -> float: ...
    @property
    def oi_upper_usd(self) -> float: ...
    @property
    def oi_imf_max(self) -> float: ...


class FallbackTerms(Protocol):
    """The conservative multiplier used without a usable snapshot."""

    @property
    def fallback_multiplier(self) -> float: ...


class SnapshotTerms(Protocol):
    """What the multiplier rule reads of a snapshot (``liquidation.snapshot.MarginParameters``)."""

    @property
    def multiplier(self) -> float: ...
    @property
    def status(self) -> str: ...
    @property
    def valid_until_ms(self) -> int: ...


class WaterfallTerms(Protocol):
    """The waterfall's parameters (see :class:`liquidation.config.LiquidationConfig`)."""

    @property
    def penalty_rate(self) -> float: ...
    @property
    def max_step_fraction(self) -> float: ...
    @property
    def cooldown_ms(self) -> int: ...
    @property
    def health_buffer(self) -> float: ...
    @property
    def min_partial_notional_usd(self) -> float: ...
    @property
    def emergency_health(self) -> float: ...
    @property
    def insurance_cap_per_event_usd(self) -> float: ...
