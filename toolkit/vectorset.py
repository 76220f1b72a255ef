"""A vector set on disk: ``vectors.npy`` (float32 [N, D]) + ``ids.txt`` + ``meta.json``.

Every stage that produces vectors (step vectors, image features, projected embeddings) writes one,
so stages can be run, cached and tested alone. Step ids are ``<recipe_id>:<position>``.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from toolkit.data.columns import RowIndex, StringColumn
from toolkit.errors import ModelDirError
from toolkit.memory import new_memmap, release_pages

VECTORS = "vectors.npy"
IDS = "ids.txt"
META = "meta.json"
#: optional: the file each row was made from (image features: the photo's real path), one per line
SOURCES = "sources.txt"


@dataclass
class VectorSet:
    """Row ``i`` of ``vectors`` belongs to ``ids[i]``; ``meta`` says what produced it (fingerprints, dims).

    A loaded set's ``ids`` are a :class:`~toolkit.data.columns.StringColumn` (one buffer, not a million
    ``str`` objects); any sequence of strings will do for one built in memory.
    """

    ids: Sequence[str]
    vectors: np.ndarray
    meta: dict[str, Any] = field(default_factory=dict)
    #: the file each row was made from (:data:`SOURCES`), when the set keeps them
    sources: Sequence[str] | None = None

    def __post_init__(self) -> None:
        if self.vectors.ndim != 2 or self.vectors.shape[0] != len(self.ids):
            raise ValueError(f"vectors shape {self.vectors.shape} does not match {len(self.ids)} ids")

    @property
    def dim(self) -> int:
        return int(self.vectors.shape[1])

    def index(self) -> RowIndex:
        """The row of each id (a mapping; the last of repeated ids wins)."""
        return RowIndex(StringColumn.from_strings(self.ids))


def save_vector_set(
    directory: str | Path, ids: Sequence[str], vectors: np.ndarray, meta: dict[str, Any]
) -> Path:
    """Write a vector set atomically enough for our use (ids and meta after the array).

    ``vectors`` may already be the set's own ``vectors.npy``, memory-mapped (see :func:`create_vectors`):
    it is then flushed, not copied onto itself.
    """
    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    in_place = _maps_file(vectors, d / VECTORS)
    arr = vectors if in_place else np.ascontiguousarray(vectors, dtype=np.float32)
    if arr.ndim != 2 or arr.shape[0] != len(ids):
        raise ValueError(f"vectors shape {arr.shape} does not match {len(ids)} ids")
    if _has_newline(ids):
        raise ValueError("ids must not contain newlines")
    if in_place:
        assert isinstance(vectors, np.memmap)  # what _maps_file checked
        vectors.flush()
        release_pages(vectors)
    else:
        _save_npy(d / VECTORS, arr, vectors)
    write_lines(d / IDS, ids)
    full_meta = {**meta, "count": len(ids), "dim": int(arr.shape[1])}
    (d / META).write_text(json.dumps(full_meta, ensure_ascii=False, indent=2), encoding="utf-8")
    return d


def create_vectors(directory: str | Path, rows: int, dim: int) -> np.memmap:
    """A new, writable, memory-mapped ``vectors.npy`` of ``rows x dim`` float32 in ``directory``: fill it
    chunk by chunk, then :func:`save_vector_set` it (a stage's output never has to fit in memory)."""
    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    for name in (IDS, META):  # an old set's ids must not pass for the new vectors'
        (d / name).unlink(missing_ok=True)
    return new_memmap(d / VECTORS, np.float32, (rows, dim))


def _maps_file(vectors: Any, path: Path) -> bool:
    filename = getattr(vectors, "filename", None)
    return (
        isinstance(vectors, np.memmap)
        and filename is not None
        and path.exists()
        and os.path.samefile(filename, path)
        and vectors.dtype == np.float32
    )


def _has_newline(ids: Sequence[str]) -> bool:
    data = getattr(ids, "data", None)
    if isinstance(data, bytes):  # a StringColumn: one scan of its buffer
        return b"\n" in data or b"\r" in data
    return any("\n" in i or "\r" in i for i in ids)


def write_lines(path: Path, ids: Sequence[str], chunk: int = 65536) -> None:
    """One string per line, written in chunks (a column of a million never becomes one string)."""
    with open(path, "w", encoding="utf-8", newline="\n") as f:
        batch: list[str] = []
        for i in ids:
            batch.append(i)
            if len(batch) >= chunk:
                f.write("\n".join(batch) + "\n")
                batch.clear()
        if batch:
            f.write("\n".join(batch) + "\n")


#: Rows written at a time by :func:`_save_npy`
SAVE_CHUNK_ROWS = 65536


def _save_npy(path: Path, arr: np.ndarray, source: Any) -> None:
    """What ``np.save(path, arr)`` writes, chunk by chunk; when ``source`` is memory-mapped its pages are
    given back after each chunk (saved whole, every page of it would stay resident in this process: 3 GB at
    1M x 768)."""
    header = {"descr": np.lib.format.dtype_to_descr(arr.dtype), "fortran_order": False, "shape": arr.shape}
    with open(path, "wb") as f:
        np.lib.format.write_array_header_1_0(f, header)
        for a in range(0, arr.shape[0], SAVE_CHUNK_ROWS):
            f.write(arr[a : a + SAVE_CHUNK_ROWS].tobytes())
            release_pages(source)  # False (nothing to do) when not memory-mapped


def load_vector_set(directory: str | Path, mmap: bool = True) -> VectorSet:
    """Load a vector set (memory-mapped by default); a clear error when files are missing."""
    d = Path(directory)
    missing = [n for n in (VECTORS, IDS, META) if not (d / n).is_file()]
    if missing:
        raise ModelDirError(f"vector set {d} is incomplete: missing {', '.join(missing)}")
    fix = "make the set again (rerun the stage that wrote it)"
    vectors = _load_array(d / VECTORS, mmap, fix)
    ids = read_lines(d / IDS)
    meta = read_json_object(d / META, fix)
    if vectors.ndim != 2 or vectors.shape[0] != len(ids):
        raise ModelDirError(
            f"vector set {d} is inconsistent: {VECTORS} has shape {vectors.shape} but {IDS} has {len(ids)} ids; {fix}"
        )
    return VectorSet(ids=ids, vectors=vectors, meta=meta, sources=load_sources(d, len(ids)))


def _load_array(path: Path, mmap: bool, fix: str) -> np.ndarray:
    """The ``.npy`` array at ``path``; a :class:`ModelDirError` naming it when it is truncated or damaged."""
    try:
        return np.load(path, mmap_mode="r" if mmap else None, allow_pickle=False)
    except (ValueError, EOFError, OSError) as e:
        raise ModelDirError(f"{path} is truncated or not a .npy array ({e}); {fix}") from None


def read_json_object(path: str | Path, fix: str = "") -> dict[str, Any]:
    """The JSON object in ``path``; a :class:`ModelDirError` naming the file when it cannot be read, is not
    UTF-8, not JSON or not an object (``fix``: what to do about it, appended to the message)."""
    path = Path(path)
    hint = f"; {fix}" if fix else ""
    try:
        obj = json.loads(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError as e:
        raise ModelDirError(f"{path} is not UTF-8 text ({e.reason} at byte {e.start}){hint}") from None
    except json.JSONDecodeError as e:
        raise ModelDirError(f"{path} is not valid JSON: {e}{hint}") from None
    except OSError as e:
        raise ModelDirError(f"{path} cannot be read: {e.strerror or e}{hint}") from None
    if not isinstance(obj, dict):
        raise ModelDirError(f"{path} holds a JSON {_json_type(obj)}, not an object{hint}")
    return obj


def _json_type(obj: Any) -> str:
    return {list: "array", str: "string", bool: "boolean", type(None): "null"}.get(type(obj), "number")


def read_lines(path: Path) -> StringColumn:
    """The lines :func:`write_lines` wrote, as one column; a clear error when the file is not UTF-8."""
    raw = path.read_bytes()
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise ModelDirError(f"{path} is not UTF-8 text ({e})") from None
    if b"\r" in raw:  # ids never contain one (save_vector_set refuses them): CRLF line ends
        raw = raw.replace(b"\r\n", b"\n")
    return StringColumn.from_lines(raw)


def file_source(path: str | Path) -> str:
    """A file as a vector set's source line: ``size<TAB>mtime_ns<TAB>path`` (``-1`` when unreadable)."""
    try:
        st = os.stat(path)
        size, mtime = st.st_size, st.st_mtime_ns
    except OSError:
        size = mtime = -1
    return f"{size}\t{mtime}\t{path}"


def source_path(source: str) -> str:
    """The path of a :func:`file_source` line."""
    return source.split("\t", 2)[-1]


def same_file(source: str, path: str | Path) -> bool:
    """``path`` is the file ``source`` (a :func:`file_source` line) recorded: same path, size and mtime. A
    picture replaced at that path by an older file (``cp -p``, ``rsync -a``, a restore) is not the same."""
    parts = source.split("\t", 2)
    return len(parts) == 3 and parts[2] == str(path) and parts[:2] == file_source(path).split("\t", 2)[:2]


def save_sources(directory: str | Path, sources: Sequence[str]) -> bool:
    """Write which file each row of the set in ``directory`` was made from (:data:`SOURCES`); False, and no
    file, when a source holds a line break (then no row can be matched to its file later)."""
    path = Path(directory) / SOURCES
    path.unlink(missing_ok=True)
    if _has_newline(sources):
        return False
    write_lines(path, sources)
    return True


def load_sources(directory: str | Path, count: int) -> StringColumn | None:
    """The :data:`SOURCES` of the set in ``directory``; None when it has none or they do not number
    ``count`` (a set written before sources were kept, or damaged)."""
    path = Path(directory) / SOURCES
    if not path.is_file():
        return None
    sources = read_lines(path)
    return sources if len(sources) == count else None


def align_rows(a: VectorSet, b: VectorSet) -> tuple[StringColumn, np.ndarray, np.ndarray]:
    """Ids that ``a`` and ``b`` share, in ``a``'s order, and their row numbers in each (int64): no vector copied.

    Ids are matched by hash (8 bytes a row, not a dict of every id) and the matches checked by their
    bytes; repeated ids or a hash collision fall back to a dict (the last of repeated ids wins).
    """
    ids_a, ids_b = StringColumn.from_strings(a.ids), StringColumn.from_strings(b.ids)
    hash_b = ids_b.hashes()
    order = np.argsort(hash_b, kind="stable")
    sorted_b = hash_b[order]
    if not (len(sorted_b) > 1 and (np.diff(sorted_b) == 0).any()):
        hash_a = ids_a.hashes()
        at = np.minimum(np.searchsorted(sorted_b, hash_a), max(len(sorted_b) - 1, 0))
        hit = sorted_b[at] == hash_a if len(sorted_b) else np.zeros(len(hash_a), dtype=bool)
        rows_a = np.flatnonzero(hit).astype(np.int64)
        rows_b = order[at[hit]].astype(np.int64)
        ids = ids_a.take(rows_a)
        if ids == ids_b.take(rows_b):
            return ids, rows_a, rows_b
    bi = {i: n for n, i in enumerate(ids_b)}
    pairs = [(n, bi[i]) for n, i in enumerate(ids_a) if i in bi]
    rows = np.asarray(pairs, dtype=np.int64).reshape(-1, 2)
    return ids_a.take(rows[:, 0]), rows[:, 0].copy(), rows[:, 1].copy()


def align(a: VectorSet, b: VectorSet) -> tuple[StringColumn, np.ndarray, np.ndarray]:
    """Rows of ``a`` and ``b`` that share an id, in ``a``'s order (copied into memory)."""
    ids, rows_a, rows_b = align_rows(a, b)
    return ids, np.asarray(a.vectors[rows_a]), np.asarray(b.vectors[rows_b])


class Rows:
    """Rows ``index`` of a (memory-mapped) ``[N, D]`` array, read on demand instead of copied whole.

    Slicing or indexing gives an in-memory float32 array of those rows (``rows[a:b]``,
    ``rows[np.array([...])]``). Rows of a whole memory-mapped ``.npy`` are read from its file
    (``pread``, runs of consecutive rows at once), not through the map: a page fault maps far more
    than the row (fault-around, 2 MB folios: a batch of 128 random rows made a 264 MB file resident),
    whereas the page cache is not this process's memory. Other arrays are read through the map, whose
    pages are given back to the OS every :attr:`RELEASE_BYTES`.
    """

    RELEASE_BYTES = 256 << 20

    def __init__(self, base: np.ndarray, index: np.ndarray | None = None) -> None:
        if base.ndim != 2:
            raise ValueError(f"Rows needs a 2-D array, got shape {base.shape}")
        self.base = base
        self.index = (
            np.arange(base.shape[0], dtype=np.int64) if index is None else np.asarray(index, np.int64)
        )
        if self.index.ndim != 1 or (
            len(self.index) and (self.index.min() < 0 or self.index.max() >= len(base))
        ):
            raise ValueError(f"row index out of range for {len(base)} rows")
        self._read = 0
        self._file = _file_rows(base)

    @property
    def shape(self) -> tuple[int, int]:
        return (len(self.index), int(self.base.shape[1]))

    @property
    def ndim(self) -> int:
        return 2

    @property
    def dtype(self) -> np.dtype:
        return np.dtype(np.float32)

    def __len__(self) -> int:
        return len(self.index)

    def subset(self, positions: np.ndarray) -> Rows:
        """The rows at ``positions`` of this view (boolean mask or integer positions), still lazy."""
        return Rows(self.base, self.index[positions])

    def __getitem__(self, key: slice | np.ndarray | list[int]) -> np.ndarray:
        return self.gather(self.index[key])

    def gather(self, base_rows: np.ndarray) -> np.ndarray:
        """Rows ``base_rows`` of the base array (read in ascending order), as float32 in the given order."""
        base_rows = np.atleast_1d(np.asarray(base_rows, dtype=np.int64))
        order = np.argsort(base_rows, kind="stable")
        out = np.empty((len(base_rows), self.shape[1]), dtype=np.float32)
        if self._file is not None and len(base_rows):
            out[order] = _pread_rows(*self._file, base_rows[order], self.base.dtype, self.shape[1])
            return out
        out[order] = self.base[base_rows[order]]
        self._read += out.nbytes
        if self._read >= self.RELEASE_BYTES:
            from toolkit.memory import release_pages

            release_pages(self.base)
            self._read = 0
        return out

    def __array__(self, dtype: Any = None, copy: bool | None = None) -> np.ndarray:
        out = np.empty(self.shape, dtype=np.float32)
        step = max(1, (64 << 20) // max(1, 4 * self.shape[1]))
        for a in range(0, len(self), step):
            out[a : a + step] = self[a : a + step]
        return out if dtype is None else out.astype(dtype, copy=False)


def _file_rows(base: np.ndarray) -> tuple[str, int, int] | None:
    """``(path, offset of row 0, bytes per row)`` where ``base`` is a whole, C-ordered, shared (not
    copy-on-write) memory map of a file, so reading the file gives its rows; None otherwise (also where
    the platform has no ``os.preadv``, e.g. Windows: rows are then read through the map)."""
    if not (
        hasattr(os, "preadv")
        and isinstance(base, np.memmap)
        and base.base is getattr(base, "_mmap", None)  # not a view: offset is row 0's
        and base.filename
        and base.mode in ("r", "r+", "w+")
        and base.flags.c_contiguous
    ):
        return None
    return str(base.filename), int(base.offset), int(base.strides[0])


def _pread_rows(
    path: str, offset: int, row_bytes: int, rows: np.ndarray, dtype: np.dtype, dim: int
) -> np.ndarray:
    """Rows ``rows`` (ascending) of the ``[N, dim]`` array stored at ``offset`` in ``path``, read with
    one ``pread`` per run of consecutive rows."""
    buf = np.empty((len(rows), dim), dtype=dtype)
    starts = np.flatnonzero(np.diff(rows, prepend=rows[0] - 2) != 1)
    ends = np.append(starts[1:], len(rows))
    fd = os.open(path, os.O_RDONLY)
    try:
        for a, b in zip(starts.tolist(), ends.tolist(), strict=True):
            # numpy declares ndarray.__buffer__ for Python >= 3.12 only (the Buffer protocol is new there)
            view, pos = memoryview(buf[a:b]).cast("B"), offset + int(rows[a]) * row_bytes  # type: ignore[arg-type]
            while len(view):
                got = os.preadv(fd, [view], pos)
                if got <= 0:
                    raise OSError(f"{path}: short read at byte {pos}")
                view, pos = view[got:], pos + got
    finally:
        os.close(fd)
    return buf
