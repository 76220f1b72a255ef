"""The linear branch of a mapping: a regularised CCA of the training pairs, fused with the towers.

After the towers are trained, a CCA (:func:`toolkit.evaluation.linear.fit_cca`, regularisation picked on
the validation pairs, exactly as the linear baseline is fitted) is fitted on the same inputs: the Word2Vec
step means and the backbone features. A text or photo is then embedded as
``[sqrt(1 - w) * tower, sqrt(w) * cca]``, both parts unit length, so the cosine of two embeddings is
``(1 - w) * cos_towers + w * cos_cca``: one vector, one ``dense_vector`` field, one kNN search. The towers
generalise the training concepts; the linear map, with far fewer free parameters, holds up better on
concepts and drawings the towers never saw (``bench/bench_quality.py``).

The standardisation is folded into the weights; for a bag text tower (token ids) the CCA's text side is
folded into the fixed Word2Vec vectors (``words @ W``: a ``[vocab, k]`` table whose bag mean is the
projection of the step mean), so the branch reads the same token ids as the tower.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from toolkit.evaluation.linear import LinearMap


class LinearBranch(nn.Module):
    """Fixed (never trained) linear text and image maps into ``dims`` CCA dimensions.

    ``vocab`` > 0: the text side reads token bags through a ``[vocab, dims]`` table; otherwise step means
    through a ``[text_dim, dims]`` matrix. Weights are buffers: saved with the mapping, part of its
    fingerprint, untouched by the optimiser.
    """

    def __init__(self, text_dim: int, image_dim: int, dims: int, vocab: int = 0) -> None:
        super().__init__()
        if min(text_dim, image_dim, dims) < 1 or vocab < 0:
            raise ValueError(f"bad linear branch shape: {text_dim}, {image_dim}, {dims}, vocab {vocab}")
        self.vocab = vocab
        self.register_buffer("text_weight", torch.zeros(vocab or text_dim, dims))
        self.register_buffer("text_bias", torch.zeros(dims))
        self.register_buffer("image_weight", torch.zeros(image_dim, dims))
        self.register_buffer("image_bias", torch.zeros(dims))

    def set_map(self, linear: LinearMap, word_vectors: np.ndarray | None = None) -> None:
        """Take a fitted CCA (``linear``), folding its standardisation in; ``word_vectors`` (``[vocab,
        text_dim]``, the fixed Word2Vec vectors) for a branch that reads token bags."""
        if linear.image_proj is None:
            raise ValueError("the linear branch needs a map with an image projection (CCA)")
        text_w = linear.text_proj / linear.text_scale[:, None]
        text_b = -(linear.text_mean / linear.text_scale) @ linear.text_proj
        image_w = linear.image_proj / linear.image_scale[:, None]
        image_b = -(linear.image_mean / linear.image_scale) @ linear.image_proj
        if self.vocab:
            if word_vectors is None or word_vectors.shape != (self.vocab, text_w.shape[0]):
                raise ValueError(
                    f"a token-bag branch needs word vectors of shape ({self.vocab}, {text_w.shape[0]})"
                )
            text_w = np.asarray(word_vectors, dtype=np.float64) @ text_w
        for name, value in (
            ("text_weight", text_w),
            ("text_bias", text_b),
            ("image_weight", image_w),
            ("image_bias", image_b),
        ):
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
        return F.normalize(y + self.text_bias, dim=-1)

    def image(self, x: torch.Tensor) -> torch.Tensor:
        return F.normalize(x @ self.image_weight + self.image_bias, dim=-1)


def fuse(tower: torch.Tensor, linear: torch.Tensor, weight: float) -> torch.Tensor:
    """``[sqrt(1 - weight) * tower, sqrt(weight) * linear]``: unit length when both parts are."""
    return torch.cat([tower * (1.0 - weight) ** 0.5, linear * weight**0.5], dim=-1)
