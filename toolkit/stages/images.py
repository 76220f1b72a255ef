"""Image stage: encode every step photo with an image encoder into a vector set (resumable)."""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from toolkit.device import DEFAULT_DEVICE, resolve_device
from toolkit.errors import ConfigError, ToolkitError, given, plain_int
from toolkit.image.loading import DEFAULT_MAX_PIXELS
from toolkit.rejects import RejectsWriter
from toolkit.seeding import check_optional_seed
from toolkit.shards import extract_shard_features, parse_shard

log = logging.getLogger(__name__)


#: the largest input side taken (pixels): the CNNs are trained at 224-300 px, and the raw-pixel encoder's
#: features grow with its square
MAX_IMAGE_SIZE = 2048


@dataclass(frozen=True)
class ImageOptions:
    """Which encoder embeds the photos, and how the photos are fed to it."""

    encoder: str = "resnet50"
    weights: str = "auto"
    image_size: int | None = None
    seed: int | None = None
    device: str = DEFAULT_DEVICE
    backend: str | None = None  # what the CNN runs on (None: $JRS_IMAGE_BACKEND or auto)
    batch_size: int = 32
    workers: int | None = None
    max_pixels: int = DEFAULT_MAX_PIXELS
    overwrite: bool = False
    #: ``"I/N"``: only the photos of shard I of N (by a stable hash of the step id), for merge-vectors
    shard: str | None = None

    def __post_init__(self) -> None:
        from toolkit.image.encoders import available_encoders

        def positive(name: str, allow_none: bool = False, minimum: int = 1) -> None:
            """The field ``name`` as a plain int (a NumPy integer included) of at least ``minimum``."""
            value = getattr(self, name)
            if value is None and allow_none:
                return
            number = plain_int(value)
            if number is None or number < minimum:
                raise ConfigError(f"image {name} must be an integer >= {minimum}, got {value!r}")
            object.__setattr__(self, name, number)  # frozen

        positive("batch_size")
        positive("workers", allow_none=True, minimum=0)
        positive("image_size", allow_none=True)
        if self.image_size is not None and self.image_size > MAX_IMAGE_SIZE:
            raise ConfigError(f"image image_size must be at most {MAX_IMAGE_SIZE} px, got {self.image_size}")
        object.__setattr__(self, "seed", check_optional_seed("image seed", self.seed))  # frozen
        positive("max_pixels")
        resolve_device(self.device)
        if self.shard is not None:
            parse_shard(self.shard)
        if self.backend is not None:
            from toolkit.image.backends import check_backend

            check_backend(self.backend)
        names = available_encoders()
        if self.encoder not in names:
            raise ConfigError(f"unknown image encoder {self.encoder!r}; available: {', '.join(names)}")
        object.__setattr__(self, "weights", self._checked_weights())

    def _checked_weights(self) -> str:
        """``weights`` as a string: one of ``WEIGHTS_CHOICES`` or the path of a file or directory (a ``jrs
        simclr`` run) that exists, for a built-in encoder; any string for a plug-in (its own to read)."""
        from toolkit.image.backbones import WEIGHTS_CHOICES
        from toolkit.image.encoders import describe_encoders

        wanted = f"one of {', '.join(WEIGHTS_CHOICES)} or the path of a weights file"
        if not isinstance(self.weights, (str, os.PathLike)) or not os.fspath(self.weights):
            raise ConfigError(f"image weights must be {wanted}, got {given(self.weights)}")
        weights = os.fspath(self.weights)
        if not isinstance(weights, str):  # a bytes path
            raise ConfigError(f"image weights must be {wanted}, got {given(self.weights)}")
        builtin = any(e.name == self.encoder and e.origin == "builtin" for e in describe_encoders())
        if builtin and weights not in WEIGHTS_CHOICES and not Path(weights).exists():
            raise ConfigError(f"image weights must be {wanted}, got {weights!r}: no such weights file")
        return weights

    def encoder_kwargs(self) -> dict[str, Any]:
        """The factory keyword arguments that were set (``image_size``, ``seed``)."""
        kw: dict[str, Any] = {}
        if self.image_size is not None:
            kw["image_size"] = self.image_size
        if self.seed is not None:
            kw["seed"] = self.seed
        return kw

    def create_encoder(self) -> Any:
        """The encoder, its weights loaded; a weights file torch cannot read is one clear error."""
        from toolkit.image.encoders import create_encoder

        try:
            return create_encoder(
                self.encoder,
                weights=self.weights,
                device=resolve_device(self.device),
                backend=self.backend,
                **self.encoder_kwargs(),
            )
        except ToolkitError:
            raise
        except Exception as e:  # e.g. a file that is no state_dict of this network
            first = str(e).strip().splitlines()[0][:300] if str(e).strip() else ""
            raise ConfigError(
                f"cannot load image encoder {self.encoder!r} with weights {self.weights!r}: "
                f"{type(e).__name__}: {first}"
            ) from e


@dataclass
class ImageStage:
    """What :func:`write_image_features` produced: the feature result and the encoder used."""

    features: Any  # toolkit.image.features.FeatureResult
    encoder: Any  # toolkit.image.encoders.ImageEncoder


def write_image_features(
    items: Sequence[tuple[str, Path]],
    out_dir: str | Path,
    options: ImageOptions | None = None,
    *,
    rejects: RejectsWriter | None = None,
    progress: bool = False,
    encoder: Any = None,
    replace_other: bool = False,
) -> ImageStage:
    """Encode the photo of each ``(step_id, path)`` into a vector set at ``out_dir`` (see
    :func:`toolkit.image.features.extract_features`: resumes, refuses other encoders unless ``overwrite``;
    ``replace_other`` replaces a run or set of other photos or another encoder, keeps one to resume)."""
    from toolkit.image.features import extract_features

    opts = options or ImageOptions()
    encoder = encoder or opts.create_encoder()
    log.info("image encoder: %s (%d-d)", encoder.name, encoder.dim)  # its message: logged where it is made
    kwargs: dict[str, Any] = dict(
        batch_size=opts.batch_size,
        num_workers=opts.workers,
        rejects=rejects,
        progress=progress,
        overwrite=opts.overwrite,
        replace_other=replace_other,
        max_pixels=opts.max_pixels,
    )
    if opts.shard is not None:
        shard = parse_shard(opts.shard)
        log.info("shard %s of the %d photos", shard, len(items))
        result = extract_shard_features(items, shard, encoder, out_dir, **kwargs)
    else:
        result = extract_features(items, encoder, out_dir, **kwargs)
    log.info("image features: %d photos encoded, %d rejected", result.encoded, result.rejected)
    return ImageStage(result, encoder)
