"""Graded relevance of a text->photo ranking: how many of the top ``k`` photos show the query's main
ingredient, its cooking method, or both.

Exact-photo recall says little over a gallery where many photos show the same ingredient and method;
graded precision@k counts every hit that shares a label with the query. Labels are plain dicts per
item (``{"main": "玉ねぎ", "method": "炒める"}``); a missing or ``None`` label is never relevant.
``chance`` is what a random ranking gets: per query, the share of the gallery sharing the label.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

#: criterion -> the label keys that must all match
CRITERIA: dict[str, tuple[str, ...]] = {
    "main": ("main",),
    "method": ("method",),
    "both": ("main", "method"),
}

Labels = Mapping[str, Any]


def _key(labels: Labels, keys: tuple[str, ...]) -> tuple[Any, ...] | None:
    values = tuple(labels.get(k) for k in keys)
    return None if any(v is None for v in values) else values


def graded_precision(
    query_labels: Sequence[Labels],
    ranked: Sequence[Sequence[Labels]],
    gallery_labels: Sequence[Labels],
    k: int = 10,
) -> dict[str, Any]:
    """Mean precision@k per criterion of ranked hit labels, next to chance over ``gallery_labels``.

    ``ranked[q]`` holds the labels of query ``q``'s hits, best first (only the first ``k`` count; a
    shorter list is scored on ``k`` all the same: missing hits are not relevant). A gallery of fewer than
    ``k`` items is scored on its size (what a ranking of all of it can reach; chance is on the same scale).
    Queries whose own label is missing for a criterion are left out of that criterion.
    """
    if int(k) != k or k < 1:
        raise ValueError(f"k must be a positive integer, got {k}")
    if len(query_labels) != len(ranked):
        raise ValueError(f"{len(query_labels)} queries but {len(ranked)} ranked lists")
    if not gallery_labels:
        raise ValueError("graded precision needs a non-empty gallery")
    out: dict[str, Any] = {"k": int(k)}
    depth = min(int(k), len(gallery_labels))
    for name, keys in CRITERIA.items():
        counts = Counter(_key(g, keys) for g in gallery_labels)
        precisions, chances = [], []
        for q, hits in zip(query_labels, ranked, strict=True):
            want = _key(q, keys)
            if want is None:
                continue
            precisions.append(sum(1 for h in list(hits)[:k] if _key(h, keys) == want) / depth)
            chances.append(counts.get(want, 0) / len(gallery_labels))
        out[name] = float(np.mean(precisions)) if precisions else None
        out[f"{name}_chance"] = float(np.mean(chances)) if chances else None
        out[f"{name}_queries"] = len(precisions)
    return out


def top_k_indices(scores: np.ndarray, k: int) -> np.ndarray:
    """``[Q, min(k, N)]`` indices of the highest scores per row, best first (ties: lower index first, also
    for the ties at the ``k``-th place: which of equal scores make the cut never depends on the partition)."""
    scores = np.asarray(scores)
    q, n = scores.shape
    kk = min(int(k), n)
    if kk >= n:
        return np.argsort(-scores, axis=1, kind="stable")[:, :kk]
    # the k-th highest score of each row; every higher score is in, and the equal ones by index
    kth = -np.partition(-scores, kk - 1, axis=1)[:, kk - 1 : kk]
    above = scores > kth
    tied = scores == kth
    need = kk - above.sum(axis=1, keepdims=True)
    chosen = above | (tied & (np.cumsum(tied, axis=1) <= need))
    part = np.nonzero(chosen)[1].reshape(q, kk)  # row by row, in index order
    order = np.lexsort((part, -np.take_along_axis(scores, part, axis=1)), axis=1)
    return np.take_along_axis(part, order, axis=1)


def order_ranks(scores: np.ndarray, columns: Sequence[int] | np.ndarray) -> np.ndarray:
    """1-based position of column ``columns[r]`` in row ``r``'s ranking by :func:`top_k_indices` (score
    descending, ties by lower index): rank ``<= k`` exactly when the column is in that row's top ``k``."""
    scores = np.asarray(scores)
    cols = np.asarray(columns, dtype=np.int64)
    own = scores[np.arange(scores.shape[0]), cols][:, None]
    earlier = np.arange(scores.shape[1])[None, :] < cols[:, None]
    return ((scores > own) | ((scores == own) & earlier)).sum(axis=1).astype(np.int64) + 1


def graded_from_scores(
    scores: np.ndarray, query_labels: Sequence[Labels], gallery_labels: Sequence[Labels], k: int = 10
) -> dict[str, Any]:
    """:func:`graded_precision` of the ranking by a dense ``[queries, gallery]`` score matrix."""
    scores = np.asarray(scores)
    if scores.shape != (len(query_labels), len(gallery_labels)):
        raise ValueError(
            f"scores {scores.shape} do not match {len(query_labels)} queries x {len(gallery_labels)} photos"
        )
    top = top_k_indices(scores, k)
    ranked = [[gallery_labels[j] for j in row] for row in top]
    return graded_precision(query_labels, ranked, gallery_labels, k)


def tag_labels(tags: Sequence[str]) -> dict[str, str]:
    """``main:`` / ``method:`` / ``dish:`` recipe tags as labels (``{"main": ..., "method": ...}``)."""
    out: dict[str, str] = {}
    for tag in tags:
        head, sep, value = tag.partition(":")
        if sep and head in ("main", "method", "dish") and value and head not in out:
            out[head] = value
    return out
