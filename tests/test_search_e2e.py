"""End to end on a real node: sample data -> build -> index -> every search mode, through the API and the CLI."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from elasticsearch import Elasticsearch

from toolkit.cli.main import cli
from toolkit.data.jsonl import iter_recipes
from toolkit.errors import ToolkitError
from toolkit.model import SearchModel
from toolkit.rejects import RejectsWriter
from toolkit.search.engine import Searcher
from toolkit.search.queries import Filters, HybridParams, KnnParams


@pytest.fixture(scope="module")
def searcher(es: Elasticsearch, built_model: Path, search_alias: str) -> Searcher:
    return Searcher(es, SearchModel.load(built_model), search_alias)


@pytest.fixture(scope="module")
def steps(sample_root: Path) -> list[dict]:
    """Every step of the sample data with its recipe's title and ingredients."""
    out = []
    with RejectsWriter(None) as rejects:
        for r in iter_recipes(sample_root, rejects):
            for s in r.steps:
                out.append(
                    {
                        "step_id": r.step_id(s),
                        "text": s.text,
                        "image": s.image,
                        "recipe_id": r.recipe_id,
                        "ingredients": [i.name for i in r.ingredients],
                    }
                )
    return out


def test_every_step_is_indexed_and_text_only_steps_have_no_photo(es, search_alias, steps) -> None:
    es.indices.refresh(index=search_alias)
    assert es.count(index=search_alias)["count"] == len(steps)
    with_photo = sum(1 for s in steps if s["image"])
    assert es.count(index=search_alias, query={"term": {"has_image": True}})["count"] == with_photo
    assert es.count(index=search_alias, query={"exists": {"field": "image_vector"}})["count"] == with_photo


def test_keyword_finds_the_step_with_that_text(searcher: Searcher, steps) -> None:
    step = next(s for s in steps if s["image"])
    hits = searcher.keyword(step["text"], 10, Filters()).hits
    assert hits[0].text == step["text"]
    assert step["step_id"] in [h.step_id for h in hits]
    by_id = {s["step_id"]: s for s in steps}
    for hit in hits:  # each hit carries its recipe's ingredient names (fetched, and dropped before)
        assert sorted(hit.ingredients) == sorted(set(by_id[hit.step_id]["ingredients"])) and hit.ingredients


def test_image_query_finds_the_same_photo_first(searcher: Searcher, sample_root: Path, steps) -> None:
    step = [s for s in steps if s["image"]][7]
    vec = searcher.image_vector(sample_root / step["image"])
    # in the form the index stores photos (what `jrs search --image` sends): its own photo, cosine 1
    hits = searcher.knn(searcher.as_stored_photo(vec), KnnParams(5, 50), Filters(), mode="image").hits
    assert hits[0].step_id == step["step_id"] and hits[0].score > 0.99
    # as a query vector (the hubness-corrected score, as for a text): still its own photo first
    assert searcher.knn(vec, KnnParams(5, 50), Filters()).hits[0].step_id == step["step_id"]


def test_knn_ranks_a_steps_own_photo_far_above_chance(searcher: Searcher, steps) -> None:
    queries = [s for s in steps if s["image"]][:60]
    gallery = sum(1 for s in steps if s["image"])
    found = 0
    for s in queries:
        hits = searcher.knn(searcher.text_vector(s["text"]), KnnParams(10, 100), Filters()).hits
        assert all(h.image_path for h in hits)  # kNN on image_vector returns photos only
        found += s["step_id"] in [h.step_id for h in hits]
    assert found / len(queries) >= 3 * 10 / gallery


def test_hybrid_recall_is_at_least_keyword_and_knn(searcher: Searcher, steps) -> None:
    """R@10 over sample queries (a step's text; relevant: that step's photo), measured per mode."""
    queries = [s for s in steps if s["image"]][::3][:60]
    recall = {"knn": 0, "keyword": 0, "hybrid": 0}
    p, f, h = KnnParams(10, 100), Filters(), HybridParams()
    for s in queries:
        results = {
            "knn": searcher.knn(searcher.text_vector(s["text"]), p, f),
            "keyword": searcher.keyword(s["text"], 10, f),
            "hybrid": searcher.hybrid(s["text"], p, f, h),
        }
        for mode, r in results.items():
            recall[mode] += s["step_id"] in [x.step_id for x in r.hits]
    assert recall["hybrid"] >= recall["keyword"] and recall["hybrid"] >= recall["knn"], recall
    assert recall["hybrid"] > 0


def test_client_side_rrf_fuses_both_lists(searcher: Searcher, steps) -> None:
    step = next(s for s in steps if s["image"])
    result = searcher.rrf(step["text"], KnnParams(10, 100), Filters(), HybridParams())
    assert result.fusion in ("server", "client")
    if result.fusion == "client":  # the integ-test distribution has no rank-rrf module
        assert len(result.requests) == 2 and "keyword" not in result.notes[0]
    # every fused hit comes from the keyword or the kNN list, and both lists contribute
    keyword = {h.step_id for h in searcher.keyword(step["text"], 50, Filters()).hits}
    knn = {
        h.step_id
        for h in searcher.knn(searcher.text_vector(step["text"]), KnnParams(50, 100), Filters()).hits
    }
    fused = [h.step_id for h in result.hits]
    assert fused and set(fused) <= keyword | knn
    assert set(fused) & keyword and set(fused) & knn
    assert [h.score for h in result.hits] == sorted((h.score for h in result.hits), reverse=True)


@pytest.mark.parametrize("weights", [(1.0, 1.0), (1.0, 0.0), (0.0, 1.0), (0.3, 2.0)])
def test_linear_fusion_is_the_weighted_sum_of_both_normalised_lists(
    searcher: Searcher, steps, weights: tuple[float, float]
) -> None:
    step = next(s for s in steps if s["image"])
    hybrid = HybridParams(keyword_boost=weights[0], knn_boost=weights[1], window=30)
    result = searcher.linear(step["text"], KnnParams(10, 100), Filters(), hybrid)
    assert result.mode == "linear" and result.fusion == "minmax" and len(result.requests) == 2
    # the same two lists fetched one by one, fused by the formula written out here
    keyword = searcher.keyword(step["text"], 30, Filters()).hits
    knn = searcher.knn(searcher.text_vector(step["text"]), KnnParams(30, 100), Filters()).hits
    expected: dict[str, float] = {}
    for hits, weight in ((keyword, weights[0]), (knn, weights[1])):
        lo, hi = min(h.score for h in hits), max(h.score for h in hits)
        for h in hits:
            expected[h.step_id] = expected.get(h.step_id, 0.0) + weight * (h.score - lo) / (hi - lo)
    got = {h.step_id: h.score for h in result.hits}
    assert len(got) == 10 and all(got[i] == pytest.approx(expected[i], abs=1e-6) for i in got)
    best = sorted(expected.values(), reverse=True)[:10]
    assert sorted(got.values(), reverse=True) == pytest.approx(best, abs=1e-6)
    if weights == (1.0, 0.0):  # the keyword list alone keeps its order
        assert [h.step_id for h in result.hits] == [h.step_id for h in keyword[:10]]
    if weights == (0.0, 1.0):
        assert [h.step_id for h in result.hits] == [h.step_id for h in knn[:10]]


def test_filters_restrict_hits(searcher: Searcher, steps) -> None:
    step = next(s for s in steps if s["image"])
    vec = searcher.text_vector(step["text"])
    hits = searcher.knn(vec, KnnParams(5, 50), Filters(recipe_ids=(step["recipe_id"],))).hits
    assert hits and {h.recipe_id for h in hits} == {step["recipe_id"]}
    ing = step["ingredients"][0]
    hits = searcher.keyword(step["text"], 10, Filters(ingredients=(ing,))).hits
    owners = {s["recipe_id"] for s in steps if ing in s["ingredients"]}
    assert hits and all(h.recipe_id in owners for h in hits)


def test_composed_query_moves_towards_plus_and_away_from_minus(searcher: Searcher) -> None:
    base = searcher.text_vector("玉ねぎを薄切りにします。")
    plus = searcher.text_vector("フライパンで炒めます。")
    composed = searcher.composed_vector(text="玉ねぎを薄切りにします。", plus=["フライパンで炒めます。"])
    assert float(composed @ plus) > float(base @ plus)
    away = searcher.composed_vector(text="玉ねぎを薄切りにします。", minus=["フライパンで炒めます。"])
    assert float(away @ plus) < float(base @ plus)
    assert np.isclose(np.linalg.norm(composed), 1.0, atol=1e-5)


@pytest.mark.parametrize("text", ['title:* OR 1=1 "', '{"match_all":{}}', "玉ねぎ AND NOT (*)"])
def test_hostile_text_is_searched_as_text(es, searcher: Searcher, search_alias: str, text: str) -> None:
    result = searcher.keyword(text, 10, Filters(include_text_only=True))
    body = result.requests[0]
    assert body["query"]["bool"]["must"][0]["match"]["tokens"]["query"]  # the text went into a match query
    matched = es.count(index=search_alias, query=body["query"])["count"]
    assert matched < es.count(index=search_alias)["count"]  # not match_all, not a wildcard
    tokens = set(searcher.tokens(text))
    for hit in es.search(index=search_alias, query=body["query"], size=50)["hits"]["hits"]:
        assert tokens & set(hit["_source"]["tokens"].split())  # every hit shares a token with the text


def test_query_with_no_known_word_is_a_clear_error(searcher: Searcher) -> None:
    with pytest.raises(ToolkitError, match="vocabulary"):
        searcher.text_vector("ｘｙｚｚｙ")


def test_index_of_another_model_is_refused(es, built_model: Path, index_name: str) -> None:
    from toolkit.index import lifecycle
    from toolkit.index.template import IndexModelInfo

    lifecycle.put_template(es, index_name, IndexModelInfo("0" * 16, 256, "resnet18"))
    lifecycle.create_version(es, index_name)
    with pytest.raises(ToolkitError, match="fingerprint"):
        Searcher(es, SearchModel.load(built_model), f"{index_name}-000001")


def test_second_identical_load_leaves_the_count_unchanged(es, sample_root, built_model, index_name) -> None:
    from toolkit.index.indexer import IndexOptions, index_dataset

    opts = IndexOptions(alias=index_name, index=f"{index_name}-fixed")
    first = index_dataset(es, sample_root, built_model, opts)
    second = index_dataset(es, sample_root, built_model, opts)
    es.indices.refresh(index=f"{index_name}-fixed")
    assert first["indexed"] == second["indexed"] == first["read"]
    assert es.count(index=f"{index_name}-fixed")["count"] == first["indexed"]


def test_cli_search_json_and_show_query(built_model: Path, search_alias: str, es_settings) -> None:
    env = {"ES_URL": es_settings.url}
    args = ["search", "玉ねぎを薄切りにします。", "--model", str(built_model), "--index", search_alias]
    res = CliRunner().invoke(cli, [*args, "--mode", "hybrid", "--json", "-k", "3"], env=env)
    assert res.exit_code == 0, res.output
    data = json.loads(res.stdout)
    assert data["mode"] == "hybrid" and len(data["hits"]) == 3
    res = CliRunner().invoke(cli, [*args, "--show-query"], env=env)
    assert res.exit_code == 0 and f"POST {search_alias}/_search" in res.output and '"knn"' in res.output
    res = CliRunner().invoke(cli, [*args[:-2], "--index", "jrs-no-such-index"], env=env)
    assert res.exit_code == 2 and "does not exist" in res.output


@pytest.mark.parametrize(
    "query",
    [
        ["--image", "PHOTO"],
        ["--like", "r000:1"],
        ["玉ねぎ", "--plus", "炒める"],
        ["--image", "PHOTO", "--minus", "x"],
    ],
)
def test_cli_search_refuses_a_mode_its_query_cannot_use(
    built_model: Path, sample_root: Path, query: list[str]
) -> None:
    """A photo, --like or composed query is a kNN search: an explicit other --mode was run as kNN with a note,
    while ``jrs grid`` refused it; both refuse it now, before any work."""
    photo = str(next(sample_root.rglob("*.jpg")))
    args = [
        "search",
        *(photo if a == "PHOTO" else a for a in query),
        "--model",
        str(built_model),
        "--mode",
        "rrf",
    ]
    res = CliRunner().invoke(cli, args, env={"ES_URL": "http://127.0.0.1:9"})
    assert res.exit_code == 2, res.output
    assert "--mode rrf applies to a query TEXT alone" in res.output


def test_cli_elasticsearch_refusals_are_clear_errors(
    built_model: Path, search_alias: str, es_settings
) -> None:
    """A request the cluster refuses (here: more clauses than it allows) is ``Error: ...`` with exit 2. A query
    text that long is refused before it is sent (MAX_QUERY_CHARS): ingredient filters (two terms each) are not."""
    ingredients = [a for i in range(9000) for a in ("--ingredient", f"i{i}")]  # over 16,384 filter clauses
    base = ["search", "玉ねぎ", "--model", str(built_model), "--index", search_alias]
    result = CliRunner().invoke(
        cli, [*base, *ingredients, "--mode", "keyword"], env={"ES_URL": es_settings.url}
    )
    assert result.exit_code == 2, result.output
    assert "Elasticsearch refused the request (HTTP 400)" in result.output
    assert "too many clauses" in result.output or "maxClauseCount" in result.output, result.output
    assert "Traceback" not in result.output


def test_elasticsearch_failures_map_to_documented_exit_codes() -> None:
    from elastic_transport import ApiResponseMeta, ConnectionError, HttpHeaders, NodeConfig
    from elasticsearch import AuthenticationException, BadRequestError

    from toolkit.cli.common import exit_code_of
    from toolkit.es.client import es_failure

    meta = lambda status: ApiResponseMeta(  # noqa: E731
        status, "1.1", HttpHeaders(), 0.01, NodeConfig("http", "localhost", 9200)
    )
    body = {"error": {"root_cause": [{"reason": "too many clauses"}], "reason": "all shards failed"}}
    bad = es_failure(BadRequestError("x", meta(400), body))
    assert bad is not None and exit_code_of(bad) == 2
    assert str(bad) == "Elasticsearch refused the request (HTTP 400): too many clauses"
    refused = es_failure(AuthenticationException("x", meta(401), {}))
    assert refused is not None and exit_code_of(refused) == 3
    lost = es_failure(ConnectionError("connection reset"))
    assert lost is not None and exit_code_of(lost) == 3 and "stopped answering" in str(lost)
    assert es_failure(ValueError("a bug")) is None  # not an Elasticsearch failure: its traceback stays


def _unreachable() -> Elasticsearch:
    """A client of a port nothing listens on (found free, then closed)."""
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return Elasticsearch(f"http://127.0.0.1:{port}", max_retries=0)


def test_library_searches_raise_toolkit_errors_when_elasticsearch_is_unreachable(
    built_model: Path, sample_root: Path, steps
) -> None:
    """Not elastic_transport.ConnectionError: the EsUnavailable the README promises (the CLI's exit 3)."""
    from elastic_transport import ConnectionError as TransportConnectionError

    from toolkit.es.client import EsUnavailable
    from toolkit.search.dispatch import SearchOptions, search, search_photo, search_text
    from toolkit.search.modes import TEXT_MODES

    model = SearchModel.load(built_model)
    with pytest.raises(EsUnavailable, match="stopped answering") as opened:
        Searcher(_unreachable(), model, "recipes")
    assert isinstance(opened.value.__cause__, TransportConnectionError)
    searcher = Searcher(_unreachable(), model, "recipes", check=False)
    for mode in TEXT_MODES:
        with pytest.raises(EsUnavailable) as failed:
            search_text(searcher, "玉ねぎ", mode=mode)
        assert isinstance(failed.value.__cause__, TransportConnectionError), mode
    photo = sample_root / next(s["image"] for s in steps if s["image"])
    with pytest.raises(EsUnavailable):
        search_photo(searcher, photo)
    with pytest.raises(EsUnavailable):
        search(searcher, like=[steps[0]["step_id"]])
    with pytest.raises(EsUnavailable):
        search(searcher, "玉ねぎ", options=SearchOptions(mode="keyword", explain=True))


@pytest.mark.parametrize("mode", ["keyword", "hybrid", "rrf", "linear"])
def test_library_searches_raise_toolkit_errors_for_refused_requests(searcher: Searcher, mode: str) -> None:
    """What Elasticsearch refuses (more clauses than it allows) is a ToolkitError naming its reason, chained
    from the client's error: one request (keyword, hybrid) or an item of an _msearch (rrf, linear). The
    searcher's own methods send a text of any length (the search functions refuse one over MAX_QUERY_CHARS)."""
    from elasticsearch import ApiError

    text = "玉ねぎを薄切りにします。" * 3000  # over 16,384 BM25 clauses
    params, filters, hybrid = KnnParams(), Filters(), HybridParams()
    run = {
        "keyword": lambda: searcher.keyword(text, 10, filters),
        "hybrid": lambda: searcher.hybrid(text, params, filters, hybrid),
        "rrf": lambda: searcher.rrf(text, params, filters, hybrid),
        "linear": lambda: searcher.linear(text, params, filters, hybrid),
    }[mode]
    with pytest.raises(
        ToolkitError, match=r"Elasticsearch refused the request \(HTTP 400\).*maxClauseCount"
    ) as e:
        run()
    assert not isinstance(e.value, ApiError)
    if mode in ("keyword", "hybrid"):
        assert isinstance(e.value.__cause__, ApiError)


def test_a_searcher_of_a_missing_index_raises_toolkit_errors(es, built_model: Path) -> None:
    from toolkit.search.dispatch import search_text

    searcher = Searcher(es, SearchModel.load(built_model), "jrs-no-such-index", check=False)
    with pytest.raises(ToolkitError, match=r"HTTP 404.*no such index \[jrs-no-such-index\]"):
        search_text(searcher, "玉ねぎ", mode="keyword")
    with pytest.raises(ToolkitError, match="does not exist"):
        search_text(searcher, "玉ねぎ")
