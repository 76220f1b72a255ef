"""Live updates on the real node: ``jrs index --update`` sends only new and changed steps (content hash),
deletes steps a recipe lost, reconciles its counts exactly, survives an interruption, and ``jrs delete``
removes recipes; the result always equals a fresh index of the same data."""

from __future__ import annotations

import json
import shutil
import uuid
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from elasticsearch import Elasticsearch, helpers

from toolkit.cli.main import cli
from toolkit.index import lifecycle
from toolkit.index.centring import centre_from_meta, centred
from toolkit.index.feature_stats import FeatureStats, adapted
from toolkit.index.hubness import correction_from_meta
from toolkit.index.indexer import IndexOptions, index_dataset
from toolkit.index.lifecycle import index_info
from toolkit.index.update import UpdateOptions, update_index
from toolkit.model import SearchModel


@pytest.fixture
def dataset(sample_root: Path, tmp_path: Path) -> Path:
    root = tmp_path / "data"
    shutil.copytree(sample_root, root, ignore=shutil.ignore_patterns("*.checkpoint.json"))
    return root


def _lines(root: Path) -> list[dict]:
    return [json.loads(line) for line in (root / "recipes.jsonl").read_text(encoding="utf-8").splitlines()]


def _write(root: Path, records: list[dict], extra: list[str] = ()) -> None:
    text = "\n".join([json.dumps(r, ensure_ascii=False) for r in records] + list(extra)) + "\n"
    (root / "recipes.jsonl").write_text(text, encoding="utf-8")


def _docs(es: Elasticsearch, index: str) -> dict[str, dict]:
    es.indices.refresh(index=index)
    return {h["_id"]: h["_source"] for h in helpers.scan(es, index=index, query={"query": {"match_all": {}}})}


def _same_as_fresh(es: Elasticsearch, root: Path, model: Path, updated: str) -> None:
    """The updated index holds exactly the documents a fresh index of ``root`` holds, its photo vectors made
    from features read with the statistics the updated index recorded when it was created
    (``_meta.photo_feature_stats``), centred on its centre (``_meta.photo_centre``) and corrected with its
    hubness correction (``_meta.photo_hubness``)."""
    fresh = f"jrs-test-fresh-{uuid.uuid4().hex[:10]}"
    meta = index_info(es, updated).meta
    loaded = SearchModel.load(model)
    stats = FeatureStats.from_meta(meta, loaded.feature_dims)
    centre = centre_from_meta(meta, loaded.dims)
    hub = correction_from_meta(meta, loaded)
    assert hub is not None  # the default (stats: None for an index made before feature statistics)
    plain = IndexOptions(alias=fresh, adapt_features=False, center_photos=False, hubness_correction=False)
    try:
        index_dataset(es, root, model, plain)
        got, want = _docs(es, updated), _docs(es, fresh)
    finally:
        for idx in es.indices.get(index=f"{fresh}*", ignore_unavailable=True, allow_no_indices=True):
            es.indices.delete(index=idx)
        es.options(ignore_status=404).indices.delete_index_template(name=f"{fresh}-template")
    assert sorted(got) == sorted(want)
    for i, doc in want.items():
        other = dict(got[i])
        for field in ("image_vector", "text_vector"):
            assert (field in doc) == (field in other), (i, field)
            if field in doc:
                expected = np.asarray(doc[field], dtype=np.float32)
                if field == "image_vector":  # the photo's features, read with the updated index's statistics
                    read = adapted(loaded.image_features([root / doc["image_path"]]), stats, loaded)
                    expected = hub.photo_layout(centred(loaded.embed_image_features(read), centre))[0]
                assert np.allclose(expected, other.pop(field), atol=1e-5)
        assert {k: v for k, v in doc.items() if not k.endswith("_vector")} == other, i


def _steps(records: list[dict]) -> int:
    return sum(len(r["steps"]) for r in records)


def test_update_sends_only_what_changed_and_reconciles(
    es: Elasticsearch, dataset: Path, built_model: Path, index_name: str
) -> None:
    alias = index_name
    index_dataset(es, dataset, built_model, IndexOptions(alias=alias))
    records = _lines(dataset)
    n = _steps(records)
    same = update_index(es, dataset, built_model, UpdateOptions(alias=alias))
    assert (same["read"], same["indexed"], same["unchanged"], same["rejected"], same["deleted"]) == (
        n,
        0,
        n,
        0,
        0,
    )

    changed, shortened = records[3], records[5]
    changed["steps"][0]["text"] = "鶏肉を一口大に切って、強火でこんがり焼きます。"
    dropped = f"{shortened['recipe_id']}:{shortened['steps'][-1]['position']}"
    shortened["steps"] = shortened["steps"][:-1]
    new = json.loads(json.dumps(records[7]))
    new["recipe_id"] = "new-recipe-1"
    records.append(new)
    _write(dataset, records, extra=["{not json"])
    result = update_index(es, dataset, built_model, UpdateOptions(alias=alias, batch_steps=32))
    inputs = _steps(records)
    assert result["indexed"] == 1 + len(new["steps"])
    assert result["unchanged"] == inputs - 1 - len(new["steps"])
    assert (result["rejected"], result["deleted"]) == (1, 1)
    assert result["read"] == inputs + 1 + 1  # every step, the bad line, the step the recipe lost
    assert result["read"] == result["indexed"] + result["unchanged"] + result["rejected"] + result["deleted"]
    assert result["count"] == inputs
    assert (
        es.get(index=alias, id=f"{changed['recipe_id']}:{changed['steps'][0]['position']}")["_source"]["text"]
        == changed["steps"][0]["text"]
    )
    assert not es.exists(index=alias, id=dropped)
    _write(dataset, records)
    _same_as_fresh(es, dataset, built_model, alias)


def test_an_interrupted_update_run_again_finishes_the_job(
    es: Elasticsearch, dataset: Path, built_model: Path, index_name: str
) -> None:
    alias = index_name
    index_dataset(es, dataset, built_model, IndexOptions(alias=alias))
    records = _lines(dataset)
    for r in records[:60]:
        r["title"] = r["title"] + "（改）"
    _write(dataset, records)
    changed = _steps(records[:60])
    calls = []

    def interrupt(step) -> None:
        calls.append(step)
        if len(calls) >= 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        update_index(es, dataset, built_model, UpdateOptions(alias=alias, batch_steps=16), on_batch=interrupt)
    es.indices.refresh(index=alias)
    done = es.count(index=alias, query={"wildcard": {"title.keyword": "*（改）"}})["count"]
    assert 0 < done < changed
    again = update_index(es, dataset, built_model, UpdateOptions(alias=alias, batch_steps=16))
    assert again["indexed"] == changed - done
    assert again["unchanged"] == _steps(records) - (changed - done)
    assert (again["rejected"], again["deleted"]) == (0, 0)
    assert again["read"] == again["indexed"] + again["unchanged"] + again["rejected"] + again["deleted"]
    _same_as_fresh(es, dataset, built_model, alias)


def test_cli_update_and_delete(
    es: Elasticsearch, dataset: Path, built_model: Path, index_name: str, es_settings
) -> None:
    alias = index_name
    env = {"ES_URL": es_settings.url}
    runner = CliRunner()
    res = runner.invoke(cli, ["index", str(dataset), str(built_model), "--alias", alias, "-q"], env=env)
    assert res.exit_code == 0, res.output
    records = _lines(dataset)
    n = _steps(records)
    res = runner.invoke(
        cli, ["index", str(dataset), str(built_model), "--alias", alias, "--update", "--json"], env=env
    )
    assert res.exit_code == 0, res.output
    data = json.loads(res.output)
    assert (data["read"], data["indexed"], data["unchanged"]) == (n, 0, n)
    assert data["rejects_file"] is None  # named only when written, as other commands do (it named no file)
    gone = [records[0]["recipe_id"], records[1]["recipe_id"]]
    res = runner.invoke(
        cli,
        ["delete", "--alias", alias, "--recipe", gone[0], "--recipe", gone[1], "--recipe", "nope"],
        env=env,
    )
    assert res.exit_code == 0, res.output
    removed = _steps(records[:2])
    assert f"{removed} steps of 2 recipes deleted; {n - removed} documents; not found: nope" in res.output
    assert es.count(index=alias, query={"terms": {"recipe_id": gone}})["count"] == 0
    res = runner.invoke(cli, ["delete", "--alias", alias, "--recipe", gone[0], "--json"], env=env)
    data = json.loads(res.output)
    assert (data["read"], data["deleted"], data["missing"]) == (0, 0, [gone[0]])
    # the dataset still has them: an update puts them back, and only them
    res = runner.invoke(
        cli, ["index", str(dataset), str(built_model), "--alias", alias, "--update", "--json"], env=env
    )
    data = json.loads(res.output)
    assert (data["indexed"], data["unchanged"], data["count"]) == (removed, n - removed, n)
    res = runner.invoke(cli, ["delete", "--alias", f"{alias}-none", "--recipe", "x"], env=env)
    assert res.exit_code == 2 and "points at 0 indices" in res.output


def test_an_update_stopped_by_max_errors_says_so(
    es: Elasticsearch, dataset: Path, built_model: Path, index_name: str
) -> None:
    """--update --max-errors: the stop is reported (it was silent: the recipes after it were neither compared
    nor updated), and the CLI exits 1 naming it."""
    from toolkit.index.bulk import BulkOptions

    alias = index_name
    index_dataset(es, dataset, built_model, IndexOptions(alias=alias))
    records = _lines(dataset)
    records[-1]["title"] += "（改）"
    _write(dataset, records, extra=['{"recipe_id": "bad1"', '{"recipe_id": "bad2"'])
    lines = (dataset / "recipes.jsonl").read_text(encoding="utf-8").splitlines()
    (dataset / "recipes.jsonl").write_text("\n".join(lines[-2:] + lines[:-2]) + "\n", encoding="utf-8")
    opts = UpdateOptions(alias=alias, batch_steps=16, bulk=BulkOptions(max_errors=1))
    result = update_index(es, dataset, built_model, opts)
    assert result["stopped_early"] and result["read"] < _steps(records)
    env = {"ES_URL": es.transport.node_pool.get().base_url}
    cli_args = ["index", str(dataset), str(built_model), "--alias", alias, "--update", "--max-errors", "1"]
    res = CliRunner().invoke(cli, cli_args, env=env)
    assert res.exit_code == 1 and "stopped early (--max-errors)" in res.output, res.output


def _legacy_hash(model_fp: str, root: Path, recipe, step) -> str:
    """A step's ``content_hash`` as loads wrote it before it covered the ingredient keys (the formula of
    that release, written out here: the same parts, less the keys)."""
    from toolkit.fingerprint import fingerprint

    photo = None
    if step.image:
        st = (root / step.image).stat()
        photo = [st.st_size, st.st_mtime_ns]
    names = sorted({i.name for i in recipe.ingredients if i.name})
    parts = (recipe.recipe_id, recipe.title, recipe.description, names, list(recipe.tags))
    return fingerprint(model_fp, None, False, *parts, step.position, step.text, step.image, photo, length=20)


def _made_before_ingredient_keys(es: Elasticsearch, root: Path, model: Path, alias: str) -> str:
    """``root`` indexed behind ``alias`` as a release before ingredient keys left it: no ``ingredient_keys``
    in the mapping or the documents, each document's hash the legacy one. Returns the index."""
    from toolkit.data.jsonl import iter_recipes

    fresh = index_dataset(es, root, model, IndexOptions(alias=alias))["index"]
    fp = SearchModel.load(model).fingerprint
    hashes = {r.step_id(s): _legacy_hash(fp, root, r, s) for r in iter_recipes(root) for s in r.steps}
    mapping = es.indices.get_mapping(index=fresh)[fresh]["mappings"]
    del mapping["properties"]["ingredient_keys"]
    old = f"{alias}-old"
    es.indices.create(index=old, mappings=mapping)
    docs = []
    for i, doc in _docs(es, fresh).items():
        del doc["ingredient_keys"]
        docs.append({"_index": old, "_id": i, "_source": {**doc, "content_hash": hashes[i]}})
    helpers.bulk(es, docs, refresh=True)
    lifecycle.swap_alias(es, alias, old)
    es.indices.delete(index=fresh)
    return old


def test_an_update_gives_an_index_made_before_ingredient_keys_its_keys_without_new_vectors(
    es: Elasticsearch,
    dataset: Path,
    built_model: Path,
    index_name: str,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Every hash changed with the ingredient keys: the first update of an older index rebuilt and re-embedded
    every document. A document whose hash is the legacy hash of the step now gets its keys and new hash only
    (a partial update); a step changed since is rebuilt; the result equals a fresh index."""
    alias = index_name
    records = _lines(dataset)[:15]  # photos of a copied dataset are encoded again: a few recipes suffice
    _write(dataset, records)
    old = _made_before_ingredient_keys(es, dataset, built_model, alias)
    n = _steps(records)
    records[3]["steps"][0]["text"] = "鶏肉を一口大に切って、強火でこんがり焼きます。"
    _write(dataset, records)
    embedded: list[str] = []
    real = SearchModel.embed_texts

    def counting(self: SearchModel, texts: list[str]):
        embedded.extend(texts)
        return real(self, texts)

    monkeypatch.setattr(SearchModel, "embed_texts", counting)
    with caplog.at_level("INFO", logger="toolkit.index.update"):
        result = update_index(es, dataset, built_model, UpdateOptions(alias=alias, batch_steps=64))
    assert embedded == [records[3]["steps"][0]["text"]]  # the changed step only, not all n
    assert (result["index"], result["read"], result["indexed"], result["unchanged"]) == (old, n, n, 0)
    assert (result["rejected"], result["deleted"], result["count"]) == (0, 0, n)
    assert f"{n - 1} documents indexed before ingredient keys were given their keys only" in caplog.text
    _same_as_fresh(es, dataset, built_model, alias)  # keys and hashes as a fresh load writes them
    again = update_index(es, dataset, built_model, UpdateOptions(alias=alias))
    assert (again["indexed"], again["unchanged"]) == (0, n)


def test_a_legacy_hash_is_not_trusted_where_the_old_document_had_another_image_url(tmp_path: Path) -> None:
    """Documents indexed before ingredient keys wrote ``image_url`` unescaped: a photo whose name needs
    escaping is rebuilt, not given its keys only."""
    from types import SimpleNamespace

    from toolkit.data.schema import Recipe, Step
    from toolkit.index.documents import DocumentBuilder

    model = SimpleNamespace(fingerprint="m", tokenizer=None)
    plain = DocumentBuilder(model, tmp_path, image_base_url="http://photos/")  # type: ignore[arg-type]
    recipe = Recipe("r", "t", steps=(Step(1, "切る", "images/a b.jpg"), Step(2, "煮る", "images/ab.jpg")))
    spaced, safe = recipe.steps
    assert plain.legacy_step_hash(recipe, spaced) is None
    assert plain.legacy_step_hash(recipe, safe) == _legacy_hash_with_url(tmp_path, recipe, safe)
    no_url = DocumentBuilder(model, tmp_path)  # type: ignore[arg-type]
    assert no_url.legacy_step_hash(recipe, spaced) is not None


def _legacy_hash_with_url(root: Path, recipe, step) -> str:
    from toolkit.fingerprint import fingerprint

    parts = (recipe.recipe_id, recipe.title, recipe.description, [], [])
    return fingerprint(
        "m", "http://photos/", False, *parts, step.position, step.text, step.image, [-1, -1], length=20
    )


def test_a_second_update_of_the_same_alias_is_refused_while_one_runs(
    es: Elasticsearch, dataset: Path, built_model: Path, index_name: str, es_settings
) -> None:
    """``jrs index --update`` took no lock: two updates of one alias at once both did the work. It takes the
    lock loads take (the alias's on this cluster): the second is refused, exit 2 naming the lock."""
    from toolkit.index.locking import write_lock_path
    from toolkit.locks import Busy, exclusive

    alias = index_name
    records = _lines(dataset)[:3]
    _write(dataset, records)
    index_dataset(es, dataset, built_model, IndexOptions(alias=alias))
    n = _steps(records)
    lock = write_lock_path(es, alias)
    lock.parent.mkdir(parents=True, exist_ok=True)
    with exclusive(lock, "the first update"):
        with pytest.raises(Busy, match=f"a load or update of {alias} is already running"):
            update_index(es, dataset, built_model, UpdateOptions(alias=alias))
        args = ["index", str(dataset), str(built_model), "--alias", alias, "--update"]
        res = CliRunner().invoke(cli, args, env={"ES_URL": es_settings.url})
        assert res.exit_code == 2, res.output
        assert "is already running in another process" in res.output and str(lock) in res.output
    assert update_index(es, dataset, built_model, UpdateOptions(alias=alias))["unchanged"] == n  # free again
