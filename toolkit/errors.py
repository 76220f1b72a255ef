"""The toolkit's error family: each error carries a message meant to be printed as is.

Every error a user can cause or fix is a :class:`ToolkitError`; the CLI prints its message (no traceback)
and exits with the status of the table in the README ("Exit codes"; see :mod:`toolkit.cli.common`).
"""

from __future__ import annotations

import errno
import io
import numbers
import os
from types import FrameType


class ToolkitError(Exception):
    """Base class: a clear, user-facing failure (bad input, missing model, unreachable cluster)."""


class ConfigError(ToolkitError, ValueError):
    """Invalid or missing configuration (flags, option dataclasses, environment variables, files)."""


class ModelDirError(ToolkitError):
    """A model directory is missing files or was produced by something else."""


class VectorError(ToolkitError, ValueError):
    """Vectors that cannot be ranked: not a 2-D array, NaN or infinite values, or a row of zeros."""


def given(value: object) -> str:
    """``value`` for an error message: its type and a short repr."""
    text = repr(value)
    return f"{type(value).__name__} {text if len(text) <= 60 else text[:57] + '...'}"


def plain_int(value: object) -> int | None:
    """``value`` as a plain ``int`` when it is an integer (``numbers.Integral``, NumPy's included; not a bool),
    else None: the caller raises its own message."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        return None
    return int(value)


def check_argument(name: str, value: object, kind: type | tuple[type, ...], expected: str) -> None:
    """A :class:`ConfigError` naming the argument ``name`` and what it got unless ``value`` is a ``kind``
    (``expected``: what to pass, e.g. ``"a toolkit.IndexOptions"``), so that a wrong type passed to an entry point
    fails at once, not in a deep ``AttributeError``."""
    if not isinstance(value, kind):
        raise ConfigError(f"{name} must be {expected}, got {given(value)}")


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


#: functions (their name's start) whose failing on a file means it could not be written
_WRITERS = (
    *("mkdir", "makedirs", "mkstemp", "create", "write", "save", "dump", "touch", "atomic"),
    *("copy", "move", "replace", "rename", "unlink", "remove", "rmtree", "symlink", "chmod"),
)
#: of those, the ones given two paths, a source read and a destination written: a missing file is the source
_TWO_PATHS = ("copy", "move", "replace", "rename", "symlink")


def os_error_verb(error: OSError) -> str:
    """``"write"`` or ``"read"``: what failed on the file :func:`os_error_path` names. Evidence, strongest first:
    a disk refusing a write; the mode the innermost call was opening a file with (``Path.write_text``...);
    permission refused on a file that can be read, or to create one (a write); the innermost function's name
    (``save``, ``mkdir``...; a copy's or a rename's missing file is its source: a read); a file missing from a
    folder that exists (a read: a write would have created it, but on ``/proc`` or ``/sys``); else a read."""
    if is_disk_error(error):
        return "write"
    frame = _innermost_frame(error)
    mode = frame.f_locals.get("mode") if frame else None
    if isinstance(mode, str) and set(mode) <= set("rwaxbt+") and len(set(mode) & set("rwax")) == 1:
        return "write" if set(mode) & set("wax+") else "read"
    path = os_error_path(error)
    if error.errno in (errno.EACCES, errno.EPERM) and path and _refused_a_write(path):
        return "write"
    name = frame.f_code.co_name.lstrip("_") if frame else ""
    if name.startswith(_WRITERS) and not name.startswith(_TWO_PATHS):
        return "write"
    missing = error.errno == errno.ENOENT and path is not None and _missing_from_a_folder(path)
    return "write" if name.startswith(_TWO_PATHS) and not missing else "read"


def _innermost_frame(error: BaseException) -> FrameType | None:
    """The innermost frame of ``error``'s traceback, or of the error it re-raises under another name (an
    :class:`OSError` ``from`` one of the same errno: the atomic writer names its target so)."""
    cause = error.__cause__
    while isinstance(cause, OSError) and isinstance(error, OSError) and cause.errno == error.errno:
        error, cause = cause, cause.__cause__
    tb = error.__traceback__
    while tb is not None and tb.tb_next is not None:
        tb = tb.tb_next
    return tb.tb_frame if tb is not None else None


def _refused_a_write(path: str) -> bool:
    """Permission was refused on ``path``: a write, when it can be read, or when it does not exist in a folder
    that can be searched (only creating it can be refused there)."""
    try:
        if os.path.lexists(path):
            return os.access(path, os.R_OK)
        folder = os.path.dirname(os.path.abspath(path))
        return os.path.isdir(folder) and os.access(folder, os.X_OK)
    except (OSError, ValueError):
        return False


def _missing_from_a_folder(path: str) -> bool:
    try:
        return os.path.isdir(os.path.dirname(os.path.abspath(path))) and not os.path.lexists(path)
    except (OSError, ValueError):
        return False


#: what ``torch.load(..., weights_only=True)`` says before the reason of an unpickling failure
_WEIGHTS_ONLY_MARK = "WeightsUnpickler error:"


def torch_load_reason(path: str | os.PathLike[str], error: BaseException) -> str:
    """One line on why ``torch.load(path, weights_only=True)`` failed: torch's own message runs to several
    lines of advice (re-run with ``weights_only=False``, file an issue) around a one-line reason."""
    try:
        if os.path.getsize(path) == 0:
            return "empty file (0 bytes)"
    except OSError:
        pass
    text = str(error)
    if _WEIGHTS_ONLY_MARK in text:
        after = [line.strip() for line in text.split(_WEIGHTS_ONLY_MARK, 1)[1].splitlines() if line.strip()]
        return f"not a torch.save file of tensors ({after[0][:200] if after else type(error).__name__})"
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[0][:300] if lines else type(error).__name__
