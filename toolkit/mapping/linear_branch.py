"""The linear branch of a mapping: regularised CCAs of the training pairs, fused with the towers.

After the towers are trained, a CCA (:func:`toolkit.evaluation.linear.fit_cca`, regularisation picked on
the validation pairs, exactly as the linear baseline is fitted) is fitted on the same inputs: the Word2Vec
step means and the backbone features. A text or photo is then embedded as
``[sqrt(1 - w) * tower, sqrt(w) * cca]``, both parts unit length, so the cosine of two embeddings is
``(1 - w) * cos_towers + w * cos_cca``: one vector, one ``dense_vector`` field, one kNN search. The towers
generalise the training concepts; the linear map, with far fewer free parameters, holds up better on
concepts and drawings the towers never saw (``bench/bench_quality.py``).

With a second, strongly regularised CCA (``MappingConfig.linear_strong_reg``; close to PLS, it keeps the
directions of large shared variance) the branch reads both maps: each map's unit variates, side by side,
are projected on the top ``dims`` principal directions of those of the training pairs (both sides) and
normalised again. The validation pairs are drawn like the training ones, so with thousands of pairs they
pick the weakest regularisation, whose fine directions do not carry over to other drawings; the strong map
holds up there, and the branch keeps its dimensions (docs/quality-log.md, 2026-12-07).

The standardisation is folded into the weights; for a bag text tower (token ids) the CCA's text side is
folded into the fixed Word2Vec vectors (``words @ W``: a ``[vocab, k]`` table whose bag mean is the
projection of the step mean), so the branch reads the same token ids as the tower.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from toolkit.evaluation.linear import LinearMap
from toolkit.mapping.cca import leading_directions

#: Training rows embedded at a time when the merge of two maps is fitted.
MERGE_BLOCK = 8192


class LinearBranch(nn.Module):
    """Fixed (never trained) linear text and image maps into ``dims`` CCA dimensions.

    ``vocab`` > 0: the text side reads token bags through a ``[vocab, maps * dims]`` table; otherwise step
    means through a ``[text_dim, maps * dims]`` matrix. ``maps`` > 1: each map's variates are normalised,
    then ``merge`` (``[maps * dims, dims]``) projects them together. Weights are buffers: saved with the
    mapping, part of its fingerprint, untouched by the optimiser.
    """

    # buffers (register_buffer); merge only with maps > 1
    text_weight: torch.Tensor
    text_bias: torch.Tensor
    image_weight: torch.Tensor
    image_bias: torch.Tensor
    merge: torch.Tensor

    def __init__(self, text_dim: int, image_dim: int, dims: int, vocab: int = 0, maps: int = 1) -> None:
        super().__init__()
        if min(text_dim, image_dim, dims, maps) < 1 or vocab < 0:
            raise ValueError(
                f"bad linear branch shape: {text_dim}, {image_dim}, {dims}, vocab {vocab}, maps {maps}"
            )
        self.vocab, self.dims, self.maps = vocab, dims, maps
        width = maps * dims
        self.register_buffer("text_weight", torch.zeros(vocab or text_dim, width))
        self.register_buffer("text_bias", torch.zeros(width))
        self.register_buffer("image_weight", torch.zeros(image_dim, width))
        self.register_buffer("image_bias", torch.zeros(width))
        if maps > 1:
            self.register_buffer("merge", torch.zeros(width, dims))

    def set_maps(
        self,
        maps: Sequence[LinearMap],
        merge: np.ndarray | None = None,
        word_vectors: np.ndarray | None = None,
    ) -> None:
        """Take fitted CCAs (``maps``, ``merge`` from :func:`fit_merge` when there are several), folding
        their standardisation in; ``word_vectors`` (``[vocab, text_dim]``, the fixed Word2Vec vectors)
        for a branch that reads token bags."""
        if len(maps) != self.maps or (merge is None) != (self.maps == 1):
            raise ValueError(f"this branch takes {self.maps} map(s) and a merge only with more than one")
        parts = [_folded(m) for m in maps]
        text_w, text_b, image_w, image_b = (np.concatenate([p[i] for p in parts], axis=-1) for i in range(4))
        if self.vocab:
            if word_vectors is None or word_vectors.shape != (self.vocab, text_w.shape[0]):
                raise ValueError(
                    f"a token-bag branch needs word vectors of shape ({self.vocab}, {text_w.shape[0]})"
                )
            text_w = np.asarray(word_vectors, dtype=np.float64) @ text_w
        values = {"text_weight": text_w, "text_bias": text_b, "image_weight": image_w, "image_bias": image_b}
        if merge is not None:
            values["merge"] = merge
        for name, value in values.items():
            buf = getattr(self, name)
            if tuple(value.shape) != tuple(buf.shape):
                raise ValueError(
                    f"linear branch {name} must have shape {tuple(buf.shape)}, got {value.shape}"
                )
            buf.copy_(torch.as_tensor(value, dtype=torch.float32))

    def text(self, x: torch.Tensor | tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
        """Unit-length CCA variates of step means ``[B, text_dim]`` or token bags ``(ids, offsets)``."""
        if isinstance(x, tuple):
            ids, offsets = x
            y = F.embedding_bag(ids, self.text_weight, offsets, mode="mean", include_last_offset=True)
        else:
            y = x @ self.text_weight
        return self._variates(y + self.text_bias)

    def image(self, x: torch.Tensor) -> torch.Tensor:
        return self._variates(x @ self.image_weight + self.image_bias)

    def _variates(self, y: torch.Tensor) -> torch.Tensor:
        if self.maps == 1:
            return F.normalize(y, dim=-1)
        parts = [F.normalize(p, dim=-1) for p in y.split(self.dims, dim=-1)]
        return F.normalize(torch.cat(parts, dim=-1) @ self.merge, dim=-1)


def _folded(linear: LinearMap) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """A CCA's ``(text_w, text_b, image_w, image_b)`` with its standardisation folded in."""
    if linear.image_proj is None:
        raise ValueError("the linear branch needs a map with an image projection (CCA)")
    text_w = linear.text_proj / linear.text_scale[:, None]
    text_b = -(linear.text_mean / linear.text_scale) @ linear.text_proj
    image_w = linear.image_proj / linear.image_scale[:, None]
    image_b = -(linear.image_mean / linear.image_scale) @ linear.image_proj
    return text_w, text_b, image_w, image_b


def fit_merge(maps: Sequence[LinearMap], text: Any, image: Any) -> np.ndarray:
    """The ``[len(maps) * k, k]`` projection that merges ``maps`` (``k`` variates each): the top ``k``
    principal directions (uncentred: rows are compared by cosine) of the side-by-side unit variates of the
    training pairs, texts and photos alike. Read in blocks of :data:`MERGE_BLOCK` rows; signs fixed
    (:func:`~toolkit.mapping.cca.leading_directions`) so the same pairs give the same merge."""
    dims = {int(m.text_proj.shape[1]) for m in maps}
    if len(maps) < 2 or len(dims) != 1:
        raise ValueError(f"a merge needs two or more maps of the same width, got {sorted(dims)}")
    k = dims.pop()
    moment = np.zeros((len(maps) * k, len(maps) * k))
    for start in range(0, int(text.shape[0]), MERGE_BLOCK):
        t, i = text[start : start + MERGE_BLOCK], image[start : start + MERGE_BLOCK]
        for side in (
            np.concatenate([m.embed_text(t) for m in maps], axis=1),
            np.concatenate([m.embed_image(i) for m in maps], axis=1),
        ):
            side = side.astype(np.float64)
            moment += side.T @ side
    return leading_directions(moment, k)


def fuse(tower: torch.Tensor, linear: torch.Tensor, weight: float) -> torch.Tensor:
    """``[sqrt(1 - weight) * tower, sqrt(weight) * linear]``: unit length when both parts are."""
    return torch.cat([tower * (1.0 - weight) ** 0.5, linear * weight**0.5], dim=-1)
