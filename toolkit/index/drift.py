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
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

import numpy as np

log = logging.getLogger(__name__)

#: fewer photos than this say too little to warn about
DRIFT_MIN_PHOTOS = 100
#: share of the spread common to the loaded photos above which a load warns
DRIFT_RATIO = 0.1


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
