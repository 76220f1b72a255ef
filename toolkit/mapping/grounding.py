"""Word grounding: which photos each word of the collection shows, for queries with a word the model lacks.

A query of a thing never trained on ("赤い丸い X", X unknown to Word2Vec) is its other words alone, and the
towers score such a bag close to linearly: a red square and a blue circle each get half the credit of a red
circle. After training, one L2-regularised logistic classifier per word (words of at least
:data:`MIN_RECORDS` training recipes, the :data:`MAX_WORDS` most frequent) learns from the shared-space photo
vectors of the training pairs (centred, as an index stores them) whether the photo's *recipe* uses the word:
the words of all its steps, since a step names only some of what its photo shows. Such a query's kNN
candidates (the :data:`DEPTH` best) are then reranked by ``cos + share * sum_w log sigmoid(logit_w)`` over its
grounded words: a product of experts, so that a photo must look red *and* round.

``share`` is picked on the validation pairs from :data:`SHARES` (mean reciprocal rank of each pair's photo
among the validation photos; the pairs whose text has a word the Word2Vec model lacks are the queries, where
the step vectors count them): 0, no reranking, where grounding does not rank such held-out pairs better, or
where fewer than :data:`MIN_VAL_PAIRS` have one (recipe collections; docs/quality-log.md, 2026-12-07). The classifiers are buffers of the
mapping: saved with it and part of its fingerprint.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

from toolkit.text.tokens import TokenBags

log = logging.getLogger(__name__)

#: Inverse L2 strength of each word's classifier (scikit-learn's ``C``: the penalty is ``|w|^2 / (2 C n)``
#: per photo).
C = 0.01
#: Most words grounded (the most frequent by recipe count), and the fewest training recipes a word needs.
MAX_WORDS, MIN_RECORDS = 2048, 2
#: Most training photos the classifiers are fitted on (a seeded sample beyond that).
MAX_PHOTOS = 20_000
#: Words fitted together (one ``[photos, BLOCK]`` logit matrix at a time).
BLOCK = 256
#: Shares of the grounding score tried on the validation pairs, and the fewest pairs that pick one.
SHARES: tuple[float, ...] = (0.0, 0.01, 0.02, 0.04, 0.08, 0.16)
MIN_VAL_PAIRS = 20
#: Validation queries and photos the share is picked with, at most.
MAX_VAL = 2000
#: kNN candidates a grounded query reranks (at least its ``k``).
DEPTH = 100


class WordGrounding(nn.Module):
    """Per-word logistic classifiers on shared-space photo vectors (buffers: ``words``, the sorted Word2Vec
    token ids grounded; ``weight`` ``[words, dim]``; ``bias``), and the ``share`` queries use them with."""

    words: torch.Tensor
    weight: torch.Tensor
    bias: torch.Tensor

    def __init__(self, n_words: int, dim: int, share: float = 0.0) -> None:
        super().__init__()
        if n_words < 1 or dim < 1 or not 0.0 <= share <= 1.0:
            raise ValueError(f"bad word grounding: {n_words} words, {dim} dims, share {share}")
        self.share = float(share)
        self.register_buffer("words", torch.zeros(n_words, dtype=torch.int64))
        self.register_buffer("weight", torch.zeros(n_words, dim))
        self.register_buffer("bias", torch.zeros(n_words))

    def set(self, words: np.ndarray, weight: np.ndarray, bias: np.ndarray) -> None:
        order = np.argsort(words, kind="stable")
        self.words.copy_(torch.from_numpy(np.asarray(words, np.int64)[order]))
        self.weight.copy_(torch.from_numpy(np.asarray(weight, np.float32)[order]))
        self.bias.copy_(torch.from_numpy(np.asarray(bias, np.float32)[order]))

    def rows_of(self, token_ids: Sequence[int] | np.ndarray) -> np.ndarray:
        """The classifier rows of the distinct grounded words among ``token_ids`` (may be empty)."""
        words = self.words.cpu().numpy()
        ids = np.unique(np.asarray(token_ids, dtype=np.int64))
        at = np.searchsorted(words, ids)
        found = at < len(words)
        found[found] = words[at[found]] == ids[found]
        return at[found]

    def log_probs(self, token_ids: Sequence[int] | np.ndarray, photos: np.ndarray) -> np.ndarray:
        """``sum_w log sigmoid(logit_w(photo))`` over the grounded words among ``token_ids``, for each row of
        ``photos`` (shared-space photo vectors as the index stores them, centred); zeros with none."""
        rows = self.rows_of(token_ids)
        photos = np.asarray(photos, np.float32)
        if not len(rows):
            return np.zeros(len(photos), np.float32)
        w, b = self.weight.cpu().numpy()[rows], self.bias.cpu().numpy()[rows]
        return -np.logaddexp(0.0, -(photos @ w.T + b)).sum(axis=1)


def centred_rows(x: np.ndarray) -> np.ndarray:
    """Rows centred on their own mean as an index centres its photo vectors (:func:`toolkit.index.centring.
    centred`: moved, then unit length again)."""
    from toolkit.index.centring import centred

    x = np.asarray(x, np.float32)
    return centred(x, x.mean(axis=0))


def recipe_words(bags: TokenBags, groups: np.ndarray) -> tuple[np.ndarray, list[np.ndarray]]:
    """``(codes, words)``: each pair's recipe number and, per recipe number, the distinct token ids of all
    its steps."""
    codes, inverse = np.unique(np.asarray(groups), return_inverse=True)
    members: list[list[np.ndarray]] = [[] for _ in range(len(codes))]
    for row in range(len(bags)):
        members[inverse[row]].append(np.asarray(bags.ids[bags.offsets[row] : bags.offsets[row + 1]]))
    words = [np.unique(np.concatenate(m)).astype(np.int64) if m else np.zeros(0, np.int64) for m in members]
    return inverse, words


def grounded_words(words_of_recipe: list[np.ndarray]) -> np.ndarray:
    """Token ids of at least :data:`MIN_RECORDS` recipes (not all of them), the :data:`MAX_WORDS` most
    frequent (ties: the smaller id)."""
    if not words_of_recipe:
        return np.zeros(0, np.int64)
    ids, counts = np.unique(np.concatenate(words_of_recipe), return_counts=True)
    keep = (counts >= MIN_RECORDS) & (counts < len(words_of_recipe))
    ids, counts = ids[keep], counts[keep]
    order = np.lexsort((ids, -counts))[:MAX_WORDS]
    return np.sort(ids[order])


def fit_classifiers(
    x: np.ndarray, recipe_of: np.ndarray, words_of_recipe: list[np.ndarray], words: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """One L2 logistic classifier per word of ``words`` (sorted ids; ``[V, D]`` weights, ``[V]`` biases) from
    the rows of ``x`` (standardised photo vectors; row ``i`` of recipe ``recipe_of[i]``) to "the row's recipe
    uses the word"; L-BFGS from zero (deterministic). Labels are made one block of words at a time."""
    n = x.shape[0]
    features = torch.from_numpy(np.ascontiguousarray(x, np.float32))
    penalty = 1.0 / (2.0 * C * n)
    words = np.asarray(words, np.int64)
    # (recipe, column) of every grounded word of every recipe
    recipe = np.repeat(np.arange(len(words_of_recipe)), [len(w) for w in words_of_recipe])
    flat = np.concatenate(words_of_recipe) if words_of_recipe else np.zeros(0, np.int64)
    column = np.searchsorted(words, flat)
    found = column < len(words)
    found[found] = words[column[found]] == flat[found]
    # only the recipes of these rows, numbered anew (labels are [their recipes, block] at a time)
    used, row_recipe = np.unique(np.asarray(recipe_of), return_inverse=True)
    keep = found & np.isin(recipe, used)
    recipe, column = np.searchsorted(used, recipe[keep]), column[keep]
    weights, biases = [], []
    for start in range(0, len(words), BLOCK):
        width = min(BLOCK, len(words) - start)
        labels = np.zeros((len(used), width), dtype=np.float32)
        inside = (column >= start) & (column < start + width)
        labels[recipe[inside], column[inside] - start] = 1.0
        w, b = _fit_block(features, torch.from_numpy(labels[row_recipe]), penalty)
        weights.append(w)
        biases.append(b)
    return np.concatenate(weights), np.concatenate(biases)


def _fit_block(features: torch.Tensor, target: torch.Tensor, penalty: float) -> tuple[np.ndarray, np.ndarray]:
    """L2 logistic classifiers of the columns of ``target`` (0/1) on ``features``, fitted together."""
    n = features.shape[0]
    w = torch.zeros(target.shape[1], features.shape[1], requires_grad=True)
    b = torch.zeros(target.shape[1], requires_grad=True)
    opt = torch.optim.LBFGS(
        [w, b], lr=1.0, max_iter=100, history_size=20, line_search_fn="strong_wolfe", tolerance_change=1e-9
    )

    def closure() -> torch.Tensor:
        opt.zero_grad()
        logits = features @ w.T + b
        loss = nn.functional.binary_cross_entropy_with_logits(logits, target, reduction="sum") / n
        loss = loss + penalty * (w * w).sum()
        loss.backward()
        return loss

    opt.step(closure)
    return w.detach().numpy(), b.detach().numpy()


def pick_share(
    model: Any,
    grounding: WordGrounding,
    val_tokens: TokenBags,
    val_img: Any,
    val_unknown: np.ndarray | None = None,
    seed: int = 0,
) -> tuple[float, dict]:
    """The share of :data:`SHARES` whose reranking gives the validation pairs' photos the best mean reciprocal
    rank among the validation photos (ties: the smaller). With ``val_unknown`` (per pair, how many words of its
    text the Word2Vec model lacks) only the pairs with an unknown word are queries, as only such queries are
    reranked; 0 with fewer than :data:`MIN_VAL_PAIRS` queries. Over more than :data:`MAX_VAL` pairs, the
    queries and then the other photos are a sample (``seed``) of the whole validation set."""
    rows, queries = validation_sample(len(val_tokens), val_unknown, seed)
    n = len(rows)
    if len(queries) < MIN_VAL_PAIRS:
        return 0.0, {"val_pairs": n, "val_queries": int(len(queries))}
    bags = val_tokens.take(rows)
    photos = centred_rows(model.embed_image(np.asarray(val_img[rows], np.float32)))
    scores = model.embed_text(bags.take(queries)) @ photos.T
    ground = np.stack(
        [grounding.log_probs(bags.ids[bags.offsets[q] : bags.offsets[q + 1]], photos) for q in queries]
    )
    asked = np.arange(len(queries))
    mrr = {}
    for share in SHARES:
        s = scores + share * ground
        own = s[asked, queries]
        mrr[share] = float(np.mean(1.0 / (1.0 + (s > own[:, None]).sum(axis=1))))
    best = max(SHARES, key=lambda share: (mrr[share], -share))
    picked = {
        "val_pairs": n,
        "val_queries": int(len(queries)),
        "val_mrr": {str(k): round(v, 4) for k, v in mrr.items()},
    }
    return best, picked


def validation_sample(
    n_pairs: int, val_unknown: np.ndarray | None = None, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """``(rows, queries)``: the validation rows the share is picked on (sorted; every row up to
    :data:`MAX_VAL`) and the positions in ``rows`` of its queries (the rows with an unknown word, given
    ``val_unknown``; else every row). Over :data:`MAX_VAL` rows the queries are a seeded sample of every such
    row, and the rest of ``rows`` a sample of the others."""
    flagged = np.ones(n_pairs, bool) if val_unknown is None else np.asarray(val_unknown)[:n_pairs] > 0
    if n_pairs <= MAX_VAL:
        return np.arange(n_pairs), np.flatnonzero(flagged)
    rng = np.random.default_rng(seed)
    asked = np.flatnonzero(flagged)
    asked = np.sort(rng.choice(asked, min(len(asked), MAX_VAL), replace=False))
    others = np.flatnonzero(~flagged)
    others = np.sort(rng.choice(others, min(len(others), MAX_VAL - len(asked)), replace=False))
    rows = np.union1d(asked, others)
    return rows, np.flatnonzero(np.isin(rows, asked))


def fit_grounding(
    model: Any,
    train_tokens: TokenBags,
    train_img: Any,
    train_groups: np.ndarray,
    val_tokens: TokenBags,
    val_img: Any,
    seed: int = 0,
    val_unknown: np.ndarray | None = None,
) -> dict[str, Any]:
    """Fit the word grounding of a trained ``model`` (:class:`~toolkit.mapping.towers.TwoTower` with a bag
    text tower) and attach it with the share picked on the validation pairs (those with an unknown word, given
    ``val_unknown``: :func:`pick_share`); what was fitted, for the log and the summary. Nothing is attached
    when no word qualifies, or the share is 0."""
    recipe_of, words_of_recipe = recipe_words(train_tokens, train_groups)
    words = grounded_words(words_of_recipe)
    if not len(words):
        log.info("word grounding: no word in %d or more training recipes", MIN_RECORDS)
        return {"words": 0}
    rows = np.arange(len(train_tokens))
    if len(rows) > MAX_PHOTOS:
        rows = np.sort(np.random.default_rng(seed).choice(len(rows), MAX_PHOTOS, replace=False))
    photos = centred_rows(model.embed_image(np.asarray(train_img[rows], np.float32)))
    mean, std = photos.mean(axis=0), photos.std(axis=0) + 1e-6
    weight, bias = fit_classifiers((photos - mean) / std, recipe_of[rows], words_of_recipe, words)
    weight = weight / std  # the standardisation folded in: logits of the centred vectors themselves
    bias = bias - weight @ mean
    grounding = WordGrounding(len(words), photos.shape[1])
    grounding.set(words, weight, bias)
    share, picked = pick_share(model, grounding, val_tokens, val_img, val_unknown, seed)
    model.set_grounding(grounding, share)
    log.info(
        "word grounding: %d words, share %g (picked on %d validation queries)",
        len(words),
        share,
        picked["val_queries"],
    )
    return {"words": int(len(words)), "share": share, **picked}
