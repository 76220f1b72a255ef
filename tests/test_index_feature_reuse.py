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


def _reuse(model: SearchModel, root: Path):
    features, written = build_features(model, root)
    return features, None, False, written
