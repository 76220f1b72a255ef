"""The ``simclr`` encoder: a backbone fine-tuned by ``jrs simclr``, loaded from its ``backbone.pt``.

``backbone.pt`` is an ordinary state_dict file (``{"state_dict": ..., "jrs_simclr": meta}``), so
``--encoder resnet18 --weights runs/simclr/backbone.pt --image-size 64`` loads it as well; the
``simclr`` encoder reads the architecture and the training image size from ``meta`` instead.
The fingerprint hashes the fine-tuned tensors, so it differs from the base weights'.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from toolkit.errors import ConfigError, torch_load_reason
from toolkit.image.encoders import create_encoder, register_encoder

#: The file ``jrs simclr`` writes into its output directory for feature extraction.
BACKBONE_FILE = "backbone.pt"
BACKBONE_FORMAT = "jrs-simclr-backbone/1"


def resolve_backbone_path(weights: str | Path) -> Path:
    """``weights`` as a file: a ``jrs simclr`` output directory means its ``backbone.pt``."""
    p = Path(weights)
    return p / BACKBONE_FILE if p.is_dir() else p


def read_backbone_meta(path: str | Path) -> dict[str, Any]:
    """The ``jrs_simclr`` metadata of a fine-tuned backbone file (ConfigError naming the file otherwise)."""
    p = resolve_backbone_path(path)
    if not p.is_file():
        raise ConfigError(
            f"fine-tuned backbone not found: {str(p)!r} (pass the backbone.pt `jrs simclr` wrote)"
        )
    try:
        obj = torch.load(p, map_location="cpu", weights_only=True)
    except Exception as e:
        raise ConfigError(f"{str(p)!r} is not a readable torch file: {torch_load_reason(p, e)}") from e
    meta = obj.get("jrs_simclr") if isinstance(obj, dict) else None
    if not isinstance(meta, dict) or meta.get("format") != BACKBONE_FORMAT:
        raise ConfigError(
            f"{str(p)!r} is not a backbone written by `jrs simclr` (no {BACKBONE_FORMAT} metadata); "
            "load a plain state_dict with its architecture's encoder, e.g. --encoder resnet18 --weights FILE"
        )
    return meta


def make_simclr(
    weights: str | None = None, device: str = "cpu", image_size: int | None = None, seed: int = 0, **kw: Any
) -> Any:
    """Build the fine-tuned backbone named by ``weights`` (its file or its run directory)."""
    if not weights or weights in ("auto", "imagenet", "random"):
        raise ConfigError(
            "the simclr encoder needs --weights PATH: the backbone.pt (or the output directory) of `jrs simclr`"
        )
    path = resolve_backbone_path(weights).resolve()
    meta = read_backbone_meta(path)
    size = int(image_size or meta["image_size"])
    enc: Any = create_encoder(  # a TorchEncoder (backend torch), given the attributes below
        str(meta["arch"]), weights=str(path), device=device, image_size=size, seed=seed, backend="torch"
    )
    enc.name = "simclr"
    enc.weights_spec = str(path)  # what a model manifest records: absolute, so it loads from anywhere
    enc.message = (
        f"simclr: {meta['arch']} fine-tuned for {meta.get('steps', '?')} steps at {meta['image_size']} px "
        f"(run {meta.get('run_fingerprint', '?')}), features at {size} px"
    )
    return enc


register_encoder(
    "simclr",
    make_simclr,
    origin="builtin",
    description="a backbone fine-tuned with `jrs simclr` (--weights its backbone.pt)",
)
