"""Step vectors: the mean of a step's in-vocabulary (filtered) token vectors.

Two stages, so each can be measured and tested alone:

* :func:`encode_token_ids` (Python, dict lookups done in C): token lists -> CSR-style ``flat_ids`` and
  ``offsets`` (``offsets[i]:offsets[i+1]`` are the known tokens of step ``i``; ``len(offsets) == N + 1``).
* :func:`mean_vectors` (vectorised, ``torch.nn.functional.embedding_bag``): the means, plus a mask of
  steps with no known token.

A step with no usable token is never given a zero vector: :func:`step_vectors` leaves it out and reports
it as a :class:`~toolkit.rejects.Reject` (stage ``text``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from itertools import chain, repeat
from pathlib import Path
from typing import Any

import numpy as np

from toolkit.data.columns import StringColumn
from toolkit.errors import ToolkitError
from toolkit.fingerprint import check_fingerprint
from toolkit.memory import release_pages
from toolkit.progress import track
from toolkit.quiet import silenced
from toolkit.rejects import Reject
from toolkit.text.tokenizer import NO_WORD_REASON, Tokenizer
from toolkit.text.tokens import TokenBags, save_token_bags, save_unknown_counts
from toolkit.text.word2vec import WordVectors
from toolkit.torch_threads import torch_threads as _torch_threads
from toolkit.vectorset import create_vectors, save_vector_set

STAGE = "text"
NO_TOKEN_REASON = "no in-vocabulary token after filtering"
#: Steps tokenised before their tokens become ids (token strings never pile up for a whole collection).
TOKENIZE_CHUNK = 8192
#: Output bytes per embedding_bag call in :func:`mean_vectors`.
CHUNK_BYTES = 2_500_000
#: A memory-mapped output's pages are given back every this many chunks (~64 MB).
RELEASE_EVERY_CHUNKS = 26


def encode_token_ids(
    token_lists: Sequence[Sequence[str]], vocab_index: Mapping[str, int]
) -> tuple[np.ndarray, np.ndarray]:
    """Map tokens to vocabulary rows, dropping unknown ones: ``(flat_ids int64, offsets int64 [N + 1])``."""
    if not isinstance(token_lists, Sequence):
        token_lists = list(token_lists)
    n = len(token_lists)
    lengths = np.fromiter(map(len, token_lists), dtype=np.int64, count=n)
    total = int(lengths.sum())
    get = vocab_index.get
    ids = np.fromiter(map(get, chain.from_iterable(token_lists), repeat(-1)), dtype=np.int64, count=total)
    known = ids >= 0
    offsets = np.zeros(n + 1, dtype=np.int64)
    if known.all():
        np.cumsum(lengths, out=offsets[1:])
        return ids, offsets
    rows = np.repeat(np.arange(n, dtype=np.int64), lengths)[known]
    np.cumsum(np.bincount(rows, minlength=n), out=offsets[1:])
    return ids[known], offsets


def _check_csr(flat_ids: np.ndarray, offsets: np.ndarray, rows: int) -> None:
    if flat_ids.ndim != 1 or offsets.ndim != 1 or len(offsets) < 1:
        raise ValueError("flat_ids and offsets must be 1-D and offsets non-empty")
    if offsets[0] != 0 or offsets[-1] != len(flat_ids) or (np.diff(offsets) < 0).any():
        raise ValueError("offsets must start at 0, be non-decreasing and end at len(flat_ids)")
    if len(flat_ids) and (flat_ids.min() < 0 or flat_ids.max() >= rows):
        raise ValueError(f"token ids must lie in [0, {rows})")


def mean_vectors(
    flat_ids: np.ndarray, offsets: np.ndarray, matrix: np.ndarray, out: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Mean of ``matrix[flat_ids[offsets[i]:offsets[i+1]]]`` per step: ``(float32 [N, D], empty_mask [N])``.

    Rows of empty steps are zero and flagged in ``empty_mask``; callers must not use them as vectors.
    ``out`` (float32 ``[N, D]``, e.g. a memory-mapped vector file) receives the means; the pages of a
    memory-mapped ``out`` are given back as it fills, so N never has to fit in memory.
    Output is filled in chunks of a few MB, which stay in cache for the division and the copy; ``sum``
    then dividing is faster on CPU than ``mode="mean"`` (same result). It runs on one torch thread: the
    work is memory-bound, and OpenMP barriers per chunk made it ~30x slower on a shared, busy CPU.
    """
    import torch
    import torch.nn.functional as F

    flat_ids = np.ascontiguousarray(flat_ids, dtype=np.int64)
    offsets = np.ascontiguousarray(offsets, dtype=np.int64)
    matrix = np.ascontiguousarray(matrix, dtype=np.float32)
    _check_csr(flat_ids, offsets, matrix.shape[0])
    n, dim = len(offsets) - 1, matrix.shape[1]
    empty = offsets[1:] == offsets[:-1]
    if out is None:
        out = np.empty((n, dim), dtype=np.float32)
    elif out.shape != (n, dim) or out.dtype != np.float32 or not out.flags.c_contiguous:
        raise ValueError(f"out must be a C-contiguous float32 array of shape {(n, dim)}, got {out.shape}")
    with silenced(UserWarning, "The given NumPy array is not writable"):  # memory-mapped: never written to
        weight = torch.from_numpy(matrix)
    ids_t, offsets_t, out_t = torch.from_numpy(flat_ids), torch.from_numpy(offsets), torch.from_numpy(out)
    counts = torch.from_numpy(np.maximum(np.diff(offsets), 1).astype(np.float32)).unsqueeze(1)
    chunk = max(256, CHUNK_BYTES // (4 * max(dim, 1)))
    with _torch_threads(1), torch.no_grad():
        for a in range(0, n, chunk):
            b = min(a + chunk, n)
            lo, hi = int(offsets[a]), int(offsets[b])
            part = F.embedding_bag(
                ids_t[lo:hi], weight, offsets_t[a : b + 1] - lo, mode="sum", include_last_offset=True
            )
            out_t[a:b] = part.div_(counts[a:b])
            if (a // chunk) % RELEASE_EVERY_CHUNKS == RELEASE_EVERY_CHUNKS - 1:
                release_pages(out)  # False (nothing to do) unless memory-mapped
    release_pages(out)
    return out, empty


@dataclass
class StepVectorResult:
    """Vectors of the usable steps (row ``i`` belongs to ``ids[i]``), their token ids (``tokens``: bag ``i``
    holds the vocabulary rows row ``i`` is the mean of) and a reject per unusable step."""

    ids: Sequence[str]
    vectors: np.ndarray
    rejects: list[Reject] = field(default_factory=list)
    tokens: TokenBags | None = None
    #: per row, how many of the step's words the Word2Vec model lacks
    unknown: np.ndarray | None = None

    @property
    def rejected_ids(self) -> list[str]:
        return [r.record for r in self.rejects]


def _check_tokenizer(tokenizer: Tokenizer, wv: WordVectors) -> None:
    check_fingerprint(
        "tokenizer",
        wv.tokenizer_fingerprint,
        tokenizer.fingerprint,
        "tokenize with the configuration the Word2Vec model was trained with",
    )


def _show_tokens(tokens: Sequence[str], limit: int = 20) -> str:
    if not tokens:
        return "(none)"
    shown = " ".join(tokens[:limit])
    return shown + (f" ... ({len(tokens)} tokens)" if len(tokens) > limit else "")


@dataclass
class StepTokens:
    """The usable steps' ids and token ids (bag ``i`` belongs to ``ids[i]``), and a reject per unusable step."""

    ids: StringColumn
    tokens: TokenBags
    rejects: list[Reject]
    #: per usable step, how many of its words the Word2Vec model lacks (dropped from its bag)
    unknown: np.ndarray | None = None


def tokenize_steps(
    ids: Sequence[str],
    texts: Sequence[str],
    tokenizer: Tokenizer,
    wv: WordVectors,
    *,
    progress: bool = False,
) -> StepTokens:
    """Token ids of steps ``ids`` with ``texts``; steps without a known token (or with a duplicate id, or a
    text that is not a string) are rejected. Token strings live for one chunk of steps: what stays is int32
    ids and the kept step ids as one string column. ``progress`` shows a bar of the steps tokenised."""
    if len(ids) != len(texts):
        raise ValueError(f"{len(ids)} ids but {len(texts)} texts")
    _check_tokenizer(tokenizer, wv)
    column = ids if isinstance(ids, StringColumn) else StringColumn.from_strings(ids)
    repeated = column.repeated()
    keep = np.zeros(len(column), dtype=bool)
    rejects: list[Reject] = []
    no_token: list[Reject] = []  # reported after the other rejects, as one list
    id_parts: list[np.ndarray] = []
    length_parts: list[np.ndarray] = []
    unknown_parts: list[np.ndarray] = []
    chunk_rows: list[int] = []
    chunk_tokens: list[list[str]] = []

    def flush() -> None:
        flat, offsets = encode_token_ids(chunk_tokens, wv.index)
        lengths = np.diff(offsets)
        rows = np.asarray(chunk_rows, dtype=np.int64)
        for k in np.flatnonzero(lengths == 0).tolist():
            reason = (
                f"{NO_TOKEN_REASON}: {_show_tokens(chunk_tokens[k]) if chunk_tokens[k] else NO_WORD_REASON}"
            )
            no_token.append(Reject(column[int(rows[k])], STAGE, reason))
        keep[rows[lengths > 0]] = True
        id_parts.append(flat.astype(np.int32))
        length_parts.append(lengths[lengths > 0])
        total = np.fromiter(map(len, chunk_tokens), dtype=np.int64, count=len(chunk_tokens))
        unknown_parts.append((total - lengths)[lengths > 0].astype(np.int32))
        chunk_rows.clear()
        chunk_tokens.clear()

    for row, text in enumerate(track(texts, progress, "tokenizing steps", "step", total=len(texts))):
        if repeated[row]:
            rejects.append(Reject(column[row], STAGE, "duplicate step id; the first occurrence is kept"))
            continue
        if not isinstance(text, str):
            reason = f"step text must be a string, got {type(text).__name__}"
            rejects.append(Reject(column[row], STAGE, reason))
            continue
        chunk_rows.append(row)
        chunk_tokens.append(tokenizer.tokenize(text))
        if len(chunk_rows) >= TOKENIZE_CHUNK:
            flush()
    flush()
    lengths = np.concatenate(length_parts)
    offsets = np.zeros(len(lengths) + 1, dtype=np.int64)
    np.cumsum(lengths, out=offsets[1:])
    bags = TokenBags(np.concatenate(id_parts), offsets)
    return StepTokens(column.take(keep), bags, rejects + no_token, np.concatenate(unknown_parts))


def step_vectors(
    ids: Sequence[str],
    texts: Sequence[str],
    tokenizer: Tokenizer,
    wv: WordVectors,
    *,
    progress: bool = False,
) -> StepVectorResult:
    """Vectors for steps ``ids`` with ``texts`` (in memory); see :func:`tokenize_steps` for what is rejected.

    ``progress`` shows a bar of the steps tokenised. :func:`write_step_vectors_to` writes them to disk
    without holding them.
    """
    st = tokenize_steps(ids, texts, tokenizer, wv, progress=progress)
    vectors, _ = mean_vectors(st.tokens.ids, st.tokens.offsets, wv.matrix)
    return StepVectorResult(st.ids, vectors, st.rejects, st.tokens, st.unknown)


def query_vector(text: str, tokenizer: Tokenizer, wv: WordVectors) -> np.ndarray:
    """The mean vector of a query's known tokens; :class:`ToolkitError` listing the tokens when none is known."""
    _check_tokenizer(tokenizer, wv)
    tokens = tokenizer.tokenize(text)
    flat, offsets = encode_token_ids([tokens], wv.index)
    vectors, empty = mean_vectors(flat, offsets, wv.matrix)
    if empty[0]:
        raise ToolkitError(
            f"query {text!r} has {NO_TOKEN_REASON} (tokens: {_show_tokens(tokens)}); try other words"
        )
    return vectors[0]


def save_step_vectors(
    directory: str | Path, result: StepVectorResult, wv: WordVectors, meta: dict[str, Any] | None = None
) -> Path:
    """Write ``result`` as a vector set (kind ``text``) naming the Word2Vec model and tokenizer, with its
    token ids beside it (:mod:`toolkit.text.tokens`) when it has them."""
    full_meta = {
        **(meta or {}),
        "kind": "text",
        "word2vec_fingerprint": wv.fingerprint,
        "tokenizer_fingerprint": wv.tokenizer_fingerprint,
        "rejected": len(result.rejects),
    }
    if result.tokens is not None:
        if len(result.tokens) != len(result.ids):
            raise ValueError(f"{len(result.tokens)} token bags for {len(result.ids)} step vectors")
        save_token_bags(directory, result.tokens)
    if result.unknown is not None:
        if len(result.unknown) != len(result.ids):
            raise ValueError(f"{len(result.unknown)} unknown-word counts for {len(result.ids)} step vectors")
        save_unknown_counts(directory, result.unknown)
    return save_vector_set(directory, result.ids, result.vectors, full_meta)


def write_step_vectors_to(
    directory: str | Path,
    ids: Sequence[str],
    texts: Sequence[str],
    tokenizer: Tokenizer,
    wv: WordVectors,
    meta: dict[str, Any] | None = None,
    *,
    progress: bool = False,
) -> StepVectorResult:
    """:func:`step_vectors` written as a vector set in ``directory`` (as :func:`save_step_vectors`), the
    means computed straight into the memory-mapped ``vectors.npy``: the result's ``vectors`` is that map,
    and memory holds only the token ids, whatever the number of steps."""
    st = tokenize_steps(ids, texts, tokenizer, wv, progress=progress)
    out = create_vectors(directory, len(st.ids), wv.dim)
    mean_vectors(st.tokens.ids, st.tokens.offsets, wv.matrix, out=out)
    result = StepVectorResult(st.ids, out, st.rejects, st.tokens, st.unknown)
    save_step_vectors(directory, result, wv, meta)
    return result
