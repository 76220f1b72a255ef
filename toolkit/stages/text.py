"""Text stages: tokenize, train Word2Vec on the training split, write the step vectors."""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from toolkit.errors import ConfigError, ToolkitError, given
from toolkit.progress import track
from toolkit.seeding import check_optional_seed, check_seed
from toolkit.stages.read import StepRecord, check_split, recipe_count, step_columns, steps_of_split

log = logging.getLogger(__name__)

FORMS = ("lemma", "surface")


@dataclass(frozen=True)
class TokenizeOptions:
    """How step texts become Word2Vec tokens: UniDic lemmas or surface forms, minus a stopword file."""

    form: str = "lemma"
    stopwords_file: Path | None = None

    def __post_init__(self) -> None:
        if self.form not in FORMS:
            raise ConfigError(f"tokenizer form must be one of {', '.join(FORMS)}, got {self.form!r}")
        if self.stopwords_file is not None and not isinstance(self.stopwords_file, (str, os.PathLike)):
            raise ConfigError(f"stopwords_file must be None or a path, got {given(self.stopwords_file)}")
        if self.stopwords_file is not None and not Path(self.stopwords_file).is_file():
            raise ConfigError(f"stopword file {self.stopwords_file} does not exist")

    def tokenizer(self) -> Any:
        """A :class:`~toolkit.text.tokenizer.Tokenizer` with this configuration."""
        from toolkit.text.tokenizer import Tokenizer, TokenizerConfig, load_stopwords

        stopwords = load_stopwords(self.stopwords_file) if self.stopwords_file else frozenset()
        return Tokenizer(TokenizerConfig(form=self.form, stopwords=stopwords))  # type: ignore[arg-type]


def tokenize_texts(
    texts: Sequence[str], options: TokenizeOptions | None = None, *, all_tokens: bool = False
) -> list[dict[str, Any]]:
    """``{"text", "tokens"}`` per text: the filtered Word2Vec tokens, or every surface token (``all_tokens``)."""
    tokenizer = (options or TokenizeOptions()).tokenizer()
    tokenize = tokenizer.tokenize_all if all_tokens else tokenizer.tokenize
    return [{"text": t, "tokens": tokenize(t)} for t in texts]


@dataclass
class Word2VecStage:
    """What :func:`train_word2vec_model` produced."""

    wv: Any  # toolkit.text.word2vec.WordVectors
    train_recipes: int
    train_steps: int


def train_word2vec_model(
    steps: Sequence[StepRecord],
    out_dir: str | Path,
    config: Any = None,
    tokenize: TokenizeOptions | None = None,
    *,
    split_seed: int | None = None,
    progress: bool = False,
) -> Word2VecStage:
    """Train Word2Vec (a ``Word2VecConfig``) on the tokens of the TRAINING-split steps; save it in ``out_dir``
    with ``split_seed``, the seed that split ``steps`` (later stages refuse another: see
    :func:`check_split_seed`)."""
    from toolkit.text.corpus import EncodedCorpus
    from toolkit.text.word2vec import Word2VecConfig, train_word2vec

    config = config or Word2VecConfig()
    split_seed = check_optional_seed("split seed", split_seed)  # recorded with the model (JSON)
    tokenizer = (tokenize or TokenizeOptions()).tokenizer()
    train = steps_of_split(steps, "train")
    if not train:
        raise ToolkitError("no training-split steps to train Word2Vec on")
    sentences = EncodedCorpus()  # 4 bytes per token, not a list of token strings
    _, texts = step_columns(train)
    for text in track(texts, progress, "tokenizing training steps", "step"):
        sentences.add(tokenizer.tokenize(text))
    wv = train_word2vec(sentences, config, tokenizer_config=tokenizer.config)
    if split_seed is not None:
        wv.stats["split_seed"] = split_seed
    wv.save(out_dir)
    recipes = recipe_count(train)
    log.info("word2vec: %d words from %d training steps (%s)", len(wv), len(sentences), wv.fingerprint)
    return Word2VecStage(wv, recipes, len(sentences))


def check_split_seed(wv: Any, split_seed: int, what: str) -> None:
    """Refuse ``split_seed`` when Word2Vec ``wv`` was trained on another seed's training split: its words then
    come from recipes this split holds out, and the held-out figures would be too good. Word2Vec models that
    do not record their seed (trained before they did) pass."""
    trained = (wv.stats or {}).get("split_seed")
    if trained is not None and trained != split_seed:
        raise ConfigError(
            f"{what} uses split seed {split_seed}, but the Word2Vec model was trained on the training split of "
            f"seed {trained}: its test recipes would leak in; pass --split-seed {trained} or retrain Word2Vec"
        )


def write_step_vectors(
    steps: Sequence[StepRecord],
    wv: Any,
    out_dir: str | Path,
    *,
    split: str = "all",
    split_seed: int = 0,
    progress: bool = False,
) -> Any:
    """Mean Word2Vec vector of every step of ``split`` as a vector set in ``out_dir``; returns the
    :class:`~toolkit.text.step_vectors.StepVectorResult` (its rejects: steps with no known token; its
    vectors: the memory-mapped file, never the whole set in memory)."""
    from toolkit.text.step_vectors import write_step_vectors_to
    from toolkit.text.tokenizer import Tokenizer

    check_split(split)
    split_seed = check_seed("split seed", split_seed)  # recorded with the vectors (JSON)
    if split != "all":  # a split's vectors: held out (or not) the way the Word2Vec model was
        check_split_seed(wv, split_seed, f"step vectors of the {split} split")
    chosen = steps_of_split(steps, split)
    if not chosen:
        raise ConfigError(f"no steps to encode (split {split})")
    tokenizer = Tokenizer(wv.tokenizer_config)
    ids, texts = step_columns(chosen)
    meta = {"split": split, "split_seed": split_seed}
    result = write_step_vectors_to(out_dir, ids, texts, tokenizer, wv, meta, progress=progress)
    log.info("step vectors: %d of %d steps -> %s", len(result.ids), len(chosen), out_dir)
    return result
