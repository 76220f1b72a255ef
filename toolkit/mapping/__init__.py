"""The learned shared space: two MLP towers, metric-learning losses, training and checkpoints.

Imported lazily, so that :mod:`toolkit.mapping.config` (the options and their defaults, which the CLI shows in
``--help``) loads without torch."""

from __future__ import annotations

from typing import TYPE_CHECKING

from toolkit.lazy import lazy_getattr

# What type checkers and IDEs see (listed in the literal ``__all__``: re-exported); at run time each name loads
# on first use, through __getattr__ and _EXPORTS (tests/test_python_api.py keeps the three alike).
if TYPE_CHECKING:
    from toolkit.mapping.checkpoint import LoadedMapping, load_mapping, save_mapping
    from toolkit.mapping.config import MappingConfig
    from toolkit.mapping.losses import BidirectionalTripletLoss, SymmetricInfoNCE, similarity_matrix
    from toolkit.mapping.towers import TwoTower
    from toolkit.mapping.train import TrainResult, train_mapping

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

#: A literal list, so that type checkers count these names as exported.
__all__ = [
    "BidirectionalTripletLoss",
    "LoadedMapping",
    "MappingConfig",
    "SymmetricInfoNCE",
    "TrainResult",
    "TwoTower",
    "load_mapping",
    "save_mapping",
    "similarity_matrix",
    "train_mapping",
]


__getattr__ = lazy_getattr(__name__, _EXPORTS, globals())


def __dir__() -> list[str]:
    return __all__
