"""Stage 1, read + split: the valid steps of a dataset, each with its recipe's split and its photo."""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from toolkit.data.jsonl import iter_recipes, recipes_path
from toolkit.data.paths import UnsafePathError, resolve_under_root
from toolkit.data.splits import SPLITS, split_of
from toolkit.errors import ConfigError
from toolkit.image.items import PhotoItems
from toolkit.rejects import RejectsWriter
from toolkit.seeding import check_seed
from toolkit.stages.step_table import StepRecord, StepTable, StepTableBuilder

__all__ = [
    "SPLIT_CHOICES",
    "ReadOptions",
    "StepRecord",
    "StepTable",
    "check_dataset_root",
    "check_split",
    "photo_items",
    "read_steps",
    "recipe_count",
    "split_counts",
    "step_columns",
    "steps_of_split",
]

log = logging.getLogger(__name__)

#: ``--split`` choices of the stages that can work on one split: the three splits or every step.
SPLIT_CHOICES = (*SPLITS, "all")


@dataclass(frozen=True)
class ReadOptions:
    """How a dataset is read: the seed of the hash split by recipe (see :mod:`toolkit.data.splits`)."""

    split_seed: int = 0

    def __post_init__(self) -> None:
        object.__setattr__(self, "split_seed", check_seed("split seed", self.split_seed))  # frozen


def check_split(split: str) -> str:
    """``split`` when it is one of :data:`SPLIT_CHOICES`, else :class:`ConfigError`."""
    if split not in SPLIT_CHOICES:
        raise ConfigError(f"split must be one of {', '.join(SPLIT_CHOICES)}, got {split!r}")
    return split


def check_dataset_root(root: str | Path) -> Path:
    """The dataset root as a Path; :class:`~toolkit.data.jsonl.DatasetError` when it has no recipes file."""
    recipes_path(root)
    return Path(root)


def read_steps(
    root: str | Path, rejects: RejectsWriter | None, options: ReadOptions | None = None
) -> StepTable:
    """All valid steps of ``root`` in file order, with their split and the real path of their photo.

    A photo that is missing or outside the root makes its step text-only (reported to ``rejects``).
    The steps come as a :class:`~toolkit.stages.step_table.StepTable` (a sequence of :class:`StepRecord`
    held column by column).
    """
    opts = options or ReadOptions()
    root = Path(root)
    table = StepTableBuilder()
    for recipe in iter_recipes(root, rejects, check_images=True):
        split = split_of(recipe.recipe_id, seed=opts.split_seed)
        number = table.add_recipe(recipe.recipe_id, recipe.tags)
        for step in recipe.steps:
            image = None
            if step.image:
                try:
                    image = resolve_under_root(root, step.image)
                except UnsafePathError:
                    image = None  # already reported by check_images
            table.add_step(number, recipe.step_id(step), split, step.text, image)
    log.info("read %d steps from %s", len(table), root)
    return table.build()


def steps_of_split(steps: Iterable[StepRecord], split: str) -> Sequence[StepRecord]:
    """The steps of one split (``"all"``: every step); a view when ``steps`` is a :class:`StepTable`."""
    check_split(split)
    if isinstance(steps, StepTable):
        return steps.of_split(split)
    return [s for s in steps if split == "all" or s.split == split]


def step_columns(steps: Sequence[StepRecord]) -> tuple[Sequence[str], Sequence[str]]:
    """``(step ids, texts)`` of ``steps``: string columns of a :class:`StepTable`, lists otherwise."""
    if isinstance(steps, StepTable):
        return steps.step_ids, steps.texts
    return [s.step_id for s in steps], [s.text for s in steps]


def recipe_count(steps: Sequence[StepRecord]) -> int:
    """How many recipes ``steps`` come from."""
    if isinstance(steps, StepTable):
        return steps.recipe_count()
    return len({s.recipe_id for s in steps})


def photo_items(steps: Sequence[StepRecord], split: str = "all") -> PhotoItems:
    """``(step_id, real photo path)`` of every step of ``split`` that has a photo, as
    :class:`~toolkit.image.items.PhotoItems` (two string columns)."""
    chosen = steps_of_split(steps, split)
    if isinstance(chosen, StepTable):
        with_photo = chosen.view(chosen.has_image)
        return PhotoItems(with_photo.step_ids, with_photo.image_paths)
    return PhotoItems.of((s.step_id, s.image) for s in chosen if s.image is not None)


def split_counts(steps: Iterable[StepRecord]) -> dict[str, int]:
    """Number of steps per split."""
    if isinstance(steps, StepTable):
        codes = np.bincount(steps.split_codes, minlength=len(SPLITS))
        return {s: int(codes[n]) for n, s in enumerate(SPLITS)}
    counts = dict.fromkeys(SPLITS, 0)
    for s in steps:
        counts[s.split] += 1
    return counts
