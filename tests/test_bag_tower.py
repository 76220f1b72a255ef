"""The bag text tower: token ids through word vectors that start as Word2Vec's and are fine-tuned."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from toolkit.errors import ToolkitError
from toolkit.mapping.checkpoint import load_mapping, save_mapping
from toolkit.mapping.towers import TwoTower, input_stats
from toolkit.mapping.train import MappingConfig, _bag_batch, _BagMeans, _mix_pairs, train_mapping
from toolkit.text.step_vectors import mean_vectors
from toolkit.text.tokens import TokenBags, load_token_bags, save_token_bags


def _bags(rng: np.random.Generator, n: int, vocab: int) -> list[list[int]]:
    return [list(rng.integers(0, vocab, size=rng.integers(1, 8))) for _ in range(n)]


def test_token_bags_take_and_round_trip(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import toolkit.text.tokens as tokens

    lists = _bags(np.random.default_rng(0), 50, 30)
    bags = TokenBags.from_lists(lists)
    assert len(bags) == 50 and [bags.bag(i).tolist() for i in range(50)] == lists
    rows = np.array([7, 3, 3, 49, 0])
    taken = bags.take(rows)
    assert [taken.bag(i).tolist() for i in range(len(rows))] == [lists[r] for r in rows]
    monkeypatch.setattr(tokens, "TAKE_CHUNK_ROWS", 2)  # gathered in three chunks, the last one short
    chunked = bags.take(rows)
    assert np.array_equal(chunked.ids, taken.ids) and np.array_equal(chunked.offsets, taken.offsets)
    mask = np.zeros(50, dtype=bool)
    mask[[1, 4]] = True
    assert [b.tolist() for b in (bags.take(mask).bag(0), bags.take(mask).bag(1))] == [lists[1], lists[4]]
    save_token_bags(tmp_path, bags)
    back = load_token_bags(tmp_path, rows=50)
    assert np.array_equal(back.ids, bags.ids) and np.array_equal(back.offsets, bags.offsets)
    with pytest.raises(Exception, match="49 step vectors|50 token bags"):
        load_token_bags(tmp_path, rows=49)
    with pytest.raises(ValueError, match="offsets"):
        TokenBags(np.arange(3), np.array([0, 2]))


def test_untrained_bag_tower_reads_the_word2vec_mean() -> None:
    rng = np.random.default_rng(1)
    matrix = rng.normal(size=(30, 12)).astype(np.float32)
    bags = TokenBags.from_lists(_bags(rng, 40, 30))
    model = TwoTower(12, 20, dim=8, hidden=16, arch="fixed_image", text_tower="bag", vocab=30)
    model.set_word_vectors(matrix)
    model.eval()
    means, empty = mean_vectors(np.asarray(bags.ids, dtype=np.int64), bags.offsets, matrix)
    assert not empty.any()
    got = model.text.mean(torch.from_numpy(bags.ids.astype(np.int64)), torch.from_numpy(bags.offsets))
    assert np.allclose(got.detach().numpy(), means, atol=1e-6)
    # the rest of the tower is the MLP of a mean tower on those means
    with torch.no_grad():
        expected = model.text.tower(torch.from_numpy(means)).numpy()
    assert np.allclose(model.embed_text(bags), expected, atol=1e-5)
    with pytest.raises(ValueError, match="token ids"):
        model.embed_text(means)


def test_word_dropout_is_seeded_and_never_empties_a_bag() -> None:
    bags = TokenBags.from_lists(_bags(np.random.default_rng(2), 200, 30))
    idx = np.arange(200)

    def draw(seed: int) -> tuple[np.ndarray, np.ndarray]:
        ids, offsets = _bag_batch(bags, idx, 0.5, np.random.default_rng(seed), torch.device("cpu"))
        return ids.numpy(), offsets.numpy()

    ids, offsets = draw(0)
    assert (np.diff(offsets) >= 1).all() and len(offsets) == 201
    assert len(ids) < len(bags.ids)  # tokens were dropped
    assert all(np.array_equal(a, b) for a, b in zip(draw(0), (ids, offsets), strict=True))
    assert not np.array_equal(draw(1)[0], ids)
    kept, _ = _bag_batch(bags, idx, 0.0, np.random.default_rng(0), torch.device("cpu"))
    assert np.array_equal(kept.numpy(), bags.ids)


def _linked_bags(n: int, seed: int, vocab: int = 60) -> tuple[TokenBags, np.ndarray]:
    """Each bag names 1-2 'content' words (which decide the photo) among 3-6 filler words."""
    rng = np.random.default_rng(seed)
    code = np.random.default_rng(99).normal(size=(vocab, 24)).astype(np.float32)
    lists, images = [], []
    for _ in range(n):
        content = list(rng.integers(0, 20, size=rng.integers(1, 3)))
        filler = list(rng.integers(20, vocab, size=rng.integers(3, 7)))
        lists.append(content + filler)
        images.append(code[content].sum(axis=0) + 0.1 * rng.normal(size=24))
    return TokenBags.from_lists(lists), np.asarray(images, dtype=np.float32)


def test_bag_means_read_slice_by_slice_give_the_statistics_of_all_means() -> None:
    rng = np.random.default_rng(4)
    matrix = rng.normal(size=(30, 12)).astype(np.float32)
    bags = TokenBags.from_lists(_bags(rng, 97, 30))
    means, _ = mean_vectors(np.asarray(bags.ids, dtype=np.int64), bags.offsets, matrix)
    lazy = _BagMeans(bags, matrix)
    assert lazy.shape == means.shape and np.array_equal(lazy[10:20], means[10:20])
    for chunk in (8, 97, 8192):  # slices that split the bags unevenly, exactly, or not at all
        got, want = input_stats(lazy, chunk=chunk), input_stats(means, chunk=chunk)
        assert all(np.array_equal(g, w) for g, w in zip(got, want, strict=True))


def test_bag_training_learns_deterministically_and_round_trips(tmp_path: Path) -> None:
    word2vec = np.random.default_rng(5).normal(size=(60, 16)).astype(np.float32)  # unrelated to the link
    train, train_img = _linked_bags(600, 1)
    val, val_img = _linked_bags(150, 2)
    config = MappingConfig(dim=16, hidden=64, epochs=8, batch_size=64, lr=3e-3, val_pool=150, val_draws=1)
    first = train_mapping(train, train_img, val, val_img, config, progress=False, word_vectors=word2vec)
    again = train_mapping(train, train_img, val, val_img, config, progress=False, word_vectors=word2vec)
    state, other = first.model.state_dict(), again.model.state_dict()
    assert all(torch.equal(state[k], other[k]) for k in state)
    moved = first.model.text_towers()[0].words.weight.detach().numpy()
    assert not np.allclose(moved, word2vec)  # the word vectors were fine-tuned
    best = max(h.val_r10 for h in first.history)
    assert best >= 5 * (10 / 150)

    save_mapping(tmp_path, first.model, config, {"word2vec": "w", "encoder": "e"})
    loaded = load_mapping(tmp_path, expected={"word2vec": "w", "encoder": "e"})
    assert loaded.model.text_input == "tokens"
    assert np.allclose(loaded.model.embed_text(val), first.model.embed_text(val), atol=1e-6)

    with pytest.raises(ValueError, match="Word2Vec matrix"):
        train_mapping(train, train_img, val, val_img, config, progress=False)
    with pytest.raises(ValueError, match="TokenBags"):
        train_mapping(train_img, train_img, None, None, config, progress=False, word_vectors=word2vec)


def test_mapping_stage_refuses_step_vectors_without_tokens(tmp_path: Path) -> None:
    from toolkit.stages.pairs import Pairs

    ids = [f"r{i}:0" for i in range(12)]
    pairs = Pairs(ids, np.zeros((12, 4), np.float32), np.zeros((12, 3), np.float32), "w", "e")
    with pytest.raises(ToolkitError, match="token ids"):
        pairs.text_for("tokens")
    assert pairs.text_for("mean") is pairs.text
    with pytest.raises(Exception, match="residual"):
        MappingConfig(arch="residual", init="cca")


@pytest.mark.parametrize("seed", [5, 9])
def test_default_build_beats_chance_widely_and_is_not_below_the_linear_baselines(
    tmp_path: Path, seed: int
) -> None:
    """On a small generated collection with real ImageNet features: the default build's held-out R@10
    is far above chance and not below CCA or ridge fitted on the same training pairs and features."""
    from toolkit.data.sample import generate_sample
    from toolkit.evaluation.held_out import held_out_baselines
    from toolkit.image.backbones import OFFLINE_ENCODER
    from toolkit.pipeline import BuildOptions, build

    generate_sample(tmp_path / "data", 160, seed=seed, image_size=64)
    # the encoder a default build uses offline (photos at 64 px to keep the test short)
    options = BuildOptions(encoder=OFFLINE_ENCODER, weights="imagenet", image_size=64, progress=False)
    result = build(tmp_path / "data", tmp_path / "model", options)
    ev = result["evaluation"]
    mapping = load_mapping(tmp_path / "model" / "mapping").model
    assert mapping.text_input == "tokens"
    model_r10 = ev["model_full"]["text_to_image"]["R@10"]
    baselines = held_out_baselines(tmp_path / "model", options.split_seed, mapping)
    linear = max(baselines[f"{m}_full"]["text_to_image"]["R@10"] for m in ("cca", "ridge"))
    chance = 10 / ev["pairs"]["test"]
    assert model_r10 >= 5 * chance
    assert model_r10 >= linear


def test_text_ensemble_averages_members_trained_from_their_own_seeds(tmp_path: Path) -> None:
    from dataclasses import replace

    from toolkit.errors import ConfigError
    from toolkit.mapping.checkpoint import mapping_fingerprint

    word2vec = np.random.default_rng(5).normal(size=(60, 16)).astype(np.float32)
    train, train_img = _linked_bags(400, 1)
    val, val_img = _linked_bags(120, 2)
    config = MappingConfig(
        dim=16, hidden=32, epochs=4, batch_size=64, lr=3e-3, val_pool=120, val_draws=1, text_members=3
    )
    ens = train_mapping(train, train_img, val, val_img, config, progress=False, word_vectors=word2vec)
    singles = [
        train_mapping(
            train, train_img, val, val_img, replace(config, seed=s, text_members=1), progress=False,
            word_vectors=word2vec,
        )
        for s in (0, 1, 2)
    ]  # fmt: skip
    assert len(ens.members) == 3 and ens.model.arch()["text_members"] == 3
    assert "text_members" not in singles[0].model.arch()  # one tower: the architecture of before
    # member j is the single tower of seed j, and the image side is the same for all of them
    for member, single in zip(ens.model.text_towers(), singles, strict=True):
        state, want = member.state_dict(), single.model.text.state_dict()
        assert all(torch.equal(state[k], want[k]) for k in want)
    towers = [s.model.embed_text(val) for s in singles]
    assert not np.allclose(towers[0], towers[1], atol=1e-3)  # the seeds give different towers
    assert np.allclose(ens.model.embed_image(val_img), singles[0].model.embed_image(val_img), atol=1e-6)
    # the towers' part of the text vector is the unit mean of the members' parts; the CCA part is shared
    d, w = config.dim, config.linear_weight
    mean = np.mean([t[:, :d] for t in towers], axis=0)
    got = ens.model.embed_text(val)
    unit = mean / np.linalg.norm(mean, axis=1, keepdims=True)
    assert np.allclose(got[:, :d], (1 - w) ** 0.5 * unit, atol=1e-5)
    assert np.allclose(got[:, d:], towers[0][:, d:], atol=1e-6)

    save_mapping(tmp_path, ens.model, config, {"word2vec": "w", "encoder": "e"})
    loaded = load_mapping(tmp_path, expected={"word2vec": "w", "encoder": "e"})
    assert np.allclose(loaded.model.embed_text(val), ens.model.embed_text(val), atol=1e-6)
    assert mapping_fingerprint(loaded.model, config) == mapping_fingerprint(ens.model, config)
    assert mapping_fingerprint(singles[0].model, replace(config, text_members=1)) != mapping_fingerprint(
        ens.model, config
    )
    with pytest.raises(ConfigError, match="text_members"):
        MappingConfig(arch="mlp", text_members=2)
    with pytest.raises(ValueError, match="text_members"):
        TwoTower(12, 20, arch="mlp", text_members=2)


def test_mixed_pairs_join_two_steps_tokens_with_the_mean_of_their_photos() -> None:
    from toolkit.errors import ConfigError
    from toolkit.mapping.losses import negative_mask

    lists = [[1, 2], [3], [4, 5, 6], [7], [8, 9], [10]]
    bags = TokenBags.from_lists(lists)
    ids, offsets = _bag_batch(bags, np.arange(6), 0.0, np.random.default_rng(0), torch.device("cpu"))
    image = torch.arange(6 * 4, dtype=torch.float32).reshape(6, 4)
    codes = torch.tensor([0, 0, 1, 2, 3, 4])
    (mids, moffs), mimage, mcodes = _mix_pairs((ids, offsets), image, codes, 0.5)
    got = [mids[a:b].tolist() for a, b in zip(moffs[:-1].tolist(), moffs[1:].tolist(), strict=True)]
    # the batch unchanged, then 3 mixed pairs: pair b with pair b + 3
    assert got == lists + [[1, 2, 7], [3, 8, 9], [4, 5, 6, 10]]
    assert torch.equal(mimage[:6], image)
    assert torch.allclose(mimage[6:], 0.5 * (image[:3] + image[3:6]))
    # a mixed pair shares its first source's group: never that pair's negative, nor the other way round
    assert mcodes.tolist() == [0, 0, 1, 2, 3, 4, 0, 0, 1]
    assert not negative_mask(9, mcodes)[0, 6] and negative_mask(9, mcodes)[3, 6]
    same = _mix_pairs((ids, offsets), image, codes, 0.0)
    assert same[1] is image and same[0][0] is ids  # share 0: the batch as it came
    assert MappingConfig().mix_share == 0.5 and MappingConfig(text_tower="mean").mix_share == 0.0
    with pytest.raises(ConfigError, match="mix_share"):
        MappingConfig(text_tower="mean", mix_share=0.5)
    with pytest.raises(ConfigError, match="mix_share"):
        MappingConfig(mix_share=1.5)


def test_mixed_pairs_change_the_trained_model_and_its_fingerprint() -> None:
    from dataclasses import replace

    from toolkit.mapping.checkpoint import mapping_fingerprint

    word2vec = np.random.default_rng(5).normal(size=(60, 16)).astype(np.float32)
    train, train_img = _linked_bags(300, 1)
    val, val_img = _linked_bags(100, 2)
    config = MappingConfig(
        dim=16, hidden=32, epochs=3, batch_size=64, val_pool=100, val_draws=1, text_members=1
    )
    runs = {
        share: train_mapping(
            train, train_img, val, val_img, replace(config, mix_share=share), progress=False,
            word_vectors=word2vec,
        ).model
        for share in (0.0, 0.5)
    }  # fmt: skip
    assert not np.allclose(runs[0.0].embed_text(val), runs[0.5].embed_text(val), atol=1e-4)
    assert mapping_fingerprint(runs[0.0], replace(config, mix_share=0.0)) != mapping_fingerprint(
        runs[0.5], replace(config, mix_share=0.5)
    )
    assert "mix_share" not in replace(config, mix_share=0.0).fingerprint_dict()  # older mappings: same hash


def test_weight_average_is_the_mean_of_the_best_epoch_and_those_after_it() -> None:
    from dataclasses import replace

    from toolkit.mapping.train import _WeightAverage

    states = [{"w": torch.full((2, 3), float(i)), "b": torch.tensor([i, 2.0 * i])} for i in range(5)]
    average = _WeightAverage()
    average.restart(states[0])
    average.add(states[1])
    average.restart(states[2])  # a new best: what came before it is dropped
    average.add(states[3])
    average.add(states[4])
    mean = average.mean(states[0])
    assert average.count == 3 and torch.allclose(mean["w"], torch.full((2, 3), 3.0))
    assert torch.allclose(mean["b"], torch.tensor([3.0, 6.0])) and mean["b"].dtype == states[0]["b"].dtype

    word2vec = np.random.default_rng(5).normal(size=(60, 16)).astype(np.float32)
    train, train_img = _linked_bags(300, 1)
    val, val_img = _linked_bags(100, 2)
    config = MappingConfig(
        dim=16, hidden=32, epochs=12, patience=3, batch_size=64, val_pool=100, val_draws=1, text_members=1
    )
    runs = {
        flag: train_mapping(
            train, train_img, val, val_img, replace(config, weight_average=flag), progress=False,
            word_vectors=word2vec,
        )
        for flag in (False, True)
    }  # fmt: skip
    best = runs[False]
    assert best.averaged_epochs == 1 and runs[True].best_epoch == best.best_epoch
    # the epochs after the best one until training stopped are in the mean
    assert runs[True].averaged_epochs == len(best.history) - best.best_epoch + 1 > 1
    assert not np.allclose(runs[True].model.embed_text(val), best.model.embed_text(val), atol=1e-4)
    assert "weight_average" not in replace(config, weight_average=False).fingerprint_dict()
    assert MappingConfig.from_dict({"dim": 16}).weight_average is False  # mappings saved before: best epoch


def test_lazy_word_updates_move_only_the_batch_words() -> None:
    """``sparse_words`` (the default): the word table gets a sparse gradient and lazy Adam, so a step moves
    only the rows of the words in its batch (its cost does not grow with the vocabulary). Dense AdamW keeps
    moving a word after its batch, on momentum alone."""
    from dataclasses import replace

    from toolkit.mapping.losses import SymmetricInfoNCE
    from toolkit.mapping.train import _optimizers, build_model

    config = MappingConfig(dim=8, hidden=16, text_members=1)
    assert (
        config.sparse_words and "sparse_words" not in replace(config, sparse_words=False).fingerprint_dict()
    )
    word2vec = np.random.default_rng(3).normal(size=(10, 6)).astype(np.float32)
    image = torch.from_numpy(np.random.default_rng(4).normal(size=(2, 12)).astype(np.float32))
    batches = [  # two pairs a batch: words 1 and 2, then 3 and 4
        (torch.tensor([1, 2]), torch.tensor([0, 1, 2])),
        (torch.tensor([3, 4]), torch.tensor([0, 1, 2])),
    ]
    after: dict[bool, list[torch.Tensor]] = {}
    for sparse in (True, False):
        torch.manual_seed(0)
        model = build_model(6, 12, replace(config, sparse_words=sparse), vocab=10)
        model.set_word_vectors(word2vec)
        loss_fn = SymmetricInfoNCE()
        optimizers = _optimizers(model, loss_fn, replace(config, sparse_words=sparse))
        assert len(optimizers) == (2 if sparse else 1)
        words = model.text_towers()[0].words.weight
        after[sparse] = []
        for ids, offsets in batches:
            for o in optimizers:
                o.zero_grad(set_to_none=True)
            loss_fn(*model((ids, offsets), image), None).backward()
            assert words.grad.is_sparse == sparse
            for o in optimizers:
                o.step()
            after[sparse].append(words.detach().clone())
    first, second = after[True]
    assert not torch.equal(first[1:3], torch.from_numpy(word2vec[1:3]))  # the batch's words moved
    assert torch.equal(first[3:], torch.from_numpy(word2vec[3:]))  # no other word did
    assert torch.equal(second[1:3], first[1:3]) and not torch.equal(second[3:5], first[3:5])
    dense_first, dense_second = after[False]
    assert not torch.equal(dense_second[1:3], dense_first[1:3])  # dense AdamW: momentum moves them on
