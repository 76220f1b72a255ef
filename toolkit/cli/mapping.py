"""``jrs train-mapping`` and ``jrs evaluate-vectors``: the mapping and evaluation stages on vector sets.

Both call the functions ``jrs build`` calls (:mod:`toolkit.stages.mapping`, :mod:`toolkit.stages.evaluate`)
with the same defaults (the option dataclasses'), so the same vectors give the same mapping.
"""

from __future__ import annotations

from typing import Any

import click

from toolkit.cli.common import emit, json_option, progress_enabled, quiet_option, user_errors
from toolkit.cli.options import LINEAR_WEIGHT_HELP, default_from, tower_options
from toolkit.device import DEVICE_HELP, resolve_device
from toolkit.stages.evaluate import EvaluateOptions
from toolkit.stages.read import ReadOptions

CONFIG = "toolkit.mapping.train:MappingConfig"


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
    from toolkit.mapping.train import MappingConfig
    from toolkit.stages.mapping import train_mapping_model
    from toolkit.stages.pairs import check_same_sources, load_pairs, split_pairs

    if (val_text is None) != (val_image is None):
        raise click.UsageError("give both --val-text and --val-image, or neither")
    ReadOptions(split_seed=split_seed)
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
        f"(pool {stage.summary['val_metrics']['pool']}, draws {stage.summary['val_metrics']['draws']})",
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
    as_json: bool,
    quiet: bool,
) -> None:
    """Retrieval metrics of the mapping in MAPPING_DIR on TEXT_VECSET/IMAGE_VECSET pairs, vs baselines.

    Both directions (text->image, image->text); baselines are untrained towers of the same architecture
    and chance. The mapping must have been trained on vectors from the same Word2Vec model and encoder.
    """
    from toolkit.evaluation.metrics import metrics_table
    from toolkit.mapping.checkpoint import load_mapping
    from toolkit.stages.evaluate import evaluate_mapping
    from toolkit.stages.pairs import load_pairs

    options = EvaluateOptions(pool=pool, draws=draws, seed=seed, baseline_seed=baseline_seed, full=full)
    pairs = load_pairs(text_vecset, image_vecset)
    loaded = load_mapping(mapping_dir, expected=pairs.fingerprints)
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
            },
            True,
        )
        return
    protocol = (
        f"full set of {mapped['n']} pairs"
        if full
        else f"{mapped['draws']} draws of {mapped['pool']} pairs from {mapped['n']} (seed {seed})"
    )
    click.echo(f"mapping {loaded.fingerprint}: {protocol}")
    if "note" in mapped:
        click.echo(f"note: {mapped['note']}")
    click.echo(metrics_table(results))


commands = [train_mapping_cmd, evaluate_vectors_cmd]
