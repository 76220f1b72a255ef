"""Re-standardising an index's photo features on the collection's own statistics.

The image side of a mapping reads backbone features standardised with the training photos' per-feature mean
and standard deviation. A collection drawn, lit or photographed unlike the training photos shifts those
statistics as a whole (a palette, a camera, a background), and the shift reaches the shared space. Reading the
collection's features with its *own* per-feature mean and standard deviation instead removes it before the
mapping, as AdaBN re-estimates batch-norm statistics on a new domain (Li et al., 2016). A collection like
the training photos has about their statistics, so the features barely change there. Screened on cached
benchmark draws (docs/quality-log.md, 2026-12-07): objects never trained on +1.4 R@10 over 4 draws × 4
mapping seeds (none lower), recipe galleries +0.5 (−0.8 to +2.6 per row), artwork +0.2; judged on two fresh
draws, 7 of 9 rows higher (mean +0.5).

A feature almost silent in the collection's sample would have a tiny spread, and a later photo where it fires
(a live update, a query photo) would be scaled up without bound; its spread is read as at least
:data:`MIN_STD_RATIO` of the training photos'.

The statistics come from the same seeded sample of photos as the photo centre
(:mod:`toolkit.index.centring`), are computed once when an index is created and are stored in its
``_meta.photo_feature_stats``, so later loads, live updates and photo queries read photos the same way.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from toolkit.errors import ToolkitError

if TYPE_CHECKING:
    from toolkit.model import SearchModel

META_KEY = "photo_feature_stats"
#: a collection's per-feature spread is read as at least this share of the training photos'
MIN_STD_RATIO = 0.1


def float32_values(value: Any) -> np.ndarray:
    """``value`` (numbers read from an index's ``_meta``) as float32, a number beyond float32's range as
    ``inf`` (so a finiteness check refuses it), without numpy's "overflow encountered in cast" warning.
    ``TypeError``/``ValueError``/``OverflowError`` when ``value`` holds no numbers."""
    wide = np.asarray(value, dtype=np.float64)
    fits = np.abs(wide) <= np.finfo(np.float32).max  # NaN fits nowhere: it stays non-finite too
    return np.where(fits, wide, np.inf).astype(np.float32)


@dataclass(frozen=True, eq=False)
class FeatureStats:
    """Per-feature mean and standard deviation of a collection's backbone photo features."""

    mean: np.ndarray
    std: np.ndarray

    @classmethod
    def of(cls, features: np.ndarray) -> FeatureStats:
        """The statistics of ``features`` (``[N, D]``; a constant feature gets std 1, as in training)."""
        from toolkit.mapping.towers import input_stats

        mean, std = input_stats(np.asarray(features, dtype=np.float32))
        return cls(mean, std)

    def meta(self) -> dict[str, list[float]]:
        """The form stored in the index's ``_meta``."""
        return {"mean": [float(x) for x in self.mean], "std": [float(x) for x in self.std]}

    @classmethod
    def from_meta(cls, meta: dict[str, Any], dims: int) -> FeatureStats | None:
        """The statistics an index recorded (None when it has none); a :class:`ToolkitError` naming the record
        when they are broken or do not fit features of ``dims`` dimensions."""
        value = meta.get(META_KEY)
        if value is None:
            return None
        try:
            mean = float32_values(value["mean"])  # beyond float32: inf, refused below as not finite
            std = float32_values(value["std"])
        except (TypeError, KeyError, ValueError, OverflowError) as e:
            raise ToolkitError(f"the index's _meta.{META_KEY} is broken ({e}): re-index (`jrs index`)") from e
        if (
            mean.shape != (dims,)
            or std.shape != (dims,)
            or not np.all(np.isfinite(mean))
            or not np.all(np.isfinite(std))
            or not np.all(std > 0)
        ):
            raise ToolkitError(
                f"the index's _meta.{META_KEY} is not {dims} finite means and positive standard deviations "
                "(the model's photo features): re-index (`jrs index` makes a new version)"
            )
        return cls(mean, std)


def training_stats(model: SearchModel) -> FeatureStats:
    """The statistics the model's image side standardises its input with (its training photos')."""
    stats = model.mapping.model.get_input_stats()
    return FeatureStats(stats["image_mean"], stats["image_std"])


def spread_floor(model: SearchModel) -> np.ndarray:
    """The least per-feature spread a collection's statistics are read with: :data:`MIN_STD_RATIO` of the
    training photos'."""
    return MIN_STD_RATIO * training_stats(model).std


def adapted(features: np.ndarray, stats: FeatureStats | None, model: SearchModel) -> np.ndarray:
    """``features`` (``[N, D]``) moved from the collection's statistics ``stats`` to the model's training
    statistics, so that the image side standardises them with the collection's own (spreads floored at
    :data:`MIN_STD_RATIO` of the training ones); as they are without."""
    if stats is None:
        return features
    x = np.asarray(features, dtype=np.float32)
    if x.shape[-1] != stats.mean.shape[0]:
        raise ValueError(
            f"feature statistics have {stats.mean.shape[0]} dimensions, the features {x.shape[-1]}"
        )
    train = training_stats(model)
    std = np.maximum(stats.std, spread_floor(model))
    return ((x - stats.mean) / std * train.std + train.mean).astype(np.float32)
