"""The learned shared space: two MLP towers, metric-learning losses, training and checkpoints."""

from toolkit.mapping.checkpoint import LoadedMapping, load_mapping, save_mapping
from toolkit.mapping.losses import BidirectionalTripletLoss, SymmetricInfoNCE, similarity_matrix
from toolkit.mapping.towers import TwoTower
from toolkit.mapping.train import MappingConfig, TrainResult, train_mapping

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
