"""Strings stored column-wise: one UTF-8 buffer and its offsets, not one Python object per row.

A million step texts, ids or photo paths held as ``list[str]`` cost ~60-200 bytes of object overhead each
on top of their characters (and a ``Path`` several objects more); a :class:`StringColumn` costs the UTF-8
bytes plus 8 bytes of offset per row, and a forked worker reading it touches no reference counts.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import overload

import numpy as np

#: Rows gathered at a time by :func:`take_ragged` (its element indices are 8 bytes per element).
TAKE_CHUNK_ROWS = 16384


def take_ragged(
    values: np.ndarray, offsets: np.ndarray, rows: np.ndarray, chunk: int | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Rows ``rows`` (int64 positions) of the ragged array ``values[offsets[i]:offsets[i + 1]]``: the
    gathered values and their offsets (see :func:`take_spans`)."""
    return take_spans(values, offsets[rows], offsets[rows + 1], chunk)


def take_spans(
    values: np.ndarray, starts: np.ndarray, ends: np.ndarray, chunk: int | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """The spans ``values[starts[i]:ends[i]]`` one after another, and their offsets. Element indices are
    built for ``chunk`` spans at a time (default :data:`TAKE_CHUNK_ROWS`), not for the whole result (they
    are 8 bytes per element)."""
    chunk = TAKE_CHUNK_ROWS if chunk is None else chunk
    lengths = ends - starts
    new_offsets = np.zeros(len(starts) + 1, dtype=np.int64)
    np.cumsum(lengths, out=new_offsets[1:])
    out = np.empty(int(new_offsets[-1]), dtype=values.dtype)
    for a in range(0, len(starts), chunk):
        b = min(a + chunk, len(starts))
        # position of every kept element: start of its span + its place within the span
        base = new_offsets[a:b] - new_offsets[a]
        within = np.arange(int(new_offsets[b] - new_offsets[a]), dtype=np.int64) - np.repeat(
            base, lengths[a:b]
        )
        out[new_offsets[a] : new_offsets[b]] = values[np.repeat(starts[a:b], lengths[a:b]) + within]
    return out, new_offsets


def row_hash(raw: bytes) -> int:
    """The 64-bit hash of a row's UTF-8 bytes (this process's ``hash``) that :meth:`StringColumn.hashes`
    and :class:`RowIndex` use."""
    return hash(raw)


class StringColumn(Sequence[str]):
    """Row ``i`` is ``data[offsets[i]:offsets[i + 1]]`` decoded as UTF-8; slicing and indexing with an
    integer array give another column (rows copied), an integer gives a ``str``."""

    __slots__ = ("data", "offsets")

    def __init__(self, data: bytes, offsets: np.ndarray) -> None:
        offsets = np.asarray(offsets, dtype=np.int64)
        if offsets.ndim != 1 or len(offsets) < 1 or offsets[0] != 0 or offsets[-1] != len(data):
            raise ValueError("offsets must be 1-D, start at 0 and end at len(data)")
        self.data = data
        self.offsets = offsets

    @classmethod
    def from_strings(cls, strings: Iterable[str]) -> StringColumn:
        if isinstance(strings, StringColumn):
            return strings
        builder = StringColumnBuilder()
        for s in strings:
            builder.append(s)
        return builder.build()

    @classmethod
    def from_lines(cls, raw: bytes) -> StringColumn:
        """The lines of ``raw`` (UTF-8, each ended by ``\\n``; the last one may lack it): one row per line.
        Only ``\\n`` ends a line (``str.splitlines`` would also split at ``\\v``, U+2028 and others)."""
        if raw and not raw.endswith(b"\n"):
            raw += b"\n"
        ends = np.flatnonzero(np.frombuffer(raw, dtype=np.uint8) == 10)
        offsets = np.zeros(len(ends) + 1, dtype=np.int64)
        offsets[1:] = ends - np.arange(len(ends))  # each line's end once the line breaks are gone
        return cls(raw.replace(b"\n", b""), offsets)

    def __len__(self) -> int:
        return len(self.offsets) - 1

    @overload
    def __getitem__(self, key: int) -> str: ...

    @overload
    def __getitem__(self, key: slice | np.ndarray | Sequence[int]) -> StringColumn: ...

    def __getitem__(self, key: int | slice | np.ndarray | Sequence[int]) -> str | StringColumn:
        if isinstance(key, (int, np.integer)):
            n = len(self)
            i = int(key) + n if key < 0 else int(key)
            if not 0 <= i < n:
                raise IndexError(f"row {key} out of range for {n} rows")
            return self.data[self.offsets[i] : self.offsets[i + 1]].decode("utf-8")
        rows = np.arange(len(self))[key] if isinstance(key, slice) else np.asarray(key)
        return self.take(rows)

    def __iter__(self) -> Iterator[str]:
        data, offsets = self.data, self.offsets.tolist()
        for a, b in zip(offsets[:-1], offsets[1:], strict=True):
            yield data[a:b].decode("utf-8")

    def __eq__(self, other: object) -> bool:
        """Equal to another column with the same rows, or to a list/tuple of the same strings."""
        if isinstance(other, StringColumn):
            return self.data == other.data and np.array_equal(self.offsets, other.offsets)
        if isinstance(other, (list, tuple)):
            return len(other) == len(self) and all(a == b for a, b in zip(self, other, strict=True))
        return NotImplemented

    __hash__ = None  # type: ignore[assignment]  # mutable-looking sequence semantics, like list

    def __repr__(self) -> str:
        shown = ", ".join(repr(s) for s in self[:3]) if len(self) else ""
        more = f", ... ({len(self)} rows)" if len(self) > 3 else ""
        return f"StringColumn([{shown}{more}])"

    def take(self, rows: np.ndarray | Sequence[int]) -> StringColumn:
        """The rows at ``rows`` (integer positions or a boolean mask), in that order."""
        rows = np.asarray(rows)
        if rows.dtype == bool:
            rows = np.flatnonzero(rows)
        rows = rows.astype(np.int64, copy=False)
        if len(rows) and (rows.min() < 0 or rows.max() >= len(self)):
            raise IndexError(f"row index out of range for {len(self)} rows")
        data, offsets = take_ragged(np.frombuffer(self.data, dtype=np.uint8), self.offsets, rows)
        return StringColumn(data.tobytes(), offsets)

    @property
    def nbytes(self) -> int:
        return len(self.data) + self.offsets.nbytes

    def hashes(self) -> np.ndarray:
        """A 64-bit hash of each row (this process's ``hash`` of its bytes): equal rows, equal hashes."""
        data, out = self.data, np.empty(len(self), dtype=np.int64)
        for a in range(0, len(self), TAKE_CHUNK_ROWS):  # offsets as Python ints a chunk at a time
            ends = self.offsets[a : a + TAKE_CHUNK_ROWS + 1].tolist()
            out[a : a + len(ends) - 1] = [
                row_hash(data[x:y]) for x, y in zip(ends[:-1], ends[1:], strict=True)
            ]
        return out

    def prefixes(self, separator: str) -> StringColumn:
        """Each row up to its first ``separator`` (one ASCII character), or the whole row where it has none."""
        sep = separator.encode("ascii")
        if len(sep) != 1:
            raise ValueError(f"separator must be one ASCII character, not {separator!r}")
        buf = np.frombuffer(self.data, dtype=np.uint8)
        at = np.flatnonzero(buf == sep[0])
        starts, ends = self.offsets[:-1], self.offsets[1:]
        k = np.searchsorted(at, starts)  # the first separator at or after each row's start
        first = at[np.minimum(k, len(at) - 1)] if len(at) else ends
        cut = np.where((k < len(at)) & (first < ends), first, ends)
        data, offsets = take_spans(buf, starts, cut)
        return StringColumn(data.tobytes(), offsets)

    def codes(self) -> tuple[np.ndarray, StringColumn]:
        """An int64 code for each row (equal rows, equal codes; numbered in order of first appearance) and
        the distinct rows (``distinct[codes[i]] == self[i]``). Rows are grouped by hash, then checked by
        their bytes; only a hash collision falls back to grouping the decoded strings."""
        h = self.hashes()
        _, first, inverse = np.unique(h, return_index=True, return_inverse=True)
        order = np.argsort(first, kind="stable")
        rank = np.empty(len(order), dtype=np.int64)
        rank[order] = np.arange(len(order), dtype=np.int64)
        codes = rank[inverse.reshape(-1)]
        distinct = self.take(first[order])
        if distinct.take(codes) == self:
            return codes, distinct
        index: dict[str, int] = {}  # two different rows share a hash
        codes = np.fromiter((index.setdefault(s, len(index)) for s in self), dtype=np.int64, count=len(self))
        return codes, StringColumn.from_strings(index)

    def repeated(self) -> np.ndarray:
        """Boolean mask of the rows equal to an earlier row (the first of equal rows is not marked).

        Rows are compared by hash first (8 bytes per row instead of a set of every string); only rows whose
        hash repeats are compared by their bytes.
        """
        h = self.hashes()
        _, inverse, counts = np.unique(h, return_inverse=True, return_counts=True)
        mask = np.zeros(len(self), dtype=bool)
        seen: set[bytes] = set()
        for i in np.flatnonzero(counts[inverse] > 1).tolist():
            raw = self._raw(i)
            if raw in seen:
                mask[i] = True
            seen.add(raw)
        return mask

    def _raw(self, i: int) -> bytes:
        return self.data[self.offsets[i] : self.offsets[i + 1]]


class RowIndex(Mapping[str, int]):
    """The row of each string of a :class:`StringColumn`, like ``{s: n for n, s in enumerate(column)}`` (the
    last of repeated strings wins) but 16 bytes a row: sorted hashes and their rows, each hit checked by its
    bytes. A million step ids take 16 MB instead of a ~130 MB dict."""

    __slots__ = ("_column", "_order", "_sorted")

    def __init__(self, column: StringColumn) -> None:
        h = column.hashes()
        self._column = column
        self._order = np.argsort(h, kind="stable")
        self._sorted = h[self._order]

    def __getitem__(self, key: str) -> int:
        if isinstance(key, str):
            raw = key.encode("utf-8")
            h = row_hash(raw)
            a, b = np.searchsorted(self._sorted, h, "left"), np.searchsorted(self._sorted, h, "right")
            for k in range(int(b) - 1, int(a) - 1, -1):  # stable sort: the last row of equal hashes first
                row = int(self._order[k])
                if self._column._raw(row) == raw:
                    return row
        raise KeyError(key)

    def __iter__(self) -> Iterator[str]:
        return iter(self._column)

    def __len__(self) -> int:
        return len(self._column)


class StringColumnBuilder:
    """Appends strings into a growing buffer; :meth:`build` freezes it into a :class:`StringColumn`."""

    def __init__(self) -> None:
        self._data = bytearray()
        self._ends: list[int] = []  # one int per row while building (ints < 2**30 are cached-size small)
        self._end_parts: list[np.ndarray] = []

    def append(self, s: str) -> None:
        self._data += s.encode("utf-8")
        self._ends.append(len(self._data))
        if len(self._ends) >= 65536:
            self._end_parts.append(np.asarray(self._ends, dtype=np.int64))
            self._ends.clear()

    def __len__(self) -> int:
        return sum(map(len, self._end_parts)) + len(self._ends)

    def build(self) -> StringColumn:
        ends = np.concatenate([*self._end_parts, np.asarray(self._ends, dtype=np.int64)])
        offsets = np.zeros(len(ends) + 1, dtype=np.int64)
        offsets[1:] = ends
        data = bytes(self._data)
        self._data, self._ends, self._end_parts = bytearray(), [], []
        return StringColumn(data, offsets)
