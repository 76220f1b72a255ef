"""Metric-learning losses for paired text/image batches, built from small composable parts.

Row ``i`` of the text batch and row ``i`` of the image batch are a positive pair (the diagonal of the
similarity matrix). Optional group labels (e.g. recipe ids, or ids of identical step texts) mark
off-diagonal pairs that must not be used as negatives, because they are duplicates of the positive.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from toolkit.mapping.config import MINING  # noqa: F401 - re-exported


def similarity_matrix(a: torch.Tensor, b: torch.Tensor, normalize: bool = False) -> torch.Tensor:
    """Cosine similarities ``[len(a), len(b)]`` (inputs assumed unit length unless ``normalize``)."""
    if normalize:
        a = F.normalize(a, dim=-1)
        b = F.normalize(b, dim=-1)
    return a @ b.T


def negative_mask(
    n: int, groups: torch.Tensor | None = None, device: torch.device | None = None
) -> torch.Tensor:
    """Boolean ``[n, n]``: True where column ``j`` is a valid negative for row ``i``.

    The diagonal is never a negative; with ``groups``, neither is any pair sharing a group label.
    """
    if groups is None:
        return ~torch.eye(n, dtype=torch.bool, device=device)
    if groups.shape != (n,):
        raise ValueError(f"groups must have shape ({n},), got {tuple(groups.shape)}")
    return groups[:, None] != groups[None, :]


def hardest_negatives(sim: torch.Tensor, neg_mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per row, the column of the most similar valid negative.

    Returns ``(indices [n], has_negative [n])``; rows without any valid negative get index 0 and False.
    """
    masked = sim.masked_fill(~neg_mask, float("-inf"))
    idx = masked.argmax(dim=1)
    return idx, neg_mask.any(dim=1)


def semihard_negatives(
    sim: torch.Tensor, pos: torch.Tensor, neg_mask: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per row, the most similar valid negative that is still *less* similar than the positive.

    This is FaceNet's semi-hard choice in similarity form (``s_an < s_ap``, the hardest such one;
    with a margin the loss is non-zero only inside the band ``s_ap - margin < s_an < s_ap``). A row with
    no such negative (every negative beats the positive, common early in training) falls back to its
    *least* similar negative, as in TensorFlow's ``triplet_semihard_loss``, which avoids the collapse that
    the very hardest negatives can cause. Returns ``(indices [n], has_negative [n])``.
    """
    semi = neg_mask & (sim < pos[:, None])
    semi_idx = sim.masked_fill(~semi, float("-inf")).argmax(dim=1)
    easiest_idx = sim.masked_fill(~neg_mask, float("inf")).argmin(dim=1)
    idx = torch.where(semi.any(dim=1), semi_idx, easiest_idx)
    return idx, neg_mask.any(dim=1)


def _triplet_one_way(
    sim: torch.Tensor, neg_mask: torch.Tensor, margin: float, mining: str
) -> tuple[torch.Tensor, torch.Tensor]:
    """Hinge losses per anchor row of ``sim`` (anchors x candidates) and which rows count."""
    pos = sim.diagonal()
    if mining == "hard":
        idx, valid = hardest_negatives(sim, neg_mask)
    else:
        idx, valid = semihard_negatives(sim.detach(), pos.detach(), neg_mask)
    neg = sim.gather(1, idx[:, None]).squeeze(1)
    return F.relu(margin - pos + neg), valid


class BidirectionalTripletLoss(nn.Module):
    """Max-margin triplet loss in both directions (text->image and image->text), one mined negative per anchor."""

    def __init__(self, margin: float = 0.2, mining: str = "semihard") -> None:
        super().__init__()
        if mining not in MINING:
            raise ValueError(f"mining must be one of {MINING}, got {mining!r}")
        if margin <= 0:
            raise ValueError(f"margin must be positive, got {margin}")
        self.margin = margin
        self.mining = mining

    def forward(
        self, text: torch.Tensor, image: torch.Tensor, groups: torch.Tensor | None = None
    ) -> torch.Tensor:
        if text.shape != image.shape:
            raise ValueError(
                f"text and image batches differ in shape: {tuple(text.shape)} vs {tuple(image.shape)}"
            )
        sim = similarity_matrix(text, image)
        mask = negative_mask(sim.shape[0], groups, sim.device)
        losses, valids = [], []
        for s in (sim, sim.T):  # text->image anchors, then image->text anchors
            loss, valid = _triplet_one_way(s, mask, self.margin, self.mining)
            losses.append(loss)
            valids.append(valid)
        loss = torch.cat(losses)
        valid = torch.cat(valids)
        if not valid.any():
            return sim.sum() * 0.0  # no negatives in this batch (all one group): nothing to learn
        return loss[valid].mean()


class SymmetricInfoNCE(nn.Module):
    """CLIP-style contrastive loss: cross-entropy over the batch in both directions, learnable temperature.

    The temperature is kept as ``log(1 / T)`` and clamped to ``[0, log(max_scale)]`` (CLIP caps the
    logit scale at 100). Same-group off-diagonal pairs are removed from the softmax denominators.
    """

    def __init__(
        self, init_temperature: float = 0.07, learnable: bool = True, max_scale: float = 100.0
    ) -> None:
        super().__init__()
        if not 0 < init_temperature <= 1:
            raise ValueError(f"init_temperature must be in (0, 1], got {init_temperature}")
        if max_scale < 1 / init_temperature:
            raise ValueError(f"max_scale {max_scale} is below the initial scale {1 / init_temperature:.3g}")
        self.max_log_scale = math.log(max_scale)
        log_scale = torch.tensor(math.log(1.0 / init_temperature))
        if learnable:
            self.log_scale = nn.Parameter(log_scale)
        else:
            self.register_buffer("log_scale", log_scale)

    @property
    def temperature(self) -> float:
        return float(1.0 / self._scale().detach().exp())

    def _scale(self) -> torch.Tensor:
        return self.log_scale.clamp(0.0, self.max_log_scale)

    @torch.no_grad()
    def clamp_parameters(self) -> None:
        """Keep the stored log-scale inside its bounds (call after each optimiser step, as CLIP does)."""
        self.log_scale.clamp_(0.0, self.max_log_scale)

    def forward(
        self, text: torch.Tensor, image: torch.Tensor, groups: torch.Tensor | None = None
    ) -> torch.Tensor:
        if text.shape != image.shape:
            raise ValueError(
                f"text and image batches differ in shape: {tuple(text.shape)} vs {tuple(image.shape)}"
            )
        n = text.shape[0]
        logits = similarity_matrix(text, image) * self._scale().exp()
        if groups is not None:
            duplicates = ~negative_mask(n, groups, logits.device)
            duplicates.fill_diagonal_(False)
            logits = logits.masked_fill(duplicates, float("-inf"))
        target = torch.arange(n, device=logits.device)
        return 0.5 * (F.cross_entropy(logits, target) + F.cross_entropy(logits.T, target))
