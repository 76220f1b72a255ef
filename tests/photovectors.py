"""Helpers of the photo-vector tests (centring, hubness correction): unit rows, and every stored
``image_vector`` of an index by step id."""

from __future__ import annotations

import numpy as np
from elasticsearch import Elasticsearch, helpers


def unit(x: np.ndarray) -> np.ndarray:
    return (x / np.linalg.norm(x, axis=-1, keepdims=True)).astype(np.float32)


def photo_vectors(es: Elasticsearch, index: str) -> dict[str, np.ndarray]:
    es.indices.refresh(index=index)
    query = {"query": {"exists": {"field": "image_vector"}}}
    return {
        h["_id"]: np.asarray(h["_source"]["image_vector"], np.float32)
        for h in helpers.scan(es, index=index, query=query, _source=["image_vector"])
    }
