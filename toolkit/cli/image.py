"""``jrs embed-images`` and ``jrs encoders``: image features for a dataset, and the encoder list."""

from __future__ import annotations

import json
from pathlib import Path

import click

from toolkit.cli.common import progress_enabled, quiet_option, refuse_model_dir, user_errors
from toolkit.device import DEVICE_HELP
from toolkit.rejects import Reject, RejectsWriter
from toolkit.stages.images import ImageOptions

#: ``--backend`` of ``embed-images`` and ``build``.
backend_option = click.option(
    "--backend",
    type=click.Choice(["auto", "torch", "onnxruntime", "openvino"]),
    default=ImageOptions.backend,
    help="What the CNN runs on [$JRS_IMAGE_BACKEND or auto: the fastest installed backend verified "
    "within cosine 0.999 of torch fp32; CUDA and plug-in encoders: torch].",
)


class EchoRejects(RejectsWriter):
    """A rejects file, or (without one) warnings on stderr; counts either way."""

    def write(self, reject: Reject) -> None:
        super().write(reject)
        if self.path is None:
            click.echo(f"rejected {reject}", err=True)


@click.command("embed-images")
@click.argument("dataset_root", type=click.Path(path_type=Path))
@click.argument("out_dir", type=click.Path(file_okay=False, path_type=Path))
@click.option(
    "--encoder",
    "encoder_name",
    default=ImageOptions.encoder,
    show_default=True,
    help="Encoder (see `jrs encoders`).",
)
@click.option(
    "--weights",
    default=ImageOptions.weights,
    show_default=True,
    help="auto (cached ResNet ImageNet weights, else EfficientNet-Lite0's shipped ones; no network), "
    "imagenet, random, or a state_dict file.",
)
@click.option("--batch-size", default=ImageOptions.batch_size, show_default=True, type=click.IntRange(min=1))
@click.option(
    "--workers",
    type=click.IntRange(min=0),
    help="DataLoader processes decoding photos; 0 = in the main process "
    "[0 on up to 2 cores, 1 up to 4, then cores/4 (max 4)].",
)
@click.option(
    "--threads", type=click.IntRange(min=1), help="torch threads for the forward pass [torch default]."
)
@click.option(
    "--malloc-tuning/--no-malloc-tuning",
    default=True,
    show_default=True,
    help="Keep big tensors on the heap (glibc): avoids page-faulting every forward pass.",
)
@click.option(
    "--image-size", type=click.IntRange(min=1), help="CNN crop size (224) or pixels grid side (16)."
)
@click.option("--seed", type=int, help="Seed for --weights random [0].")
@click.option("--device", default=ImageOptions.device, show_default=True, help=DEVICE_HELP)
@click.option(
    "--shard",
    default=None,
    help="I/N: encode only shard I of N (a stable hash of the step id); join the shards with merge-vectors.",
)
@backend_option
@click.option(
    "--max-pixels",
    default=ImageOptions.max_pixels,
    show_default=True,
    type=click.IntRange(min=1),
    help="Refuse photos with more pixels than this (decompression bombs).",
)
@click.option(
    "--rejects",
    "rejects_path",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Append rejects (JSONL).",
)
@click.option("--overwrite", is_flag=True, help="Discard earlier or unfinished output in OUT_DIR.")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
@quiet_option
@user_errors
def embed_images_cmd(
    dataset_root: Path,
    out_dir: Path,
    encoder_name: str,
    weights: str,
    batch_size: int,
    workers: int | None,
    threads: int | None,
    malloc_tuning: bool,
    image_size: int | None,
    seed: int | None,
    device: str,
    shard: str | None,
    backend: str | None,
    max_pixels: int,
    rejects_path: Path | None,
    overwrite: bool,
    as_json: bool,
    quiet: bool,
) -> None:
    """Encode every step photo of DATASET_ROOT into an image vector set in OUT_DIR.

    Resumes an interrupted run with the same photos and encoder; rejected photos are reported
    with their step id (stage "image").
    """
    import torch

    from toolkit.image.features import default_num_workers, tune_malloc_for_inference
    from toolkit.stages.images import write_image_features
    from toolkit.stages.read import check_dataset_root, photo_items, read_steps

    options = ImageOptions(
        encoder=encoder_name,
        weights=weights,
        image_size=image_size,
        seed=seed,
        device=device,
        backend=backend,
        batch_size=batch_size,
        workers=default_num_workers() if workers is None else workers,
        max_pixels=max_pixels,
        overwrite=overwrite,
        shard=shard,
    )
    check_dataset_root(dataset_root)
    refuse_model_dir(out_dir, "embed-images")
    if malloc_tuning:
        tune_malloc_for_inference()
    if threads is not None:
        torch.set_num_threads(threads)
    with EchoRejects(rejects_path) as rejects:
        items = photo_items(read_steps(dataset_root, rejects))
        stage = write_image_features(
            items, out_dir, options, rejects=rejects, progress=progress_enabled(quiet)
        )
        result, encoder = stage.features, stage.encoder
        message = getattr(encoder, "message", "")
        total_rejects = rejects.count
    workers = options.workers
    # what the set was made with (a finished set found again keeps its own backend), else this run's encoder
    made = _written_meta(out_dir)
    out = {
        **result.to_dict(),
        "workers": workers,
        "encoder_weights": getattr(encoder, "weights_source", ""),
        "encoder_message": message,
        # the encoder's backend is resolved (a graph exported and verified) only when the set does not say
        "encoder_backend": made["encoder_backend"]
        if "encoder_backend" in made
        else getattr(encoder, "backend", "own"),
        "encoder_precision": (
            made["encoder_precision"] if "encoder_precision" in made else getattr(encoder, "precision", None)
        ),
        "rejects_total": total_rejects,
        "rejects_file": str(rejects_path) if rejects_path else None,
    }
    if as_json:
        click.echo(json.dumps(out, ensure_ascii=False, indent=2))
        return
    state = "already up to date" if result.already_done else f"{result.seconds:.1f}s"
    click.echo(
        f"{result.encoded}/{result.total} photos encoded with {result.encoder} "
        f"({out['encoder_weights']}, dim {result.dim}) into {out_dir} [{state}]"
    )
    if total_rejects:
        where = f" (see {rejects_path})" if rejects_path else ""
        click.echo(f"{total_rejects} rejects{where}")


@click.command("encoders")
@click.option("--json", "as_json", is_flag=True, help="Print the list as JSON.")
def encoders_cmd(as_json: bool) -> None:
    """List the image encoders: built-in and plug-ins (entry-point group jrecipe_search.encoders)."""
    from toolkit.image.backbones import OFFLINE_ENCODER, cached_imagenet_weights, torch_checkpoint_dir
    from toolkit.image.encoders import DEFAULT_ENCODER, ENTRY_POINT_GROUP, describe_encoders

    infos = describe_encoders()
    cached = {arch: cached_imagenet_weights(arch) for arch in ("resnet50", "resnet18")}
    auto = (
        "resnet50 (cached ImageNet weights)" if cached["resnet50"] else f"{OFFLINE_ENCODER} (shipped weights)"
    )
    if as_json:
        payload = {
            "default": DEFAULT_ENCODER,
            "entry_point_group": ENTRY_POINT_GROUP,
            "weights_cache": str(torch_checkpoint_dir()),
            "cached_imagenet": {k: str(v) if v else None for k, v in cached.items()},
            "default_auto_resolves_to": auto,
            "encoders": [{"name": i.name, "origin": i.origin, "description": i.description} for i in infos],
        }
        click.echo(json.dumps(payload, ensure_ascii=False, indent=2))
        return
    width = max(len(i.name) for i in infos)
    for i in infos:
        mark = "*" if i.name == DEFAULT_ENCODER else " "
        click.echo(f"{mark} {i.name:<{width}}  {i.origin:<10}  {i.description}")
    click.echo(f"(* default; --weights auto resolves to {auto}; weights cache {torch_checkpoint_dir()})")


commands = [embed_images_cmd, encoders_cmd]


def _written_meta(out_dir: Path) -> dict:
    from toolkit.vectorset import META

    try:
        return json.loads((out_dir / META).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
