"""The error hierarchy of :mod:`models`: every error raised here derives from :class:`ModelsError`.

Each module defines the specific errors of its job next to the code that raises them; they
all derive from :class:`ModelsError` (and from ``ValueError`` for bad input, or
``RuntimeError`` for a failing backend), so a caller can catch the whole package at once.
"""

from __future__ import annotations


class ModelsError(Exception):
    """Base class of every error raised by :mod:`models`."""


class RegistryError(ModelsError, RuntimeError):
    """Base class of MLflow store, registry and review errors."""
