"""The search page's logic, free of HTTP: run searches from query parameters, resolve photo requests.

Photos are served only from the dataset root (:func:`toolkit.data.paths.resolve_under_root`) and only
when they are regular files with a photo suffix, so neither ``../``, absolute paths, nor symlinks leaving
the root, nor the dataset's own ``recipes.jsonl`` can be read through the page.
"""

from __future__ import annotations

import mimetypes
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

from toolkit.data.paths import UnsafePathError, resolve_under_root
from toolkit.errors import ToolkitError
from toolkit.search.dispatch import search_photo, search_text
from toolkit.search.engine import Searcher, SearchResult
from toolkit.search.queries import Filters

PAGE_MODES = ("knn", "keyword", "hybrid")
PHOTO_SUFFIXES = {".jpg", ".jpeg", ".png", ".webp", ".gif", ".bmp"}
MAX_K = 100
MAX_UPLOAD_BYTES = 16 * 1024 * 1024


class NotFound(ToolkitError):
    """The requested photo does not exist (or is not a photo file)."""


class BadRequest(ToolkitError):
    """A request parameter is missing or invalid."""


@dataclass
class SearchApp:
    """One searcher (model + index) and the dataset root its photos live under."""

    searcher: Searcher
    dataset_root: Path

    def __post_init__(self) -> None:
        self.dataset_root = Path(self.dataset_root)
        # fugashi taggers and torch modules are shared: one search at a time
        self._lock = threading.Lock()

    # --- search ----------------------------------------------------------------------------------
    def info(self) -> dict[str, Any]:
        """Model, index, modes and the most common ingredients (for the filter list)."""
        resp = self.searcher.es.search(
            index=self.searcher.index,
            size=0,
            aggs={"ingredients": {"terms": {"field": "ingredients", "size": 100}}},
        )
        buckets = resp.get("aggregations", {}).get("ingredients", {}).get("buckets", [])
        return {
            "index": self.searcher.index,
            "model": self.searcher.model.fingerprint,
            "modes": list(PAGE_MODES),
            "ingredients": sorted(b["key"] for b in buckets),
            "documents": int(resp["hits"]["total"]["value"]),
        }

    def search(self, params: dict[str, list[str]]) -> dict[str, Any]:
        """``q``, ``mode``, ``k``, ``ingredient`` (repeatable), ``recipe`` (repeatable) -> hits."""
        text = _one(params, "q", "")
        mode = _one(params, "mode", "knn")
        if mode not in PAGE_MODES:
            raise BadRequest(f"unknown mode {mode!r}; choose one of {', '.join(PAGE_MODES)}")
        if not text.strip():
            raise BadRequest("type a query")
        with self._lock:
            result = search_text(self.searcher, text, mode, _k(params), _filters(params))
        return self.as_json(result, query=text)

    def search_by_photo(self, data: bytes, params: dict[str, list[str]]) -> dict[str, Any]:
        """Query by an uploaded photo (its bytes); the upload is decoded with the safe loader."""
        if not data:
            raise BadRequest("the uploaded photo is empty")
        if len(data) > MAX_UPLOAD_BYTES:
            raise BadRequest(f"the uploaded photo is over {MAX_UPLOAD_BYTES // (1024 * 1024)} MiB")
        with tempfile.TemporaryDirectory(prefix="jrs-upload-") as tmp:
            path = Path(tmp) / "query-photo"
            path.write_bytes(data)
            with self._lock:
                result = search_photo(self.searcher, path, _k(params), _filters(params))
        return self.as_json(result, query=_one(params, "name", "uploaded photo"))

    def as_json(self, result: SearchResult, query: str) -> dict[str, Any]:
        hits = []
        for rank, h in enumerate(result.hits, 1):
            hits.append(
                {
                    "rank": rank,
                    "score": h.score,
                    "step_id": h.step_id,
                    "recipe_id": h.recipe_id,
                    "title": h.title,
                    "position": h.position,
                    "text": h.text,
                    "image_path": h.image_path,
                    "photo_url": photo_url(h.image_path) if h.image_path else None,
                }
            )
        return {
            "query": query,
            "mode": result.mode,
            "fusion": result.fusion,
            "notes": result.notes,
            "took_ms": result.took_ms,
            "hits": hits,
        }

    # --- photos ----------------------------------------------------------------------------------
    def photo(self, rel: str) -> tuple[Path, str]:
        """The real path and content type of photo ``rel``; UnsafePathError or NotFound otherwise."""
        path = resolve_under_root(self.dataset_root, rel)
        if path.suffix.lower() not in PHOTO_SUFFIXES:
            raise NotFound(f"not a photo: {rel!r}")
        if not path.is_file():
            raise NotFound(f"no such photo: {rel!r}")
        return path, mimetypes.guess_type(path.name)[0] or "application/octet-stream"


def photo_url(rel: str) -> str:
    return "/photo/" + quote(rel, safe="/")


def _one(params: dict[str, list[str]], name: str, default: str) -> str:
    values = params.get(name)
    return values[-1] if values else default


def _k(params: dict[str, list[str]]) -> int:
    raw = _one(params, "k", "12")
    try:
        k = int(raw)
    except ValueError:
        raise BadRequest(f"k must be a whole number, got {raw!r}") from None
    if not 1 <= k <= MAX_K:
        raise BadRequest(f"k must be between 1 and {MAX_K}, got {k}")
    return k


def _filters(params: dict[str, list[str]]) -> Filters:
    ingredients = tuple(v for v in params.get("ingredient", []) if v.strip())
    recipes = tuple(v.strip() for v in params.get("recipe", []) if v.strip())
    return Filters(recipe_ids=recipes, ingredients=ingredients)


__all__ = ["BadRequest", "NotFound", "SearchApp", "UnsafePathError", "photo_url"]
