"""Query bodies, vector arithmetic and client-side fusion; hostile query text is searched as text."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from elasticsearch import Elasticsearch, helpers

from toolkit.cli.main import cli
from toolkit.errors import ConfigError, ToolkitError
from toolkit.index import lifecycle
from toolkit.index.template import IndexModelInfo
from toolkit.search.dispatch import knn_params
from toolkit.search.fusion import linear_fuse, minmax_scores, rrf_fuse
from toolkit.search.queries import (
    DEFAULT_NUM_CANDIDATES,
    Filters,
    HybridParams,
    KnnParams,
    compose,
    hybrid_request,
    keyword_request,
    knn_request,
    normalize,
)


def test_rrf_fuse_orders_by_reciprocal_rank_sum() -> None:
    a = [{"_id": "x"}, {"_id": "y"}, {"_id": "z"}]
    b = [{"_id": "y"}, {"_id": "w"}, {"_id": "x"}]
    fused = rrf_fuse([a, b], k=4, rank_constant=1)
    # x: 1/2 + 1/4 = .75 ; y: 1/3 + 1/2 = .833 ; z: 1/4 ; w: 1/3
    assert [h["_id"] for h in fused] == ["y", "x", "w", "z"]
    assert fused[0]["_score"] == pytest.approx(1 / 3 + 1 / 2)


def test_linear_fuse_sums_weighted_minmax_scores() -> None:
    a = [{"_id": "x", "_score": 12.0}, {"_id": "y", "_score": 7.0}, {"_id": "z", "_score": 2.0}]
    b = [{"_id": "y", "_score": 0.9}, {"_id": "w", "_score": 0.8}, {"_id": "x", "_score": 0.5}]
    assert minmax_scores(a) == pytest.approx([1.0, 0.5, 0.0])
    fused = linear_fuse([a, b], weights=[1.0, 2.0], k=4)
    # x: 1 + 2 * 0 = 1 ; y: .5 + 2 * 1 = 2.5 ; z: 0 ; w: 2 * .75 = 1.5
    assert [h["_id"] for h in fused] == ["y", "w", "x", "z"]
    assert [h["_score"] for h in fused] == pytest.approx([2.5, 1.5, 1.0, 0.0])
    # the raw scale does not matter (BM25 in the tens against cosines below 1), only the weights do
    scaled = [{**h, "_score": h["_score"] * 1000} for h in a]
    assert [h["_id"] for h in linear_fuse([scaled, b], [1.0, 2.0], 4)] == ["y", "w", "x", "z"]
    assert [h["_id"] for h in linear_fuse([a, b], [1.0, 0.0], 2)] == ["x", "y"]
    assert minmax_scores([{"_score": 3.0}, {"_score": 3.0}]) == [1.0, 1.0]
    assert linear_fuse([[], b], [1.0, 1.0], 1)[0]["_id"] == "y"
    with pytest.raises(ValueError, match="2 hit lists need 2 weights"):
        linear_fuse([a, b], [1.0], 3)


@pytest.mark.parametrize(
    "bad", [{"keyword_boost": -1.0}, {"knn_boost": float("nan")}, {"rank_constant": 0}, {"window": 0}]
)
def test_fusion_params_are_checked(bad: dict) -> None:
    with pytest.raises(ConfigError):
        HybridParams(**bad)


def test_compose_is_normalised_arithmetic() -> None:
    base, plus, minus = np.eye(3, dtype=np.float32)
    out = compose(base, [plus], [minus])
    assert np.allclose(out, np.array([1, 1, -1]) / np.sqrt(3))
    assert np.linalg.norm(compose(base * 5, [plus * 0.1])) == pytest.approx(1.0)
    with pytest.raises(ValueError):
        normalize(np.zeros(3))


def test_filters_and_knn_params() -> None:
    f = Filters(recipe_ids=("r1",), ingredients=("玉ねぎ",))
    body = knn_request(np.ones(4), KnnParams(k=5, num_candidates=50), f)
    assert body["knn"]["filter"] == [
        {"terms": {"recipe_id": ["r1"]}},
        {"term": {"ingredients": "玉ねぎ"}},
        {"term": {"has_image": True}},
    ]
    assert body["size"] == 5 and len(body["knn"]["query_vector"]) == 4
    with pytest.raises(ValueError):
        KnnParams(k=20, num_candidates=10)


HOSTILE = ['title:* OR 1=1 "', '{"match_all":{}}', "*:*", "AND OR NOT ( [ ] ) ~ ^ \\", "</script>"]


@pytest.mark.parametrize("text", HOSTILE)
def test_hostile_query_text_is_searched_as_text(es: Elasticsearch, index_name: str, text: str) -> None:
    lifecycle.put_template(es, index_name, IndexModelInfo(fingerprint="x", dims=2, backbone="b"))
    idx = lifecycle.create_version(es, index_name)
    docs = [
        {
            "_id": "plain",
            "tokens": "玉ねぎ を 炒める",
            "has_image": True,
            "image_vector": [1, 0],
            "text_vector": [1, 0],
        },
        {"_id": "literal", "tokens": text, "has_image": True, "image_vector": [0, 1], "text_vector": [0, 1]},
    ]
    helpers.bulk(es, [{"_index": idx, **d} for d in docs], refresh=True)
    tokens = text.split()
    hits = es.search(index=idx, **keyword_request(tokens, 10, Filters()))["hits"]["hits"]
    # only the document that literally contains the text matches: nothing was parsed as syntax or DSL
    assert [h["_id"] for h in hits] == ["literal"]
    hybrid = hybrid_request(
        tokens, np.array([1.0, 0.0]), KnnParams(k=2, num_candidates=10), Filters(), HybridParams()
    )
    assert es.search(index=idx, **hybrid)["hits"]["total"]["value"] >= 1


def test_num_candidates_default_is_declared_once_and_reaches_every_entry_point() -> None:
    assert DEFAULT_NUM_CANDIDATES == 200  # the README's Scale section measured this choice
    assert KnnParams().num_candidates == knn_params(10).num_candidates == DEFAULT_NUM_CANDIDATES
    assert knn_params(50).num_candidates == 500  # large k: 10 candidates per hit
    assert knn_params(5000).num_candidates == 10_000  # never over Elasticsearch's ceiling
    assert (
        knn_request(np.ones(4), knn_params(10), Filters())["knn"]["num_candidates"] == DEFAULT_NUM_CANDIDATES
    )
    for command in ("search", "evaluate"):
        help_text = " ".join(CliRunner().invoke(cli, [command, "--help"]).output.split())
        assert (
            f"--num-candidates INTEGER kNN candidates per shard [default: {DEFAULT_NUM_CANDIDATES}, or 10 x k"
            in help_text
        ), command
    # an explicit value is used as given, and a bad one is refused (0 used to mean "the default")
    assert knn_params(10, 300).num_candidates == 300
    for k, nc in ((10, 0), (20, 10), (10, 20_000), (20_000, None)):
        with pytest.raises(ToolkitError, match="need 1 <= k <= num_candidates <= 10000"):
            knn_params(k, nc)


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        ({"k": 0}, "k must be a whole number >= 1, got 0"),
        ({"k": "5"}, "k must be a whole number >= 1, got str '5'"),
        ({"k": 2.5}, "k must be a whole number >= 1, got float 2.5"),
        ({"k": True}, "k must be a whole number >= 1, got bool True"),
        ({"mode": "x"}, "unknown search mode 'x'; choose one of knn, keyword"),
        ({"mode": None}, "unknown search mode None"),
        (
            {"k": 50, "num_candidates": 20},
            "need 1 <= k <= num_candidates <= 10000, got k=50, num_candidates=20",
        ),
        ({"num_candidates": "300"}, "num_candidates must be a whole number, got str '300'"),
        (
            {"filters": {"tags": ["main:玉ねぎ"]}},
            r"filters must be a toolkit.Filters \(e.g. Filters\(\*\*filters\)",
        ),
        ({"hybrid": {"knn_boost": 2}}, "hybrid must be a toolkit.HybridParams"),
        ({"group": "tag"}, "unknown grouping 'tag'; choose one of recipe"),
        ({"group": "recipe", "per_group": 0}, "steps per recipe must be between 1 and 100, got 0"),
        ({"per_group": "3"}, "per_group must be a whole number, got str '3'"),
        ({"explain": "yes"}, "explain must be True or False, got str 'yes'"),
    ],
)
def test_search_options_are_checked_when_made(bad: dict, message: str) -> None:
    """Each bad field is a ConfigError naming it at construction, not at the first search (or never)."""
    from toolkit.search.dispatch import SearchOptions

    with pytest.raises(ConfigError, match=message):
        SearchOptions(**bad)


def test_search_options_normalise_what_they_accept() -> None:
    from toolkit.search.dispatch import SearchOptions

    opts = SearchOptions(k=np.int64(7), num_candidates=np.int32(70), filters=None, hybrid=None)
    assert type(opts.k) is int and opts.k == 7 and type(opts.num_candidates) is int
    assert opts.filters == Filters() and opts.hybrid == HybridParams()
    assert SearchOptions(mode="rrf", group="recipe", per_group=5).grouping().per_group == 5


def test_filter_and_fusion_values_are_type_checked() -> None:
    assert Filters(tags=["main:玉ねぎ"]).tags == ("main:玉ねぎ",)  # a list is kept as a tuple
    assert Filters(recipe_ids=(r for r in ("r1", "r2"))).recipe_ids == ("r1", "r2")  # one pass is enough
    for bad, message in (
        ({"tags": 5}, "filter tags must be a str or a sequence of str, got int 5"),
        ({"tags": b"main"}, "filter tags must be a str or a sequence of str, got bytes"),
        ({"ingredients": ["玉ねぎ", 3]}, "filter ingredients: every value must be a str, got int 3"),
        ({"include_text_only": "no"}, "include_text_only must be True or False"),
    ):
        with pytest.raises(ConfigError, match=message):
            Filters(**bad)
    with pytest.raises(ConfigError, match="keyword_boost must be a finite number >= 0, got str '1'"):
        HybridParams(keyword_boost="1")
    with pytest.raises(ConfigError, match="window must be a whole number, got float 2.5"):
        HybridParams(window=2.5)
    with pytest.raises(ConfigError, match="k must be a whole number, got float 2.5"):
        KnnParams(k=2.5)
    with pytest.raises(ConfigError, match="k must be a whole number >= 1, got str '5'"):
        knn_params("5")


def test_per_group_without_group_is_refused(tmp_path: Path) -> None:
    """Like ``jrs evaluate -k`` without ``--index``: an option of ``--group recipe`` given alone is a usage error
    (it was silently ignored), before any model or cluster is read."""
    result = CliRunner().invoke(
        cli,
        ["search", "玉ねぎ", "--model", str(tmp_path), "--per-group", "2"],
        env={"ES_URL": "http://127.0.0.1:9"},
    )
    assert result.exit_code == 2, result.output
    assert "--per-group applies to --group recipe: add --group recipe" in result.output


@pytest.mark.parametrize("flag", ["--keyword-boost", "--knn-boost"])
@pytest.mark.parametrize(
    "extra", [["--mode", "knn"], ["--mode", "keyword"], ["--mode", "rrf"], ["--plus", "塩"], []]
)
def test_a_boost_in_a_mode_that_ignores_it_is_a_usage_error(tmp_path: Path, flag: str, extra: list) -> None:
    """``--keyword-boost``/``--knn-boost`` weigh hybrid and linear only: elsewhere they were silently ignored;
    like ``--per-group`` without ``--group``, a usage error before any model or cluster is read."""
    args = ["search", "玉ねぎ", "--model", str(tmp_path), flag, "2", *extra]
    result = CliRunner().invoke(cli, args, env={"ES_URL": "http://127.0.0.1:9"})
    assert result.exit_code == 2, result.output
    mode = extra[1] if extra[:1] == ["--mode"] else "knn"
    assert (
        f"Error: {flag} applies to --mode hybrid or linear (--mode {mode} ignores it): "
        "add --mode hybrid or --mode linear" in result.output
    )


@pytest.mark.parametrize("mode", ["hybrid", "linear"])
def test_a_boost_in_a_mode_that_uses_it_passes_the_options_check(tmp_path: Path, mode: str) -> None:
    args = ["search", "玉ねぎ", "--model", str(tmp_path), "--mode", mode, "--keyword-boost", "0.5"]
    result = CliRunner().invoke(cli, [*args, "--knn-boost", "2"], env={"ES_URL": "http://127.0.0.1:9"})
    assert "applies to --mode" not in result.output
    assert result.exit_code == 3 and "is unreachable" in result.output, (
        result.output
    )  # went on to the cluster


@pytest.mark.parametrize(
    ("mode", "field", "value", "used_by"),
    [
        ("knn", "keyword_boost", 2.0, "'hybrid' or 'linear'"),
        ("keyword", "knn_boost", 0.5, "'hybrid' or 'linear'"),
        ("rrf", "keyword_boost", 0.0, "'hybrid' or 'linear'"),
        ("hybrid", "rank_constant", 10, "'rrf'"),
        ("linear", "rank_constant", 10, "'rrf'"),
        ("knn", "window", 100, "'rrf' or 'linear'"),
        ("hybrid", "window", 100, "'rrf' or 'linear'"),
    ],
)
def test_a_fusion_field_the_mode_ignores_is_refused(
    mode: str, field: str, value: float, used_by: str
) -> None:
    """The library's ``SearchOptions(hybrid=HybridParams(...))``: a field the mode never reads was ignored."""
    from toolkit.search.dispatch import SearchOptions

    with pytest.raises(ConfigError, match=rf"^hybrid\.{field} applies to mode {used_by}, not '{mode}'"):
        SearchOptions(mode=mode, hybrid=HybridParams(**{field: value}))
    assert SearchOptions(mode=mode, hybrid=HybridParams()).hybrid == HybridParams()  # defaults are fine


@pytest.mark.parametrize(
    ("mode", "fields"),
    [
        ("hybrid", {"keyword_boost": 2.0, "knn_boost": 0.5}),
        ("linear", {"keyword_boost": 0.3, "knn_boost": 2.0, "window": 30}),
        ("rrf", {"rank_constant": 10, "window": 100}),
    ],
)
def test_a_fusion_field_the_mode_uses_is_kept(mode: str, fields: dict) -> None:
    from toolkit.search.dispatch import SearchOptions

    assert SearchOptions(mode=mode, hybrid=HybridParams(**fields)).hybrid == HybridParams(**fields)


def test_a_query_over_the_length_limit_is_refused_before_any_work(tmp_path: Path) -> None:
    """~12,000 distinct words reached Elasticsearch, which refused them: "maxClauseCount is set to ...". The
    limit the web API had (2,000 characters) is now every entry point's, checked before the model loads or the
    cluster is asked (an unreachable ES_URL and an empty model directory: neither is reached)."""
    from toolkit.model import MAX_QUERY_CHARS
    from toolkit.search.dispatch import check_query_lengths
    from toolkit.web.params import MAX_QUERY_CHARS as WEB_LIMIT

    assert MAX_QUERY_CHARS == WEB_LIMIT == 2000
    words = " ".join(f"w{i}" for i in range(12_000))
    env = {"ES_URL": "http://127.0.0.1:9"}
    for args, message in (
        ([words], f"Error: the query is {len(words)} characters, over the limit of 2000"),
        (
            ["玉ねぎ", "--plus", words],
            f"Error: the plus text 'w0 w1 w2 w3 w4 w5 w6 w7 w8 w9 w10 w11...' (--plus) is {len(words)} characters, over the limit of 2000",
        ),
        (["--like", "r1:1", "--minus", "あ" * 2001], "Error: the minus text 'あああ"),
    ):
        result = CliRunner().invoke(cli, ["search", *args, "--model", str(tmp_path)], env=env)
        assert result.exit_code == 2 and message in result.output, result.output
    check_query_lengths("あ" * 2000, ["い" * 2000], ["う" * 2000])  # at the limit: accepted
    check_query_lengths("  " + "あ" * 2000 + "\n")  # counted after trimming, as the web API does
    with pytest.raises(ToolkitError, match="^the query is 2001 characters, over the limit of 2000$"):
        check_query_lengths("あ" * 2001)


def test_grid_refuses_a_query_over_the_length_limit_before_any_work(tmp_path: Path) -> None:
    """``jrs grid TEXT`` searches through the same library function as ``jrs search`` but asked the cluster
    (exit 3 here) and loaded the model before the limit refused the text: it is now checked first, as
    ``jrs search`` does (the README: "before the model loads or anything reaches Elasticsearch")."""
    text = "あ" * 2001
    args = ["grid", text, "--model", str(tmp_path), "--out", str(tmp_path / "g.png")]
    result = CliRunner().invoke(cli, args, env={"ES_URL": "http://127.0.0.1:9"})
    assert result.exit_code == 2, result.output
    assert "Error: the query is 2001 characters, over the limit of 2000" in result.output
