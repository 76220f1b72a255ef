"""``jrs tokenize``, ``jrs train-w2v``, ``jrs step-vectors``: the text side of the pipeline."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import click

from toolkit.cli.common import emit, json_option, progress_enabled, quiet_option, user_errors
from toolkit.errors import ConfigError, ToolkitError

REJECTS_FILE = "rejects.jsonl"
SPLIT_CHOICES = ("train", "val", "test", "all")

form_option = click.option(
    "--form",
    type=click.Choice(["lemma", "surface"]),
    default="lemma",
    show_default=True,
    help="Filtered tokens as UniDic lemmas or as written.",
)
stopwords_option = click.option(
    "--stopwords",
    "stopwords_file",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Stopword file: one word per line, '#' comments.",
)


def _tokenizer_config(form: str, stopwords_file: Path | None):
    from toolkit.text.tokenizer import TokenizerConfig, load_stopwords

    stopwords = load_stopwords(stopwords_file) if stopwords_file else frozenset()
    return TokenizerConfig(form=form, stopwords=stopwords)  # type: ignore[arg-type]


def _bar(quiet: bool, desc: str, unit: str):
    from tqdm import tqdm

    return tqdm(desc=desc, unit=unit, disable=not progress_enabled(quiet), file=sys.stderr)


@click.command("tokenize")
@click.argument("texts", nargs=-1)
@click.option(
    "--file",
    "file",
    type=click.File("r", encoding="utf-8"),
    default=None,
    help="Read texts from a file, one per line ('-' for stdin).",
)
@form_option
@click.option(
    "--all", "all_tokens", is_flag=True, help="Print every surface token (the keyword-search stream)."
)
@stopwords_option
@json_option
@user_errors
def tokenize_cmd(
    texts: tuple[str, ...],
    file,
    form: str,
    all_tokens: bool,
    stopwords_file: Path | None,
    as_json: bool,
) -> None:
    """Print the tokens of TEXT... (or of each line of --file), one line of space-separated tokens per text.

    By default only content words are printed (lemmas, particles and symbols dropped): the Word2Vec
    stream. --all prints every surface token instead.
    """
    from toolkit.text.tokenizer import Tokenizer

    inputs = list(texts)
    if file is not None:
        inputs.extend(line.rstrip("\r\n") for line in file)
    if not inputs:
        raise click.UsageError("give TEXT arguments or --file")
    tokenizer = Tokenizer(_tokenizer_config(form, stopwords_file))
    rows = [
        {"text": t, "tokens": tokenizer.tokenize_all(t) if all_tokens else tokenizer.tokenize(t)}
        for t in inputs
    ]
    emit(rows, as_json, lambda: "\n".join(" ".join(r["tokens"]) for r in rows))


def _train_sentences(
    root: Path, split_seed: int, tokenizer, rejects, quiet: bool
) -> tuple[list[list[str]], int]:
    """Filtered tokens of every step of the training-split recipes (and the number of such recipes)."""
    from toolkit.data.jsonl import iter_recipes
    from toolkit.data.splits import split_of

    sentences: list[list[str]] = []
    recipes = 0
    with _bar(quiet, "tokenizing training steps", "recipe") as bar:
        for recipe in iter_recipes(root, rejects):
            bar.update(1)
            if split_of(recipe.recipe_id, seed=split_seed) != "train":
                continue
            recipes += 1
            sentences.extend(tokenizer.tokenize(step.text) for step in recipe.steps)
    return sentences, recipes


@click.command("train-w2v")
@click.argument("dataset_root", type=click.Path(file_okay=False, path_type=Path))
@click.argument("out_dir", type=click.Path(file_okay=False, path_type=Path))
@click.option("--min-count", type=int, default=5, show_default=True, help="Ignore rarer words.")
@click.option("--epochs", type=int, default=5, show_default=True, help="Training passes.")
@click.option("--seed", type=int, default=0, show_default=True, help="Random seed.")
@click.option(
    "--split-seed", type=int, default=0, show_default=True, help="Seed of the train/val/test split."
)
@click.option("--vector-size", type=int, default=300, show_default=True, help="Vector dimensions.")
@click.option("--window", type=int, default=5, show_default=True, help="Context window.")
@click.option(
    "--workers", type=int, default=1, show_default=True, help="Training threads (1 = deterministic)."
)
@form_option
@stopwords_option
@quiet_option
@json_option
@user_errors
def train_w2v_cmd(
    dataset_root: Path,
    out_dir: Path,
    min_count: int,
    epochs: int,
    seed: int,
    split_seed: int,
    vector_size: int,
    window: int,
    workers: int,
    form: str,
    stopwords_file: Path | None,
    quiet: bool,
    as_json: bool,
) -> None:
    """Train Word2Vec (CBOW) on the steps of the TRAINING-split recipes of DATASET_ROOT; save it in OUT_DIR.

    Rejected records go to OUT_DIR/rejects.jsonl.
    """
    from toolkit.rejects import RejectsWriter
    from toolkit.text.tokenizer import Tokenizer
    from toolkit.text.word2vec import Word2VecConfig, train_word2vec

    config = Word2VecConfig(
        vector_size=vector_size, window=window, min_count=min_count, epochs=epochs, seed=seed, workers=workers
    )
    tokenizer = Tokenizer(_tokenizer_config(form, stopwords_file))
    out_dir.mkdir(parents=True, exist_ok=True)
    with RejectsWriter(out_dir / REJECTS_FILE) as rejects:
        sentences, recipes = _train_sentences(dataset_root, split_seed, tokenizer, rejects, quiet)
        rejected = rejects.count
    if not sentences:
        raise ToolkitError(f"no training-split steps in {dataset_root} (split seed {split_seed})")
    wv = train_word2vec(sentences, config, tokenizer_config=tokenizer.config)
    wv.save(out_dir)
    info: dict[str, Any] = {
        "out_dir": str(out_dir),
        "fingerprint": wv.fingerprint,
        "tokenizer_fingerprint": wv.tokenizer_fingerprint,
        "train_recipes": recipes,
        "train_steps": len(sentences),
        "tokens": wv.stats.get("tokens"),
        "vocab_size": len(wv),
        "dim": wv.dim,
        "rejects": rejected,
    }
    emit(
        info,
        as_json,
        f"word2vec {wv.fingerprint}: {len(wv)} words x {wv.dim} from {len(sentences)} steps of {recipes} "
        f"training recipes -> {out_dir} ({rejected} rejects)",
    )


@click.command("step-vectors")
@click.argument("dataset_root", type=click.Path(file_okay=False, path_type=Path))
@click.argument("model_dir", type=click.Path(file_okay=False, path_type=Path))
@click.argument("out_dir", type=click.Path(file_okay=False, path_type=Path))
@click.option(
    "--split",
    type=click.Choice(SPLIT_CHOICES),
    default="all",
    show_default=True,
    help="Only steps of recipes in this split.",
)
@click.option(
    "--split-seed", type=int, default=0, show_default=True, help="Seed of the train/val/test split."
)
@click.option("--expect-fingerprint", default=None, help="Refuse a Word2Vec model with another fingerprint.")
@quiet_option
@json_option
@user_errors
def step_vectors_cmd(
    dataset_root: Path,
    model_dir: Path,
    out_dir: Path,
    split: str,
    split_seed: int,
    expect_fingerprint: str | None,
    quiet: bool,
    as_json: bool,
) -> None:
    """Write the mean Word2Vec vector of every step of DATASET_ROOT as a vector set in OUT_DIR.

    MODEL_DIR holds a model from `jrs train-w2v`. Steps with no in-vocabulary token are left out and
    reported (with the rest of the rejects) in OUT_DIR/rejects.jsonl.
    """
    from toolkit.data.jsonl import iter_recipes
    from toolkit.data.splits import split_of
    from toolkit.rejects import RejectsWriter
    from toolkit.text.step_vectors import save_step_vectors, step_vectors
    from toolkit.text.tokenizer import Tokenizer
    from toolkit.text.word2vec import WordVectors

    wv = WordVectors.load(model_dir, expected_fingerprint=expect_fingerprint)
    tokenizer = Tokenizer(wv.tokenizer_config)
    out_dir.mkdir(parents=True, exist_ok=True)
    ids: list[str] = []
    texts: list[str] = []
    with RejectsWriter(out_dir / REJECTS_FILE) as rejects:
        with _bar(quiet, "reading steps", "recipe") as bar:
            for recipe in iter_recipes(dataset_root, rejects):
                bar.update(1)
                if split != "all" and split_of(recipe.recipe_id, seed=split_seed) != split:
                    continue
                for step in recipe.steps:
                    ids.append(recipe.step_id(step))
                    texts.append(step.text)
        if not ids:
            raise ConfigError(f"no steps to encode in {dataset_root} (split {split})")
        with _bar(quiet, "tokenizing steps", "step") as bar:
            bar.total = len(ids)
            result = step_vectors(ids, texts, tokenizer, wv, progress=bar.update)
        rejects.extend(result.rejects)
        total_rejects = rejects.count
    save_step_vectors(out_dir, result, wv, {"split": split, "split_seed": split_seed})
    info = {
        "out_dir": str(out_dir),
        "steps": len(ids),
        "vectors": len(result.ids),
        "no_token": sum(1 for r in result.rejects if r.reason.startswith("no in-vocabulary")),
        "rejects": total_rejects,
        "word2vec_fingerprint": wv.fingerprint,
    }
    emit(
        info,
        as_json,
        f"{len(result.ids)} step vectors of {len(ids)} steps -> {out_dir} "
        f"({total_rejects} rejects in {out_dir / REJECTS_FILE})",
    )


commands = [tokenize_cmd, train_w2v_cmd, step_vectors_cmd]
