"""Variations of the synthetic sample collection, for measuring retrieval under distribution shift.

The default :class:`SampleVariant` is today's generator, byte for byte. Each other field moves one
thing away from it, so a model trained on one variant can be evaluated on a gallery drawn or written
another way: the drawing ``style``, the colour ``palette``, the ``background`` set, the ``phrasing``
of the step texts, an ``extra`` unnamed ingredient in some photos, and which ingredient x method
``combos`` appear (half of them are held out: ``seen`` generates only the other half, ``unseen`` only
the held-out half). ``style`` may name several styles joined by ``+`` (``"flat+ink"``): the photos of a
collection then alternate between them. ``content="concepts"`` writes another collection altogether: many
distinct objects with one-line descriptions (:mod:`toolkit.data.sample_concepts`).
"""

from __future__ import annotations

import hashlib
from dataclasses import asdict, dataclass, replace
from typing import Any

from toolkit.errors import ConfigError

STYLES = ("flat", "ink", "soft", "mosaic")
PALETTES = ("natural", "warm", "cool", "muted")
BACKGROUNDS = ("kitchen", "cloth")
#: ``paraphrase``: every step said another way; ``unpictured``: only the steps without a photo (their words
#: reach the Word2Vec model but no training pair)
PHRASINGS = ("plain", "paraphrase", "unpictured")
COMBOS = ("all", "seen", "unseen")
CONTENTS = ("recipes", "concepts")
#: share of a generated collection's steps that get a photo (``jrs sample-data --photo-ratio``)
PHOTO_RATIO = 0.9
#: side of a generated collection's photos in pixels (``jrs sample-data --image-size``)
SAMPLE_IMAGE_SIZE = 96


@dataclass(frozen=True)
class SampleVariant:
    """How a generated collection departs from the default one (all defaults: today's output)."""

    style: str = "flat"
    palette: str = "natural"
    background: str = "kitchen"
    phrasing: str = "plain"
    extra: float = 0.0
    combos: str = "all"
    content: str = "recipes"
    id_prefix: str = "r"

    def __post_init__(self) -> None:
        for part in self.style.split("+"):
            if part not in STYLES:
                raise ConfigError(
                    f"sample style must be one of {STYLES} (or several joined by +), got {self.style!r}"
                )
        for name, value, allowed in (
            ("palette", self.palette, PALETTES),
            ("background", self.background, BACKGROUNDS),
            ("phrasing", self.phrasing, PHRASINGS),
            ("combos", self.combos, COMBOS),
            ("content", self.content, CONTENTS),
        ):
            if value not in allowed:
                raise ConfigError(f"sample {name} must be one of {allowed}, got {value!r}")
        if not 0.0 <= self.extra <= 1.0:
            raise ConfigError(f"sample extra-ingredient share must be between 0 and 1, got {self.extra}")
        if not self.id_prefix or not self.id_prefix.isascii() or not self.id_prefix.isalnum():
            raise ConfigError(f"sample id prefix must be ASCII letters/digits, got {self.id_prefix!r}")

    @property
    def is_default(self) -> bool:
        return self == SampleVariant()

    @property
    def plain_photos(self) -> bool:
        """True when photos are drawn exactly as by the default generator."""
        return (self.style, self.palette, self.background, self.extra) == ("flat", "natural", "kitchen", 0.0)

    def photo_style(self, index: int, position: int) -> SampleVariant:
        """The variant a photo is drawn with: one of the ``+``-joined styles, alternating by photo."""
        parts = self.style.split("+")
        return self if len(parts) == 1 else replace(self, style=parts[(index + position) % len(parts)])

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def held_out_combo(ingredient: str, method: str) -> bool:
    """Whether ``ingredient`` x ``method`` is in the held-out half of the combinations (stable hash)."""
    digest = hashlib.sha256(f"{ingredient}|{method}".encode()).digest()
    return digest[0] % 2 == 1


def combo_allowed(combos: str, ingredient: str, method: str) -> bool:
    """Whether a ``combos`` variant may show ``ingredient`` cooked by ``method``."""
    if combos == "all":
        return True
    return held_out_combo(ingredient, method) == (combos == "unseen")
