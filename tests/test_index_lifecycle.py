"""Template, versioned indices and alias swaps against a real node."""

from __future__ import annotations

import pytest
from elasticsearch import Elasticsearch

from toolkit.fingerprint import FingerprintMismatch
from toolkit.index import lifecycle
from toolkit.index.template import IndexModelInfo, VectorIndexOptions, load_template

MODEL = IndexModelInfo(fingerprint="f00dfeed", dims=8, backbone="resnet18")


def test_template_applied_to_new_versions(es: Elasticsearch, index_name: str) -> None:
    alias = index_name
    lifecycle.put_template(es, alias, MODEL, VectorIndexOptions(type="int8_hnsw", m=24, ef_construction=64))
    first = lifecycle.create_version(es, alias)
    assert first == f"{alias}-000001"
    mapping = es.indices.get_mapping(index=first)[first]["mappings"]
    vec = mapping["properties"]["image_vector"]
    assert vec["dims"] == 8 and vec["similarity"] == "cosine"
    assert vec["index_options"] == {"type": "int8_hnsw", "m": 24, "ef_construction": 64}
    assert mapping["properties"]["tokens"]["analyzer"] == "whitespace"
    assert mapping["_meta"]["model_fingerprint"] == "f00dfeed" and mapping["_meta"]["backbone"] == "resnet18"
    settings = es.indices.get_settings(index=first, flat_settings=True)[first]["settings"]
    assert settings["index.refresh_interval"] == "-1"  # bulk-friendly while loading
    # every field in es_mappings/ reaches the index
    assert set(load_template()["template"]["mappings"]["properties"]) <= set(mapping["properties"])


def test_alias_swap_is_atomic_and_old_versions_kept_until_asked(es: Elasticsearch, index_name: str) -> None:
    alias = index_name
    lifecycle.put_template(es, alias, MODEL)
    v1 = lifecycle.create_version(es, alias)
    assert lifecycle.swap_alias(es, alias, v1) == []
    v2 = lifecycle.create_version(es, alias)
    assert v2 == f"{alias}-000002"
    assert lifecycle.swap_alias(es, alias, v2) == [v1]
    assert lifecycle.alias_targets(es, alias) == [v2]
    assert lifecycle.list_versions(es, alias) == [v1, v2]
    v3 = lifecycle.create_version(es, alias)
    lifecycle.swap_alias(es, alias, v3)
    assert lifecycle.remove_old_versions(es, alias, keep=1) == [v1]
    assert lifecycle.list_versions(es, alias) == [v2, v3]


def test_finish_load_restores_settings(es: Elasticsearch, index_name: str) -> None:
    es.indices.create(index=index_name, settings={"refresh_interval": "5s", "number_of_replicas": 0})
    restore = lifecycle.begin_load(es, index_name)
    flat = es.indices.get_settings(index=index_name, flat_settings=True)[index_name]["settings"]
    assert flat["index.refresh_interval"] == "-1"
    lifecycle.finish_load(es, index_name, restore)
    flat = es.indices.get_settings(index=index_name, flat_settings=True)[index_name]["settings"]
    assert flat["index.refresh_interval"] == "5s"


def test_model_fingerprint_mismatch_refused(es: Elasticsearch, index_name: str) -> None:
    alias = index_name
    lifecycle.put_template(es, alias, MODEL)
    lifecycle.swap_alias(es, alias, lifecycle.create_version(es, alias))
    assert lifecycle.check_index_model(es, alias, "f00dfeed").meta["dims"] == 8
    with pytest.raises(FingerprintMismatch, match="built with another model"):
        lifecycle.check_index_model(es, alias, "0123abcd")


def test_missing_index_is_a_clear_error(es: Elasticsearch, index_name: str) -> None:
    with pytest.raises(lifecycle.IndexError_, match="does not exist"):
        lifecycle.index_info(es, index_name)
