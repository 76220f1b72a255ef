"""The valid steps of a dataset held column by column (what :func:`toolkit.stages.read.read_steps` returns).

A :class:`StepTable` is a ``Sequence[StepRecord]``: code that iterates or indexes steps gets
:class:`StepRecord` objects, made on demand. What stays in memory per step is its UTF-8 id, text and photo
path, a split code and a recipe number (~200 bytes for a recipe step, against ~600 as a list of records
holding ``Path`` objects), so the read stage's memory grows with the text, not with Python objects.
"""

from __future__ import annotations

import sys
from array import array
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import overload

import numpy as np

from toolkit.data.columns import StringColumn, StringColumnBuilder
from toolkit.data.splits import SPLITS


@dataclass(frozen=True, slots=True)
class StepRecord:
    """One valid step: its id (``recipe:position``), recipe, split, text, real photo path (or None) and its
    recipe's tags."""

    step_id: str
    recipe_id: str
    split: str
    text: str
    image: Path | None
    tags: tuple[str, ...] = ()


_SPLIT_CODE = {s: n for n, s in enumerate(SPLITS)}


class StepTable(Sequence[StepRecord]):
    """Steps as columns (``step_ids``, ``texts``, ``images``: "" for none, ``splits``: index into
    :data:`~toolkit.data.splits.SPLITS`, ``recipes``: index into ``recipe_ids``/``recipe_tags``), optionally
    seen through ``rows`` (a view: :meth:`of_split`, slices)."""

    def __init__(
        self,
        step_ids: StringColumn,
        texts: StringColumn,
        images: StringColumn,
        splits: np.ndarray,
        recipes: np.ndarray,
        recipe_ids: list[str],
        recipe_tags: list[tuple[str, ...]],
        rows: np.ndarray | None = None,
    ) -> None:
        n = len(step_ids)
        if not (len(texts) == len(images) == len(splits) == len(recipes) == n):
            raise ValueError("step table columns differ in length")
        if len(recipe_ids) != len(recipe_tags):
            raise ValueError("recipe ids and recipe tags differ in length")
        self._ids, self._texts, self._images = step_ids, texts, images
        self._splits = np.asarray(splits, dtype=np.uint8)
        self._recipes = np.asarray(recipes, dtype=np.int32)
        self.recipe_ids, self.recipe_tags = recipe_ids, recipe_tags
        self._rows = None if rows is None else np.asarray(rows, dtype=np.int64)

    def __len__(self) -> int:
        return len(self._ids) if self._rows is None else len(self._rows)

    def _row(self, k: int) -> int:
        n = len(self)
        i = k + n if k < 0 else k
        if not 0 <= i < n:
            raise IndexError(f"step {k} out of range for {n} steps")
        return i if self._rows is None else int(self._rows[i])

    def _record(self, i: int) -> StepRecord:
        r = int(self._recipes[i])
        image = self._images[i]
        return StepRecord(
            self._ids[i],
            self.recipe_ids[r],
            SPLITS[self._splits[i]],
            self._texts[i],
            Path(image) if image else None,
            self.recipe_tags[r],
        )

    @overload
    def __getitem__(self, key: int) -> StepRecord: ...

    @overload
    def __getitem__(self, key: slice) -> StepTable: ...

    def __getitem__(self, key: int | slice) -> StepRecord | StepTable:
        if isinstance(key, slice):
            return self.view(np.arange(len(self))[key])
        return self._record(self._row(int(key)))

    def __iter__(self) -> Iterator[StepRecord]:
        rows = range(len(self._ids)) if self._rows is None else self._rows.tolist()
        for i in rows:
            yield self._record(i)

    def _positions(self) -> np.ndarray:
        return np.arange(len(self._ids), dtype=np.int64) if self._rows is None else self._rows

    def view(self, positions: np.ndarray) -> StepTable:
        """The steps at ``positions`` of this table (integer positions or a boolean mask), nothing copied."""
        rows = self._positions()[np.asarray(positions)]
        return StepTable(
            self._ids, self._texts, self._images, self._splits, self._recipes,
            self.recipe_ids, self.recipe_tags, rows,
        )  # fmt: skip

    def of_split(self, split: str) -> StepTable:
        """The steps of one split (``"all"``: this table)."""
        if split == "all":
            return self
        return self.view(self.split_codes == _SPLIT_CODE[split])

    def recipe_count(self) -> int:
        """How many recipes these steps come from."""
        recipes = self._recipes if self._rows is None else self._recipes[self._rows]
        return int(len(np.unique(recipes)))

    @property
    def split_codes(self) -> np.ndarray:
        """Index into :data:`~toolkit.data.splits.SPLITS` of each step (uint8)."""
        return self._splits if self._rows is None else self._splits[self._rows]

    def _column(self, column: StringColumn) -> StringColumn:
        return column if self._rows is None else column.take(self._rows)

    @property
    def step_ids(self) -> StringColumn:
        return self._column(self._ids)

    @property
    def texts(self) -> StringColumn:
        return self._column(self._texts)

    @property
    def image_paths(self) -> StringColumn:
        """Each step's real photo path, "" where it has none."""
        return self._column(self._images)

    @property
    def has_image(self) -> np.ndarray:
        offsets = self._images.offsets
        has = offsets[1:] > offsets[:-1]
        return has if self._rows is None else has[self._rows]


class StepTableBuilder:
    """Appends steps (recipe by recipe) into the columns of a :class:`StepTable`."""

    def __init__(self) -> None:
        self._ids, self._texts, self._images = (
            StringColumnBuilder(),
            StringColumnBuilder(),
            StringColumnBuilder(),
        )
        self._splits = bytearray()
        self._recipes = array("i")
        self._recipe_ids: list[str] = []
        self._recipe_tags: list[tuple[str, ...]] = []

    def add_recipe(self, recipe_id: str, tags: Sequence[str]) -> int:
        """Register a recipe; returns its number for :meth:`add_step`. Tag strings are interned (they repeat)."""
        self._recipe_ids.append(recipe_id)
        self._recipe_tags.append(tuple(sys.intern(t) for t in tags))
        return len(self._recipe_ids) - 1

    def add_step(self, recipe: int, step_id: str, split: str, text: str, image: Path | str | None) -> None:
        self._ids.append(step_id)
        self._texts.append(text)
        self._images.append("" if image is None else str(image))
        self._splits.append(_SPLIT_CODE[split])
        self._recipes.append(recipe)

    def __len__(self) -> int:
        return len(self._splits)

    def build(self) -> StepTable:
        return StepTable(
            self._ids.build(),
            self._texts.build(),
            self._images.build(),
            np.frombuffer(bytes(self._splits), dtype=np.uint8),
            np.frombuffer(self._recipes, dtype=np.int32).copy(),
            self._recipe_ids,
            self._recipe_tags,
        )
