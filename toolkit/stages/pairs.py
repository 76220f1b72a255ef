"""Text/image pairs: two vector sets matched by step id, and their train/val/test rows by the hash split."""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from toolkit.data.columns import StringColumn
from toolkit.data.splits import SPLITS, split_of
from toolkit.data.step_ids import SEPARATOR
from toolkit.errors import ToolkitError
from toolkit.fingerprint import check_fingerprint
from toolkit.text.tokens import TokenBags, has_token_bags, load_token_bags, load_unknown_counts
from toolkit.vectorset import Rows, VectorSet, align_rows, load_vector_set

TEXT_FP = "word2vec_fingerprint"
IMAGE_FP = "encoder_fingerprint"


@dataclass
class Pairs:
    """Aligned text/image rows of two vector sets, and the fingerprints of what produced them.

    ``text`` and ``image`` are in-memory arrays or :class:`~toolkit.vectorset.Rows` of the memory-mapped
    vector sets (what :func:`load_pairs` gives: nothing is copied until a stage reads a block).
    ``tokens`` are the token ids of the texts (row for row), where the text vector set has them.
    ``ids`` are a :class:`~toolkit.data.columns.StringColumn` when loaded (any sequence of step ids will do).
    ``unknown``: per pair, how many words of its text the Word2Vec model lacks (None for step vectors written
    before they were counted).
    """

    ids: Sequence[str]
    text: np.ndarray | Rows
    image: np.ndarray | Rows
    word2vec: str
    encoder: str
    unpaired_text: int = 0
    unpaired_image: int = 0
    tokens: TokenBags | None = None
    unknown: np.ndarray | None = None

    def subset(self, rows: np.ndarray) -> Pairs:
        def part(x: np.ndarray | Rows) -> np.ndarray | Rows:
            return x.subset(rows) if isinstance(x, Rows) else x[rows]

        ids = StringColumn.from_strings(self.ids).take(rows)
        tokens = None if self.tokens is None else self.tokens.take(rows)
        unknown = None if self.unknown is None else self.unknown[rows]
        return Pairs(
            ids, part(self.text), part(self.image), self.word2vec, self.encoder, 0, 0, tokens, unknown
        )

    def text_for(self, text_input: str) -> np.ndarray | Rows | TokenBags:
        """What a text tower reads (``TwoTower.text_input``): ``"tokens"`` the token ids (a bag tower),
        ``"mean"`` the step means."""
        if text_input == "mean":
            return self.text
        if self.tokens is None:
            raise ToolkitError(
                "this mapping's text tower reads token ids, but these step vectors have none: rewrite them "
                "with `jrs step-vectors` (or `jrs build`)"
            )
        return self.tokens

    def release(self) -> bool:
        """Give back the resident pages of the memory-mapped vector sets under ``text`` and ``image``
        (:func:`toolkit.memory.release_pages`), so the next stage does not carry what this one read;
        False when neither is memory-mapped. The data stays readable (pages come back from the file)."""
        from toolkit.memory import release_pages

        released = [release_pages(x.base) for x in (self.text, self.image) if isinstance(x, Rows)]
        return any(released)

    @property
    def groups(self) -> list[str]:
        """Recipe id of each pair (the part of ``<recipe_id>:<position>`` before the colon)."""
        return list(self.recipe_column())

    def recipe_column(self) -> StringColumn:
        """Recipe id of each pair, as a column."""
        return StringColumn.from_strings(self.ids).prefixes(SEPARATOR)

    def recipe_codes(self) -> tuple[np.ndarray, StringColumn]:
        """An int64 code per pair (pairs of one recipe share it) and the distinct recipe ids it numbers:
        8 bytes a pair instead of a recipe-id string."""
        return self.recipe_column().codes()

    @property
    def fingerprints(self) -> dict[str, str]:
        return {"word2vec": self.word2vec, "encoder": self.encoder}

    def __len__(self) -> int:
        return len(self.ids)


def _fingerprint_of(vs: VectorSet, key: str, path: str | Path) -> str:
    value = vs.meta.get(key)
    if not isinstance(value, str) or not value:
        raise ToolkitError(f"vector set {path} has no {key!r} in meta.json: cannot tell what produced it")
    return value


def _check_finite(ids: Sequence[str], x: np.ndarray | Rows, path: str | Path, block: int = 16384) -> None:
    bad = np.concatenate(
        [a + np.flatnonzero(~np.isfinite(x[a : a + block]).all(axis=1)) for a in range(0, len(ids), block)]
        or [np.zeros(0, dtype=np.int64)]
    )
    if bad.size:
        shown = ", ".join(ids[b] for b in bad[:5]) + (" ..." if bad.size > 5 else "")
        raise ToolkitError(f"vector set {path}: {bad.size} vectors contain NaN or infinite values ({shown})")


@dataclass(frozen=True)
class _PairedSets:
    """Two opened (memory-mapped) vector sets and their rows paired by id; no vector read yet."""

    text_dir: Path
    image_dir: Path
    text_vs: VectorSet
    image_vs: VectorSet
    word2vec: str
    encoder: str
    ids: StringColumn
    text_rows: np.ndarray
    image_rows: np.ndarray

    @classmethod
    def open(cls, text_dir: str | Path, image_dir: str | Path) -> _PairedSets:
        text_vs, image_vs = load_vector_set(text_dir), load_vector_set(image_dir)
        w2v = _fingerprint_of(text_vs, TEXT_FP, text_dir)
        enc = _fingerprint_of(image_vs, IMAGE_FP, image_dir)
        return cls(
            Path(text_dir), Path(image_dir), text_vs, image_vs, w2v, enc, *align_rows(text_vs, image_vs)
        )

    def pairs(self, rows: np.ndarray | None = None, *, check_images: bool = True) -> Pairs:
        """The pairs at positions ``rows`` (all when None), their vectors checked finite (the photo features
        only with ``check_images``)."""
        ids = self.ids if rows is None else self.ids.take(rows)
        text_rows = self.text_rows if rows is None else self.text_rows[rows]
        image_rows = self.image_rows if rows is None else self.image_rows[rows]
        text, image = Rows(self.text_vs.vectors, text_rows), Rows(self.image_vs.vectors, image_rows)
        _check_finite(ids, text, self.text_dir)
        if check_images:
            _check_finite(ids, image, self.image_dir)
        tokens = (
            load_token_bags(self.text_dir, rows=len(self.text_vs.ids)).take(text_rows)
            if has_token_bags(self.text_dir)
            else None
        )
        counts = load_unknown_counts(self.text_dir, len(self.text_vs.ids))
        unknown = None if counts is None else counts[text_rows]
        unpaired = (len(self.text_vs.ids) - len(self.ids), len(self.image_vs.ids) - len(self.ids))
        return Pairs(
            ids,
            text,
            image,
            self.word2vec,
            self.encoder,
            *(unpaired if rows is None else (0, 0)),
            tokens,
            unknown,
        )


def load_pairs(text_dir: str | Path, image_dir: str | Path) -> Pairs:
    """Load a text and an image vector set and pair their rows by id (text set order)."""
    paired = _PairedSets.open(text_dir, image_dir)
    if len(paired.ids) < 2:
        raise ToolkitError(
            f"only {len(paired.ids)} ids are in both {text_dir} ({len(paired.text_vs.ids)} vectors) and "
            f"{image_dir} ({len(paired.image_vs.ids)} vectors): at least 2 text/image pairs are needed"
        )
    return paired.pairs()


def _split_codes(ids: Sequence[str], split_seed: int) -> np.ndarray:
    """Per step id, the position in ``SPLITS`` of its recipe's split (int8)."""
    codes, recipes = StringColumn.from_strings(ids).prefixes(SEPARATOR).codes()
    split_code = np.array([SPLITS.index(split_of(r, seed=split_seed)) for r in recipes], dtype=np.int8)
    return split_code[codes]


def split_pairs(pairs: Pairs, split_seed: int = 0) -> dict[str, Pairs]:
    """The pairs of each split (``train``, ``val``, ``test``) by the seeded hash split of their recipe."""
    where = _split_codes(pairs.ids, split_seed)
    return {s: pairs.subset(np.flatnonzero(where == n)) for n, s in enumerate(SPLITS)}


def sample_pairs(
    text_dir: str | Path,
    image_dir: str | Path,
    split: str,
    size: int,
    *,
    split_seed: int = 0,
    seed: int = 0,
) -> Pairs:
    """A seeded sample of at most ``size`` pairs of one split, the same rows as sampling
    ``split_pairs(load_pairs(...))[split]`` with ``np.random.default_rng(seed).choice`` (in pair order).

    Only ids are read for all pairs; vectors and token ids only for the sampled rows (checked finite), so the
    cost is that of ``size`` rows whatever the collection's size."""
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; expected one of {SPLITS}")
    paired = _PairedSets.open(text_dir, image_dir)
    rows = np.flatnonzero(_split_codes(paired.ids, split_seed) == SPLITS.index(split))
    if len(rows) > size:
        rows = rows[np.sort(np.random.default_rng(seed).choice(len(rows), size, replace=False))]
    return paired.pairs(rows, check_images=False)


def check_same_sources(train: Pairs, val: Pairs) -> None:
    """Refuse validation pairs from other models, or sharing a recipe with the training pairs."""
    check_fingerprint("word2vec", train.word2vec, val.word2vec, "training and validation text vectors differ")
    check_fingerprint("encoder", train.encoder, val.encoder, "training and validation image features differ")
    overlap = set(train.recipe_codes()[1]) & set(val.recipe_codes()[1])
    if overlap:
        raise ToolkitError(
            f"{len(overlap)} recipes are in both the training and validation sets "
            f"(e.g. {sorted(overlap)[0]}): validation would be optimistic"
        )


def check_held_out(
    pairs: Pairs, training: Collection[str], trained_on: str, what: str, *, allow: bool = False
) -> str | None:
    """Refuse ``pairs`` (``what`` names them) holding recipes a mapping was trained on (``training``;
    ``trained_on`` says where they come from), as :func:`check_same_sources` refuses them for validation: the
    metrics would be optimistic. ``allow``: return that as a warning instead (None when there are none)."""
    recipes = pairs.recipe_codes()[1]
    seen = sorted(r for r in recipes if r in training)
    if not seen:
        return None
    message = (
        f"{len(seen)} of the {len(recipes)} recipes of {what} are among the mapping's training recipes "
        f"({trained_on}; e.g. {seen[0]}): the metrics are optimistic"
    )
    if allow:
        return message
    raise ToolkitError(
        f"{message}; evaluate held-out pairs (e.g. `jrs step-vectors ... --split test`) or pass --include-training"
    )
