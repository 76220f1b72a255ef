"""CCA and ridge baselines on hand-made pairs where the right answer is known."""

from __future__ import annotations

import numpy as np
import pytest

from toolkit.evaluation.linear import (
    CCA_REGS,
    RIDGE_ALPHAS,
    fit_cca,
    fit_linear,
    fit_ridge,
    linear_baselines,
)
from toolkit.evaluation.metrics import full_metrics


def _paired(n: int, seed: int, noise: float = 0.1, text_dim: int = 30, image_dim: int = 80):
    """Text and image features that are two noisy linear views of the same 8-d latent."""
    rng = np.random.default_rng(seed)
    a = rng.standard_normal((8, text_dim))
    b = rng.standard_normal((8, image_dim))

    def draw(m: int) -> tuple[np.ndarray, np.ndarray]:
        z = rng.standard_normal((m, 8))
        text = z @ a + noise * rng.standard_normal((m, text_dim)) + 3.0
        image = np.maximum(z @ b + noise * rng.standard_normal((m, image_dim)) + 4.0, 0.0)  # CNN-like, >= 0
        return text.astype(np.float32), image.astype(np.float32)

    return draw(n), draw(200)


@pytest.mark.parametrize("method", ["cca", "ridge"])
def test_linear_views_of_one_latent_are_matched(method):
    (text, image), (test_text, test_image) = _paired(600, seed=1)
    lin = fit_cca(text, image, components=8) if method == "cca" else fit_ridge(text, image, alpha=1.0)
    t2i = full_metrics(lin.embed_text(test_text), lin.embed_image(test_image))["text_to_image"]
    assert t2i["R@10"] > 0.6  # chance is 10 / 200 = 0.05
    assert t2i["MedR"] <= 5


@pytest.mark.parametrize("method", ["cca", "ridge"])
def test_unrelated_features_stay_near_chance(method):
    rng = np.random.default_rng(2)
    text, image = rng.standard_normal((400, 20)), rng.standard_normal((400, 40))
    lin = fit_linear(method, text, image)
    t2i = full_metrics(
        lin.embed_text(rng.standard_normal((300, 20))), lin.embed_image(rng.standard_normal((300, 40)))
    )
    assert t2i["text_to_image"]["R@10"] < 0.12  # chance is 10 / 300 = 0.033


def test_cca_of_an_exact_linear_map_aligns_the_two_sides():
    rng = np.random.default_rng(3)
    w = rng.standard_normal((12, 12))
    text = rng.standard_normal((300, 12))
    lin = fit_cca(text, text @ w, components=12, reg=1e-6)
    new = rng.standard_normal((50, 12))
    cos = (lin.embed_text(new) * lin.embed_image(new @ w)).sum(axis=1)
    assert cos.min() > 0.999
    assert lin.embed_text(new).shape == (50, 12)


def test_cca_components_are_capped_by_the_data():
    rng = np.random.default_rng(4)
    lin = fit_cca(rng.standard_normal((10, 40)), rng.standard_normal((10, 50)), components=64)
    assert lin.text_proj.shape[1] <= 10 and lin.describe()["dims"] == lin.text_proj.shape[1]


def test_the_regularisation_is_picked_on_validation_pairs():
    (text, image), (val_text, val_image) = _paired(300, seed=5, noise=0.5)
    fitted = linear_baselines(text, image, val_text, val_image)
    assert set(fitted) == {"cca", "ridge"}
    assert fitted["cca"].reg in CCA_REGS and fitted["ridge"].reg in RIDGE_ALPHAS
    best = full_metrics(fitted["cca"].embed_text(val_text), fitted["cca"].embed_image(val_image))
    for reg in CCA_REGS:
        other = fit_cca(text, image, reg=reg)
        r10 = full_metrics(other.embed_text(val_text), other.embed_image(val_image))["text_to_image"]["R@10"]
        assert r10 <= best["text_to_image"]["R@10"] + 1e-9


def test_fitting_is_deterministic():
    (text, image), (val_text, _) = _paired(200, seed=6)
    a, b = fit_cca(text, image), fit_cca(text, image)
    assert np.array_equal(a.embed_text(val_text), b.embed_text(val_text))


@pytest.mark.parametrize(
    ("text", "image", "message"),
    [
        (np.zeros((5, 3)), np.zeros((4, 3)), "paired"),
        (np.zeros((2, 3)), np.zeros((2, 3)), "at least 3"),
        (np.full((5, 3), np.nan), np.zeros((5, 3)), "NaN"),
        (np.zeros(5), np.zeros((5, 3)), "2-D"),
    ],
)
def test_bad_inputs_are_refused(text, image, message):
    with pytest.raises(ValueError, match=message):
        fit_cca(text, image)
    with pytest.raises(ValueError, match=message):
        fit_ridge(text, image)


def test_unknown_method_is_refused():
    with pytest.raises(ValueError, match="method"):
        fit_linear("pls", np.zeros((5, 2)), np.zeros((5, 2)))


def test_pairs_whose_texts_never_vary_are_a_clear_error() -> None:
    """Every step text the same (fewer pairs than dimensions): once a ZeroDivisionError deep in the CCA."""
    from toolkit.errors import ToolkitError
    from toolkit.evaluation.linear import fit_cca

    rng = np.random.default_rng(0)
    text = np.tile(rng.normal(size=(1, 50)), (20, 1)).astype(np.float32)
    image = rng.normal(size=(20, 60)).astype(np.float32)
    with pytest.raises(ToolkitError, match="do not vary on one side"):
        fit_cca(text, image)
