"""Two small MLP towers that map text and image features into one L2-normalised space.

Cosine similarity on the unit-length outputs is the one metric used everywhere (training, evaluation,
Elasticsearch ``dense_vector`` with ``similarity: cosine``/``dot_product``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, cast

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from toolkit.evaluation.linear import LinearMap
from toolkit.mapping.config import ACTIVATIONS, ARCHS, NORMS, TEXT_TOWERS  # noqa: F401 - re-exported
from toolkit.mapping.grounding import WordGrounding
from toolkit.mapping.linear_branch import LinearBranch, fuse
from toolkit.torch_threads import torch_threads

if TYPE_CHECKING:
    from toolkit.vectorset import Rows

#: Standard deviations below this are treated as constant features (no scaling).
STD_FLOOR = 1e-6
#: inputs of at most this many rows are embedded on one thread
SMALL_BATCH = 64


def input_stats(x: Any, chunk: int = 8192) -> tuple[np.ndarray, np.ndarray]:
    """Per-feature mean and standard deviation of ``[N, D]`` ``x`` (an array, or anything read by row slices
    with ``ndim`` and ``shape``: a :class:`~toolkit.vectorset.Rows`, token bags' means), in float64, chunked so
    memmaps stay cheap.

    Features with (near) zero spread get std 1 so standardising leaves them centred but unscaled.
    """
    if x.ndim != 2 or x.shape[0] == 0:
        raise ValueError(f"input statistics need a non-empty [N, D] array, got shape {x.shape}")
    total = np.zeros(x.shape[1], dtype=np.float64)
    total_sq = np.zeros(x.shape[1], dtype=np.float64)
    for start in range(0, x.shape[0], chunk):
        block = np.asarray(x[start : start + chunk], dtype=np.float64)
        total += block.sum(axis=0)
        total_sq += np.square(block).sum(axis=0)
    n = x.shape[0]
    mean = total / n
    var = np.maximum(total_sq / n - np.square(mean), 0.0)
    std = np.sqrt(var)
    std[std < STD_FLOOR] = 1.0
    return mean.astype(np.float32), std.astype(np.float32)


class Standardize(nn.Module):
    """Fixed ``(x - mean) / std`` with statistics from the training set, kept as buffers (saved with weights)."""

    mean: torch.Tensor
    std: torch.Tensor

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.register_buffer("mean", torch.zeros(dim))
        self.register_buffer("std", torch.ones(dim))

    def set_stats(self, mean: np.ndarray, std: np.ndarray) -> None:
        dim = self.mean.shape[0]
        if mean.shape != (dim,) or std.shape != (dim,):
            raise ValueError(f"input statistics must have shape ({dim},), got {mean.shape} and {std.shape}")
        if not (np.all(np.isfinite(mean)) and np.all(np.isfinite(std)) and np.all(std > 0)):
            raise ValueError("input statistics must be finite with positive standard deviations")
        self.mean.copy_(torch.as_tensor(mean, dtype=torch.float32))
        self.std.copy_(torch.as_tensor(std, dtype=torch.float32))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.std


#: What one tower can be: ``fixed_image`` is an MLP text tower next to a ``pca`` image tower.
TOWER_ARCHS = ("mlp", "residual", "pca")


class Tower(nn.Module):
    """Standardize -> body -> L2 normalise.

    ``arch="mlp"``: Linear -> Norm -> Activation -> Dropout -> Linear (random init).
    ``arch="residual"``: a linear projection ``z = P x`` (meant to be initialised from the regularised CCA
    solution, see :mod:`toolkit.mapping.cca`) plus a small MLP branch on ``z`` whose last layer starts at
    zero, so the tower starts as the linear map and training only adds what the validation split rewards.
    ``arch="pca"``: a fixed (never trained) linear projection, set to the leading principal directions of
    the standardised training features (:func:`toolkit.mapping.train.init_image_pca`): the image side of
    ``fixed_image``, which keeps the backbone's feature space and lets only the text tower learn.
    """

    def __init__(
        self,
        in_dim: int,
        dim: int = 256,
        hidden: int = 512,
        dropout: float = 0.1,
        norm: str = "layer",
        activation: str = "gelu",
        arch: str = "mlp",
    ) -> None:
        super().__init__()
        if norm not in NORMS:
            raise ValueError(f"norm must be one of {NORMS}, got {norm!r}")
        if activation not in ACTIVATIONS:
            raise ValueError(f"activation must be one of {ACTIVATIONS}, got {activation!r}")
        if arch not in TOWER_ARCHS:
            raise ValueError(f"arch must be one of {TOWER_ARCHS}, got {arch!r}")
        if min(in_dim, dim, hidden) < 1:
            raise ValueError(f"dimensions must be positive: in_dim={in_dim}, dim={dim}, hidden={hidden}")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {dropout}")
        self.in_dim = in_dim
        self.arch = arch
        self.standardize = Standardize(in_dim)
        if arch == "pca":
            self.project = nn.Linear(in_dim, dim, bias=False)
            self.project.weight.requires_grad_(False)
            return
        width = in_dim if arch == "mlp" else dim
        self.net = nn.Sequential(
            nn.Linear(width, hidden),
            nn.LayerNorm(hidden) if norm == "layer" else nn.BatchNorm1d(hidden),
            nn.GELU() if activation == "gelu" else nn.ReLU(),
            nn.Dropout(dropout),
            nn.Linear(hidden, dim),
        )
        if arch == "residual":
            self.project = nn.Linear(in_dim, dim)
            last = cast(nn.Linear, self.net[-1])
            nn.init.zeros_(last.weight)
            nn.init.zeros_(last.bias)

    def set_projection(self, weight: np.ndarray, bias: np.ndarray | None = None) -> None:
        """Set the linear projection of a residual or pca tower (``weight`` is ``[dim, in_dim]``)."""
        if self.arch not in ("residual", "pca"):
            raise ValueError("only a residual or pca tower has a linear projection")
        w = torch.as_tensor(np.asarray(weight), dtype=torch.float32)
        if tuple(w.shape) != tuple(self.project.weight.shape):
            raise ValueError(
                f"projection must have shape {tuple(self.project.weight.shape)}, got {tuple(w.shape)}"
            )
        with torch.no_grad():
            self.project.weight.copy_(w)
            if self.project.bias is None:
                if bias is not None:
                    raise ValueError("a pca tower's projection has no bias")
            elif bias is None:
                self.project.bias.zero_()
            else:
                self.project.bias.copy_(torch.as_tensor(np.asarray(bias), dtype=torch.float32))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.standardize(x)
        if self.arch == "pca":
            return F.normalize(self.project(x), dim=-1)
        if self.arch == "mlp":
            return F.normalize(self.net(x), dim=-1)
        z = self.project(x)
        return F.normalize(z + self.net(z), dim=-1)


class BagTower(nn.Module):
    """Token ids -> mean of (trainable) word vectors -> :class:`Tower` (an MLP).

    The word vectors start as the Word2Vec ones (:meth:`set_word_vectors`), so before training the tower
    sees exactly the Word2Vec step mean; training moves each word's vector, which a map of the fixed mean
    cannot do (a linear baseline on the mean sees every word only through the Word2Vec geometry).
    """

    def __init__(
        self,
        vocab: int,
        in_dim: int,
        dim: int = 256,
        hidden: int = 512,
        dropout: float = 0.1,
        norm: str = "layer",
        activation: str = "gelu",
    ) -> None:
        super().__init__()
        if vocab < 1:
            raise ValueError(f"a bag tower needs a vocabulary, got vocab={vocab}")
        self.vocab = vocab
        self.in_dim = in_dim
        self.words = nn.Embedding(vocab, in_dim)
        self.tower = Tower(in_dim, dim, hidden, dropout, norm, activation, "mlp")
        self.sparse_grad = False  # training: the word table's gradient holds only the batch's rows

    @property
    def standardize(self) -> Standardize:
        return self.tower.standardize

    def set_word_vectors(self, matrix: np.ndarray) -> None:
        m = torch.as_tensor(np.asarray(matrix), dtype=torch.float32)
        if tuple(m.shape) != (self.vocab, self.in_dim):
            raise ValueError(
                f"word vectors must have shape ({self.vocab}, {self.in_dim}), got {tuple(m.shape)}"
            )
        with torch.no_grad():
            self.words.weight.copy_(m)

    def mean(self, ids: torch.Tensor, offsets: torch.Tensor) -> torch.Tensor:
        """Mean word vector per bag (``offsets``: ``N + 1`` CSR offsets; every bag non-empty)."""
        return F.embedding_bag(
            ids, self.words.weight, offsets, mode="mean", include_last_offset=True, sparse=self.sparse_grad
        )

    def forward(self, ids: torch.Tensor, offsets: torch.Tensor) -> torch.Tensor:
        return self.tower(self.mean(ids, offsets))


class TextEnsemble(nn.Module):
    """Several text towers of the same kind, trained apart (other seeds) into the same image space: the
    unit-length mean of their unit vectors, so a query's cosine to a photo is the members' mean cosine."""

    def __init__(self, members: list[nn.Module]) -> None:
        super().__init__()
        if len(members) < 2:
            raise ValueError(f"a text ensemble needs at least 2 members, got {len(members)}")
        self.members = nn.ModuleList(members)

    @property
    def in_dim(self) -> int:
        return int(cast("Tower | BagTower", self.members[0]).in_dim)

    @property
    def vocab(self) -> int:
        return int(getattr(self.members[0], "vocab", 0))

    @property
    def standardize(self) -> Standardize:
        return cast("Tower | BagTower", self.members[0]).standardize

    def forward(self, *x: torch.Tensor) -> torch.Tensor:
        return F.normalize(torch.stack([m(*x) for m in self.members]).mean(dim=0), dim=-1)


class TwoTower(nn.Module):
    """A text tower and an image tower into the same ``dim``-dimensional unit sphere.

    ``text_members`` > 1 (``arch="fixed_image"`` only: the image side is then the same for every member)
    makes the text side a :class:`TextEnsemble` of that many towers (see :func:`~toolkit.mapping.train.
    train_mapping`)."""

    def __init__(
        self,
        text_dim: int,
        image_dim: int,
        dim: int = 256,
        hidden: int = 512,
        dropout: float = 0.1,
        norm: str = "layer",
        activation: str = "gelu",
        arch: str = "mlp",
        text_tower: str = "mean",
        vocab: int = 0,
        linear_dims: int = 0,
        linear_weight: float = 0.0,
        text_members: int = 1,
        linear_maps: int = 1,
        grounding_words: int = 0,
        grounding_share: float = 0.0,
    ) -> None:
        super().__init__()
        if text_tower not in TEXT_TOWERS:
            raise ValueError(f"text_tower must be one of {TEXT_TOWERS}, got {text_tower!r}")
        if text_tower == "bag" and arch == "residual":
            raise ValueError("a bag text tower goes with arch 'mlp' or 'fixed_image', not 'residual'")
        if linear_dims < 0 or not (0.0 <= linear_weight < 1.0) or (linear_dims > 0) != (linear_weight > 0):
            raise ValueError(
                f"linear_dims and linear_weight go together (> 0, weight < 1): {linear_dims}, {linear_weight}"
            )
        self.text_dim = text_dim
        self.image_dim = image_dim
        self.tower_dim = dim
        #: output dimensions: the towers' and, with a linear branch, its CCA dimensions after them
        self.dim = dim
        self.text_input = "tokens" if text_tower == "bag" else "mean"
        self._arch = {
            "text_dim": text_dim,
            "image_dim": image_dim,
            "dim": dim,
            "hidden": hidden,
            "dropout": dropout,
            "norm": norm,
            "activation": activation,
            "arch": arch,
        }
        if text_tower == "bag":  # absent for mean towers: mappings saved before keep their fingerprint
            self._arch |= {"text_tower": text_tower, "vocab": vocab}
        if arch not in ARCHS:
            raise ValueError(f"arch must be one of {ARCHS}, got {arch!r}")
        if text_members < 1 or (text_members > 1 and arch != "fixed_image"):
            raise ValueError(
                f"text_members must be 1, or more with arch 'fixed_image' (one image side), got {text_members}"
                f" with arch {arch!r}"
            )
        if text_members > 1:  # absent for one tower: mappings saved before keep their fingerprint
            self._arch["text_members"] = text_members
        text_arch, image_arch = ("mlp", "pca") if arch == "fixed_image" else (arch, arch)

        def text_tower_() -> Tower | BagTower:
            if text_tower == "bag":
                return BagTower(vocab, text_dim, dim, hidden, dropout, norm, activation)
            return Tower(text_dim, dim, hidden, dropout, norm, activation, text_arch)

        self.text: Tower | BagTower | TextEnsemble = (
            TextEnsemble([text_tower_() for _ in range(text_members)]) if text_members > 1 else text_tower_()
        )
        self.image = Tower(image_dim, dim, hidden, dropout, norm, activation, image_arch)
        self.linear: LinearBranch | None = None
        self.linear_weight = 0.0
        if linear_dims:
            self._add_linear(linear_dims, linear_weight, linear_maps)
        self.grounding: WordGrounding | None = None
        if grounding_words:
            self._add_grounding(grounding_words, grounding_share)

    def _add_grounding(self, n_words: int, share: float) -> None:
        self.grounding = WordGrounding(n_words, self.dim, share)
        self._arch |= {"grounding_words": n_words, "grounding_share": float(share)}

    def set_grounding(self, grounding: WordGrounding, share: float) -> None:
        """Attach fitted word classifiers (:mod:`toolkit.mapping.grounding`) used with ``share``; a share of 0
        leaves the model without any (one attached before is taken off)."""
        if share <= 0:
            self.grounding = None
            self._arch = {k: v for k, v in self._arch.items() if not k.startswith("grounding_")}
            return
        device = next(self.parameters()).device
        fitted = WordGrounding(int(grounding.words.shape[0]), self.dim, share)
        fitted.load_state_dict(grounding.state_dict())  # other dims fail here, before the model is changed
        self._add_grounding(int(grounding.words.shape[0]), share)
        self.grounding = fitted.to(device)

    def _add_linear(self, dims: int, weight: float, maps: int) -> None:
        # a tokens text side is a BagTower or an ensemble of them
        vocab = cast("BagTower | TextEnsemble", self.text).vocab if self.text_input == "tokens" else 0
        self.linear = LinearBranch(self.text_dim, self.image_dim, dims, vocab, maps)
        self.linear_weight = float(weight)
        self.dim = self.tower_dim + dims
        self._arch |= {"linear_dims": dims, "linear_weight": float(weight)}
        if maps > 1:  # absent for one map: mappings saved before keep their fingerprint
            self._arch["linear_maps"] = maps

    def set_linear(
        self,
        maps: Sequence[LinearMap],
        weight: float,
        word_vectors: np.ndarray | None = None,
        merge: np.ndarray | None = None,
    ) -> None:
        """Fuse fitted CCAs (see :mod:`toolkit.mapping.linear_branch`; ``merge`` with more than one) into
        the embeddings with share ``weight`` of the cosine; ``word_vectors``: the fixed Word2Vec vectors,
        for a bag text tower."""
        device = next(self.parameters()).device
        self._add_linear(int(maps[0].text_proj.shape[1]), weight, len(maps))
        assert self.linear is not None
        self.linear.set_maps(maps, merge, word_vectors)
        self.linear.to(device)

    def arch(self) -> dict[str, Any]:
        """Constructor arguments: ``TwoTower(**model.arch())`` rebuilds the same architecture."""
        return dict(self._arch)

    def text_towers(self) -> list[Tower | BagTower]:
        """The text tower, or each member of a text ensemble."""
        return list(self.text.members) if isinstance(self.text, TextEnsemble) else [self.text]  # type: ignore[arg-type]

    def set_input_stats(
        self, text_mean: np.ndarray, text_std: np.ndarray, image_mean: np.ndarray, image_std: np.ndarray
    ) -> None:
        for tower in self.text_towers():
            tower.standardize.set_stats(text_mean, text_std)
        self.image.standardize.set_stats(image_mean, image_std)

    def get_input_stats(self) -> dict[str, np.ndarray]:
        return {
            "text_mean": self.text.standardize.mean.detach().cpu().numpy().copy(),
            "text_std": self.text.standardize.std.detach().cpu().numpy().copy(),
            "image_mean": self.image.standardize.mean.detach().cpu().numpy().copy(),
            "image_std": self.image.standardize.std.detach().cpu().numpy().copy(),
        }

    def encode_text(self, x: torch.Tensor | tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
        """Step means ``[B, text_dim]``, or ``(ids, offsets)`` token bags for a bag tower."""
        if self.text_input == "tokens":
            if not isinstance(x, tuple):
                raise ValueError("this mapping's text tower reads token ids: pass (ids, offsets)")
            return self.text(*x)
        return self.text(x)

    def encode_image(self, x: torch.Tensor) -> torch.Tensor:
        return self.image(x)

    def forward(
        self, text: torch.Tensor | tuple[torch.Tensor, torch.Tensor], image: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        return self.encode_text(text), self.encode_image(image)

    def set_word_vectors(self, matrix: np.ndarray) -> None:
        """Start a bag text tower's word vectors from ``matrix`` (the Word2Vec vectors, ``[vocab, text_dim]``)."""
        if self.text_input != "tokens":
            raise ValueError("only a bag text tower has word vectors")
        for tower in self.text_towers():
            cast(BagTower, tower).set_word_vectors(matrix)  # a tokens text side: bag towers

    def embed_text(self, x: Any, batch_size: int = 4096) -> np.ndarray:
        """Numpy ``[N, text_dim]`` step means (or :class:`~toolkit.text.tokens.TokenBags` for a bag tower)
        -> unit-length float32 ``[N, dim]`` (eval mode, batched, no grad)."""
        from toolkit.text.tokens import TokenBags

        if self.text_input == "tokens" or isinstance(x, TokenBags):
            return self._embed_bags(x, batch_size)
        return self._embed(
            self.text, x, "text", batch_size, None if self.linear is None else self.linear.text
        )

    def _embed_bags(self, bags: Any, batch_size: int) -> np.ndarray:
        from toolkit.text.tokens import TokenBags

        if self.text_input != "tokens":
            raise ValueError("this mapping's text tower reads step means, not token ids")
        if not isinstance(bags, TokenBags):
            raise ValueError(
                f"this mapping's text tower reads token ids (TokenBags), got {type(bags).__name__}"
            )
        bags.check(cast("BagTower | TextEnsemble", self.text).vocab)
        device = next(self.parameters()).device
        out = np.empty((len(bags), self.dim), dtype=np.float32)
        was_training = self.training
        if was_training:
            self.eval()
        threads = 1 if len(bags) <= SMALL_BATCH else torch.get_num_threads()
        try:
            with torch_threads(threads), torch.inference_mode():
                for start in range(0, len(bags), batch_size):
                    part = bags.take(np.arange(start, min(start + batch_size, len(bags))))
                    ids = torch.from_numpy(np.asarray(part.ids, dtype=np.int64)).to(device)
                    offsets = torch.from_numpy(part.offsets).to(device)
                    y = self.text(ids, offsets)
                    if self.linear is not None:
                        y = fuse(y, self.linear.text((ids, offsets)), self.linear_weight)
                    out[start : start + len(part)] = y.cpu().numpy()
        finally:
            if was_training:
                self.train(True)
        return out

    def embed_image(self, x: np.ndarray | Rows, batch_size: int = 4096) -> np.ndarray:
        """Numpy ``[N, image_dim]`` -> unit-length float32 ``[N, dim]`` (eval mode, batched, no grad)."""
        return self._embed(
            self.image, x, "image", batch_size, None if self.linear is None else self.linear.image
        )

    def _embed(self, tower: nn.Module, x: Any, what: str, batch_size: int, linear: Any = None) -> np.ndarray:
        if not hasattr(x, "gather"):  # Rows of a memory-mapped vector set are read block by block
            x = np.asarray(x)
        if x.ndim == 1:
            x = x[None, :]
        if x.ndim != 2 or x.shape[1] != tower.in_dim:
            raise ValueError(f"{what} features must have shape [N, {tower.in_dim}], got {x.shape}")
        if batch_size < 1:
            raise ValueError(f"batch_size must be positive, got {batch_size}")
        device = next(self.parameters()).device
        out = np.empty((x.shape[0], self.dim), dtype=np.float32)
        was_training = self.training
        if was_training:
            self.eval()
        # a few rows (a query) run on one thread: waking an OpenMP team for a 1x512 GELU cost ~10 ms on a
        # busy 2-core machine, against ~0.2 ms of actual work
        threads = 1 if x.shape[0] <= SMALL_BATCH else torch.get_num_threads()
        try:
            with torch_threads(threads), torch.inference_mode():
                for start in range(0, x.shape[0], batch_size):
                    block = np.asarray(x[start : start + batch_size], dtype=np.float32)
                    bad = ~np.isfinite(block).all(axis=1)
                    if bad.any():
                        row = start + int(np.flatnonzero(bad)[0])
                        raise ValueError(f"{what} features row {row} contains NaN or infinite values")
                    t = torch.from_numpy(block).to(device)
                    y = tower(t)
                    if linear is not None:
                        y = fuse(y, linear(t), self.linear_weight)
                    out[start : start + block.shape[0]] = y.cpu().numpy()
        finally:
            if was_training:
                self.train(True)
        return out
