"""The linear branch: CCAs of the training pairs fused into the mapping's embeddings after training."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from tests.test_train_mapping import small_config, synthetic_pairs
from toolkit.evaluation import linear as linear_mod
from toolkit.evaluation.linear import fit_cca, fit_linear, pair_moments
from toolkit.mapping.checkpoint import load_mapping, mapping_fingerprint, save_mapping
from toolkit.mapping.linear_branch import fit_merge
from toolkit.mapping.train import MappingConfig, _BagMeans, train_mapping
from toolkit.text.tokens import TokenBags
from toolkit.vectorset import Rows

FPS = {"word2vec": "1a2b3c4d5e6f7a8b", "encoder": "9f8e7d6c5b4a3f2e"}


@pytest.fixture(scope="module")
def pairs() -> dict[str, np.ndarray]:
    tt, ti = synthetic_pairs(1200, seed=11)
    vt, vi = synthetic_pairs(300, seed=12)
    return {"tt": tt, "ti": ti, "vt": vt, "vi": vi}


def _cos(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (a * b).sum(axis=1)


def _unit(y: np.ndarray) -> np.ndarray:
    return y / np.linalg.norm(y, axis=1, keepdims=True)


def test_fused_cosine_is_the_weighted_sum_of_towers_and_cca(pairs: dict[str, np.ndarray]) -> None:
    towers = train_mapping(
        pairs["tt"], pairs["ti"], pairs["vt"], pairs["vi"], small_config(linear_weight=0.0), progress=False
    ).model
    one_map = small_config(linear_weight=0.3, linear_strong_reg=None)
    fused = train_mapping(pairs["tt"], pairs["ti"], pairs["vt"], pairs["vi"], one_map, progress=False).model
    assert "linear_maps" not in fused.arch()  # one map: the arch (and fingerprint) of mappings saved before
    cca = fit_linear("cca", pairs["tt"], pairs["ti"], pairs["vt"], pairs["vi"])  # the linear baseline's fit
    t, i = fused.embed_text(pairs["vt"]), fused.embed_image(pairs["vi"])
    assert t.shape == (300, 32 + cca.text_proj.shape[1]) and fused.dim == t.shape[1]
    assert np.allclose(np.linalg.norm(t, axis=1), 1.0, atol=1e-5)
    # the towers trained exactly as without the branch (it is fitted after training)
    assert np.allclose(t[:, :32] / np.sqrt(0.7), towers.embed_text(pairs["vt"]), atol=1e-5)
    expected = 0.7 * _cos(towers.embed_text(pairs["vt"]), towers.embed_image(pairs["vi"])) + 0.3 * _cos(
        cca.embed_text(pairs["vt"]), cca.embed_image(pairs["vi"])
    )
    assert np.allclose(_cos(t, i), expected, atol=1e-4)


def test_two_maps_are_merged_into_the_branch_dims(pairs: dict[str, np.ndarray]) -> None:
    config = small_config(linear_weight=0.3, linear_strong_reg=100.0)
    model = train_mapping(pairs["tt"], pairs["ti"], pairs["vt"], pairs["vi"], config, progress=False).model
    picked = fit_linear("cca", pairs["tt"], pairs["ti"], pairs["vt"], pairs["vi"])
    strong = fit_cca(pairs["tt"], pairs["ti"], picked.text_proj.shape[1], reg=100.0)
    k = picked.text_proj.shape[1]
    merge = fit_merge([picked, strong], pairs["tt"], pairs["ti"])
    assert merge.shape == (2 * k, k) and np.allclose(merge.T @ merge, np.eye(k), atol=1e-8)
    assert model.arch()["linear_maps"] == 2 and model.dim == 32 + k
    t, i = model.embed_text(pairs["vt"]), model.embed_image(pairs["vi"])
    assert np.allclose(np.linalg.norm(t, axis=1), 1.0, atol=1e-5)
    # the branch part: both maps' unit variates side by side, projected by the merge, normalised again
    want_t = _unit(
        np.concatenate([picked.embed_text(pairs["vt"]), strong.embed_text(pairs["vt"])], 1) @ merge
    )
    want_i = _unit(
        np.concatenate([picked.embed_image(pairs["vi"]), strong.embed_image(pairs["vi"])], 1) @ merge
    )
    assert np.allclose(t[:, 32:] / np.sqrt(0.3), want_t, atol=1e-4)
    assert np.allclose(i[:, 32:] / np.sqrt(0.3), want_i, atol=1e-4)
    # the strong map differs from the picked one, and the merge keeps what the two share
    assert _cos(picked.embed_text(pairs["vt"]), strong.embed_text(pairs["vt"])).mean() < 0.99
    assert (
        _cos(want_t, want_i).mean()
        > 0.5 * _cos(picked.embed_text(pairs["vt"]), picked.embed_image(pairs["vi"])).mean()
    )
    # the same pairs give the same merge (signs fixed)
    assert np.array_equal(merge, fit_merge([picked, strong], pairs["tt"], pairs["ti"]))
    with pytest.raises(ValueError, match="two or more maps"):
        fit_merge([picked], pairs["tt"], pairs["ti"])


def test_fused_mapping_round_trips_and_is_fingerprinted(tmp_path: Path, pairs: dict[str, np.ndarray]) -> None:
    config = small_config(epochs=2)
    model = train_mapping(pairs["tt"], pairs["ti"], pairs["vt"], pairs["vi"], config, progress=False).model
    assert model.linear is not None and model.arch()["linear_weight"] == config.linear_weight
    save_mapping(tmp_path, model, config, FPS)
    loaded = load_mapping(tmp_path, expected=FPS)
    assert np.array_equal(loaded.model.embed_text(pairs["vt"]), model.embed_text(pairs["vt"]))
    assert np.array_equal(loaded.model.embed_image(pairs["vi"]), model.embed_image(pairs["vi"]))
    # the branch's weights are part of the fingerprint: another CCA is another mapping
    base = mapping_fingerprint(model, config)
    twin = type(model)(**model.arch())
    twin.load_state_dict(model.state_dict())
    assert mapping_fingerprint(twin, config) == base
    twin.linear.image_bias[0] += 1e-3
    assert mapping_fingerprint(twin, config) != base


def test_towers_only_configs_keep_their_fingerprint_keys() -> None:
    legacy = MappingConfig.from_dict(
        {k: v for k, v in MappingConfig().to_dict().items() if "linear" not in k}
    )
    assert legacy.linear_weight == 0.0  # a mapping saved before the branch existed has none
    assert legacy.linear_strong_reg is None  # nor a strong map
    assert not any("linear" in k for k in legacy.fingerprint_dict())
    assert MappingConfig().fingerprint_dict()["linear_weight"] == 0.15
    with pytest.raises(Exception, match="linear_weight"):
        MappingConfig(linear_weight=1.0)
    with pytest.raises(Exception, match="linear_strong_reg"):
        MappingConfig(linear_strong_reg=0.0)


def test_bag_branch_folds_the_cca_into_the_word2vec_vectors() -> None:
    rng = np.random.default_rng(3)
    vocab, text_dim = 60, 16
    matrix = rng.normal(size=(vocab, text_dim)).astype(np.float32)
    lists = [list(rng.integers(0, vocab, size=rng.integers(1, 6))) for _ in range(500)]
    bags = TokenBags.from_lists(lists)
    means = _BagMeans(bags, matrix)[0:500]
    image = (means @ rng.normal(size=(text_dim, 24)) + 0.3 * rng.normal(size=(500, 24))).astype(np.float32)
    train, val = slice(0, 400), slice(400, 500)
    cca = fit_linear("cca", means[train], image[train], means[val], image[val])
    k = cca.text_proj.shape[1]
    strong = fit_cca(means[train], image[train], k, reg=100.0)
    merge = fit_merge([cca, strong], means[train], image[train])
    merged = {
        "text": _unit(np.concatenate([cca.embed_text(means[val]), strong.embed_text(means[val])], 1) @ merge),
        "image": _unit(
            np.concatenate([cca.embed_image(image[val]), strong.embed_image(image[val])], 1) @ merge
        ),
    }
    for strong_reg, want in (
        (None, {"text": cca.embed_text(means[val]), "image": cca.embed_image(image[val])}),
        (100.0, merged),
    ):
        config = MappingConfig(
            dim=8, hidden=16, epochs=2, batch_size=64, text_tower="bag", linear_weight=0.4,
            linear_strong_reg=strong_reg,
        )  # fmt: skip
        model = train_mapping(
            bags[train], image[train], bags[val], image[val], config, word_vectors=matrix, progress=False
        ).model
        # the branch's part of a token bag's embedding is the CCA(s) of its Word2Vec step mean
        got = model.embed_text(bags[val])[:, 8:] / np.sqrt(0.4)
        assert got.shape == (100, k)
        assert np.allclose(got, want["text"], atol=1e-4)
        assert np.allclose(model.embed_image(image[val])[:, 8:] / np.sqrt(0.4), want["image"], atol=1e-4)


def test_cca_from_block_moments_matches_one_block_and_reads_lazy_rows(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    text, image = synthetic_pairs(900, seed=5)
    text, image = text[:, :40], image[:, :60]
    whole = fit_cca(text, image, components=16, reg=0.1)
    monkeypatch.setattr(linear_mod, "MOMENT_BLOCK_BYTES", 128 * 8 * 100)  # 128-row blocks
    blocked = fit_cca(Rows(text), Rows(image), components=16, reg=0.1)
    for name in ("text_mean", "text_scale", "image_mean", "image_scale"):
        assert np.allclose(getattr(whole, name), getattr(blocked, name))
    new_t, new_i = synthetic_pairs(50, seed=6)
    cos = _cos(whole.embed_text(new_t[:, :40]), blocked.embed_text(new_t[:, :40]))
    assert cos.min() > 0.9999
    assert _cos(whole.embed_image(new_i[:, :60]), blocked.embed_image(new_i[:, :60])).min() > 0.9999
    bad = text.copy()
    bad[700, 3] = np.nan
    with pytest.raises(ValueError, match="rows 640"):
        fit_cca(Rows(bad), Rows(image))


def test_moments_computed_once_serve_every_fit(pairs: dict[str, np.ndarray]) -> None:
    moments = pair_moments(pairs["tt"], pairs["ti"])
    assert moments is not None  # more pairs than dimensions: fitted from block moments
    given = fit_linear("cca", pairs["tt"], pairs["ti"], pairs["vt"], pairs["vi"], moments=moments)
    own = fit_linear("cca", pairs["tt"], pairs["ti"], pairs["vt"], pairs["vi"])
    assert given.reg == own.reg and np.array_equal(given.text_proj, own.text_proj)
    strong = fit_cca(pairs["tt"], pairs["ti"], 16, reg=100.0, moments=moments)
    assert np.allclose(strong.image_proj, fit_cca(pairs["tt"], pairs["ti"], 16, reg=100.0).image_proj)
    few = pair_moments(pairs["tt"][:20], pairs["ti"][:20])
    assert few is None  # fewer pairs than dimensions: fitted in memory, no moments
