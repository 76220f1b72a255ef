"""The hubness correction of an index's photo vectors (``jrs index --hubness-correction``, the default): the
stored layout ranks exactly by ``cos(q, g) - beta * r(g)`` in Elasticsearch's own kNN, and every load,
live update and query of an index uses the correction it was created with."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from elasticsearch import Elasticsearch

from tests.photovectors import photo_vectors, unit
from toolkit.errors import ToolkitError
from toolkit.index.hubness import (
    EXTRA_DIMS,
    META_KEY,
    HubCorrection,
    correction_for,
    correction_from_meta,
    lift_query,
    unlift_photo,
)
from toolkit.index.indexer import IndexOptions, index_dataset
from toolkit.index.lifecycle import index_info
from toolkit.model import SearchModel
from toolkit.search.engine import Searcher
from toolkit.search.queries import Filters, HybridParams, KnnParams


def test_the_layout_scores_exactly_by_csls_and_stays_unit_length() -> None:
    rng = np.random.default_rng(0)
    bank, photos, queries = (unit(rng.normal(size=(n, 24))) for n in (300, 200, 50))
    photos[:5] = unit(bank[:50].mean(axis=0) + 0.01 * rng.normal(size=(5, 24)))  # hubs: near every text
    hub = HubCorrection(bank, k=10, beta=0.5)
    stored = hub.photo_layout(photos)
    assert stored.shape == (200, 24 + EXTRA_DIMS)
    assert np.allclose(np.linalg.norm(stored, axis=1), 1.0, atol=1e-5)
    lifted = lift_query(queries)
    assert np.allclose(np.linalg.norm(lifted, axis=1), 1.0, atol=1e-5)
    r = np.sort(photos @ bank.T, axis=1)[:, -10:].mean(axis=1)
    csls = queries @ photos.T - 0.5 * r[None, :]
    # the stored dot product is the CSLS score times a constant: the same order for every query
    got = lifted @ stored.T
    assert np.allclose(got, csls * (1 / np.sqrt(1.25)) / np.sqrt(2), atol=1e-5)
    assert (np.argsort(-got, axis=1)[:, :10] == np.argsort(-csls, axis=1)[:, :10]).all()
    # the hubs are near every query by cosine and pushed down by the correction
    plain_top = np.argsort(-(queries @ photos.T), axis=1)[:, :10]
    fixed_top = np.argsort(-got, axis=1)[:, :10]
    assert np.isin(plain_top, np.arange(5)).sum() > np.isin(fixed_top, np.arange(5)).sum()
    assert np.allclose(unlift_photo(stored, 24, 0.5), photos, atol=1e-5)


def test_bad_settings_and_shapes_are_refused() -> None:
    bank = unit(np.ones((3, 4)))
    with pytest.raises(ValueError):
        HubCorrection(bank, k=0)
    with pytest.raises(ValueError):
        HubCorrection(bank, beta=0.0)
    with pytest.raises(ValueError):
        HubCorrection(bank).photo_layout(np.ones((2, 5), np.float32))


def test_a_broken_record_is_refused_by_name(built_model: Path) -> None:
    model = SearchModel.load(built_model)
    assert correction_from_meta({}, model) is None
    with pytest.raises(ToolkitError, match=META_KEY):
        correction_from_meta({META_KEY: {"k": "ten"}}, model)
    with pytest.raises(ToolkitError, match="bank of 1000000"):  # more than this model has
        correction_from_meta({META_KEY: {"k": 10, "beta": 0.5, "bank": 1_000_000}}, model)


def test_the_bank_is_the_models_training_texts_and_repeats(built_model: Path) -> None:
    model = SearchModel.load(built_model)
    a, b = correction_for(model), correction_for(model)
    assert a is not None and b is not None
    assert a.bank.shape[1] == model.dims and 100 <= len(a.bank) <= 2000
    assert np.array_equal(a.bank, b.bank)
    assert np.allclose(np.linalg.norm(a.bank, axis=1), 1.0, atol=1e-4)


def test_a_corrected_index_ranks_by_csls_through_elasticsearch(
    es: Elasticsearch, sample_root: Path, built_model: Path, index_name: str
) -> None:
    plain_alias = f"{index_name}-plain"
    try:
        plain = index_dataset(
            es, sample_root, built_model, IndexOptions(alias=plain_alias, hubness_correction=False)
        )
    finally:
        es.options(ignore_status=404).indices.delete_index_template(name=f"{plain_alias}-template")
    done = index_dataset(es, sample_root, built_model, IndexOptions(alias=index_name))  # the default
    assert done["photos_hubness_corrected"] and not plain["photos_hubness_corrected"]
    model = SearchModel.load(built_model)
    meta = index_info(es, index_name).meta
    assert meta[META_KEY]["k"] == 10 and META_KEY not in index_info(es, plain_alias).meta
    mapping = es.indices.get_mapping(index=done["index"])[done["index"]]["mappings"]["properties"]
    assert mapping["image_vector"]["dims"] == model.dims + EXTRA_DIMS
    assert mapping["text_vector"]["dims"] == model.dims
    got, raw = photo_vectors(es, done["index"]), photo_vectors(es, plain["index"])
    ids = sorted(got)
    assert sorted(raw) == ids and len(ids) > 100
    hub = correction_from_meta(meta, model)
    assert hub is not None
    # both indices centre alike; the corrected one stores the layout of the same centred vectors
    g = np.stack([raw[i] for i in ids])
    assert np.allclose(np.stack([got[i] for i in ids]), hub.photo_layout(g), atol=1e-5)
    searcher, plain_searcher = Searcher(es, model, index_name), Searcher(es, model, plain_alias)
    assert np.allclose(searcher.stored_photo_vector(got[ids[0]]), raw[ids[0]], atol=1e-5)
    # Elasticsearch's kNN returns the exact CSLS top 10 (HNSW on a small index: exact here)
    csls = g @ hub.bank.T
    r = np.sort(csls, axis=1)[:, -hub.k :].mean(axis=1)
    changed = 0
    for text in ("玉ねぎを炒める", "じゃがいもを茹でる", "人参を切る", "豚肉を焼く", "キャベツを煮る"):
        q = searcher.text_vector(text)
        want = [ids[j] for j in np.argsort(-(g @ q - hub.beta * r), kind="stable")[:10]]
        hits = [h.step_id for h in searcher.knn(q, KnnParams(10, 200), Filters()).hits]
        plain_hits = [h.step_id for h in plain_searcher.knn(q, KnnParams(10, 200), Filters()).hits]
        assert hits == want, text
        changed += hits != plain_hits
    assert changed >= 1  # the correction changes what is found
    # a query photo finds its own stored photo first in both indices
    records = [
        json.loads(x) for x in (sample_root / "recipes.jsonl").read_text(encoding="utf-8").splitlines()
    ]
    step = next(s for s in records[0]["steps"] if s.get("image"))
    step_id = f"{records[0]['recipe_id']}:{step['position']}"
    for s in (searcher, plain_searcher):
        q = s.image_vector(sample_root / step["image"])
        assert s.knn(q, KnnParams(3, 100), Filters()).hits[0].step_id == step_id
    # hybrid search sends the field's form of the query too (a plain one would be refused: other dims)
    body = searcher.hybrid("玉ねぎを炒める", KnnParams(5, 50), Filters(), HybridParams())
    assert len(body.requests[0]["knn"]["query_vector"]) == model.dims + EXTRA_DIMS and body.hits
