"""Towers (shapes, unit norm, input standardisation, numpy helpers) and the metric-learning losses."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from toolkit.mapping.losses import (
    BidirectionalTripletLoss,
    SymmetricInfoNCE,
    hardest_negatives,
    negative_mask,
    semihard_negatives,
    similarity_matrix,
)
from toolkit.mapping.towers import TwoTower, input_stats


def _model(**kw) -> TwoTower:
    torch.manual_seed(0)
    return TwoTower(text_dim=12, image_dim=20, dim=8, hidden=16, **kw)


@pytest.mark.parametrize("norm,activation", [("layer", "gelu"), ("batch", "relu")])
def test_towers_give_unit_vectors_of_dim(norm: str, activation: str) -> None:
    model = _model(norm=norm, activation=activation)
    rng = np.random.default_rng(0)
    t = model.embed_text(rng.normal(size=(50, 12)))
    i = model.embed_image(rng.normal(size=(50, 20)) * 100 + 50)
    assert t.dtype == np.float32 and t.shape == (50, 8) and i.shape == (50, 8)
    np.testing.assert_allclose(np.linalg.norm(t, axis=1), 1.0, atol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(i, axis=1), 1.0, atol=1e-5)


def test_embedding_does_not_depend_on_batch_size_and_restores_train_mode() -> None:
    model = _model(norm="batch")
    model.train()
    x = np.random.default_rng(1).normal(size=(37, 12)).astype(np.float32)
    np.testing.assert_allclose(
        model.embed_text(x, batch_size=5), model.embed_text(x, batch_size=1000), atol=1e-6
    )
    assert model.training
    single = model.embed_text(x[3])
    np.testing.assert_allclose(single[0], model.embed_text(x)[3], atol=1e-6)


def test_embed_rejects_wrong_dim_and_names_bad_row() -> None:
    model = _model()
    with pytest.raises(ValueError, match=r"\[N, 12\]"):
        model.embed_text(np.zeros((3, 13)))
    x = np.ones((6, 20))
    x[4, 2] = np.nan
    with pytest.raises(ValueError, match="row 4"):
        model.embed_image(x, batch_size=2)


def test_input_stats_standardise_large_non_negative_features() -> None:
    rng = np.random.default_rng(2)
    x = np.abs(rng.normal(size=(1000, 20))) * 300 + 40
    x[:, 5] = 7.0  # a constant feature must not blow up
    mean, std = input_stats(x, chunk=128)
    np.testing.assert_allclose(mean, x.mean(axis=0), rtol=1e-5)
    np.testing.assert_allclose(std[np.arange(20) != 5], x.std(axis=0)[np.arange(20) != 5], rtol=1e-4)
    assert std[5] == 1.0
    model = _model()
    model.set_input_stats(np.zeros(12, np.float32), np.ones(12, np.float32), mean, std)
    z = model.image.standardize(torch.as_tensor(x, dtype=torch.float32)).numpy()
    np.testing.assert_allclose(z.mean(axis=0), 0.0, atol=1e-3)
    np.testing.assert_allclose(z[:, np.arange(20) != 5].std(axis=0), 1.0, atol=1e-3)
    with pytest.raises(ValueError, match="shape"):
        model.set_input_stats(np.zeros(3), np.ones(3), mean, std)


def test_arch_rebuilds_the_same_architecture() -> None:
    model = _model(dropout=0.3, norm="batch")
    twin = TwoTower(**model.arch())
    assert {k: v.shape for k, v in twin.state_dict().items()} == {
        k: v.shape for k, v in model.state_dict().items()
    }
    with pytest.raises(ValueError, match="norm"):
        TwoTower(4, 4, norm="group")


def test_similarity_matrix_is_cosine() -> None:
    a, b = torch.randn(5, 7), torch.randn(4, 7)
    sim = similarity_matrix(a, b, normalize=True)
    expected = torch.nn.functional.cosine_similarity(a[:, None, :], b[None, :, :], dim=-1)
    torch.testing.assert_close(sim, expected)


def test_negative_mask_excludes_diagonal_and_same_group() -> None:
    mask = negative_mask(4, torch.tensor([7, 7, 3, 9]))
    expected = torch.tensor(
        [[0, 0, 1, 1], [0, 0, 1, 1], [1, 1, 0, 1], [1, 1, 1, 0]],
        dtype=torch.bool,
    )
    assert torch.equal(mask, expected)
    assert torch.equal(negative_mask(3), ~torch.eye(3, dtype=torch.bool))


# A hand-built similarity matrix (rows: anchors, columns: candidates, diagonal: positives).
SIM = torch.tensor(
    [
        [0.50, 0.90, 0.40, 0.45, -0.2],  # negatives 0.9 (harder than pos), 0.45 (semi-hard), 0.4, -0.2
        [0.10, 0.80, 0.70, 0.30, 0.60],  # semi-hard band: 0.7 is the closest below the positive
        [0.95, 0.92, 0.90, 0.91, 0.99],  # every negative beats the positive: fallback
        [0.00, 0.20, 0.10, 0.30, 0.25],  # column 4 is the hardest, but same group as row 3
        [0.30, 0.20, 0.10, 0.00, 0.70],
    ]
)


def test_hardest_negative_miner() -> None:
    idx, valid = hardest_negatives(SIM, negative_mask(5))
    assert idx.tolist() == [1, 2, 4, 4, 0]
    assert valid.all()
    idx, _ = hardest_negatives(SIM, negative_mask(5, torch.tensor([0, 1, 2, 3, 3])))
    assert idx[3].item() == 1 and idx[4].item() == 0


def test_semihard_negative_miner_and_fallback() -> None:
    idx, valid = semihard_negatives(SIM, SIM.diagonal(), negative_mask(5))
    # row 0: 0.45 (col 3) is the most similar negative below 0.5; row 1: 0.7 (col 2);
    # row 2: none below 0.90 -> least similar negative 0.91 (col 3); row 3: 0.25 (col 4); row 4: 0.3 (col 0)
    assert idx.tolist() == [3, 2, 3, 4, 0]
    assert valid.all()
    idx, _ = semihard_negatives(SIM, SIM.diagonal(), negative_mask(5, torch.tensor([0, 1, 2, 3, 3])))
    assert idx[3].item() == 1  # 0.25 is a duplicate now; next below 0.30 is 0.20


def test_miners_flag_anchors_without_negatives() -> None:
    mask = negative_mask(3, torch.tensor([1, 1, 1]))
    _, valid = hardest_negatives(torch.eye(3), mask)
    assert not valid.any()


def _pair() -> tuple[torch.Tensor, torch.Tensor]:
    text = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    image = torch.tensor([[1.0, 0.0], [0.6, 0.8]])
    return text, image  # sim = [[1, 0.6], [0, 0.8]]


@pytest.mark.parametrize("mining", ["hard", "semihard"])
def test_triplet_loss_by_hand(mining: str) -> None:
    text, image = _pair()
    loss = BidirectionalTripletLoss(margin=0.5, mining=mining)(text, image)
    # text->image: relu(.5-1+.6)=.1, relu(.5-.8+0)=0; image->text: relu(.5-1+0)=0, relu(.5-.8+.6)=.3
    assert loss.item() == pytest.approx((0.1 + 0.0 + 0.0 + 0.3) / 4)
    assert BidirectionalTripletLoss(0.5, mining)(text, image, torch.tensor([4, 4])).item() == 0.0


def test_triplet_groups_keep_duplicates_out_of_negatives() -> None:
    text = torch.nn.functional.normalize(torch.tensor([[1.0, 0.1], [1.0, 0.1], [-1.0, 0.3]]), dim=-1)
    image = torch.nn.functional.normalize(torch.tensor([[1.0, 0.0], [1.0, 0.2], [-1.0, 0.0]]), dim=-1)
    loss_fn = BidirectionalTripletLoss(margin=0.2, mining="hard")
    assert loss_fn(text, image).item() > 0.05  # the duplicate text counts as a violating negative
    assert loss_fn(text, image, torch.tensor([0, 0, 1])).item() == 0.0


def test_infonce_by_hand_and_group_masking() -> None:
    text, image = _pair()
    loss = SymmetricInfoNCE(init_temperature=1.0, learnable=False)(text, image)
    rows = -math.log(math.e**1 / (math.e**1 + math.e**0.6)) - math.log(
        math.e**0.8 / (math.e**0 + math.e**0.8)
    )
    cols = -math.log(math.e**1 / (math.e**1 + math.e**0)) - math.log(
        math.e**0.8 / (math.e**0.6 + math.e**0.8)
    )
    assert loss.item() == pytest.approx((rows / 2 + cols / 2) / 2, rel=1e-6)
    # same group: each softmax has only its positive left, so the loss is zero
    assert SymmetricInfoNCE(1.0, learnable=False)(text, image, torch.tensor([3, 3])).item() == pytest.approx(
        0.0
    )


def test_infonce_temperature_learns_and_is_clamped() -> None:
    loss_fn = SymmetricInfoNCE(init_temperature=0.07)
    assert loss_fn.temperature == pytest.approx(0.07)
    text, image = _pair()
    loss_fn(text, image).backward()
    assert loss_fn.log_scale.grad is not None and loss_fn.log_scale.grad.item() != 0.0
    with torch.no_grad():
        loss_fn.log_scale.fill_(10.0)
    assert loss_fn.temperature == pytest.approx(0.01)  # scale capped at 100
    loss_fn.clamp_parameters()
    assert loss_fn.log_scale.item() == pytest.approx(math.log(100))
    fixed = SymmetricInfoNCE(0.1, learnable=False)
    assert list(fixed.parameters()) == []


def test_losses_reject_bad_options_and_shapes() -> None:
    with pytest.raises(ValueError, match="mining"):
        BidirectionalTripletLoss(mining="easy")
    with pytest.raises(ValueError, match="shape"):
        SymmetricInfoNCE()(torch.zeros(3, 2), torch.zeros(2, 2))
