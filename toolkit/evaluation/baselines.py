"""Reference points for the retrieval metrics: untrained towers, keyword overlap, and chance.

* **Random towers**: the trained architecture with seeded random weights (and the same input
  standardisation), evaluated exactly like the trained mapping. Anything a trained mapping scores
  must clearly beat this, or the training learned nothing.
* **Keyword overlap**: ranks gallery items by token overlap (BM25 or Jaccard) between the query tokens
  and the gallery item's *step text*. This is an oracle-ish text baseline: it sees the text written
  next to each photo, which a real image search does not have. It shows what a text-only system
  (e.g. plain Elasticsearch ``match`` on step text) would achieve, not a lower bound for images.
* **Chance**: the expected metrics of a random ranking (``R@K = K/N``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from toolkit.evaluation.metrics import (
    DEFAULT_KS,
    check_ks,
    draw_pools,
    full_metrics,
    metrics_from_ranks,
    pooled_metrics_of,
    ranks_from_scores,
)
from toolkit.mapping.config import MappingConfig
from toolkit.mapping.towers import TwoTower, input_stats
from toolkit.seeding import torch_seeded
from toolkit.vectorset import Rows

KEYWORD_METHODS = ("bm25", "jaccard")


def chance_metrics(n: int, ks: Sequence[int] = DEFAULT_KS) -> dict[str, float]:
    """Expected metrics when the positive's rank is uniform over ``1..n``."""
    if n < 1:
        raise ValueError(f"chance metrics need n >= 1, got {n}")
    out: dict[str, float] = {f"R@{k}": min(1.0, k / n) for k in check_ks(ks)}
    out["MedR"] = (n + 1) / 2
    out["MRR"] = float(np.sum(1.0 / np.arange(1, n + 1)) / n)
    out["n"] = n
    return out


def chance_result(n_pairs: int, pool: int | None = 1000, ks: Sequence[int] = DEFAULT_KS) -> dict[str, Any]:
    """Chance in the same shape as :func:`pooled_metrics` (``pool=None``: the full set)."""
    size = n_pairs if pool is None else min(pool, n_pairs)
    c = chance_metrics(size, ks)
    return {"protocol": "chance", "n": n_pairs, "pool": size, "text_to_image": c, "image_to_text": dict(c)}


def random_towers(
    arch: dict[str, Any], seed: int = 0, stats: dict[str, np.ndarray] | None = None
) -> TwoTower:
    """Untrained towers of architecture ``arch`` (see :meth:`TwoTower.arch`), seeded, global RNG untouched.

    ``stats`` (as from :meth:`TwoTower.get_input_stats`) sets the input standardisation so the
    comparison with a trained model differs only in the learned weights.
    """
    with torch_seeded(seed):
        model = TwoTower(**arch)
    if stats is not None:
        model.set_input_stats(stats["text_mean"], stats["text_std"], stats["image_mean"], stats["image_std"])
    return model.eval()


def untrained_arch(arch: dict[str, Any]) -> dict[str, Any]:
    """The architecture whose random weights are the untrained baseline of ``arch`` (a :meth:`TwoTower.arch`).

    An untrained bag text tower still has its Word2Vec vectors (:class:`~toolkit.mapping.towers.BagTower`
    starts from them), so it is exactly a mean tower with random MLP weights on the Word2Vec step mean.
    A linear branch (a CCA fitted on the training pairs) and a word grounding (classifiers fitted on them) are
    left out: they are not untrained.
    """
    dropped = ("text_tower", "vocab", "linear_dims", "linear_weight", "grounding_words", "grounding_share")
    return {k: v for k, v in arch.items() if k not in dropped}


def tower_arch(spec: dict[str, Any] | MappingConfig, text_dim: int, image_dim: int) -> dict[str, Any]:
    """Architecture dict from a :meth:`TwoTower.arch` dict or a :class:`MappingConfig` plus input dims."""
    if isinstance(spec, MappingConfig):
        keys = ("dim", "hidden", "dropout", "norm", "activation")
        return {"text_dim": text_dim, "image_dim": image_dim, **{k: getattr(spec, k) for k in keys}}
    arch = dict(spec)
    if (arch.get("text_dim"), arch.get("image_dim")) != (text_dim, image_dim):
        raise ValueError(
            f"architecture takes {arch.get('text_dim')}-d text and {arch.get('image_dim')}-d image inputs, "
            f"got {text_dim}-d and {image_dim}-d"
        )
    return arch


def random_tower_metrics(
    text: np.ndarray | Rows,
    image: np.ndarray | Rows,
    arch: dict[str, Any] | MappingConfig,
    seed: int = 0,
    stats: dict[str, np.ndarray] | None = None,
    pool: int | None = 1000,
    draws: int = 10,
    eval_seed: int = 0,
    ks: Sequence[int] = DEFAULT_KS,
) -> dict[str, Any]:
    """Embed paired raw features with random towers and evaluate (pooled, or full with ``pool=None``).

    ``arch`` is a trained model's :meth:`TwoTower.arch` or the :class:`MappingConfig` it was trained
    with. Without ``stats`` the standardisation statistics are computed from the given features.
    """
    if not hasattr(text, "gather"):  # Rows of memory-mapped vector sets are read block by block
        text, image = np.asarray(text), np.asarray(image)
    if text.ndim != 2 or image.ndim != 2:
        raise ValueError(f"features must be 2-D [N, D], got text {text.shape} and image {image.shape}")
    arch = tower_arch(arch, text.shape[1], image.shape[1])
    if stats is None:
        (tm, ts), (im, is_) = input_stats(text), input_stats(image)
        stats = {"text_mean": tm, "text_std": ts, "image_mean": im, "image_std": is_}
    model = random_towers(arch, seed, stats)
    if pool is None:
        return full_metrics(model.embed_text(text), model.embed_image(image), ks)
    embed = (model.embed_text, model.embed_image)
    return pooled_metrics_of(*embed, text, image, pool=pool, draws=draws, seed=eval_seed, ks=ks)


def _check_tokens(what: str, docs: Sequence[Sequence[str]]) -> None:
    for n, doc in enumerate(docs):
        if isinstance(doc, str) or not isinstance(doc, (list, tuple)):
            raise ValueError(f"{what} {n} must be a list of tokens, got {type(doc).__name__}")
        for tok in doc:
            if not isinstance(tok, str):
                raise ValueError(f"{what} {n} has a non-string token {tok!r}")


def _term_matrices(
    queries: Sequence[Sequence[str]], gallery: Sequence[Sequence[str]], method: str, k1: float, b: float
) -> tuple[Any, Any, np.ndarray, np.ndarray]:
    """Sparse query and gallery term matrices (gallery vocabulary) plus distinct-term counts per row."""
    from scipy import sparse  # scipy ships with gensim, a core dependency

    vocab: dict[str, int] = {}
    for doc in gallery:
        for tok in doc:
            vocab.setdefault(tok, len(vocab))

    def counts(docs: Sequence[Sequence[str]]) -> Any:
        rows, cols = [], []
        for r, doc in enumerate(docs):
            for tok in doc:
                c = vocab.get(tok)
                if c is not None:
                    rows.append(r)
                    cols.append(c)
        data = np.ones(len(rows), dtype=np.float64)
        m = sparse.csr_matrix((data, (rows, cols)), shape=(len(docs), max(1, len(vocab))))
        m.sum_duplicates()
        return m

    q, g = counts(queries), counts(gallery)
    if method == "jaccard":
        q.data[:] = 1.0
        g.data[:] = 1.0
        q_len = np.asarray([len(set(doc)) for doc in queries], dtype=np.float64)  # out-of-vocab tokens count
        g_len = np.asarray(g.sum(axis=1)).ravel()
        return q, g, q_len, g_len
    n_docs = g.shape[0]
    df = np.bincount(g.indices, minlength=g.shape[1]).astype(np.float64)
    idf = np.log1p((n_docs - df + 0.5) / (df + 0.5))  # Lucene's BM25 idf, always positive
    doc_len = np.asarray([len(doc) for doc in gallery], dtype=np.float64)
    avg = doc_len.mean() if doc_len.mean() > 0 else 1.0
    g = g.tocoo()
    tf = g.data
    norm = k1 * (1.0 - b + b * doc_len[g.row] / avg)
    g.data = idf[g.col] * tf * (k1 + 1.0) / (tf + norm)
    return q, g.tocsr(), np.zeros(0), np.zeros(0)


def _scores(q: Any, g: Any, q_len: np.ndarray, g_len: np.ndarray, method: str) -> np.ndarray:
    inter = np.asarray((q @ g.T).todense(), dtype=np.float64)
    if method != "jaccard":
        return inter
    union = q_len[:, None] + g_len[None, :] - inter
    return np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)


def keyword_scores(
    queries: Sequence[Sequence[str]],
    gallery: Sequence[Sequence[str]],
    method: str = "bm25",
    k1: float = 1.2,
    b: float = 0.75,
) -> np.ndarray:
    """Dense ``[len(queries), len(gallery)]`` overlap scores (BM25 with gallery statistics, or Jaccard)."""
    if method not in KEYWORD_METHODS:
        raise ValueError(f"method must be one of {KEYWORD_METHODS}, got {method!r}")
    _check_tokens("query", queries)
    _check_tokens("gallery item", gallery)
    q, g, q_len, g_len = _term_matrices(queries, gallery, method, k1, b)
    return _scores(q, g, q_len, g_len, method)


def keyword_metrics(
    queries: Sequence[Sequence[str]],
    gallery: Sequence[Sequence[str]],
    method: str = "bm25",
    pool: int | None = 1000,
    draws: int = 10,
    seed: int = 0,
    ks: Sequence[int] = DEFAULT_KS,
    block: int = 2048,
) -> dict[str, Any]:
    """Text->image metrics of the keyword baseline (query ``i``'s positive is gallery ``i``).

    Uses the same pools as :func:`pooled_metrics` for equal ``pool``/``draws``/``seed``; ``pool=None``
    ranks against the whole gallery. BM25 statistics come from the whole gallery. Only the
    ``text_to_image`` direction is reported: it is the only one a text search has.
    """
    if method not in KEYWORD_METHODS:
        raise ValueError(f"method must be one of {KEYWORD_METHODS}, got {method!r}")
    if len(queries) != len(gallery):
        raise ValueError(f"{len(queries)} queries but {len(gallery)} gallery items: they must be paired")
    if len(queries) < 2:
        raise ValueError(f"retrieval needs at least 2 pairs, got {len(queries)}")
    _check_tokens("query", queries)
    _check_tokens("gallery item", gallery)
    n = len(queries)
    q, g, q_len, g_len = _term_matrices(queries, gallery, method, k1=1.2, b=0.75)
    jac = method == "jaccard"
    result: dict[str, Any] = {"protocol": "full" if pool is None else "pooled", "n": n, "method": method}
    if pool is None:
        ranks = np.empty(n, dtype=np.int64)
        for start in range(0, n, block):
            rows = slice(start, min(n, start + block))
            s = _scores(q[rows], g, q_len[rows] if jac else q_len, g_len, method)
            ranks[rows] = ranks_from_scores(s, offset=start)
        result |= {"pool": n, "draws": 1, "text_to_image": metrics_from_ranks(ranks, ks)}
        return result
    pools = draw_pools(n, pool, draws, seed)
    per_draw = []
    for idx in pools:
        s = _scores(q[idx], g[idx], q_len[idx] if jac else q_len, g_len[idx] if jac else g_len, method)
        per_draw.append(metrics_from_ranks(ranks_from_scores(s), ks))
    keys = [k for k in per_draw[0] if k != "n"]
    mean = {k: float(np.mean([d[k] for d in per_draw])) for k in keys} | {"n": int(len(pools[0]))}
    result |= {"pool": int(len(pools[0])), "draws": len(pools), "text_to_image": mean}
    if n < pool:
        result["note"] = f"only {n} pairs: one pool of all pairs instead of {draws} draws of {pool}"
    return result
