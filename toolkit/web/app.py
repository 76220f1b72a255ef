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
from toolkit.search.dispatch import SearchOptions, search
from toolkit.search.engine import Hit, Searcher, SearchResult
from toolkit.search.queries import Filters

PAGE_MODES = ("knn", "keyword", "hybrid")
PHOTO_SUFFIXES = {".jpg", ".jpeg", ".png", ".webp", ".gif", ".bmp"}
MAX_K = 100
MAX_PER_GROUP = 10
MAX_UPLOAD_BYTES = 16 * 1024 * 1024
#: longest query text, in characters (both servers)
MAX_QUERY_CHARS = 2000


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
        """``q``, ``mode``, ``k``, ``ingredient``/``recipe`` (repeatable), ``group`` (``recipe``),
        ``per_group``, ``explain`` (``1``), ``like`` (repeatable step ids) -> hits (and groups)."""
        text = _one(params, "q", "").strip()
        mode = _one(params, "mode", "knn")
        like = tuple(v.strip() for v in params.get("like", []) if v.strip())
        if mode not in PAGE_MODES:
            raise BadRequest(f"unknown mode {mode!r}; choose one of {', '.join(PAGE_MODES)}")
        if not text and not like:
            raise BadRequest("type a query")
        if len(text) > MAX_QUERY_CHARS:
            raise BadRequest(f"the query is {len(text)} characters, over the limit of {MAX_QUERY_CHARS}")
        options = self._options(params, mode)
        with self._lock:
            result = search(self.searcher, text or None, like=like, options=options)
        return self.as_json(result, query=text or f"like {', '.join(like)}")

    def search_by_photo(self, data: bytes, params: dict[str, list[str]]) -> dict[str, Any]:
        """Query by an uploaded photo (its bytes); the upload is decoded with the safe loader."""
        if not data:
            raise BadRequest("the uploaded photo is empty")
        if len(data) > MAX_UPLOAD_BYTES:
            raise BadRequest(f"the uploaded photo is over {MAX_UPLOAD_BYTES // (1024 * 1024)} MiB")
        options = self._options(params, "knn")
        name = _one(params, "name", "uploaded photo")
        with tempfile.TemporaryDirectory(prefix="jrs-upload-") as tmp:
            path = Path(tmp) / "query-photo"
            path.write_bytes(data)
            try:
                with self._lock:
                    result = search(self.searcher, photo=path, options=options)
            except ToolkitError as e:  # a photo that cannot be used: named by the upload, not the temp file
                if str(path) not in str(e):
                    raise
                raise BadRequest(str(e).replace(f"query photo {path}", f"the uploaded photo {name!r}")) from e
        return self.as_json(result, query=name)

    def _options(self, params: dict[str, list[str]], mode: str) -> SearchOptions:
        group = _one(params, "group", "").strip() or None
        if group not in (None, "recipe"):
            raise BadRequest(f"unknown group {group!r}; the only grouping is 'recipe'")
        explain = _one(params, "explain", "").strip().lower()
        if explain not in ("", "0", "1", "true", "false"):
            raise BadRequest(f"explain must be 1 or 0, got {explain!r}")
        return SearchOptions(
            mode=mode,
            k=_k(params),
            filters=_filters(params),
            group=group,
            per_group=_int(params, "per_group", 3, 1, MAX_PER_GROUP),
            explain=explain in ("1", "true"),
        )

    def as_json(self, result: SearchResult, query: str) -> dict[str, Any]:
        out: dict[str, Any] = {
            "query": query,
            "mode": result.mode,
            "fusion": result.fusion,
            "notes": result.notes,
            "took_ms": result.took_ms,
            "hits": [hit_json(h, rank) for rank, h in enumerate(result.hits, 1)],
        }
        if result.groups is not None:
            out["groups"] = [
                {
                    "rank": rank,
                    "recipe_id": g.recipe_id,
                    "title": g.title,
                    "score": g.score,
                    "steps": [hit_json(h, i) for i, h in enumerate(g.steps, 1)],
                }
                for rank, g in enumerate(result.groups, 1)
            ]
        if result.explanation is not None:
            out["explanation"] = result.explanation
        return out

    # --- photos ----------------------------------------------------------------------------------
    def photo(self, rel: str) -> tuple[Path, str]:
        """The real path and content type of photo ``rel``; UnsafePathError or NotFound otherwise."""
        path = resolve_under_root(self.dataset_root, rel)
        if path.suffix.lower() not in PHOTO_SUFFIXES:
            raise NotFound(f"not a photo: {rel!r}")
        if not path.is_file():
            raise NotFound(f"no such photo: {rel!r}")
        return path, mimetypes.guess_type(path.name)[0] or "application/octet-stream"


def hit_json(h: Hit, rank: int) -> dict[str, Any]:
    return {
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


def photo_url(rel: str) -> str:
    return "/photo/" + quote(rel, safe="/")


def _one(params: dict[str, list[str]], name: str, default: str) -> str:
    values = params.get(name)
    return values[-1] if values else default


def _k(params: dict[str, list[str]]) -> int:
    return _int(params, "k", 12, 1, MAX_K)


def _int(params: dict[str, list[str]], name: str, default: int, low: int, high: int) -> int:
    raw = _one(params, name, str(default))
    try:
        value = int(raw)
    except ValueError:
        raise BadRequest(f"{name} must be a whole number, got {raw!r}") from None
    if not low <= value <= high:
        raise BadRequest(f"{name} must be between {low} and {high}, got {value}")
    return value


def _filters(params: dict[str, list[str]]) -> Filters:
    ingredients = tuple(v for v in params.get("ingredient", []) if v.strip())
    recipes = tuple(v.strip() for v in params.get("recipe", []) if v.strip())
    return Filters(recipe_ids=recipes, ingredients=ingredients)


__all__ = ["BadRequest", "NotFound", "SearchApp", "UnsafePathError", "photo_url"]
