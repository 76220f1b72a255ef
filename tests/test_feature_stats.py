"""Reading an index's photo features with the collection's own statistics (``jrs index --adapt-features``):
the statistics come from a bounded sample, are stored in the index's ``_meta``, and every photo vector the
index ever holds, and every photo query, is made from features read with them."""

from __future__ import annotations

import json
import shutil
import warnings
from pathlib import Path

import numpy as np
import pytest
from elasticsearch import Elasticsearch

from tests.photovectors import photo_vectors
from toolkit.errors import ToolkitError
from toolkit.index.centring import centred, collection_feature_stats, sample_features
from toolkit.index.documents import DocumentBuilder
from toolkit.index.feature_stats import META_KEY, MIN_STD_RATIO, FeatureStats, adapted, training_stats
from toolkit.index.indexer import IndexOptions, index_dataset
from toolkit.index.lifecycle import index_info
from toolkit.index.update import UpdateOptions, update_index
from toolkit.model import SearchModel
from toolkit.search.engine import Searcher


@pytest.fixture(scope="module")
def model(built_model: Path) -> SearchModel:
    return SearchModel.load(built_model)


def _features(model: SearchModel, n: int = 300, seed: int = 0) -> np.ndarray:
    dims = int(model.manifest["encoder"]["dim"])
    return np.abs(np.random.default_rng(seed).normal(size=(n, dims))).astype(np.float32)


def test_a_collection_shifted_as_a_whole_reads_like_the_original(model: SearchModel) -> None:
    x = _features(model)
    rng = np.random.default_rng(1)
    scale = rng.uniform(0.3, 3.0, x.shape[1]).astype(np.float32)
    offset = rng.normal(size=x.shape[1]).astype(np.float32)
    shifted = x * scale + offset  # a palette / camera / background: every feature moved and scaled
    a = adapted(x, FeatureStats.of(x), model)
    b = adapted(shifted, FeatureStats.of(shifted), model)
    assert np.allclose(a, b, atol=1e-3)
    assert not np.allclose(adapted(shifted, FeatureStats.of(x), model), a, atol=1e-1)
    # read with its own statistics, the image side standardises the collection to mean 0, std 1
    train = training_stats(model)
    standardised = (b - train.mean) / train.std
    assert np.allclose(standardised.mean(axis=0), 0.0, atol=1e-3)
    assert np.allclose(standardised.std(axis=0), 1.0, atol=1e-2)


def test_a_collection_with_the_training_statistics_is_left_as_it_is(model: SearchModel) -> None:
    x = _features(model)
    assert adapted(x, None, model) is x
    assert np.allclose(adapted(x, training_stats(model), model), x, atol=1e-4)
    with pytest.raises(ValueError, match="dimensions"):
        adapted(x[:, :5], training_stats(model), model)


def test_a_feature_almost_silent_in_the_collection_is_not_blown_up(model: SearchModel) -> None:
    """A feature with almost no spread in the collection's sample would scale a later photo where it fires
    without bound; its spread is read as at least MIN_STD_RATIO of the training one."""
    x = _features(model)
    x[:, 0] = 0.5  # silent in the sample
    x[:, 0] += np.random.default_rng(2).normal(scale=1e-5, size=len(x)).astype(np.float32)
    stats = FeatureStats.of(x)
    train = training_stats(model)
    firing = x[:1].copy()
    firing[0, 0] = 0.5 + float(train.std[0])  # one training spread above the sample's level
    moved = (adapted(firing, stats, model)[0, 0] - train.mean[0]) / train.std[0]
    assert abs(moved) <= 1 / MIN_STD_RATIO + 1e-3
    # features with a real spread are read exactly as (x - mean) / std
    assert np.allclose(
        (adapted(x, stats, model)[:, 1:] - train.mean[1:]) / train.std[1:],
        (x[:, 1:] - stats.mean[1:]) / stats.std[1:],
        atol=1e-3,
    )


def test_recorded_statistics_are_read_back_or_refused() -> None:
    stats = FeatureStats(np.array([0.5, -1.0], np.float32), np.array([2.0, 0.25], np.float32))
    back = FeatureStats.from_meta({META_KEY: stats.meta()}, 2)
    assert back is not None and np.array_equal(back.mean, stats.mean) and np.array_equal(back.std, stats.std)
    assert FeatureStats.from_meta({}, 2) is None
    json.dumps(stats.meta())  # stored in the index's _meta as JSON
    for broken in ({"mean": [0.5, -1.0]}, [1, 2], {"mean": "x", "std": [1, 1]}):
        with pytest.raises(ToolkitError, match=f"_meta.{META_KEY} is broken"):
            FeatureStats.from_meta({META_KEY: broken}, 2)
    for mean, std in (
        ([0.5], [1.0]),
        ([0.5, float("nan")], [1, 1]),
        ([0.5, 1.0], [1.0, 0.0]),
        ([0.5, 1.0], [float("inf"), 1.0]),
        ([0.5, 1.0], [1e39, 1.0]),  # beyond float32
    ):
        with pytest.raises(ToolkitError, match="2 finite means and positive standard deviations"):
            FeatureStats.from_meta({META_KEY: {"mean": mean, "std": std}}, 2)


@pytest.mark.parametrize("big", [1e39, -1e39, 1e300])
def test_statistics_beyond_float32_are_refused_without_a_numpy_warning(big: float) -> None:
    """A number beyond float32 in ``_meta`` was refused, but numpy first warned "overflow encountered in cast"
    (a RuntimeWarning, an error where warnings are errors): refused by name now, without it."""
    from toolkit.index.centring import META_KEY as CENTRE_KEY
    from toolkit.index.centring import centre_from_meta

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for mean, std in (([0.5, big], [1.0, 1.0]), ([0.5, 1.0], [big, 1.0])):
            with pytest.raises(ToolkitError, match="2 finite means and positive standard deviations"):
                FeatureStats.from_meta({META_KEY: {"mean": mean, "std": std}}, 2)
        with pytest.raises(ToolkitError, match=f"_meta.{CENTRE_KEY} is not 2 finite numbers"):
            centre_from_meta({CENTRE_KEY: [big, 0.0]}, 2)
        with pytest.raises(ToolkitError, match=f"_meta.{CENTRE_KEY} is not 2 finite numbers"):
            centre_from_meta({CENTRE_KEY: ["x", 0.0]}, 2)
        with pytest.raises(ToolkitError, match=f"_meta.{META_KEY} is broken"):
            FeatureStats.from_meta({META_KEY: {"mean": [10**400, 0], "std": [1, 1]}}, 2)
        top = float(np.finfo(np.float32).max)  # the largest float32 is still read
        read = FeatureStats.from_meta({META_KEY: {"mean": [top, -top], "std": [top, 1.0]}}, 2)
        assert read is not None and np.isfinite(read.mean).all() and read.std[0] == np.float32(top)


def test_too_few_photos_leave_the_features_as_they_are(sample_root: Path, model: SearchModel) -> None:
    photos = sample_features(DocumentBuilder(model, sample_root), sample=50)
    assert len(photos.features) == 50 and photos.total > 50
    assert collection_feature_stats(photos, min_photos=51) is None
    stats = collection_feature_stats(photos, min_photos=50)
    assert stats is not None
    assert np.allclose(stats.mean, photos.features.mean(axis=0), atol=1e-4)


def test_an_adapted_index_records_its_statistics_and_reads_every_photo_with_them(
    es: Elasticsearch,
    sample_root: Path,
    built_model: Path,
    model: SearchModel,
    index_name: str,
    tmp_path: Path,
) -> None:
    root = tmp_path / "data"
    shutil.copytree(sample_root, root, ignore=shutil.ignore_patterns("*.checkpoint.json"))
    plain_alias = f"{index_name}-plain"
    try:
        plain = index_dataset(
            es,
            root,
            built_model,
            IndexOptions(
                alias=plain_alias, adapt_features=False, center_photos=False, hubness_correction=False
            ),
        )
    finally:
        es.options(ignore_status=404).indices.delete_index_template(name=f"{plain_alias}-template")
    done = index_dataset(
        es, root, built_model, IndexOptions(alias=index_name, center_photos=False, hubness_correction=False)
    )
    assert done["photo_features_adapted"] and not plain["photo_features_adapted"]
    dims = int(model.manifest["encoder"]["dim"])
    stats = FeatureStats.from_meta(index_info(es, index_name).meta, dims)
    assert stats is not None and META_KEY not in index_info(es, plain_alias).meta
    assert not np.allclose(stats.mean, training_stats(model).mean, atol=1e-3)  # this collection differs

    records = [json.loads(line) for line in (root / "recipes.jsonl").read_text(encoding="utf-8").splitlines()]
    steps = [
        (f"{r['recipe_id']}:{s['position']}", s["image"])
        for r in records
        for s in r["steps"]
        if s.get("image")
    ]
    got, raw = photo_vectors(es, done["index"]), photo_vectors(es, plain["index"])
    assert sorted(got) == sorted(raw) == sorted(k for k, _ in steps)
    # each stored photo vector is the model's, of the photo's features read with the recorded statistics
    ids, files = [k for k, _ in steps[:12]], [f for _, f in steps[:12]]
    features = model.image_features([root / f for f in files])
    want = model.embed_image_features(adapted(features, stats, model))
    assert np.allclose(np.stack([got[i] for i in ids]), want, atol=1e-4)
    assert np.allclose(np.stack([raw[i] for i in ids]), model.embed_image_features(features), atol=1e-4)
    # a query photo is read the same way: it finds its own stored vector in either index
    for alias, stored in ((index_name, got), (plain_alias, raw)):
        query = Searcher(es, model, alias).image_vector(root / files[0])
        assert np.allclose(query, stored[ids[0]], atol=1e-4), alias

    # a live update reads the new photos with the index's statistics too
    record = records[0]
    step = next(s for s in record["steps"] if s.get("image"))
    step["text"] += "（更新）"  # the step changes, its photo does not: its document is sent again
    lines = (root / "recipes.jsonl").read_text(encoding="utf-8").splitlines()
    lines[0] = json.dumps(record, ensure_ascii=False)
    (root / "recipes.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    assert update_index(es, root, built_model, UpdateOptions(alias=index_name))["indexed"] >= 1
    step_id = f"{record['recipe_id']}:{step['position']}"
    after = photo_vectors(es, done["index"])[step_id]
    assert np.allclose(after, got[step_id], atol=1e-5)


def test_the_centre_is_taken_from_the_adapted_photos(
    es: Elasticsearch, sample_root: Path, built_model: Path, model: SearchModel, index_name: str
) -> None:
    done = index_dataset(
        es, sample_root, built_model, IndexOptions(alias=index_name, hubness_correction=False)
    )
    assert done["photo_features_adapted"] and done["photos_centred"]
    stored = np.stack(list(photo_vectors(es, done["index"]).values()))
    # centred on the mean of the adapted photos: what is left of the mean is small
    assert np.linalg.norm(stored.mean(axis=0)) < 0.2
    assert np.allclose(np.linalg.norm(stored, axis=1), 1.0, atol=1e-4)
    assert centred(stored, None) is stored


def test_index_evaluation_baselines_read_the_features_the_index_read(
    built_model: Path, model: SearchModel
) -> None:
    """``jrs evaluate --index``'s CCA / ridge rank the gallery's photo features as the index read them: with
    its feature statistics when it has them (the same features as the model's), as they are without."""
    from toolkit.evaluation.held_out import fit_model_baselines, gallery_baselines, model_pairs
    from toolkit.evaluation.through_index import held_out_queries
    from toolkit.model import read_manifest
    from toolkit.vectorset import load_vector_set

    seed = int(model.manifest.get("split_seed", 0))
    queries = held_out_queries(read_manifest(built_model)["dataset"], seed)[:20]
    feats = load_vector_set(built_model / "image_features")
    gallery = list(feats.ids)[:150]
    text, ok = model.text_features([q.text for q in queries])
    kept = [(q.step_id, text[n]) for n, q in enumerate(queries) if ok[n]]
    x = np.asarray(feats.vectors[: len(gallery)])
    shifted = FeatureStats(x.mean(axis=0) + 0.5, x.std(axis=0) * 2 + 1e-3)
    plain = gallery_baselines(built_model, seed, gallery, kept, k=10)
    read = gallery_baselines(built_model, seed, gallery, kept, k=10, feature_stats=shifted)
    fitted = fit_model_baselines(model_pairs(built_model, seed))
    q = np.stack([t for _, t in kept])
    for name, lin in fitted.items():
        for out, features in ((plain, x), (read, adapted(x, shifted, model))):
            scores = lin.embed_text(q) @ lin.embed_image(features).T
            want = [[gallery[j] for j in np.argsort(-row, kind="stable")[:10]] for row in scores]
            assert out[name]["top"] == want, name
    assert plain["cca"]["top"] != read["cca"]["top"]


def test_a_load_into_an_index_with_broken_statistics_leaves_its_settings(
    es: Elasticsearch, sample_root: Path, built_model: Path, index_name: str
) -> None:
    """A broken ``_meta.photo_feature_stats`` is refused by name, and the index it was found on is not left in
    its bulk-load settings (refresh off)."""
    done = index_dataset(
        es, sample_root, built_model, IndexOptions(index=index_name, hubness_correction=False)
    )
    assert done["photo_features_adapted"]
    meta = es.indices.get_mapping(index=index_name)[index_name]["mappings"]["_meta"]
    es.indices.put_mapping(index=index_name, meta={**meta, META_KEY: {"mean": [1.0], "std": [1.0]}})
    with pytest.raises(ToolkitError, match=f"_meta.{META_KEY}"):
        index_dataset(es, sample_root, built_model, IndexOptions(index=index_name, restart=True))
    settings = es.indices.get_settings(index=index_name)[index_name]["settings"]["index"]
    assert settings.get("refresh_interval") != "-1"
