"""`jrs evaluate`'s numbers on the edges: queries whose photo is not indexed, duplicate photos, a held-out split
larger than the whole-split sample. Real model, real index."""

from __future__ import annotations

import shutil
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from elasticsearch import Elasticsearch

from toolkit.errors import ToolkitError
from toolkit.evaluation import metrics
from toolkit.evaluation.through_index import Query, evaluate_through_index, held_out_queries
from toolkit.model import SearchModel, read_manifest
from toolkit.search.engine import Searcher
from toolkit.vectorset import load_vector_set


def _split_seed(model_dir: Path) -> int:
    return int(read_manifest(model_dir).get("split_seed", 0))


def test_a_query_whose_photo_is_not_indexed_is_left_out_not_a_miss(
    es: Elasticsearch, built_model: Path, sample_root: Path, search_alias: str
) -> None:
    """A held-out step whose photo is not in the index (unusable photo dropped at indexing, an index of part of
    the data) cannot be found by any mode: it was counted as a miss in every mode, R@K shrunk by the share of
    such queries with nothing said. Now it is left out and listed."""
    searcher = Searcher(es, SearchModel.load(built_model), search_alias)
    queries = held_out_queries(sample_root, _split_seed(built_model))[:8]
    ghost = replace(queries[0], step_id="zz-not-indexed:1")  # the text of a real step, no photo indexed
    modes = ("keyword",)
    plain = evaluate_through_index(searcher, queries, k=10, modes=modes)
    with_ghost = evaluate_through_index(searcher, [*queries, ghost], k=10, modes=modes)
    assert with_ghost["skipped_photo_not_in_index"] == ["zz-not-indexed:1"]
    assert plain["skipped_photo_not_in_index"] == []
    assert with_ghost["queries"] == plain["queries"] == len(queries)
    assert with_ghost["modes"] == plain["modes"]
    with pytest.raises(ToolkitError, match="none of the 1 held-out queries has its photo in index"):
        evaluate_through_index(searcher, [ghost], k=10, modes=modes)


def test_linear_baseline_ranks_are_positions_in_their_own_top_list(built_model: Path, tmp_path: Path) -> None:
    """Two gallery photos with the same features (a duplicate photo): the baseline's rank of the query's photo
    is where its ``top`` list (and exact kNN through the index) puts it, ties in gallery order. It counted only
    strictly higher scores: rank 1 for a photo listed second."""
    from toolkit.evaluation.held_out import gallery_baselines

    model_dir = tmp_path / "model"
    shutil.copytree(built_model, model_dir)
    seed = _split_seed(model_dir)
    query = held_out_queries(read_manifest(model_dir)["dataset"], seed)[0]
    feats = load_vector_set(model_dir / "image_features")
    row_of = feats.index()
    others = [i for i in feats.ids if i != query.step_id][:11]
    # the query's own (held-out: never a training pair) photo becomes a copy of another photo, listed first
    vectors = np.load(model_dir / "image_features" / "vectors.npy", mmap_mode="r+")
    vectors[row_of[query.step_id]] = vectors[row_of[others[0]]]
    vectors.flush()
    del vectors
    gallery = [others[0], query.step_id, *others[1:]]
    text, ok = SearchModel.load(model_dir).text_features([query.text])
    assert ok[0]
    out = gallery_baselines(model_dir, seed, gallery, [(query.step_id, text[0])], k=len(gallery))
    for name in ("cca", "ridge"):
        top = out[name]["top"][0]
        assert top.index(others[0]) < top.index(query.step_id)  # equal scores: gallery order
        assert out[name]["ranks"] == [top.index(query.step_id) + 1], name


def test_whole_split_baselines_rank_the_same_sample_as_the_model(
    built_model: Path, sample_root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The build's ``model_full`` ranks a seeded sample of at most FULL_MAX_PAIRS pairs of a larger split; the
    baselines' ``*_full`` and graded precision ranked the whole split (a harder, other gallery) and built a
    dense split x split score matrix. They now rank the very rows the model's figure ranks."""
    from toolkit.evaluation.held_out import held_out_baselines, model_pairs

    seed = _split_seed(built_model)
    test = model_pairs(built_model, seed)["test"]
    n = len(test.ids)
    cap = n // 2
    monkeypatch.setattr(metrics, "FULL_MAX_PAIRS", cap)
    mapping = SearchModel.load(built_model).mapping.model
    out = held_out_baselines(built_model, seed, mapping, sample_root, pool=1000, draws=1)
    assert out["split"] == "test"
    rows = np.sort(np.random.default_rng(0).choice(n, size=cap, replace=False))  # full_metrics_of's sample
    from toolkit.evaluation.held_out import fit_model_baselines

    fitted = fit_model_baselines(model_pairs(built_model, seed))
    for name, lin in fitted.items():
        full = out[f"{name}_full"]
        assert full["n"] == cap and full["sampled_from"] == n
        expected = metrics.full_metrics(lin.embed_text(test.text[rows]), lin.embed_image(test.image[rows]))
        assert full["text_to_image"] == pytest.approx(expected["text_to_image"])
        assert out[f"{name}_pooled"]["n"] == n  # the pools are drawn from the whole split, as the model's
    graded = out["graded"]
    assert all(g["sampled_from"] == n for g in graded.values())
    assert graded["model"]["main_queries"] <= cap


def test_through_index_numbers_match_a_hand_count(
    es: Elasticsearch, built_model: Path, sample_root: Path, search_alias: str
) -> None:
    """R@K and MRR@k of exact kNN and keyword recounted from the raw hits and the index's own vectors."""
    from toolkit.search.dispatch import knn_params
    from toolkit.search.queries import Filters

    searcher = Searcher(es, SearchModel.load(built_model), search_alias)
    queries: list[Query] = held_out_queries(sample_root, _split_seed(built_model))[:12]
    k = 5
    out = evaluate_through_index(searcher, queries, k=k, modes=("knn", "keyword"))
    hits = es.search(index=search_alias, size=10_000, query={"exists": {"field": "image_vector"}})
    ids = [h["_id"] for h in hits["hits"]["hits"]]
    assert out["gallery"] == len(ids)
    gallery = np.array([h["_source"]["image_vector"] for h in hits["hits"]["hits"]], np.float32)
    gallery /= np.linalg.norm(gallery, axis=1, keepdims=True)
    exact, knn, keyword = [], [], []
    for q in queries:
        vec = searcher.text_vector(q.text)
        scores = gallery @ searcher.photo_query(vec)
        own = ids.index(q.step_id)
        exact.append(int((scores > scores[own]).sum()) + 1)
        found = [h.step_id for h in searcher.knn(vec, knn_params(k, None), Filters()).hits]
        knn.append(found.index(q.step_id) + 1 if q.step_id in found else None)
        words = [h.step_id for h in searcher.keyword(q.text, k, Filters()).hits]
        keyword.append(words.index(q.step_id) + 1 if q.step_id in words else None)

    def count(ranks: list[int | None]) -> dict[str, float]:
        within = [r for r in ranks if r is not None and r <= k]
        return {
            "R@1": sum(r <= 1 for r in within) / len(ranks),
            "R@5": len(within) / len(ranks),
            f"MRR@{k}": sum(1 / r for r in within) / len(ranks),
            "n": len(ranks),
        }

    assert out["modes"]["exact_knn"] == pytest.approx(count(exact))
    assert out["modes"]["knn"] == pytest.approx(count(knn))
    assert out["modes"]["keyword"] == pytest.approx(count(keyword))
