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

import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from itertools import chain, repeat
from pathlib import Path
from typing import Any

import numpy as np

from toolkit.errors import ToolkitError
from toolkit.fingerprint import check_fingerprint
from toolkit.progress import track
from toolkit.rejects import Reject
from toolkit.text.tokenizer import Tokenizer
from toolkit.text.tokens import TokenBags, save_token_bags
from toolkit.text.word2vec import WordVectors
from toolkit.torch_threads import torch_threads as _torch_threads
from toolkit.vectorset import save_vector_set

STAGE = "text"
NO_TOKEN_REASON = "no in-vocabulary token after filtering"
#: Steps tokenised before their tokens become ids (token strings never pile up for a whole collection).
TOKENIZE_CHUNK = 8192
#: Output bytes per embedding_bag call in :func:`mean_vectors`.
CHUNK_BYTES = 2_500_000


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
    flat_ids: np.ndarray, offsets: np.ndarray, matrix: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Mean of ``matrix[flat_ids[offsets[i]:offsets[i+1]]]`` per step: ``(float32 [N, D], empty_mask [N])``.

    Rows of empty steps are zero and flagged in ``empty_mask``; callers must not use them as vectors.
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
    out = np.empty((n, dim), dtype=np.float32)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # read-only (memory-mapped) arrays: never written to
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
    return out, empty


@dataclass
class StepVectorResult:
    """Vectors of the usable steps (row ``i`` belongs to ``ids[i]``), their token ids (``tokens``: bag ``i``
    holds the vocabulary rows row ``i`` is the mean of) and a reject per unusable step."""

    ids: list[str]
    vectors: np.ndarray
    rejects: list[Reject] = field(default_factory=list)
    tokens: TokenBags | None = None

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


def step_vectors(
    ids: Sequence[str],
    texts: Sequence[str],
    tokenizer: Tokenizer,
    wv: WordVectors,
    *,
    progress: bool = False,
) -> StepVectorResult:
    """Vectors for steps ``ids`` with ``texts``; steps without a known token (or with a duplicate id) are rejected.

    ``progress`` shows a bar of the steps tokenised.
    """
    if len(ids) != len(texts):
        raise ValueError(f"{len(ids)} ids but {len(texts)} texts")
    _check_tokenizer(tokenizer, wv)
    rejects: list[Reject] = []
    no_token: list[Reject] = []  # reported after the other rejects, as one list
    keep_ids: list[str] = []
    id_parts: list[np.ndarray] = []
    length_parts: list[np.ndarray] = []
    chunk_ids: list[str] = []
    chunk_tokens: list[list[str]] = []
    seen: set[str] = set()

    def flush() -> None:
        # token strings live for one chunk only: what stays is int32 ids (memory flat in the step count)
        flat, offsets = encode_token_ids(chunk_tokens, wv.index)
        lengths = np.diff(offsets)
        for row in np.flatnonzero(lengths == 0):
            reason = f"{NO_TOKEN_REASON}: {_show_tokens(chunk_tokens[row])}"
            no_token.append(Reject(chunk_ids[row], STAGE, reason))
        keep_ids.extend(i for i, n in zip(chunk_ids, lengths.tolist(), strict=True) if n)
        id_parts.append(flat.astype(np.int32))
        length_parts.append(lengths[lengths > 0])
        chunk_ids.clear()
        chunk_tokens.clear()

    for step_id, text in track(
        zip(ids, texts, strict=True), progress, "tokenizing steps", "step", total=len(ids)
    ):
        if step_id in seen:
            rejects.append(Reject(step_id, STAGE, "duplicate step id; the first occurrence is kept"))
            continue
        seen.add(step_id)
        if not isinstance(text, str):
            rejects.append(Reject(step_id, STAGE, f"step text must be a string, got {type(text).__name__}"))
            continue
        chunk_ids.append(step_id)
        chunk_tokens.append(tokenizer.tokenize(text))
        if len(chunk_ids) >= TOKENIZE_CHUNK:
            flush()
    flush()
    lengths = np.concatenate(length_parts)
    offsets = np.zeros(len(lengths) + 1, dtype=np.int64)
    np.cumsum(lengths, out=offsets[1:])
    bags = TokenBags(np.concatenate(id_parts), offsets)
    vectors, _ = mean_vectors(bags.ids, bags.offsets, wv.matrix)
    return StepVectorResult(keep_ids, vectors, rejects + no_token, bags)


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
    return save_vector_set(directory, result.ids, result.vectors, full_meta)
