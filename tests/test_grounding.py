"""Word grounding (toolkit.mapping.grounding): per-word photo classifiers, the product-of-experts score, the
share picked on validation pairs, saved with the mapping, and the kNN rerank of a query with an unknown word
against a real Elasticsearch node."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from elasticsearch import Elasticsearch

from toolkit.mapping import grounding as g
from toolkit.mapping.checkpoint import load_mapping, save_mapping
from toolkit.mapping.config import MappingConfig
from toolkit.mapping.train import train_mapping
from toolkit.text.tokens import TokenBags


def _bags(lists: list[list[int]]) -> TokenBags:
    return TokenBags.from_lists(lists)


def test_grounded_words_are_those_of_several_recipes_but_not_all() -> None:
    words_of_recipe = [np.array([1, 2, 9]), np.array([1, 3, 9]), np.array([1, 2, 9]), np.array([4, 9])]
    # 9 is in every recipe (tells nothing), 3 and 4 in one; 1 (3 recipes) before 2 (2 recipes)
    assert g.grounded_words(words_of_recipe).tolist() == [1, 2]


def test_grounded_words_keep_the_most_frequent(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(g, "MAX_WORDS", 1)
    words_of_recipe = [np.array([5, 7]), np.array([5, 7]), np.array([7]), np.array([8])]
    assert g.grounded_words(words_of_recipe).tolist() == [7]


def test_recipe_words_pool_the_steps_of_a_recipe() -> None:
    bags = _bags([[1, 2], [3], [4], [1]])
    recipe_of, words = g.recipe_words(bags, np.array([10, 10, 20, 20]))
    assert recipe_of.tolist() == [0, 0, 1, 1]
    assert [w.tolist() for w in words] == [[1, 2, 3], [1, 4]]


def _planted(n: int = 400, seed: int = 0) -> tuple[np.ndarray, np.ndarray, list[np.ndarray]]:
    """Photo vectors whose dimension 0 is high when the recipe uses word 1, dimension 1 for word 2."""
    rng = np.random.default_rng(seed)
    uses = rng.random((n, 2)) < 0.5
    x = rng.normal(0, 0.3, (n, 6)).astype(np.float32)
    x[:, :2] += uses.astype(np.float32) * 1.5
    words = [np.flatnonzero(u) + 1 for u in uses]
    return x, np.arange(n), words


def test_the_classifiers_learn_which_photos_show_a_word_and_are_deterministic() -> None:
    x, recipe_of, words_of_recipe = _planted()
    w, b = g.fit_classifiers(x, recipe_of, words_of_recipe, np.array([1, 2]))
    assert w.shape == (2, 6) and b.shape == (2,)
    assert w[0, 0] > 3 * np.abs(w[0, 2:]).max() and w[1, 1] > 3 * np.abs(w[1, 2:]).max()
    logits = x @ w.T + b
    truth = np.array([[1 in ws, 2 in ws] for ws in words_of_recipe])
    assert ((logits > 0) == truth).mean() > 0.9
    w2, b2 = g.fit_classifiers(x, recipe_of, words_of_recipe, np.array([1, 2]))
    np.testing.assert_array_equal(w, w2)
    np.testing.assert_array_equal(b, b2)


def _two_word_grounding() -> g.WordGrounding:
    grounding = g.WordGrounding(2, 2, share=0.1)
    grounding.set(np.array([7, 3]), np.array([[0.0, 4.0], [4.0, 0.0]]), np.array([-2.0, -2.0]))
    return grounding


def test_the_score_is_a_product_of_experts() -> None:
    """A photo that shows both words outranks one that shows one of them strongly, where the mean of the
    logits (a linear score) ties them."""
    grounding = _two_word_grounding()
    both, one = np.array([1.0, 1.0]), np.array([2.0, 0.0])
    scores = grounding.log_probs([3, 7], np.stack([both, one]))
    assert scores[0] > scores[1] + 1.0
    logits = np.stack([both, one]) @ grounding.weight.numpy().T + grounding.bias.numpy()
    assert logits.sum(axis=1)[0] == pytest.approx(logits.sum(axis=1)[1])


def test_only_grounded_words_count() -> None:
    grounding = _two_word_grounding()
    photos = np.array([[1.0, 0.0], [0.0, 1.0]])
    assert grounding.rows_of([5, 3, 3, 99]).tolist() == [0]  # sorted ids: 3 is row 0
    np.testing.assert_array_equal(grounding.log_probs([5, 99], photos), [0.0, 0.0])
    assert grounding.log_probs([3], photos)[0] > grounding.log_probs([3], photos)[1]


def test_a_share_needs_enough_validation_pairs() -> None:
    share, picked = g.pick_share(None, _two_word_grounding(), _bags([[3]] * (g.MIN_VAL_PAIRS - 1)), None)
    assert share == 0.0 and picked == {"val_pairs": g.MIN_VAL_PAIRS - 1, "val_queries": g.MIN_VAL_PAIRS - 1}


def test_the_share_is_picked_on_validation_pairs_with_an_unknown_word() -> None:
    """Only queries with an unknown word are reranked, so only such validation pairs pick the share: a
    collection whose validation steps have too few (recipes, in the sets) gets none."""
    n = g.MIN_VAL_PAIRS + 5
    unknown = np.zeros(n, dtype=np.int32)
    unknown[: g.MIN_VAL_PAIRS - 1] = 1
    share, picked = g.pick_share(None, _two_word_grounding(), _bags([[3]] * n), None, unknown)
    assert share == 0.0 and picked == {"val_pairs": n, "val_queries": g.MIN_VAL_PAIRS - 1}


def test_over_max_val_pairs_the_share_is_picked_on_a_sample_of_the_whole_validation_set(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Queries with an unknown word late in a large validation set still count (they were cut off with the
    rows after the first MAX_VAL); the sample is seeded, and holds every query's own photo."""
    monkeypatch.setattr(g, "MAX_VAL", 100)
    unknown = np.zeros(300, np.int32)
    unknown[250:] = 1  # 50 queries, all after the first 100 rows
    rows, queries = g.validation_sample(300, unknown, seed=0)
    assert len(rows) == 100 and np.all(np.diff(rows) > 0)
    assert sorted(rows[queries].tolist()) == list(range(250, 300))
    again, same = g.validation_sample(300, unknown, seed=0)
    assert np.array_equal(again, rows) and np.array_equal(same, queries)
    assert not np.array_equal(g.validation_sample(300, unknown, seed=1)[0], rows)
    many = np.ones(300, np.int32)  # more queries than MAX_VAL: a sample of them, no other photo
    rows, queries = g.validation_sample(300, many, seed=0)
    assert len(rows) == 100 and len(queries) == 100
    small, asked = g.validation_sample(40, unknown[:40] + 1, seed=3)  # up to MAX_VAL: every row, in order
    assert small.tolist() == list(range(40)) and asked.tolist() == list(range(40))
    share, picked = g.pick_share(None, _two_word_grounding(), _bags([[3]] * 300), None, np.zeros(300))
    assert share == 0.0 and picked == {"val_pairs": 100, "val_queries": 0}


def test_a_collection_without_unknown_words_in_validation_gets_no_grounding() -> None:
    tr_bags, tr_img, groups = _concept_pairs(30, 0)
    va_bags, va_img, _ = _concept_pairs(12, 1)
    words = np.random.default_rng(2).normal(0, 1, (100, 8)).astype(np.float32)
    config = MappingConfig(dim=16, hidden=32, epochs=2, batch_size=32, linear_dims=4, seed=0)
    none_unknown = np.zeros(len(va_bags), dtype=np.int32)
    result = train_mapping(
        tr_bags, tr_img, va_bags, va_img, config, groups, word_vectors=words, val_unknown=none_unknown
    )
    assert result.model.grounding is None
    assert result.grounding["share"] == 0.0 and result.grounding["val_queries"] == 0
    every = np.ones(len(va_bags), dtype=np.int32)  # like the concept set's validation steps: names unknown
    result = train_mapping(
        tr_bags, tr_img, va_bags, va_img, config, groups, word_vectors=words, val_unknown=every
    )
    assert result.grounding["val_queries"] == len(va_bags) and result.grounding["share"] > 0


def _concept_pairs(n_recipes: int, seed: int) -> tuple[TokenBags, np.ndarray, np.ndarray]:
    """Steps that name an object (its own word) and one of its two looks; the photo shows both looks."""
    rng = np.random.default_rng(seed)
    bags, photos, groups = [], [], []
    for r in range(n_recipes):
        look_a, look_b = int(rng.integers(4)), int(rng.integers(4))
        for _ in range(4):
            named = 1 + look_a if rng.random() < 0.5 else 5 + look_b
            bags.append([10 + r, named])
            x = rng.normal(0, 0.4, 16)
            x[look_a] += 2.0
            x[4 + look_b] += 2.0
            photos.append(x)
            groups.append(r)
    return _bags(bags), np.asarray(photos, np.float32), np.asarray(groups)


@pytest.fixture(scope="module")
def trained() -> tuple[object, TokenBags]:
    tr_bags, tr_img, groups = _concept_pairs(60, 0)
    va_bags, va_img, _ = _concept_pairs(12, 1)
    words = np.random.default_rng(2).normal(0, 1, (100, 8)).astype(np.float32)
    config = MappingConfig(dim=16, hidden=32, epochs=4, batch_size=32, linear_dims=4, seed=0)
    result = train_mapping(tr_bags, tr_img, va_bags, va_img, config, groups, word_vectors=words)
    return result, va_bags


def test_training_fits_the_grounding_and_records_it(trained: tuple) -> None:
    """On steps that each name one of their photo's two looks, grounding ranks held-out pairs better: the
    validation pairs pick a share above 0, and the mapping carries the look words' classifiers."""
    result, _ = trained
    assert result.grounding["words"] == 8  # the 8 look words; the object names are each one recipe's
    assert result.grounding["val_pairs"] == 48 and set(result.grounding["val_mrr"]) == {
        str(s) for s in g.SHARES
    }
    mrr = result.grounding["val_mrr"]
    share = result.grounding["share"]
    assert share > 0 and mrr[str(share)] > mrr["0.0"] + 0.02
    grounding = result.model.grounding
    assert grounding is not None and grounding.share == share
    assert result.model.arch()["grounding_share"] == share
    from toolkit.evaluation.baselines import random_towers, untrained_arch

    assert random_towers(untrained_arch(result.model.arch())).grounding is None  # fitted, not untrained
    assert grounding.words.tolist() == list(range(1, 9))


def test_a_saved_grounding_loads_with_the_mapping_and_its_fingerprint(trained: tuple, tmp_path: Path) -> None:
    result, _ = trained
    model = result.model
    grounding = g.WordGrounding(3, model.dim)
    grounding.set(np.array([1, 2, 3]), np.ones((3, model.dim)), np.zeros(3))
    model.set_grounding(grounding, 0.05)  # attached whatever the small set picked
    save_mapping(tmp_path, model, result.config, {"word2vec": "w", "encoder": "e"})
    loaded = load_mapping(tmp_path)
    assert loaded.model.grounding is not None and loaded.model.grounding.share == 0.05
    assert torch.equal(loaded.model.grounding.weight, model.grounding.weight)
    assert loaded.model.grounding.words.tolist() == [1, 2, 3]


def test_grounding_can_be_turned_off_and_old_configs_have_none() -> None:
    tr_bags, tr_img, groups = _concept_pairs(30, 0)
    va_bags, va_img, _ = _concept_pairs(8, 1)
    words = np.random.default_rng(2).normal(0, 1, (100, 8)).astype(np.float32)
    config = MappingConfig(dim=16, hidden=32, epochs=2, batch_size=32, word_grounding=False)
    result = train_mapping(tr_bags, tr_img, va_bags, va_img, config, groups, word_vectors=words)
    assert result.model.grounding is None and result.grounding == {}
    assert MappingConfig.from_dict({}).word_grounding is False  # mappings saved before it: none


def test_a_share_of_zero_takes_an_attached_grounding_off(trained: tuple) -> None:
    result, _ = trained
    model = copy.deepcopy(result.model)
    before = model.arch()
    grounding = g.WordGrounding(2, model.dim)
    grounding.set(np.array([1, 2]), np.ones((2, model.dim)), np.zeros(2))
    model.set_grounding(grounding, 0.1)
    assert model.grounding is not None and model.arch()["grounding_share"] == 0.1
    model.set_grounding(grounding, 0.0)
    assert model.grounding is None
    assert not any(k.startswith("grounding") for k in model.state_dict())
    assert model.arch() == {k: v for k, v in before.items() if not k.startswith("grounding_")}


def test_a_query_with_an_unknown_word_is_reranked_through_the_index(
    es: Elasticsearch, built_model: Path, search_alias: str
) -> None:
    """Against the real node: the candidates of a query with a word the model lacks come back in the order of
    cosine + share x grounding score (computed here from the stored photo vectors); a query of known words
    only, and a grouped search, are plain kNN."""
    from toolkit.index.hubness import photo_scale
    from toolkit.model import SearchModel
    from toolkit.search.dispatch import SearchOptions, search, search_text
    from toolkit.search.engine import Searcher
    from toolkit.search.queries import Filters, KnnParams

    model = SearchModel.load(built_model)
    mapping = model.mapping.model
    mapping.grounding = None  # the sample's recipes pick none: attach one made for this test
    known, unknown = "玉ねぎを炒める", "玉ねぎをフランベで炒める"
    bags, _ = model.text_tokens([known])
    ids = np.unique(bags.ids)  # the query's two known words
    assert len(ids) == 2
    rng = np.random.default_rng(0)
    grounding = g.WordGrounding(2, mapping.dim)
    grounding.set(ids, rng.normal(0, 3, (2, mapping.dim)), np.zeros(2))
    mapping.set_grounding(grounding, 0.5)
    searcher = Searcher(es, model, search_alias)
    assert searcher.grounded_words(known) is None and searcher.grounded_words(unknown) is not None
    params = KnnParams(5, 100)
    plain = searcher.knn(searcher.text_vector(unknown), KnnParams(g.DEPTH, 100), Filters())
    reranked = searcher.text_knn(unknown, params, Filters())
    assert len(reranked.hits) == 5 and "reranked" in reranked.notes[-1]
    docs = {h["_id"]: h["_source"]["image_vector"] for h in es.search(
        index=search_alias, size=1000, query={"terms": {"step_id": [h.step_id for h in plain.hits]}},
        source=["image_vector"])["hits"]["hits"]}  # fmt: skip
    photos = searcher.stored_photo_vector(np.asarray([docs[h.step_id] for h in plain.hits], np.float32))
    words = searcher.grounded_words(unknown)
    # the share weighs cosines: on a hubness-corrected index (the default) Elasticsearch's cosine is the
    # CSLS score times s / sqrt(2) (toolkit.index.hubness), so it is brought back to that scale
    beta = searcher.photo_hubness_beta
    assert beta is not None
    csls = np.asarray([2 * h.score - 1 for h in plain.hits]) * np.sqrt(2.0) / photo_scale(beta)
    expected = csls + 0.5 * mapping.grounding.log_probs(words, photos)
    top = np.argsort(-expected, kind="stable")[:5]
    order = [plain.hits[i].step_id for i in top]
    assert [h.step_id for h in reranked.hits] == order
    # each score stays on Elasticsearch's scale: (1 + the expected score's cosine scale back) / 2
    scale = photo_scale(beta) / np.sqrt(2.0)
    np.testing.assert_allclose([h.score for h in reranked.hits], (1 + scale * expected[top]) / 2, atol=1e-5)
    assert order != [h.step_id for h in plain.hits[:5]]  # the rerank moved something
    same = search_text(searcher, known, k=5)
    assert [h.step_id for h in same.hits] == [
        h.step_id for h in searcher.knn(searcher.text_vector(known), params, Filters()).hits
    ]
    grouped = search(searcher, unknown, options=SearchOptions(k=3, group="recipe"))
    assert not any("reranked" in n for n in grouped.notes)
    # --explain recomputes the reranked scores, and leaves each word out of the grounding as well
    explained = search(searcher, unknown, options=SearchOptions(k=5, explain=True))
    assert [h.step_id for h in explained.hits] == order
    assert explained.explanation is not None
    hits = explained.explanation["contributions"]["hits"]
    np.testing.assert_allclose([h["recomputed"] for h in hits], [h["score"] for h in hits], atol=1e-4)
    json.dumps(explained.as_dict())  # what `jrs search --json` and the web API send
    # `jrs evaluate` through the index ranks such a query as `jrs search` answers it: reranked
    from toolkit.evaluation.through_index import Query, evaluate_through_index

    moved = next(i for i, h in enumerate(plain.hits[:5]) if h.step_id != order[i])
    result = evaluate_through_index(searcher, [Query(order[moved], unknown)], k=5, modes=("knn",))
    assert result["modes"]["knn"]["R@1"] == float(moved == 0)
    assert result["modes"]["knn"]["MRR@5"] == pytest.approx(1.0 / (moved + 1))
    mapping.grounding.share = (
        0.0  # a grounding built with no share (TwoTower(grounding_words=n)) reranks nothing
    )
    assert searcher.grounded_words(unknown) is None
    assert not any("reranked" in n for n in searcher.text_knn(unknown, params, Filters()).notes)


def test_a_grounding_of_other_dims_leaves_the_model_as_it_was() -> None:
    """A refused grounding (its classifiers of another size than the model's vectors) attaches nothing: no
    zero classifiers left behind with a share, no changed architecture or fingerprint."""
    from toolkit.mapping.towers import TwoTower

    model = TwoTower(text_dim=4, image_dim=6, dim=8, hidden=16, text_tower="bag", vocab=20)
    before, state = model.arch(), set(model.state_dict())
    grounding = g.WordGrounding(2, 5)
    grounding.set(np.array([1, 2]), np.ones((2, 5)), np.zeros(2))
    with pytest.raises(RuntimeError, match="size mismatch"):
        model.set_grounding(grounding, 0.1)
    assert model.grounding is None and model.arch() == before and set(model.state_dict()) == state
    fitted = g.WordGrounding(2, 8)
    fitted.set(np.array([1, 2]), np.ones((2, 8)), np.zeros(2))
    model.set_grounding(fitted, 0.1)
    assert model.grounding is not None and model.grounding.share == 0.1
    assert torch.equal(model.grounding.weight, fitted.weight) and model.arch()["grounding_words"] == 2
