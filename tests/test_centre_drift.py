"""Photos loaded into an index that sit off the photo centre it was created with, or whose features do not fit
its feature statistics, are reported (:mod:`toolkit.index.drift`): a warning and ``photo_drift`` /
``photo_feature_drift`` in the load's summary, on the real node."""

from __future__ import annotations

import json
import logging
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from elasticsearch import Elasticsearch

from tests.conftest import E2E_IMAGE_SIZE
from tests.photovectors import unit
from toolkit.cli.main import cli
from toolkit.data.sample import generate_sample
from toolkit.data.sample_variant import SampleVariant
from toolkit.index.drift import (
    DRIFT_MIN_PHOTOS,
    DRIFT_RATIO,
    FEATURE_MEAN_SHIFT,
    FEATURE_SPREAD_RATIO,
    CentreDrift,
    FeatureDrift,
)
from toolkit.index.feature_stats import FeatureStats
from toolkit.index.indexer import IndexOptions, index_dataset
from toolkit.index.update import UpdateOptions, update_index


def _photos(rng: np.random.Generator, n: int, offset: np.ndarray) -> np.ndarray:
    return unit(rng.normal(size=(n, 32)) + offset)


def test_photos_like_the_centres_collection_give_about_one_over_n() -> None:
    rng = np.random.default_rng(0)
    centre = _photos(rng, 5000, np.zeros(32)).mean(axis=0)
    drift = CentreDrift()
    assert drift.summary() is None and not drift.shifted
    for _ in range(3):  # batches add up
        drift.add(_photos(rng, 100, np.zeros(32)), centre)
    summary = drift.summary()
    assert summary is not None and summary["photos"] == 300
    assert summary["ratio"] < 3 / 300 and not summary["shifted"]
    assert summary["expected"] == round(1 / 300, 4)


def test_photos_with_a_common_offset_are_flagged_from_enough_photos() -> None:
    rng = np.random.default_rng(1)
    centre = _photos(rng, 5000, np.zeros(32)).mean(axis=0)
    offset = np.zeros(32)
    offset[0] = 2.0  # another style: every photo moves the same way
    few = CentreDrift()
    few.add(_photos(rng, DRIFT_MIN_PHOTOS - 1, offset), centre)
    assert few.ratio is not None and few.ratio > DRIFT_RATIO
    assert not few.shifted  # too few photos to say
    many = CentreDrift()
    many.add(_photos(rng, DRIFT_MIN_PHOTOS, offset), centre)
    assert many.shifted and many.summary()["shifted"]  # type: ignore[index]
    assert "jrs index` without --update" in many.message("recipes-v2")


def _new_recipes(root: Path, variant: SampleVariant, seed: int) -> Path:
    """60 recipes (well over a hundred photos) whose ids do not clash with the indexed collection's."""
    generate_sample(root, 60, seed=seed, image_size=E2E_IMAGE_SIZE, variant=variant)
    return root


@pytest.mark.parametrize(
    ("variant", "shifted"),
    [
        (SampleVariant(id_prefix="n"), False),
        (SampleVariant(style="ink", palette="warm", background="cloth", id_prefix="n"), True),
    ],
    ids=["same look", "another style"],
)
def test_a_live_update_says_when_its_photos_sit_off_the_centre(
    es: Elasticsearch,
    sample_root: Path,
    built_model: Path,
    index_name: str,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    es_settings,
    variant: SampleVariant,
    shifted: bool,
) -> None:
    created = index_dataset(es, sample_root, built_model, IndexOptions(alias=index_name))
    assert created["photos_centred"] and not created["photo_drift"]["shifted"]  # its own centre fits it
    new = _new_recipes(tmp_path / "new", variant, seed=5)
    with caplog.at_level(logging.WARNING, logger="toolkit.index.drift"):
        result = update_index(es, new, built_model, UpdateOptions(alias=index_name))
    drift = result["photo_drift"]
    assert drift["photos"] >= DRIFT_MIN_PHOTOS and drift["shifted"] is shifted
    assert (drift["ratio"] > DRIFT_RATIO) is shifted
    assert any("photo centre" in r.getMessage() for r in caplog.records) is shifted
    assert result["indexed"] > 0 and result["rejected"] == 0  # a warning, nothing lost
    # the CLI prints the warning (stderr), and --json has the figures
    more = _new_recipes(tmp_path / "more", replace(variant, id_prefix="m"), seed=6)
    env = {"ES_URL": es_settings.url}
    args = ["index", str(more), str(built_model), "--alias", index_name, "--update"]
    text = CliRunner().invoke(cli, args, env=env)
    assert text.exit_code == 0, text.output
    assert ("warning: the" in text.output and "sit off the photo centre" in text.output) is shifted
    unchanged = CliRunner().invoke(cli, [*args, "--json"], env=env)
    assert unchanged.exit_code == 0, unchanged.output
    assert json.loads(unchanged.output)["photo_drift"] is None  # nothing new was loaded: nothing to judge


def _features(rng: np.random.Generator, n: int, shift: float = 0.0, scale: float = 1.0) -> np.ndarray:
    """``n`` ReLU-like backbone features of 64 dims: the collection's look, shifted / scaled per feature."""
    base = np.abs(rng.normal(size=(n, 64))) * np.linspace(0.5, 2.0, 64)
    return (base * scale + shift * np.linspace(0.5, 2.0, 64)).astype(np.float32)


def _stats(rng: np.random.Generator) -> FeatureStats:
    return FeatureStats.of(_features(rng, 2000))


def test_feature_drift_adds_batches_up_and_flags_a_shifted_mean_or_spread() -> None:
    rng = np.random.default_rng(2)
    stats = _stats(rng)
    floor = np.full(64, 1e-3)
    same = FeatureDrift()
    assert same.summary() is None and not same.shifted
    batches = [_features(rng, 100) for _ in range(3)]
    for batch in batches:
        same.add(batch, stats, floor)
    whole = np.concatenate(batches).astype(np.float64)
    assert same.mean is not None and np.allclose(same.mean, whole.mean(axis=0))
    assert same.m2 is not None and np.allclose(same.m2 / same.count, whole.var(axis=0))
    summary = same.summary()
    assert summary is not None and summary["photos"] == 300 and not summary["shifted"]
    assert summary["mean_shift"] < FEATURE_MEAN_SHIFT / 2 and summary["spread_ratio"] < 1.2

    moved, few, narrow = FeatureDrift(), FeatureDrift(), FeatureDrift()
    moved.add(_features(rng, DRIFT_MIN_PHOTOS, shift=0.5), stats, floor)  # another look: every mean moves
    few.add(_features(rng, DRIFT_MIN_PHOTOS - 1, shift=0.5), stats, floor)
    narrow.add(
        _features(rng, 300, scale=0.4) + stats.mean * 0.6, stats, floor
    )  # same means, much less spread
    assert moved.shifted and moved.mean_shift is not None and moved.mean_shift > FEATURE_MEAN_SHIFT
    assert few.mean_shift is not None and few.mean_shift > FEATURE_MEAN_SHIFT and not few.shifted
    assert narrow.mean_shift is not None and narrow.mean_shift < FEATURE_MEAN_SHIFT
    assert narrow.shifted and narrow.spread_ratio is not None and narrow.spread_ratio > FEATURE_SPREAD_RATIO
    text = moved.message("recipes-v2")
    assert f"{moved.mean_shift:.2f} standard deviations" in text and "jrs index` without --update" in text


def test_a_live_update_says_when_its_photos_do_not_fit_the_feature_statistics(
    es: Elasticsearch,
    sample_root: Path,
    built_model: Path,
    index_name: str,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The drift warning looked at the photo centre only: photos whose backbone features no longer fit the
    index's ``_meta.photo_feature_stats`` went unreported. Once per load, with figures; nothing else changes."""
    created = index_dataset(es, sample_root, built_model, IndexOptions(alias=index_name))
    assert created["photo_features_adapted"] and not created["photo_feature_drift"]["shifted"]
    same = _new_recipes(tmp_path / "same", SampleVariant(id_prefix="n"), seed=5)
    other = SampleVariant(style="ink", palette="warm", background="cloth", id_prefix="m")
    for root, shifted in ((same, False), (_new_recipes(tmp_path / "other", other, seed=6), True)):
        caplog.clear()
        with caplog.at_level(logging.WARNING, logger="toolkit.index.drift"):
            result = update_index(es, root, built_model, UpdateOptions(alias=index_name))
        drift = result["photo_feature_drift"]
        assert drift["photos"] >= DRIFT_MIN_PHOTOS and drift["shifted"] is shifted, drift
        assert (drift["mean_shift"] > FEATURE_MEAN_SHIFT) is shifted, drift
        warned = [r.getMessage() for r in caplog.records if "photo feature statistics" in r.getMessage()]
        assert len(warned) == int(shifted), warned
        if shifted:
            assert f"{drift['mean_shift']:.2f} standard deviations" in warned[0]
            assert "`jrs index` without --update makes a new version" in warned[0]
        assert result["indexed"] > 0 and result["rejected"] == 0  # a warning, nothing lost
