"""NT-Xent (SimCLR's contrastive loss) and a GradCache step that makes a big batch out of small chunks.

The negatives of a contrastive loss live inside the batch, so summing the losses of small
batches is *not* a large batch. :func:`gradcache_backward` does it properly (Gao et al. 2021,
"Scaling Deep Contrastive Learning Batch Size under Memory Limited Setup"):

1. embed every chunk without autograd (little memory);
2. compute the full-batch loss on the cached embeddings and its gradient w.r.t. them;
3. re-run each chunk with autograd and back-propagate its slice of that gradient.

The parameter gradients are those of the full-batch loss, for any chunk size (the test checks
this against a plain full-batch backward). Random layers (dropout, drop-connect) see the same
random numbers in both passes: the RNG state is saved before the first pass of each chunk and
restored for the second. Batch-norm layers normalise with the statistics of their chunk (as
data-parallel SimCLR does per device); their running statistics are updated once, by the
second pass. Chunks hold one view each, so a positive pair never shares a chunk's statistics
(the shuffle-BN trick against information leaking through the batch statistics).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext

import torch
import torch.nn.functional as F
from torch import nn


def nt_xent(z_a: torch.Tensor, z_b: torch.Tensor, temperature: float = 0.5) -> torch.Tensor:
    """Normalised-temperature cross entropy of ``N`` positive pairs ``(z_a[i], z_b[i])``.

    Each of the ``2N`` embeddings has its partner as the positive and the other ``2N - 2`` as
    negatives; the loss is the mean over all ``2N`` anchors of cosine similarities / temperature.
    """
    if z_a.shape != z_b.shape or z_a.ndim != 2:
        raise ValueError(
            f"nt_xent needs two [N, D] tensors of the same shape, got {z_a.shape} and {z_b.shape}"
        )
    n = z_a.shape[0]
    if n < 2:
        raise ValueError("nt_xent needs at least 2 pairs (there would be no negatives)")
    if temperature <= 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    z = F.normalize(torch.cat([z_a, z_b]).float(), dim=1)
    sim = z @ z.T / temperature
    sim = sim.masked_fill(torch.eye(2 * n, dtype=torch.bool, device=z.device), float("-inf"))
    target = torch.cat([torch.arange(n, 2 * n), torch.arange(0, n)]).to(z.device)
    return F.cross_entropy(sim, target)


class _RngState:
    """CPU (and current CUDA device) generator state, to replay a forward pass's randomness."""

    def __init__(self, device: torch.device) -> None:
        self.cpu = torch.get_rng_state()
        self.cuda = torch.cuda.get_rng_state(device) if device.type == "cuda" else None
        self.device = device

    def restore(self) -> None:
        torch.set_rng_state(self.cpu)
        if self.cuda is not None:
            torch.cuda.set_rng_state(self.cuda, self.device)


@contextmanager
def frozen_bn_stats(model: nn.Module) -> Iterator[None]:
    """Batch-norm layers keep normalising with batch statistics but leave their running stats alone."""
    saved = []
    for m in model.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            saved.append(
                (m, m.momentum, m.num_batches_tracked.clone() if m.num_batches_tracked is not None else None)
            )
            m.momentum = 0.0
    try:
        yield
    finally:
        for m, momentum, tracked in saved:
            m.momentum = momentum
            if tracked is not None and m.num_batches_tracked is not None:
                m.num_batches_tracked.copy_(tracked)


def view_chunks(n: int, chunk: int) -> list[tuple[int, int, int]]:
    """``(view, start, end)`` slices covering both views of ``n`` images, ``chunk`` images at a time.

    With ``chunk >= 2`` no slice holds a single image (a batch-norm layer in training mode cannot
    normalise one): a last image left over joins the slice before it, which then holds ``chunk + 1``.
    """
    if chunk < 1:
        raise ValueError(f"chunk size must be >= 1, got {chunk}")
    starts = list(range(0, n, chunk))
    if chunk >= 2 and len(starts) > 1 and n - starts[-1] == 1:
        starts.pop()
    ends = [*starts[1:], n] if starts else []
    return [(v, s, e) for v in (0, 1) for s, e in zip(starts, ends, strict=True)]


def gradcache_backward(
    embed: Callable[[torch.Tensor], torch.Tensor],
    view_a: torch.Tensor,
    view_b: torch.Tensor,
    chunk: int,
    loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    model: nn.Module | None = None,
) -> torch.Tensor:
    """Accumulate into the parameters' ``.grad`` the gradient of ``loss_fn(embed(view_a), embed(view_b))``.

    ``embed`` runs on at most ``chunk`` images at a time. ``model`` (the module behind
    ``embed``) lets batch-norm running statistics be updated only once. Returns the detached
    full-batch loss. The caller zeroes gradients and steps the optimiser.
    """
    if view_a.shape != view_b.shape:
        raise ValueError(f"the two views differ in shape: {tuple(view_a.shape)} vs {tuple(view_b.shape)}")
    views = (view_a, view_b)
    n = view_a.shape[0]
    slices = view_chunks(n, chunk)
    device = view_a.device
    states: list[_RngState] = []
    cached: list[torch.Tensor] = []
    bn = frozen_bn_stats(model) if model is not None else nullcontext()
    with torch.no_grad(), bn:
        for v, s, e in slices:
            states.append(_RngState(device))
            cached.append(embed(views[v][s:e]))
    reps = [c.detach().float().requires_grad_() for c in cached]
    half = len(slices) // 2
    loss = loss_fn(torch.cat(reps[:half]), torch.cat(reps[half:]))
    grads = torch.autograd.grad(loss, reps)
    after = _RngState(device)
    for (v, s, e), state, g in zip(slices, states, grads, strict=True):
        state.restore()
        out = embed(views[v][s:e])
        out.float().backward(g)
    after.restore()
    return loss.detach()
