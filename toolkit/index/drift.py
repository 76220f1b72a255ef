"""Whether the photos loaded into an index fit the photo centre it was created with.

An index's photo vectors are centred on the mean of the collection it was created from
(:mod:`toolkit.index.centring`); later loads and ``jrs index --update`` reuse that centre. Photos drawn or
photographed otherwise (another style, camera or kind of dish) keep a common offset from it, which brings them
near every query together. This measures it with the share of the loaded photos' spread about the centre that
is common to all of them::

    R = |mean(g - c)|^2 / mean(|g - c|^2)      (g: shared-space photo vectors before centring, c: the centre)

Photos drawn like the collection the centre came from give about ``1 / N`` for ``N`` photos (the mean of ``N``
independent offsets); measured on the benchmark's draws: 0.004-0.013 for 300 photos of the training style,
0.33-0.55 for galleries in another drawing style, 0.02 for real artwork by another emoji vendor. A load of at
least :data:`DRIFT_MIN_PHOTOS` photos with ``R`` above :data:`DRIFT_RATIO` says so (a warning, and
``photo_drift`` in its summary): a new version (``jrs index`` without ``--update``) is centred on the collection
as it is now.

An index whose photo features are read with the collection's own statistics (:mod:`toolkit.index.feature_stats`)
is checked against those too (:class:`FeatureDrift`): how far the loaded photos' per-feature mean and spread sit
from the stored ones, in the stored standard deviations (:data:`FEATURE_MEAN_SHIFT`,
:data:`FEATURE_SPREAD_RATIO`). The check only reports: what gets indexed is unchanged.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from toolkit.index.feature_stats import FeatureStats

log = logging.getLogger(__name__)

#: fewer photos than this say too little to warn about
DRIFT_MIN_PHOTOS = 100
#: share of the spread common to the loaded photos above which a load warns
DRIFT_RATIO = 0.1
#: RMS over the features of the shift of the loaded photos' per-feature mean from the index's, in the index's
#: standard deviations, above which a load warns. Photos drawn like the collection the statistics came from
#: give about 1/sqrt(N) for N photos, plus the noise of the stored sample and of photos of one recipe alike:
#: 0.05-0.18 for 100-300 new sample recipes' photos drawn like the indexed ones, 0.55-0.64 for the same recipes
#: in another drawing style, palette and background (the tests' model: ResNet-18 with random weights, 512-d; not
#: yet measured on the benchmark's draws). 0.4 is twice the noise of 100 photos and under the other style; a
#: shift that large moves the standardised features by 0.4 of their spread, as another kind of photo does.
FEATURE_MEAN_SHIFT = 0.4
#: typical factor (RMS of the log ratio over the features) between the loaded photos' per-feature spread and
#: the index's above which a load warns: 1.06-1.10 for photos drawn like the collection (1.18 from 100 photos),
#: 1.22-1.26 in another style, whose spreads shift less than its means; 1.5 flags photos far more uniform or more
#: varied than the collection (a batch of near-duplicates, or a mixed catalogue) without flagging sampling noise.
FEATURE_SPREAD_RATIO = 1.5


@dataclass
class CentreDrift:
    """Running sums over the photo vectors of one load, against the index's centre."""

    count: int = 0
    sq_sum: float = 0.0
    offset_sum: np.ndarray | None = field(default=None, repr=False)

    def add(self, vectors: np.ndarray, centre: np.ndarray) -> None:
        """Count unit photo vectors ``[N, dim]`` (before centring) against ``centre``."""
        d = np.asarray(vectors, dtype=np.float64) - np.asarray(centre, dtype=np.float64)
        if d.ndim != 2 or len(d) == 0:
            return
        total = d.sum(axis=0)
        self.offset_sum = total if self.offset_sum is None else self.offset_sum + total
        self.sq_sum += float(np.sum(d * d))
        self.count += len(d)

    @property
    def ratio(self) -> float | None:
        """``R`` (module docstring), or None before any photo."""
        if self.offset_sum is None or self.sq_sum <= 0:
            return None
        mean = self.offset_sum / self.count
        return float(np.dot(mean, mean) / (self.sq_sum / self.count))

    @property
    def shifted(self) -> bool:
        r = self.ratio
        return r is not None and self.count >= DRIFT_MIN_PHOTOS and r > DRIFT_RATIO

    def summary(self) -> dict[str, Any] | None:
        """``{"photos", "ratio", "expected", "shifted"}`` for a load's summary, or None before any photo."""
        r = self.ratio
        if r is None:
            return None
        return {
            "photos": self.count,
            "ratio": round(r, 4),
            "expected": round(1.0 / self.count, 4),
            "shifted": self.shifted,
        }

    def message(self, index: str) -> str:
        r = self.ratio or 0.0
        return (
            f"the {self.count} photos loaded into {index} sit off the photo centre it was created with "
            f"(common offset {r:.2f} of their spread; photos like the collection it was made from give about "
            f"{1 / max(self.count, 1):.3f}): they look unlike that collection, and search ranks them less well. "
            "`jrs index` without --update makes a new version centred on the collection as it is now"
        )

    def report(self, index: str) -> dict[str, Any] | None:
        """:meth:`summary` for a load into ``index``, with a warning logged when :attr:`shifted`."""
        if self.shifted:
            log.warning(self.message(index))
        return self.summary()


@dataclass
class FeatureDrift:
    """Running per-feature moments of one load's backbone photo features (Chan's pairwise update), to compare
    with the statistics the index reads them with (``_meta.photo_feature_stats``)."""

    count: int = 0
    mean: np.ndarray | None = field(default=None, repr=False)
    m2: np.ndarray | None = field(default=None, repr=False)
    #: the index's per-feature mean, and standard deviation as its features are read (floored)
    reference: FeatureStats | None = field(default=None, repr=False)
    #: the least spread a feature is read with (:data:`~toolkit.index.feature_stats.MIN_STD_RATIO` of training's)
    floor: np.ndarray | None = field(default=None, repr=False)

    def add(self, features: np.ndarray, stats: FeatureStats, floor: np.ndarray) -> None:
        """Count backbone features ``[N, D]`` against the index's ``stats``, spreads floored at ``floor``."""
        x = np.asarray(features, dtype=np.float64)
        if x.ndim != 2 or len(x) == 0:
            return
        if self.reference is None:
            self.floor = np.asarray(floor, dtype=np.float64)
            self.reference = FeatureStats(
                np.asarray(stats.mean, np.float64), np.maximum(np.asarray(stats.std, np.float64), self.floor)
            )
        n, mean = len(x), x.mean(axis=0)
        m2 = ((x - mean) ** 2).sum(axis=0)
        if self.mean is None or self.m2 is None:
            self.count, self.mean, self.m2 = n, mean, m2
            return
        total = self.count + n
        delta = mean - self.mean
        self.mean = self.mean + delta * (n / total)
        self.m2 = self.m2 + m2 + delta**2 * (self.count * n / total)
        self.count = total

    @property
    def mean_shift(self) -> float | None:
        """RMS over the features of (load mean - index mean) / index std; None before any photo."""
        if self.mean is None or self.reference is None:
            return None
        z = (self.mean - self.reference.mean) / self.reference.std
        return float(np.sqrt(np.mean(z * z)))

    @property
    def spread_ratio(self) -> float | None:
        """exp(RMS over the features of log(load std / index std)), both floored; None before any photo."""
        if self.m2 is None or self.reference is None or self.floor is None:
            return None
        std = np.maximum(np.sqrt(self.m2 / self.count), self.floor)
        log_ratio = np.log(std / self.reference.std)
        return float(np.exp(np.sqrt(np.mean(log_ratio * log_ratio))))

    @property
    def shifted(self) -> bool:
        shift, ratio = self.mean_shift, self.spread_ratio
        if shift is None or ratio is None or self.count < DRIFT_MIN_PHOTOS:
            return False
        return shift > FEATURE_MEAN_SHIFT or ratio > FEATURE_SPREAD_RATIO

    def summary(self) -> dict[str, Any] | None:
        """``{"photos", "mean_shift", "spread_ratio", "shifted"}`` for a load's summary, or None before any
        photo (or where the index has no feature statistics)."""
        shift, ratio = self.mean_shift, self.spread_ratio
        if shift is None or ratio is None:
            return None
        return {
            "photos": self.count,
            "mean_shift": round(shift, 4),
            "spread_ratio": round(ratio, 4),
            "shifted": self.shifted,
        }

    def message(self, index: str) -> str:
        shift, ratio = self.mean_shift or 0.0, self.spread_ratio or 1.0
        dims = 0 if self.mean is None else len(self.mean)
        return (
            f"the {self.count} photos loaded into {index} do not fit the photo feature statistics it was created "
            f"with: their per-feature means sit {shift:.2f} standard deviations from the stored ones (RMS over "
            f"{dims} features; photos like the collection it was made from give about "
            f"{1 / np.sqrt(max(self.count, 1)):.2f}, {FEATURE_MEAN_SHIFT} warns) and their spreads differ by a "
            f"factor of {ratio:.2f} ({FEATURE_SPREAD_RATIO} warns): the index reads them with statistics of "
            "another kind of photo, and search ranks them less well. `jrs index` without --update makes a new "
            "version whose statistics are the collection's as it is now"
        )

    def report(self, index: str) -> dict[str, Any] | None:
        """:meth:`summary` for a load into ``index``, with a warning logged when :attr:`shifted`."""
        if self.shifted:
            log.warning(self.message(index))
        return self.summary()
