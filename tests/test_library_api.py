"""The library API as a program meets it (``toolkit.__all__``): quiet by default, clear errors (Elasticsearch's
own translated, the error classes exported), options checked on construction, and every CLI command a function."""

from __future__ import annotations

import json
import os
import re
import shutil
import uuid
import warnings
from dataclasses import asdict, fields, replace
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from elastic_transport import ConnectionError as TransportConnectionError
from elasticsearch import BadRequestError, Elasticsearch

import toolkit
from tests.conftest import TEST_NODE
from toolkit.cli.main import cli
from toolkit.data.jsonl import validate_dataset
from toolkit.data.sample import generate_sample
from toolkit.errors import ConfigError, ToolkitError
from toolkit.es.client import EsUnavailable, make_client
from toolkit.es.config import EsSettings
from toolkit.index import lifecycle
from toolkit.index.bulk import BulkOptions
from toolkit.index.indexer import IndexOptions
from toolkit.index.update import UpdateOptions
from toolkit.pipeline import BuildOptions, build

DOCS = Path(__file__).resolve().parent.parent / "docs"
FIXTURES = Path(__file__).resolve().parent / "fixtures" / "data"
#: A port nothing listens on: every request is refused at once.
DEAD_URL = "http://127.0.0.1:9"


@pytest.fixture
def dead_es() -> Elasticsearch:
    """A real client of a cluster that does not answer (no retries: each request fails at once)."""
    return make_client(EsSettings(url=DEAD_URL), check=False, max_retries=0, request_timeout=5)


def _tiny_options() -> BuildOptions:
    return BuildOptions(encoder="pixels", mapping={"epochs": 1}, w2v_epochs=1, eval_draws=1)


# --- 1. no progress bars unless asked -----------------------------------------------------------------


def test_build_shows_no_progress_bars_by_default(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """``BuildOptions.progress`` was True: a library build drew tqdm bars on a stderr that is no terminal."""
    assert BuildOptions.progress is False
    generate_sample(tmp_path / "data", 30, seed=3, image_size=32)
    capsys.readouterr()
    build(tmp_path / "data", tmp_path / "model", _tiny_options())
    err = capsys.readouterr().err
    assert not re.search(r"\d+%\||it/s|s/it|\d+/\d+ \[", err), err


# --- 2. a model directory that would mix with a dataset -------------------------------------------------


def test_build_refuses_a_model_dir_that_is_or_holds_a_dataset(sample_root: Path, tmp_path: Path) -> None:
    data = tmp_path / "data"
    shutil.copytree(sample_root, data)
    before = sorted(p.name for p in data.iterdir())
    for model_dir in (data, data / ".", tmp_path / "data" / ".." / "data"):
        with pytest.raises(ToolkitError, match=r"model directory .* is the dataset root"):
            build(data, model_dir, _tiny_options())
    other = tmp_path / "other"
    other.mkdir()
    (other / "recipes.jsonl").write_text("", encoding="utf-8")
    with pytest.raises(ToolkitError, match=r"model directory .* holds a dataset \(recipes.jsonl\)"):
        build(data, other, _tiny_options())
    assert sorted(p.name for p in data.iterdir()) == before  # nothing written into the dataset
    assert sorted(p.name for p in other.iterdir()) == ["recipes.jsonl"]


def test_build_reports_a_model_dir_the_system_refuses_as_a_toolkit_error(
    sample_root: Path, tmp_path: Path
) -> None:
    """``build(data, data/recipes.jsonl/model)`` raised NotADirectoryError."""
    data = tmp_path / "data"
    shutil.copytree(sample_root, data)
    out = data / "recipes.jsonl" / "model"
    with pytest.raises(ToolkitError) as info:
        build(data, out, _tiny_options())
    assert str(info.value) == f"cannot write {out}: Not a directory"
    assert not isinstance(info.value, OSError) and isinstance(info.value.__cause__, NotADirectoryError)
    blocker = tmp_path / "a-file"
    blocker.write_text("", encoding="utf-8")
    res = CliRunner().invoke(cli, ["build", str(data), str(blocker / "model"), "-q"])
    assert res.exit_code == 2, res.output
    assert res.output.strip() == f"Error: cannot write {blocker / 'model'}: Not a directory", res.output


# --- 3. Elasticsearch's exceptions arrive as toolkit errors -----------------------------------------------


def test_entry_points_translate_an_unreachable_cluster(
    dead_es: Elasticsearch, sample_root: Path, built_model: Path, tmp_path: Path
) -> None:
    """``index_dataset`` and the other entry points let ``elastic_transport.ConnectionError`` through."""
    calls = {
        "index_dataset": lambda: toolkit.index_dataset(
            dead_es, sample_root, built_model, IndexOptions(alias="jrs-dead", checkpoint_dir=tmp_path)
        ),
        "update_index": lambda: toolkit.update_index(
            dead_es, sample_root, built_model, UpdateOptions(alias="jrs-dead")
        ),
        "delete_recipes": lambda: toolkit.delete_recipes(dead_es, ["r0001"], alias="jrs-dead"),
        "remove_old_versions": lambda: toolkit.remove_old_versions(dead_es, "jrs-dead"),
        "evaluate": lambda: toolkit.evaluate(built_model, dead_es, "jrs-dead", limit=2),
    }
    for name, call in calls.items():
        with pytest.raises(EsUnavailable, match="Elasticsearch stopped answering") as info:
            call()
        assert isinstance(info.value.__cause__, TransportConnectionError), name


def test_index_dataset_translates_a_request_elasticsearch_refuses(
    es: Elasticsearch, index_name: str, sample_root: Path, built_model: Path, tmp_path: Path
) -> None:
    """A load into a closed index: the count fails with HTTP 400 (BadRequestError before)."""
    fingerprint = toolkit.SearchModel.load(built_model).fingerprint
    es.indices.create(index=index_name, mappings={"_meta": {"model_fingerprint": fingerprint}})
    es.indices.close(index=index_name)
    opts = IndexOptions(alias=index_name, index=index_name, checkpoint_dir=tmp_path)
    with pytest.raises(ToolkitError, match=r"Elasticsearch refused the request \(HTTP 400\): closed") as info:
        toolkit.index_dataset(es, sample_root, built_model, opts)
    assert isinstance(info.value.__cause__, BadRequestError)
    from toolkit.es.client import raising_toolkit_errors

    refused = raising_toolkit_errors(lambda: es.indices.create(index="Upper"))
    with pytest.raises(ToolkitError, match=r"\(HTTP 400\): Invalid index name \[Upper\], must be lowercase"):
        refused()


def test_make_client_translates_a_request_elasticsearch_refuses(es_settings: EsSettings) -> None:
    """The first request of ``make_client`` (cluster health) under a path prefix the node does not serve: the
    node answers HTTP 400 with its own error body (``BadRequestError`` before), as the CLI reports it."""
    settings = replace(es_settings, url=f"{es_settings.url}/no-such-prefix")
    with pytest.raises(
        ToolkitError, match=r"Elasticsearch refused the request \(HTTP 400\): no handler"
    ) as info:
        make_client(settings)
    assert isinstance(info.value.__cause__, BadRequestError)


# --- 4. the error classes are exported -------------------------------------------------------------


def test_errors_are_exported_and_the_old_index_error_name_is_deprecated(
    es: Elasticsearch, index_name: str
) -> None:
    assert {"IndexNotFound", "DatasetError", "EsUnavailable", "ConfigError", "ToolkitError"} <= set(
        toolkit.__all__
    )
    assert issubclass(toolkit.IndexNotFound, ToolkitError) and not issubclass(
        toolkit.IndexNotFound, IndexError
    )
    assert issubclass(toolkit.DatasetError, ToolkitError) and toolkit.EsUnavailable is EsUnavailable
    with pytest.warns(DeprecationWarning, match="use IndexNotFound"):
        assert lifecycle.IndexError_ is toolkit.IndexNotFound
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        from toolkit.index.lifecycle import IndexNotFound  # noqa: F401  (the new name does not warn)
    with pytest.raises(toolkit.IndexNotFound, match="points at 0 indices"):
        toolkit.delete_recipes(es, ["r0001"], alias=index_name)
    with pytest.raises(toolkit.DatasetError, match="does not exist"):
        toolkit.build(Path(index_name), Path(index_name) / "model")


# --- 5. options checked on construction -------------------------------------------------------------


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: IndexOptions(alias="Bad Alias*"), r"^alias 'Bad Alias\*' .*: it has upper-case letters"),
        (lambda: IndexOptions(alias="bad alias"), r"^alias 'bad alias' .*: it contains ' '"),
        (lambda: IndexOptions(alias="a/b|c"), r"it contains '/' '\|'"),
        (lambda: IndexOptions(alias="a#b:c"), r"it contains '#' ':'"),
        (lambda: IndexOptions(alias="_recipes"), r"it starts with '_'"),
        (lambda: IndexOptions(alias="-recipes"), r"it starts with '-'"),
        (lambda: IndexOptions(alias=".."), r"it is \. or \.\."),
        (lambda: IndexOptions(alias=""), r"it is empty"),
        (lambda: IndexOptions(alias="あ" * 83), r"longer than 248 bytes"),  # 249 bytes: its versions 256
        (lambda: IndexOptions(index="Recipes-000001"), r"^index 'Recipes-000001' "),
        (lambda: IndexOptions(replicas=-1), r"^index replicas must be an integer >= 0, got -1"),
        (lambda: IndexOptions(batch_steps=0), r"^index batch_steps must be an integer >= 1, got 0"),
        (lambda: UpdateOptions(alias="Recipes"), r"^alias 'Recipes' "),
        (lambda: UpdateOptions(batch_steps=0), r"^update batch_steps must be an integer >= 1"),
        (lambda: BulkOptions(chunk_size=0), r"^bulk chunk_size must be an integer >= 1, got 0"),
        (lambda: BulkOptions(max_chunk_bytes=0), r"^bulk max_chunk_bytes must be"),
        (lambda: BulkOptions(max_retries=-1), r"^bulk max_retries must be an integer >= 0"),
        (lambda: BulkOptions(initial_backoff=0), r"^bulk initial_backoff must be a number of seconds > 0"),
        (lambda: BulkOptions(max_backoff=float("nan")), r"^bulk max_backoff must be"),
        (lambda: BulkOptions(initial_backoff=5, max_backoff=1), r"initial_backoff \(5\) must not exceed"),
        (lambda: BulkOptions(unavailable_timeout=0), r"^bulk unavailable_timeout must be"),
        (lambda: BulkOptions(concurrency=0), r"^bulk concurrency must be an integer >= 1"),
        (lambda: BulkOptions(max_errors=-1), r"^bulk max_errors must be an integer >= 0"),
        (lambda: BulkOptions(chunk_size=True), r"^bulk chunk_size must be an integer"),
    ],
)
def test_index_and_bulk_options_are_checked_on_construction(make, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        make()


def test_valid_edge_options_are_accepted() -> None:
    IndexOptions(alias="あ" * 82 + "ab", index="recipes-000001", replicas=0, batch_steps=1)  # 248 bytes
    IndexOptions(alias="recipes.v2_x+y")
    BulkOptions(chunk_size=1, max_chunk_bytes=1, max_retries=0, max_errors=0, concurrency=1)
    BulkOptions(initial_backoff=1, max_backoff=1, unavailable_timeout=0.5)
    UpdateOptions(index="recipes-000001")


def test_jrs_index_refuses_a_bad_alias_before_creating_anything(
    es: Elasticsearch, es_settings: EsSettings, sample_root: Path, built_model: Path, index_name: str
) -> None:
    """Before, the bad name reached Elasticsearch (its refusal of the template); a negative replica count too."""
    env = {"ES_URL": es_settings.url or ""}
    args = ["index", str(sample_root), str(built_model), "-q"]
    res = CliRunner().invoke(cli, [*args, "--alias", index_name.upper()], env=env)
    assert res.exit_code == 2, res.output
    assert f"Error: alias '{index_name.upper()}' is not a valid Elasticsearch index name" in res.output
    res = CliRunner().invoke(cli, [*args, "--alias", index_name, "--replicas", "-1"], env=env)
    assert res.exit_code == 2 and "Error: index replicas must be an integer >= 0, got -1" in res.output
    res = CliRunner().invoke(cli, [*args, "--alias", index_name, "--chunk-size", "0"], env=env)
    assert res.exit_code == 2 and "Error: bulk chunk_size must be an integer >= 1, got 0" in res.output
    assert not es.indices.exists_index_template(name=lifecycle.template_name(index_name))
    assert not list(es.indices.get(index=f"{index_name}*", allow_no_indices=True))


@pytest.mark.parametrize(
    ("option", "named"),
    [
        (["--m", "32"], "--m decides"),
        (["--no-center-photos", "--restart"], "--restart, --center-photos/--no-center-photos decide"),
        (["--replicas", "1"], "--replicas decides"),
    ],
)
def test_jrs_index_update_refuses_the_options_of_a_new_version(
    sample_root: Path, built_model: Path, option: list[str], named: str
) -> None:
    """``--update`` changes the live index in place: the options that decide how a new version is made were
    ignored without a word (``--update --replicas 2`` left the replicas as they were)."""
    args = ["index", str(sample_root), str(built_model), "-q", "--update", *option]
    res = CliRunner().invoke(cli, args, env={"ES_URL": "http://127.0.0.1:9"})
    assert res.exit_code == 2, res.output
    assert named in res.output and "--update changes the live index in place" in res.output


@pytest.mark.parametrize(
    ("option", "message"),
    [
        (["--replicas", "-1"], "index replicas must be an integer >= 0, got -1"),
        (["--m", "600"], "HNSW m must be an integer from 1 to 512, got 600"),
        (["--update", "--chunk-size", "0"], "bulk chunk_size must be an integer >= 1, got 0"),
    ],
)
def test_jrs_index_refuses_a_bad_option_before_reaching_for_the_cluster(
    sample_root: Path, built_model: Path, option: list[str], message: str
) -> None:
    """With no cluster up, a bad option was reported as an unreachable Elasticsearch (exit 3): the options are
    now checked first, a usage error (exit 2)."""
    args = ["index", str(sample_root), str(built_model), "-q", "--alias", "recipes", *option]
    res = CliRunner().invoke(cli, args, env={"ES_URL": "http://127.0.0.1:9"})
    assert res.exit_code == 2, res.output
    assert f"Error: {message}" in res.output


# --- 6. a named local node ---------------------------------------------------------------------------


def test_make_client_reaches_a_named_local_node(
    es_settings: EsSettings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``make_client`` always fell back on the node called ``default``."""
    if os.environ.get("ES_URL"):
        pytest.skip("the tests run against ES_URL, not a local node")
    monkeypatch.delenv("ES_URL", raising=False)
    monkeypatch.delenv("ES_CREDENTIALS_FILE", raising=False)
    client = make_client(node_name=TEST_NODE)
    assert client.cluster.health()["status"] in ("green", "yellow")
    assert client.transport.node_pool.get().base_url == es_settings.url
    missing = f"jrs-no-such-node-{uuid.uuid4().hex[:6]}"
    with pytest.raises(ConfigError, match=f"start the local node with `jrs es up --name {missing}`"):
        make_client(node_name=missing)
    with pytest.raises(ToolkitError, match="node name '../x' is not allowed"):
        make_client(node_name="../x")


# --- 7. every command a function ---------------------------------------------------------------------


def test_cli_commands_have_exported_functions() -> None:
    import toolkit.cli.evaluate  # noqa: F401

    wanted = {"evaluate", "update_index", "UpdateOptions", "delete_recipes", "remove_old_versions"}
    assert wanted <= set(toolkit.__all__)
    assert toolkit.remove_old_versions is lifecycle.remove_old_versions


def test_evaluate_returns_what_jrs_evaluate_json_prints(
    es: Elasticsearch, es_settings: EsSettings, built_model: Path, search_alias: str, tmp_path: Path
) -> None:
    report = tmp_path / "report.html"
    data = toolkit.evaluate(built_model, es, search_alias, k=5, modes=["knn"], limit=6, report=report)
    assert set(data) == {"model_dir", "fingerprint", "in_memory", "through_index", "report"}
    assert {"model_pooled", "cca_pooled", "ridge_full"} <= set(data["in_memory"])
    assert set(data["through_index"]["modes"]) >= {"knn", "exact_knn"}
    assert data["through_index"]["queries"] <= 6 and report.is_file()
    args = ["evaluate", str(built_model), "--index", search_alias, "-k", "5", "--mode", "knn", "--limit", "6"]
    res = CliRunner().invoke(cli, [*args, "--json", "-q"], env={"ES_URL": es_settings.url or ""})
    assert res.exit_code == 0, res.output
    del data["report"]
    assert json.loads(res.stdout) == json.loads(json.dumps(data, default=str))
    no_index = toolkit.evaluate(built_model)  # in memory only: no cluster needed
    assert "through_index" not in no_index and no_index["in_memory"] == data["in_memory"]
    assert es.cluster.health()["status"]  # the caller's client stays open


def test_evaluate_closes_the_client_it_made(
    es_settings: EsSettings, built_model: Path, search_alias: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without ``es`` it makes a client (``ES_*``) and closes it at the end: it used to stay open."""
    import toolkit.evaluation.through_index as through_index

    made: list[Elasticsearch] = []
    real = through_index.make_client

    def recording(*args: Any, **kwargs: Any) -> Elasticsearch:
        made.append(real(*args, **kwargs))
        return made[-1]

    monkeypatch.setattr(through_index, "make_client", recording)
    monkeypatch.setenv("ES_URL", es_settings.url or "")
    data = toolkit.evaluate(built_model, index=search_alias, modes=["knn"], limit=2)
    assert data["through_index"]["queries"] <= 2 and len(made) == 1
    assert all(node.pool.pool is None for node in made[0].transport.node_pool.all())  # urllib3: closed


@pytest.mark.parametrize(
    ("kwargs", "named"),
    [
        ({"k": 5}, "k applies"),
        ({"modes": ["knn"], "limit": 3}, "modes, limit apply"),
        ({"num_candidates": 50}, ""),
    ],
)
def test_evaluate_refuses_index_only_arguments_without_an_index(
    built_model: Path, kwargs: dict[str, object], named: str
) -> None:
    """As ``jrs evaluate`` refuses -k / --mode / --limit / --num-candidates without --index, the library
    refuses them without ``index`` instead of ignoring them."""
    with pytest.raises(ConfigError, match=f"{named}.*through an index"):
        toolkit.evaluate(built_model, **kwargs)  # type: ignore[arg-type]


def test_delete_and_remove_old_versions_through_the_package(
    es: Elasticsearch, index_name: str, sample_root: Path, built_model: Path, tmp_path: Path
) -> None:
    opts = IndexOptions(alias=index_name, checkpoint_dir=tmp_path, restart=True)
    first = toolkit.index_dataset(es, sample_root, built_model, opts)
    second = toolkit.index_dataset(es, sample_root, built_model, opts)
    assert second["previous"] == [first["index"]]
    recipe = es.search(index=index_name, size=1)["hits"]["hits"][0]["_source"]["recipe_id"]
    gone = toolkit.delete_recipes(es, [recipe, "no-such-recipe"], alias=index_name)
    assert gone["missing"] == ["no-such-recipe"] and gone["deleted"] == gone["read"] > 0
    assert gone["count"] == second["count"] - gone["deleted"]
    from toolkit.index.locking import write_lock
    from toolkit.locks import Busy

    other = es.search(index=index_name, size=1)["hits"]["hits"][0]["_source"]["recipe_id"]
    # while a load or update of the alias runs (it could write the steps back), a delete is refused
    with write_lock(es, index_name), pytest.raises(Busy, match=f"a load or update of {index_name}"):
        toolkit.delete_recipes(es, [other], alias=index_name)
    assert es.count(index=index_name, query={"term": {"recipe_id": other}})["count"] > 0
    for bad in ([recipe, " "], [None]):  # a blank id was dropped without a word; None failed in strip
        with pytest.raises(ConfigError, match="recipe ids must be non-blank strings"):
            toolkit.delete_recipes(es, bad, alias=index_name)  # type: ignore[list-item]
    res = CliRunner().invoke(
        cli, ["delete", "--recipe", "", "--alias", index_name], env={"ES_URL": "http://127.0.0.1:9"}
    )
    assert res.exit_code == 2 and "recipe ids must be non-blank strings, got ''" in res.output, res.output
    assert toolkit.remove_old_versions(es, index_name, keep=0) == [first["index"]]
    documented = toolkit.index_dataset.__doc__ or ""
    assert [k for k in second if f"``{k}``" not in documented] == []  # every key of the result described


# --- 8. documented fields ----------------------------------------------------------------------------


@pytest.mark.parametrize("cls", [IndexOptions, BulkOptions, UpdateOptions])
def test_every_option_field_is_documented(cls: type) -> None:
    doc = cls.__doc__ or ""
    assert [f.name for f in fields(cls) if f"``{f.name}``" not in doc] == []


# --- 9. the rejects the data-format page shows are the ones the code writes --------------------------


def test_the_documented_rejects_are_the_ones_validate_writes(tmp_path: Path) -> None:
    """The page showed ``Expecting value at column 49``; the code writes ``Expecting value (column 49)``."""
    page = (DOCS / "data-format.md").read_text(encoding="utf-8")
    block = page.split("## Rejects file", 1)[1].split("```json\n", 1)[1].split("```", 1)[0]
    documented = [json.loads(line) for line in block.splitlines() if line.strip()]
    root = tmp_path / "corpus"
    shutil.copytree(FIXTURES / "jsonl_corpus", root)
    written = [asdict(r) for r in validate_dataset(root).rejects]
    assert documented and [d for d in documented if d not in written] == []


# --- 10. a model or searcher is one process's: pickling says what to do instead ----------------------


def test_pickling_a_model_or_searcher_says_what_to_do_and_copy_still_works(
    es: Elasticsearch, built_model: Path
) -> None:
    """Pickling failed with "cannot pickle '_thread.RLock' object", which said neither why nor what to do."""
    import copy
    import pickle

    from toolkit.model import SearchModel
    from toolkit.search.engine import Searcher

    model = SearchModel.load(built_model)
    searcher = Searcher(es, model, "no-such-index", check=False)
    for obj, instead in (
        (model, f"SearchModel.load({str(built_model)!r})"),
        (searcher, f"Searcher(make_client(), SearchModel.load({str(built_model)!r}), 'no-such-index')"),
    ):
        name = type(obj).__name__
        for refused in (pickle.dumps, copy.deepcopy):
            with pytest.raises(TypeError, match=f"a {name} cannot be pickled or deep-copied") as e:
                refused(obj)
            assert instead in str(e.value) and "RLock" not in str(e.value)
    model_copy = copy.copy(model)  # a shallow copy shares the loaded parts, as before
    assert model_copy is not model and model_copy.mapping is model.mapping
    assert (model_copy.embed_query("玉ねぎを炒める") == model.embed_query("玉ねぎを炒める")).all()
    searcher_copy = copy.copy(searcher)
    searcher_copy.es = Elasticsearch("http://127.0.0.1:9")
    assert searcher_copy.model is model and searcher.es is es and searcher_copy.index == searcher.index


# --- 11. a searcher closes its client: ``with Searcher(...)`` or ``close()`` --------------------------


def test_a_searcher_used_in_a_with_block_closes_its_client(
    es_settings: EsSettings, built_model: Path, search_alias: str
) -> None:
    """The README said ``searcher.es.close()``: a Searcher was no context manager and had no ``close()``."""
    from toolkit.model import SearchModel
    from toolkit.search.dispatch import search_text
    from toolkit.search.engine import Searcher

    client = make_client(es_settings, max_retries=0)
    with Searcher(client, SearchModel.load(built_model), search_alias, recheck_s=0) as searcher:
        assert search_text(searcher, "玉ねぎを炒める", k=3).hits  # open: it searches
    assert all(node.pool.pool is None for node in client.transport.node_pool.all())  # urllib3: closed
    with pytest.raises(TransportConnectionError):
        client.info()  # the client itself is closed, not only the searcher
    with pytest.raises(ToolkitError, match=f"the searcher of '{search_alias}' is closed.*make a new one"):
        search_text(searcher, "玉ねぎを炒める", k=3)  # said so, not "Elasticsearch stopped answering"
    searcher.close()  # closing again is harmless
