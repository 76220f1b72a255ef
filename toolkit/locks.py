"""Advisory locks that keep two runs from writing the same output at once (two `jrs build` into one model
directory, two loads of one alias sharing a checkpoint): the second is refused with a clear error instead of
interleaving its writes with the first's. ``flock`` locks, released by the system when the process ends, so a
killed run leaves nothing to clean up. Where ``fcntl`` is missing (Windows) nothing is locked."""

from __future__ import annotations

import errno
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from toolkit.errors import ToolkitError

try:
    import fcntl
except ImportError:  # pragma: no cover - not on POSIX
    fcntl = None  # type: ignore[assignment]


class Busy(ToolkitError):
    """Another process holds the lock: the same output is being written by another run."""


def _only_readable(path: Path) -> bool:
    """An existing lock file this process may read but not write (another user's in a shared lock directory):
    ``flock`` locks it through a read-only descriptor all the same."""
    return path.exists() and os.access(path, os.R_OK) and not os.access(path, os.W_OK)


@contextmanager
def exclusive(path: str | Path, what: str) -> Iterator[None]:
    """Hold an exclusive lock on ``path`` (an existing directory, or a lock file created if missing) for the
    block; :class:`Busy` naming ``what`` (e.g. "a build of model/") when another process holds it."""
    if fcntl is None:  # pragma: no cover
        yield
        return
    p = Path(path)
    fd = (
        os.open(p, os.O_RDONLY)
        if p.is_dir() or _only_readable(p)
        else os.open(p, os.O_RDWR | os.O_CREAT, 0o644)
    )
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as e:
            if e.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                raise
            raise Busy(
                f"{what} is already running in another process (it holds a lock on {p}): wait for it to "
                "finish, or stop it, then run this again"
            ) from None
        yield
    finally:
        os.close(fd)  # releases the lock
