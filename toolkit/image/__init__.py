"""Image side of the pipeline: safe photo loading, pluggable encoders, resumable feature extraction.

Names are imported lazily so that ``import toolkit.image`` does not load torch.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "ImageEncoder": "toolkit.image.encoders",
    "PluginError": "toolkit.image.encoders",
    "available_encoders": "toolkit.image.encoders",
    "create_encoder": "toolkit.image.encoders",
    "describe_encoders": "toolkit.image.encoders",
    "register_encoder": "toolkit.image.encoders",
    "ImageRejected": "toolkit.image.loading",
    "load_image": "toolkit.image.loading",
    "FeatureResult": "toolkit.image.features",
    "FeatureStateError": "toolkit.image.features",
    "extract_features": "toolkit.image.features",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)
