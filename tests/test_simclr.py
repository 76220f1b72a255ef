"""SimCLR fine-tuning on sample photos: the loss falls, outputs and fingerprints, resume and refusal,
and the fine-tuned backbone used end to end (features -> mapping -> index -> search by photo)."""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from elasticsearch import Elasticsearch
from PIL import Image

from toolkit.cli.main import cli
from toolkit.errors import ConfigError
from toolkit.image.augment import SimCLRAugment
from toolkit.image.encoders import create_encoder
from toolkit.image.simclr import (
    SimCLRConfig,
    SimCLRStateError,
    learning_rate,
    load_result,
    train_simclr,
)
from toolkit.rejects import RejectsWriter
from toolkit.stages.read import photo_items, read_steps

#: Tiny but real: ResNet-18 from random weights on 8 sample photos at 16 px, 10 steps of batch 8 (one chunk
#: per view), mild augmentation so that a few steps show the loss falling.
CONFIG = dict(
    arch="resnet18",
    init="random",
    image_size=16,
    epochs=10,
    batch_size=8,
    chunk_size=8,
    lr=1e-3,
    warmup_fraction=0.0,
    crop_scale=(0.5, 1.0),
    jitter=0.3,
    blur_p=0.0,
    progress=False,
)


@pytest.fixture(scope="module", autouse=True)
def one_thread() -> Iterator[None]:
    """Tiny models gain nothing from threads, and on a shared 2-core machine spinning threads cost a lot."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _photos(root: Path, n: int, split: str = "train") -> list[tuple[str, Path]]:
    with RejectsWriter(None) as rejects:
        steps = read_steps(root, rejects)
    return photo_items(steps, split)[:n]


@pytest.fixture(scope="module")
def run_dir(sample_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("simclr")
    train_simclr(_photos(sample_root, 8), SimCLRConfig(**CONFIG), out)
    return out


def test_augment_gives_two_different_views_of_the_requested_size() -> None:
    img = Image.fromarray(np.random.default_rng(0).integers(0, 256, (50, 70, 3), dtype=np.uint8))
    a, b = SimCLRAugment(24)(img)
    assert a.shape == b.shape == (3, 24, 24) and a.dtype == torch.float32
    assert not torch.equal(a, b)
    with pytest.raises(ValueError, match="crop_scale"):
        SimCLRAugment(24, crop_scale=(0.5, 0.2))


def test_learning_rate_warms_up_then_decays() -> None:
    lrs = [learning_rate(s, 100, 1.0, 0.1) for s in range(100)]
    assert lrs[0] == pytest.approx(0.1) and lrs[9] == pytest.approx(1.0)
    assert all(a >= b for a, b in zip(lrs[9:], lrs[10:], strict=False)) and lrs[-1] < 0.01


def test_fine_tuning_lowers_the_loss_and_writes_its_outputs(run_dir: Path) -> None:
    result = load_result(run_dir)
    summary = json.loads((run_dir / "simclr.json").read_text(encoding="utf-8"))
    losses = summary["losses"]
    assert result.steps == len(losses) == 10 and all(math.isfinite(x) for x in losses)
    # NT-Xent of 8 pairs starts near ln(15) (chance among 15 candidates) and falls as views get matched
    assert 2.0 < losses[0] < 3.2
    assert np.mean(losses[-3:]) < np.mean(losses[:3]) - 0.2
    assert result.epoch_losses[-1] < result.epoch_losses[0]
    assert (run_dir / "loss.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert (run_dir / "checkpoint.pt").is_file() and result.backbone == run_dir / "backbone.pt"
    assert result.encoder_fingerprint != result.base_encoder_fingerprint


def test_the_fine_tuned_backbone_is_an_encoder_with_its_own_fingerprint(
    run_dir: Path, sample_root: Path
) -> None:
    result = load_result(run_dir)
    tuned = create_encoder("simclr", weights=str(run_dir))  # the run directory: its backbone.pt, 16 px
    same = create_encoder("resnet18", weights=str(run_dir / "backbone.pt"), image_size=16)
    base = create_encoder("resnet18", weights="random", image_size=16)  # the starting point (seed 0)
    assert tuned.name == "simclr" and tuned.dim == 512
    assert tuned.fingerprint == same.fingerprint == result.encoder_fingerprint
    assert base.fingerprint == result.base_encoder_fingerprint != tuned.fingerprint
    imgs = [Image.open(p).convert("RGB") for _, p in _photos(sample_root, 4)]
    x = torch.stack([tuned.preprocess(i) for i in imgs])
    assert np.array_equal(tuned.encode_batch(x), same.encode_batch(x))
    assert not np.allclose(tuned.encode_batch(x), base.encode_batch(x))
    with pytest.raises(ConfigError, match="needs --weights"):
        create_encoder("simclr")
    with pytest.raises(ConfigError, match="not a backbone written by"):
        create_encoder("simclr", weights=str(run_dir / "checkpoint.pt"))


def test_finished_run_is_reused_resumed_or_refused(
    run_dir: Path, sample_root: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    items = _photos(sample_root, 8)
    again = train_simclr(items, SimCLRConfig(**CONFIG), run_dir)
    assert again.already_done and again.steps == 10
    with pytest.raises(SimCLRStateError, match="other photos, configuration"):
        train_simclr(items, SimCLRConfig(**{**CONFIG, "temperature": 0.2}), run_dir)
    with pytest.raises(SimCLRStateError):
        train_simclr(_photos(sample_root, 9), SimCLRConfig(**CONFIG), run_dir)
    # Lose the final files: the checkpoint alone brings the same backbone back without training again.
    copy = tmp_path / "copy"
    copy.mkdir()
    (copy / "checkpoint.pt").write_bytes((run_dir / "checkpoint.pt").read_bytes())
    with caplog.at_level(logging.INFO, logger="toolkit.image.simclr"):
        resumed = train_simclr(items, SimCLRConfig(**CONFIG), copy)
    assert resumed.resumed_from == 10 and any("resuming" in r.getMessage() for r in caplog.records)
    assert resumed.encoder_fingerprint == load_result(run_dir).encoder_fingerprint


@pytest.mark.parametrize("name", ["simclr.json", "checkpoint.pt"])
def test_a_damaged_run_file_is_refused_by_name(
    run_dir: Path, sample_root: Path, tmp_path: Path, name: str
) -> None:
    """A summary or checkpoint cut short (a full disk, a copy interrupted) is one clear error, not a traceback."""
    copy = tmp_path / "copy"
    copy.mkdir()
    (copy / name).write_bytes((run_dir / name).read_bytes()[:40])
    with pytest.raises(SimCLRStateError, match=rf"{name} is damaged .*overwrite"):
        train_simclr(_photos(sample_root, 8), SimCLRConfig(**CONFIG), copy)


def test_bad_settings_are_named(sample_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    items = _photos(sample_root, 4)
    with monkeypatch.context() as env:  # refused before training, not after it
        env.setenv("JRS_IMAGE_BACKEND", "bogus")
        with pytest.raises(ConfigError, match="unknown image backend 'bogus'"):
            train_simclr(items, SimCLRConfig(**CONFIG), tmp_path / "bogus")
    assert not (tmp_path / "bogus").exists()
    with pytest.raises(ConfigError, match="cannot fine-tune 'pixels'"):
        train_simclr(items, SimCLRConfig(**{**CONFIG, "arch": "pixels"}), tmp_path)
    with pytest.raises(ConfigError, match="at least 2 photos"):
        train_simclr(items[:1], SimCLRConfig(**CONFIG), tmp_path)
    broken = [*items[:3], ("r9:1", tmp_path / "missing.jpg")]
    with RejectsWriter(tmp_path / "rejects.jsonl") as rejects:
        result = train_simclr(
            broken,
            SimCLRConfig(**{**CONFIG, "epochs": 1, "batch_size": 4}),
            tmp_path / "run",
            rejects=rejects,
        )
    assert result.rejected == 1 and result.images == 3
    assert "r9:1" in (tmp_path / "rejects.jsonl").read_text(encoding="utf-8")


def _tiny_run_args(root: Path, out: Path, *extra: str) -> list[str]:
    """`jrs simclr` arguments of a one-epoch run on 16 px photos from a random ResNet-18, then ``extra``."""
    return [
        *("simclr", str(root), str(out), "--arch", "resnet18", "--init", "random"),
        *("--image-size", "16", "--epochs", "1", "--batch-size", "4", "--chunk-size", "2"),
        *extra,
    ]


def test_simclr_command_json(sample_root: Path, tmp_path: Path) -> None:
    args = _tiny_run_args(sample_root, tmp_path / "cli", "--max-photos", "8")
    res = CliRunner().invoke(cli, [*args, "--json", "-q"])
    assert res.exit_code == 0, res.output
    out = json.loads(res.output)
    assert out["steps"] == 2 and out["images"] == 8 and Path(out["backbone"]).is_file()
    bad = CliRunner().invoke(cli, [*args[:-6], "--arch", "vgg", "-q"])
    assert bad.exit_code == 2 and "cannot fine-tune 'vgg'" in bad.output


def test_simclr_refuses_a_model_directory(sample_root: Path, tmp_path: Path) -> None:
    """`jrs simclr data model` dropped backbone.pt, a 138 MB checkpoint.pt and loss.png among a model's files."""
    model = tmp_path / "model"
    model.mkdir()
    (model / "manifest.json").write_text('{"format": "jrs-model"}', encoding="utf-8")
    args = ["simclr", str(sample_root), str(model), "--arch", "resnet18", "--init", "random", "--epochs", "1"]
    res = CliRunner().invoke(
        cli, [*args, "--image-size", "16", "--batch-size", "4", "--max-photos", "4", "-q"]
    )
    assert res.exit_code == 2 and "Traceback" not in res.output, res.output
    assert f"Error: {model} is a model directory (it holds manifest.json): simclr would" in res.output
    assert [p.name for p in model.iterdir()] == ["manifest.json"]


def test_fine_tuned_encoder_end_to_end(
    es: Elasticsearch, index_name: str, sample_root: Path, run_dir: Path, tmp_path: Path
) -> None:
    """simclr encoder -> image features -> two-tower mapping -> index -> search by photo and by text."""
    from toolkit.index.indexer import IndexOptions, index_dataset
    from toolkit.model import SearchModel
    from toolkit.pipeline import BuildOptions, build
    from toolkit.search.engine import Searcher
    from toolkit.search.queries import Filters, KnnParams

    model_dir = tmp_path / "model"
    opts = BuildOptions(
        encoder="simclr", weights=str(run_dir), workers=0, mapping={"epochs": 3}, eval_draws=1, progress=False
    )
    manifest = build(sample_root, model_dir, opts)
    assert manifest["encoder"]["name"] == "simclr"
    assert manifest["encoder"]["fingerprint"] == load_result(run_dir).encoder_fingerprint
    assert manifest["encoder"]["weights"] == str((run_dir / "backbone.pt").resolve())

    result = index_dataset(es, sample_root, model_dir, IndexOptions(alias=index_name))
    assert result["count"] > 0 and result["photos_dropped"] == 0
    es.indices.refresh(index=index_name)
    searcher = Searcher(es, SearchModel.load(model_dir), index_name)
    step_id, photo = _photos(sample_root, 1, split="test")[0]
    hits = searcher.knn(searcher.image_vector(photo), KnnParams(k=5), Filters(), mode="image").hits
    assert hits[0].step_id == step_id  # its own photo, encoded again by the reloaded simclr encoder
    assert searcher.knn(searcher.text_vector("玉ねぎを炒めます。"), KnnParams(k=5), Filters()).hits


def test_a_run_file_that_cannot_be_read_just_now_is_not_called_damaged(tmp_path: Path) -> None:
    """A permission refused or an I/O error says nothing of the checkpoint: advising --overwrite there would
    throw away a good checkpoint's training."""
    import errno

    from toolkit.image.simclr import _damaged

    path = tmp_path / "checkpoint.pt"
    for error in (PermissionError(errno.EACCES, "Permission denied", str(path)), OSError(errno.EIO, "I/O")):
        with pytest.raises(OSError) as caught, _damaged(path):
            raise error
        assert caught.value is error
    with pytest.raises(SimCLRStateError, match="checkpoint.pt is damaged"), _damaged(path):
        raise RuntimeError("PytorchStreamReader failed reading zip archive")


# --- determinism, resume, bad inputs -------------------------------------------------------------------

#: 16 photos in batches of 8: two steps per epoch, so an interrupt can land mid-epoch.
RESUME = {**CONFIG, "epochs": 2, "checkpoint_every": 50}


def _backbone_digest(out: Path) -> str:
    from toolkit.image.backbones import state_dict_digest

    return state_dict_digest(torch.load(out / "backbone.pt", weights_only=True)["state_dict"])


@pytest.fixture(scope="module")
def reference_run(sample_root: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[str, list[float]]:
    """The uninterrupted run of RESUME on 16 photos: its backbone digest and per-step losses."""
    out = tmp_path_factory.mktemp("reference")
    train_simclr(_photos(sample_root, 16), SimCLRConfig(**RESUME), out)
    return _backbone_digest(out), json.loads((out / "simclr.json").read_text(encoding="utf-8"))["losses"]


def test_workers_do_not_change_the_run(
    sample_root: Path, tmp_path: Path, reference_run: tuple[str, list[float]]
) -> None:
    """num_workers is a runtime setting (not in the run fingerprint): the augmentations must not depend on it."""
    train_simclr(_photos(sample_root, 16), SimCLRConfig(**{**RESUME, "num_workers": 1}), tmp_path)
    assert _backbone_digest(tmp_path) == reference_run[0]


@pytest.mark.parametrize("when", ["during the loss", "after the update"])
def test_an_interrupted_run_resumes_to_the_uninterrupted_backbone(
    sample_root: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    reference_run: tuple[str, list[float]],
    when: str,
) -> None:
    """Ctrl-C at step 2 of 4 (mid-epoch), then the same command again: the same backbone and losses as a run
    never interrupted. After the optimiser's update the checkpoint must not count that step as undone."""
    import toolkit.image.simclr as simclr

    calls = {"n": 0}

    def interrupt_second(real):  # the second call raises Ctrl-C, before or after doing its work
        def wrapped(*args, **kwargs):
            calls["n"] += 1
            if calls["n"] == 2 and when == "during the loss":
                raise KeyboardInterrupt
            out = real(*args, **kwargs)
            if calls["n"] == 2:
                raise KeyboardInterrupt
            return out

        return wrapped

    with monkeypatch.context() as patch:
        if when == "during the loss":
            patch.setattr(simclr, "gradcache_backward", interrupt_second(simclr.gradcache_backward))
        else:
            patch.setattr(torch.optim.AdamW, "step", interrupt_second(torch.optim.AdamW.step))
        with pytest.raises(KeyboardInterrupt):
            train_simclr(_photos(sample_root, 16), SimCLRConfig(**RESUME), tmp_path)
    assert not (tmp_path / "backbone.pt").exists()
    train_simclr(_photos(sample_root, 16), SimCLRConfig(**RESUME), tmp_path)
    losses = json.loads((tmp_path / "simclr.json").read_text(encoding="utf-8"))["losses"]
    assert losses == reference_run[1]
    assert _backbone_digest(tmp_path) == reference_run[0]


def test_a_chunk_of_one_image_is_never_run(sample_root: Path, tmp_path: Path) -> None:
    """Batch 5 in chunks of 2 left one image for a last chunk: batch-norm raised 'Expected more than 1 value per
    channel when training' (a traceback). Chunk size 1 is refused up front."""
    cfg = SimCLRConfig(**{**CONFIG, "epochs": 1, "batch_size": 5, "chunk_size": 2})
    result = train_simclr(_photos(sample_root, 5), cfg, tmp_path / "run")
    assert result.steps == 1 and math.isfinite(result.last_loss)
    with pytest.raises(ConfigError, match="chunk_size must be >= 2"):
        train_simclr(_photos(sample_root, 4), SimCLRConfig(**{**CONFIG, "chunk_size": 1}), tmp_path / "one")


def test_no_usable_photo_is_an_error_naming_them(sample_root: Path, tmp_path: Path) -> None:
    """Photos that all fail to decode used to give a 'fine-tuned' backbone trained on 0 photos (NaN losses)."""
    items = []
    for n in range(4):
        junk = tmp_path / f"junk{n}.jpg"
        junk.write_bytes(b"not a photo")
        items.append((f"r9:{n}", junk))
    items.append(_photos(sample_root, 1)[0])
    cfg = SimCLRConfig(**{**CONFIG, "epochs": 1, "batch_size": 5})
    with pytest.raises(ConfigError, match=r"at least 2 usable photos: 4 of the 5 .*r9:0: not an image"):
        train_simclr(items, cfg, tmp_path / "run")
    assert not (tmp_path / "run" / "backbone.pt").exists()


def _small_dataset(root: Path) -> Path:
    from toolkit.data.sample import generate_sample

    generate_sample(root, 6, seed=0, image_size=32)
    return root


def test_simclr_command_reports_rejects_and_bad_settings(tmp_path: Path) -> None:
    root = _small_dataset(tmp_path / "data")
    photo = next(iter(sorted((root / "images").rglob("*.jpg"))))
    photo.unlink()
    base = _tiny_run_args(root, tmp_path / "run", "--split", "all")
    res = CliRunner().invoke(cli, [*base, "-q"])
    assert res.exit_code == 0, res.output
    assert f"images/{photo.parent.name}/{photo.name}" in res.output and "not found" in res.output
    for bad, message in (
        (["--seed", "-1"], "simclr seed must be an integer from 0"),
        (["--chunk-size", "1"], "'--chunk-size': 1 is not in the range x>=2"),
    ):
        res = CliRunner().invoke(cli, [*base, *bad, "-q"])
        assert res.exit_code == 2 and message in res.output and "Traceback" not in res.output, res.output


def test_simclr_command_without_photos_says_why(tmp_path: Path) -> None:
    import shutil

    root = _small_dataset(tmp_path / "data")
    shutil.rmtree(root / "images")
    args = ["simclr", str(root), str(tmp_path / "run"), "--init", "random", "--image-size", "16", "-q"]
    res = CliRunner().invoke(cli, args)
    assert res.exit_code != 0 and "Traceback" not in res.output
    assert f"the train split of {root} has 0; " in res.output and "were rejected as missing" in res.output


def test_the_loss_curve_is_written_atomically(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A plot cut short (full disk, Ctrl-C) must leave the earlier loss.png, not half a PNG."""
    from matplotlib.figure import Figure

    from toolkit.image.simclr import plot_loss

    path = tmp_path / "loss.png"
    assert plot_loss([3.0, 2.5, 2.0, 1.8], 2, path, batch_size=4) == path
    before = path.read_bytes()

    def cut_short(self, fname, **kw):
        Path(fname).write_bytes(b"\x89PNG half")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(Figure, "savefig", cut_short)
    with pytest.raises(OSError):
        plot_loss([3.0, 2.0], 2, path, batch_size=4)
    assert path.read_bytes() == before and [p.name for p in tmp_path.iterdir()] == ["loss.png"]
