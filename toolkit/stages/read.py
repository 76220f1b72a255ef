"""Stage 1, read + split: the valid steps of a dataset, each with its recipe's split and its photo."""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from toolkit.data.jsonl import iter_recipes, recipes_path
from toolkit.data.paths import UnsafePathError, resolve_under_root
from toolkit.data.splits import SPLITS, split_of
from toolkit.errors import ConfigError
from toolkit.rejects import RejectsWriter

log = logging.getLogger(__name__)

#: ``--split`` choices of the stages that can work on one split: the three splits or every step.
SPLIT_CHOICES = (*SPLITS, "all")


@dataclass(frozen=True)
class ReadOptions:
    """How a dataset is read: the seed of the hash split by recipe (see :mod:`toolkit.data.splits`)."""

    split_seed: int = 0

    def __post_init__(self) -> None:
        if isinstance(self.split_seed, bool) or not isinstance(self.split_seed, int) or self.split_seed < 0:
            raise ConfigError(f"split seed must be a non-negative integer, got {self.split_seed!r}")


@dataclass(frozen=True)
class StepRecord:
    """One valid step: its id (``recipe:position``), recipe, split, text, real photo path (or None) and its
    recipe's tags."""

    step_id: str
    recipe_id: str
    split: str
    text: str
    image: Path | None
    tags: tuple[str, ...] = ()


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
) -> list[StepRecord]:
    """All valid steps of ``root`` in file order, with their split and the real path of their photo.

    A photo that is missing or outside the root makes its step text-only (reported to ``rejects``).
    """
    opts = options or ReadOptions()
    root = Path(root)
    out: list[StepRecord] = []
    for recipe in iter_recipes(root, rejects, check_images=True):
        split = split_of(recipe.recipe_id, seed=opts.split_seed)
        tags = tuple(recipe.tags)
        for step in recipe.steps:
            image = None
            if step.image:
                try:
                    image = resolve_under_root(root, step.image)
                except UnsafePathError:
                    image = None  # already reported by check_images
            out.append(StepRecord(recipe.step_id(step), recipe.recipe_id, split, step.text, image, tags))
    log.info("read %d steps from %s", len(out), root)
    return out


def steps_of_split(steps: Iterable[StepRecord], split: str) -> list[StepRecord]:
    """The steps of one split (``"all"``: every step)."""
    check_split(split)
    return [s for s in steps if split == "all" or s.split == split]


def photo_items(steps: Sequence[StepRecord], split: str = "all") -> list[tuple[str, Path]]:
    """``(step_id, real photo path)`` of every step of ``split`` that has a photo."""
    return [(s.step_id, s.image) for s in steps_of_split(steps, split) if s.image is not None]


def split_counts(steps: Iterable[StepRecord]) -> dict[str, int]:
    """Number of steps per split."""
    counts = dict.fromkeys(SPLITS, 0)
    for s in steps:
        counts[s.split] += 1
    return counts
