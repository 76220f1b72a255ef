"""``jrs train-mapping`` and ``jrs evaluate-vectors``: learn and judge the shared text/image space."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click
import numpy as np

from toolkit.errors import ToolkitError
from toolkit.fingerprint import FingerprintMismatch, check_fingerprint
from toolkit.vectorset import VectorSet, align, load_vector_set

TEXT_FP = "word2vec_fingerprint"
IMAGE_FP = "encoder_fingerprint"


@contextmanager
def _user_errors() -> Iterator[None]:
    """Turn the toolkit's user-facing errors into a clean CLI failure (message, exit status 1)."""
    try:
        yield
    except (ToolkitError, FingerprintMismatch, ValueError) as exc:
        raise click.ClickException(str(exc)) from exc


@dataclass
class Pairs:
    """Aligned text/image rows of two vector sets, and the fingerprints of what produced them."""

    ids: list[str]
    text: np.ndarray
    image: np.ndarray
    word2vec: str
    encoder: str
    unpaired_text: int
    unpaired_image: int

    def subset(self, rows: np.ndarray) -> Pairs:
        return Pairs(
            [self.ids[r] for r in rows], self.text[rows], self.image[rows], self.word2vec, self.encoder, 0, 0
        )

    @property
    def groups(self) -> list[str]:
        """Recipe id of each pair (the part of ``<recipe_id>:<position>`` before the colon)."""
        return [i.split(":", 1)[0] for i in self.ids]


def _fingerprint_of(vs: VectorSet, key: str, path: str) -> str:
    value = vs.meta.get(key)
    if not isinstance(value, str) or not value:
        raise ToolkitError(f"vector set {path} has no {key!r} in meta.json: cannot tell what produced it")
    return value


def _check_finite(ids: list[str], x: np.ndarray, path: str) -> None:
    bad = np.flatnonzero(~np.isfinite(x).all(axis=1))
    if bad.size:
        shown = ", ".join(ids[b] for b in bad[:5]) + (" ..." if bad.size > 5 else "")
        raise ToolkitError(f"vector set {path}: {bad.size} vectors contain NaN or infinite values ({shown})")


def load_pairs(text_dir: str, image_dir: str) -> Pairs:
    """Load a text and an image vector set and pair their rows by id (text set order)."""
    text_vs, image_vs = load_vector_set(text_dir), load_vector_set(image_dir)
    w2v = _fingerprint_of(text_vs, TEXT_FP, text_dir)
    enc = _fingerprint_of(image_vs, IMAGE_FP, image_dir)
    ids, text, image = align(text_vs, image_vs)
    if len(ids) < 2:
        raise ToolkitError(
            f"only {len(ids)} ids are in both {text_dir} ({len(text_vs.ids)} vectors) and "
            f"{image_dir} ({len(image_vs.ids)} vectors): at least 2 text/image pairs are needed"
        )
    text, image = np.asarray(text, dtype=np.float32), np.asarray(image, dtype=np.float32)
    _check_finite(ids, text, text_dir)
    _check_finite(ids, image, image_dir)
    return Pairs(ids, text, image, w2v, enc, len(text_vs.ids) - len(ids), len(image_vs.ids) - len(ids))


def split_by_recipe(ids: list[str], fraction: float = 0.1, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Row indices ``(train, val)``: a seeded ``fraction`` of the recipes (at least one) goes to validation."""
    if not 0 < fraction < 1:
        raise ValueError(f"validation fraction must be in (0, 1), got {fraction}")
    recipes = np.array([i.split(":", 1)[0] for i in ids])
    unique = np.unique(recipes)
    if unique.size < 2:
        raise ToolkitError(f"all {len(ids)} pairs come from one recipe: cannot split off a validation set")
    rng = np.random.default_rng(seed)
    n_val = min(unique.size - 1, max(1, round(fraction * unique.size)))
    val_recipes = rng.permutation(unique)[:n_val]
    is_val = np.isin(recipes, val_recipes)
    return np.flatnonzero(~is_val), np.flatnonzero(is_val)


def _echo_json(data: dict[str, Any]) -> None:
    click.echo(json.dumps(data, ensure_ascii=False, indent=2))


@click.command("train-mapping")
@click.argument("text_vecset", type=click.Path(exists=True, file_okay=False))
@click.argument("image_vecset", type=click.Path(exists=True, file_okay=False))
@click.argument("out_dir", type=click.Path(file_okay=False))
@click.option("--val-text", type=click.Path(exists=True, file_okay=False), help="Validation text vector set.")
@click.option(
    "--val-image", type=click.Path(exists=True, file_okay=False), help="Validation image vector set."
)
@click.option(
    "--val-fraction", default=0.1, show_default=True, help="Share of recipes held out when no val set."
)
@click.option("--loss", type=click.Choice(["infonce", "triplet"]), default="infonce", show_default=True)
@click.option("--margin", default=0.2, show_default=True, help="Triplet margin.")
@click.option("--mining", type=click.Choice(["semihard", "hard"]), default="semihard", show_default=True)
@click.option("--dim", default=256, show_default=True, help="Shared-space dimension.")
@click.option("--hidden", default=512, show_default=True, help="Hidden width of each tower.")
@click.option("--dropout", default=0.1, show_default=True)
@click.option("--epochs", default=30, show_default=True)
@click.option("--batch-size", default=128, show_default=True)
@click.option("--lr", default=1e-3, show_default=True)
@click.option("--weight-decay", default=1e-4, show_default=True)
@click.option(
    "--patience", default=5, show_default=True, help="Epochs without val R@10 gain before stopping."
)
@click.option("--seed", default=0, show_default=True)
@click.option("--device", default="cpu", show_default=True, help="Torch device, e.g. cpu or cuda.")
@click.option("--overwrite", is_flag=True, help="Replace a mapping already in OUT_DIR.")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
@click.option("--quiet", is_flag=True, help="No progress bars or per-epoch log.")
def train_mapping_cmd(
    text_vecset: str,
    image_vecset: str,
    out_dir: str,
    val_text: str | None,
    val_image: str | None,
    val_fraction: float,
    loss: str,
    margin: float,
    mining: str,
    dim: int,
    hidden: int,
    dropout: float,
    epochs: int,
    batch_size: int,
    lr: float,
    weight_decay: float,
    patience: int,
    seed: int,
    device: str,
    overwrite: bool,
    as_json: bool,
    quiet: bool,
) -> None:
    """Train the two-tower mapping on TEXT_VECSET/IMAGE_VECSET pairs (matched by id) into OUT_DIR.

    Pairs from the same recipe (id prefix before ':') are never used as each other's negatives. Without
    --val-text/--val-image, a seeded --val-fraction of the recipes is held out for early stopping.
    """
    from toolkit.evaluation.metrics import pooled_metrics
    from toolkit.mapping.checkpoint import META, mapping_fingerprint, save_mapping
    from toolkit.mapping.train import MappingConfig, train_mapping

    with _user_errors():
        if (val_text is None) != (val_image is None):
            raise click.UsageError("give both --val-text and --val-image, or neither")
        if (Path(out_dir) / META).exists() and not overwrite:
            raise ToolkitError(f"{out_dir} already holds a mapping; pass --overwrite to replace it")
        config = MappingConfig(
            dim=dim,
            hidden=hidden,
            dropout=dropout,
            loss=loss,
            margin=margin,
            mining=mining,
            lr=lr,
            weight_decay=weight_decay,
            batch_size=batch_size,
            epochs=epochs,
            patience=patience,
            seed=seed,
            device=device,
        )
        pairs = load_pairs(text_vecset, image_vecset)
        if val_text is not None and val_image is not None:
            train, val = pairs, load_pairs(val_text, val_image)
            check_fingerprint(
                "word2vec", pairs.word2vec, val.word2vec, "training and validation text vectors differ"
            )
            check_fingerprint(
                "encoder", pairs.encoder, val.encoder, "training and validation image features differ"
            )
            overlap = set(pairs.groups) & set(val.groups)
            if overlap:
                raise ToolkitError(
                    f"{len(overlap)} recipes are in both the training and validation sets "
                    f"(e.g. {sorted(overlap)[0]}): validation would be optimistic"
                )
            val_source = "given"
        else:
            train_rows, val_rows = split_by_recipe(pairs.ids, val_fraction, seed)
            train, val = pairs.subset(train_rows), pairs.subset(val_rows)
            val_source = f"split {val_fraction:.0%} of recipes (seed {seed})"

        def log(message: str) -> None:
            if not quiet:
                click.echo(message, err=True)

        log(
            f"{len(train.ids)} training pairs, {len(val.ids)} validation pairs ({val_source}); "
            f"unpaired: {pairs.unpaired_text} text, {pairs.unpaired_image} image vectors"
        )
        result = train_mapping(
            train.text, train.image, val.text, val.image, config, train.groups, progress=not quiet, log=log
        )
        model = result.model
        val_metrics = pooled_metrics(model.embed_text(val.text), model.embed_image(val.image))
        summary: dict[str, Any] = {
            "train_pairs": len(train.ids),
            "val_pairs": len(val.ids),
            "val_source": val_source,
            "text_vecset": str(text_vecset),
            "image_vecset": str(image_vecset),
            "best_epoch": result.best_epoch,
            "stopped_early": result.stopped_early,
            "history": result.history_dicts(),
            "val_metrics": val_metrics,
        }
        fingerprints = {"word2vec": pairs.word2vec, "encoder": pairs.encoder}
        save_mapping(out_dir, model, config, fingerprints, summary)
        own = mapping_fingerprint(model, config)
    if as_json:
        _echo_json({"out_dir": str(out_dir), "fingerprint": own, "fingerprints": fingerprints, **summary})
        return
    t2i = val_metrics["text_to_image"]
    click.echo(
        f"mapping {own} saved to {out_dir}: best epoch {result.best_epoch}, validation text->image "
        f"R@1 {t2i['R@1']:.3f} R@5 {t2i['R@5']:.3f} R@10 {t2i['R@10']:.3f} MedR {t2i['MedR']:.1f} "
        f"(pool {val_metrics['pool']}, draws {val_metrics['draws']})"
    )


@click.command("evaluate-vectors")
@click.argument("mapping_dir", type=click.Path(exists=True, file_okay=False))
@click.argument("text_vecset", type=click.Path(exists=True, file_okay=False))
@click.argument("image_vecset", type=click.Path(exists=True, file_okay=False))
@click.option("--pool", default=1000, show_default=True, help="Pairs per pool (Recipe1M protocol).")
@click.option("--draws", default=10, show_default=True, help="Seeded pools averaged.")
@click.option("--seed", default=0, show_default=True, help="Seed of the pool draws.")
@click.option("--full", is_flag=True, help="Rank against the whole set instead of pools.")
@click.option("--baseline-seed", default=0, show_default=True, help="Seed of the random-tower baseline.")
@click.option("--json", "as_json", is_flag=True, help="Print the results as JSON.")
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
) -> None:
    """Retrieval metrics of the mapping in MAPPING_DIR on TEXT_VECSET/IMAGE_VECSET pairs, vs baselines.

    Both directions (text->image, image->text); baselines are untrained towers of the same architecture
    and chance. The mapping must have been trained on vectors from the same Word2Vec model and encoder.
    """
    from toolkit.evaluation.baselines import chance_result, random_tower_metrics
    from toolkit.evaluation.metrics import full_metrics, metrics_table, pooled_metrics
    from toolkit.mapping.checkpoint import load_mapping

    with _user_errors():
        pairs = load_pairs(text_vecset, image_vecset)
        loaded = load_mapping(mapping_dir, expected={"word2vec": pairs.word2vec, "encoder": pairs.encoder})
        model = loaded.model
        if pairs.text.shape[1] != model.text_dim or pairs.image.shape[1] != model.image_dim:
            raise ToolkitError(
                f"the mapping expects {model.text_dim}-d text and {model.image_dim}-d image vectors, got "
                f"{pairs.text.shape[1]}-d and {pairs.image.shape[1]}-d"
            )
        text, image = model.embed_text(pairs.text), model.embed_image(pairs.image)
        if full:
            mapped = full_metrics(text, image)
        else:
            mapped = pooled_metrics(text, image, pool=pool, draws=draws, seed=seed)
        results = {
            "mapping": mapped,
            "random towers": random_tower_metrics(
                pairs.text,
                pairs.image,
                model.arch(),
                seed=baseline_seed,
                stats=model.get_input_stats(),
                pool=None if full else pool,
                draws=draws,
                eval_seed=seed,
            ),
            "chance": chance_result(len(pairs.ids), None if full else pool),
        }
    if as_json:
        _echo_json(
            {
                "mapping_dir": str(mapping_dir),
                "fingerprint": loaded.fingerprint,
                "pairs": len(pairs.ids),
                "unpaired_text": pairs.unpaired_text,
                "unpaired_image": pairs.unpaired_image,
                "results": results,
            }
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
