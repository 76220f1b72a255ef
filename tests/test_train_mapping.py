"""Training the mapping on synthetic paired data with a real learnable link, and the CLI around it."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from tests.logcapture import captured_log
from toolkit.cli.mapping import evaluate_vectors_cmd, train_mapping_cmd
from toolkit.data.splits import split_of
from toolkit.evaluation.baselines import chance_metrics, random_tower_metrics
from toolkit.evaluation.metrics import pooled_metrics
from toolkit.mapping.checkpoint import load_mapping
from toolkit.mapping.train import MappingConfig, train_mapping, warmup_cosine
from toolkit.stages.pairs import Pairs, split_pairs
from toolkit.vectorset import save_vector_set

TEXT_DIM, IMAGE_DIM = 300, 512


def synthetic_pairs(n: int, seed: int, noise: float = 1.5) -> tuple[np.ndarray, np.ndarray]:
    """Latent z ~ N(0, I_16); text = tanh(A z) + noise (300-d); image = 3 relu(B z) + noise (512-d).

    A and B are fixed, so every call shares the same text/image link; the noise keeps it non-trivial.
    """
    link = np.random.default_rng(123)
    a = link.normal(size=(16, TEXT_DIM)) / 4
    b = link.normal(size=(16, IMAGE_DIM)) / 4
    rng = np.random.default_rng(seed)
    z = rng.normal(size=(n, 16))
    text = np.tanh(z @ a) + noise * rng.normal(size=(n, TEXT_DIM))
    image = 3 * np.maximum(z @ b, 0) + noise * rng.normal(size=(n, IMAGE_DIM))
    return text.astype(np.float32), image.astype(np.float32)


def small_config(**kw) -> MappingConfig:
    base = dict(
        dim=32,
        hidden=64,
        epochs=4,
        batch_size=64,
        lr=3e-3,
        warmup_epochs=0.5,
        val_pool=500,
        val_draws=1,
        text_tower="mean",  # synthetic features, no tokens (bag towers: tests/test_bag_tower.py)
    )
    return MappingConfig(**(base | kw))


@pytest.fixture(scope="module")
def data() -> dict[str, np.ndarray]:
    tt, ti = synthetic_pairs(2000, seed=1)
    vt, vi = synthetic_pairs(500, seed=2)
    return {"tt": tt, "ti": ti, "vt": vt, "vi": vi}


@pytest.mark.parametrize("loss", ["infonce", "triplet"])
def test_both_losses_learn_the_link(data: dict[str, np.ndarray], loss: str) -> None:
    config = small_config(loss=loss, arch="mlp", init="random")  # learning from scratch
    result = train_mapping(data["tt"], data["ti"], data["vt"], data["vi"], config, progress=False)
    model = result.model
    held_out = pooled_metrics(model.embed_text(data["vt"]), model.embed_image(data["vi"]), pool=500, draws=1)
    random = random_tower_metrics(
        data["vt"], data["vi"], model.arch(), seed=0, stats=model.get_input_stats(), pool=500, draws=1
    )
    r10 = held_out["text_to_image"]["R@10"]
    chance = chance_metrics(500)["R@10"]
    assert r10 >= 3 * max(random["text_to_image"]["R@10"], chance)
    assert r10 >= 10 * chance
    assert held_out["image_to_text"]["R@10"] >= 10 * chance
    losses = [h.loss for h in result.history]
    assert losses[-1] < 0.7 * losses[0]
    assert [h.epoch for h in result.history] == [1, 2, 3, 4]
    assert all(h.val_r10 is not None and h.seconds > 0 for h in result.history)


def test_best_epoch_weights_are_restored(data: dict[str, np.ndarray]) -> None:
    # a high LR makes epochs uneven; one tower only: the history validates that tower
    config = small_config(epochs=3, lr=0.05, warmup_epochs=0, linear_weight=0.0, text_members=1)
    result = train_mapping(data["tt"], data["ti"], data["vt"], data["vi"], config, progress=False)
    best = max(result.history, key=lambda h: (h.val_r10, h.val_mrr))
    assert result.best_epoch == best.epoch
    model = result.model
    again = pooled_metrics(model.embed_text(data["vt"]), model.embed_image(data["vi"]), pool=500, draws=1)
    assert again["text_to_image"]["R@10"] == best.val_r10
    assert again["text_to_image"]["MRR"] == pytest.approx(best.val_mrr)


def test_early_stopping_when_validation_cannot_improve(
    data: dict[str, np.ndarray], caplog: pytest.LogCaptureFixture
) -> None:
    # Identical validation rows: every score ties, so validation metrics never change.
    vt = np.repeat(data["vt"][:1], 20, axis=0)
    vi = np.repeat(data["vi"][:1], 20, axis=0)
    config = small_config(epochs=10, patience=2, arch="mlp", init="random")
    with captured_log(caplog, "toolkit.mapping.train"):
        result = train_mapping(data["tt"][:300], data["ti"][:300], vt, vi, config, progress=False)
    assert len(result.history) == 3 and result.best_epoch == 1 and result.stopped_early
    assert any("early stop" in r.getMessage() for r in caplog.records)


def test_training_is_deterministic(data: dict[str, np.ndarray]) -> None:
    tt, ti = data["tt"][:400], data["ti"][:400]
    groups = [f"r{i // 3}" for i in range(400)]

    def run(seed: int) -> dict[str, torch.Tensor]:
        config = small_config(epochs=2, seed=seed, loss="triplet")
        return train_mapping(tt, ti, None, None, config, groups, progress=False).model.state_dict()

    a, b, c = run(0), run(0), run(1)
    assert all(torch.equal(a[k], b[k]) for k in a)
    first = "text.members.0.net.0.weight"  # the default ensemble's first text tower
    assert not torch.equal(a[first], c[first])


def test_without_validation_last_epoch_is_kept(data: dict[str, np.ndarray]) -> None:
    config = small_config(epochs=2, norm="batch", activation="relu")
    result = train_mapping(data["tt"][:129], data["ti"][:129], None, None, config, progress=False)
    assert result.best_epoch == 2 and result.history[-1].val_r10 is None  # 129 = 2 x 64 + a lone pair


def test_bad_training_inputs_are_refused(data: dict[str, np.ndarray]) -> None:
    tt, ti = data["tt"][:50], data["ti"][:50]
    with pytest.raises(ValueError, match="50 rows but image has 49"):
        train_mapping(tt, ti[:49], None, None, small_config(), progress=False)
    bad = tt.copy()
    bad[17, 3] = np.nan
    with pytest.raises(ValueError, match="row 17"):
        train_mapping(bad, ti, None, None, small_config(), progress=False)
    with pytest.raises(ValueError, match="both"):
        train_mapping(tt, ti, tt, None, small_config(), progress=False)
    with pytest.raises(ValueError, match="3 labels for 50"):
        train_mapping(tt, ti, None, None, small_config(), ["a", "b", "c"], progress=False)
    with pytest.raises(ValueError, match="loss"):
        MappingConfig(loss="contrastive")


def test_warmup_cosine_schedule() -> None:
    f = warmup_cosine(total_steps=110, warmup_steps=10)
    assert f(0) == pytest.approx(0.1) and f(9) == pytest.approx(1.0)
    assert f(10) == pytest.approx(1.0) and f(60) == pytest.approx(0.5) and f(110) == pytest.approx(0.0)
    assert warmup_cosine(10, 0)(0) == pytest.approx(1.0)


def test_split_pairs_is_the_seeded_hash_split_by_recipe() -> None:
    ids = [f"r{r}:{p}" for r in range(60) for p in range(4)]
    pairs = Pairs(ids, np.zeros((len(ids), 2)), np.zeros((len(ids), 3)), "w", "e")
    parts = split_pairs(pairs, split_seed=3)
    recipes = {name: {i.split(":")[0] for i in part.ids} for name, part in parts.items()}
    assert all(split_of(r, seed=3) == name for name, rs in recipes.items() for r in rs)
    assert not recipes["train"] & recipes["val"] and not recipes["val"] & recipes["test"]
    assert sorted(i for part in parts.values() for i in part.ids) == sorted(ids)
    assert all(len(part.ids) == 4 * len(recipes[name]) for name, part in parts.items())
    assert split_pairs(pairs, split_seed=3)["val"].ids == parts["val"].ids
    assert split_pairs(pairs, split_seed=4)["val"].ids != parts["val"].ids


def _write_sets(
    root: Path, n: int, seed: int, w2v: str = "w2v-aaaa", enc: str = "enc-bbbb"
) -> tuple[str, str]:
    text, image = synthetic_pairs(n, seed)
    ids = [f"{seed}-{i // 2}:{i % 2}" for i in range(n)]  # two steps per recipe
    text_dir, image_dir = root / f"text{seed}", root / f"image{seed}"
    save_vector_set(text_dir, ids, text, {"word2vec_fingerprint": w2v})
    # the image set lacks one id and has an extra one: only shared ids are paired
    save_vector_set(
        image_dir, ids[1:] + ["x:0"], np.vstack([image[1:], image[:1]]), {"encoder_fingerprint": enc}
    )
    return str(text_dir), str(image_dir)


def test_cli_train_and_evaluate(tmp_path: Path) -> None:
    text_dir, image_dir = _write_sets(tmp_path, 1200, seed=1)
    out = tmp_path / "mapping"
    args = [text_dir, image_dir, str(out), "--dim", "32", "--epochs", "3", "--batch-size", "64", "--json"]
    args += ["--text-tower", "mean"]  # synthetic vectors: no Word2Vec model, no tokens
    res = CliRunner().invoke(train_mapping_cmd, [*args, "--loss", "triplet", "--quiet"])
    assert res.exit_code == 0, res.output
    report = json.loads(res.output)
    assert report["train_pairs"] + report["val_pairs"] + report["test_pairs_left_out"] == 1199
    assert 0 < report["test_pairs_left_out"] < report["val_pairs"] * 2 < report["train_pairs"]
    assert report["fingerprints"] == {"word2vec": "w2v-aaaa", "encoder": "enc-bbbb"}
    assert len(report["history"]) == 3
    loaded = load_mapping(out, expected={"word2vec": "w2v-aaaa", "encoder": "enc-bbbb"})
    assert loaded.config.loss == "triplet" and loaded.fingerprint == report["fingerprint"]

    again = CliRunner().invoke(train_mapping_cmd, args)
    assert again.exit_code != 0 and "--overwrite" in again.output

    eval_text, eval_image = _write_sets(tmp_path, 400, seed=2)
    res = CliRunner().invoke(
        evaluate_vectors_cmd, [str(out), eval_text, eval_image, "--pool", "200", "--json"]
    )
    assert res.exit_code == 0, res.output
    results = json.loads(res.output)["results"]
    mapped = results["mapping"]["text_to_image"]["R@10"]
    assert mapped >= 3 * results["random towers"]["text_to_image"]["R@10"]
    assert results["chance"]["text_to_image"]["R@10"] == pytest.approx(10 / 200)
    assert mapped > 5 * results["chance"]["text_to_image"]["R@10"]

    res = CliRunner().invoke(evaluate_vectors_cmd, [str(out), eval_text, eval_image, "--full"])
    assert res.exit_code == 0, res.output
    assert "full set of 399 pairs" in res.output and "random towers" in res.output and "chance" in res.output


def test_cli_refuses_vectors_from_other_models(tmp_path: Path) -> None:
    text_dir, image_dir = _write_sets(tmp_path, 300, seed=1)
    out = tmp_path / "mapping"
    res = CliRunner().invoke(
        train_mapping_cmd, [text_dir, image_dir, str(out), "--epochs", "1", "--quiet", "--text-tower", "mean"]
    )
    assert res.exit_code == 0, res.output
    other_text, other_image = _write_sets(tmp_path, 100, seed=2, w2v="w2v-cccc")
    res = CliRunner().invoke(evaluate_vectors_cmd, [str(out), other_text, other_image])
    assert res.exit_code == 2
    assert (
        "word2vec fingerprint mismatch" in res.output
        and "w2v-aaaa" in res.output
        and "w2v-cccc" in res.output
    )

    res = CliRunner().invoke(
        train_mapping_cmd,
        [text_dir, image_dir, str(tmp_path / "m2"), "--val-text", other_text, "--val-image", other_image]
        + ["--text-tower", "mean"],
    )
    assert res.exit_code == 2 and "word2vec fingerprint mismatch" in res.output
    res = CliRunner().invoke(
        train_mapping_cmd, [text_dir, image_dir, str(tmp_path / "m3"), "--val-text", text_dir]
    )
    assert res.exit_code != 0 and "both --val-text and --val-image" in res.output


def test_cli_names_bad_vectors(tmp_path: Path) -> None:
    text, image = synthetic_pairs(10, seed=3)
    text[4, 0] = np.inf
    ids = [f"r{i}:0" for i in range(10)]
    save_vector_set(tmp_path / "t", ids, text, {"word2vec_fingerprint": "w"})
    save_vector_set(tmp_path / "i", ids, image, {})
    res = CliRunner().invoke(
        train_mapping_cmd,
        [str(tmp_path / "t"), str(tmp_path / "i"), str(tmp_path / "m"), "--text-tower", "mean"],
    )
    assert res.exit_code == 2 and "encoder_fingerprint" in res.output
    save_vector_set(tmp_path / "i", ids, image, {"encoder_fingerprint": "e"})
    res = CliRunner().invoke(
        train_mapping_cmd,
        [str(tmp_path / "t"), str(tmp_path / "i"), str(tmp_path / "m"), "--text-tower", "mean"],
    )
    assert res.exit_code == 2 and "r4:0" in res.output and "NaN or infinite" in res.output


def test_cca_start_beats_chance_and_is_not_below_the_linear_baseline(
    data: dict[str, np.ndarray],
) -> None:
    """Residual towers start from the regularised CCA and keep it unless validation improves on it."""
    from toolkit.mapping.cca import fit_cca

    config = small_config(arch="residual", init="cca")
    result = train_mapping(data["tt"], data["ti"], data["vt"], data["vi"], config, progress=False)
    model = result.model
    r10 = pooled_metrics(model.embed_text(data["vt"]), model.embed_image(data["vi"]), pool=500, draws=1)
    stats = model.get_input_stats()
    t = (data["tt"] - stats["text_mean"]) / stats["text_std"]
    i = (data["ti"] - stats["image_mean"]) / stats["image_std"]
    plain = fit_cca(t, i, 32, shrinkage=1e-3, power=0.0)  # a plain linear CCA on the same pairs
    vt = (data["vt"] - stats["text_mean"]) / stats["text_std"] @ plain.text_weight.T
    vi = (data["vi"] - stats["image_mean"]) / stats["image_std"] @ plain.image_weight.T
    linear = pooled_metrics(vt, vi, pool=500, draws=1)["text_to_image"]["R@10"]
    model_r10 = r10["text_to_image"]["R@10"]
    assert model_r10 >= 10 * chance_metrics(500)["R@10"]
    assert model_r10 >= linear
    assert result.best_epoch >= 0 and model.arch()["arch"] == "residual"


def test_group_codes_of_labels_and_of_codes_agree() -> None:
    import numpy as np

    from toolkit.mapping.train import group_codes

    codes = group_codes(["r2", "r1", "r2", "r3"], 4)
    assert codes.tolist() == [0, 1, 0, 2]
    assert group_codes(codes, 4) is codes or np.array_equal(group_codes(codes, 4), codes)
    with pytest.raises(ValueError, match="3 labels for 4 pairs"):
        group_codes(codes[:3], 4)
