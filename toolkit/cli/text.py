"""``jrs tokenize``, ``jrs train-w2v``, ``jrs step-vectors``: the text stages (see :mod:`toolkit.stages.text`)."""

from __future__ import annotations

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
from toolkit.stages.read import SPLIT_CHOICES, ReadOptions
from toolkit.stages.text import FORMS, TokenizeOptions

W2V = "toolkit.text.word2vec:Word2VecConfig"

REJECTS_FILE = "rejects.jsonl"


def _rejects_note(rejects: int, path: Path) -> str:
    """``0 rejects``, or ``N rejects in PATH``: the file is written only when something was rejected."""
    return f"{rejects} rejects in {path}" if rejects else "0 rejects"


form_option = click.option(
    "--form",
    type=click.Choice(FORMS),
    default=TokenizeOptions.form,
    show_default=True,
    help="Filtered tokens as UniDic lemmas or as written.",
)
stopwords_option = click.option(
    "--stopwords",
    "stopwords_file",
    type=click.Path(dir_okay=False, path_type=Path),
    default=TokenizeOptions.stopwords_file,
    help="Stopword file: one word per line, '#' comments.",
)
split_seed_option = click.option(
    "--split-seed",
    type=int,
    default=ReadOptions.split_seed,
    show_default=True,
    help="Seed of the train/val/test split by recipe.",
)


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
    "--all",
    "all_tokens",
    is_flag=True,
    help="Print every token, particles included, in --form (the keyword-search stream).",
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
    stream. --all prints every token instead (in --form: the UniDic lemma by default), as the index's
    ``tokens`` field holds them.
    """
    from toolkit.stages.text import tokenize_texts

    inputs = list(texts)
    if file is not None:
        try:
            inputs.extend(line.rstrip("\r\n") for line in file)
        except UnicodeDecodeError as e:
            raise click.BadParameter(
                f"{file.name} is not UTF-8 text ({e.reason} at byte {e.start})", param_hint="--file"
            ) from None
    if not inputs:
        raise click.UsageError("give TEXT arguments or --file")
    from toolkit.data.schema import unencodable

    for number, text in enumerate(texts, 1):
        why = unencodable(text)
        if why:  # bytes of another encoding, e.g. from a terminal not set to UTF-8
            raise click.BadParameter(f"TEXT {number} {why}; give UTF-8 text", param_hint="TEXT")
    options = TokenizeOptions(form=form, stopwords_file=stopwords_file)
    rows = tokenize_texts(inputs, options, all_tokens=all_tokens)
    emit(rows, as_json, lambda: "\n".join(" ".join(r["tokens"]) for r in rows))


@click.command("train-w2v")
@click.argument("dataset_root", type=click.Path(file_okay=False, path_type=Path))
@click.argument("out_dir", type=click.Path(file_okay=False, path_type=Path))
@default_from(f"{W2V}.min_count", "--min-count", type=int, help="Ignore rarer words.")
@default_from(
    f"{W2V}.max_vocab", "--max-vocab", type=int, help="Keep at most this many words (the most frequent)."
)
@default_from(f"{W2V}.epochs", "--epochs", type=int, help="Training passes.")
@default_from(f"{W2V}.seed", "--seed", type=int, help="Random seed.")
@split_seed_option
@default_from(f"{W2V}.vector_size", "--vector-size", type=int, help="Vector dimensions.")
@default_from(f"{W2V}.window", "--window", type=int, help="Context window.")
@default_from(f"{W2V}.workers", "--workers", type=int, help="Training threads (1 = deterministic).")
@form_option
@stopwords_option
@quiet_option
@json_option
@user_errors
def train_w2v_cmd(
    dataset_root: Path,
    out_dir: Path,
    min_count: int,
    max_vocab: int,
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

    Rejected records go to OUT_DIR/rejects.jsonl (written only when there are any).
    """
    from toolkit.rejects import RejectsWriter
    from toolkit.stages.read import check_dataset_root, read_steps
    from toolkit.stages.text import train_word2vec_model
    from toolkit.text.word2vec import Word2VecConfig

    config = Word2VecConfig(
        vector_size=vector_size,
        window=window,
        min_count=min_count,
        max_vocab=max_vocab,
        epochs=epochs,
        seed=seed,
        workers=workers,
    )
    tokenize = TokenizeOptions(form=form, stopwords_file=stopwords_file)
    read = ReadOptions(split_seed=split_seed)
    check_dataset_root(dataset_root)
    refuse_model_dir(out_dir, "train-w2v")
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / REJECTS_FILE).unlink(missing_ok=True)  # this run's rejects only
    with RejectsWriter(out_dir / REJECTS_FILE) as rejects:
        steps = read_steps(dataset_root, rejects, read)
        rejected = rejects.count
    stage = train_word2vec_model(
        steps, out_dir, config, tokenize, split_seed=split_seed, progress=progress_enabled(quiet)
    )
    wv, recipes, sentences = stage.wv, stage.train_recipes, stage.train_steps
    info: dict[str, Any] = {
        "out_dir": str(out_dir),
        "fingerprint": wv.fingerprint,
        "tokenizer_fingerprint": wv.tokenizer_fingerprint,
        "train_recipes": recipes,
        "train_steps": sentences,
        "tokens": wv.stats.get("tokens"),
        "vocab_size": len(wv),
        "dim": wv.dim,
        "rejects": rejected,
        "rejects_file": str(out_dir / REJECTS_FILE) if rejected else None,
    }
    emit(
        info,
        as_json,
        f"word2vec {wv.fingerprint}: {len(wv)} words x {wv.dim} from {sentences} steps of {recipes} "
        f"training recipes -> {out_dir} ({_rejects_note(rejected, out_dir / REJECTS_FILE)})",
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
@split_seed_option
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
    reported (with the rest of the rejects) in OUT_DIR/rejects.jsonl (written only when there are any).
    """
    from toolkit.rejects import RejectsWriter
    from toolkit.stages.read import check_dataset_root, read_steps, steps_of_split
    from toolkit.stages.text import write_step_vectors
    from toolkit.text.word2vec import WordVectors

    read = ReadOptions(split_seed=split_seed)
    check_dataset_root(dataset_root)
    wv = WordVectors.load(model_dir, expected_fingerprint=expect_fingerprint)
    refuse_model_dir(out_dir, "step-vectors")
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / REJECTS_FILE).unlink(missing_ok=True)  # this run's rejects only
    with RejectsWriter(out_dir / REJECTS_FILE) as rejects:
        steps = read_steps(dataset_root, rejects, read)
        ids = [s.step_id for s in steps_of_split(steps, split)]
        result = write_step_vectors(
            steps, wv, out_dir, split=split, split_seed=split_seed, progress=progress_enabled(quiet)
        )
        rejects.extend(result.rejects)
        total_rejects = rejects.count
    info = {
        "out_dir": str(out_dir),
        "steps": len(ids),
        "vectors": len(result.ids),
        "no_token": sum(1 for r in result.rejects if r.reason.startswith("no in-vocabulary")),
        "rejects": total_rejects,
        "rejects_file": str(out_dir / REJECTS_FILE) if total_rejects else None,
        "word2vec_fingerprint": wv.fingerprint,
    }
    emit(
        info,
        as_json,
        f"{len(result.ids)} step vectors of {len(ids)} steps -> {out_dir} "
        f"({_rejects_note(total_rejects, out_dir / REJECTS_FILE)})",
    )


commands = [tokenize_cmd, train_w2v_cmd, step_vectors_cmd]
