"""``jrs build``: all learning stages from a dataset root into a model directory."""

from __future__ import annotations

import json
from pathlib import Path

import click

from toolkit.cli.common import emit, json_option, progress_enabled, quiet_option, user_errors


def _table(result: dict) -> str:
    from toolkit.cli.evaluate import in_memory_table

    return (
        f"model {result['fingerprint']} -> dims {result['dims']}, encoder {result['encoder']['name']}\n"
        + in_memory_table(result["evaluation"])
    )


@click.command("build")
@click.argument("dataset_root", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.argument("model_dir", type=click.Path(file_okay=False, path_type=Path))
@click.option(
    "--encoder",
    default="resnet50",
    show_default=True,
    help="Image encoder (see `jrs encoders`); resnet50 with --weights auto falls back to efficientnet-lite0 offline.",
)
@click.option("--weights", default="auto", show_default=True, help="auto | imagenet | random | PATH.")
@click.option("--image-size", type=int, default=None, help="Input size for the CNN (default: the encoder's).")
@click.option("--batch-size", type=int, default=32, show_default=True)
@click.option("--workers", type=int, default=1, show_default=True, help="DataLoader workers for photos.")
@click.option(
    "--backend",
    type=click.Choice(["auto", "torch", "onnxruntime", "openvino"]),
    default=None,
    help="What the CNN runs on [$JRS_IMAGE_BACKEND or auto: the fastest installed backend verified "
    "within cosine 0.999 of torch fp32].",
)
@click.option("--min-count", type=int, default=2, show_default=True, help="Word2Vec min_count.")
@click.option("--w2v-epochs", type=int, default=20, show_default=True)
@click.option("--loss", type=click.Choice(["infonce", "triplet"]), default="infonce", show_default=True)
@click.option("--dim", type=int, default=256, show_default=True, help="Shared-space dimensions.")
@click.option("--epochs", type=int, default=30, show_default=True, help="Mapping epochs (early stopping).")
@click.option("--split-seed", type=int, default=0, show_default=True)
@click.option("--seed", type=int, default=0, show_default=True)
@json_option
@quiet_option
@user_errors
def build_cmd(
    dataset_root: Path,
    model_dir: Path,
    encoder: str,
    weights: str,
    image_size: int | None,
    batch_size: int,
    workers: int,
    backend: str | None,
    min_count: int,
    w2v_epochs: int,
    loss: str,
    dim: int,
    epochs: int,
    split_seed: int,
    seed: int,
    as_json: bool,
    quiet: bool,
) -> None:
    """Tokenise, train Word2Vec, embed photos, train the shared-space mapping and evaluate."""
    from toolkit.pipeline import BuildOptions, build

    opts = BuildOptions(
        encoder=encoder,
        weights=weights,
        image_size=image_size,
        batch_size=batch_size,
        workers=workers,
        backend=backend,
        w2v_min_count=min_count,
        w2v_epochs=w2v_epochs,
        split_seed=split_seed,
        mapping={"loss": loss, "dim": dim, "epochs": epochs, "seed": seed},
        progress=progress_enabled(quiet),
    )
    log = (lambda m: click.echo(m, err=True)) if not quiet else (lambda m: None)
    result = build(dataset_root, model_dir, opts, log=log)
    emit(json.loads(json.dumps(result, default=str)), as_json, lambda: _table(result))


commands = [build_cmd]
