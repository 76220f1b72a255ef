"""Graded precision@k (same main ingredient / method / both) on hand-made rankings."""

from __future__ import annotations

import numpy as np
import pytest

from toolkit.evaluation.graded import graded_from_scores, graded_precision, tag_labels, top_k_indices

ONION_FRY = {"main": "玉ねぎ", "method": "炒める"}
ONION_BOIL = {"main": "玉ねぎ", "method": "茹でる"}
CABBAGE_FRY = {"main": "キャベツ", "method": "炒める"}
EGG_STEAM = {"main": "卵", "method": "蒸す"}


def test_hand_counted_precision_and_chance():
    gallery = [ONION_FRY, ONION_BOIL, CABBAGE_FRY, EGG_STEAM]
    ranked = [[CABBAGE_FRY, ONION_BOIL], [EGG_STEAM, ONION_FRY]]
    out = graded_precision([ONION_FRY, EGG_STEAM], ranked, gallery, k=2)
    # query 1: main 1/2, method 1/2, both 0; query 2: main 1/2, method 1/2, both 1/2
    assert out["main"] == pytest.approx(0.5) and out["method"] == pytest.approx(0.5)
    assert out["both"] == pytest.approx(0.25)
    # chance: onion 2/4 and egg 1/4; fry 2/4 and steam 1/4; both 1/4 and 1/4
    assert out["main_chance"] == pytest.approx(0.375) and out["method_chance"] == pytest.approx(0.375)
    assert out["both_chance"] == pytest.approx(0.25)
    assert out["main_queries"] == 2 and out["k"] == 2


def test_short_lists_and_missing_labels():
    gallery = [ONION_FRY, ONION_BOIL, CABBAGE_FRY, EGG_STEAM]
    out = graded_precision(
        [ONION_FRY, {"main": None, "method": "炒める"}], [[ONION_FRY], [CABBAGE_FRY]], gallery, k=4
    )
    assert out["main"] == pytest.approx(0.25)  # one hit of four slots; the second query has no main
    assert out["main_queries"] == 1 and out["method_queries"] == 2
    assert out["method"] == pytest.approx((0.25 + 0.25) / 2)


def test_a_gallery_smaller_than_k_is_scored_on_its_size():
    """Two photos, k = 10: ranking both scores what chance says for one of two relevant (it scored 1/10
    against a chance of 1/2 once: chance above anything a method could reach)."""
    gallery = [ONION_FRY, EGG_STEAM]
    out = graded_precision([ONION_FRY], [[ONION_FRY, EGG_STEAM]], gallery, k=10)
    assert out["main"] == pytest.approx(0.5) == out["main_chance"]
    perfect = graded_precision([ONION_FRY], [[ONION_FRY]], [ONION_FRY], k=10)
    assert perfect["main"] == pytest.approx(1.0) and perfect["main_chance"] == pytest.approx(1.0)


def test_from_scores_ranks_best_first():
    gallery = [EGG_STEAM, ONION_FRY, CABBAGE_FRY]
    scores = np.array([[0.1, 0.9, 0.5]])
    out = graded_from_scores(scores, [ONION_FRY], gallery, k=1)
    assert out["both"] == 1.0
    out = graded_from_scores(-scores, [ONION_FRY], gallery, k=1)
    assert out["main"] == 0.0 and out["method"] == 0.0


def test_top_k_breaks_ties_by_index():
    scores = np.array([[1.0, 3.0, 3.0, 2.0, 0.0]])
    assert top_k_indices(scores, 3).tolist() == [[1, 2, 3]]
    assert top_k_indices(scores, 10).tolist() == [[1, 2, 3, 0, 4]]


def test_tag_labels():
    assert tag_labels(["main:鶏肉", "method:揚げる", "dish:唐揚げ", "easy", "main:豚肉"]) == {
        "main": "鶏肉",
        "method": "揚げる",
        "dish": "唐揚げ",
    }


def test_bad_arguments():
    with pytest.raises(ValueError, match="k must"):
        graded_precision([ONION_FRY], [[]], [ONION_FRY], k=0)
    with pytest.raises(ValueError, match="ranked lists"):
        graded_precision([ONION_FRY], [], [ONION_FRY])
    with pytest.raises(ValueError, match="do not match"):
        graded_from_scores(np.zeros((2, 2)), [ONION_FRY], [ONION_FRY, ONION_FRY])


def test_top_k_breaks_ties_at_the_cut_by_index_too():
    """Equal scores straddling the k-th place: the lower indices make the cut (the partition picked one at
    random: [[3]] here, and graded precision then depended on where a duplicate photo sat in memory)."""
    scores = np.array([[0.0, 0.0, 2.0, 2.0, 1.0], [5.0, 1.0, 1.0, 1.0, 1.0]])
    assert top_k_indices(scores, 1).tolist() == [[2], [0]]
    assert top_k_indices(scores, 2).tolist() == [[2, 3], [0, 1]]
    rng = np.random.default_rng(0)
    for _ in range(200):
        s = rng.integers(0, 3, size=(3, int(rng.integers(2, 30)))).astype(np.float32)
        k = int(rng.integers(1, s.shape[1] + 2))
        expected = np.argsort(-s, axis=1, kind="stable")[:, :k]
        assert np.array_equal(top_k_indices(s, k), expected)


def test_order_ranks_are_positions_in_the_top_k_order():
    from toolkit.evaluation.graded import order_ranks

    scores = np.array([[1.0, 3.0, 3.0, 2.0], [1.0, 3.0, 3.0, 2.0]])
    # column 2 ties with column 1, which comes first; column 1 is first
    assert order_ranks(scores, [2, 1]).tolist() == [2, 1]
    rng = np.random.default_rng(1)
    s = rng.integers(0, 4, size=(20, 15)).astype(np.float32)
    cols = rng.integers(0, 15, size=20)
    order = top_k_indices(s, 15)
    assert order_ranks(s, cols).tolist() == [list(order[r]).index(c) + 1 for r, c in enumerate(cols)]


def test_tables_show_a_criterion_no_query_has_as_a_dash():
    """Recipes tagged main: but never method: leave the method chance None; the through-index table crashed
    on it (``100 * None``) after the whole evaluation had run."""
    from toolkit.cli.evaluate import graded_table, index_table

    graded = {
        "knn": {"k": 10, "main": 0.3, "method": None, "both": None}
        | {"main_chance": 0.1, "method_chance": None, "both_chance": None},
        "exact_knn": {"k": 10, "main": 0.3, "method": None, "both": None}
        | {"main_chance": 0.1, "method_chance": None, "both_chance": None},
    }
    text = graded_table(graded, "through the index")
    assert text.splitlines()[-1].split() == ["chance", "10.0", "-", "-"]
    result = {
        "index": "i",
        "queries": 3,
        "gallery": 9,
        "k": 10,
        "num_candidates": 100,
        "skipped_no_known_word": ["r1:1"],
        "skipped_photo_not_in_index": ["r2:1", "r2:2"],
        "modes": {"knn": {"R@1": 0.0, "R@5": 1 / 3, "R@10": 1.0, "MRR@10": 0.25, "n": 3}},
        "graded": graded,
    }
    text = index_table(result)
    assert "3 queries (1 with no known word, 2 whose photo is not in the index left out)" in text
    assert "chance" in text
    # a figure over no query (NaN) shows as "-", not "nan%"
    result["modes"]["knn"] |= {"R@1": float("nan"), "MRR@10": float("nan")}
    result["hnsw_recall@10"] = float("nan")
    text = index_table(result)
    assert "nan" not in text.lower()
    assert text.splitlines()[2].split() == ["knn", "-", "33.3%", "100.0%", "-"]
    assert "HNSW recall@10 (kNN top-10 vs exact top-10): -" in text


def test_held_out_graded_precision_in_query_blocks_matches_the_dense_ranking(monkeypatch):
    from toolkit.evaluation import held_out

    rng = np.random.default_rng(3)
    text, image = rng.normal(size=(2, 50, 8)).astype(np.float32)
    labels = [{"main": str(rng.integers(4)), "method": str(rng.integers(3))} for _ in range(50)]
    labels[7] = {}
    dense = graded_from_scores(text @ image.T, labels, labels, 10)
    monkeypatch.setattr(held_out, "GRADED_BLOCK", 7)
    assert held_out._graded(text, image, labels) == dense
