"""Process memory: peak resident set size per stage, and giving back pages of memory-mapped arrays.

Pages of a memory-mapped file that a process has touched count in its resident set size until the
kernel reclaims them, so a stage that reads or writes a multi-GB vector set through ``np.memmap``
"uses" that many GB of RSS although the data lives in the file. :func:`release_pages` drops those
pages from the process (``madvise(MADV_DONTNEED)``: written data stays in the page cache and the file).
"""

from __future__ import annotations

import errno
import logging
import mmap
import os
import resource
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

_STATUS = Path("/proc/self/status")
_CLEAR_REFS = Path("/proc/self/clear_refs")


def _status_mb(key: str) -> float | None:
    try:
        for line in _STATUS.read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


def rss_mb() -> float | None:
    """Current resident set size in MB (Linux; None elsewhere)."""
    return _status_mb("VmRSS")


def peak_rss_mb() -> float:
    """Peak resident set size in MB since the process started or the last :func:`reset_peak_rss`."""
    hwm = _status_mb("VmHWM")
    return hwm if hwm is not None else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def reset_peak_rss() -> bool:
    """Start a new peak (Linux ``clear_refs`` 5): the next :func:`peak_rss_mb` is this stage's own."""
    try:
        _CLEAR_REFS.write_text("5")
    except OSError:
        return False
    return True


def release_pages(array: Any) -> bool:
    """Drop the resident pages of a memory-mapped numpy array from this process; False if not mapped."""
    mapped = getattr(array, "_mmap", None)
    if mapped is None or not hasattr(mapped, "madvise"):
        return False
    try:
        mapped.madvise(mmap.MADV_DONTNEED)
    except (OSError, ValueError) as e:  # a closed map, or a kernel without madvise
        log.debug("madvise failed: %s", e)
        return False
    return True


def new_memmap(path: str | Path, dtype: Any, shape: tuple[int, ...]) -> Any:
    """``np.lib.format.open_memmap(path, "w+", ...)`` with every block of the file allocated now.

    A new memory map's file is sparse: on a full disk a write through the map would kill the process with
    SIGBUS (no message, nothing cleaned up); allocated up front, a full disk is an ``OSError`` naming the file.
    """
    import numpy as np

    array = np.lib.format.open_memmap(path, mode="w+", dtype=dtype, shape=shape)
    fd = os.open(path, os.O_RDWR)
    try:
        size = os.fstat(fd).st_size
        if size and hasattr(os, "posix_fallocate"):
            try:
                os.posix_fallocate(fd, 0, size)
            except OSError as e:
                # EINVAL / EOPNOTSUPP: a file system that cannot allocate ahead (the map stays sparse)
                if e.errno not in (errno.EINVAL, errno.EOPNOTSUPP):
                    del array
                    # the blocks allocated before the disk filled stay with the file: removed, a failed
                    # allocation does not leave the disk full (nor a sparse vectors file behind)
                    Path(path).unlink(missing_ok=True)
                    raise OSError(e.errno, e.strerror, os.fspath(path)) from None
    finally:
        os.close(fd)
    return array
