"""The quality benchmark end to end on tiny sets: real build, real index, real queries; every row present."""

from __future__ import annotations

import json
from pathlib import Path

from elasticsearch import Elasticsearch

from bench.bench_quality import DATASETS, QualitySet, render_markdown, run_quality
from toolkit.data.sample_variant import SampleVariant
from toolkit.index.centring import CENTRE_MIN_PHOTOS


def test_run_quality_on_tiny_shifted_sets(es: Elasticsearch, tmp_path: Path) -> None:
    sets = [
        QualitySet("tiny", "ink gallery", gallery=SampleVariant(style="ink", id_prefix="g"), seed=5,
                   train_recipes=40, gallery_recipes=12),
        QualitySet("tiny-concepts", "concepts", train=SampleVariant(content="concepts"),
                   gallery=SampleVariant(content="concepts", style="soft", id_prefix="g"), seed=6,
                   train_recipes=24, gallery_recipes=32, gallery_seed_offset=0, heldout_from=24),
    ]  # fmt: skip
    table = run_quality(sets, {"short": {"mapping": {"epochs": 3}}}, work=tmp_path, es=es, log=lambda m: None)
    data = json.loads(json.dumps(table.to_dict()))
    for name in ("tiny", "tiny-concepts"):
        res = data["results"]["short"][name]
        rows = res["rows"]
        assert set(rows) == {"model", "model (exact)", "cca", "ridge", "untrained towers", "chance"}
        assert res["indexed_photos"] == res["gallery_photos"] == rows["chance"]["MedR"] * 2 - 1
        # the index reads the gallery's features with the gallery's own statistics from CENTRE_MIN_PHOTOS on,
        # and the in-memory rankings (baselines included) read the same features then
        assert res["features_adapted"] == (res["indexed_photos"] >= CENTRE_MIN_PHOTOS)
        # through Elasticsearch on a small gallery, kNN finds at least what the exact ranking of the raw
        # vectors finds (the index also centres and hubness-corrects the photo vectors, which may add more)
        assert rows["model"]["R@10"] >= rows["model (exact)"]["R@10"] - 0.05
        for method in ("model", "cca", "ridge"):
            assert rows[method]["R@10"] > rows["chance"]["R@10"], (name, method, rows[method])
    concepts = data["results"]["short"]["tiny-concepts"]
    assert concepts["subset_queries"]["never trained"] > 0 and "never trained" in concepts["subsets"]
    assert {"quality_points_over_linear_min", "quality_r10_shifted_mean"} <= set(data)
    md = render_markdown(data)
    assert "| tiny-concepts/never trained | short | **model** |" in md and "points over linear" in md
    # the summary says how many queries had a known word, and R@10 over all of them (the others misses)
    tiny = data["results"]["short"]["tiny"]
    known, every = tiny["queries"], tiny["queries"] + tiny["queries_no_known_word"]
    over_all = 100 * data["summary"]["short"]["tiny"]["model_R@10"] * known / every
    assert f"| {known:,} of {every:,} | {over_all:.1f} |" in md


def test_more_training_recipes_scale_the_training_side_of_recipe_sets_only() -> None:
    import pytest

    sets = {d.name: d for d in DATASETS}
    big = sets["mixed"].with_more_training(10)
    assert (big.name, big.train_recipes) == ("mixed-x10", 10 * sets["mixed"].train_recipes)
    assert big.gallery_recipes == sets["mixed"].gallery_recipes and big.gallery == sets["mixed"].gallery
    assert big.key() != sets["mixed"].key()  # its own cached draw
    assert sets["kitchen"].with_more_training(3).train_recipes == 3 * sets["kitchen"].train_recipes
    assert sets["plain"].with_more_training(1) == sets["plain"]
    # the default factor leaves the fixed sets as they are: `bench_quality.py --only concepts` (and a run of every
    # set) failed with "cannot be drawn 1 times larger"
    assert sets["concepts"].with_more_training(1) == sets["concepts"]
    assert sets["emoji"].with_more_training(1) == sets["emoji"]
    for fixed in ("emoji", "concepts"):
        with pytest.raises(ValueError, match="training side is fixed"):
            sets[fixed].with_more_training(10)
    with pytest.raises(ValueError, match="at least 1"):
        sets["plain"].with_more_training(0)


def test_exact_ranks_agree_with_the_top_hits_on_ties() -> None:
    """Two identical photos: the exact rank is the position in the top-hit list the P@10 is read from (it was
    the optimistic count of strictly higher scores: both duplicates at rank 1, though one is listed second)."""
    import numpy as np

    from bench.bench_quality import exact_ranking

    image = np.array([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0]], np.float32)
    labels = [{"main": "a"}, {"main": "b"}, {"main": "c"}]
    ranking = exact_ranking(image.copy(), image, labels)
    assert ranking.full_ranks.tolist() == [1, 2, 1]
    assert [hits[0] for hits in ranking.hit_labels] == [labels[0], labels[0], labels[2]]
