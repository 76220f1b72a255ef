"""The search page's logic, free of HTTP: run searches from query parameters, resolve photo requests.

Photos are served only from the dataset root (:func:`toolkit.data.paths.resolve_under_root`) and only
when they are regular files with a photo suffix, so neither ``../``, absolute paths, nor symlinks leaving
the root, nor the dataset's own ``recipes.jsonl`` can be read through the page.
"""

from __future__ import annotations

import mimetypes
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

from toolkit.data.paths import UnsafePathError, resolve_under_root
from toolkit.errors import ToolkitError
from toolkit.image.loading import ImageRejected, load_photo
from toolkit.search.dispatch import search
from toolkit.search.engine import Hit, Searcher, SearchResult
from toolkit.search.modes import MODE_HELP, TEXT_MODES
from toolkit.web.params import BadRequest, parse_search

PHOTO_SUFFIXES = {".jpg", ".jpeg", ".png", ".webp", ".gif", ".bmp"}
MAX_UPLOAD_BYTES = 16 * 1024 * 1024


class NotFound(ToolkitError):
    """The requested photo does not exist (or is not a photo file)."""


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
        """Model, index, the text modes (with what each does) and the most common ingredients (for the filter
        list)."""
        self.searcher.indices  # noqa: B018 - read (and checked) first: an index made after the server started
        resp = self.searcher.es.search(
            index=self.searcher.index,
            size=0,
            aggs={"ingredients": {"terms": {"field": "ingredients", "size": 100}}},
        )
        buckets = resp.get("aggregations", {}).get("ingredients", {}).get("buckets", [])
        return {
            "index": self.searcher.index,
            "model": self.searcher.model.fingerprint,
            "modes": list(TEXT_MODES),
            "mode_help": dict(MODE_HELP),
            "ingredients": sorted(b["key"] for b in buckets),
            "documents": int(resp["hits"]["total"]["value"]),
        }

    def search(self, params: Mapping[str, Sequence[str]]) -> dict[str, Any]:
        """``q``, ``mode``, ``k``, ``ingredient``/``recipe`` (repeatable), ``group`` (``recipe``),
        ``per_group``, ``explain`` (``1``), ``like`` (repeatable step ids) -> hits (and groups); the
        parameters are checked by :func:`toolkit.web.params.parse_search`."""
        req = parse_search(params)
        with self._lock:
            result = search(self.searcher, req.text or None, like=req.like, options=req.options)
        return self.as_json(result, query=req.text or f"like {', '.join(req.like)}")

    def search_by_photo(self, data: bytes, params: Mapping[str, Sequence[str]]) -> dict[str, Any]:
        """Query by an uploaded photo (its bytes) with ``k``, ``name``, ``group`` and the filters; the upload is
        decoded with the safe loader."""
        req = parse_search(params, photo=True)
        if not data:
            raise BadRequest("the uploaded photo is empty")
        if len(data) > MAX_UPLOAD_BYTES:
            raise BadRequest(f"the uploaded photo is over {MAX_UPLOAD_BYTES // (1024 * 1024)} MiB")
        options, name = req.options, req.name
        # decoded under the lock, one upload at a time: a 16 MiB file may decode to ~160 MB of pixels (waiting
        # requests hold only their bytes); a photo that cannot be used is named by the upload
        with self._lock:
            try:
                image = load_photo(data, draft_size=self.searcher.model.photo_draft_size())
            except ImageRejected as e:
                raise BadRequest(f"the uploaded photo {name!r}: {e}") from e
            result = search(self.searcher, photo=image, options=options)
        return self.as_json(result, query=name)

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
        try:
            found = path.is_file()
        except OSError:  # e.g. a name longer than the file system allows
            found = False
        if not found:
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


__all__ = ["BadRequest", "NotFound", "SearchApp", "UnsafePathError", "photo_url"]
