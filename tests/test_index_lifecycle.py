"""Template, versioned indices and alias swaps against a real node."""

from __future__ import annotations

import json

import numpy as np
import pytest
from click.testing import CliRunner
from elasticsearch import Elasticsearch

from toolkit.cli.main import cli
from toolkit.errors import ConfigError
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
    # a version newer than the alias's (a load still running) is never removed, even with --keep 0
    v4 = lifecycle.create_version(es, alias)
    assert lifecycle.remove_old_versions(es, alias, keep=0) == [v2]
    assert lifecycle.list_versions(es, alias) == [v3, v4]


def test_remove_old_keeps_a_version_another_alias_still_names(es: Elasticsearch, index_name: str) -> None:
    """``jrs indices --remove-old`` deleted an old version that another alias (a rollback alias, an alias over
    several collections) still pointed at: that alias then answered nothing."""
    alias = index_name
    lifecycle.put_template(es, alias, MODEL)
    v1, v2, v3 = (lifecycle.create_version(es, alias) for _ in range(3))
    lifecycle.swap_alias(es, alias, v3)
    es.indices.put_alias(index=v1, name=f"{alias}-rollback")
    assert lifecycle.remove_old_versions(es, alias, keep=0) == [v2]
    assert lifecycle.list_versions(es, alias) == [v1, v3]
    assert lifecycle.alias_targets(es, f"{alias}-rollback") == [v1]


def test_finish_load_restores_settings(es: Elasticsearch, index_name: str) -> None:
    es.indices.create(index=index_name, settings={"refresh_interval": "5s", "number_of_replicas": 0})
    restore = lifecycle.begin_load(es, index_name)
    flat = es.indices.get_settings(index=index_name, flat_settings=True)[index_name]["settings"]
    assert flat["index.refresh_interval"] == "-1"
    lifecycle.finish_load(es, index_name, restore)
    flat = es.indices.get_settings(index=index_name, flat_settings=True)[index_name]["settings"]
    assert flat["index.refresh_interval"] == "5s"


def test_aliases_whose_names_nest_have_their_own_templates(es: Elasticsearch, index_name: str) -> None:
    """``X-*`` and ``X-v2-*`` overlap: with one priority the second template was refused."""
    lifecycle.put_template(es, index_name, MODEL)
    nested = f"{index_name}-v2"
    try:
        lifecycle.put_template(es, nested, MODEL)
        assert lifecycle.create_version(es, nested) == f"{nested}-000001"
        assert lifecycle.create_version(es, index_name) == f"{index_name}-000001"
    finally:
        es.options(ignore_status=404).indices.delete_index_template(name=lifecycle.template_name(nested))


def test_model_fingerprint_mismatch_refused(es: Elasticsearch, index_name: str) -> None:
    alias = index_name
    lifecycle.put_template(es, alias, MODEL)
    lifecycle.swap_alias(es, alias, lifecycle.create_version(es, alias))
    assert lifecycle.check_index_model(es, alias, "f00dfeed").meta["dims"] == 8
    with pytest.raises(FingerprintMismatch, match="built with another model"):
        lifecycle.check_index_model(es, alias, "0123abcd")


def test_missing_index_is_a_clear_error(es: Elasticsearch, index_name: str) -> None:
    with pytest.raises(lifecycle.IndexNotFound, match="does not exist"):
        lifecycle.index_info(es, index_name)
    with pytest.raises(lifecycle.IndexNotFound, match="matches no index"):
        lifecycle.index_info(es, f"{index_name}-nothing-*")


def test_a_target_over_indices_of_other_models_is_refused(es: Elasticsearch, index_name: str) -> None:
    """A pattern or list naming indices of two models passed the check of the last one alone."""
    lifecycle.put_template(es, index_name, MODEL)
    first = lifecycle.create_version(es, index_name)
    second = lifecycle.create_version(es, index_name)  # the same model: one _meta, searchable together
    assert lifecycle.check_index_model(es, f"{first},{second}", "f00dfeed").name == second
    es.indices.put_mapping(
        index=first,
        meta={
            **es.indices.get_mapping(index=first)[first]["mappings"]["_meta"],
            "model_fingerprint": "0123abcd",
        },
    )
    with pytest.raises(
        lifecycle.IndexNotFound, match=f"covers indices made differently \\({first} against {second}"
    ):
        lifecycle.check_index_model(es, f"{index_name}-*", "f00dfeed")


def test_bbq_hnsw_index_is_created_and_searched(es: Elasticsearch, index_name: str) -> None:
    alias, model = index_name, IndexModelInfo(fingerprint="f00dfeed", dims=64, backbone="resnet18")
    lifecycle.put_template(es, alias, model, VectorIndexOptions(type="bbq_hnsw", m=12, ef_construction=50))
    name = lifecycle.create_version(es, alias)
    props = es.indices.get_mapping(index=name)[name]["mappings"]["properties"]
    options = props["text_vector"]["index_options"]
    assert options["type"] == "bbq_hnsw" and options["m"] == 12 and options["ef_construction"] == 50
    vectors = np.random.default_rng(0).normal(size=(20, 64))
    for i, v in enumerate(vectors):
        es.index(index=name, id=str(i), document={"text_vector": (v / np.linalg.norm(v)).tolist()})
    es.indices.refresh(index=name)
    query = {"field": "text_vector", "query_vector": vectors[7].tolist(), "k": 1, "num_candidates": 20}
    assert es.search(index=name, knn=query)["hits"]["hits"][0]["_id"] == "7"


def test_index_types_the_node_refuses_are_clear_errors(es: Elasticsearch, index_name: str) -> None:
    with pytest.raises(ConfigError, match=r"--index-type bbq_hnsw, 8 dims\): .*fewer than 64"):
        lifecycle.put_template(es, index_name, MODEL, VectorIndexOptions(type="bbq_hnsw"))
    newer = VectorIndexOptions()
    object.__setattr__(newer, "type", "bogus_hnsw")  # a type of a newer Elasticsearch than the node
    with pytest.raises(ConfigError, match="does not offer bogus_hnsw: use --index-type hnsw"):
        lifecycle.put_template(es, index_name, MODEL, newer)
    assert not es.indices.exists_index_template(name=lifecycle.template_name(index_name))


def test_jrs_index_builds_a_bbq_hnsw_index(
    sample_root, built_model, index_name: str, es_settings, es
) -> None:
    args = ["index", str(sample_root), str(built_model), "--alias", index_name, "--index-type", "bbq_hnsw"]
    result = CliRunner().invoke(cli, [*args, "--json", "-q"], env={"ES_URL": es_settings.url})
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["indexed"] == data["count"] > 0
    (name,) = lifecycle.alias_targets(es, index_name)
    props = es.indices.get_mapping(index=name)[name]["mappings"]["properties"]
    assert {props[f]["index_options"]["type"] for f in ("image_vector", "text_vector")} == {"bbq_hnsw"}
    help_text = CliRunner().invoke(cli, ["index", "--help"]).output
    assert "bbq_hnsw" in help_text and "default: hnsw" in help_text.replace("\n", " ")


def test_indices_keep_must_be_a_count_and_removals_are_printed(
    es: Elasticsearch, index_name: str, es_settings
) -> None:
    """``--remove-old --keep -1`` deleted every old version and printed nothing about it; ``--keep`` without
    ``--remove-old`` was silently accepted."""
    alias = index_name
    lifecycle.put_template(es, alias, MODEL)
    v1, v2, v3 = (lifecycle.create_version(es, alias) for _ in range(3))
    lifecycle.swap_alias(es, alias, v3)
    with pytest.raises(ConfigError, match="keep must be a whole number >= 0"):
        lifecycle.remove_old_versions(es, alias, keep=-1)
    assert lifecycle.list_versions(es, alias) == [v1, v2, v3]  # nothing deleted
    env = {"ES_URL": es_settings.url}

    def run(*args: str):
        return CliRunner().invoke(cli, ["indices", "--alias", alias, *args], env=env)

    bad = run("--remove-old", "--keep", "-1")
    assert bad.exit_code == 2 and "Invalid value for '--keep': -1 is not in the range x>=0" in bad.stderr
    alone = run("--keep", "0")
    assert alone.exit_code == 2 and "--keep applies to --remove-old" in alone.stderr
    assert lifecycle.list_versions(es, alias) == [v1, v2, v3]
    kept = run("--remove-old")  # --keep 1: the newest old version stays
    assert kept.exit_code == 0, kept.output
    assert kept.stdout.splitlines() == [f"  {v2}  0 docs", f"* {v3}  0 docs", f"removed {v1}"]
    none = run("--remove-old")
    assert none.stdout.splitlines()[-1] == "removed nothing (no old version beyond --keep)"
    removed = run("--remove-old", "--keep", "0", "--json")
    assert json.loads(removed.stdout)["removed"] == [v2]
    assert lifecycle.list_versions(es, alias) == [v3]
