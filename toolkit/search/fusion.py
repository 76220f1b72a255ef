"""Client-side reciprocal rank fusion (RRF) of ranked hit lists."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any


def rrf_fuse(
    lists: Sequence[Sequence[dict[str, Any]]], k: int, rank_constant: int = 60
) -> list[dict[str, Any]]:
    """Fuse hit lists by ``sum(1 / (rank_constant + rank))``; ties keep first-seen order. Returns top ``k``
    hits (the first occurrence of each ``_id``) with ``_score`` replaced by the fused score."""
    scores: dict[str, float] = {}
    first: dict[str, dict[str, Any]] = {}
    order: list[str] = []
    for hits in lists:
        for rank, hit in enumerate(hits, start=1):
            _id = hit["_id"]
            if _id not in first:
                first[_id] = hit
                order.append(_id)
                scores[_id] = 0.0
            scores[_id] += 1.0 / (rank_constant + rank)
    ranked = sorted(order, key=lambda i: -scores[i])  # stable: ties stay in first-seen order
    return [{**first[i], "_score": scores[i]} for i in ranked[:k]]
