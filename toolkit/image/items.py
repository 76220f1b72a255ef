"""The photos an image-feature run encodes: ``(step_id, path)`` items, held as two string columns."""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Sequence
from itertools import islice
from pathlib import Path
from typing import overload

import numpy as np

from toolkit.data.columns import StringColumn, StringColumnBuilder


class PhotoItems(Sequence[tuple[str, Path]]):
    """Item ``i`` is ``(ids[i], Path(paths[i]))``; a slice or an integer array gives other ``PhotoItems``.

    Built from any iterable of pairs with :meth:`of`; :func:`toolkit.stages.read.photo_items` builds it from
    a step table's columns without a Python object per photo.
    """

    __slots__ = ("ids", "paths")

    def __init__(self, ids: StringColumn, paths: StringColumn) -> None:
        if len(ids) != len(paths):
            raise ValueError(f"{len(ids)} step ids but {len(paths)} photo paths")
        self.ids, self.paths = ids, paths

    @classmethod
    def of(cls, items: Iterable[tuple[str, Path | str]]) -> PhotoItems:
        """``items`` as columns (returned as is when already ``PhotoItems``); :class:`ValueError` naming the
        first item that is not a ``(step id, path)`` pair, or whose step id is empty, has a line break or
        repeats an earlier one."""
        if isinstance(items, PhotoItems):
            out = items
        else:
            ids, paths = StringColumnBuilder(), StringColumnBuilder()
            for n, item in enumerate(items):
                if not isinstance(item, (tuple, list)) or len(item) != 2:
                    raise ValueError(f"item {n}: expected (step_id, path), got {item!r}")
                sid = item[0]
                if not isinstance(sid, str):
                    raise ValueError(f"item {n}: invalid step id {sid!r}")
                ids.append(sid)
                paths.append(str(item[1]))
            out = cls(ids.build(), paths.build())
        out.check()
        return out

    def check(self) -> None:
        """:class:`ValueError` naming the first empty, multi-line or repeated step id."""
        offsets = self.ids.offsets
        empty = np.flatnonzero(offsets[1:] == offsets[:-1])
        if empty.size:
            raise ValueError(f"item {int(empty[0])}: invalid step id ''")
        if b"\n" in self.ids.data or b"\r" in self.ids.data:
            n = next(i for i, s in enumerate(self.ids) if "\n" in s or "\r" in s)
            raise ValueError(f"item {n}: invalid step id {self.ids[n]!r}")
        repeated = np.flatnonzero(self.ids.repeated())
        if repeated.size:
            n = int(repeated[0])
            raise ValueError(f"item {n}: duplicate step id {self.ids[n]!r}")

    def __len__(self) -> int:
        return len(self.ids)

    @overload
    def __getitem__(self, key: int) -> tuple[str, Path]: ...

    @overload
    def __getitem__(self, key: slice | np.ndarray) -> PhotoItems: ...

    def __getitem__(self, key: int | slice | np.ndarray) -> tuple[str, Path] | PhotoItems:
        if isinstance(key, (int, np.integer)):
            return self.ids[key], Path(self.paths[key])
        return PhotoItems(self.ids[key], self.paths[key])

    def __iter__(self) -> Iterator[tuple[str, Path]]:
        for sid, path in zip(self.ids, self.paths, strict=True):
            yield sid, Path(path)

    def canonical_json_chunks(self, chunk: int = 65536) -> Iterator[bytes]:
        """The canonical JSON of ``[[step_id, path], ...]`` (what :func:`toolkit.fingerprint.fingerprint`
        hashes for that list), in pieces, without building the list."""
        yield b"["
        pairs = zip(self.ids, self.paths, strict=True)
        first = True
        while True:
            part = [
                json.dumps([sid, path], ensure_ascii=False, separators=(",", ":"))
                for sid, path in islice(pairs, chunk)
            ]
            if not part:
                break
            yield (("" if first else ",") + ",".join(part)).encode()
            first = False
        yield b"]"
