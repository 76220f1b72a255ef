"""Cross-modal retrieval metrics: Recall@K, median rank and MRR, full-set and Recipe1M-style 1k pools.

Query ``i``'s one positive is gallery item ``i``. Scores are cosine similarities (dot products of
L2-normalised rows). The rank of the positive counts every gallery item scoring *at least* as high,
itself included, so ties are counted pessimistically: a model that scores everything equal gets rank N.
Scores within ``TIE_TOLERANCE`` of the positive's count as ties, so float32 rounding noise (identical rows
can score 1e-7 apart depending on where they sit in a matrix product) never breaks a tie by chance.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from toolkit.errors import VectorError

DEFAULT_KS: tuple[int, ...] = (1, 5, 10)
DIRECTIONS = ("text_to_image", "image_to_text")
#: Most rows of queries scored per matrix product.
BLOCK = 2048
#: Most scores held per block (32 MB of float32): with a large gallery the block has fewer rows, so the
#: memory of ranking stays flat in the collection size instead of growing with ``block x gallery``.
BLOCK_SCORES = 1 << 23
#: Cosine scores closer than this to the positive's score are ties (float32 noise is ~1e-7).
TIE_TOLERANCE = 1e-6


def l2_normalize(x: np.ndarray, what: str = "vectors") -> np.ndarray:
    """Float32 copy with unit-length rows; a clear error for non-finite or all-zero rows."""
    x = np.asarray(x, dtype=np.float32)
    if x.ndim != 2:
        raise VectorError(f"{what} must be a 2-D [N, D] array, got shape {x.shape}")
    finite = np.isfinite(x).all(axis=1)
    if not finite.all():
        raise VectorError(f"{what} row {int(np.flatnonzero(~finite)[0])} contains NaN or infinite values")
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    if (norms == 0).any():
        raise VectorError(
            f"{what} row {int(np.flatnonzero(norms[:, 0] == 0)[0])} is all zeros (no direction)"
        )
    return x / norms


def ranks_from_scores(scores: np.ndarray, offset: int = 0) -> np.ndarray:
    """1-based pessimistic rank of each row's positive, which sits in column ``offset + row``."""
    scores = np.asarray(scores)
    n = scores.shape[0]
    if scores.ndim != 2 or scores.shape[1] < offset + n:
        raise ValueError(
            f"score matrix {scores.shape} has no positive column for every row (offset {offset})"
        )
    pos = scores[np.arange(n), offset + np.arange(n)]
    return (scores >= pos[:, None] - TIE_TOLERANCE).sum(axis=1).astype(np.int64)


def query_block(gallery_rows: int, block: int = BLOCK) -> int:
    """Query rows per matrix product: at most ``block``, and at most :data:`BLOCK_SCORES` scores."""
    return max(1, min(block, BLOCK_SCORES // max(1, gallery_rows)))


def positive_ranks(query: np.ndarray, gallery: np.ndarray, block: int = BLOCK) -> np.ndarray:
    """Pessimistic rank of gallery ``i`` for query ``i``, via blocked matrix products (no per-query loop);
    a block holds at most :data:`BLOCK_SCORES` scores (:func:`query_block`)."""
    if query.ndim != 2 or gallery.ndim != 2 or query.shape[1] != gallery.shape[1]:
        raise ValueError(f"query {query.shape} and gallery {gallery.shape} must be [N, D] with the same D")
    if gallery.shape[0] < query.shape[0]:
        raise ValueError(f"gallery has {gallery.shape[0]} rows, fewer than the {query.shape[0]} queries")
    ranks = np.empty(query.shape[0], dtype=np.int64)
    block = query_block(gallery.shape[0], block)
    for start in range(0, query.shape[0], block):
        scores = query[start : start + block] @ gallery.T
        ranks[start : start + scores.shape[0]] = ranks_from_scores(scores, offset=start)
    return ranks


def metrics_from_ranks(ranks: np.ndarray, ks: Sequence[int] = DEFAULT_KS) -> dict[str, float]:
    """``R@K`` (fraction of queries with rank <= K), ``MedR``, ``MRR`` and the query count ``n``."""
    ranks = np.asarray(ranks)
    if ranks.ndim != 1 or ranks.size == 0 or (ranks < 1).any():
        raise ValueError("ranks must be a non-empty 1-D array of 1-based ranks")
    out: dict[str, float] = {f"R@{k}": float(np.mean(ranks <= k)) for k in check_ks(ks)}
    out["MedR"] = float(np.median(ranks))
    out["MRR"] = float(np.mean(1.0 / ranks))
    out["n"] = int(ranks.size)
    return out


def retrieval_metrics(
    query: np.ndarray, gallery: np.ndarray, ks: Sequence[int] = DEFAULT_KS, normalize: bool = True
) -> dict[str, float]:
    """Metrics of query ``i`` -> gallery ``i`` retrieval over the whole gallery (rows L2-normalised first)."""
    if normalize:
        query, gallery = l2_normalize(query, "query"), l2_normalize(gallery, "gallery")
    return metrics_from_ranks(positive_ranks(np.asarray(query), np.asarray(gallery)), ks)


def draw_pools(n: int, pool: int = 1000, draws: int = 10, seed: int = 0) -> list[np.ndarray]:
    """Index sets of the pooled protocol: ``draws`` seeded samples of ``pool`` pairs, or all ``n`` once."""
    if pool < 2 or draws < 1:
        raise ValueError(f"pool must be >= 2 and draws >= 1, got pool={pool}, draws={draws}")
    if n <= pool:
        return [np.arange(n)]
    rng = np.random.default_rng(seed)
    return [np.sort(rng.choice(n, size=pool, replace=False)) for _ in range(draws)]


def _both_directions(text: np.ndarray, image: np.ndarray, ks: Sequence[int]) -> dict[str, dict[str, float]]:
    return {
        "text_to_image": retrieval_metrics(text, image, ks, normalize=False),
        "image_to_text": retrieval_metrics(image, text, ks, normalize=False),
    }


def _check_paired(text: np.ndarray, image: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    text, image = l2_normalize(text, "text embeddings"), l2_normalize(image, "image embeddings")
    if text.shape != image.shape:
        raise ValueError(f"text {text.shape} and image {image.shape} embeddings must be paired row by row")
    if text.shape[0] < 2:
        raise ValueError(f"retrieval needs at least 2 pairs, got {text.shape[0]}")
    return text, image


def pooled_metrics(
    text: np.ndarray,
    image: np.ndarray,
    pool: int = 1000,
    draws: int = 10,
    seed: int = 0,
    ks: Sequence[int] = DEFAULT_KS,
) -> dict[str, Any]:
    """The Recipe1M protocol: metrics on ``pool``-pair subsets averaged over ``draws`` seeded draws.

    Both directions are reported (``text_to_image``, ``image_to_text``) with their standard deviation
    over draws under ``std``. With fewer than ``pool`` pairs all pairs form a single pool, and ``note``
    says so.
    """
    text, image = _check_paired(text, image)
    return _pooled(text, image, draw_pools(text.shape[0], pool, draws, seed), pool, draws, seed, ks)


def _paired_len(text: Any, image: Any) -> int:
    if len(image) != len(text):
        raise ValueError(f"{len(text)} texts but {len(image)} images: they must be paired row by row")
    return len(text)


def pooled_metrics_of(
    embed_text: Callable[[Any], np.ndarray],
    embed_image: Callable[[Any], np.ndarray],
    text: Any,
    image: Any,
    pool: int = 1000,
    draws: int = 10,
    seed: int = 0,
    ks: Sequence[int] = DEFAULT_KS,
) -> dict[str, Any]:
    """:func:`pooled_metrics` of ``embed_text(text)`` and ``embed_image(image)``, embedding only the rows
    the pools read (at most ``pool x draws``, however many pairs there are).

    ``text`` and ``image`` are anything row-indexable by an integer array: arrays,
    :class:`~toolkit.vectorset.Rows` of memory-mapped vector sets, token bags.
    """
    n = _paired_len(text, image)
    pools = draw_pools(n, pool, draws, seed)
    rows = np.unique(np.concatenate(pools))
    t, i = _check_paired(embed_text(text[rows]), embed_image(image[rows]))
    local = [np.searchsorted(rows, p) for p in pools]
    return {**_pooled(t, i, local, pool, draws, seed, ks), "n": n}


def _pooled(
    text: np.ndarray,
    image: np.ndarray,
    pools: list[np.ndarray],
    pool: int,
    draws: int,
    seed: int,
    ks: Sequence[int],
) -> dict[str, Any]:
    per_draw = [_both_directions(text[idx], image[idx], ks) for idx in pools]
    n = int(text.shape[0])
    result: dict[str, Any] = {"protocol": "pooled", "n": n, "pool": int(len(pools[0]))}
    result["draws"] = len(pools)
    result["seed"] = seed
    result["std"] = {}
    for direction in DIRECTIONS:
        keys = [k for k in per_draw[0][direction] if k != "n"]
        values = {k: np.array([d[direction][k] for d in per_draw]) for k in keys}
        result[direction] = {k: float(v.mean()) for k, v in values.items()} | {"n": int(len(pools[0]))}
        result["std"][direction] = {k: float(v.std()) for k, v in values.items()}
    if len(pools) == 1 and len(pools[0]) < pool:
        result["note"] = (
            f"only {len(pools[0])} pairs: one pool of all pairs instead of {draws} draws of {pool}"
        )
    return result


def full_metrics(text: np.ndarray, image: np.ndarray, ks: Sequence[int] = DEFAULT_KS) -> dict[str, Any]:
    """Both directions ranked against the whole set (harder than pooled as the gallery grows)."""
    text, image = _check_paired(text, image)
    n = int(text.shape[0])
    return {"protocol": "full", "n": n, "pool": n, "draws": 1, **_both_directions(text, image, ks)}


#: Most pairs :func:`full_metrics_of` ranks against each other (a seeded sample of a larger set): ranking
#: is quadratic in the pairs, and a held-out split of a million-step collection has ~90k.
FULL_MAX_PAIRS = 10_000


def full_metrics_of(
    embed_text: Callable[[Any], np.ndarray],
    embed_image: Callable[[Any], np.ndarray],
    text: Any,
    image: Any,
    max_pairs: int = FULL_MAX_PAIRS,
    seed: int = 0,
    ks: Sequence[int] = DEFAULT_KS,
) -> dict[str, Any]:
    """:func:`full_metrics` of the embedded pairs, over at most ``max_pairs`` of them (a seeded sample,
    reported as ``sampled_from``), embedding only those."""
    n = _paired_len(text, image)
    rows = full_rows(n, max_pairs, seed)
    if rows is None:
        return full_metrics(embed_text(text), embed_image(image), ks)
    return {**full_metrics(embed_text(text[rows]), embed_image(image[rows]), ks), "sampled_from": n}


def full_rows(n: int, max_pairs: int = FULL_MAX_PAIRS, seed: int = 0) -> np.ndarray | None:
    """The rows :func:`full_metrics_of` ranks of ``n`` pairs: None for all of them (``n <= max_pairs``), else
    its seeded sample of ``max_pairs`` (sorted), so other methods can be ranked on the very same pairs."""
    if n <= max_pairs:
        return None
    return np.sort(np.random.default_rng(seed).choice(n, size=max_pairs, replace=False))


def check_ks(ks: Sequence[int]) -> list[int]:
    ks = list(ks)
    if not ks or any(int(k) != k or k < 1 for k in ks):
        raise ValueError(f"ks must be positive integers, got {ks}")
    return [int(k) for k in ks]


def _metric_rows(name: str, result: dict[str, Any]) -> list[tuple[str, str, dict[str, float]]]:
    directions = [d for d in DIRECTIONS if isinstance(result.get(d), dict)]
    if directions:
        return [(name, d.replace("_to_", "->"), result[d]) for d in directions]
    return [(name, "-", result)]


def _fmt(key: str, value: Any) -> str:
    if not isinstance(value, (int, float)):
        return "-"
    if key.startswith("R@"):
        return f"{100 * value:.1f}"
    if key == "MedR":
        return f"{value:.1f}"
    return f"{value:.3f}"


def metrics_table(results: dict[str, dict[str, Any]]) -> str:
    """Plain-text table, one row per method and direction; R@K in percent.

    Each value is either a per-direction result (``pooled_metrics``/``full_metrics``) or a flat metric
    dict (``retrieval_metrics``).
    """
    rows = [row for name, result in results.items() for row in _metric_rows(name, result)]
    if not rows:
        return "(no results)"
    keys = [k for k in rows[0][2] if k.startswith("R@")]
    keys += [k for k in ("MedR", "MRR") if any(k in r[2] for r in rows)]
    header = ["method", "direction", *[f"{k} %" if k.startswith("R@") else k for k in keys]]
    body = [[name, direction, *[_fmt(k, m.get(k)) for k in keys]] for name, direction, m in rows]
    widths = [max(len(line[c]) for line in [header, *body]) for c in range(len(header))]

    def line(cells: list[str]) -> str:
        left = [cells[c].ljust(widths[c]) for c in range(2)]
        right = [cells[c].rjust(widths[c]) for c in range(2, len(cells))]
        return "  ".join(left + right).rstrip()

    rule = "  ".join("-" * w for w in widths)
    return "\n".join([line(header), rule, *[line(b) for b in body]])


def is_figure(value: object) -> bool:
    """``value`` is a figure to print: a finite real number, numpy scalars included (NaN, ``inf``, None and
    booleans are not)."""
    return isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(value)
