"""NT-Xent against a per-anchor reference, and GradCache accumulation against a plain full-batch backward."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from toolkit.image.contrastive import frozen_bn_stats, gradcache_backward, nt_xent, view_chunks


def _reference_nt_xent(a: torch.Tensor, b: torch.Tensor, t: float) -> float:
    """The SimCLR paper's loss written out anchor by anchor."""
    z = torch.nn.functional.normalize(torch.cat([a, b]).double(), dim=1)
    n = a.shape[0]
    total = 0.0
    for i in range(2 * n):
        j = (i + n) % (2 * n)
        sims = [math.exp(float(z[i] @ z[k]) / t) for k in range(2 * n) if k != i]
        total += -math.log(math.exp(float(z[i] @ z[j]) / t) / sum(sims))
    return total / (2 * n)


def test_nt_xent_matches_the_definition() -> None:
    g = torch.Generator().manual_seed(0)
    a, b = torch.randn(5, 7, generator=g), torch.randn(5, 7, generator=g)
    for t in (0.1, 0.5, 1.0):
        assert nt_xent(a, b, t).item() == pytest.approx(_reference_nt_xent(a, b, t), rel=1e-5)
    # identical views, orthogonal pairs: the positive is certain at a low temperature
    eye = torch.eye(4)
    assert nt_xent(eye, eye, 0.05).item() < 1e-6
    with pytest.raises(ValueError, match="at least 2"):
        nt_xent(a[:1], b[:1])
    with pytest.raises(ValueError, match="same shape"):
        nt_xent(a, b[:3])


class _Small(nn.Module):
    """A conv net with dropout: gradients depend on replaying the random masks."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, padding=1)
        self.drop = nn.Dropout(0.3)
        self.fc = nn.Linear(8, 6)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = torch.relu(self.conv(x)).mean(dim=(2, 3))
        return self.fc(self.drop(h))


def _grads(model: nn.Module) -> list[torch.Tensor]:
    return [p.grad.detach().clone() for p in model.parameters()]


@pytest.mark.parametrize("chunk", [1, 3, 4, 10])
def test_gradcache_gradient_equals_the_full_batch_gradient(chunk: int) -> None:
    torch.manual_seed(0)
    model = _Small().train()
    g = torch.Generator().manual_seed(1)
    a, b = torch.randn(10, 3, 8, 8, generator=g), torch.randn(10, 3, 8, 8, generator=g)

    # Reference: one forward of each view over the whole batch with the same dropout masks as the
    # chunks see. The chunked passes draw masks chunk by chunk, in the order of view_chunks.
    torch.manual_seed(42)
    outs = {}
    for v, s, e in view_chunks(10, chunk):
        outs[(v, s)] = model((a, b)[v][s:e])
    za = torch.cat([outs[(0, s)] for v, s, _ in view_chunks(10, chunk) if v == 0])
    zb = torch.cat([outs[(1, s)] for v, s, _ in view_chunks(10, chunk) if v == 1])
    full_loss = nt_xent(za, zb, 0.2)
    full_loss.backward()
    want = _grads(model)
    rng_after_reference = torch.get_rng_state()

    model.zero_grad()
    torch.manual_seed(42)
    loss = gradcache_backward(model, a, b, chunk, lambda x, y: nt_xent(x, y, 0.2), model)
    got = _grads(model)
    assert loss.item() == pytest.approx(full_loss.item(), rel=1e-6)
    for w, h in zip(want, got, strict=True):
        torch.testing.assert_close(h, w, rtol=1e-5, atol=1e-7)
    # the random stream advances as if the forward had run once
    assert torch.equal(torch.get_rng_state(), rng_after_reference)


def test_gradcache_is_a_big_batch_not_a_sum_of_small_batches() -> None:
    """Naive accumulation (sum of per-chunk losses) gives another gradient: the negatives differ."""
    torch.manual_seed(0)
    model = nn.Linear(12, 5)
    g = torch.Generator().manual_seed(2)
    a, b = torch.randn(8, 12, generator=g), torch.randn(8, 12, generator=g)
    nt_xent(model(a), model(b), 0.5).backward()
    full = _grads(model)
    model.zero_grad()
    gradcache_backward(model, a, b, 2, lambda x, y: nt_xent(x, y, 0.5))
    cached = _grads(model)
    model.zero_grad()
    for s in range(0, 8, 2):
        (nt_xent(model(a[s : s + 2]), model(b[s : s + 2]), 0.5) / 4).backward()
    naive = _grads(model)
    torch.testing.assert_close(cached[0], full[0], rtol=1e-5, atol=1e-7)
    assert not torch.allclose(naive[0], full[0], rtol=1e-2, atol=1e-4)


def test_batchnorm_running_stats_update_once() -> None:
    bn = nn.BatchNorm1d(4)
    x = torch.randn(6, 4) * 3 + 1
    with torch.no_grad(), frozen_bn_stats(bn):
        bn(x)
    assert torch.equal(bn.running_mean, torch.zeros(4)) and int(bn.num_batches_tracked) == 0
    model = nn.Sequential(nn.Linear(4, 4), nn.BatchNorm1d(4))
    gradcache_backward(model, x, x + 0.1, 3, lambda p, q: nt_xent(p, q, 0.5), model)
    assert int(model[1].num_batches_tracked) == 4  # 2 views x 2 chunks, second pass only


@pytest.mark.parametrize(
    ("n", "chunk", "sizes"),
    [(10, 3, [3, 3, 4]), (5, 2, [2, 3]), (9, 4, [4, 5]), (8, 4, [4, 4]), (3, 8, [3]), (10, 1, [1] * 10)],
)
def test_view_chunks_leave_no_single_image_behind(n: int, chunk: int, sizes: list[int]) -> None:
    """A chunk of one image cannot pass a batch-norm layer in training mode: it joins the chunk before it."""
    slices = view_chunks(n, chunk)
    for view in (0, 1):
        assert [e - s for v, s, e in slices if v == view] == sizes
    assert view_chunks(0, 3) == []
