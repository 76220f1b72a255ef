"""Train/val/test splits by recipe: a hash of (seed, recipe_id), so stable and order-independent.

All steps of a recipe land in the same split, so no recipe leaks between training and evaluation.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Iterable

from toolkit.errors import ConfigError

SPLITS = ("train", "val", "test")
DEFAULT_FRACTIONS = (0.8, 0.1, 0.1)


def check_fractions(fractions: tuple[float, float, float]) -> None:
    """Raise :class:`ConfigError` unless three non-negative fractions summing to 1 are given."""
    if len(fractions) != 3:
        raise ConfigError(f"split fractions must be three numbers (train, val, test), got {fractions!r}")
    if any(not math.isfinite(f) or f < 0 for f in fractions):
        raise ConfigError(f"split fractions must be finite and non-negative, got {fractions!r}")
    if abs(sum(fractions) - 1.0) > 1e-6:
        raise ConfigError(f"split fractions must sum to 1, got {fractions!r} (sum {sum(fractions):g})")


def _unit(recipe_id: str, seed: int) -> float:
    """A uniform number in [0, 1) from SHA-256 of seed and id."""
    digest = hashlib.sha256(f"{seed}\x00{recipe_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2.0**64


def split_of(recipe_id: str, seed: int = 0, fractions: tuple[float, float, float] = DEFAULT_FRACTIONS) -> str:
    """``"train"``, ``"val"`` or ``"test"`` for ``recipe_id``; depends only on the id, seed and fractions."""
    check_fractions(fractions)
    u = _unit(recipe_id, seed)
    if u < fractions[0]:
        return "train"
    if u < fractions[0] + fractions[1]:
        return "val"
    return "test"


def split_ids(
    recipe_ids: Iterable[str], seed: int = 0, fractions: tuple[float, float, float] = DEFAULT_FRACTIONS
) -> dict[str, list[str]]:
    """Group ``recipe_ids`` by split, keeping their input order within each split."""
    check_fractions(fractions)
    out: dict[str, list[str]] = {name: [] for name in SPLITS}
    for rid in recipe_ids:
        out[split_of(rid, seed, fractions)].append(rid)
    return out
