"""Linear baselines fitted on the same training pairs and features as the mapping: CCA and ridge regression.

A learned two-tower mapping must beat these: they see exactly what the towers see (the Word2Vec step
means and the backbone features of the training split) and learn only a linear map.

* **CCA**: both sides standardised (training statistics), then the regularised canonical directions
  ``(Cxx + r I)^-1/2 Cxy (Cyy + r I)^-1/2`` by SVD; texts and photos are compared by cosine of their
  first ``components`` canonical variates. Closed form, deterministic, seconds on CPU.
* **Ridge**: ``scikit-learn`` ridge regression from the standardised text features to the standardised
  photo features; a text is compared with a photo by cosine of its prediction and the photo's features.

The regularisation strength is picked on the validation pairs (R@10 over the whole validation set),
from a fixed grid, exactly as the mapping's early stopping uses them.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from toolkit.errors import ToolkitError
from toolkit.evaluation.metrics import full_metrics

log = logging.getLogger(__name__)

LINEAR_METHODS = ("cca", "ridge")
DEFAULT_CCA_COMPONENTS = 64
CCA_REGS: tuple[float, ...] = (0.01, 0.1, 1.0, 10.0)
RIDGE_ALPHAS: tuple[float, ...] = (0.1, 1.0, 10.0, 100.0, 1000.0)


@dataclass
class LinearMap:
    """A fitted linear text/photo map: standardise, project, L2-normalise (rows compared by cosine)."""

    method: str
    text_mean: np.ndarray
    text_scale: np.ndarray
    image_mean: np.ndarray
    image_scale: np.ndarray
    text_proj: np.ndarray  # [text_dim, k]
    image_proj: np.ndarray | None  # [image_dim, k]; None: photos stay in their (standardised) space
    text_bias: np.ndarray | None = None
    reg: float = 0.0

    def embed_text(self, x: Any) -> np.ndarray:
        """Unit-length float32 ``[N, k]`` (``x``: an array, memmap or lazy rows, read in blocks)."""
        return _project(x, "text features", self.text_mean, self.text_scale, self.text_proj, self.text_bias)

    def embed_image(self, x: Any) -> np.ndarray:
        return _project(x, "image features", self.image_mean, self.image_scale, self.image_proj, None)

    def describe(self) -> dict[str, Any]:
        k = self.text_proj.shape[1]
        return {"method": self.method, "dims": int(k), "reg": self.reg}


#: Rows standardised and projected at a time (float64 only within a block).
EMBED_BLOCK = 8192


def _project(
    x: Any,
    what: str,
    mean: np.ndarray,
    scale: np.ndarray,
    proj: np.ndarray | None,
    bias: np.ndarray | None,
) -> np.ndarray:
    if not hasattr(x, "shape"):
        x = np.asarray(x)
    if len(x.shape) != 2:
        raise ValueError(f"{what} must be 2-D [N, D], got shape {x.shape}")
    out = np.empty((x.shape[0], mean.shape[0] if proj is None else proj.shape[1]), dtype=np.float32)
    for start in range(0, x.shape[0], EMBED_BLOCK):
        z = (_as_2d(x[start : start + EMBED_BLOCK], what) - mean) / scale
        y = z if proj is None else z @ proj
        out[start : start + len(y)] = _normalize(y if bias is None else y + bias)
    return out


def _as_2d(x: np.ndarray, what: str) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    if x.ndim != 2:
        raise ValueError(f"{what} must be 2-D [N, D], got shape {x.shape}")
    return x


def _normalize(y: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(y, axis=1, keepdims=True)
    return (y / np.maximum(norms, 1e-12)).astype(np.float32)


def _floor_scale(scale: np.ndarray) -> np.ndarray:
    """Standard deviations with (near) constant features left unscaled."""
    return np.where(scale > 1e-8, scale, 1.0)


def _standardize(x: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    mean = x.mean(axis=0)
    scale = _floor_scale(x.std(axis=0))
    return (x - mean) / scale, mean, scale


def _check_pairs(text: np.ndarray, image: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    text, image = _as_2d(text, "text features"), _as_2d(image, "image features")
    if text.shape[0] != image.shape[0]:
        raise ValueError(f"{text.shape[0]} text rows but {image.shape[0]} image rows: they must be paired")
    if text.shape[0] < 3:
        raise ValueError(f"a linear baseline needs at least 3 training pairs, got {text.shape[0]}")
    if not (np.isfinite(text).all() and np.isfinite(image).all()):
        raise ValueError("features contain NaN or infinite values")
    return text, image


def _inv_sqrt(c: np.ndarray, reg: float) -> np.ndarray:
    """``(C + reg * mean(diag C) * I)^-1/2`` of a symmetric PSD matrix."""
    lam = reg * max(float(np.trace(c)) / c.shape[0], 1e-12)
    w, v = np.linalg.eigh(c)
    w = np.maximum(w, 0.0) + lam
    return (v / np.sqrt(w)) @ v.T


def _basis(z: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """An orthonormal basis of the rows' span (``[d, r]``) and the data in it (``[n, r]``); r <= n."""
    if z.shape[0] > z.shape[1]:  # more pairs than dimensions: the identity basis is exact and free
        return np.eye(z.shape[1]), z
    _, s, vt = np.linalg.svd(z, full_matrices=False)
    keep = s > s[0] * 1e-10 if s.size else np.zeros(0, dtype=bool)
    if not keep.any():
        raise ToolkitError(
            "the training pairs do not vary on one side (every step text, or every photo, gives the same "
            "vector): there is nothing to learn a text-photo link from"
        )
    basis = vt[keep].T
    return basis, z @ basis


#: Bytes of float64 rows (both sides) read at a time when a CCA is fitted from moments: memmaps are never
#: read whole, and a block with its centred copies stays a few tens of MB whatever the feature width.
MOMENT_BLOCK_BYTES = 16 << 20


@dataclass
class _Moments:
    """Means, standard deviations and the covariances of the standardised pairs."""

    t_mean: np.ndarray
    t_scale: np.ndarray
    i_mean: np.ndarray
    i_scale: np.ndarray
    ctt: np.ndarray
    cii: np.ndarray
    cti: np.ndarray


def _blocks(text: Any, image: Any, n: int, check: bool = False) -> Any:
    """Paired float64 blocks of ``text`` and ``image`` (arrays, memmaps or lazy row views); ``check``: each
    checked finite."""
    rows = max(64, MOMENT_BLOCK_BYTES // (8 * (text.shape[1] + image.shape[1])))
    for start in range(0, n, rows):
        t = np.asarray(text[start : start + rows], dtype=np.float64)
        i = np.asarray(image[start : start + rows], dtype=np.float64)
        if check and not (np.isfinite(t).all() and np.isfinite(i).all()):
            raise ValueError(f"features contain NaN or infinite values (rows {start}..{start + len(t) - 1})")
        yield t, i


def _moments(text: Any, image: Any, n: int) -> _Moments:
    """Two passes in blocks: the means, then the centred (cross-)covariances; memory flat in ``n``."""
    t_sum, i_sum = np.zeros(text.shape[1]), np.zeros(image.shape[1])
    for t, i in _blocks(text, image, n, check=True):
        t_sum += t.sum(axis=0)
        i_sum += i.sum(axis=0)
    t_mean, i_mean = t_sum / n, i_sum / n
    ctt, cii = np.zeros((t_mean.size,) * 2), np.zeros((i_mean.size,) * 2)
    cti = np.zeros((t_mean.size, i_mean.size))
    for t, i in _blocks(text, image, n):
        t, i = t - t_mean, i - i_mean
        ctt += t.T @ t
        cii += i.T @ i
        cti += t.T @ i
    t_scale, i_scale = _floor_scale(np.sqrt(np.diag(ctt) / n)), _floor_scale(np.sqrt(np.diag(cii) / n))
    return _Moments(
        t_mean,
        t_scale,
        i_mean,
        i_scale,
        ctt / n / np.outer(t_scale, t_scale),
        cii / n / np.outer(i_scale, i_scale),
        cti / n / np.outer(t_scale, i_scale),
    )


def _uses_moments(text: Any, image: Any) -> bool:
    """More pairs than dimensions (and paired): the CCA is fitted from block moments."""
    n = int(text.shape[0])
    return n > max(text.shape[1], image.shape[1]) and image.shape[0] == n


def pair_moments(text: Any, image: Any) -> _Moments | None:
    """The block moments :func:`fit_cca` fits from (``None`` where it fits in memory instead): computed once,
    they serve several fits of the same pairs (``moments=``)."""
    return _moments(text, image, int(text.shape[0])) if _uses_moments(text, image) else None


def fit_cca(
    text: Any,
    image: Any,
    components: int = DEFAULT_CCA_COMPONENTS,
    reg: float = 0.1,
    moments: _Moments | None = None,
) -> LinearMap:
    """Regularised CCA with ``components`` canonical pairs (at most the smaller side's rank).

    ``reg`` adds ``reg x`` the mean variance to every direction's variance. With more pairs than
    dimensions the covariances are accumulated block by block (``text``/``image`` may be memmaps or lazy
    row views: memory is flat in the number of pairs); with fewer, each side is first expressed in an
    orthonormal basis of its training rows (exact, and keeps the eigen-problems at most ``n x n``).
    ``moments``: those of ``text``/``image``, when already computed (one pass for a grid of ``reg``).
    """
    if components < 1:
        raise ValueError(f"components must be at least 1, got {components}")
    if reg < 0:
        raise ValueError(f"reg must be >= 0, got {reg}")
    if len(text.shape) != 2 or len(image.shape) != 2:
        raise ValueError(f"features must be 2-D [N, D], got text {text.shape} and image {image.shape}")
    n = int(text.shape[0])
    if _uses_moments(text, image):
        m = moments or _moments(text, image, n)
        wt, wi = _inv_sqrt(m.ctt, reg), _inv_sqrt(m.cii, reg)
        u, s, vt = np.linalg.svd(wt @ m.cti @ wi, full_matrices=False)
        k = min(components, s.size)
        return LinearMap(
            "cca", m.t_mean, m.t_scale, m.i_mean, m.i_scale, wt @ u[:, :k], wi @ vt[:k].T, reg=reg
        )
    text, image = _check_pairs(text[0:n], image[0 : image.shape[0]])  # few rows: in memory
    zt, t_mean, t_scale = _standardize(text)
    zi, i_mean, i_scale = _standardize(image)
    bt, ct = _basis(zt)
    bi, ci = _basis(zi)
    wt = _inv_sqrt(ct.T @ ct / n, reg)
    wi = _inv_sqrt(ci.T @ ci / n, reg)
    u, s, vt = np.linalg.svd(wt @ (ct.T @ ci / n) @ wi, full_matrices=False)
    k = min(components, s.size)
    if k < components:
        log.info("CCA: %d components asked, the data support %d", components, k)
    text_proj = bt @ wt @ u[:, :k]
    image_proj = bi @ wi @ vt[:k].T
    return LinearMap("cca", t_mean, t_scale, i_mean, i_scale, text_proj, image_proj, reg=reg)


def fit_ridge(text: np.ndarray, image: np.ndarray, alpha: float = 100.0) -> LinearMap:
    """Ridge regression (scikit-learn) from standardised text features to standardised photo features."""
    from sklearn.linear_model import Ridge

    text, image = _check_pairs(text, image)
    if alpha <= 0:
        raise ValueError(f"alpha must be positive, got {alpha}")
    zt, t_mean, t_scale = _standardize(text)
    zi, i_mean, i_scale = _standardize(image)
    model = Ridge(alpha=alpha, fit_intercept=True).fit(zt, zi)
    coef = np.asarray(model.coef_, dtype=np.float64).T  # [text_dim, image_dim]
    bias = np.asarray(model.intercept_, dtype=np.float64)
    return LinearMap("ridge", t_mean, t_scale, i_mean, i_scale, coef, None, text_bias=bias, reg=alpha)


def fit_linear(
    method: str,
    text: np.ndarray,
    image: np.ndarray,
    val_text: np.ndarray | None = None,
    val_image: np.ndarray | None = None,
    components: int = DEFAULT_CCA_COMPONENTS,
    grid: Sequence[float] | None = None,
    moments: _Moments | None = None,
) -> LinearMap:
    """Fit ``method`` (``cca`` or ``ridge``); with validation pairs, the grid value with the best val R@10.
    ``moments``: :func:`pair_moments` of ``text``/``image``, when already computed."""
    if method not in LINEAR_METHODS:
        raise ValueError(f"method must be one of {LINEAR_METHODS}, got {method!r}")
    values = list(grid or (CCA_REGS if method == "cca" else RIDGE_ALPHAS))

    if method == "cca" and moments is None:
        moments = pair_moments(text, image)

    def fit(v: float) -> LinearMap:
        if method == "cca":
            return fit_cca(text, image, components, v, moments)
        return fit_ridge(text, image, v)

    if val_text is None or val_image is None or len(val_text) < 2 or len(values) == 1:
        return fit(values[len(values) // 2])
    best, best_r10 = None, -1.0
    for v in values:
        m = fit(v)
        r10 = full_metrics(m.embed_text(val_text), m.embed_image(val_image))["text_to_image"]["R@10"]
        if r10 > best_r10:
            best, best_r10 = m, r10
    assert best is not None
    return best


def linear_baselines(
    train_text: np.ndarray,
    train_image: np.ndarray,
    val_text: np.ndarray | None,
    val_image: np.ndarray | None,
    methods: Sequence[str] = LINEAR_METHODS,
    components: int = DEFAULT_CCA_COMPONENTS,
) -> dict[str, LinearMap]:
    """Each of ``methods`` fitted on the training pairs (regularisation picked on the validation pairs)."""
    return {m: fit_linear(m, train_text, train_image, val_text, val_image, components) for m in methods}
