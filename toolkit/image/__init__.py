"""Image side of the pipeline: safe photo loading, pluggable encoders, resumable feature extraction.

Names are imported lazily so that ``import toolkit.image`` does not load torch.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from toolkit.lazy import lazy_getattr

# What type checkers and IDEs see (listed in the literal ``__all__``: re-exported); at run time each name loads
# on first use, through __getattr__ and _EXPORTS (tests/test_python_api.py keeps the three alike).
if TYPE_CHECKING:
    from toolkit.image.encoders import (
        ImageEncoder,
        PluginError,
        available_encoders,
        create_encoder,
        describe_encoders,
        register_encoder,
    )
    from toolkit.image.features import FeatureResult, FeatureStateError, extract_features
    from toolkit.image.loading import ImageRejected, load_image

#: Public name -> the module that defines it.
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

#: A literal list, so that type checkers count these names as exported.
__all__ = [
    "FeatureResult",
    "FeatureStateError",
    "ImageEncoder",
    "ImageRejected",
    "PluginError",
    "available_encoders",
    "create_encoder",
    "describe_encoders",
    "extract_features",
    "load_image",
    "register_encoder",
]


__getattr__ = lazy_getattr(__name__, _EXPORTS, globals())


def __dir__() -> list[str]:
    return __all__
