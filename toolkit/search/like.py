"""More like these: the mean photo vector of chosen steps (optionally plus a text) as a kNN query."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from toolkit.errors import ToolkitError
from toolkit.search.engine import Searcher
from toolkit.search.queries import compose, normalize
from toolkit.search.stored import source_vectors

MAX_LIKE = 100


def like_vector(
    searcher: Searcher, step_ids: Sequence[str], text: str | None = None, field: str = "image_vector"
) -> tuple[np.ndarray, str]:
    """normalise(mean of the steps' ``field`` vectors) [+ the text's vector]; a clear error naming each
    step that does not exist or has no photo."""
    searcher.check_vector_field(field)  # a field some indices lack would name their steps "without" it
    ids = list(dict.fromkeys(s.strip() for s in step_ids if s.strip()))
    if not ids:
        raise ToolkitError("more-like-these needs at least one step id")
    if len(ids) > MAX_LIKE:
        raise ToolkitError(f"more-like-these takes up to {MAX_LIKE} steps, got {len(ids)}")
    docs = searcher.mget(ids, [field, "has_image"])
    missing = [d["_id"] for d in docs if not d.get("found")]
    no_photo = [d["_id"] for d in docs if d.get("found") and field not in (d.get("_source") or {})]
    kept_out = [d for d in docs if d["_id"] in no_photo and (d.get("_source") or {}).get("has_image")]
    if kept_out:  # steps with a photo whose vector the index does not return: a clear error naming them
        source_vectors(kept_out, field, searcher.index, "more-like-these")
    if missing or no_photo:
        parts = []
        if missing:
            parts.append(f"step id(s) not found in index {searcher.index!r}: {', '.join(missing)}")
        if no_photo:
            parts.append(f"without a photo vector: {', '.join(no_photo)}")
        raise ToolkitError("cannot search like these steps (" + "; ".join(parts) + ")")
    stored = list(source_vectors(docs, field, searcher.index, "more-like-these"))
    if field == "image_vector":  # back in the shared space (an index may store corrected photo vectors)
        stored = [searcher.stored_photo_vector(v) for v in stored]
    mean = np.mean([normalize(v) for v in stored], axis=0)
    if text is None:
        return normalize(mean), f"more like {len(ids)} step(s): the mean of their photo vectors"
    vector = compose(mean, [searcher.text_vector(text)])
    return vector, f"more like {len(ids)} step(s) plus the text {text!r}"
