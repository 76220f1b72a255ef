"""Errors the toolkit raises for users: each carries a message meant to be printed as is."""

from __future__ import annotations


class ToolkitError(Exception):
    """Base class: a clear, user-facing failure (bad input, missing model, unreachable cluster)."""


class ConfigError(ToolkitError):
    """Invalid or missing configuration (flags, environment variables, files)."""


class ModelDirError(ToolkitError):
    """A model directory is missing files or was produced by something else."""
