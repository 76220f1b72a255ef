"""``sample_pairs``: a seeded sample of one split's pairs that reads only the sampled rows (the hubness bank's
reader), the same rows as sampling the fully loaded and split pairs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from toolkit.errors import ToolkitError
from toolkit.stages.pairs import load_pairs, sample_pairs, split_pairs
from toolkit.text.tokens import TokenBags, save_token_bags
from toolkit.vectorset import save_vector_set


def _write_sets(root: Path, recipes: int = 300) -> tuple[Path, Path, list[str]]:
    """Text vectors (with token bags) for every step, photo features for most of them, in other orders."""
    rng = np.random.default_rng(3)
    ids = [f"r{r:05d}:{p}" for r in range(recipes) for p in range(1, 4)]
    text = rng.normal(size=(len(ids), 8)).astype(np.float32)
    save_vector_set(root / "t", ids, text, {"word2vec_fingerprint": "w"})
    bags = TokenBags.from_lists([rng.integers(0, 50, size=int(rng.integers(1, 6))).tolist() for _ in ids])
    save_token_bags(root / "t", bags)
    with_photo = np.sort(rng.choice(len(ids), int(0.8 * len(ids)), replace=False))[::-1]  # another order
    image = rng.normal(size=(len(with_photo), 5)).astype(np.float32)
    save_vector_set(root / "i", [ids[i] for i in with_photo], image, {"encoder_fingerprint": "e"})
    return root / "t", root / "i", ids


@pytest.mark.parametrize(("size", "seed"), [(100, 0), (100, 7), (10_000, 0)])
def test_the_sample_is_the_same_rows_as_the_full_load(tmp_path: Path, size: int, seed: int) -> None:
    text_dir, image_dir, _ = _write_sets(tmp_path)
    train = split_pairs(load_pairs(text_dir, image_dir), split_seed=2)["train"]
    rows = np.arange(len(train))
    if len(rows) > size:
        rows = np.sort(np.random.default_rng(seed).choice(len(rows), size, replace=False))
    want = train.subset(rows)
    got = sample_pairs(text_dir, image_dir, "train", size, split_seed=2, seed=seed)
    assert len(got) == min(size, len(train)) > 0
    assert list(got.ids) == list(want.ids)
    assert np.array_equal(got.text[:], want.text[:])
    assert np.array_equal(got.image[:], want.image[:])
    assert got.tokens is not None and want.tokens is not None
    assert np.array_equal(got.tokens.ids, want.tokens.ids)
    assert np.array_equal(got.tokens.offsets, want.tokens.offsets)
    assert got.fingerprints == {"word2vec": "w", "encoder": "e"}
    other = sample_pairs(text_dir, image_dir, "val", size, split_seed=2, seed=seed)
    assert not {i.split(":")[0] for i in other.ids} & {i.split(":")[0] for i in got.ids}


def test_only_sampled_rows_are_checked_and_a_bad_one_is_named(tmp_path: Path) -> None:
    text_dir, image_dir, ids = _write_sets(tmp_path)
    got = sample_pairs(text_dir, image_dir, "train", 50, seed=1)
    sampled = set(got.ids)
    vectors = np.load(text_dir / "vectors.npy")
    outside = next(n for n, i in enumerate(ids) if i not in sampled)
    vectors[outside, 0] = np.nan
    np.save(text_dir / "vectors.npy", vectors)
    again = sample_pairs(text_dir, image_dir, "train", 50, seed=1)  # the NaN row is not read
    assert list(again.ids) == list(got.ids)
    with pytest.raises(ToolkitError, match="NaN"):
        load_pairs(text_dir, image_dir)  # the full load checks every row
    inside = ids.index(next(iter(sorted(sampled))))
    vectors[inside, 3] = np.inf
    np.save(text_dir / "vectors.npy", vectors)
    with pytest.raises(ToolkitError, match=ids[inside]):
        sample_pairs(text_dir, image_dir, "train", 50, seed=1)
    with pytest.raises(ValueError, match="split"):
        sample_pairs(text_dir, image_dir, "training", 50)
