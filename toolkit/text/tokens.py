"""Token bags: each step's known Word2Vec token ids, CSR-style, on disk next to its step vector.

``ids[offsets[i]:offsets[i + 1]]`` are the vocabulary rows of step ``i``'s in-vocabulary tokens (in order,
repeats kept). A text tower that fine-tunes the word vectors (``text_tower="bag"``) reads these instead of
the fixed Word2Vec step means; both are written by the text stage, row for row.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from toolkit.atomic import atomic_path
from toolkit.data.columns import take_ragged
from toolkit.errors import ModelDirError

TOKEN_IDS = "token_ids.npy"
TOKEN_OFFSETS = "token_offsets.npy"
#: per step, how many of its words the Word2Vec model lacks (dropped from its bag): what a query with an
#: unknown word looks like, for choices made on validation steps (toolkit.mapping.grounding)
TOKEN_UNKNOWN = "token_unknown.npy"
#: Bags gathered at a time by :meth:`TokenBags.take`.
TAKE_CHUNK_ROWS = 65536


@dataclass
class TokenBags:
    """``len(offsets) - 1`` bags of token ids (int32 ids, int64 offsets starting at 0)."""

    ids: np.ndarray
    offsets: np.ndarray

    def __post_init__(self) -> None:
        self.ids = np.asarray(self.ids)
        self.offsets = np.asarray(self.offsets, dtype=np.int64)
        if self.ids.ndim != 1 or self.offsets.ndim != 1 or len(self.offsets) < 1:
            raise ValueError("token ids and offsets must be 1-D and offsets non-empty")
        if self.offsets[0] != 0 or self.offsets[-1] != len(self.ids) or (np.diff(self.offsets) < 0).any():
            raise ValueError("token offsets must start at 0, be non-decreasing and end at len(ids)")

    @classmethod
    def from_lists(cls, token_ids: Sequence[Sequence[int]]) -> TokenBags:
        lengths = np.fromiter(map(len, token_ids), dtype=np.int64, count=len(token_ids))
        offsets = np.zeros(len(token_ids) + 1, dtype=np.int64)
        np.cumsum(lengths, out=offsets[1:])
        flat = np.fromiter((i for bag in token_ids for i in bag), dtype=np.int64, count=int(offsets[-1]))
        return cls(flat.astype(np.int32), offsets)

    def __len__(self) -> int:
        return len(self.offsets) - 1

    @property
    def lengths(self) -> np.ndarray:
        return np.diff(self.offsets)

    def max_id(self) -> int:
        return int(self.ids.max()) if len(self.ids) else -1

    def check(self, vocab: int, what: str = "token") -> None:
        """Raise :class:`ValueError` unless every bag is non-empty and every id is a row of ``vocab`` vectors."""
        empty = np.flatnonzero(self.lengths == 0)
        if empty.size:
            raise ValueError(f"{what} bag {int(empty[0])} is empty")
        if len(self.ids) and (self.max_id() >= vocab or int(np.min(self.ids)) < 0):
            raise ValueError(f"{what} ids must lie in [0, {vocab}) (the word vectors' rows)")

    def bag(self, row: int) -> np.ndarray:
        return np.asarray(self.ids[self.offsets[row] : self.offsets[row + 1]], dtype=np.int64)

    def take(self, rows: np.ndarray | Sequence[int]) -> TokenBags:
        """The bags at ``rows`` (integer positions or a boolean mask), in that order, in memory."""
        rows = np.asarray(rows)
        if rows.dtype == bool:
            rows = np.flatnonzero(rows)
        rows = rows.astype(np.int64, copy=False)
        out, offsets = take_ragged(self.ids, self.offsets, rows, TAKE_CHUNK_ROWS)
        return TokenBags(out, offsets)

    def __getitem__(self, key: slice | np.ndarray | Sequence[int]) -> TokenBags:
        if isinstance(key, slice):
            return self.take(np.arange(len(self))[key])
        return self.take(key)


def save_token_bags(directory: str | Path, bags: TokenBags) -> None:
    """Write ``token_ids.npy`` and ``token_offsets.npy`` into ``directory`` (each atomically)."""
    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    for name, arr in ((TOKEN_IDS, bags.ids.astype(np.int32)), (TOKEN_OFFSETS, bags.offsets)):
        with atomic_path(d / name) as tmp, open(tmp, "wb") as fh:
            np.save(fh, arr)


def save_unknown_counts(directory: str | Path, counts: np.ndarray) -> None:
    """Write :data:`TOKEN_UNKNOWN` (int32, one count per step) into ``directory`` atomically."""
    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    with atomic_path(d / TOKEN_UNKNOWN) as tmp, open(tmp, "wb") as fh:
        np.save(fh, np.asarray(counts, dtype=np.int32))


def load_unknown_counts(directory: str | Path, rows: int) -> np.ndarray | None:
    """The unknown-word counts of a step-vector set's ``rows`` steps; None for sets written before them."""
    path = Path(directory) / TOKEN_UNKNOWN
    if not path.is_file():
        return None
    counts = np.load(path)
    if counts.shape != (rows,):
        raise ModelDirError(f"{path}: {len(counts)} unknown-word counts for {rows} step vectors")
    return counts


def has_token_bags(directory: str | Path) -> bool:
    d = Path(directory)
    return (d / TOKEN_IDS).is_file() and (d / TOKEN_OFFSETS).is_file()


def load_token_bags(directory: str | Path, rows: int | None = None) -> TokenBags:
    """The token bags of a step-vector set (memory-mapped ids); ``rows``: the count they must have."""
    d = Path(directory)
    if not has_token_bags(d):
        raise ModelDirError(
            f"step vectors in {d} have no token ids ({TOKEN_IDS}, {TOKEN_OFFSETS}): they were written by an "
            "older version; rerun `jrs step-vectors` (or `jrs build`) to write them"
        )
    bags = TokenBags(np.load(d / TOKEN_IDS, mmap_mode="r"), np.load(d / TOKEN_OFFSETS))
    if rows is not None and len(bags) != rows:
        raise ModelDirError(f"{d}: {len(bags)} token bags for {rows} step vectors")
    return bags
