"""The text search modes, declared once (no heavy imports: the CLI builds its choices from them)."""

from __future__ import annotations

#: mode -> what it does (the CLI's help and the docs say the same)
MODE_HELP = {
    "knn": "text -> photo vectors",
    "keyword": "BM25 on the step's tokens",
    "hybrid": "both in one request, Elasticsearch adds the boosted scores",
    "rrf": "reciprocal rank fusion of both lists",
    "linear": "both lists' scores min-max normalised, then summed with the boosts as weights",
}
TEXT_MODES = tuple(MODE_HELP)
#: each :class:`~toolkit.search.queries.HybridParams` field -> the modes that use it (elsewhere a value other
#: than its default is refused: it would be ignored)
HYBRID_FIELD_MODES = {
    "keyword_boost": ("hybrid", "linear"),
    "knn_boost": ("hybrid", "linear"),
    "rank_constant": ("rrf",),
    "window": ("rrf", "linear"),
}
#: hits per query where none is asked for (search, grid, report samples, evaluation through an index)
DEFAULT_K = 10


def modes_help() -> str:
    return "; ".join(f"{m}: {h}" for m, h in MODE_HELP.items()) + "."
