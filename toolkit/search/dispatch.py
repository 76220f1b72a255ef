"""One entry point for a text query in any mode (used by the grid, the report and the search page)."""

from __future__ import annotations

from pathlib import Path

from toolkit.errors import ToolkitError
from toolkit.search.engine import Searcher, SearchResult
from toolkit.search.queries import Filters, HybridParams, KnnParams

TEXT_MODES = ("knn", "keyword", "hybrid", "rrf")


def search_text(
    searcher: Searcher,
    text: str,
    mode: str = "knn",
    k: int = 10,
    filters: Filters | None = None,
    num_candidates: int | None = None,
    hybrid: HybridParams | None = None,
) -> SearchResult:
    """Run ``text`` in ``mode`` (knn, keyword, hybrid or rrf); a clear error for a bad mode or k."""
    if mode not in TEXT_MODES:
        raise ToolkitError(f"unknown search mode {mode!r}; choose one of {', '.join(TEXT_MODES)}")
    if not text or not text.strip():
        raise ToolkitError("the query text is empty")
    params = knn_params(k, num_candidates)
    filters = filters or Filters()
    hybrid = hybrid or HybridParams()
    if mode == "knn":
        return searcher.knn(searcher.text_vector(text), params, filters)
    if mode == "keyword":
        return searcher.keyword(text, k, filters)
    if mode == "hybrid":
        return searcher.hybrid(text, params, filters, hybrid)
    return searcher.rrf(text, params, filters, hybrid)


def search_photo(
    searcher: Searcher, photo: str | Path, k: int = 10, filters: Filters | None = None
) -> SearchResult:
    """Query by photo: its shared-space vector against the indexed photos."""
    vector = searcher.image_vector(photo)
    return searcher.knn(vector, knn_params(k), filters or Filters(), mode="image")


def knn_params(k: int, num_candidates: int | None = None) -> KnnParams:
    try:
        return KnnParams(k=k, num_candidates=num_candidates or max(100, 10 * k))
    except ValueError as e:
        raise ToolkitError(str(e)) from e
