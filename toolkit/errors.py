"""The toolkit's error family: each error carries a message meant to be printed as is.

Every error a user can cause or fix is a :class:`ToolkitError`; the CLI prints its message (no traceback)
and exits with the status of the table in the README ("Exit codes"; see :mod:`toolkit.cli.common`).
"""

from __future__ import annotations

import errno
import io
import os


class ToolkitError(Exception):
    """Base class: a clear, user-facing failure (bad input, missing model, unreachable cluster)."""


class ConfigError(ToolkitError, ValueError):
    """Invalid or missing configuration (flags, option dataclasses, environment variables, files)."""


class ModelDirError(ToolkitError):
    """A model directory is missing files or was produced by something else."""


class VectorError(ToolkitError, ValueError):
    """Vectors that cannot be ranked: not a 2-D array, NaN or infinite values, or a row of zeros."""


#: errors of a file system that cannot take what is written (full, over quota, file too big, read-only): the
#: ``OSError`` of a ``write`` names no file. Not EIO: a failing disk says so on reads too
_DISK_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EROFS})


def os_error_path(error: OSError) -> str | None:
    """The file ``error`` is about: its ``filename``; for a write the disk refused (full, read-only...), which
    names none, the file open in the innermost frame of its traceback that holds one; else None."""
    if error.filename is not None:
        name = error.filename
        return os.fsdecode(name) if isinstance(name, (str, bytes)) else str(name)
    if error.errno not in _DISK_ERRNOS:
        return None
    frames = []
    tb = error.__traceback__
    while tb is not None:
        frames.append(tb.tb_frame)
        tb = tb.tb_next
    for frame in reversed(frames):
        for value in frame.f_locals.values():
            name = getattr(value, "name", None) if _open_for_writing(value) else None
            if isinstance(name, (str, bytes)):
                return os.fsdecode(name)
    return None


def _open_for_writing(value: object) -> bool:
    """``value`` is a file object open for writing (an input file open in the same frame is not the one)."""
    mode = getattr(value, "mode", "") if isinstance(value, io.IOBase) else ""
    return isinstance(mode, str) and any(c in mode for c in "wax+")  # closed by then, it keeps its mode


def is_disk_error(error: OSError) -> bool:
    """``error`` is a file system refusing a write (full, over quota, read-only, failing)."""
    return error.errno in _DISK_ERRNOS
