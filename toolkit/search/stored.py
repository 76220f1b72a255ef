"""The vectors an index returns in its documents' ``_source``, with a clear error when it returns none."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from toolkit.errors import ToolkitError


class VectorsNotReturned(ToolkitError):
    """A document came back without the vector field it has: the index keeps it out of ``_source``."""


def source_vectors(docs: Sequence[dict[str, Any]], field: str, index: str, purpose: str) -> np.ndarray:
    """``[len(docs), dims]`` float32: each document's ``field`` from its ``_source`` (search hits or ``mget``
    docs). A :class:`VectorsNotReturned` naming the first document without it, and why that happens (a
    mapping's ``_source.excludes``, or ``_source`` disabled), for ``purpose`` (what needed them)."""
    rows = []
    for doc in docs:
        value = (doc.get("_source") or {}).get(field)
        if value is None:
            raise VectorsNotReturned(
                f"step {doc.get('_id')!r} of index {doc.get('_index', index)!r} came back without its {field} "
                f"in _source, which {purpose} reads: the index's mapping keeps vectors out of _source "
                f"(_source.excludes or _source disabled); index with the toolkit's mapping "
                f"(es_mappings/) to use it"
            )
        rows.append(value)
    return np.asarray(rows, dtype=np.float32) if rows else np.zeros((0, 0), np.float32)
