"""The one atomic-write helper: write a temporary file beside the target, then rename it over the target.

Readers never see half a file, and a crash leaves the previous version (plus at most a stray ``.tmp``).
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from toolkit.errors import is_disk_error


@contextmanager
def atomic_path(path: str | Path, mode: int = 0o644) -> Iterator[Path]:
    """A fresh temporary path beside ``path``, renamed onto it when the block succeeds, removed when it fails."""
    target = Path(path)
    try:  # a directory that cannot be made (a file in the way, no permission): the target, and where
        target.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise _naming(e, target, os.fsdecode(e.filename) if e.filename is not None else None) from e
    try:  # a directory where no file can be made (read-only, /proc): the target, not the temporary file
        fd, name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
        os.close(fd)
    except OSError as e:
        raise _naming(e, target) from e
    tmp = Path(name)
    try:
        yield tmp
        os.chmod(tmp, mode)
        os.replace(tmp, target)
    except OSError as e:
        tmp.unlink(missing_ok=True)
        about_tmp = os.fsdecode(e.filename) == str(tmp) if e.filename is not None else is_disk_error(e)
        if (
            about_tmp
        ):  # the file being written (a full disk names none): say its name, not the temporary one's
            raise _naming(e, target) from e
        raise
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _naming(error: OSError, target: Path, where: str | None = None) -> OSError:
    """``error`` (same errno, hence same subclass, and reason) about ``target``; ``where``, the path that
    failed on the way (a parent directory), joins the reason."""
    reason = error.strerror or str(error)
    if where and where != str(target):
        reason = f"{reason} ({where})"
    return OSError(error.errno, reason, str(target))


def write_text_atomic(path: str | Path, text: str) -> None:
    """Replace ``path`` with ``text`` (UTF-8, ``\\n`` line ends) atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8", newline="\n")


def write_json_atomic(path: str | Path, obj: Any, *, indent: int | None = 2, default: Any = None) -> None:
    """Replace ``path`` with ``obj`` as JSON (non-ASCII kept) atomically."""
    write_text_atomic(path, json.dumps(obj, ensure_ascii=False, indent=indent, default=default))
