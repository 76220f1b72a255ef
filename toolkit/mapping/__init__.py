"""The learned shared space: two MLP towers, metric-learning losses, training and checkpoints.

Imported lazily, so that :mod:`toolkit.mapping.config` (the options and their defaults, which the CLI shows in
``--help``) loads without torch."""

from __future__ import annotations

from toolkit.lazy import lazy_getattr

#: Public name -> the module that defines it.
_EXPORTS = {
    "LoadedMapping": "toolkit.mapping.checkpoint",
    "load_mapping": "toolkit.mapping.checkpoint",
    "save_mapping": "toolkit.mapping.checkpoint",
    "BidirectionalTripletLoss": "toolkit.mapping.losses",
    "SymmetricInfoNCE": "toolkit.mapping.losses",
    "similarity_matrix": "toolkit.mapping.losses",
    "TwoTower": "toolkit.mapping.towers",
    "MappingConfig": "toolkit.mapping.config",
    "TrainResult": "toolkit.mapping.train",
    "train_mapping": "toolkit.mapping.train",
}

__all__ = sorted(_EXPORTS)


__getattr__ = lazy_getattr(__name__, _EXPORTS, globals())


def __dir__() -> list[str]:
    return __all__
