"""Centring an index's photo vectors on the collection's mean photo vector (``jrs index --center-photos``):
the centre is estimated from a bounded sample, stored in the index's ``_meta``, and every photo vector the
index ever holds, and every photo query, is centred on that same vector."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from elasticsearch import Elasticsearch

from tests.photovectors import photo_vectors, unit
from toolkit.errors import ToolkitError
from toolkit.index.centring import (
    CENTRE_SAMPLE,
    META_KEY,
    centre_from_meta,
    centred,
    collection_centre,
    sample_photo_steps,
)
from toolkit.index.documents import DocumentBuilder
from toolkit.index.hubness import EXTRA_DIMS
from toolkit.index.indexer import IndexOptions, index_dataset
from toolkit.index.lifecycle import index_info
from toolkit.index.update import UpdateOptions, update_index
from toolkit.model import SearchModel
from toolkit.search.engine import Searcher


def test_centring_removes_a_common_offset_and_keeps_unit_length() -> None:
    rng = np.random.default_rng(0)
    vectors = unit(rng.normal(size=(500, 16)) + 3.0)  # every vector shares one offset
    centre = vectors.mean(axis=0)
    out = centred(vectors, centre)
    assert np.allclose(np.linalg.norm(out, axis=1), 1.0, atol=1e-5)
    assert np.linalg.norm(out.mean(axis=0)) < 0.2 * np.linalg.norm(centre)
    assert centred(vectors, None) is vectors
    with pytest.raises(ValueError, match="dimensions"):
        centred(vectors, centre[:8])


def test_a_recorded_centre_is_read_back_or_refused() -> None:
    assert centre_from_meta({}, 4) is None
    assert np.array_equal(centre_from_meta({META_KEY: [1, 2, 3, 4]}, 4), np.array([1, 2, 3, 4], np.float32))
    with pytest.raises(ToolkitError, match="4 finite numbers"):
        centre_from_meta({META_KEY: [1, 2, 3]}, 4)
    with pytest.raises(ToolkitError, match="4 finite numbers"):
        centre_from_meta({META_KEY: [1, 2, float("nan"), 4]}, 4)


def test_the_sample_is_bounded_seeded_and_in_collection_order(sample_root: Path) -> None:
    every, total = sample_photo_steps(sample_root, sample=10**6)
    assert len(every) == total > 100
    some, n = sample_photo_steps(sample_root, sample=40, seed=1)
    assert n == total and len(some) == 40 and len(set(some)) == 40
    position = {step: i for i, step in enumerate(every)}
    assert [position[s] for s in some] == sorted(position[s] for s in some)
    assert sample_photo_steps(sample_root, sample=40, seed=1)[0] == some
    assert sample_photo_steps(sample_root, sample=40, seed=2)[0] != some
    assert CENTRE_SAMPLE >= 1000


def test_too_few_photos_leave_the_vectors_uncentred(sample_root: Path, built_model: Path) -> None:
    builder = DocumentBuilder(SearchModel.load(built_model), sample_root)
    assert collection_centre(builder, sample=50, min_photos=51) is None
    centre = collection_centre(builder, sample=50, min_photos=50)
    assert centre is not None and centre.shape == (builder.model.dims,)


def test_a_centred_index_records_its_centre_and_centres_every_photo(
    es: Elasticsearch, sample_root: Path, built_model: Path, index_name: str
) -> None:
    try:
        plain = index_dataset(
            es,
            sample_root,
            built_model,
            IndexOptions(alias=f"{index_name}-plain", center_photos=False, hubness_correction=False),
        )
    finally:
        es.options(ignore_status=404).indices.delete_index_template(name=f"{index_name}-plain-template")
    # centring alone (the hubness correction, on by default, is tested in test_hubness.py)
    done = index_dataset(
        es, sample_root, built_model, IndexOptions(alias=index_name, hubness_correction=False)
    )
    assert done["photos_centred"] and not plain["photos_centred"]
    model = SearchModel.load(built_model)
    centre = centre_from_meta(index_info(es, index_name).meta, model.dims)
    assert centre is not None and META_KEY not in index_info(es, f"{index_name}-plain").meta
    got, raw = photo_vectors(es, done["index"]), photo_vectors(es, plain["index"])
    assert sorted(got) == sorted(raw) and len(got) > 100
    ids = sorted(got)
    # each stored photo vector is the model's, centred on the recorded centre
    assert np.allclose(
        np.stack([got[i] for i in ids]), centred(np.stack([raw[i] for i in ids]), centre), atol=1e-5
    )
    assert np.linalg.norm(np.stack([got[i] for i in ids]).mean(axis=0)) < 0.5 * np.linalg.norm(centre)
    # a query photo is centred the same way: the step's own photo finds its own stored vector
    records = [
        json.loads(line) for line in (sample_root / "recipes.jsonl").read_text(encoding="utf-8").splitlines()
    ]
    step = next(s for r in records for s in r["steps"] if s.get("image"))
    step_id = f"{records[0]['recipe_id']}:{step['position']}"
    for alias, stored in ((index_name, got), (f"{index_name}-plain", raw)):
        query = Searcher(es, model, alias).image_vector(sample_root / step["image"])
        assert np.allclose(query, stored[step_id], atol=1e-4), alias


def test_live_updates_centre_and_correct_new_photos_like_the_others(
    es: Elasticsearch, sample_root: Path, built_model: Path, index_name: str, tmp_path: Path
) -> None:
    root = tmp_path / "data"
    shutil.copytree(sample_root, root, ignore=shutil.ignore_patterns("*.checkpoint.json"))
    done = index_dataset(es, root, built_model, IndexOptions(alias=index_name, center_photos=True))
    before = photo_vectors(es, done["index"])
    lines = (root / "recipes.jsonl").read_text(encoding="utf-8").splitlines()
    record = json.loads(lines[0])
    step = next(s for s in record["steps"] if s.get("image"))
    step["text"] += "（更新）"  # the step changes, its photo does not: its document is sent again
    lines[0] = json.dumps(record, ensure_ascii=False)
    (root / "recipes.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    result = update_index(es, root, built_model, UpdateOptions(alias=index_name))
    assert result["indexed"] >= 1
    after = photo_vectors(es, done["index"])
    step_id = f"{record['recipe_id']}:{step['position']}"
    assert np.allclose(after[step_id], before[step_id], atol=1e-5)
    # the index was created with the hubness correction too (the default): the same layout after the update
    assert after[step_id].shape == (SearchModel.load(built_model).dims + EXTRA_DIMS,)
