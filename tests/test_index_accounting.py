"""Per-document Elasticsearch errors during ``jrs index``: counted once, named in the rejects file, the rest kept."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from elasticsearch import Elasticsearch

from toolkit.index.indexer import IndexOptions, index_dataset
from toolkit.index.template import IndexModelInfo, render_template
from toolkit.model import SearchModel
from toolkit.rejects import read_rejects


def _recipe(rid: str, steps: int, tags: list[str]) -> str:
    doc = {
        "recipe_id": rid,
        "title": "玉ねぎの炒め物",
        "steps": [
            {"position": p, "text": "玉ねぎを薄切りにして、中火で炒めます。"} for p in range(1, steps + 1)
        ],
        "tags": tags,
    }
    return json.dumps(doc, ensure_ascii=False)


def test_documents_refused_by_elasticsearch_are_counted_once(
    es: Elasticsearch, built_model: Path, index_name: str, tmp_path: Path
) -> None:
    # An index whose `tags` field takes numbers only: Elasticsearch refuses the documents of tagged recipes
    # one by one (mapper_parsing_exception) and accepts the rest of the same bulk requests.
    model = SearchModel.load(built_model)
    body = render_template(index_name, IndexModelInfo(model.fingerprint, model.dims, model.encoder_name))
    body["template"]["mappings"]["properties"]["tags"] = {"type": "integer"}
    target = f"{index_name}-fixed"
    es.indices.create(index=target, **body["template"])
    root = tmp_path / "data"
    root.mkdir()
    lines = [_recipe(f"ok{i}", 3, []) for i in range(40)]
    lines.insert(7, _recipe("tagged", 2, ["main:玉ねぎ"]))
    lines.insert(30, _recipe("tagged2", 1, ["dish:炒め物"]))
    (root / "recipes.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    rejects = tmp_path / "rejects.jsonl"
    opts = IndexOptions(alias=index_name, index=target, batch_steps=16)
    result = index_dataset(es, root, built_model, opts, rejects_path=rejects)
    es.indices.refresh(index=target)
    assert (result["read"], result["indexed"], result["rejected"], result["skipped"]) == (123, 120, 3, 0)
    assert es.count(index=target)["count"] == 120
    rows = read_rejects(rejects)
    assert sorted(r.record for r in rows) == ["tagged2:1", "tagged:1", "tagged:2"]
    assert all(r.stage == "index" and "HTTP 400" in r.reason for r in rows)
    # loaded again (a new load: the checkpoint says the first finished): the file holds this load's rejects
    # only, not both loads' (it grew by every load's rejects before)
    again = index_dataset(es, root, built_model, opts, rejects_path=rejects)
    assert again["rejected"] == 3
    assert sorted(r.record for r in read_rejects(rejects)) == ["tagged2:1", "tagged:1", "tagged:2"]


def test_a_load_whose_every_record_is_rejected_leaves_the_alias_where_it_was(
    es: Elasticsearch, built_model: Path, index_name: str, tmp_path: Path
) -> None:
    """A new version that indexed nothing (every record refused) does not replace the live one: searches
    keep their documents, the empty version stays for a look, and the CLI says why the alias stayed."""
    good, bad = tmp_path / "good", tmp_path / "bad"
    for root, lines in ((good, [_recipe(f"ok{i}", 2, []) for i in range(5)]), (bad, ["{broken", "[1, 2]"])):
        root.mkdir()
        (root / "recipes.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    opts = IndexOptions(alias=index_name, checkpoint_dir=tmp_path / "ckpt")
    first = index_dataset(es, good, built_model, opts, rejects_path=tmp_path / "r1.jsonl")
    assert first["swapped"] and first["count"] == 10
    second = index_dataset(es, bad, built_model, opts, rejects_path=tmp_path / "r2.jsonl")
    assert (second["read"], second["indexed"], second["rejected"], second["count"]) == (2, 0, 2, 0)
    assert not second["swapped"] and second["previous"] == []
    assert list(es.indices.get_alias(name=index_name)) == [first["index"]]
    assert es.count(index=index_name)["count"] == 10
    from toolkit.cli.indexing import _alias_line

    assert "not moved (every record was rejected)" in _alias_line(second)


def test_a_load_of_an_empty_input_leaves_the_alias_on_the_documents_it_serves(
    es: Elasticsearch, built_model: Path, index_name: str, tmp_path: Path
) -> None:
    """An empty recipes file (truncated, or caught mid-export) read 0 records, rejected none, and moved the
    alias onto the empty version: every search then found nothing (and ``--remove-old`` could drop the data)."""
    good, empty = tmp_path / "good", tmp_path / "empty"
    for root, text in ((good, _recipe("ok", 2, []) + "\n"), (empty, "")):
        root.mkdir()
        (root / "recipes.jsonl").write_text(text, encoding="utf-8")
    opts = IndexOptions(alias=index_name, checkpoint_dir=tmp_path / "ckpt")
    first = index_dataset(es, good, built_model, opts)
    second = index_dataset(es, empty, built_model, opts)
    assert (second["read"], second["rejected"], second["count"], second["swapped"]) == (0, 0, 0, False)
    assert list(es.indices.get_alias(name=index_name)) == [first["index"]]
    assert es.count(index=index_name)["count"] == 2
    from toolkit.cli.indexing import _alias_line

    assert "not moved (the input holds no recipe)" in _alias_line(second)
    # a first load of an empty collection still makes the alias (it serves nothing either way)
    fresh = IndexOptions(alias=f"{index_name}-fresh", checkpoint_dir=tmp_path / "ckpt")
    try:
        assert index_dataset(es, empty, built_model, fresh)["swapped"]
    finally:
        es.options(ignore_status=404).indices.delete_index_template(name=f"{index_name}-fresh-template")


def test_a_load_into_an_existing_index_keeps_its_replicas_unless_given(
    es: Elasticsearch, built_model: Path, index_name: str, tmp_path: Path
) -> None:
    """``--index`` on a live index set to 1 replica: a full load kept it at 0 afterwards (the option's default),
    silently dropping its redundancy; it now restores the index's own count, and ``replicas`` still sets one."""
    root = tmp_path / "data"
    root.mkdir()
    (root / "recipes.jsonl").write_text(_recipe("r1", 2, []) + "\n", encoding="utf-8")
    target = f"{index_name}-live"

    def replicas() -> str:
        return es.indices.get_settings(index=target, name="index.number_of_replicas")[target]["settings"][
            "index"
        ]["number_of_replicas"]

    opts = IndexOptions(alias=index_name, index=target, checkpoint_dir=tmp_path / "ckpt")
    assert index_dataset(es, root, built_model, opts)["count"] == 2
    assert replicas() == "0"  # made by the load: 0, as a new version
    es.indices.put_settings(index=target, settings={"index.number_of_replicas": 1})
    index_dataset(es, root, built_model, opts)
    assert replicas() == "1"
    index_dataset(es, root, built_model, IndexOptions(alias=index_name, index=target, replicas=0))
    assert replicas() == "0"


def test_a_second_load_of_the_same_alias_is_refused_while_the_first_runs(
    es: Elasticsearch, built_model: Path, index_name: str, tmp_path: Path
) -> None:
    """Two loads of one alias at once shared one checkpoint (the last to write won, and a rerun could resume
    into the other's index); the second is refused before it creates anything."""
    from toolkit.index.locking import write_lock_path
    from toolkit.locks import Busy, exclusive

    root = tmp_path / "data"
    root.mkdir()
    (root / "recipes.jsonl").write_text(_recipe("a", 2, []) + "\n", encoding="utf-8")
    opts = IndexOptions(alias=index_name, checkpoint_dir=tmp_path / "ckpt")
    lock = write_lock_path(es, index_name)
    lock.parent.mkdir(parents=True, exist_ok=True)
    with (
        exclusive(lock, "the first load"),
        pytest.raises(Busy, match=f"a load or update of {index_name} is already running"),
    ):
        index_dataset(es, root, built_model, opts)
    # the checkpoint is locked too: a load of the same name into another cluster shares it
    checkpoint_lock = tmp_path / "ckpt" / f"{index_name}.checkpoint.lock"
    checkpoint_lock.parent.mkdir()
    with (
        exclusive(checkpoint_lock, "the first load"),
        pytest.raises(Busy, match="a load using the checkpoint"),
    ):
        index_dataset(es, root, built_model, opts)
    assert not list(es.indices.get(index=f"{index_name}*", allow_no_indices=True))
    assert index_dataset(es, root, built_model, opts)["indexed"] == 2  # free again


def test_a_dropped_ingredient_or_tag_is_noted_and_loses_no_step(
    es: Elasticsearch, es_settings, built_model: Path, index_name: str, tmp_path: Path
) -> None:
    """An ingredient or tag that breaks the format is dropped from its recipe, whose steps are indexed: it was
    counted as a record read and rejected (read exceeded the steps in the file, exit 1); it is a note now."""
    from click.testing import CliRunner

    from toolkit.cli.main import cli

    root = tmp_path / "data"
    root.mkdir()
    # an empty tag, an empty ingredient name and an ingredient whose name is given twice
    parts = ', "ingredients": [{"name": "玉ねぎ"}, {"name": ""}, {"name": "塩", "name": "油"}]}'
    lines = [_recipe("ok", 3, []), _recipe("bad-parts", 2, ["main:玉ねぎ", ""])[:-1] + parts]
    (root / "recipes.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    rejects = tmp_path / "rejects.jsonl"
    args = ["index", str(root), str(built_model), "--alias", index_name, "--rejects", str(rejects)]
    result = CliRunner().invoke(cli, [*args, "--json", "-q"], env={"ES_URL": es_settings.url})
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)
    assert (out["read"], out["indexed"], out["rejected"], out["ingredients_or_tags_dropped"]) == (5, 5, 0, 3)
    assert sorted(r.record for r in read_rejects(rejects)) == [
        "bad-parts:ingredients[1]",
        "bad-parts:ingredients[2]",
        "bad-parts:tags[1]",
    ]
    text = CliRunner().invoke(cli, [*args, "-q"], env={"ES_URL": es_settings.url})
    assert text.exit_code == 0 and "noted: 3 ingredients or tags dropped (their steps indexed)" in text.stdout
