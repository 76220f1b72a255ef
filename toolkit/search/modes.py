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
#: hits per query where none is asked for (search, grid, report samples, evaluation through an index)
DEFAULT_K = 10


def modes_help() -> str:
    return "; ".join(f"{m}: {h}" for m, h in MODE_HELP.items()) + "."
