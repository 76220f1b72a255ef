"""The toolkit's error family: each error carries a message meant to be printed as is.

Every error a user can cause or fix is a :class:`ToolkitError`; the CLI prints its message (no traceback)
and exits with the status of the table in the README ("Exit codes"; see :mod:`toolkit.cli.common`).
"""

from __future__ import annotations


class ToolkitError(Exception):
    """Base class: a clear, user-facing failure (bad input, missing model, unreachable cluster)."""


class ConfigError(ToolkitError, ValueError):
    """Invalid or missing configuration (flags, option dataclasses, environment variables, files)."""


class ModelDirError(ToolkitError):
    """A model directory is missing files or was produced by something else."""


class VectorError(ToolkitError, ValueError):
    """Vectors that cannot be ranked: not a 2-D array, NaN or infinite values, or a row of zeros."""
