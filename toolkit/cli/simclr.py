"""``jrs simclr`` (self-supervised fine-tuning of an image backbone) and ``jrs evaluate-images``."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import click

from toolkit.cli.common import (
    emit,
    json_option,
    progress_enabled,
    quiet_option,
    refuse_model_dir,
    user_errors,
)
from toolkit.cli.options import default_from
from toolkit.device import DEFAULT_DEVICE, DEVICE_HELP


def _where_rejects(rejects_path: Path | None) -> str:
    return f"see {rejects_path}" if rejects_path else "listed above"


def _check_photos(
    items: Sequence[tuple[str, Path]], split: str, root: Path, image_rejects: int, rejects_path: Path | None
) -> None:
    """A clear error when the split has fewer than the 2 photos SimCLR needs."""
    if len(items) >= 2:
        return
    from toolkit.errors import ConfigError

    why = (
        f"; {image_rejects} photos of the dataset were rejected as missing or unsafe ({_where_rejects(rejects_path)})"
        if image_rejects
        else ""
    )
    hint = " or --split all" if split == "train" else ""
    raise ConfigError(
        f"SimCLR needs at least 2 photos: the {split} split of {root} has {len(items)}{why}; add photos{hint}"
    )


def _select(
    items: Sequence[tuple[str, Path]], max_photos: int | None, seed: int
) -> Sequence[tuple[str, Path]]:
    if max_photos is None or len(items) <= max_photos:
        return items
    import numpy as np

    keep = np.sort(np.random.default_rng(seed).choice(len(items), size=max_photos, replace=False))
    return [items[int(i)] for i in keep]


@click.command("simclr")
@click.argument("dataset_root", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.argument("out_dir", type=click.Path(file_okay=False, path_type=Path))
@click.option(
    "--arch", help="Backbone: resnet18, resnet50, efficientnet-lite0 [resnet50 with a GPU, else resnet18]."
)
@default_from(
    "toolkit.image.simclr_config:SimCLRConfig.init",
    "--init",
    help="Starting weights: auto (ImageNet when available offline, else random), imagenet, random or a state_dict.",
)
@default_from(
    "toolkit.image.simclr_config:SimCLRConfig.image_size",
    "--image-size",
    type=click.IntRange(min=16),
    help="Crop side.",
)
@default_from("toolkit.image.simclr_config:SimCLRConfig.epochs", "--epochs", type=click.IntRange(min=1))
@default_from(
    "toolkit.image.simclr_config:SimCLRConfig.batch_size",
    "--batch-size",
    type=click.IntRange(min=2),
    help="Effective batch (the in-batch negatives), whatever --chunk-size.",
)
@default_from(
    "toolkit.image.simclr_config:SimCLRConfig.chunk_size",
    "--chunk-size",
    type=click.IntRange(min=2),
    help="Images per forward pass (GradCache accumulation); bounds memory. At least 2: batch-norm "
    "needs two images.",
)
@default_from(
    "toolkit.image.simclr_config:SimCLRConfig.lr", "--lr", type=click.FloatRange(min=0, min_open=True)
)
@default_from(
    "toolkit.image.simclr_config:SimCLRConfig.weight_decay", "--weight-decay", type=click.FloatRange(min=0)
)
@default_from(
    "toolkit.image.simclr_config:SimCLRConfig.temperature",
    "--temperature",
    type=click.FloatRange(min=0, min_open=True),
)
@default_from("toolkit.image.simclr_config:SimCLRConfig.proj_dim", "--proj-dim", type=click.IntRange(min=1))
@click.option(
    "--max-steps", type=click.IntRange(min=1), help="Cap the schedule at this many optimiser steps."
)
@click.option(
    "--split",
    type=click.Choice(["train", "all"]),
    default="train",
    show_default=True,
    help="Photos to learn from: the train split keeps val/test held out for `jrs evaluate-images`.",
)
@click.option("--split-seed", default=0, show_default=True)
@click.option("--max-photos", type=click.IntRange(min=2), help="Use a seeded sample of this many photos.")
@click.option("--device", default=DEFAULT_DEVICE, show_default=True, help=DEVICE_HELP)
@default_from(
    "toolkit.image.simclr_config:SimCLRConfig.num_workers",
    "--workers",
    type=click.IntRange(min=0),
    help="DataLoader processes.",
)
@click.option("--threads", type=click.IntRange(min=1), help="torch CPU threads [torch default].")
@default_from(
    "toolkit.image.simclr_config:SimCLRConfig.checkpoint_every",
    "--checkpoint-every",
    type=click.IntRange(min=1),
    help="Steps.",
)
@default_from("toolkit.image.simclr_config:SimCLRConfig.seed", "--seed", type=int)
@click.option(
    "--rejects", "rejects_path", type=click.Path(dir_okay=False, path_type=Path), help="Append rejects."
)
@click.option("--overwrite", is_flag=True, help="Discard an earlier run in OUT_DIR instead of resuming it.")
@json_option
@quiet_option
@user_errors
def simclr_cmd(
    dataset_root: Path,
    out_dir: Path,
    arch: str | None,
    init: str,
    image_size: int,
    epochs: int,
    batch_size: int,
    chunk_size: int,
    lr: float,
    weight_decay: float,
    temperature: float,
    proj_dim: int,
    max_steps: int | None,
    split: str,
    split_seed: int,
    max_photos: int | None,
    device: str,
    workers: int,
    threads: int | None,
    checkpoint_every: int,
    seed: int,
    rejects_path: Path | None,
    overwrite: bool,
    as_json: bool,
    quiet: bool,
) -> None:
    """Fine-tune an image backbone on DATASET_ROOT's own photos with SimCLR into OUT_DIR.

    Writes OUT_DIR/backbone.pt (use it with `jrs build ... --encoder simclr --weights OUT_DIR`),
    checkpoint.pt (an interrupted run resumes), simclr.json and loss.png. CPU runs are practical at
    small scale (64 px, a few epochs); the same command uses CUDA when present.
    """
    import torch

    from toolkit.cli.image import EchoRejects
    from toolkit.image.simclr import SimCLRConfig, default_arch, train_simclr
    from toolkit.stages.read import ReadOptions, photo_items, read_steps

    refuse_model_dir(out_dir, "simclr")
    if threads is not None:
        torch.set_num_threads(threads)
    config = SimCLRConfig(
        arch=arch or default_arch(),
        init=init,
        image_size=image_size,
        epochs=epochs,
        batch_size=batch_size,
        chunk_size=chunk_size,
        lr=lr,
        weight_decay=weight_decay,
        temperature=temperature,
        proj_dim=proj_dim,
        max_steps=max_steps,
        seed=seed,
        device=device,
        num_workers=workers,
        checkpoint_every=checkpoint_every,
        progress=progress_enabled(quiet),
    )
    config.check()  # before reading the photos
    with EchoRejects(rejects_path) as rejects:
        items: Sequence[tuple[str, Path]] = photo_items(
            read_steps(dataset_root, rejects, ReadOptions(split_seed=split_seed)), split
        )
        _check_photos(items, split, dataset_root, rejects.by_stage["image"], rejects_path)
        items = _select(items, max_photos, seed)
        result = train_simclr(items, config, out_dir, rejects=rejects, overwrite=overwrite)
    out = result.to_dict()

    def text() -> str:
        state = "already finished" if result.already_done else f"{result.seconds:.0f}s on {result.device}"
        losses = " -> ".join(f"{x:.3f}" for x in result.epoch_losses)
        rejected = f" ({result.rejected} rejected: {_where_rejects(rejects_path)})" if result.rejected else ""
        return (
            f"SimCLR {result.arch}: {result.steps} steps on {result.images} photos{rejected} [{state}]\n"
            f"NT-Xent per epoch: {losses}\n"
            f"backbone: {result.backbone} (encoder fingerprint {result.encoder_fingerprint}, "
            f"base {result.base_encoder_fingerprint})\n"
            f"loss curve: {result.loss_curve}\n"
            f"use it: jrs build ROOT MODEL --encoder simclr --weights {result.out_dir}"
        )

    emit(out, as_json, text)


@click.command("evaluate-images")
@click.argument("dataset_root", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option(
    "--encoder",
    "-e",
    "encoders",
    multiple=True,
    required=True,
    help="[LABEL=]NAME[:WEIGHTS], repeatable, e.g. -e efficientnet-lite0:imagenet -e tuned=simclr:runs/lite0.",
)
@click.option("--k", default=10, show_default=True, type=click.IntRange(min=1))
@click.option(
    "--split",
    type=click.Choice(["heldout", "test", "val", "train", "all"]),
    default="heldout",
    show_default=True,
    help="heldout = val + test (the photos `jrs simclr` did not train on).",
)
@click.option("--split-seed", default=0, show_default=True)
@click.option(
    "--criterion",
    "criteria",
    multiple=True,
    help="Relevance: tag prefixes joined by |, repeatable [dish, main, dish|main].",
)
@click.option(
    "--image-size", type=click.IntRange(min=1), help="Same crop for every encoder (compare like with like)."
)
@click.option("--batch-size", default=32, show_default=True, type=click.IntRange(min=1))
@click.option("--device", default=DEFAULT_DEVICE, show_default=True, help=DEVICE_HELP)
@click.option("--threads", type=click.IntRange(min=1), help="torch CPU threads [torch default].")
@click.option(
    "--cache-dir", type=click.Path(file_okay=False, path_type=Path), help="Keep features here for reuse."
)
@json_option
@quiet_option
@user_errors
def evaluate_images_cmd(
    dataset_root: Path,
    encoders: tuple[str, ...],
    k: int,
    split: str,
    split_seed: int,
    criteria: tuple[str, ...],
    image_size: int | None,
    batch_size: int,
    device: str,
    threads: int | None,
    cache_dir: Path | None,
    as_json: bool,
    quiet: bool,
) -> None:
    """Image->image precision@k of each encoder on DATASET_ROOT's held-out photos.

    A neighbour from another recipe is relevant when it shares the query recipe's dish: or main:
    tag; chance level is printed below the table.
    """
    from toolkit.evaluation.image_retrieval import (
        DEFAULT_CRITERIA,
        EncoderSpec,
        evaluate_image_encoders,
        results_table,
    )

    if threads is not None:
        import torch

        torch.set_num_threads(threads)
    specs = [EncoderSpec.parse(e) for e in encoders]
    report: dict[str, Any] = evaluate_image_encoders(
        dataset_root,
        specs,
        split=split,
        split_seed=split_seed,
        k=k,
        criteria=criteria or DEFAULT_CRITERIA,
        image_size=image_size,
        batch_size=batch_size,
        device=device,
        cache_dir=cache_dir,
        progress=progress_enabled(quiet),
    )
    emit(report, as_json, lambda: results_table(report))


commands = [simclr_cmd, evaluate_images_cmd]
