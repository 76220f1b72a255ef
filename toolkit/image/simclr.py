"""SimCLR fine-tuning of an image backbone on a collection's own (unlabelled) photos.

Each photo gives two augmented views (:class:`~toolkit.image.augment.SimCLRAugment`); the backbone
plus a projection head (Linear-BN-ReLU-Linear) embeds them and NT-Xent with a temperature pulls the
two views together and pushes the other photos of the batch away. The batch is as large as
``batch_size`` however small ``chunk_size`` is: gradients are accumulated with GradCache
(:mod:`toolkit.image.contrastive`), which equals the full-batch gradient.

Output directory::

    OUT/checkpoint.pt   backbone + head + optimiser + step (resume point, refused for another run)
    OUT/backbone.pt     the fine-tuned backbone: a state_dict any encoder of its architecture loads
    OUT/simclr.json     configuration, fingerprints (run, photos, base and fine-tuned encoder), history
    OUT/loss.png        loss curve (needs matplotlib)

The same code runs on CUDA (bf16 autocast) when ``device`` is ``cuda`` or ``auto`` finds one.

Randomness is a function of the seed alone: the augmentation of photo ``i`` in epoch ``e`` draws from a
generator seeded with ``(seed, e, i)`` and the network's random layers at step ``s`` from one seeded with
``(seed, s)``. So a run gives the same backbone whatever ``num_workers``, and a run interrupted and resumed
gives the backbone the uninterrupted run gives.
"""

from __future__ import annotations

import json
import logging
import math
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, nullcontext
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, cast

import numpy as np
import torch
from PIL import Image
from torch import nn
from torch.utils.data import DataLoader, Dataset, Sampler

from toolkit.atomic import atomic_path, write_json_atomic
from toolkit.device import resolve_device
from toolkit.errors import ConfigError, ToolkitError
from toolkit.fingerprint import fingerprint
from toolkit.image.augment import SimCLRAugment
from toolkit.image.backbones import cached_imagenet_weights
from toolkit.image.contrastive import gradcache_backward, nt_xent
from toolkit.image.encoders import create_encoder
from toolkit.image.features import items_fingerprint
from toolkit.image.finetuned import BACKBONE_FILE, BACKBONE_FORMAT
from toolkit.image.loading import ImageRejected, load_image
from toolkit.image.simclr_config import (  # noqa: F401 - the run's options, re-exported
    FINETUNABLE,
    SimCLRConfig,
    default_arch,
    default_device,
)
from toolkit.progress import progress_bar
from toolkit.rejects import Reject, RejectsWriter
from toolkit.resume import decide_resume
from toolkit.seeding import seed_everything, torch_seeded

log = logging.getLogger(__name__)

CHECKPOINT = "checkpoint.pt"
SUMMARY = "simclr.json"
LOSS_PNG = "loss.png"
CHECKPOINT_FORMAT = "jrs-simclr-checkpoint/1"
#: Streams of :func:`derived_seed`: a photo's augmentation in an epoch, the network's random layers in a step.
AUGMENT_STREAM, STEP_STREAM = 1, 2
#: Rejected photos named in the error when too few photos can be used.
NAMED_REJECTS = 3


class SimCLRStateError(ToolkitError):
    """The output directory holds a run with another configuration or other photos."""


@dataclass
class SimCLRResult:
    out_dir: Path
    arch: str
    steps: int
    epochs_done: float
    images: int
    rejected: int
    first_loss: float
    last_loss: float
    epoch_losses: list[float]
    run_fingerprint: str
    base_encoder_fingerprint: str
    encoder_fingerprint: str
    backbone: Path
    loss_curve: Path | None
    device: str
    seconds: float
    resumed_from: int = 0
    already_done: bool = False

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        for k in ("out_dir", "backbone", "loss_curve"):
            d[k] = str(d[k]) if d[k] is not None else None
        return d


# --------------------------------------------------------------------------- model


class ProjectionHead(nn.Module):
    """SimCLR's g(.): Linear -> BatchNorm -> ReLU -> Linear."""

    def __init__(self, in_dim: int, hidden: int, out: int) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Linear(in_dim, hidden, bias=False),
            nn.BatchNorm1d(hidden),
            nn.ReLU(inplace=True),
            nn.Linear(hidden, out),
        )

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return self.net(h)


class SimCLRModel(nn.Module):
    """Backbone f(.) (pooled features) followed by the projection head g(.)."""

    def __init__(self, backbone: nn.Module, feature_dim: int, hidden: int, out: int) -> None:
        super().__init__()
        self.backbone = backbone
        self.head = ProjectionHead(feature_dim, hidden, out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.backbone(x)
        return self.head(h.reshape(h.shape[0], -1))


def resolve_init(arch: str, init: str) -> tuple[str, str]:
    """``(weights for create_encoder, note)``: ``auto`` is ImageNet when available offline, else random."""
    if init != "auto":
        return init, ""
    if arch == "efficientnet-lite0":
        return "imagenet", "init auto: efficientnet-lite0 with its shipped ImageNet weights"
    if cached_imagenet_weights(arch) is not None:
        return "imagenet", f"init auto: {arch} with cached ImageNet weights"
    return "random", f"init auto: no cached {arch} ImageNet weights, starting from random weights"


def base_encoder(config: SimCLRConfig, device: str = "cpu") -> Any:
    """The encoder fine-tuning starts from (its fingerprint names the starting point)."""
    weights, _ = resolve_init(config.arch, config.init)
    enc = create_encoder(
        config.arch,
        weights=weights,
        device=device,
        image_size=config.image_size,
        seed=config.seed,
        backend="torch",  # trained with autograd
    )
    if enc.name != config.arch or not isinstance(getattr(enc, "model", None), nn.Module):
        raise ConfigError(
            f"encoder {config.arch!r} with init {config.init!r} gave {enc.name!r}, not a trainable {config.arch}"
        )
    return enc


def backbone_state(model: SimCLRModel, arch: str) -> dict[str, torch.Tensor]:
    """The backbone's tensors in the layout its encoder's ``weights=PATH`` loads."""
    root = FINETUNABLE[arch]
    module = getattr(model.backbone, root) if root else model.backbone
    return {k: v.detach().cpu().clone() for k, v in module.state_dict().items()}


# --------------------------------------------------------------------------- data


def derived_seed(*keys: int) -> int:
    """A 64-bit seed made from non-negative integers (the run's seed, a stream, an epoch, a photo, a step)."""
    return int(np.random.SeedSequence(list(keys)).generate_state(1, dtype=np.uint64)[0])


class PhotoViews(Dataset):
    """Item ``(epoch, i)`` (or ``i``: epoch 0): ``(i, view_a, view_b)`` of photo ``i``, augmented with the
    generator of ``(seed, epoch, i)``; ``(i, reason, None)`` when the photo cannot be used."""

    def __init__(self, paths: Sequence[str], augment: SimCLRAugment, seed: int = 0) -> None:
        self.paths = list(paths)
        self.augment = augment
        self.seed = seed

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, key: int | tuple[int, int]) -> tuple[int, Any, Any]:
        epoch, i = key if isinstance(key, tuple) else (0, key)
        size = self.augment.size
        try:
            img = load_image(self.paths[i], draft_size=2 * size)
        except ImageRejected as e:
            return i, e.reason, None
        except Exception as e:  # a loader bug must not kill the run
            return i, f"could not load image ({type(e).__name__}: {e})", None
        if min(img.size) > 2 * size:  # crops are resized to `size`: more pixels only cost time
            scale = 2 * size / min(img.size)
            img = img.resize(
                (max(1, round(img.width * scale)), max(1, round(img.height * scale))),
                Image.Resampling.BILINEAR,
            )
        with torch_seeded(derived_seed(self.seed, AUGMENT_STREAM, epoch, i)):
            a, b = self.augment(img)
        return i, a, b


def _collate(samples: list[tuple[int, Any, Any]]) -> tuple[torch.Tensor, torch.Tensor, list[tuple[int, str]]]:
    ok = [(a, b) for _, a, b in samples if b is not None]
    failed = [(i, a) for i, a, b in samples if b is None]
    if not ok:
        return torch.empty(0), torch.empty(0), failed
    return torch.stack([a for a, _ in ok]), torch.stack([b for _, b in ok]), failed


class EpochBatches(Sampler[list[tuple[int, int]]]):
    """Batches of a seeded permutation per epoch, from batch ``start`` on (to resume mid-epoch); each item is
    ``(epoch, photo index)``, the key of :class:`PhotoViews`."""

    def __init__(self, n: int, batch_size: int, seed: int, epoch: int, start: int = 0) -> None:
        self.n, self.batch_size, self.seed, self.epoch, self.start = n, batch_size, seed, epoch, start

    @staticmethod
    def per_epoch(n: int, batch_size: int) -> int:
        return max(1, n // batch_size)

    def __iter__(self) -> Iterator[list[tuple[int, int]]]:
        order = np.random.default_rng([self.seed, self.epoch]).permutation(self.n).tolist()
        bs = min(self.batch_size, self.n)
        for b in range(self.start, self.per_epoch(self.n, self.batch_size)):
            yield [(self.epoch, i) for i in order[b * bs : (b + 1) * bs]]

    def __len__(self) -> int:
        return self.per_epoch(self.n, self.batch_size) - self.start


# --------------------------------------------------------------------------- schedule, files


def learning_rate(step: int, total: int, base: float, warmup_fraction: float) -> float:
    """Linear warm-up then cosine decay to zero."""
    warm = max(1, int(total * warmup_fraction))
    if step < warm:
        return base * (step + 1) / warm
    progress = (step - warm) / max(1, total - warm)
    return base * 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))


def _save_atomic(obj: Any, path: Path) -> None:
    # through a file object: given a path, torch names the archive inside after it (the random temporary
    # name), and the same weights would give other bytes each time
    with atomic_path(path) as tmp, tmp.open("wb") as fh:
        torch.save(obj, fh)


def epoch_means(losses: Sequence[float], steps_per_epoch: int) -> list[float]:
    return [float(np.mean(losses[i : i + steps_per_epoch])) for i in range(0, len(losses), steps_per_epoch)]


def plot_loss(
    losses: Sequence[float], steps_per_epoch: int, path: Path, title: str = "", batch_size: int | None = None
) -> Path | None:
    """Per-step NT-Xent, per-epoch means and the no-skill level ``ln(2B - 1)`` as a PNG.

    Returns None (and logs why) without matplotlib."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        log.warning("matplotlib is not installed: no loss curve")
        return None
    fig, ax = plt.subplots(figsize=(7, 4), dpi=100)
    steps = np.arange(1, len(losses) + 1)
    ax.plot(steps, losses, lw=0.8, alpha=0.6, label="step")
    means = epoch_means(losses, steps_per_epoch)
    ax.plot(
        [min(len(losses), (e + 1) * steps_per_epoch) for e in range(len(means))],
        means,
        "o-",
        label="epoch mean",
    )
    if batch_size:
        ax.axhline(math.log(2 * batch_size - 1), ls="--", c="grey", lw=0.8, label="no skill, ln(2B-1)")
    ax.set_xlabel("optimiser step")
    ax.set_ylabel("NT-Xent loss")
    ax.set_title(title or "SimCLR fine-tuning")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    try:
        with atomic_path(path) as tmp:
            fig.savefig(tmp, format="png")
    finally:
        plt.close(fig)
    return path


# --------------------------------------------------------------------------- training


def train_simclr(
    items: Sequence[tuple[str, Path]],
    config: SimCLRConfig,
    out_dir: str | Path,
    *,
    rejects: RejectsWriter | None = None,
    overwrite: bool = False,
) -> SimCLRResult:
    """Fine-tune ``config.arch`` on the photos of ``items`` (``(step_id, path)``); resumable.

    Re-running with the same photos and configuration resumes from ``checkpoint.pt`` (or returns
    at once when finished); anything else raises :class:`SimCLRStateError` unless ``overwrite``.
    """
    from toolkit.image.backends import check_backend, default_backend

    t0 = time.perf_counter()
    config.check()
    check_backend(default_backend())  # the tuned encoder is made with it at the end: refuse a bad one first
    items = list(items)
    if len(items) < 2:
        raise ConfigError(f"SimCLR needs at least 2 photos, got {len(items)}")
    out = Path(out_dir)
    device = torch.device(resolve_device(config.device))
    seed_everything(config.seed)
    enc = base_encoder(config, "cpu")
    items_fp = items_fingerprint(items)
    run_fp = fingerprint("simclr-run/1", config.identity(), items_fp, enc.fingerprint)
    spe = EpochBatches.per_epoch(len(items), config.batch_size)
    total = spe * config.epochs if config.max_steps is None else min(spe * config.epochs, config.max_steps)

    if overwrite:
        clear_run(out)
    out.mkdir(parents=True, exist_ok=True)
    summary_path = out / SUMMARY
    if summary_path.is_file():
        with _damaged(summary_path):
            done = json.loads(summary_path.read_text(encoding="utf-8"))
            _check_run(out, done, run_fp)
            result = _result_from_dict(done["result"])
        result.already_done, result.seconds, result.resumed_from = (
            True,
            time.perf_counter() - t0,
            result.steps,
        )
        return result

    model = SimCLRModel(enc.model, int(enc.dim), config.proj_hidden, config.proj_dim)
    # torch's stubs lack the (device, memory_format=...) overload that Module.to accepts
    model.requires_grad_(True).train().to(device, memory_format=torch.channels_last)  # type: ignore[call-overload]
    opt = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    losses: list[float] = []
    bad: dict[int, str] = {}
    step = 0
    ckpt_path = out / CHECKPOINT
    if ckpt_path.is_file():
        with _damaged(ckpt_path):
            ckpt = torch.load(ckpt_path, map_location="cpu", weights_only=True)
            _check_run(out, ckpt, run_fp, format=CHECKPOINT_FORMAT)
            model.load_state_dict(ckpt["model"])
            opt.load_state_dict(ckpt["optimizer"])
            losses = [float(x) for x in ckpt["losses"]]
            bad = {int(k): str(v) for k, v in ckpt["bad"].items()}
            step = int(ckpt["step"])
        _check_usable(items, bad)
        log.info(f"resuming SimCLR run {run_fp} at step {step}/{total}")
    resumed_from = step

    def checkpoint() -> None:
        state = {
            "format": CHECKPOINT_FORMAT,
            "run_fingerprint": run_fp,
            "config": config.identity(),
            "step": step,
            "model": model.state_dict(),
            "optimizer": opt.state_dict(),
            "losses": losses,
            "bad": {str(k): v for k, v in bad.items()},
        }
        _save_atomic(state, ckpt_path)

    weights, note = resolve_init(config.arch, config.init)
    if note:
        log.info(note)
    batch = min(config.batch_size, len(items))
    log.info(
        f"SimCLR {config.arch} ({weights}) on {len(items)} photos, {config.image_size} px, batch {batch} "
        f"in chunks of {config.chunk_size}, {total} steps ({spe}/epoch) on {device}"
    )
    pre = enc.preprocess
    augment = SimCLRAugment(
        config.image_size,
        crop_scale=cast("tuple[float, float]", tuple(config.crop_scale)),
        jitter=config.jitter,
        blur_p=config.blur_p,
        mean=tuple(getattr(pre, "mean", SimCLRAugment.mean)),
        std=tuple(getattr(pre, "std", SimCLRAugment.std)),
    )
    dataset = PhotoViews([str(p) for _, p in items], augment, config.seed)
    autocast = torch.autocast("cuda", dtype=torch.bfloat16) if device.type == "cuda" else nullcontext()

    def embed(x: torch.Tensor) -> torch.Tensor:
        with autocast:
            return model(x.to(device, non_blocking=True).contiguous(memory_format=torch.channels_last))

    def loss_fn(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return nt_xent(a, b, config.temperature)

    bar = progress_bar(config.progress, "simclr", "step", total=total, initial=step)
    updating = False  # between the optimiser's update and the step count: a checkpoint now would be wrong
    try:
        while step < total:
            epoch, start = divmod(step, spe)
            sampler = EpochBatches(len(items), config.batch_size, config.seed, epoch, start)
            loader = DataLoader(
                dataset,
                batch_sampler=sampler,
                num_workers=config.num_workers,
                collate_fn=_collate,
                pin_memory=device.type == "cuda",
                persistent_workers=False,
            )
            for view_a, view_b, failed in loader:
                for i, reason in failed:
                    if i not in bad:
                        bad[i] = reason
                        _reject(rejects, items[i], reason)
                _check_usable(items, bad)
                if view_a.shape[0] >= 2:
                    for g in opt.param_groups:
                        g["lr"] = learning_rate(step, total, config.lr, config.warmup_fraction)
                    opt.zero_grad(set_to_none=True)
                    torch.manual_seed(derived_seed(config.seed, STEP_STREAM, step))  # dropout/drop-connect
                    loss = gradcache_backward(embed, view_a, view_b, config.chunk_size, loss_fn, model)
                    updating = True
                    opt.step()
                    losses.append(float(loss))
                else:
                    updating = True
                    losses.append(float("nan"))
                step += 1
                updating = False
                bar.update(1)
                bar.set_postfix(loss=f"{losses[-1]:.3f}", epoch=epoch + 1)
                if step % config.checkpoint_every == 0 or step % spe == 0 or step >= total:
                    checkpoint()
                if step >= total:
                    break
    except KeyboardInterrupt:
        if updating:  # the weights are a step ahead of the count: keep the last periodic checkpoint
            log.info(f"interrupted during an update: run again to resume from the last checkpoint in {out}")
        else:
            checkpoint()
            log.info(f"interrupted: checkpoint at step {step} in {ckpt_path}; run again to resume")
        raise
    finally:
        bar.close()

    return _finish(
        out, model, config, run_fp, items, enc.fingerprint, losses, spe, bad, device, t0, resumed_from
    )


def _finish(
    out: Path,
    model: SimCLRModel,
    config: SimCLRConfig,
    run_fp: str,
    items: list[tuple[str, Path]],
    base_fp: str,
    losses: list[float],
    spe: int,
    bad: dict[int, str],
    device: torch.device,
    t0: float,
    resumed_from: int,
) -> SimCLRResult:
    meta = {
        "format": BACKBONE_FORMAT,
        "arch": config.arch,
        "image_size": int(config.image_size),
        "run_fingerprint": run_fp,
        "steps": len(losses),
        "init": config.init,
    }
    backbone_path = out / BACKBONE_FILE
    _save_atomic({"state_dict": backbone_state(model, config.arch), "jrs_simclr": meta}, backbone_path)
    tuned = create_encoder(config.arch, weights=str(backbone_path), image_size=config.image_size)
    finite = [x for x in losses if math.isfinite(x)]
    curve = plot_loss(
        losses,
        spe,
        out / LOSS_PNG,
        f"SimCLR {config.arch}, batch {config.batch_size}, {config.image_size} px",
        batch_size=min(config.batch_size, len(items)),
    )
    result = SimCLRResult(
        out_dir=out,
        arch=config.arch,
        steps=len(losses),
        epochs_done=round(len(losses) / spe, 3),
        images=len(items) - len(bad),
        rejected=len(bad),
        first_loss=finite[0] if finite else float("nan"),
        last_loss=finite[-1] if finite else float("nan"),
        epoch_losses=epoch_means(losses, spe),
        run_fingerprint=run_fp,
        base_encoder_fingerprint=base_fp,
        encoder_fingerprint=tuned.fingerprint,
        backbone=backbone_path,
        loss_curve=curve,
        device=str(device),
        seconds=time.perf_counter() - t0,
        resumed_from=resumed_from,
    )
    summary = {
        "format": "jrs-simclr-run/1",
        "run_fingerprint": run_fp,
        "items_fingerprint": items_fingerprint(items),
        "config": config.identity(),
        "losses": losses,
        "rejected": {items[i][0]: r for i, r in sorted(bad.items())},
        "result": result.to_dict(),
    }
    write_json_atomic(out / SUMMARY, summary, indent=1)
    log.info(f"fine-tuned backbone {backbone_path} (encoder fingerprint {tuned.fingerprint}, base {base_fp})")
    return result


def _result_from_dict(d: dict[str, Any]) -> SimCLRResult:
    d = dict(d)
    for k in ("out_dir", "backbone", "loss_curve"):
        d[k] = Path(d[k]) if d[k] else None
    return SimCLRResult(**d)


def load_result(out_dir: str | Path) -> SimCLRResult:
    """The result recorded in a finished run's ``simclr.json``."""
    return _result_from_dict(json.loads((Path(out_dir) / SUMMARY).read_text(encoding="utf-8"))["result"])


@contextmanager
def _damaged(path: Path) -> Iterator[None]:
    """A run file that cannot be read or is not what a run writes (cut short, edited) raises
    :class:`SimCLRStateError` naming it, not whatever its reader raised."""
    try:
        yield
    except SimCLRStateError:
        raise
    except OSError as e:
        if not isinstance(e, FileNotFoundError):
            raise  # a read refused or failing (permission, I/O, memory) says nothing of the file: no --overwrite
        raise _damaged_error(path, e) from e
    except Exception as e:  # json, torch's zip reader, a missing key or a wrong type: all mean damaged
        raise _damaged_error(path, e) from e


def _damaged_error(path: Path, e: Exception) -> SimCLRStateError:
    first = (str(e).strip().splitlines() or [""])[0][:200]
    return SimCLRStateError(
        f"{path} is damaged ({type(e).__name__}: {first}); use --overwrite (overwrite=True) to start the run again"
    )


def _check_run(out: Path, found: dict[str, Any], run_fp: str, **expected: Any) -> None:
    """Refuse a finished run or checkpoint in ``out`` that is not run ``run_fp``."""
    labels = {"run_fingerprint": "run fingerprint (other photos, configuration or starting weights)"}
    decision = decide_resume(found, {**expected, "run_fingerprint": run_fp}, labels=labels)
    if decision.action == "mismatch":
        raise SimCLRStateError(decision.refusal(out, "a SimCLR run"))


def _check_usable(items: Sequence[tuple[str, Path]], bad: dict[int, str]) -> None:
    """:class:`ConfigError` naming the first rejected photos when fewer than 2 photos can be used."""
    usable = len(items) - len(bad)
    if usable >= 2:
        return
    named = "; ".join(f"{items[i][0]}: {reason}" for i, reason in sorted(bad.items())[:NAMED_REJECTS])
    more = f"; and {len(bad) - NAMED_REJECTS} more" if len(bad) > NAMED_REJECTS else ""
    raise ConfigError(
        f"SimCLR needs at least 2 usable photos: {len(bad)} of the {len(items)} photos could not be used "
        f"({named}{more})"
    )


def _reject(rejects: RejectsWriter | None, item: tuple[str, Path], reason: str) -> None:
    reject = Reject(record=item[0], stage="image", reason=f"{reason}: {item[1]}")
    if rejects is not None:
        rejects.write(reject)
    else:
        log.warning("rejected %s", reject)


def clear_run(out_dir: str | Path) -> None:
    """Remove a run's files (not the directory's other content)."""
    out = Path(out_dir)
    for name in (CHECKPOINT, SUMMARY, BACKBONE_FILE, LOSS_PNG):
        (out / name).unlink(missing_ok=True)
