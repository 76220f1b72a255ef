"""``jrs train-mapping`` and ``jrs evaluate-vectors``: the mapping and evaluation stages on vector sets.

Both call the functions ``jrs build`` calls (:mod:`toolkit.stages.mapping`, :mod:`toolkit.stages.evaluate`)
with the same defaults (the option dataclasses'), so the same vectors give the same mapping.
"""

from __future__ import annotations

import json
import logging
import re
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
from toolkit.cli.options import LINEAR_WEIGHT_HELP, default_from, given_on_command_line, tower_options
from toolkit.device import DEVICE_HELP, resolve_device
from toolkit.errors import ConfigError
from toolkit.stages.evaluate import EvaluateOptions
from toolkit.stages.read import ReadOptions

log = logging.getLogger(__name__)

CONFIG = "toolkit.mapping.config:MappingConfig"
#: mapping options that only one loss reads (MappingConfig field -> that loss)
LOSS_ONLY = {"margin": "triplet", "mining": "triplet"}


def check_loss_options(ctx: click.Context, loss: str) -> None:
    """Refuse an option of :data:`LOSS_ONLY` given on the command line for a ``loss`` that does not read it."""
    for name, owner in LOSS_ONLY.items():
        if given_on_command_line(ctx, name) and loss != owner:
            option = "--" + name.replace("_", "-")
            raise ConfigError(
                f"{option} applies to --loss {owner} only, not {loss}: drop it or pass --loss {owner}"
            )


def _unpaired_note(pairs: Any, image_vecset: str) -> str:
    """A line on the text vectors with no photo vector (text-only steps, rejected photos, or the photos of
    other shards), or ``""``."""
    from toolkit.shards import SHARD_FILE

    if not pairs.unpaired_text:
        return ""
    total = pairs.unpaired_text + len(pairs)
    note = f"\n{pairs.unpaired_text} of {total} text vectors have no photo vector in {image_vecset}, left out"
    if (Path(image_vecset) / SHARD_FILE).is_file():
        note += f" ({image_vecset} is one shard of the photos: merge the shards with `jrs merge-vectors`)"
    return note


_SEED_IN_SOURCE = re.compile(r"split seed (-?\d+)")


def _training_recipes(mapping_dir: str, loaded: Any) -> tuple[set[str], str] | None:
    """The recipes the mapping was trained on and where they come from; None when its record does not say or
    the vector sets it was trained on are gone. `jrs train-mapping` records its vector sets and split seed (the
    train split of their pairs; all of them when validation pairs were given); a mapping of `jrs build` is
    its model's, whose manifest records the seed."""
    from toolkit.data.splits import split_of

    extra = loaded.meta.get("extra") or {}
    sets, seed = (extra.get("text_vecset"), extra.get("image_vecset")), extra.get("split_seed")
    found = _SEED_IN_SOURCE.search(str(extra.get("val_source", "")))
    if seed is None and found:  # a mapping trained before the seed was recorded on its own
        seed = int(found.group(1))
    manifest = _model_manifest(Path(mapping_dir), loaded.fingerprint)
    if manifest is not None:
        model = Path(mapping_dir).resolve().parent
        sets, seed = (model / "step_vectors", model / "image_features"), manifest.get("split_seed")
    recipes = _paired_recipes(*sets)
    if recipes is None:
        return None
    if seed is None:
        return recipes, f"the pairs of {sets[0]}"
    train = {r for r in recipes if split_of(r, seed=int(seed)) == "train"}
    return train, f"the train split of {sets[0]}, split seed {seed}"


def _paired_recipes(text_vecset: Any, image_vecset: Any) -> set[str] | None:
    """The recipes of the ids two vector sets share (their pairs), when both are still there."""
    from toolkit.data.step_ids import SEPARATOR
    from toolkit.vectorset import IDS, read_lines

    paths = [Path(str(d)) / IDS for d in (text_vecset, image_vecset) if d]
    if len(paths) != 2 or not all(p.is_file() for p in paths):
        return None
    shared = set(read_lines(paths[0])) & set(read_lines(paths[1]))
    return {i.split(SEPARATOR, 1)[0] for i in shared}


def _model_manifest(mapping_dir: Path, fingerprint: str) -> dict[str, Any] | None:
    """The manifest of the model ``mapping_dir`` is the mapping of (by its fingerprint), if it is one's."""
    from toolkit.model import MANIFEST

    try:
        manifest = json.loads((mapping_dir.resolve().parent / MANIFEST).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return (
        manifest
        if isinstance(manifest, dict) and manifest.get("mapping_fingerprint") == fingerprint
        else None
    )


@click.command("train-mapping")
@click.argument("text_vecset", type=click.Path(exists=True, file_okay=False))
@click.argument("image_vecset", type=click.Path(exists=True, file_okay=False))
@click.argument("out_dir", type=click.Path(file_okay=False))
@click.option("--val-text", type=click.Path(exists=True, file_okay=False), help="Validation text vector set.")
@click.option(
    "--val-image", type=click.Path(exists=True, file_okay=False), help="Validation image vector set."
)
@click.option(
    "--split-seed",
    type=int,
    default=ReadOptions.split_seed,
    show_default=True,
    help="Seed of the train/val/test split by recipe (as in `jrs build`) when no validation set is given.",
)
@default_from(f"{CONFIG}.loss", "--loss", type=click.Choice(["infonce", "triplet"]))
@default_from(f"{CONFIG}.margin", "--margin", type=float, help="Triplet margin.")
@default_from(f"{CONFIG}.mining", "--mining", type=click.Choice(["semihard", "hard"]))
@default_from(f"{CONFIG}.dim", "--dim", type=int, help="Shared-space dimension.")
@default_from(f"{CONFIG}.hidden", "--hidden", type=int, help="Hidden width of each tower.")
@default_from(f"{CONFIG}.dropout", "--dropout", type=float)
@default_from(f"{CONFIG}.epochs", "--epochs", type=int)
@default_from(f"{CONFIG}.batch_size", "--batch-size", type=int)
@default_from(f"{CONFIG}.lr", "--lr", type=float)
@default_from(f"{CONFIG}.weight_decay", "--weight-decay", type=float)
@default_from(
    f"{CONFIG}.patience", "--patience", type=int, help="Epochs without val R@10 gain before stopping."
)
@default_from(f"{CONFIG}.seed", "--seed", type=int)
@default_from(f"{CONFIG}.device", "--device", help=DEVICE_HELP)
@default_from(
    f"{CONFIG}.text_tower",
    "--text-tower",
    type=click.Choice(["bag", "mean"]),
    help="bag: fine-tune the word vectors of each step's tokens (needs --word2vec); mean: the fixed step mean.",
)
@default_from(
    f"{CONFIG}.word_dropout", "--word-dropout", type=float, help="Bag tower: tokens dropped per batch."
)
@default_from(
    f"{CONFIG}.linear_weight",
    "--linear-weight",
    type=float,
    help=LINEAR_WEIGHT_HELP,
)
@tower_options(CONFIG)
@click.option(
    "--word2vec",
    "word2vec_dir",
    type=click.Path(exists=True, file_okay=False),
    default=None,
    help="The Word2Vec model TEXT_VECSET was made with (a bag text tower starts from its vectors).",
)
@click.option("--overwrite", is_flag=True, help="Replace a mapping already in OUT_DIR.")
@json_option
@quiet_option
@user_errors
def train_mapping_cmd(
    text_vecset: str,
    image_vecset: str,
    out_dir: str,
    val_text: str | None,
    val_image: str | None,
    split_seed: int,
    overwrite: bool,
    word2vec_dir: str | None,
    as_json: bool,
    quiet: bool,
    **config_fields: Any,
) -> None:
    """Train the two-tower mapping on TEXT_VECSET/IMAGE_VECSET pairs (matched by id) into OUT_DIR.

    Pairs from the same recipe (id prefix before ':') are never used as each other's negatives. Without
    --val-text/--val-image, the pairs are split by recipe exactly as `jrs build` splits them (the seeded
    hash split): training on the train split, early stopping on the val split; the test split is left out.
    """
    from toolkit.mapping.config import MappingConfig
    from toolkit.stages.mapping import train_mapping_model
    from toolkit.stages.pairs import check_same_sources, load_pairs, split_pairs

    if (val_text is None) != (val_image is None):
        raise click.UsageError("give both --val-text and --val-image, or neither")
    ReadOptions(split_seed=split_seed)
    check_loss_options(click.get_current_context(), config_fields["loss"])
    refuse_model_dir(out_dir, "train-mapping")
    config = MappingConfig(**config_fields)
    resolve_device(config.device)  # before any work: a missing GPU is a clear error
    if config.text_tower == "bag" and word2vec_dir is None:
        raise click.UsageError(
            "--text-tower bag fine-tunes the Word2Vec vectors: give --word2vec DIR (the model TEXT_VECSET was "
            "made with), or use --text-tower mean"
        )
    wv = None
    if word2vec_dir is not None:
        from toolkit.text.word2vec import WordVectors

        wv = WordVectors.load(word2vec_dir)
        if val_text is None:  # split here: the same split Word2Vec learnt from, or its test recipes leak in
            from toolkit.stages.text import check_split_seed

            check_split_seed(wv, split_seed, "train-mapping")
    pairs = load_pairs(text_vecset, image_vecset)
    held_out = 0
    if val_text is not None and val_image is not None:
        train, val = pairs, load_pairs(val_text, val_image)
        check_same_sources(train, val)
        val_source = "given"
    else:
        parts = split_pairs(pairs, split_seed)
        train, val, held_out = parts["train"], parts["val"], len(parts["test"])
        val_source = f"val split of the recipes (split seed {split_seed})"
    sources = {
        "val_source": val_source,
        # the training recipes: the train split of this seed (evaluate-vectors refuses them), or the pairs given
        "split_seed": None if val_text is not None else split_seed,
        "test_pairs_left_out": held_out,
        "unpaired_text": pairs.unpaired_text,
        "unpaired_image": pairs.unpaired_image,
        "text_vecset": str(text_vecset),
        "image_vecset": str(image_vecset),
    }
    stage = train_mapping_model(
        train,
        val,
        out_dir,
        config,
        overwrite=overwrite,
        progress=progress_enabled(quiet),
        sources=sources,
        word_vectors=wv,
    )
    report = {"out_dir": str(out_dir), "fingerprint": stage.fingerprint, "fingerprints": pairs.fingerprints}
    t2i = stage.summary["val_metrics"]["text_to_image"]
    emit(
        {**report, **stage.summary},
        as_json,
        f"mapping {stage.fingerprint} saved to {out_dir}: best epoch {stage.result.best_epoch}, validation "
        f"text->image R@1 {t2i['R@1']:.3f} R@5 {t2i['R@5']:.3f} R@10 {t2i['R@10']:.3f} MedR {t2i['MedR']:.1f} "
        f"(pool {stage.summary['val_metrics']['pool']}, draws {stage.summary['val_metrics']['draws']})"
        + _unpaired_note(pairs, image_vecset),
    )


@click.command("evaluate-vectors")
@click.argument("mapping_dir", type=click.Path(exists=True, file_okay=False))
@click.argument("text_vecset", type=click.Path(exists=True, file_okay=False))
@click.argument("image_vecset", type=click.Path(exists=True, file_okay=False))
@click.option(
    "--pool", default=EvaluateOptions.pool, show_default=True, help="Pairs per pool (Recipe1M protocol)."
)
@click.option("--draws", default=EvaluateOptions.draws, show_default=True, help="Seeded pools averaged.")
@click.option("--seed", default=EvaluateOptions.seed, show_default=True, help="Seed of the pool draws.")
@click.option("--full", is_flag=True, help="Rank against the whole set instead of pools.")
@click.option(
    "--baseline-seed",
    default=EvaluateOptions.baseline_seed,
    show_default=True,
    help="Seed of the random-tower baseline.",
)
@click.option(
    "--include-training",
    is_flag=True,
    help="Evaluate pairs of recipes the mapping was trained on too (optimistic metrics; a warning says so).",
)
@json_option
@quiet_option
@user_errors
def evaluate_vectors_cmd(
    mapping_dir: str,
    text_vecset: str,
    image_vecset: str,
    pool: int,
    draws: int,
    seed: int,
    full: bool,
    baseline_seed: int,
    include_training: bool,
    as_json: bool,
    quiet: bool,
) -> None:
    """Retrieval metrics of the mapping in MAPPING_DIR on TEXT_VECSET/IMAGE_VECSET pairs, vs baselines.

    Both directions (text->image, image->text); baselines are untrained towers of the same architecture
    and chance. The mapping must have been trained on vectors from the same Word2Vec model and encoder.
    Pairs of recipes the mapping was trained on are refused (e.g. step vectors of --split all) unless
    --include-training.
    """
    from toolkit.evaluation.metrics import metrics_table
    from toolkit.mapping.checkpoint import load_mapping
    from toolkit.stages.evaluate import evaluate_mapping
    from toolkit.stages.pairs import check_held_out, load_pairs

    options = EvaluateOptions(pool=pool, draws=draws, seed=seed, baseline_seed=baseline_seed, full=full)
    pairs = load_pairs(text_vecset, image_vecset)
    loaded = load_mapping(mapping_dir, expected=pairs.fingerprints)
    trained = _training_recipes(mapping_dir, loaded)
    warning: str | None
    if trained is None:
        warning = (
            f"the mapping in {mapping_dir} does not record which recipes it was trained on: "
            f"if {text_vecset} holds any, the metrics are optimistic"
        )
    else:
        warning = check_held_out(pairs, *trained, str(text_vecset), allow=include_training)
    warnings = [warning] if warning else []
    for w in warnings:
        log.warning("%s", w)
    ev = evaluate_mapping(loaded.model, pairs, options)
    results = {"mapping": ev["mapping"], "random towers": ev["random_towers"], "chance": ev["chance"]}
    mapped = ev["mapping"]
    if as_json:
        emit(
            {
                "mapping_dir": str(mapping_dir),
                "fingerprint": loaded.fingerprint,
                "pairs": len(pairs),
                "unpaired_text": pairs.unpaired_text,
                "unpaired_image": pairs.unpaired_image,
                "results": results,
                "warnings": warnings,
            },
            True,
        )
        return
    protocol = (
        f"full set of {mapped['n']} pairs"
        if full
        else f"{mapped['draws']} draws of {mapped['pool']} pairs from {mapped['n']} (seed {seed})"
    )
    click.echo(f"mapping {loaded.fingerprint}: {protocol}{_unpaired_note(pairs, image_vecset)}")
    if "note" in mapped:
        click.echo(f"note: {mapped['note']}")
    click.echo(metrics_table(results))


commands = [train_mapping_cmd, evaluate_vectors_cmd]
