"""Recipe-level results, explanations and more-like-these through the one library search function and
the CLI, on the real node with the session's sample index."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from elasticsearch import Elasticsearch

from toolkit.cli.main import cli
from toolkit.errors import ToolkitError
from toolkit.model import SearchModel
from toolkit.search.dispatch import SearchOptions, search
from toolkit.search.engine import Searcher, group_hits
from toolkit.search.explain import suggestions
from toolkit.search.queries import DEFAULT_NUM_CANDIDATES, Filters

QUERY = "玉ねぎを薄切りにします。"


@pytest.fixture(scope="module")
def searcher(es: Elasticsearch, built_model: Path, search_alias: str) -> Searcher:
    return Searcher(es, SearchModel.load(built_model), search_alias)


@pytest.mark.parametrize("mode", ["knn", "keyword", "hybrid", "rrf", "linear"])
def test_grouped_results_are_one_recipe_each_with_its_best_steps(searcher: Searcher, mode: str) -> None:
    result = search(searcher, QUERY, options=SearchOptions(mode=mode, k=5, group="recipe", per_group=3))
    groups = result.groups
    assert groups is not None and len(groups) == 5
    assert len({g.recipe_id for g in groups}) == 5
    assert [g.score for g in groups] == sorted((g.score for g in groups), reverse=True)
    for g in groups:
        assert 1 <= len(g.steps) <= 3 and {h.recipe_id for h in g.steps} == {g.recipe_id}
        assert [h.score for h in g.steps] == sorted((h.score for h in g.steps), reverse=True)
        assert g.steps[0].score == pytest.approx(g.score)
    assert [h.step_id for h in result.hits] == [g.steps[0].step_id for g in groups]
    # the same as grouping the ungrouped ranking of the window the grouped search looks at (same candidates)
    plain = search(
        searcher, QUERY, options=SearchOptions(mode=mode, k=50, num_candidates=DEFAULT_NUM_CANDIDATES)
    )
    expected = group_hits(plain.hits, 5, 3)
    assert [g.recipe_id for g in groups] == [g.recipe_id for g in expected]
    assert [g.steps[0].step_id for g in groups] == [g.steps[0].step_id for g in expected]
    if mode in ("knn", "rrf", "linear"):  # they look only at those 50 steps (keyword/hybrid: every match)
        assert [[h.step_id for h in g.steps] for g in groups] == [
            [h.step_id for h in g.steps] for g in expected
        ]


def test_hybrid_returns_only_steps_that_match_a_word_or_are_near(searcher: Searcher) -> None:
    """A step matching no query word and outside the kNN section's nearest is no hit (it scored 0 once)."""
    result = search(searcher, QUERY, options=SearchOptions(mode="hybrid", k=5, group="recipe", per_group=10))
    steps = [h for g in result.groups or [] for h in g.steps]
    assert steps and all(h.score > 0 for h in steps)
    plain = search(searcher, QUERY, options=SearchOptions(mode="hybrid", k=10_000, num_candidates=10_000))
    assert plain.hits and all(h.score > 0 for h in plain.hits)


def test_grouping_respects_filters(searcher: Searcher) -> None:
    opts = SearchOptions(mode="hybrid", k=4, group="recipe", filters=Filters(ingredients=("玉ねぎ",)))
    groups = search(searcher, QUERY, options=opts).groups
    assert groups
    ids = [h.step_id for g in groups for h in g.steps]
    docs = searcher.es.mget(index=searcher.index, ids=ids)["docs"]
    assert all("玉ねぎ" in d["_source"]["ingredients"] for d in docs)


def test_bad_grouping_is_a_clear_error(searcher: Searcher) -> None:
    with pytest.raises(ToolkitError, match="unknown grouping 'tag'"):
        search(searcher, QUERY, options=SearchOptions(group="tag"))
    with pytest.raises(ToolkitError, match="between 1 and 100"):
        search(searcher, QUERY, options=SearchOptions(group="recipe", per_group=0))


@pytest.mark.parametrize("mode", ["knn", "keyword", "hybrid"])
def test_explanation_recomputes_the_scores_and_each_word_out(searcher: Searcher, mode: str) -> None:
    result = search(searcher, QUERY, options=SearchOptions(mode=mode, k=5, explain=True))
    ex = result.explanation
    assert ex is not None
    assert ex["tokens"] == searcher.model.tokenizer.tokenize(QUERY)
    assert ex["keyword_tokens"] == searcher.model.tokenizer.tokenize_all(QUERY)
    assert ex["known"] == ex["tokens"] and ex["unknown"] == []
    contrib = ex["contributions"]
    for hit, row in zip(result.hits, contrib["hits"], strict=True):
        assert row["step_id"] == hit.step_id and row["recomputed"] == pytest.approx(hit.score, abs=1e-4)
    words = {w["word"] for w in contrib["words"]}
    assert words == set(ex["tokens"] if mode == "knn" else ex["keyword_tokens"])
    assert all(len(w["deltas"]) == 5 for w in contrib["words"])
    if mode == "keyword":  # BM25 without a token: the same search on the other tokens, for the top hit
        top = contrib["words"][0]
        rest = [t for t in ex["keyword_tokens"] if t != top["word"]]
        body = {"bool": {"must": [{"match": {"tokens": " ".join(rest)}}]}}
        found = searcher.es.search(
            index=searcher.index,
            query={"bool": {**body["bool"], "filter": [{"ids": {"values": [result.hits[0].step_id]}}]}},
        )["hits"]["hits"]
        without = found[0]["_score"] if found else 0.0
        assert top["deltas"][0] == pytest.approx(result.hits[0].score - without, abs=1e-4)


def test_unknown_words_are_left_out_and_said_and_suggested(searcher: Searcher) -> None:
    plain = search(searcher, QUERY, options=SearchOptions(k=5))
    partial = search(searcher, QUERY + " xyzzyq", options=SearchOptions(k=5, explain=True))
    assert [h.step_id for h in partial.hits] == [h.step_id for h in plain.hits]
    assert any("not in the model's vocabulary: xyzzyq" in n for n in partial.notes)
    assert [u["word"] for u in partial.explanation["unknown"]] == ["xyzzyq"]
    with pytest.raises(ToolkitError, match="nearest known words: xyzzyq ->"):
        search(searcher, "xyzzyq", options=SearchOptions())


def test_a_long_query_of_many_words_costs_a_bounded_number_of_lookups(
    searcher: Searcher, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Suggestions scan the whole vocabulary per word and each word left out is one more search: a query of
    hundreds of words (2,000 characters pass the web page) must not cost that per word, under the page's lock."""
    from toolkit.search import explain

    scans: list[str] = []
    real = explain.suggestions
    monkeypatch.setattr(explain, "suggestions", lambda model, w, *a: scans.append(w) or real(model, w, *a))
    bodies: list[int] = []
    real_msearch = searcher.msearch
    monkeypatch.setattr(searcher, "msearch", lambda b: bodies.append(len(b)) or real_msearch(b))
    unknown = " ".join(f"xq{chr(ord('a') + i // 26)}{chr(ord('a') + i % 26)}zz" for i in range(200))
    with pytest.raises(ToolkitError, match="nearest known words"):  # knn: no word known
        search(searcher, unknown, options=SearchOptions())
    assert 0 < len(scans) <= explain.SUGGESTED_WORDS
    scans.clear()
    result = search(searcher, "玉ねぎ " + unknown, options=SearchOptions(mode="hybrid", k=5, explain=True))
    ex = result.explanation
    assert len(ex["unknown"]) == 200 and 0 < len(scans) <= explain.SUGGESTED_WORDS
    assert bodies and max(bodies) <= explain.EXPLAINED_WORDS + 1
    assert 0 < len(ex["contributions"]["words"]) <= explain.EXPLAINED_WORDS


def test_suggestions_by_reading_and_by_surface_form(searcher: Searcher) -> None:
    vocab = list(searcher.model.word_vectors.index)
    katakana = next(w for w in vocab if len(w) >= 3 and all("ァ" <= c <= "ヶ" or c == "ー" for c in w))
    hiragana = "".join(chr(ord(c) - 0x60) if "ァ" <= c <= "ヶ" else c for c in katakana)
    assert hiragana not in vocab
    assert katakana in suggestions(searcher.model, hiragana)  # same reading
    long_word = next(w for w in vocab if len(w) >= 3)
    assert long_word in suggestions(searcher.model, long_word + "x")  # close surface form


def test_more_like_these_is_the_mean_photo_vector_without_the_examples(searcher: Searcher) -> None:
    first = search(searcher, QUERY, options=SearchOptions(k=4)).hits
    chosen = [first[0].step_id, first[2].step_id]
    result = search(searcher, like=chosen, options=SearchOptions(k=6))
    assert result.mode == "like" and len(result.hits) == 6
    assert not set(chosen) & {h.step_id for h in result.hits}
    docs = searcher.es.mget(index=searcher.index, ids=chosen, source_includes=["image_vector"])["docs"]
    # the mean of the chosen photos' vectors in the shared space, sent in the photo field's own form
    vecs = [searcher.stored_photo_vector(np.asarray(d["_source"]["image_vector"])) for d in docs]
    mean = sum(v / np.linalg.norm(v) for v in vecs)
    query = searcher.photo_query(mean / np.linalg.norm(mean))
    for h in result.hits:
        v = np.asarray(searcher.es.get(index=searcher.index, id=h.step_id)["_source"]["image_vector"])
        assert h.score == pytest.approx((1 + float(v @ query / np.linalg.norm(v))) / 2, abs=1e-4)
    with_text = search(searcher, "炒める", like=chosen, options=SearchOptions(k=6))
    assert with_text.hits and any("plus the text" in n for n in with_text.notes)
    assert [h.step_id for h in with_text.hits] != [h.step_id for h in result.hits]
    grouped = search(searcher, like=chosen, options=SearchOptions(k=3, group="recipe"))
    assert grouped.groups and len({g.recipe_id for g in grouped.groups}) == 3


def test_more_like_these_with_padded_ids_and_composed_texts(searcher: Searcher) -> None:
    first = search(searcher, QUERY, options=SearchOptions(k=2)).hits[0].step_id
    padded = search(searcher, like=[f" {first} "], options=SearchOptions(k=5))
    assert first not in {h.step_id for h in padded.hits}  # the example is left out, padded or not
    plain = search(searcher, like=[first], options=SearchOptions(k=5))
    assert [h.step_id for h in padded.hits] == [h.step_id for h in plain.hits]
    composed = search(searcher, like=[first], plus=["炒める"], minus=["切る"], options=SearchOptions(k=5))
    assert any("composed with 1 plus and 1 minus" in n for n in composed.notes)
    assert [h.step_id for h in composed.hits] != [h.step_id for h in plain.hits]


def test_a_mode_that_cannot_apply_is_noted_and_a_lone_filter_value_is_one_value(searcher: Searcher) -> None:
    first = search(searcher, QUERY, options=SearchOptions(k=1)).hits[0]
    like = search(searcher, like=[first.step_id], options=SearchOptions(mode="keyword", k=3))
    assert like.mode == "like" and any("keyword" in n and "applies to a text alone" in n for n in like.notes)
    assert Filters(ingredients="玉ねぎ").ingredients == ("玉ねぎ",)  # not its three characters


def test_a_composed_query_that_cancels_out_is_a_clear_error(searcher: Searcher) -> None:
    with pytest.raises(ToolkitError, match="the composed query is empty"):
        search(searcher, "玉ねぎ", minus=["玉ねぎ"], options=SearchOptions())


def test_composed_texts_with_unknown_words_are_said_and_named(searcher: Searcher) -> None:
    # some words unknown: searched with the known ones, and said so, as for a plain text query
    partial = search(searcher, "玉ねぎ xyzzyq", plus=["炒める"], options=SearchOptions(k=3))
    plain = search(searcher, "玉ねぎ", plus=["炒める"], options=SearchOptions(k=3))
    assert [h.step_id for h in partial.hits] == [h.step_id for h in plain.hits]
    assert any("not in the model's vocabulary: xyzzyq" in n for n in partial.notes)
    noted = search(searcher, "玉ねぎ", plus=["炒める xyzzyq"], options=SearchOptions(k=3))
    assert any(n.startswith("the plus text '炒める xyzzyq'") and "xyzzyq" in n for n in noted.notes)
    # a plus/minus text with no known word: the error names that text, not the query
    with pytest.raises(ToolkitError, match=r"no word of the plus text 'xyzzyq' .*nearest known words"):
        search(searcher, "玉ねぎ", plus=["xyzzyq"], options=SearchOptions())
    with pytest.raises(ToolkitError, match=r"no word of the minus text 'を' "):
        search(searcher, "玉ねぎ", minus=["を"], options=SearchOptions())
    with pytest.raises(ToolkitError, match=r"^the plus text '  ' \(--plus\): the query is empty"):
        search(searcher, "玉ねぎ", plus=["  "], options=SearchOptions())
    first = plain.hits[0].step_id
    liked = search(searcher, "炒める xyzzyq", like=[first], options=SearchOptions(k=3))
    assert any("not in the model's vocabulary: xyzzyq" in n for n in liked.notes)


def test_the_known_words_note_names_each_word_once(searcher: Searcher) -> None:
    result = search(searcher, "玉ねぎ玉ねぎ玉ねぎ xyzzyq", options=SearchOptions(k=3))
    note = next(n for n in result.notes if "searched with the known words" in n)
    assert note.startswith("searched with the known words 玉葱; not in")


@pytest.mark.parametrize("mode", ["knn", "keyword", "hybrid"])
def test_an_invisible_character_inside_a_word_finds_what_the_word_finds(
    searcher: Searcher, mode: str
) -> None:
    # a zero-width space or soft hyphen pasted into a query (web pages) must not split the word
    plain = search(searcher, QUERY, options=SearchOptions(mode=mode, k=5))
    pasted = search(
        searcher, "玉ね\u200bぎを薄\u00ad切りに\ufeffします。", options=SearchOptions(mode=mode, k=5)
    )
    assert [h.step_id for h in pasted.hits] == [h.step_id for h in plain.hits]
    assert not pasted.notes


def test_more_like_unknown_steps_names_them(searcher: Searcher) -> None:
    """It said "not in recipes: nope:1", which reads oddly of an alias called ``recipes``."""
    found = search(searcher, QUERY, options=SearchOptions(k=1)).hits[0].step_id
    with pytest.raises(ToolkitError) as info:
        search(searcher, like=["nope:1", found, "nope:2"], options=SearchOptions())
    assert str(info.value) == (
        f"cannot search like these steps (step id(s) not found in index '{searcher.index}': nope:1, nope:2)"
    )


@pytest.mark.parametrize("mode", ["knn", "keyword", "hybrid", "rrf", "linear"])
@pytest.mark.parametrize("text", ["の を に", "をにまで。", "。！"])
def test_a_query_of_particles_alone_is_refused_in_every_mode(
    searcher: Searcher, mode: str, text: str
) -> None:
    """The ``tokens`` field holds every token, particles included, and a keyword query is the query's every
    token: a keyword search for 「の を に」 returned steps that matched particles only, where knn and hybrid
    refused it. Every mode now refuses it with one message, before any request."""
    every = searcher.model.tokenizer.tokenize_all(text)
    with pytest.raises(ToolkitError) as info:
        search(searcher, text, options=SearchOptions(mode=mode, k=3))
    assert str(info.value) == (
        "the query has no content word to search for: only particles, auxiliary verbs, symbols or stopwords "
        f"({' '.join(every)})"
    )
    assert search(
        searcher, "玉ねぎ " + text, options=SearchOptions(mode=mode, k=3)
    ).hits  # with one: searched


def test_a_query_over_the_length_limit_is_refused_before_any_request(
    searcher: Searcher, monkeypatch: pytest.MonkeyPatch
) -> None:
    """~12,000 distinct words reached Elasticsearch ("maxClauseCount is set to ..."): the library's search
    functions now refuse a text over MAX_QUERY_CHARS (the web API's 2,000 characters), naming the limit."""
    from toolkit.search.dispatch import search_text

    words = " ".join(f"w{i}" for i in range(12_000))
    sent: list[str] = []
    real = searcher.es.perform_request
    monkeypatch.setattr(searcher.es, "perform_request", lambda *a, **kw: sent.append(a[1]) or real(*a, **kw))
    for mode in ("keyword", "knn", "hybrid"):
        with pytest.raises(
            ToolkitError, match=f"^the query is {len(words)} characters, over the limit of 2000$"
        ):
            search_text(searcher, words, mode=mode)
    with pytest.raises(ToolkitError, match=r"^the minus text 'w0 w1 .*\.\.\.' \(--minus\) is \d+ characters"):
        search(searcher, QUERY, minus=[words])
    assert sent == []  # refused before any request
    at_limit = ("玉ねぎ " * 500)[:2000]
    assert search_text(searcher, at_limit, mode="keyword").hits
    assert any(path.endswith("/_search") for path in sent), sent  # what a search sends is seen


def test_cli_group_explain_and_like(built_model: Path, search_alias: str, es_settings) -> None:
    env = {"ES_URL": es_settings.url}
    base = ["search", "--model", str(built_model), "--index", search_alias, "-k", "3"]
    runner = CliRunner()
    res = runner.invoke(cli, [*base, QUERY, "--group", "recipe", "--per-group", "2", "--json"], env=env)
    assert res.exit_code == 0, res.output
    data = json.loads(res.output)
    assert len(data["groups"]) == 3 and all(len(g["steps"]) <= 2 for g in data["groups"])
    res = runner.invoke(cli, [*base, QUERY + " xyzzyq", "--explain"], env=env)
    assert res.exit_code == 0, res.output
    assert "unknown: xyzzyq" in res.output and "leave-one-word-out (cosine)" in res.output
    assert "not in the model's vocabulary: xyzzyq" in res.output
    step = data["groups"][0]["steps"][0]["step_id"]
    res = runner.invoke(cli, [*base, "--like", step, "--json"], env=env)
    assert res.exit_code == 0, res.output
    hits = json.loads(res.output)["hits"]
    assert len(hits) == 3 and step not in [h["step_id"] for h in hits]
    res = runner.invoke(cli, [*base, "xyzzyq"], env=env)
    assert res.exit_code == 2 and "nearest known words" in res.output


def test_a_keyword_search_notes_a_text_the_model_does_not_know_and_no_hit(searcher: Searcher) -> None:
    """kNN refuses such a text with suggestions; a keyword search ran it silently and returned nothing."""
    from toolkit.search.dispatch import search_text

    result = search_text(searcher, "zzzqqq", mode="keyword")
    assert result.hits == []
    assert any(
        n
        == "no word of the query is in the model's vocabulary (unknown: zzzqqq): only a keyword search finds it"
        for n in result.notes
    ), result.notes
    assert any(n.startswith("no hit: no step with a photo holds a word of the query (") for n in result.notes)
    with pytest.raises(ToolkitError, match="nearest known words: zzzqqq ->"):
        search_text(searcher, "zzzqqq")  # kNN: the error, as before
    assert search_text(searcher, QUERY, mode="keyword").notes == []  # known words, hits: nothing to say


@pytest.mark.parametrize("mode", ["keyword", "hybrid", "rrf", "linear"])
def test_a_search_with_no_hit_says_so(searcher: Searcher, mode: str) -> None:
    nowhere = Filters(recipe_ids=("no-such-recipe",))
    for group in (None, "recipe"):
        result = search(searcher, QUERY, options=SearchOptions(mode=mode, filters=nowhere, group=group))
        assert result.hits == [] and not result.groups
        assert any(n.startswith("no hit: no step with a photo the filters allow") for n in result.notes)


def test_fusion_from_the_knn_list_alone_is_noted(
    es: Elasticsearch, sample_root: Path, built_model: Path, index_name: str, tmp_path: Path
) -> None:
    """An index of other recipes than the model learned from: a word it knows that no indexed step holds
    finds photos by kNN only, and the fused result says so."""
    from toolkit.index.indexer import IndexOptions, index_dataset
    from toolkit.search.dispatch import search_text

    lines = (sample_root / "recipes.jsonl").read_text(encoding="utf-8").splitlines()[:3]
    (tmp_path / "recipes.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    for line in lines:  # their photos (copies: a link out of the dataset root is not followed)
        rid = json.loads(line)["recipe_id"]
        shutil.copytree(sample_root / "images" / rid, tmp_path / "images" / rid)
    index_dataset(es, tmp_path, built_model, IndexOptions(alias=index_name))
    searcher = Searcher(es, SearchModel.load(built_model), index_name)
    es.indices.refresh(index=index_name)
    word = next(
        w
        for w in searcher.model.word_vectors.index
        if searcher.tokens(w) == [w]
        and not es.count(index=index_name, query={"term": {"tokens": w}})["count"]
    )
    assert search_text(searcher, word, mode="keyword").hits == []
    for mode in ("rrf", "linear"):
        result = search_text(searcher, word, mode=mode, k=3)
        assert len(result.hits) == 3
        assert "no step holds a word of the query: fused from the kNN list alone" in result.notes


def test_the_cli_says_which_unknown_words_were_not_looked_up() -> None:
    """Past :data:`~toolkit.search.explain.SUGGESTED_WORDS` unknown words no suggestion is looked up: the CLI
    said "nearest known: none" for them, as if the vocabulary had nothing close."""
    from toolkit.cli.search import _render_explanation
    from toolkit.search.explain import SUGGESTED_WORDS

    words = [f"w{i}" for i in range(SUGGESTED_WORDS + 2)]
    ex = {"tokens": words, "keyword_tokens": words, "known": [], "unknown": []}
    ex["unknown"] = [
        {"word": w, "suggestions": ["x"] if i < SUGGESTED_WORDS else []} for i, w in enumerate(words)
    ]
    lines = _render_explanation(ex)
    assert sum("(nearest known: x)" in line for line in lines) == SUGGESTED_WORDS
    assert f"unknown: w{SUGGESTED_WORDS} w{SUGGESTED_WORDS + 1}  (not looked up)" in lines


def test_explanation_json_says_which_unknown_words_were_not_looked_up(searcher: Searcher) -> None:
    """Past :data:`~toolkit.search.explain.SUGGESTED_WORDS` unknown words the JSON said ``"suggestions": []``,
    as if nothing in the vocabulary were close: now ``looked_up`` false and ``suggestions`` null."""
    from toolkit.search import explain

    words = [f"xq{chr(ord('a') + i)}zz" for i in range(explain.SUGGESTED_WORDS + 2)]
    result = search(
        searcher, "玉ねぎ " + " ".join(words), options=SearchOptions(mode="knn", k=3, explain=True)
    )
    unknown = result.explanation["unknown"]
    assert [u["word"] for u in unknown] == words
    for u in unknown[: explain.SUGGESTED_WORDS]:
        assert u["looked_up"] is True and isinstance(u["suggestions"], list)
    assert unknown[explain.SUGGESTED_WORDS :] == [
        {"word": w, "looked_up": False, "suggestions": None} for w in words[explain.SUGGESTED_WORDS :]
    ]


@pytest.mark.parametrize("text", ["\u200b", "\u200b\u2060 \ufeff"])
def test_a_query_of_invisible_characters_only_is_empty_in_every_mode(searcher: Searcher, text: str) -> None:
    """Records of only invisible characters are refused as blank, but such a query was not: a keyword search
    said "the query '\\u200b' has no searchable token" and a vector one "no content word ... (none)". Every
    mode now says what an empty query gets, and a like-these query ignores the invisible text as it does a blank
    one."""
    for mode in ("knn", "keyword", "hybrid", "rrf", "linear"):
        with pytest.raises(ToolkitError) as info:
            search(searcher, text, options=SearchOptions(mode=mode, k=3))
        assert str(info.value) == "the query is empty: give a text, a photo or steps to search like", mode
        with pytest.raises(ToolkitError, match="^the query is empty$"):
            searcher.tokens(text)
    found = search(searcher, QUERY, options=SearchOptions(k=1)).hits[0].step_id
    assert search(searcher, text, like=[found], options=SearchOptions(k=3)).hits


def test_a_report_sample_of_a_long_step_text_is_still_searched(searcher: Searcher, sample_root: Path) -> None:
    """An evaluation report's sample queries are the dataset's own step texts (up to 20,000 characters): the
    2,000-character limit on typed queries turned a long one into an error entry, where it was searched."""
    from toolkit.model import MAX_QUERY_CHARS
    from toolkit.viz.report import sample_sections

    long_step = "玉ねぎを薄切りにして、弱火でじっくり炒めます。" * 100
    assert len(long_step) > MAX_QUERY_CHARS
    (section,) = sample_sections(searcher, sample_root, [(long_step, None)], 3, "knn")
    assert "error" not in section, section
    assert len(section["hits"]) == 3
