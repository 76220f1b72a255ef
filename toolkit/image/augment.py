"""SimCLR's data augmentation: two independently augmented views of one photo.

The recipe of Chen et al. (2020), scaled to small images: random resized crop (scale
``crop_scale``), horizontal flip, colour jitter (probability 0.8, strength ``jitter``), random
grayscale (0.2), Gaussian blur (probability ``blur_p``, kernel ~10% of the side, sigma 0.1-2.0),
then the backbone's normalisation. Objects are plain picklable dataclasses, so DataLoader
workers can run them; randomness comes from torch's generator (seeded per worker by torch).
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any

import torch
from PIL import Image
from torchvision.transforms import v2

from toolkit.errors import ConfigError
from toolkit.image.backbones import IMAGENET_MEAN, IMAGENET_STD


@dataclass(frozen=True)
class SimCLRAugment:
    """PIL RGB image -> ``(view_a, view_b)``, two CHW float32 tensors of ``size`` x ``size``."""

    size: int = 64
    crop_scale: tuple[float, float] = (0.2, 1.0)
    jitter: float = 0.5
    jitter_p: float = 0.8
    gray_p: float = 0.2
    blur_p: float = 0.5
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    _pipeline: Any = field(default=None, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.size < 8:
            raise ConfigError(f"augmentation size must be >= 8 pixels, got {self.size}")
        lo, hi = self.crop_scale
        if not 0 < lo <= hi <= 1:
            raise ConfigError(f"crop_scale must satisfy 0 < min <= max <= 1, got {self.crop_scale}")
        s = self.jitter
        kernel = max(3, int(0.1 * self.size) // 2 * 2 + 1)  # odd, ~10% of the side
        steps = [
            v2.RandomResizedCrop(self.size, scale=self.crop_scale, antialias=True),
            v2.RandomHorizontalFlip(),
            v2.RandomApply([v2.ColorJitter(0.8 * s, 0.8 * s, 0.8 * s, min(0.5, 0.2 * s))], p=self.jitter_p),
            v2.RandomGrayscale(p=self.gray_p),
            v2.RandomApply([v2.GaussianBlur(kernel, sigma=(0.1, 2.0))], p=self.blur_p),
            v2.ToDtype(torch.float32, scale=True),
            v2.Normalize(list(self.mean), list(self.std)),
        ]
        object.__setattr__(self, "_pipeline", v2.Compose(steps))

    def view(self, img: Image.Image) -> torch.Tensor:
        """One augmented view."""
        x = v2.functional.pil_to_tensor(img if img.mode == "RGB" else img.convert("RGB"))
        return self._pipeline(x)

    def __call__(self, img: Image.Image) -> tuple[torch.Tensor, torch.Tensor]:
        return self.view(img), self.view(img)

    def __getstate__(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self) if f.init}

    def __setstate__(self, state: dict[str, Any]) -> None:
        for k, v in state.items():
            object.__setattr__(self, k, tuple(v) if isinstance(v, list) else v)
        self.__post_init__()

    def config(self) -> dict[str, Any]:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in self.__getstate__().items()}
