"""Client-side fusion of ranked hit lists: reciprocal rank fusion (RRF) and a weighted sum of min-max
normalised scores (linear)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any


def _fused(contributions: Iterable[tuple[dict[str, Any], float]], k: int) -> list[dict[str, Any]]:
    """Sum each ``_id``'s contributions; the top ``k`` hits (the first occurrence of each ``_id``), ties in
    first-seen order, with ``_score`` replaced by the sum."""
    scores: dict[str, float] = {}
    first: dict[str, dict[str, Any]] = {}
    for hit, value in contributions:
        _id = hit["_id"]
        if _id not in first:  # dicts keep insertion order: the first-seen order
            first[_id] = hit
            scores[_id] = 0.0
        scores[_id] += value
    ranked = sorted(first, key=lambda i: -scores[i])  # stable: ties stay in first-seen order
    return [{**first[i], "_score": scores[i]} for i in ranked[:k]]


def rrf_fuse(
    lists: Sequence[Sequence[dict[str, Any]]], k: int, rank_constant: int = 60
) -> list[dict[str, Any]]:
    """Fuse hit lists by ``sum(1 / (rank_constant + rank))``; ties keep first-seen order. Returns top ``k``
    hits (the first occurrence of each ``_id``) with ``_score`` replaced by the fused score."""
    return _fused(
        ((hit, 1.0 / (rank_constant + rank)) for hits in lists for rank, hit in enumerate(hits, start=1)),
        k,
    )


def minmax_scores(hits: Sequence[dict[str, Any]]) -> list[float]:
    """Each hit's ``_score`` scaled to [0, 1] within its list (its lowest 0, its highest 1); a list whose
    scores are all equal scores 1 throughout. The ``minmax`` normalizer of Elasticsearch's ``linear``
    retriever, over the same window."""
    scores = [float(h["_score"]) for h in hits]
    if not scores:
        return []
    lo, hi = min(scores), max(scores)
    if hi <= lo:
        return [1.0] * len(scores)
    return [(s - lo) / (hi - lo) for s in scores]


def linear_fuse(
    lists: Sequence[Sequence[dict[str, Any]]], weights: Sequence[float], k: int
) -> list[dict[str, Any]]:
    """Fuse hit lists by ``sum(weight * minmax(score))``, a hit missing from a list adding 0 for it (the
    ``linear`` retriever with ``normalizer: minmax``); ties keep first-seen order. Returns the top ``k``
    hits (the first occurrence of each ``_id``) with ``_score`` replaced by the fused score."""
    if len(weights) != len(lists):
        raise ValueError(f"{len(lists)} hit lists need {len(lists)} weights, got {len(weights)}")
    return _fused(
        (
            (hit, weight * norm)
            for hits, weight in zip(lists, weights, strict=True)
            for hit, norm in zip(hits, minmax_scores(hits), strict=True)
        ),
        k,
    )
