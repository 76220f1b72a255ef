"""What defines a SimCLR run (:class:`SimCLRConfig`): a module that loads torch only to pick a default device or
architecture, so that the CLI shows the other defaults (``jrs simclr --help``) without it."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from toolkit.errors import ConfigError
from toolkit.seeding import check_seed

#: Architectures that can be fine-tuned, and the sub-module whose state_dict their encoder loads.
FINETUNABLE: dict[str, str] = {"resnet18": "", "resnet50": "", "efficientnet-lite0": "net"}


def default_device() -> str:
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def default_arch() -> str:
    """ResNet-50 when a GPU is present, ResNet-18 on CPU."""
    import torch

    return "resnet50" if torch.cuda.is_available() else "resnet18"


@dataclass
class SimCLRConfig:
    """What defines a run (all but the last block go into the run fingerprint)."""

    arch: str = field(default_factory=default_arch)
    init: str = "auto"  # auto | imagenet | random | PATH (a state_dict)
    image_size: int = 64
    epochs: int = 5
    batch_size: int = 256  # effective batch: the negatives of NT-Xent
    chunk_size: int = 32  # images per forward pass (GradCache); memory scales with this
    lr: float = 1e-3
    weight_decay: float = 1e-6
    warmup_fraction: float = 0.1
    temperature: float = 0.5
    proj_hidden: int = 512
    proj_dim: int = 128
    crop_scale: tuple[float, float] = (0.2, 1.0)
    jitter: float = 0.5
    blur_p: float = 0.5
    max_steps: int | None = None  # cap on the whole schedule
    seed: int = 0
    # runtime only: not part of the fingerprint
    device: str = "auto"
    num_workers: int = 0
    checkpoint_every: int = 50
    progress: bool = True

    RUNTIME = ("device", "num_workers", "checkpoint_every", "progress")

    def check(self) -> None:
        if self.arch not in FINETUNABLE:
            raise ConfigError(f"cannot fine-tune {self.arch!r}; supported: {', '.join(FINETUNABLE)}")
        self.seed = check_seed("simclr seed", self.seed)
        for name in ("image_size", "epochs", "batch_size", "chunk_size", "proj_hidden", "proj_dim"):
            if int(getattr(self, name)) < 1:
                raise ConfigError(f"simclr {name} must be >= 1, got {getattr(self, name)}")
        if self.image_size < 16:
            raise ConfigError(f"simclr image_size must be >= 16, got {self.image_size}")
        if self.batch_size < 2:
            raise ConfigError("simclr batch_size must be >= 2 (NT-Xent needs negatives)")
        if self.chunk_size < 2:
            raise ConfigError(
                f"simclr chunk_size must be >= 2, got {self.chunk_size}: batch-norm layers (the projection "
                "head's among them) need two images per forward pass"
            )
        if self.temperature <= 0 or self.lr <= 0:
            raise ConfigError("simclr temperature and lr must be > 0")
        if self.max_steps is not None and self.max_steps < 1:
            raise ConfigError(f"simclr max_steps must be >= 1, got {self.max_steps}")

    def identity(self) -> dict[str, Any]:
        d = asdict(self)
        for k in self.RUNTIME:
            d.pop(k)
        d["crop_scale"] = list(self.crop_scale)
        return d
