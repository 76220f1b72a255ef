"""The image-encoder plug-in interface and its registry.

An encoder turns decoded photos into fixed-size float32 vectors. It provides:

* ``name: str`` -- the resolved encoder name (e.g. ``"resnet50"``);
* ``dim: int`` -- the length of each vector;
* ``preprocess(img: PIL.Image.Image) -> torch.Tensor`` -- a CHW float tensor. It runs in
  DataLoader worker processes, so it must be picklable and must not hold the network
  (make it a small callable object, not a bound method of the encoder);
* ``encode_batch(batch: torch.Tensor) -> np.ndarray`` -- float32 ``[B, dim]`` for a stacked
  batch of preprocessed tensors, deterministic for the same input;
* ``fingerprint: str`` -- a hash of the name, the weights' identity (a hash of the state-dict
  tensors, plus where they came from) and the preprocessing configuration: two encoders with
  the same fingerprint produce the same vectors.

Optional attributes the pipeline uses when present: ``load_size: int`` (the shortest image side
``preprocess`` needs, used to decode big JPEGs at reduced size), ``weights_source: str`` and
``config: dict`` (recorded in the vector set's metadata) and ``message: str`` (what was chosen
and why, e.g. the ``weights="auto"`` fallback).

Built-in encoders live in :mod:`toolkit.image.backbones` and :mod:`toolkit.image.finetuned`.
Third-party packages add encoders through the entry-point group ``jrecipe_search.encoders``;
each entry point names a factory with the signature of :func:`create_encoder` minus ``name``. Plug-ins are imported only when
used, and one that fails to import or to build is reported by name. A plug-in's encoder must carry the name it
is registered under (a model rebuilds its encoder by that name); a name that two installed plug-ins claim is
refused rather than one of them picked, and a plug-in named like a built-in encoder is never used (a warning
says so).

Minimal plug-in::

    import numpy as np, torch
    from toolkit.fingerprint import fingerprint

    class MeanColour:
        name, dim = "mean-colour", 3
        fingerprint = fingerprint("mean-colour", 1)

        def preprocess(self, img):  # a plain picklable object: fine for workers
            return torch.from_numpy(np.asarray(img.resize((8, 8)), np.float32)).permute(2, 0, 1)

        def encode_batch(self, batch):
            return batch.mean(dim=(2, 3)).numpy().astype(np.float32)

    def make(weights=None, device="cpu", **kw):
        return MeanColour()

    # pyproject.toml of the plug-in package:
    # [project.entry-points."jrecipe_search.encoders"]
    # mean-colour = "my_package.encoders:make"
"""

from __future__ import annotations

import importlib
import logging
from collections.abc import Callable
from dataclasses import dataclass
from importlib.metadata import EntryPoint, entry_points
from typing import Any, Protocol, runtime_checkable

import numpy as np
import torch
from PIL import Image

from toolkit.errors import ConfigError, ToolkitError

log = logging.getLogger(__name__)

#: Entry-point group third-party encoders register under.
ENTRY_POINT_GROUP = "jrecipe_search.encoders"

#: The encoder used when none is named.
DEFAULT_ENCODER = "resnet50"

EncoderFactory = Callable[..., "ImageEncoder"]


@runtime_checkable
class ImageEncoder(Protocol):
    """What every image encoder provides (see the module docstring)."""

    name: str
    dim: int
    fingerprint: str

    def preprocess(self, img: Image.Image) -> torch.Tensor: ...

    def encode_batch(self, batch: torch.Tensor) -> np.ndarray: ...


class PluginError(ToolkitError):
    """A third-party encoder plug-in that cannot be loaded or built."""


@dataclass(frozen=True)
class EncoderInfo:
    """One available encoder: ``origin`` is ``"builtin"``, ``"registered"`` or ``"plugin <value>"``."""

    name: str
    origin: str
    description: str = ""


_REGISTRY: dict[str, tuple[EncoderFactory, str, str]] = {}


def register_encoder(name: str, factory: EncoderFactory, *, description: str = "", origin: str = "") -> None:
    """Register ``factory(weights=..., device=..., **kw) -> ImageEncoder`` under ``name``."""
    if not name or not isinstance(name, str):
        raise ValueError("encoder name must be a non-empty string")
    if not callable(factory):
        raise TypeError(f"factory for encoder {name!r} is not callable")
    _REGISTRY[name] = (factory, origin or "registered", description)


def unregister_encoder(name: str) -> None:
    """Forget an encoder registered in this process (entry-point plug-ins stay listed)."""
    _REGISTRY.pop(name, None)


#: Modules that register the built-in encoders when imported.
BUILTIN_MODULES = ("toolkit.image.backbones", "toolkit.image.finetuned")


def _load_builtins() -> None:
    for module in BUILTIN_MODULES:
        importlib.import_module(module)


def _plugin_entry_points() -> dict[str, list[EntryPoint]]:
    """Entry points by encoder name; more than one when installed distributions claim the same name."""
    found: dict[str, list[EntryPoint]] = {}
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        claims = found.setdefault(ep.name, [])
        if all(other.value != ep.value for other in claims):
            claims.append(ep)
    return {name: sorted(claims, key=lambda ep: ep.value) for name, claims in found.items()}


def _claimant(ep: EntryPoint) -> str:
    """``value`` of an entry point, with the distribution that declares it when known."""
    dist = getattr(ep, "dist", None)
    name = dist.metadata["Name"] if dist is not None else None
    return f"{ep.value} ({name})" if name else ep.value


def _shadowed(name: str, eps: list[EntryPoint]) -> None:
    log.warning(
        "encoder plug-in %s is registered under %r, the name of a built-in encoder: it is never used "
        "(rename its entry point in group %s)",
        ", ".join(_claimant(ep) for ep in eps),
        name,
        ENTRY_POINT_GROUP,
    )


def describe_encoders() -> list[EncoderInfo]:
    """Built-in, registered and plug-in encoders (plug-ins are listed without being imported)."""
    _load_builtins()
    out = {name: EncoderInfo(name, origin, desc) for name, (_, origin, desc) in _REGISTRY.items()}
    for name, eps in _plugin_entry_points().items():
        if name in out:
            _shadowed(name, eps)
        elif len(eps) > 1:
            claims = " | ".join(ep.value for ep in eps)
            out[name] = EncoderInfo(name, f"plugin {claims}", "claimed by several plug-ins: unusable")
        else:
            out[name] = EncoderInfo(name, f"plugin {eps[0].value}", "")
    return [out[n] for n in sorted(out)]


def available_encoders() -> list[str]:
    """Names accepted by :func:`create_encoder`."""
    return [info.name for info in describe_encoders()]


def _resolve_factory(name: str) -> tuple[EncoderFactory, str]:
    _load_builtins()
    eps = _plugin_entry_points().get(name, [])
    if name in _REGISTRY:
        if eps:
            _shadowed(name, eps)
        factory, origin, _ = _REGISTRY[name]
        return factory, origin
    if not eps:
        known = ", ".join(available_encoders())
        raise ConfigError(f"unknown image encoder {name!r}; available: {known}")
    if len(eps) > 1:
        raise PluginError(
            f"encoder name {name!r} is claimed by {len(eps)} plug-ins ({'; '.join(_claimant(e) for e in eps)}, "
            f"group {ENTRY_POINT_GROUP}): uninstall all but one"
        )
    ep = eps[0]
    try:
        factory = ep.load()
    except Exception as e:  # any import-time failure of third-party code
        raise PluginError(
            f"encoder plug-in {name!r} ({ep.value}, group {ENTRY_POINT_GROUP}) failed to load: "
            f"{type(e).__name__}: {e}"
        ) from e
    if not callable(factory):
        raise PluginError(f"encoder plug-in {name!r} ({ep.value}) is not callable")
    return factory, f"plugin {ep.value}"


def _check_encoder(obj: Any, name: str, origin: str) -> ImageEncoder:
    missing = [a for a in ("name", "dim", "fingerprint", "preprocess", "encode_batch") if not hasattr(obj, a)]
    if missing:
        raise PluginError(f"encoder {name!r} ({origin}) returned {type(obj).__name__} without {missing}")
    if not isinstance(obj.dim, int) or obj.dim <= 0:
        raise PluginError(f"encoder {name!r} ({origin}) has invalid dim {obj.dim!r}")
    if not isinstance(obj.fingerprint, str) or not obj.fingerprint:
        raise PluginError(f"encoder {name!r} ({origin}) has no fingerprint")
    if origin.startswith("plugin") and obj.name != name:
        raise PluginError(
            f"encoder plug-in {name!r} ({origin}) returned an encoder named {obj.name!r}: a model records its "
            f"encoder by name and rebuilds it by that name, so the plug-in must name it {name!r}"
        )
    return obj


def create_encoder(
    name: str = DEFAULT_ENCODER,
    weights: str | None = "auto",
    device: str = "cpu",
    backend: str | None = None,
    **kw: Any,
) -> ImageEncoder:
    """Build the encoder ``name``; ``weights`` is ``"auto"``, ``"imagenet"``, ``"random"`` or a path.

    ``backend`` (``auto``, ``torch``, ``onnxruntime``, ``openvino``; None: ``$JRS_IMAGE_BACKEND`` or
    ``auto``) is what the built-in CNN encoders run on (see :mod:`toolkit.image.backends`); plug-in
    encoders run as they are, and asking one for another backend than ``auto``/``torch`` is refused.
    Extra keyword arguments (e.g. ``image_size``, ``seed``) go to the factory. Unknown names
    raise :class:`~toolkit.errors.ConfigError`; broken plug-ins :class:`PluginError`.
    """
    from toolkit.image.backends import check_backend, default_backend

    chosen = check_backend(backend or default_backend())
    factory, origin = _resolve_factory(name)
    try:
        encoder = factory(weights=weights, device=device, **kw)
    except ToolkitError:
        raise
    except Exception as e:
        if origin.startswith("plugin"):
            raise PluginError(
                f"encoder plug-in {name!r} ({origin}) failed to build: {type(e).__name__}: {e}"
            ) from e
        raise
    encoder = _check_encoder(encoder, name, origin)
    use_backend = getattr(encoder, "use_backend", None)
    if callable(use_backend):
        use_backend(chosen)
    elif backend not in (None, "auto", "torch"):
        raise ConfigError(
            f"encoder {name!r} ({origin}) runs as it is: image backend {backend!r} does not apply"
        )
    message = getattr(encoder, "message", "")
    if message:
        log.info("%s", message)
    return encoder


def encoder_metadata(encoder: ImageEncoder) -> dict[str, Any]:
    """What a vector set records about the encoder that produced it (backend: how it was run)."""
    describe = getattr(encoder, "backend_metadata", None)
    backend = describe() if callable(describe) else {"backend": "own", "precision": None}
    return {
        "encoder": encoder.name,
        "encoder_fingerprint": encoder.fingerprint,
        "encoder_weights": getattr(encoder, "weights_source", ""),
        "encoder_config": getattr(encoder, "config", {}),
        **{f"encoder_{k}": v for k, v in backend.items()},
    }
