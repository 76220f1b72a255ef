"""Indexing reuses the build's photo features only for the photos they were made from."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from toolkit.data.jsonl import iter_recipes
from toolkit.data.paths import resolve_under_root
from toolkit.index.documents import DocumentBuilder, build_features
from toolkit.model import SearchModel
from toolkit.rejects import RejectsWriter


@pytest.fixture(scope="module")
def other_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Another dataset with the same step ids (r000000:1, ...) but other photos."""
    from tests.conftest import E2E_IMAGE_SIZE
    from toolkit.data.sample import generate_sample

    root = tmp_path_factory.mktemp("other")
    generate_sample(root, 6, seed=7, image_size=E2E_IMAGE_SIZE)
    return root


def _docs(builder: DocumentBuilder, root: Path, tmp_path: Path):
    with RejectsWriter(tmp_path / "rejects.jsonl") as rejects:
        recipes = list(iter_recipes(root, rejects))[:3]
        return builder.build(recipes, rejects)


def test_features_only_for_the_build_dataset(built_model: Path, sample_root: Path, other_root: Path) -> None:
    model = SearchModel.load(built_model)
    features, written = build_features(model, sample_root)
    assert features is not None and written > 0
    assert build_features(model, other_root) == (None, 0)


def test_same_ids_other_photos_are_encoded_now(built_model: Path, other_root: Path, tmp_path: Path) -> None:
    model = SearchModel.load(built_model)
    docs, stats = _docs(DocumentBuilder(model, other_root, *_reuse(model, other_root)), other_root, tmp_path)
    with_photo = [d for d in docs if d["has_image"]]
    assert with_photo and stats.encoded_now == len(with_photo)
    fresh = model.embed_image_files([resolve_under_root(other_root, d["image_path"]) for d in with_photo])
    np.testing.assert_allclose(np.stack([d["image_vector"] for d in with_photo]), fresh, atol=2e-3)


def test_unchanged_photos_reuse_changed_ones_are_encoded(
    built_model: Path, sample_root: Path, tmp_path: Path
) -> None:
    model = SearchModel.load(built_model)
    features, written = build_features(model, sample_root)
    _, reused = _docs(
        DocumentBuilder(model, sample_root, features, features_written_ns=written), sample_root, tmp_path
    )
    assert reused.encoded_now == 0
    # every photo newer than the feature set (as after editing the photos): all encoded again
    _, stale = _docs(
        DocumentBuilder(model, sample_root, features, features_written_ns=0), sample_root, tmp_path
    )
    assert stale.encoded_now > 0


def test_a_step_whose_photo_was_swapped_is_encoded_now(
    built_model: Path, sample_root: Path, tmp_path: Path
) -> None:
    """Two steps trade photos (both files older than the build): each row of the feature set was made from
    the other file, so both are encoded now and carry their new photo's vector; the rest are reused."""
    from dataclasses import replace

    model = SearchModel.load(built_model)
    features, written = build_features(model, sample_root)
    assert features is not None and features.sources is not None
    with RejectsWriter(tmp_path / "rejects.jsonl") as rejects:
        recipes = list(iter_recipes(sample_root, rejects))[:3]
    first = recipes[0]
    a, b = [n for n, s in enumerate(first.steps) if s.image][:2]
    steps = list(first.steps)
    steps[a], steps[b] = replace(steps[a], image=steps[b].image), replace(steps[b], image=steps[a].image)
    recipes[0] = replace(first, steps=tuple(steps))
    builder = DocumentBuilder(model, sample_root, features, features_written_ns=written)
    with RejectsWriter(tmp_path / "rejects2.jsonl") as rejects:
        docs, stats = builder.build(recipes, rejects)
    assert stats.encoded_now == 2
    swapped = [d for d in docs if d["step_id"] in (first.step_id(steps[a]), first.step_id(steps[b]))]
    fresh = model.embed_image_files([resolve_under_root(sample_root, d["image_path"]) for d in swapped])
    np.testing.assert_allclose(np.stack([d["image_vector"] for d in swapped]), fresh, atol=2e-3)
    # a photo replaced at its own path by an older file (cp -p, rsync -a, a restore): not the build's photo
    import os
    import shutil

    copy_root = tmp_path / "copy"
    shutil.copytree(sample_root, copy_root)
    copied = build_features(model, sample_root)[0]
    plain = list(iter_recipes(copy_root, RejectsWriter(None)))[:3]
    with_photo = [s for r in plain for s in r.steps if s.image]
    target, donor = (resolve_under_root(copy_root, s.image) for s in with_photo[:2])
    shutil.copy2(donor, target)
    old = os.stat(target).st_mtime_ns - 10**9
    os.utime(target, ns=(old, old))
    real_root, real_copy = os.path.realpath(sample_root), os.path.realpath(copy_root)
    sources = [s.replace(real_root, real_copy, 1) for s in copied.sources]
    moved = replace(copied, sources=sources)  # the build's rows, as if built on the copy
    with RejectsWriter(tmp_path / "rejects4.jsonl") as rejects:
        docs, stats = DocumentBuilder(model, copy_root, moved, features_written_ns=written).build(
            plain, rejects
        )
    assert stats.encoded_now == 1  # only the replaced photo
    doc = next(d for d in docs if resolve_under_root(copy_root, d["image_path"]) == target)
    np.testing.assert_allclose(doc["image_vector"], model.embed_image_files([target])[0], atol=2e-3)
    # a feature set written before sources were kept cannot say which file a row is: nothing is reused
    legacy = replace(features, sources=None)
    with RejectsWriter(tmp_path / "rejects3.jsonl") as rejects:
        _, stats = DocumentBuilder(model, sample_root, legacy, features_written_ns=written).build(
            recipes, rejects
        )
    assert stats.encoded_now == sum(1 for r in recipes for s in r.steps if s.image)


def _reuse(model: SearchModel, root: Path):
    features, written = build_features(model, root)
    return features, None, False, written


def test_image_url_is_percent_encoded(built_model: Path, other_root: Path, tmp_path: Path) -> None:
    """``image_url`` is a URL: a photo file name's '#', '?', '%' or space is escaped, so the URL (a Kibana
    thumbnail, ``jrs web``'s ``/photo/``) names that very file."""
    import shutil
    from dataclasses import replace
    from urllib.parse import unquote, urlsplit

    root = tmp_path / "odd"
    shutil.copytree(other_root, root)
    recipe = next(iter_recipes(root, RejectsWriter(None)))
    step = next(s for s in recipe.steps if s.image)
    odd = "images/odd/a%2e%2e#1 ?x.jpg"
    (root / "images" / "odd").mkdir()
    shutil.copy2(resolve_under_root(root, step.image), root / odd)
    recipe = replace(recipe, steps=(replace(step, image=odd),))
    model = SearchModel.load(built_model)
    builder = DocumentBuilder(model, root, None, "http://127.0.0.1:8000/photo/")
    with RejectsWriter(tmp_path / "rejects.jsonl") as rejects:
        (doc,), _ = builder.build([recipe], rejects)
    url = urlsplit(doc["image_url"])
    assert not url.query and not url.fragment
    assert unquote(url.path) == "/photo/" + odd
