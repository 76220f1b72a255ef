"""A vector set on disk: ``vectors.npy`` (float32 [N, D]) + ``ids.txt`` + ``meta.json``.

Every stage that produces vectors (step vectors, image features, projected embeddings) writes one,
so stages can be run, cached and tested alone. Step ids are ``<recipe_id>:<position>``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from toolkit.errors import ModelDirError

VECTORS = "vectors.npy"
IDS = "ids.txt"
META = "meta.json"


@dataclass
class VectorSet:
    """Row ``i`` of ``vectors`` belongs to ``ids[i]``; ``meta`` says what produced it (fingerprints, dims)."""

    ids: list[str]
    vectors: np.ndarray
    meta: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.vectors.ndim != 2 or self.vectors.shape[0] != len(self.ids):
            raise ValueError(f"vectors shape {self.vectors.shape} does not match {len(self.ids)} ids")

    @property
    def dim(self) -> int:
        return int(self.vectors.shape[1])

    def index(self) -> dict[str, int]:
        return {i: n for n, i in enumerate(self.ids)}


def save_vector_set(directory: str | Path, ids: list[str], vectors: np.ndarray, meta: dict[str, Any]) -> Path:
    """Write a vector set atomically enough for our use (ids and meta after the array)."""
    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    arr = np.ascontiguousarray(vectors, dtype=np.float32)
    if arr.ndim != 2 or arr.shape[0] != len(ids):
        raise ValueError(f"vectors shape {arr.shape} does not match {len(ids)} ids")
    if any("\n" in i for i in ids):
        raise ValueError("ids must not contain newlines")
    np.save(d / VECTORS, arr)
    (d / IDS).write_text("".join(f"{i}\n" for i in ids), encoding="utf-8")
    full_meta = {**meta, "count": len(ids), "dim": int(arr.shape[1])}
    (d / META).write_text(json.dumps(full_meta, ensure_ascii=False, indent=2), encoding="utf-8")
    return d


def load_vector_set(directory: str | Path, mmap: bool = True) -> VectorSet:
    """Load a vector set (memory-mapped by default); a clear error when files are missing."""
    d = Path(directory)
    missing = [n for n in (VECTORS, IDS, META) if not (d / n).is_file()]
    if missing:
        raise ModelDirError(f"vector set {d} is incomplete: missing {', '.join(missing)}")
    vectors = np.load(d / VECTORS, mmap_mode="r" if mmap else None)
    ids = (d / IDS).read_text(encoding="utf-8").splitlines()
    meta = json.loads((d / META).read_text(encoding="utf-8"))
    return VectorSet(ids=ids, vectors=vectors, meta=meta)


def align(a: VectorSet, b: VectorSet) -> tuple[list[str], np.ndarray, np.ndarray]:
    """Rows of ``a`` and ``b`` that share an id, in ``a``'s order."""
    bi = b.index()
    rows_a, rows_b, ids = [], [], []
    for n, i in enumerate(a.ids):
        m = bi.get(i)
        if m is not None:
            rows_a.append(n)
            rows_b.append(m)
            ids.append(i)
    return ids, np.asarray(a.vectors[rows_a]), np.asarray(b.vectors[rows_b])
