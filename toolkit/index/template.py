"""The index template in ``es_mappings/``, filled in from a model: dims, similarity, HNSW options, ``_meta``."""

from __future__ import annotations

import copy
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from toolkit import __version__
from toolkit.errors import ConfigError

TEMPLATE_FILE = "recipe-steps.template.json"
VECTOR_FIELDS = ("image_vector", "text_vector")
#: the ``index_options`` types ``--index-type`` offers (``bbq_hnsw``: Elasticsearch 8.15+, dims >= 64)
INDEX_TYPES = ("hnsw", "int8_hnsw", "bbq_hnsw", "flat", "int8_flat")


#: ``toolkit/es_mappings`` links to the repository's ``es_mappings/`` and ships inside the wheel.
TEMPLATE_PATH = Path(__file__).resolve().parent.parent / "es_mappings" / TEMPLATE_FILE


def load_template() -> dict[str, Any]:
    """The template as written in ``es_mappings/`` (without its ``_comment``)."""
    data = json.loads(TEMPLATE_PATH.read_text(encoding="utf-8"))
    data.pop("_comment", None)
    return data


#: the alias every command loads, searches and changes where none is given (``jrs index --alias``,
#: ``jrs search --index``, ``JRS_INDEX``, the Kibana data view)
DEFAULT_ALIAS = "recipes"
#: old versions ``jrs indices --remove-old`` (:func:`~toolkit.index.lifecycle.remove_old_versions`) keeps
KEEP_OLD_VERSIONS = 1

#: Lucene's limits on HNSW m and ef_construction: an index mapped beyond them is created, and then
#: refuses every document (checked here instead)
MAX_HNSW_M = 512
MAX_HNSW_EF_CONSTRUCTION = 3200


@dataclass(frozen=True)
class VectorIndexOptions:
    """How the vector fields are indexed: one of :data:`INDEX_TYPES` (``flat``: exact search)."""

    type: str = "hnsw"
    m: int = 16
    ef_construction: int = 100
    similarity: str = "cosine"

    def __post_init__(self) -> None:
        if self.type not in INDEX_TYPES:
            raise ConfigError(
                f"index_options type must be one of {', '.join(INDEX_TYPES)}, not {self.type!r}"
            )
        if self.similarity not in ("cosine", "dot_product"):
            raise ConfigError("similarity must be cosine or dot_product (vectors are L2-normalised)")
        for name, top in (("m", MAX_HNSW_M), ("ef_construction", MAX_HNSW_EF_CONSTRUCTION)):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= top:
                raise ConfigError(f"HNSW {name} must be an integer from 1 to {top}, got {value!r}")

    def as_mapping(self) -> dict[str, Any]:
        if self.type.endswith("flat"):
            return {"type": self.type}
        return {"type": self.type, "m": self.m, "ef_construction": self.ef_construction}


@dataclass(frozen=True)
class IndexModelInfo:
    """What the index records about the model that produced its vectors (goes to ``_meta``)."""

    fingerprint: str
    dims: int
    backbone: str
    extra: dict[str, Any] = field(default_factory=dict)
    raw_feature_dims: int | None = None
    #: dims of the photo field when they differ from the model's (hubness-corrected photo vectors)
    image_dims: int | None = None

    def meta(self) -> dict[str, Any]:
        return {
            "model_fingerprint": self.fingerprint,
            "dims": self.dims,
            "backbone": self.backbone,
            "toolkit_version": __version__,
            **({"raw_feature_dims": self.raw_feature_dims} if self.raw_feature_dims else {}),
            **self.extra,
        }


def render_template(
    alias: str,
    model: IndexModelInfo,
    options: VectorIndexOptions | None = None,
    replicas: int = 0,
    shards: int = 1,
) -> dict[str, Any]:
    """The index template body for indices ``<alias>-*`` (put with ``indices.put_index_template``)."""
    opts = options or VectorIndexOptions()
    body = copy.deepcopy(load_template())
    body["index_patterns"] = [f"{alias}-*"]
    # overlapping patterns need distinct priorities (``recipes-*`` and ``recipes-test-*``): the longer name is the
    # more specific one and wins
    body["priority"] = int(body.get("priority", 200)) + len(alias)
    settings = body["template"]["settings"]
    settings["number_of_replicas"] = replicas
    settings["number_of_shards"] = shards
    mappings = body["template"]["mappings"]
    mappings["_meta"] = model.meta()
    props = mappings["properties"]
    for name in VECTOR_FIELDS:
        props[name]["dims"] = (model.image_dims or model.dims) if name == "image_vector" else model.dims
        props[name]["similarity"] = opts.similarity
        props[name]["index_options"] = opts.as_mapping()
    if model.raw_feature_dims:
        props["image_feature"] = {
            "type": "dense_vector",
            "dims": model.raw_feature_dims,
            "index": True,
            "similarity": "cosine",
            "index_options": opts.as_mapping(),
        }
    body["_meta"] = {"managed_by": "jrecipe-search", **model.meta()}
    return body
