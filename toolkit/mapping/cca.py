"""Regularised (ridge) CCA between standardised text and image features, used to initialise the towers.

With ``C_tt``, ``C_ii`` the within-view covariances and ``C_ti`` the cross-covariance of the training pairs,
each view is whitened with ``(C + s * mean_eig * I)^(-1/2)`` (``s`` = ``shrinkage``: it keeps the small,
noisy eigen-directions of 1280-d CNN features from dominating, as they do in plain CCA when pairs are few),
and the SVD of the whitened cross-covariance gives the canonical directions. Each direction is weighted
by its canonical correlation to the power ``power``, so cosine similarity in the projected space leans on
the directions the training pairs agree on. Everything is computed in float64 with numpy: deterministic.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class CCAProjection:
    """Linear maps ``text [Dt] -> [k]`` and ``image [Di] -> [k]`` (``weight`` rows are output units)."""

    text_weight: np.ndarray
    image_weight: np.ndarray
    correlations: np.ndarray


def _inverse_sqrt(cov: np.ndarray, shrinkage: float) -> np.ndarray:
    """``(cov + shrinkage * mean eigenvalue * I)^(-1/2)`` of a symmetric PSD matrix."""
    eig, vec = np.linalg.eigh(cov)
    eig = np.maximum(eig, 0.0)
    ridge = shrinkage * max(float(eig.mean()), 1e-12)
    return (vec / np.sqrt(eig + ridge)) @ vec.T


def canonical_signs(u: np.ndarray) -> np.ndarray:
    """Flip each column so its largest-magnitude entry is positive (SVD signs are otherwise arbitrary)."""
    idx = np.abs(u).argmax(axis=0)
    signs = np.sign(u[idx, np.arange(u.shape[1])])
    signs[signs == 0] = 1.0
    return signs


def leading_directions(moment: np.ndarray, k: int) -> np.ndarray:
    """The ``k`` eigenvectors of the symmetric ``moment`` with the largest eigenvalues (columns, in that
    order), each with :func:`canonical_signs`: the same matrix gives the same directions."""
    values, vectors = np.linalg.eigh(moment)
    top = vectors[:, np.argsort(values)[::-1][:k]]
    return top * canonical_signs(top)


def fit_cca(
    text: np.ndarray, image: np.ndarray, dim: int, shrinkage: float = 0.1, power: float = 0.5
) -> CCAProjection:
    """Regularised CCA of paired, already standardised rows; ``dim`` output directions (zero-padded past the rank)."""
    if text.ndim != 2 or image.ndim != 2 or text.shape[0] != image.shape[0]:
        raise ValueError(f"CCA needs paired 2-D arrays, got text {text.shape} and image {image.shape}")
    if text.shape[0] < 2:
        raise ValueError(f"CCA needs at least 2 pairs, got {text.shape[0]}")
    if shrinkage <= 0 or power < 0:
        raise ValueError(f"shrinkage must be > 0 and power >= 0, got {shrinkage}, {power}")
    t = np.asarray(text, dtype=np.float64)
    i = np.asarray(image, dtype=np.float64)
    t = t - t.mean(axis=0)
    i = i - i.mean(axis=0)
    n = t.shape[0]
    wt = _inverse_sqrt(t.T @ t / n, shrinkage)
    wi = _inverse_sqrt(i.T @ i / n, shrinkage)
    cross = wt @ (t.T @ i / n) @ wi
    u, s, vt = np.linalg.svd(cross, full_matrices=False)
    k = min(dim, s.shape[0])
    signs = canonical_signs(u[:, :k])
    scale = np.power(np.maximum(s[:k], 0.0), power) * signs
    text_w = np.zeros((dim, t.shape[1]))
    image_w = np.zeros((dim, i.shape[1]))
    text_w[:k] = (wt @ u[:, :k] * scale).T
    image_w[:k] = (wi @ vt[:k].T * scale).T
    corr = np.zeros(dim)
    corr[:k] = s[:k]
    return CCAProjection(text_w.astype(np.float32), image_w.astype(np.float32), corr.astype(np.float32))
