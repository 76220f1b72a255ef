"""Training the two-tower mapping: AdamW, warmup + cosine schedule, early stopping on validation R@10.

Deterministic on CPU: the same inputs, config and seed give the same weights (seeded torch, numpy and
``random``; a private generator for shuffling).
"""

from __future__ import annotations

import copy
import logging
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, replace
from typing import Any, cast

import numpy as np
import torch
from torch import nn

from toolkit.device import resolve_device
from toolkit.errors import ToolkitError
from toolkit.evaluation.linear import fit_cca as fit_branch_cca
from toolkit.evaluation.linear import fit_linear, pair_moments
from toolkit.evaluation.metrics import pooled_metrics_of
from toolkit.mapping.cca import fit_cca, leading_directions
from toolkit.mapping.config import (  # noqa: F401 - MappingConfig and its choices, re-exported
    DEFAULT_MIX_SHARE,
    DEFAULT_TEXT_MEMBERS,
    INITS,
    LEGACY,
    LOSSES,
    MAX_LR,
    MappingConfig,
)
from toolkit.mapping.linear_branch import fit_merge
from toolkit.mapping.losses import BidirectionalTripletLoss, SymmetricInfoNCE
from toolkit.mapping.towers import (
    BagTower,
    Tower,
    TwoTower,
    input_stats,
)
from toolkit.progress import track
from toolkit.seeding import seed_everything
from toolkit.text.tokens import TokenBags
from toolkit.vectorset import Rows

log = logging.getLogger(__name__)


@dataclass
class EpochStats:
    """One epoch of training: mean batch loss, validation text->image recalls, wall time."""

    epoch: int
    loss: float
    lr: float
    seconds: float
    val_r1: float | None = None
    val_r5: float | None = None
    val_r10: float | None = None
    val_mrr: float | None = None
    temperature: float | None = None


@dataclass
class TrainResult:
    """The trained model (best validation weights restored) and how it got there."""

    model: TwoTower
    config: MappingConfig
    history: list[EpochStats] = field(default_factory=list)
    best_epoch: int = 0
    stopped_early: bool = False
    #: epochs whose weights the model is the mean of (1: the best epoch's weights alone)
    averaged_epochs: int = 1
    #: with several text towers: each member's best epoch and whether it stopped early (the history and
    #: best epoch above are the first member's)
    members: list[dict[str, Any]] = field(default_factory=list)
    #: what the word grounding fitted (toolkit.mapping.grounding.fit_grounding); empty when none was
    grounding: dict[str, Any] = field(default_factory=dict)

    def history_dicts(self) -> list[dict[str, Any]]:
        return [asdict(h) for h in self.history]


def build_model(text_dim: int, image_dim: int, config: MappingConfig, vocab: int = 0) -> TwoTower:
    """The towers a config describes (random init from the current torch RNG state); ``vocab``: the
    number of word vectors of a bag text tower (its gradient sparse with ``sparse_words``)."""
    model = TwoTower(
        text_dim,
        image_dim,
        dim=config.dim,
        hidden=config.hidden,
        dropout=config.dropout,
        norm=config.norm,
        activation=config.activation,
        arch=config.arch,
        text_tower=config.text_tower,
        vocab=vocab if config.text_tower == "bag" else 0,
    )
    for tower in model.text_towers():
        if isinstance(tower, BagTower):
            tower.sparse_grad = config.sparse_words
    return model


def init_from_cca(model: TwoTower, text: np.ndarray, image: np.ndarray, config: MappingConfig) -> None:
    """Set both towers' linear projections to the regularised CCA of the (standardised) training pairs."""
    stats = model.get_input_stats()
    t = (text - stats["text_mean"]) / stats["text_std"]
    i = (image - stats["image_mean"]) / stats["image_std"]
    cca = fit_cca(t, i, config.dim, shrinkage=config.cca_shrinkage, power=config.cca_power)
    cast(Tower, model.text).set_projection(cca.text_weight)  # init cca: arch residual, a mean tower
    model.image.set_projection(cca.image_weight)


def init_image_pca(model: TwoTower, image: np.ndarray | Rows, chunk: int = 8192) -> None:
    """Set the fixed image projection of ``arch="fixed_image"`` to the leading principal directions of the
    standardised training features (covariance accumulated in blocks, so memmaps stay cheap; deterministic
    signs); directions past the features' rank are zero."""
    stats = model.get_input_stats()
    mean, std = stats["image_mean"].astype(np.float64), stats["image_std"].astype(np.float64)
    d_in, dim = mean.shape[0], model.tower_dim
    total, gram, n = np.zeros(d_in), np.zeros((d_in, d_in)), image.shape[0]
    for start in range(0, n, chunk):
        z = (np.asarray(image[start : start + chunk], dtype=np.float64) - mean) / std
        total += z.sum(axis=0)
        gram += z.T @ z
    centre = total / n
    cov = gram / n - np.outer(centre, centre)
    k = min(dim, d_in)
    top = leading_directions(cov, k)
    weight = np.zeros((dim, d_in), dtype=np.float32)
    weight[:k] = top.T
    model.image.set_projection(weight)


def build_loss(config: MappingConfig) -> BidirectionalTripletLoss | SymmetricInfoNCE:
    if config.loss == "triplet":
        return BidirectionalTripletLoss(margin=config.margin, mining=config.mining)
    return SymmetricInfoNCE(init_temperature=config.temperature, learnable=config.learnable_temperature)


def warmup_cosine(total_steps: int, warmup_steps: int) -> Callable[[int], float]:
    """LR multiplier: linear warmup to 1, then cosine decay to 0 at ``total_steps``."""

    def factor(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / warmup_steps
        progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
        return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))

    return factor


def group_codes(groups: Sequence[Any] | np.ndarray, n: int) -> np.ndarray:
    """Integer codes for arbitrary hashable group labels (e.g. recipe ids); integer arrays are codes already."""
    if isinstance(groups, np.ndarray) and groups.dtype.kind in "iu":
        if groups.shape != (n,):
            raise ValueError(f"train_groups has {len(groups)} labels for {n} pairs")
        return groups.astype(np.int64, copy=False)
    labels = list(groups)
    if len(labels) != n:
        raise ValueError(f"train_groups has {len(labels)} labels for {n} pairs")
    index: dict[Any, int] = {}
    return np.array([index.setdefault(g, len(index)) for g in labels], dtype=np.int64)


def _as_float32(x: np.ndarray | Rows) -> np.ndarray | Rows:
    """An in-memory, writable, C-contiguous float32 array (memory-mapped vector sets get copied once);
    :class:`~toolkit.vectorset.Rows` stay as they are (batches are gathered from them)."""
    if isinstance(x, Rows):
        return x
    arr = np.asarray(x, dtype=np.float32)
    if isinstance(arr, np.memmap) or not arr.flags.writeable or not arr.flags.c_contiguous:
        arr = np.array(arr, dtype=np.float32, order="C")
    return arr


#: Rows checked for NaN/inf at a time (memory-mapped inputs are never read whole).
_CHECK_BLOCK = 16384


def _batch(x: torch.Tensor | Rows, idx: torch.Tensor, device: torch.device) -> torch.Tensor:
    """Rows ``idx`` of the training inputs: an index gather, or read from a memory-mapped vector set."""
    if isinstance(x, Rows):
        block = torch.from_numpy(x[idx.cpu().numpy()])
        return block.to(device, non_blocking=True) if device.type == "cuda" else block
    return x[idx]


def _bag_batch(
    bags: TokenBags, idx: np.ndarray, drop: float, rng: np.random.Generator, device: torch.device
) -> tuple[torch.Tensor, torch.Tensor]:
    """Token bags ``idx`` as ``(ids, offsets)`` tensors; with ``drop`` > 0 each token is left out with that
    probability (word dropout), keeping at least one token per bag."""
    part = bags.take(idx)
    ids, offsets = np.asarray(part.ids, dtype=np.int64), part.offsets
    if drop > 0 and len(ids):
        keep = rng.random(len(ids)) >= drop
        lengths = part.lengths
        bag_of = np.repeat(np.arange(len(part)), lengths)
        kept = np.bincount(bag_of, weights=keep, minlength=len(part))
        for b in np.flatnonzero(kept == 0):  # never an empty bag: keep one token drawn at random
            keep[offsets[b] + rng.integers(lengths[b])] = True
        ids = ids[keep]
        offsets = np.zeros(len(part) + 1, dtype=np.int64)
        np.cumsum(np.bincount(bag_of[keep], minlength=len(part)), out=offsets[1:])
    return torch.from_numpy(ids).to(device), torch.from_numpy(offsets).to(device)


def _mix_pairs(
    text: tuple[torch.Tensor, torch.Tensor],
    image: torch.Tensor,
    codes: torch.Tensor | None,
    share: float,
) -> tuple[tuple[torch.Tensor, torch.Tensor], torch.Tensor, torch.Tensor | None]:
    """MixGen (Hao et al., 2023) for token bags: ``share`` × the batch's pairs are appended as mixed pairs.
    Mixed pair ``b`` joins the tokens of pairs ``b`` and ``b + n // 2`` (batches are shuffled: random
    partners) and takes the mean of their photo features; it shares pair ``b``'s group, so neither is a
    negative of the other."""
    ids, offsets = text
    n = len(offsets) - 1
    m = int(share * n)
    if m < 1:
        return text, image, codes
    partner = (np.arange(m) + n // 2) % n
    batch = TokenBags(ids.cpu().numpy(), offsets.cpu().numpy())
    # bags b0, p0, b1, p1, ...: every other offset dropped, each b and its partner p are one bag
    pairs = batch.take(np.stack([np.arange(m), partner], axis=1).ravel())
    mixed_ids = np.concatenate([batch.ids, pairs.ids])
    mixed_offsets = np.concatenate([batch.offsets, batch.offsets[-1] + pairs.offsets[2::2]])
    image = torch.cat([image, 0.5 * (image[:m] + image[torch.from_numpy(partner).to(image.device)])])
    if codes is not None:
        codes = torch.cat([codes, codes[:m]])
    return (
        (torch.from_numpy(mixed_ids).to(ids.device), torch.from_numpy(mixed_offsets).to(ids.device)),
        image,
        codes,
    )


class _BagMeans:
    """The step means of token bags as :func:`input_stats` reads them: ``[N, D]``, each slice computed
    when read (the means of all training pairs are never held at once)."""

    ndim = 2

    def __init__(self, bags: TokenBags, matrix: np.ndarray) -> None:
        self.bags, self.matrix = bags, matrix
        self.shape = (len(bags), int(matrix.shape[1]))

    def __len__(self) -> int:
        return self.shape[0]

    def __getitem__(self, key: slice) -> np.ndarray:
        from toolkit.text.step_vectors import mean_vectors

        part = self.bags[key]
        return mean_vectors(np.asarray(part.ids), part.offsets, self.matrix)[0]


def _check_bags(name: str, bags: Any, image: np.ndarray, vocab: int) -> None:
    if not isinstance(bags, TokenBags):
        raise ValueError(f"a bag text tower trains on token ids: {name} text must be TokenBags")
    if len(bags) != image.shape[0]:
        raise ValueError(
            f"{name} text has {len(bags)} bags but image has {image.shape[0]} rows: pairs must align"
        )
    if len(bags) < 2:
        raise ValueError(f"{name} set needs at least 2 pairs, got {len(bags)}")
    bags.check(vocab, f"{name} token")


def _checked_inputs(name: str, text: Any, image: Any, bag: bool, vocab: int) -> tuple[Any, Any]:
    """``(text, image)`` as training reads them (float32 arrays or Rows; TokenBags for a bag tower), checked."""
    image = _as_float32(image)
    if bag:
        _check_bags(name, text, image, vocab)
        return text, image
    text = _as_float32(text)
    _check_pairs(name, text, image)
    return text, image


def _check_pairs(name: str, text: np.ndarray, image: np.ndarray) -> None:
    if text.ndim != 2 or image.ndim != 2:
        raise ValueError(f"{name} text {text.shape} and image {image.shape} features must be 2-D [N, D]")
    if text.shape[0] != image.shape[0]:
        raise ValueError(
            f"{name} text has {text.shape[0]} rows but image has {image.shape[0]}: pairs must align"
        )
    if text.shape[0] < 2:
        raise ValueError(f"{name} set needs at least 2 pairs, got {text.shape[0]}")
    for what, x in (("text", text), ("image", image)):
        for start in range(0, x.shape[0], _CHECK_BLOCK):
            finite = np.isfinite(x[start : start + _CHECK_BLOCK]).all(axis=1)
            if not finite.all():
                row = start + int(np.flatnonzero(~finite)[0])
                raise ValueError(f"{name} {what} features row {row} has NaN/inf values")


def _val_recalls(
    model: TwoTower, text: np.ndarray, image: np.ndarray, config: MappingConfig
) -> dict[str, float]:
    m = pooled_metrics_of(
        model.embed_text, model.embed_image, text, image, pool=config.val_pool, draws=config.val_draws, seed=0
    )
    return m["text_to_image"]


def train_mapping(
    train_text: np.ndarray | Rows | TokenBags,
    train_img: np.ndarray | Rows,
    val_text: np.ndarray | Rows | TokenBags | None,
    val_img: np.ndarray | Rows | None,
    config: MappingConfig | None = None,
    train_groups: Sequence[Any] | np.ndarray | None = None,
    progress: bool = True,
    word_vectors: np.ndarray | None = None,
    val_unknown: np.ndarray | None = None,
) -> TrainResult:
    """Train the towers on paired rows (``train_text[i]`` goes with ``train_img[i]``).

    With ``config.text_tower == "bag"`` the texts are :class:`~toolkit.text.tokens.TokenBags` (token ids
    of each step) and ``word_vectors`` (the Word2Vec matrix) are where the tower's word vectors start.

    Inputs are arrays or :class:`~toolkit.vectorset.Rows` of memory-mapped vector sets (batches are
    then read from the files: the same weights, with memory flat in the number of pairs).

    ``train_groups`` labels pairs that must not serve as each other's negatives (same recipe, same text).
    With a validation set, the epoch with the best pooled text->image R@10 (ties: best MRR) is kept and
    training stops after ``patience`` epochs without improvement; without one, the last epoch is kept.

    With ``config.text_members`` > 1 that many text towers are trained one after another, each from its own
    seed (``seed``, ``seed + 1``, ...) and with its own early stopping, against the same fixed image side,
    and averaged (:class:`~toolkit.mapping.towers.TextEnsemble`): the members' errors are partly their own,
    and their mean ranks better than any of them, most where training pairs are few.

    With ``config.word_grounding`` a bag tower's word grounding is fitted last
    (:func:`~toolkit.mapping.grounding.fit_grounding`); ``val_unknown`` (per validation pair, how many words of
    its text the Word2Vec model lacks) has its share picked on the validation pairs with an unknown word.
    """
    config = config or MappingConfig()
    bag = config.text_tower == "bag"
    if bag:
        if word_vectors is None or np.ndim(word_vectors) != 2:
            raise ValueError("a bag text tower needs the Word2Vec matrix (word_vectors, [vocab, dim])")
        word_vectors = np.asarray(word_vectors, dtype=np.float32)
    vocab = 0 if word_vectors is None else word_vectors.shape[0]
    train_text, train_img = _checked_inputs("training", train_text, train_img, bag, vocab)
    has_val = val_text is not None or val_img is not None
    if has_val:
        if val_text is None or val_img is None:
            raise ValueError("give both val_text and val_img, or neither")
        val_text, val_img = _checked_inputs("validation", val_text, val_img, bag, vocab)
        # step means (arrays or Rows) without a bag tower
        means = cast("tuple[np.ndarray, np.ndarray]", (val_text, train_text))
        text_dims = (None, None) if bag else (means[0].shape[1], means[1].shape[1])
        if text_dims[0] != text_dims[1] or val_img.shape[1] != train_img.shape[1]:
            raise ValueError(
                f"validation dims ({text_dims[0]}, {val_img.shape[1]}) differ from training "
                f"({text_dims[1]}, {train_img.shape[1]})"
            )
    inputs = (train_text, train_img, val_text, val_img)
    results: list[TrainResult] = []
    shared: dict[str, Any] = {}
    assert config.text_members is not None  # set by __post_init__
    for j in range(config.text_members):
        if config.text_members > 1:
            log.info("text tower %d of %d", j + 1, config.text_members)
        member = replace(config, seed=config.seed + j, text_members=1)
        results.append(_train_towers(*inputs, member, train_groups, progress, word_vectors, shared))
    result = results[0]
    result.config = config
    if config.text_members > 1:
        result.model = _ensemble([r.model for r in results])
        result.members = [
            {
                "best_epoch": r.best_epoch,
                "stopped_early": r.stopped_early,
                "averaged_epochs": r.averaged_epochs,
            }
            for r in results
        ]
    model = result.model
    model.eval()
    if config.linear_weight > 0:
        fit_linear_branch(model, *inputs, config, word_vectors)
    if config.word_grounding and isinstance(train_text, TokenBags) and isinstance(val_text, TokenBags):
        from toolkit.mapping.grounding import fit_grounding

        codes = (
            np.arange(len(train_text)) if train_groups is None else group_codes(train_groups, len(train_text))
        )
        result.grounding = fit_grounding(
            model, train_text, train_img, codes, val_text, val_img, config.seed, val_unknown
        )
    return result


def _ensemble(models: list[TwoTower]) -> TwoTower:
    """One model whose text side averages the text towers of ``models`` (which share the image side)."""
    first = models[0]
    out = TwoTower(**{**first.arch(), "text_members": len(models)})
    out.image.load_state_dict(first.image.state_dict())
    for target, model in zip(out.text_towers(), models, strict=True):
        target.load_state_dict(model.text.state_dict())
    return out.to(next(first.parameters()).device)


class _WeightAverage:
    """A running mean of state dicts (float32 sums: a few dozen epochs at most), restarted at each new best."""

    def __init__(self) -> None:
        self.sums: dict[str, torch.Tensor] = {}
        self.count = 0

    def restart(self, state: dict[str, torch.Tensor]) -> None:
        self.sums = {k: v.detach().float().clone() for k, v in state.items()}
        self.count = 1

    def add(self, state: dict[str, torch.Tensor]) -> None:
        for k, v in state.items():
            self.sums[k] += v.detach().float()
        self.count += 1

    def mean(self, like: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """The mean, each tensor in the dtype (and device) of ``like``'s."""
        return {k: (self.sums[k] / self.count).to(like[k]) for k in like}


def _train_towers(
    # as train_mapping checked them: TokenBags for a bag text tower, else step means; val_* both None or not
    train_text: Any,
    train_img: np.ndarray | Rows,
    val_text: Any,
    val_img: Any,
    config: MappingConfig,
    train_groups: Sequence[Any] | np.ndarray | None,
    progress: bool,
    word_vectors: np.ndarray | None,
    shared: dict[str, Any],
) -> TrainResult:
    """One member of :func:`train_mapping` (one text tower), on checked inputs, without the linear branch;
    ``shared`` keeps what every member starts from alike (input statistics, the fixed image side)."""
    bag = config.text_tower == "bag"
    assert config.mix_share is not None  # set by __post_init__
    has_val = val_text is not None
    n = len(train_text) if bag else train_text.shape[0]
    codes = None if train_groups is None else torch.from_numpy(group_codes(train_groups, n))
    device = torch.device(resolve_device(config.device))

    seed_everything(config.seed)
    if bag:
        assert word_vectors is not None  # train_mapping checked it
        model = build_model(word_vectors.shape[1], train_img.shape[1], config, vocab=word_vectors.shape[0])
        model.set_word_vectors(word_vectors)
    else:
        model = build_model(train_text.shape[1], train_img.shape[1], config)
    if "stats" not in shared:  # a pass over all pairs: once for every member
        text_stats = input_stats(_BagMeans(train_text, cast(np.ndarray, word_vectors)) if bag else train_text)
        shared["stats"] = (*text_stats, *input_stats(train_img))
    model.set_input_stats(*shared["stats"])
    if config.init == "cca":
        init_from_cca(model, train_text, np.asarray(train_img), config)
    if config.arch == "fixed_image":  # the fixed image side: the same PCA for every member
        if "image" not in shared:
            init_image_pca(model, train_img)
            shared["image"] = {k: v.clone() for k, v in model.image.state_dict().items()}
        model.image.load_state_dict(shared["image"])
    model.to(device)
    loss_fn = build_loss(config).to(device)
    optimizers = _optimizers(model, loss_fn, config)
    optimizer = optimizers[0]
    steps_per_epoch = math.ceil(n / config.batch_size)
    total = steps_per_epoch * config.epochs
    schedule = warmup_cosine(total, round(config.warmup_epochs * steps_per_epoch))
    schedulers = [torch.optim.lr_scheduler.LambdaLR(o, schedule) for o in optimizers]
    generator = torch.Generator().manual_seed(config.seed)
    # in-memory inputs move to the device once (a no-op on CPU) and batches are index gathers;
    # Rows (memory-mapped vector sets) are read batch by batch, so memory stays flat in N
    dropout_rng = np.random.default_rng(config.seed)  # word dropout: deterministic like the shuffling
    lazy_text = bag or isinstance(train_text, Rows)
    text_t = train_text if lazy_text else torch.from_numpy(train_text).to(device)
    img_t = train_img if isinstance(train_img, Rows) else torch.from_numpy(train_img).to(device)
    if codes is not None:
        codes = codes.to(device)

    result = TrainResult(model=model, config=config)
    best_score: tuple[float, float] = (-1.0, -1.0)
    best_state, stale = None, 0
    average = _WeightAverage()  # weight_average: the best epoch's weights and those of the epochs after it
    if has_val and config.init == "cca":  # the CCA start is a candidate too: training must beat it
        recalls = _val_recalls(model, val_text, val_img, config)
        best_score, best_state = (recalls["R@10"], recalls["MRR"]), copy.deepcopy(model.state_dict())
        if config.weight_average:
            average.restart(best_state)
        log.info("epoch 0 (CCA init): val t2i R@10 %.3f", recalls["R@10"])
    epochs = track(range(1, config.epochs + 1), progress, "epochs", "epoch")
    for epoch in epochs:
        start = time.perf_counter()
        model.train()
        order = torch.randperm(n, generator=generator).to(device)
        total_loss, batches = 0.0, 0
        bar = track(range(0, n, config.batch_size), progress, f"epoch {epoch}", "batch", leave=False)
        for offset in bar:
            idx = order[offset : offset + config.batch_size]
            if idx.numel() < 2:
                continue  # a lone leftover pair has no negatives (and breaks BatchNorm)
            text_batch = (
                _bag_batch(
                    cast(TokenBags, text_t), idx.cpu().numpy(), config.word_dropout, dropout_rng, device
                )
                if bag
                else _batch(text_t, idx, device)
            )
            img_batch = _batch(img_t, idx, device)
            batch_codes = None if codes is None else codes[idx]
            if config.mix_share > 0:
                text_batch, img_batch, batch_codes = _mix_pairs(
                    cast("tuple[torch.Tensor, torch.Tensor]", text_batch),  # mixing: a bag tower's token ids
                    img_batch,
                    batch_codes,
                    config.mix_share,
                )
            t, i = model(text_batch, img_batch)
            loss = loss_fn(t, i, batch_codes)
            for o in optimizers:
                o.zero_grad(set_to_none=True)
            loss.backward()
            for o in optimizers:
                o.step()
            for sched in schedulers:
                sched.step()
            if isinstance(loss_fn, SymmetricInfoNCE):  # the loss with a learnable temperature
                loss_fn.clamp_parameters()
            total_loss += float(loss.detach())
            batches += 1
        if not math.isfinite(total_loss):  # per epoch: a check per batch would sync a GPU every step
            raise ToolkitError(
                f"training diverged in epoch {epoch} (the loss is {total_loss}): lower the learning rate "
                f"(--lr, now {config.lr}) or the weight decay (--weight-decay, now {config.weight_decay})"
            )
        stats = EpochStats(
            epoch=epoch,
            loss=total_loss / max(1, batches),
            lr=float(optimizer.param_groups[0]["lr"]),
            seconds=0.0,
            temperature=getattr(loss_fn, "temperature", None),
        )
        if has_val:
            recalls = _val_recalls(model, val_text, val_img, config)
            stats.val_r1, stats.val_r5, stats.val_r10 = recalls["R@1"], recalls["R@5"], recalls["R@10"]
            stats.val_mrr = recalls["MRR"]
        stats.seconds = time.perf_counter() - start
        result.history.append(stats)
        # Best = highest val R@10; ties (common once R@10 saturates) go to the higher MRR.
        score = (
            cast("tuple[float, float]", (stats.val_r10, stats.val_mrr)) if has_val else (float(epoch), 0.0)
        )
        if score > best_score:
            best_score, best_state, stale = score, copy.deepcopy(model.state_dict()), 0
            result.best_epoch = epoch
            if config.weight_average:
                average.restart(best_state)
        else:
            stale += 1
            if config.weight_average:  # after a first best: the first epoch always is one
                average.add(model.state_dict())
        log.info(_describe(stats))
        epochs.set_postfix(
            loss=f"{stats.loss:.4f}", r10="-" if stats.val_r10 is None else f"{stats.val_r10:.3f}"
        )
        if has_val and stale >= config.patience:
            result.stopped_early = epoch < config.epochs
            log.info(
                "early stop: no R@10 gain for %d epochs; best epoch %d", config.patience, result.best_epoch
            )
            break
    epochs.close()
    if best_state is not None:
        if average.count > 1:
            best_state = average.mean(best_state)
            log.info(
                "weights: mean of the best epoch %d and the %d after it", result.best_epoch, average.count - 1
            )
        result.averaged_epochs = max(1, average.count)
        model.load_state_dict(best_state)
    model.eval()
    return result


def _optimizers(model: TwoTower, loss_fn: nn.Module, config: MappingConfig) -> list[torch.optim.Optimizer]:
    """AdamW for the towers (decayed) and the loss's parameters; the word vectors are not decayed (they
    start at Word2Vec, not at zero). ``sparse_words``: the word vectors get lazy Adam instead (SparseAdam:
    a step updates only the rows of the batch's words, so its cost does not grow with the vocabulary)."""
    named = [(n_, p) for n_, p in model.named_parameters() if p.requires_grad]
    words = [p for n_, p in named if n_.endswith("words.weight")]
    towers = [p for n_, p in named if not n_.endswith("words.weight")]
    dense_words = [] if config.sparse_words else words
    optimizers: list[torch.optim.Optimizer] = [
        torch.optim.AdamW(
            [
                {"params": towers, "weight_decay": config.weight_decay},
                {"params": dense_words + list(loss_fn.parameters()), "weight_decay": 0.0},
            ],
            lr=config.lr,
        )
    ]
    if config.sparse_words and words:
        optimizers.append(torch.optim.SparseAdam(words, lr=config.lr))
    return optimizers


def fit_linear_branch(
    model: TwoTower,
    train_text: Any,
    train_img: Any,
    val_text: Any,
    val_img: Any,
    config: MappingConfig,
    word_vectors: np.ndarray | None = None,
) -> None:
    """Fit the CCA of the training pairs (regularisation picked on the validation pairs, as the linear
    baseline's), with ``config.linear_strong_reg`` a second, strongly regularised one merged with it, and
    fuse the branch into ``model`` with share ``config.linear_weight`` of the cosine. A bag tower's pairs
    are read as their Word2Vec step means (``word_vectors``, the vectors training started from)."""
    if isinstance(train_text, TokenBags):
        assert word_vectors is not None
        train_text = _BagMeans(train_text, word_vectors)
        if val_text is not None:
            val_text = _BagMeans(val_text, word_vectors)
    # every input is read in blocks (memmaps, Rows and bag means are never materialised)
    moments = pair_moments(train_text, train_img)  # one pass serves both CCAs
    linear = fit_linear(
        "cca", train_text, train_img, val_text, val_img, components=config.linear_dims, moments=moments
    )
    maps, merge = [linear], None
    if config.linear_strong_reg is not None:
        k = int(linear.text_proj.shape[1])
        maps.append(fit_branch_cca(train_text, train_img, k, config.linear_strong_reg, moments))
        merge = fit_merge(maps, train_text, train_img)
    model.set_linear(maps, config.linear_weight, word_vectors, merge)
    log.info(
        "linear branch: CCA %d dims (reg %s), %.2f of the cosine",
        linear.text_proj.shape[1],
        " + ".join(f"{m.reg:g}" for m in maps),
        config.linear_weight,
    )


def _describe(s: EpochStats) -> str:
    text = f"epoch {s.epoch}: loss {s.loss:.4f}  lr {s.lr:.2e}  {s.seconds:.1f}s"
    if s.val_r10 is not None:
        text += f"  val t2i R@1 {s.val_r1:.3f} R@5 {s.val_r5:.3f} R@10 {s.val_r10:.3f}"
    if s.temperature is not None:
        text += f"  T {s.temperature:.4f}"
    return text
