"""The error hierarchy of :mod:`pipelines`: every error here derives from :class:`PipelineError`."""

from __future__ import annotations


class PipelineError(Exception):
    """Base class of every error raised by :mod:`pipelines` (configs, flows, runners, CLI)."""
