"""Errors of the shared contracts."""

from __future__ import annotations


class ContractError(Exception):
    """Base class of every error raised by :mod:`contracts`."""


class ForecastContractError(ContractError, ValueError):
    """A frame does not follow the Forecast contract (columns, keys, bounds, tz)."""


class NaiveTimeError(ContractError, ValueError):
    """A time without a timezone where a tz-aware UTC time is required."""
