"""The lock that loads (``jrs index``) and live updates (``jrs index --update``) of one index or alias take.

Two runs writing one index at once would interleave their work, so each holds an exclusive lock
(:func:`toolkit.locks.exclusive`) on one file per (Elasticsearch cluster, index or alias name) while it writes:
``<lock dir>/<cluster>/<name>.lock``, for the name it was given and for the indices it names
(:func:`related_names`), so a run given an alias and one given the index behind it exclude each other. The
lock directory is ``JRS_LOCK_DIR``, else ``locks/`` under the toolkit's cache (``JRS_HOME``, default
``~/.cache/jrecipe-search``), never the model directory: a load with its own ``checkpoint_dir`` and an update
of a read-only model directory lock the same file. The cluster is named by its
``cluster_uuid`` (the same through any URL or proxy), or by the client's URLs where the user may not read it.
Runs exclude each other when they share the lock directory: runs of other users, machines or containers do when
their ``JRS_LOCK_DIR`` is one shared directory.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Collection, Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

from elasticsearch import ApiError, Elasticsearch

from toolkit.errors import ConfigError
from toolkit.fingerprint import fingerprint
from toolkit.locks import exclusive

log = logging.getLogger(__name__)

LOCK_DIR_ENV = "JRS_LOCK_DIR"
#: a lock file's name keeps the index name whole up to this many bytes (then a prefix and a hash)
MAX_NAME_BYTES = 200


def lock_root() -> Path:
    """Where the locks of loads and updates live: ``JRS_LOCK_DIR``, else ``locks/`` in the toolkit's cache."""
    env = os.environ.get(LOCK_DIR_ENV)
    if env:
        return Path(env).expanduser()
    from toolkit.es.node import toolkit_home

    return toolkit_home() / "locks"


def cluster_key(es: Elasticsearch) -> str:
    """A file name for the cluster ``es`` talks to: its ``cluster_uuid``, or (a user not allowed to read it)
    ``urls-`` and a hash of the client's node URLs."""
    try:
        state = es.cluster.state(metric="metadata", filter_path="metadata.cluster_uuid").body
        uuid = str(state.get("metadata", {}).get("cluster_uuid") or "")
    except ApiError as e:  # e.g. no monitor privilege: the URLs stand for the cluster
        log.debug("cluster_uuid not readable (%s): locking by the client's URLs", e.meta.status)
        uuid = ""
    if uuid and uuid != "_na_" and "/" not in uuid:
        return uuid
    configs = [n.config for n in es.transport.node_pool.all()]
    urls = sorted(f"{c.scheme}://{c.host}:{c.port}{c.path_prefix}" for c in configs)
    return "urls-" + fingerprint(urls)


def lock_file_name(name: str) -> str:
    """``NAME.lock``; a name too long for a file name keeps a prefix and gains a hash."""
    if len(name.encode("utf-8")) <= MAX_NAME_BYTES:
        return f"{name}.lock"
    return f"{name.encode('utf-8')[:100].decode('utf-8', 'ignore')}-{fingerprint(name)}.lock"


def write_lock_path(es: Elasticsearch, name: str) -> Path:
    """The lock file of loads and updates of ``name`` (an index or alias) on the cluster ``es`` talks to."""
    return lock_root() / cluster_key(es) / lock_file_name(name)


def related_names(es: Elasticsearch, name: str) -> list[str]:
    """``name`` and the indices it names (itself, or those behind the alias ``name``), sorted: what a load or
    update of ``name`` writes or moves an alias off. Runs that give an index and its alias (``--index
    recipes-000003`` and ``--alias recipes``), or two aliases of one index, share that index here, so they lock
    a common file. The other aliases of those indices stay out: an alias over several collections
    (``all-recipes``) is not written by a load of one of them, and would hold up loads of the others. Names the
    user may not read stay out too (the lock is then by ``name`` alone)."""
    names = {name}
    try:
        found = es.indices.get_alias(index=name, ignore_unavailable=True, allow_no_indices=True).body
    except ApiError as e:  # e.g. not allowed to read aliases: the name as given is the lock
        log.debug("aliases of %s not readable (%s): locking by the name alone", name, e.meta.status)
        return [name]
    names.update(found)
    return sorted(names)


def hold_write_locks(es: Elasticsearch, name: str, held: ExitStack, skip: Collection[str] = ()) -> list[str]:
    """Take the locks of loads and updates of ``name`` (:func:`write_lock_path` of each of its
    :func:`related_names` not in ``skip``, which ``held`` already holds) into ``held``; the names locked, or
    :class:`~toolkit.locks.Busy` naming the index or alias when another run holds one of them, a
    :class:`ConfigError` naming it and ``JRS_LOCK_DIR`` when it cannot be created (a read-only cache)."""
    return _hold(es, lock_root() / cluster_key(es), name, held, skip)


@contextmanager
def write_lock(es: Elasticsearch, name: str) -> Iterator[Path]:
    """Hold the locks of loads and updates of ``name`` (:func:`hold_write_locks`) for the block; yields the
    lock file of ``name`` itself."""
    cluster = lock_root() / cluster_key(es)
    with ExitStack() as held:
        _hold(es, cluster, name, held)
        yield cluster / lock_file_name(name)


def _hold(
    es: Elasticsearch, cluster: Path, name: str, held: ExitStack, skip: Collection[str] = ()
) -> list[str]:
    names = [n for n in related_names(es, name) if n not in skip]
    for related in names:  # sorted: every run takes them in one order
        path = cluster / lock_file_name(related)
        _check_writable(path, related)
        held.enter_context(exclusive(path, f"a load or update of {related}"))
    return names


def _shared_like(path: Path, directory: Path, mask: int) -> None:
    """Give ``path`` (just made by this run) the write bits its lock directory gives group and others, so that
    every user who may write a shared ``JRS_LOCK_DIR`` may open and lock what another user created there."""
    wanted = (directory.stat().st_mode & mask) | (path.stat().st_mode & 0o7777)
    if wanted != path.stat().st_mode & 0o7777:
        os.chmod(path, wanted)


def _check_writable(path: Path, name: str) -> None:
    """Create ``path`` (and its cluster directory) when missing, as writable for group and others as the lock
    directory is; a :class:`ConfigError` saying what to do when that fails. A lock file another user made and
    this one may only read still locks (``flock`` needs no write access)."""
    root, cluster = path.parent.parent, path.parent
    try:
        root.mkdir(parents=True, exist_ok=True)
        if not cluster.is_dir():
            cluster.mkdir(exist_ok=True)
            _shared_like(cluster, root, 0o2077)  # write and search bits, and setgid: a group keeps its files
        if path.exists() and os.access(path, os.R_OK):
            return
        os.close(os.open(path, os.O_RDWR | os.O_CREAT, 0o644))
        _shared_like(path, cluster, 0o066)
    except OSError as e:
        raise ConfigError(
            f"cannot create the lock file {path} that a load or update of {name} holds while it writes "
            f"({e.strerror or e}): set {LOCK_DIR_ENV} to a writable directory (the same one for every run "
            "that loads or updates this cluster's indices)"
        ) from e
