"""``jrs build``: all learning stages from a dataset root into a model directory."""

from __future__ import annotations

import json
from pathlib import Path

import click

from toolkit.cli.common import emit, json_option, progress_enabled, quiet_option, user_errors
from toolkit.cli.image import backend_option
from toolkit.cli.options import LINEAR_WEIGHT_HELP, default_from, tower_options
from toolkit.device import DEVICE_HELP
from toolkit.pipeline import BuildOptions
from toolkit.stages.text import FORMS

CONFIG = "toolkit.mapping.config:MappingConfig"


def _table(result: dict, model_dir: Path) -> str:
    from toolkit.cli.evaluate import in_memory_table

    rejected = result.get("rejects") or {}
    line = ""
    if rejected.get("count"):
        from toolkit.rejects import stage_counts

        stages = stage_counts(rejected["by_stage"])
        line = f"{rejected['count']} rejected ({stages}): see {model_dir / rejected['file']}\n"
    return (
        f"model {result['fingerprint']} -> dims {result['dims']}, encoder {result['encoder']['name']}\n"
        + line
        + in_memory_table(result["evaluation"])
    )


@click.command("build")
@click.argument("dataset_root", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.argument("model_dir", type=click.Path(file_okay=False, path_type=Path))
@click.option(
    "--encoder",
    default=BuildOptions.encoder,
    show_default=True,
    help="Image encoder (see `jrs encoders`); resnet50 with --weights auto falls back to efficientnet-lite0-ms4-sgem offline.",
)
@click.option(
    "--weights", default=BuildOptions.weights, show_default=True, help="auto | imagenet | random | PATH."
)
@click.option("--image-size", type=int, default=None, help="Input size for the CNN (default: the encoder's).")
@click.option("--device", default=BuildOptions.device, show_default=True, help=DEVICE_HELP)
@click.option("--image-seed", type=int, default=None, help="Seed for --weights random [the encoder's].")
@click.option("--batch-size", type=int, default=BuildOptions.batch_size, show_default=True)
@click.option("--workers", type=int, default=None, help="DataLoader workers for photos [by core count].")
@backend_option
@click.option("--form", type=click.Choice(FORMS), default=BuildOptions.form, show_default=True)
@click.option(
    "--stopwords",
    "stopwords_file",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Stopword file: one word per line, '#' comments.",
)
@click.option(
    "--min-count", type=int, default=BuildOptions.w2v_min_count, show_default=True, help="Word2Vec min_count."
)
@click.option(
    "--max-vocab",
    type=int,
    default=BuildOptions.w2v_max_vocab,
    show_default=True,
    help="Word2Vec's top words kept.",
)
@click.option("--w2v-epochs", type=int, default=BuildOptions.w2v_epochs, show_default=True)
@click.option("--vector-size", type=int, default=BuildOptions.w2v_vector_size, show_default=True)
@default_from(f"{CONFIG}.loss", "--loss", type=click.Choice(["infonce", "triplet"]))
@default_from(f"{CONFIG}.dim", "--dim", type=int, help="Shared-space dimensions.")
@default_from(f"{CONFIG}.epochs", "--epochs", type=int, help="Mapping epochs (early stopping).")
@default_from(f"{CONFIG}.seed", "--seed", type=int, help="Mapping seed.")
@default_from(
    f"{CONFIG}.text_tower",
    "--text-tower",
    type=click.Choice(["bag", "mean"]),
    help="bag: the text tower fine-tunes the word vectors of each step's tokens; mean: it reads the fixed "
    "Word2Vec step mean.",
)
@default_from(
    f"{CONFIG}.linear_weight",
    "--linear-weight",
    type=float,
    help=LINEAR_WEIGHT_HELP,
)
@tower_options(CONFIG)
@click.option("--split-seed", type=int, default=BuildOptions.split_seed, show_default=True)
@json_option
@quiet_option
@user_errors
def build_cmd(
    dataset_root: Path,
    model_dir: Path,
    encoder: str,
    weights: str,
    image_size: int | None,
    image_seed: int | None,
    device: str,
    batch_size: int,
    workers: int | None,
    backend: str | None,
    form: str,
    stopwords_file: Path | None,
    min_count: int,
    max_vocab: int,
    w2v_epochs: int,
    vector_size: int,
    loss: str,
    dim: int,
    epochs: int,
    seed: int,
    text_tower: str,
    linear_weight: float,
    text_members: int,
    mix_share: float | None,
    weight_average: bool,
    linear_strong_reg: float | None,
    word_grounding: bool,
    split_seed: int,
    as_json: bool,
    quiet: bool,
) -> None:
    """Tokenise, train Word2Vec, embed photos, train the shared-space mapping and evaluate.

    Each stage is also a command of its own (tokenize, train-w2v, step-vectors, embed-images,
    train-mapping, evaluate-vectors) with the same defaults: run in sequence with the same options,
    they produce the same model. Every option is checked before any work starts.
    """
    from toolkit.pipeline import build

    opts = BuildOptions(
        encoder=encoder,
        weights=weights,
        image_size=image_size,
        image_seed=image_seed,
        device=device,
        batch_size=batch_size,
        workers=workers,
        backend=backend,
        form=form,
        stopwords_file=stopwords_file,
        w2v_min_count=min_count,
        w2v_max_vocab=max_vocab,
        w2v_epochs=w2v_epochs,
        w2v_vector_size=vector_size,
        split_seed=split_seed,
        mapping={
            "loss": loss,
            "dim": dim,
            "epochs": epochs,
            "seed": seed,
            "text_tower": text_tower,
            "linear_weight": linear_weight,
            "text_members": text_members,
            "mix_share": mix_share,
            "weight_average": weight_average,
            "linear_strong_reg": linear_strong_reg,
            "word_grounding": word_grounding,
        },
        progress=progress_enabled(quiet),
    )
    result = build(dataset_root, model_dir, opts)
    emit(json.loads(json.dumps(result, default=str)), as_json, lambda: _table(result, model_dir))


commands = [build_cmd]
