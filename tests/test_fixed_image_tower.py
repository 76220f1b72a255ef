"""The default ``fixed_image`` towers: a frozen PCA image side, a trained text side, deterministic."""

from __future__ import annotations

import numpy as np
import torch

from toolkit.mapping.train import MappingConfig, train_mapping


def _pairs(seed: int = 0, n: int = 400) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    z = rng.normal(size=(n, 12))
    text = z @ rng.normal(size=(12, 40)) + 0.3 * rng.normal(size=(n, 40))
    image = z @ rng.normal(size=(12, 96)) + 0.3 * rng.normal(size=(n, 96))
    return text.astype(np.float32), image.astype(np.float32)


def test_image_side_is_the_pca_of_the_standardised_training_features() -> None:
    text, image = _pairs()
    config = MappingConfig(dim=16, hidden=64, epochs=4, batch_size=64, text_tower="mean")
    assert config.arch == "fixed_image"
    result = train_mapping(text[:320], image[:320], text[320:], image[320:], config, progress=False)
    weight = result.model.image.project.weight.detach().numpy()
    z = (image[:320] - image[:320].mean(0)) / image[:320].std(0)
    values, vectors = np.linalg.eigh(np.cov(z, rowvar=False, bias=True))
    top = vectors[:, np.argsort(values)[::-1][:16]]
    # the same directions (up to sign), orthonormal, never changed by training
    np.testing.assert_allclose(np.abs(weight @ top), np.eye(16), atol=1e-3)
    assert not result.model.image.project.weight.requires_grad
    assert sum(p.numel() for p in result.model.image.parameters() if p.requires_grad) == 0


def test_text_side_learns_and_beats_chance_widely() -> None:
    text, image = _pairs(1)
    config = MappingConfig(dim=16, hidden=64, epochs=15, batch_size=64, text_tower="mean")
    result = train_mapping(text[:320], image[:320], text[320:], image[320:], config, progress=False)
    t, i = result.model.embed_text(text[320:]), result.model.embed_image(image[320:])
    ranks = ((t @ i.T) > np.sum(t * i, axis=1, keepdims=True)).sum(axis=1) + 1
    assert np.mean(ranks <= 10) > 5 * (10 / 80)  # chance R@10 is 12.5 % on 80 pairs


def test_same_seed_same_model() -> None:
    text, image = _pairs(2)
    config = MappingConfig(dim=16, hidden=64, epochs=3, batch_size=64, text_tower="mean")
    a = train_mapping(text[:320], image[:320], text[320:], image[320:], config, progress=False).model
    b = train_mapping(text[:320], image[:320], text[320:], image[320:], config, progress=False).model
    for (name, x), (_, y) in zip(a.state_dict().items(), b.state_dict().items(), strict=True):
        assert torch.equal(x, y), name
