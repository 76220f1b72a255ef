"""A deterministic synthetic Japanese recipe collection in the JSONL layout, with drawn step photos.

``generate_sample(root, n)`` writes ``recipes.jsonl`` and ``images/<recipe_id>/<position>.jpg``.
Recipe ``i`` depends only on ``(seed, i)`` and the size options, so the output is byte-identical
for the same arguments whatever the number of workers. A :class:`SampleVariant` draws or phrases the
collection another way (for distribution-shift benchmarks); the default variant is the output above.
"""

from __future__ import annotations

import multiprocessing
import shutil
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from toolkit.data import sample_grammar as grammar
from toolkit.data.jsonl import RECIPES_FILE, write_recipes_jsonl
from toolkit.data.sample_draw import step_photo_jpeg
from toolkit.data.sample_grammar import paraphrase_step, step_labels
from toolkit.data.sample_variant import PHOTO_RATIO, SAMPLE_IMAGE_SIZE, SampleVariant
from toolkit.data.schema import Ingredient, Recipe, Step
from toolkit.errors import ConfigError
from toolkit.progress import track
from toolkit.seeding import check_seed

__all__ = ["SampleSummary", "SampleVariant", "generate_sample", "make_recipe", "grammar", "step_labels"]

IMAGES_DIR = "images"


@dataclass
class SampleSummary:
    """What :func:`generate_sample` wrote."""

    root: str
    recipes: int
    steps: int
    photos: int
    text_only: int
    seed: int
    image_size: int
    seconds: float
    variant: dict[str, Any] | None = None

    @property
    def steps_per_s(self) -> float:
        return self.steps / self.seconds if self.seconds > 0 else 0.0

    def to_dict(self) -> dict[str, Any]:
        out = {**asdict(self), "steps_per_s": round(self.steps_per_s, 1)}
        if out["variant"] is None:
            del out["variant"]
        return out


def recipe_id_for(index: int, n_recipes: int, prefix: str = "r") -> str:
    """``r000042``-style ids, zero-padded to at least six digits."""
    width = max(6, len(str(max(n_recipes - 1, 0))))
    return f"{prefix}{index:0{width}d}"


def make_recipe(
    seed: int,
    index: int,
    n_recipes: int,
    photo_ratio: float = PHOTO_RATIO,
    variant: SampleVariant | None = None,
) -> tuple[Recipe, list[grammar.StepPlan]]:
    """Recipe ``index`` of the collection (photo paths set, photos not drawn) and its step plans.

    The plans keep the plain sentence the photo is drawn from; with ``phrasing="paraphrase"`` the
    recipe's step says the same another way (``"unpictured"``: only the steps without a photo).
    """
    v = variant or SampleVariant()
    rng = np.random.default_rng([seed, index, 0])
    parts = grammar.make_recipe_parts(rng, v.combos)
    rid = recipe_id_for(index, n_recipes, v.id_prefix)
    steps = []
    for pos, plan in enumerate(parts["plans"], start=1):
        image = f"{IMAGES_DIR}/{rid}/{pos}.jpg" if rng.random() < photo_ratio else None
        text = plan.text
        if v.phrasing == "paraphrase" or (v.phrasing == "unpictured" and image is None):
            text = paraphrase_step(plan.text, np.random.default_rng([seed, index, pos, 1]))
        steps.append(Step(position=pos, text=text, image=image))
    recipe = Recipe(
        recipe_id=rid,
        title=parts["title"],
        description=parts["description"],
        ingredients=tuple(Ingredient(n, q) for n, q in parts["ingredients"]),
        steps=tuple(steps),
        tags=parts["tags"],
    )
    return recipe, parts["plans"]


def _build(job: tuple[str, int, int, int, int, float, SampleVariant]) -> Recipe:
    """Make recipe ``index`` and draw its photos under ``root`` (runs in worker processes)."""
    root, seed, index, n_recipes, image_size, photo_ratio, variant = job
    if variant.content == "concepts":
        return _build_concept(job)
    recipe, plans = make_recipe(seed, index, n_recipes, photo_ratio, variant)
    made_dir = False
    for step, plan in zip(recipe.steps, plans, strict=True):
        if step.image is None:
            continue
        path = Path(root) / step.image
        if not made_dir:
            path.parent.mkdir(parents=True, exist_ok=True)
            made_dir = True
        rng = np.random.default_rng([seed, index, step.position])
        path.write_bytes(
            step_photo_jpeg(plan.text, rng, image_size, variant.photo_style(index, step.position))
        )
    return recipe


def _build_concept(job: tuple[str, int, int, int, int, float, SampleVariant]) -> Recipe:
    """Concept ``index`` of a concepts collection, its drawings written under ``root``."""
    from toolkit.data.sample_concepts import concept_photo_jpeg, make_concept_record

    root, seed, index, n_recipes, image_size, photo_ratio, variant = job
    record, c = make_concept_record(seed, index, n_recipes, photo_ratio, variant)
    for step in record.steps:
        if step.image is None:
            continue
        path = Path(root) / step.image
        path.parent.mkdir(parents=True, exist_ok=True)
        rng = np.random.default_rng([seed, index, step.position, *variant.id_prefix.encode()])
        path.write_bytes(concept_photo_jpeg(c, rng, image_size, variant.photo_style(index, step.position)))
    return record


def _check_args(n_recipes: int, image_size: int, photo_ratio: float, workers: int) -> None:
    if n_recipes < 1:
        raise ConfigError(f"number of recipes must be at least 1, got {n_recipes}")
    if not 16 <= image_size <= 1024:
        raise ConfigError(f"image size must be between 16 and 1024 pixels, got {image_size}")
    if not 0.0 <= photo_ratio <= 1.0:
        raise ConfigError(f"photo ratio must be between 0 and 1, got {photo_ratio}")
    if workers < 1:
        raise ConfigError(f"workers must be at least 1, got {workers}")


def _occupied(root: Path, out_file: Path) -> str:
    """Why ``root`` is refused without ``overwrite``: a dataset, or the photos of a run that never finished
    (``recipes.jsonl`` is written last, atomically: photos without it are an interrupted run's)."""
    if out_file.exists():
        return f"{str(root)!r} already holds a dataset; pass overwrite=True (--overwrite) to replace it"
    return (
        f"{str(root)!r} holds {IMAGES_DIR}/ but no {RECIPES_FILE}: an unfinished run (interrupted?) left its "
        "photos there; pass overwrite=True (--overwrite) to replace them"
    )


def generate_sample(
    root: str | Path,
    n_recipes: int,
    seed: int = 0,
    image_size: int = SAMPLE_IMAGE_SIZE,
    photo_ratio: float = PHOTO_RATIO,
    workers: int = 1,
    *,
    variant: SampleVariant | None = None,
    overwrite: bool = False,
    progress: bool = False,
) -> SampleSummary:
    """Write ``n_recipes`` synthetic recipes under ``root`` (``recipes.jsonl`` + ``images/``).

    Refuses a root that already holds ``recipes.jsonl`` or ``images/`` unless ``overwrite``
    (which removes just those two first). ``workers`` > 1 draws photos in a process pool.
    ``variant`` (default: none) draws or phrases the collection another way.
    """
    variant = variant or SampleVariant()
    if variant.content == "concepts":
        from toolkit.data.sample_concepts import NOUNS

        if n_recipes > len(NOUNS):
            raise ConfigError(
                f"the concepts collection has at most {len(NOUNS)} concepts, asked for {n_recipes}"
            )
    _check_args(n_recipes, image_size, photo_ratio, workers)
    seed = check_seed("seed", seed, maximum=None)  # NumPy's generators take any size; recorded as an int
    root = Path(root)
    out_file, images = root / RECIPES_FILE, root / IMAGES_DIR
    if out_file.exists() or images.exists():
        if not overwrite:
            raise ConfigError(_occupied(root, out_file))
        out_file.unlink(missing_ok=True)
        shutil.rmtree(images, ignore_errors=True)
    root.mkdir(parents=True, exist_ok=True)
    images.mkdir()

    jobs = ((str(root), seed, i, n_recipes, image_size, photo_ratio, variant) for i in range(n_recipes))
    counts = {"steps": 0, "photos": 0}
    start = time.perf_counter()

    def counted(recipes: Iterator[Recipe]) -> Iterator[Recipe]:
        for recipe in track(recipes, progress, "sample", "recipe", total=n_recipes):
            counts["steps"] += len(recipe.steps)
            counts["photos"] += sum(1 for s in recipe.steps if s.image is not None)
            yield recipe

    if workers == 1:
        written = write_recipes_jsonl(out_file, counted(map(_build, jobs)))
    else:
        with multiprocessing.get_context().Pool(workers) as pool:
            chunk = max(1, min(32, n_recipes // (workers * 8)))
            written = write_recipes_jsonl(out_file, counted(pool.imap(_build, jobs, chunksize=chunk)))
    return SampleSummary(
        root=str(root),
        recipes=written,
        steps=counts["steps"],
        photos=counts["photos"],
        text_only=counts["steps"] - counts["photos"],
        seed=seed,
        image_size=image_size,
        seconds=round(time.perf_counter() - start, 3),
        variant=None if variant.is_default else variant.to_dict(),
    )
