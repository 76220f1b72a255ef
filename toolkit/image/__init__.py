"""Image side of the pipeline: safe photo loading, pluggable encoders, resumable feature extraction.

Names are imported lazily so that ``import toolkit.image`` does not load torch.
"""

from __future__ import annotations

from toolkit.lazy import lazy_getattr

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


__getattr__ = lazy_getattr(__name__, _EXPORTS, globals())
