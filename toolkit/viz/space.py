"""Points of the shared space from a model directory: each step's text vector and its photo's vector.

The model directory keeps the Word2Vec means (``step_vectors``) and backbone features
(``image_features``) of its dataset; both towers map them into the shared space here, so no
Elasticsearch is needed. Splits are recomputed from recipe ids with the manifest's split seed.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from toolkit.data.jsonl import iter_recipes
from toolkit.errors import ToolkitError
from toolkit.evaluation.held_out import model_pairs
from toolkit.model import SearchModel
from toolkit.rejects import RejectsWriter
from toolkit.vectorset import load_vector_set

OTHER = "その他"


@dataclass
class PairedSpace:
    """Row ``i`` of ``text`` and ``image`` belong to step ``ids[i]`` (unit-length rows)."""

    ids: list[str]
    text: np.ndarray
    image: np.ndarray

    def __len__(self) -> int:
        return len(self.ids)


def paired_space(model: SearchModel, split: str | None = None) -> PairedSpace:
    """Shared-space vectors of every step with text and photo (only ``split`` when given), in the order of
    the model's step vectors."""
    d = model.directory
    by_split = model_pairs(d, int(model.manifest.get("split_seed", 0)))
    if split is not None and split not in by_split:
        raise ToolkitError(f"unknown split {split!r}; choose one of {', '.join(by_split)}")
    chosen = [p for p in ([by_split[split]] if split is not None else by_split.values()) if p.ids]
    if not chosen:
        raise ToolkitError(f"model {d} has no text/photo pairs" + (f" in the {split} split" if split else ""))
    mapping = model.mapping.model
    ids = [i for p in chosen for i in p.ids]
    text = np.concatenate([np.asarray(mapping.embed_text(p.text_for(mapping.text_input))) for p in chosen])
    image = model.embed_image_features(np.concatenate([p.image for p in chosen]))
    row = load_vector_set(d / "step_vectors").index()
    order = np.argsort(np.asarray([row[i] for i in ids], dtype=np.int64), kind="stable")
    return PairedSpace([ids[o] for o in order], _unit(text)[order], _unit(image)[order])


def _unit(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float32)
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


def subsample(space: PairedSpace, max_pairs: int, seed: int = 0) -> PairedSpace:
    """At most ``max_pairs`` pairs, drawn without replacement (seeded), in their original order."""
    if len(space) <= max_pairs:
        return space
    rows = np.sort(np.random.default_rng(seed).choice(len(space), size=max_pairs, replace=False))
    return PairedSpace([space.ids[r] for r in rows], space.text[rows], space.image[rows])


def step_texts(dataset_root: str | Path) -> dict[str, dict[str, object]]:
    """``step_id -> {text, title, tags, ingredients, image}`` for every valid step of the dataset."""
    out: dict[str, dict[str, object]] = {}
    with RejectsWriter(None) as rejects:
        for r in iter_recipes(dataset_root, rejects):
            for s in r.steps:
                out[r.step_id(s)] = {
                    "text": s.text,
                    "title": r.title,
                    "tags": list(r.tags),
                    "ingredients": [i.name for i in r.ingredients],
                    "image": s.image,
                }
    return out


def category_of(step: Mapping[str, Any] | None, color_by: str) -> str:
    """The category of a step: ``method``/``main`` (parsed from its text), ``tag:PREFIX`` (the recipe tag
    ``PREFIX:value``) or ``ingredient`` (the recipe's first ingredient); ``その他`` when unknown."""
    if step is None:
        return OTHER
    if color_by in ("method", "main"):
        from toolkit.data.sample_grammar import step_labels

        value = step_labels(str(step["text"])).get(color_by)
        return str(value) if value else OTHER
    if color_by.startswith("tag:"):
        prefix = color_by[4:] + ":"
        tags = [t for t in step["tags"] if isinstance(t, str) and t.startswith(prefix)]
        return tags[0][len(prefix) :] if tags else OTHER
    if color_by == "ingredient":
        ingredients = step["ingredients"]
        return str(ingredients[0]) if ingredients else OTHER
    raise ToolkitError(f"unknown category {color_by!r}: use method, main, ingredient or tag:PREFIX")


def top_categories(labels: list[str], keep: int) -> list[str]:
    """The ``keep`` most frequent labels become categories; the rest fold into ``その他``."""
    common = [c for c, _ in Counter(label for label in labels if label != OTHER).most_common(keep)]
    return [label if label in common else OTHER for label in labels]


def dataset_root_for(model_dir: str | Path, given: str | Path | None = None) -> Path:
    """``given``, else the dataset the model was built on (its manifest); it must hold recipes.jsonl."""
    from toolkit.model import read_manifest

    root = Path(given) if given else Path(str(read_manifest(model_dir).get("dataset", "")))
    if not (root / "recipes.jsonl").is_file():
        hint = (
            "" if given else f" (the dataset recorded in {Path(model_dir) / 'manifest.json'}); pass --dataset"
        )
        raise ToolkitError(f"dataset root {root} has no recipes.jsonl{hint}")
    return root
