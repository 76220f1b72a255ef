"""A built model's held-out pairs next to the linear baselines fitted on its own training pairs, and
graded relevance from the dataset's recipe tags (``main:`` / ``method:``).

Everything comes from the model directory (``step_vectors``, ``image_features``, the mapping) and the
split seed it was built with, so the baselines see exactly the features and training pairs the
mapping saw. Used by ``jrs evaluate`` (in memory, and for the same gallery through the index).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import numpy as np

from toolkit.data.jsonl import RECIPES_FILE, iter_recipes
from toolkit.data.step_ids import recipe_of
from toolkit.errors import ToolkitError
from toolkit.evaluation import metrics
from toolkit.evaluation.graded import (
    Labels,
    graded_from_scores,
    graded_precision,
    order_ranks,
    tag_labels,
    top_k_indices,
)
from toolkit.evaluation.linear import LinearMap, linear_baselines
from toolkit.evaluation.metrics import full_metrics_of, full_rows, pooled_metrics
from toolkit.index.feature_stats import FeatureStats, adapted
from toolkit.rejects import RejectsWriter
from toolkit.stages.pairs import load_pairs, split_pairs
from toolkit.text.tokens import TokenBags
from toolkit.vectorset import load_vector_set

if TYPE_CHECKING:
    from toolkit.model import SearchModel

GRADED_K = 10


@dataclass
class SplitPairs:
    """The model's aligned (step vector, backbone feature) pairs of one split."""

    ids: Sequence[str]
    text: np.ndarray
    image: np.ndarray
    tokens: TokenBags | None = None

    def text_for(self, text_input: str) -> np.ndarray | TokenBags:
        """The token ids for a bag text tower (``text_input == "tokens"``), else the step means."""
        if text_input == "mean":
            return self.text
        if self.tokens is None:
            raise ToolkitError("the mapping reads token ids, but the model's step vectors have none")
        return self.tokens


def model_pairs(model_dir: str | Path, split_seed: int) -> dict[str, SplitPairs]:
    """Train / val / test pairs of a model directory (the split the build used), read into memory."""
    d = Path(model_dir)
    by_split = split_pairs(load_pairs(d / "step_vectors", d / "image_features"), split_seed)
    return {
        s: SplitPairs(
            p.ids, np.asarray(p.text, dtype=np.float32), np.asarray(p.image, dtype=np.float32), p.tokens
        )
        for s, p in by_split.items()
    }


def recipe_labels(dataset_root: str | Path) -> dict[str, dict[str, str]]:
    """``recipe_id -> {"main": ..., "method": ...}`` from the recipes' tags (recipes without them left out)."""
    out: dict[str, dict[str, str]] = {}
    with RejectsWriter(None) as rejects:
        for recipe in iter_recipes(Path(dataset_root), rejects):
            labels = tag_labels(recipe.tags)
            if labels.get("main") or labels.get("method"):
                out[recipe.recipe_id] = labels
    return out


def labels_of_steps(step_ids: Sequence[str], by_recipe: dict[str, dict[str, str]]) -> list[Labels]:
    return [by_recipe.get(recipe_of(i), {}) for i in step_ids]


def fit_model_baselines(pairs: dict[str, SplitPairs]) -> dict[str, LinearMap]:
    """CCA and ridge on the training pairs, regularisation picked on the validation pairs."""
    val = pairs["val"]
    has_val = len(val.ids) >= 2
    return linear_baselines(
        pairs["train"].text,
        pairs["train"].image,
        val.text if has_val else None,
        val.image if has_val else None,
    )


def held_out_baselines(
    model_dir: str | Path,
    split_seed: int,
    mapping: Any,
    dataset_root: str | Path | None = None,
    pool: int = 1000,
    draws: int = 10,
    max_pairs: int | None = None,
) -> dict[str, Any]:
    """Linear baselines on the held-out split (pooled like the model, and whole-split), and graded
    precision@10 of the model, the baselines and chance where the dataset's recipes carry tags.

    ``mapping`` is the trained :class:`~toolkit.mapping.towers.TwoTower`. "Whole split" is what the build's
    ``model_full`` ranks (:func:`~toolkit.evaluation.metrics.full_metrics_of`): all pairs, or the same seeded
    sample of ``max_pairs`` (default :data:`~toolkit.evaluation.metrics.FULL_MAX_PAIRS`) of a larger split, so
    the baselines and graded precision are ranked on the very same pairs and gallery as the model.
    """
    max_pairs = metrics.FULL_MAX_PAIRS if max_pairs is None else max_pairs
    pairs = model_pairs(model_dir, split_seed)
    test_name = "test" if len(pairs["test"].ids) >= 2 else "val"
    test = pairs[test_name]
    fitted = fit_model_baselines(pairs)
    out: dict[str, Any] = {"split": test_name, "train_pairs": len(pairs["train"].ids)}
    embedded: dict[str, tuple[np.ndarray, np.ndarray]] = {
        "model": (mapping.embed_text(test.text_for(mapping.text_input)), mapping.embed_image(test.image))
    }
    for name, lin in fitted.items():
        t, i = lin.embed_text(test.text), lin.embed_image(test.image)
        embedded[name] = (t, i)
        out[f"{name}_pooled"] = pooled_metrics(t, i, pool=pool, draws=draws, seed=0) | {"fit": lin.describe()}
        out[f"{name}_full"] = full_metrics_of(_same, _same, t, i, max_pairs=max_pairs)
    if dataset_root is not None:
        labels = labels_of_steps(test.ids, recipe_labels(dataset_root))
        rows = full_rows(len(labels), max_pairs)
        if rows is not None:
            labels = [labels[r] for r in rows]
            embedded = {name: (t[rows], i[rows]) for name, (t, i) in embedded.items()}
        if any(labels):
            graded = {name: _graded(t, i, labels) for name, (t, i) in embedded.items()}
            graded["chance"] = _chance(labels)
            if rows is not None:
                for g in graded.values():
                    g["sampled_from"] = len(test.ids)
            out["graded"] = graded
    return out


def _same(x: np.ndarray) -> np.ndarray:
    return x


#: Query rows whose text x photo scores are held at a time by :func:`_graded`.
GRADED_BLOCK = 1024


def _graded(text: np.ndarray, image: np.ndarray, labels: list[Labels]) -> dict[str, Any]:
    """:func:`~toolkit.evaluation.graded.graded_from_scores` of ``text @ image.T``, a block of queries at a time."""
    if len(labels) <= GRADED_BLOCK:
        return graded_from_scores(text @ image.T, labels, labels, GRADED_K)
    top = np.concatenate(
        [
            top_k_indices(text[a : a + GRADED_BLOCK] @ image.T, GRADED_K)
            for a in range(0, len(labels), GRADED_BLOCK)
        ]
    )
    return graded_precision(labels, [[labels[j] for j in row] for row in top], labels, GRADED_K)


def _chance(labels: list[Labels]) -> dict[str, Any]:
    chance = graded_precision(labels, [[] for _ in labels], labels, GRADED_K)
    return {"k": GRADED_K, **{c: chance[f"{c}_chance"] for c in ("main", "method", "both")}}


def gallery_baselines(
    model_dir: str | Path,
    split_seed: int,
    gallery_ids: list[str],
    queries: list[tuple[str, np.ndarray]],
    k: int = GRADED_K,
    feature_stats: FeatureStats | None = None,
    model: SearchModel | None = None,
) -> dict[str, Any]:
    """The linear baselines over an index's photo gallery, for the same queries (exact ranking).

    ``queries`` are ``(step_id, raw text feature)``; gallery photos are looked up in the model's own
    ``image_features`` by step id (photos it does not have are left out of the baselines' gallery and
    counted), and read with ``feature_stats`` when the index reads its photos with them (the same features
    as the model's; ``model``: the loaded model of ``model_dir``, loaded here when not given). Returns per method the ranks of each query's own photo (``None``: not in the gallery)
    and the top-``k`` step ids.
    """
    d = Path(model_dir)
    feats = load_vector_set(d / "image_features")
    row_of = feats.index()
    have = [g for g in gallery_ids if g in row_of]
    gallery = np.asarray(feats.vectors[[row_of[g] for g in have]]) if have else np.zeros((0, 0))
    if have and feature_stats is not None:
        from toolkit.model import SearchModel

        gallery = adapted(gallery, feature_stats, model or SearchModel.load(d))
    fitted = fit_model_baselines(model_pairs(d, split_seed))
    out: dict[str, Any] = {"gallery": len(have), "gallery_missing_features": len(gallery_ids) - len(have)}
    if not have or not queries:
        return out
    position = {g: n for n, g in enumerate(have)}
    text = np.stack([q[1] for q in queries])
    own = [position.get(step_id) for step_id, _ in queries]
    found = np.flatnonzero([o is not None for o in own])
    for name, lin in fitted.items():
        scores = lin.embed_text(text) @ lin.embed_image(gallery).T
        # the position in the ranking ``top`` lists (ties by gallery order, as exact kNN through the index):
        # a rank <= k exactly when the photo is in the top k
        ranks: list[int | None] = [None] * len(queries)
        if found.size:
            at = order_ranks(scores[found], cast("list[int]", [own[r] for r in found]))  # found: not None
            for r, rank in zip(found, at, strict=True):
                ranks[r] = int(rank)
        top = top_k_indices(scores, k)
        out[name] = {"ranks": ranks, "top": [[have[j] for j in row] for row in top], "fit": lin.describe()}
    return out


def model_evaluation(model_dir: str | Path, dataset_root: str | Path | None = None) -> dict[str, Any]:
    """The ``in_memory`` part of ``jrs evaluate --json``: the build's evaluation (``evaluation.json``) with
    the linear baselines on the model's training pairs and, where the dataset's recipes carry tags, graded
    relevance added (:func:`held_out_baselines`). ``dataset_root`` defaults to the one the model was built from."""
    from toolkit.model import SearchModel, read_manifest
    from toolkit.viz.report import load_evaluation

    manifest = read_manifest(model_dir)
    evaluation = load_evaluation(model_dir)
    root = Path(dataset_root if dataset_root is not None else manifest["dataset"])
    options = manifest.get("build_options", {})
    evaluation.update(
        held_out_baselines(
            model_dir,
            int(manifest.get("split_seed", 0)),
            SearchModel.load(model_dir).mapping.model,
            root if (root / RECIPES_FILE).is_file() else None,
            pool=int(options.get("eval_pool", 1000)),
            draws=int(options.get("eval_draws", 10)),
        )
    )
    return evaluation
