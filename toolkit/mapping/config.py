"""What decides a trained mapping (:class:`MappingConfig`) and the choices its options take: a module without
torch, so that the CLI shows the defaults (``jrs build --help``) without loading it."""

from __future__ import annotations

import math
import numbers
from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields
from typing import Any

import numpy as np

from toolkit.errors import ConfigError, check_argument, given, plain_int
from toolkit.evaluation.linear import DEFAULT_CCA_COMPONENTS
from toolkit.seeding import check_seed

NORMS = ("layer", "batch")
ACTIVATIONS = ("gelu", "relu")
ARCHS = ("mlp", "residual", "fixed_image")
#: What the text tower reads: ``mean`` the fixed Word2Vec step mean; ``bag`` the step's token ids, through
#: word vectors that start as the Word2Vec ones and are fine-tuned (:class:`BagTower`).
TEXT_TOWERS = ("mean", "bag")
MINING = ("hard", "semihard")

LOSSES = ("infonce", "triplet")
#: text towers of the default (``fixed_image``) mapping: screened on 20 draws x 2-3 seeds, 19 of 20 rows
#: better than one tower (+1.0 R@10 on the generated objects, +2.5 on real artwork); 5 were no better than 3
DEFAULT_TEXT_MEMBERS = 3
#: Mixed pairs per batch of a bag text tower, as a share of the batch (``MappingConfig.mix_share``)
DEFAULT_MIX_SHARE = 0.5
INITS = ("random", "cca")
#: The largest learning rate taken: Adam steps of that size already wreck unit-scale weights
MAX_LR = 1.0
#: Values of options that mappings saved before they existed were trained with (absent keys mean these).
LEGACY: dict[str, Any] = {
    "arch": "mlp",
    "init": "random",
    "cca_shrinkage": 0.3,
    "cca_power": 0.5,
    "text_tower": "mean",
    "word_dropout": 0.0,
    "linear_weight": 0.0,
    "text_members": 1,
    "mix_share": 0.0,
    "weight_average": False,
    "sparse_words": False,
    "linear_strong_reg": None,
    "word_grounding": False,
}


@dataclass
class MappingConfig:
    """Everything that decides a trained mapping (saved in the checkpoint)."""

    dim: int = 256
    hidden: int = 512
    dropout: float = 0.1
    norm: str = "layer"
    activation: str = "gelu"
    arch: str = "fixed_image"  # fixed_image | mlp | residual (see toolkit.mapping.towers.Tower)
    text_tower: str = "bag"  # bag: fine-tuned word vectors of the step's tokens | mean: fixed Word2Vec mean
    word_dropout: float = 0.1  # bag tower: share of a step's tokens dropped per training batch
    # bag tower: mixed pairs added to each batch, as a share of it (two steps' tokens together, the mean of
    # their photo features; MixGen); None: DEFAULT_MIX_SHARE with text_tower bag, 0 with mean
    mix_share: float | None = None
    # the trained weights are the mean of the best epoch's and those of every epoch after it until training
    # stops (early stopping's patience window; SWAD, Cha et al. 2021), not the best epoch's alone
    weight_average: bool = True
    # bag tower: lazy Adam on the word vectors (SparseAdam: a step moves only the rows of the batch's words,
    # so an epoch costs the same at 1k or 100k words; dense AdamW took 0.4 s a step at 100k). Screened
    # quality-neutral (31.31 against 31.30 mean R@10 on 16 cached rows; docs/quality-log.md, 2026-12-06)
    sparse_words: bool = True
    # share of the cosine given to a CCA of the same inputs, fused after training (0: towers only;
    # toolkit.mapping.linear_branch); linear_dims CCA dimensions are appended to the dim tower ones
    linear_weight: float = 0.15
    # a second CCA in the linear branch with this regularisation (close to PLS), merged with the one picked
    # on the validation pairs into the same linear_dims (toolkit.mapping.linear_branch); None: that one
    # alone. Screened 2026-12-07 (docs/quality-log.md): neutral on 22 rows at the sets' size (-0.13 R@10),
    # +1.35 on 18 rows with 3-10x the training recipes (mixed +3.4)
    linear_strong_reg: float | None = 100.0
    # bag tower: per-word classifiers on the photo vectors (toolkit.mapping.grounding) that rerank the kNN
    # candidates of a query with a word the model lacks, with a share picked on the validation pairs (0: none)
    word_grounding: bool = True
    # text towers trained apart (seeds seed, seed + 1, ...) and averaged (TextEnsemble); more than one
    # only with arch fixed_image (one image side); None: DEFAULT_TEXT_MEMBERS there, 1 with other archs
    text_members: int | None = None
    linear_dims: int = DEFAULT_CCA_COMPONENTS
    init: str = "random"
    cca_shrinkage: float = 0.3
    cca_power: float = 0.5
    loss: str = "infonce"
    margin: float = 0.2
    mining: str = "semihard"
    temperature: float = 0.07
    learnable_temperature: bool = True
    lr: float = 1e-3
    weight_decay: float = 1e-4
    batch_size: int = 128
    epochs: int = 30
    warmup_epochs: float = 1.0
    patience: int = 5
    val_pool: int = 1000
    val_draws: int = 5
    seed: int = 0
    device: str = "auto"  # auto | cpu | cuda | cuda:N (toolkit.device.resolve_device)

    def __post_init__(self) -> None:
        if self.text_members is None:
            self.text_members = DEFAULT_TEXT_MEMBERS if self.arch == "fixed_image" else 1
        if self.mix_share is None:
            self.mix_share = DEFAULT_MIX_SHARE if self.text_tower == "bag" else 0.0
        self._check_types()
        checks = [
            (self.loss in LOSSES, f"loss must be one of {LOSSES}, got {self.loss!r}"),
            (self.mining in MINING, f"mining must be one of {MINING}, got {self.mining!r}"),
            (self.norm in NORMS, f"norm must be one of {NORMS}, got {self.norm!r}"),
            (self.arch in ARCHS, f"arch must be one of {ARCHS}, got {self.arch!r}"),
            (self.init in INITS, f"init must be one of {INITS}, got {self.init!r}"),
            (self.init != "cca" or self.arch == "residual", "init 'cca' needs arch 'residual'"),
            (
                self.text_tower in TEXT_TOWERS,
                f"text_tower must be one of {TEXT_TOWERS}, got {self.text_tower!r}",
            ),
            (
                self.text_tower != "bag" or self.arch != "residual",
                "text_tower 'bag' goes with arch 'fixed_image' or 'mlp'; use text_tower 'mean' with 'residual'",
            ),
            (0.0 <= self.word_dropout < 1.0, f"word_dropout must be in [0, 1), got {self.word_dropout}"),
            (0.0 <= self.mix_share <= 1.0, f"mix_share must be in [0, 1], got {self.mix_share}"),
            (
                self.mix_share == 0 or self.text_tower == "bag",
                "mix_share needs text_tower 'bag' (mixed pairs join two steps' tokens)",
            ),
            (
                self.text_members == 1 or (self.text_members > 1 and self.arch == "fixed_image"),
                f"text_members must be 1, or more with arch 'fixed_image', got {self.text_members} "
                f"with arch {self.arch!r}",
            ),
            (
                0.0 <= self.linear_weight < 1.0 and self.linear_dims >= 1,
                f"linear_weight must be in [0, 1) and linear_dims >= 1: {self.linear_weight}, {self.linear_dims}",
            ),
            (
                self.linear_strong_reg is None or self.linear_strong_reg > 0,
                f"linear_strong_reg must be positive or None, got {self.linear_strong_reg}",
            ),
            (
                self.cca_shrinkage > 0 and self.cca_power >= 0,
                f"cca_shrinkage must be > 0 and cca_power >= 0: {self.cca_shrinkage}, {self.cca_power}",
            ),
            (
                self.activation in ACTIVATIONS,
                f"activation must be one of {ACTIVATIONS}, got {self.activation!r}",
            ),
            (
                self.dim >= 1 and self.hidden >= 1,
                f"dim and hidden must be positive, got {self.dim}, {self.hidden}",
            ),
            (0.0 <= self.dropout < 1.0, f"dropout must be in [0, 1), got {self.dropout}"),
            (self.margin > 0, f"margin must be positive, got {self.margin}"),
            (0 < self.temperature <= 1, f"temperature must be in (0, 1], got {self.temperature}"),
            (
                0 < self.lr <= MAX_LR and 0 <= self.weight_decay <= 1,
                f"lr must be in (0, {MAX_LR}] and weight_decay in [0, 1]: {self.lr}, {self.weight_decay}",
            ),
            (self.batch_size >= 2, f"batch_size must be at least 2, got {self.batch_size}"),
            (self.epochs >= 1, f"epochs must be at least 1, got {self.epochs}"),
            (self.warmup_epochs >= 0, f"warmup_epochs must be >= 0, got {self.warmup_epochs}"),
            (self.patience >= 1, f"patience must be at least 1, got {self.patience}"),
            (
                self.val_pool >= 2 and self.val_draws >= 1,
                f"bad val_pool/val_draws: {self.val_pool}, {self.val_draws}",
            ),
        ]
        for ok, message in checks:
            if not ok:
                raise ConfigError(message)
        self.seed = check_seed("mapping seed", self.seed)

    def _check_types(self) -> None:
        """:class:`ConfigError` naming the field unless each ``int`` field (as annotated) holds an integer
        (NumPy's included, made a plain int; not a bool), each ``float`` field a finite real number (not a
        bool; NumPy's made a plain float) and each ``bool`` field True or False (NumPy's made a plain bool; not
        a string such as ``"false"``, which would count as true), so that the range checks compare numbers."""
        for f in fields(self):
            annotation = str(f.type)
            kind = {"int": int, "float": float, "bool": bool}.get(annotation.removesuffix(" | None"))
            value = getattr(self, f.name)
            if kind is None or f.name == "seed" or (value is None and annotation.endswith(" | None")):
                continue  # the seed: check_seed, below
            if kind is bool:
                if not isinstance(value, (bool, np.bool_)):
                    raise ConfigError(f"{f.name} must be True or False, got {given(value)}")
                setattr(self, f.name, bool(value))
            elif kind is int:
                number = plain_int(value)
                if number is None:
                    raise ConfigError(f"{f.name} must be an integer, got {given(value)}")
                if type(value) is not int:
                    setattr(self, f.name, number)
            else:
                if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value):
                    raise ConfigError(f"{f.name} must be a finite number, got {given(value)}")
                if type(value) not in (int, float):
                    setattr(self, f.name, float(value))

    @classmethod
    def from_options(cls, options: Mapping[str, Any]) -> MappingConfig:
        """A config from the options a user gave (``BuildOptions.mapping``): :class:`ConfigError` for something
        other than a mapping, or a key that names no field (the known ones listed)."""
        check_argument("mapping", options, Mapping, "a dict of MappingConfig fields, e.g. {'dim': 128}")
        names = [f.name for f in fields(cls)]
        unknown = [repr(k) for k in options if k not in names]
        if unknown:
            raise ConfigError(
                f"unknown MappingConfig field {', '.join(unknown)}; known: {', '.join(sorted(names))}"
            )
        return cls(**options)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def fingerprint_dict(self) -> dict[str, Any]:
        """:meth:`to_dict` without options at their :data:`LEGACY` value (older mappings keep their hash);
        ``linear_dims`` only where there is a linear branch."""
        out = {k: v for k, v in asdict(self).items() if not (k in LEGACY and LEGACY[k] == v)}
        if self.linear_weight == 0:
            out.pop("linear_dims")
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> MappingConfig:
        """Rebuild from saved JSON, ignoring keys this version does not know (missing new ones: :data:`LEGACY`)."""
        names = {f.name for f in fields(cls)}
        return cls(**(LEGACY | {k: v for k, v in data.items() if k in names}))
