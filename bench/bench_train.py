"""Benchmark: seconds per training epoch of the two-tower mapping, and how it scales with data size.

Default config (dim 256, hidden 512, batch 128, InfoNCE; one text tower of the default bag kind over a
1k-word table, so figures are per ensemble member) on random token bags and 2048-d image features. Each
figure is the median of ``TIMED_EPOCHS`` epochs after a warm-up epoch of the same run (the first epoch also
allocates the optimizers' state and warms the allocator and thread pools); the linear branch, fitted after
training and never timed, is off to keep the run short.
Full run: 10k and 100k pairs (``train_epoch_s`` is the 100k figure); ``--quick``: 1k and 10k. It also
reports ``scaling_ratio`` = epoch time at 10x the pairs / epoch time at 1x (ideal: 10, linear; well above 10
means per-epoch work grows faster than the data; in the scaling table of ``bench/results.md``, no goal).

The bag tower fine-tunes its word vectors, so its cost may also grow with the vocabulary: the 10k-pair
epoch (Zipf-distributed words) with a 1k and a 100k-word vocabulary (``--quick``: 1k pairs, 1k and 20k
words), ``vocab_ratio`` (ideal 1: an epoch does not grow with words its batches do not hold), and, in the
same run at the large vocabulary, the word table updated by dense AdamW (``sparse_words`` off, as before
2026-12-06), ``sparse_speedup``: its epoch is about 15x longer, so one is timed after the warm-up.

``bench/run_all.py`` judges ``vocab_ratio`` (goal <= 1.5) and reports ``train_epoch_s`` and
``sparse_speedup`` (no goal).

    python bench/bench_train.py [--quick] [--loss infonce|triplet] [--device cpu] [--threads N]

On a shared machine, other busy processes slow multi-threaded CPU torch a lot (its threads wait on
each other); ``--threads 1`` gives steadier figures there, and the load average is reported.
"""

from __future__ import annotations

import argparse
import json
import os
import time

import numpy as np
import torch

from toolkit.mapping.train import MappingConfig, train_mapping
from toolkit.text.tokens import TokenBags

TEXT_DIM, IMAGE_DIM = 300, 2048
SMALL_VOCAB = 1_000
#: epochs run before the timed ones (the first allocates the optimizers' state, warms allocator and threads)
WARMUP_EPOCHS = 1
#: epochs timed after the warm-up: a figure is their median (a busy moment of a shared machine hits one)
TIMED_EPOCHS = 3
#: epochs timed of the dense AdamW baseline, about 15x slower an epoch (long enough to be steady; reported only)
DENSE_TIMED_EPOCHS = 1


def token_bags(n: int, vocab: int, rng: np.random.Generator) -> TokenBags:
    """``n`` bags of 3-9 word ids, Zipf-distributed over ``vocab`` words as in real text."""
    lengths = rng.integers(3, 10, n)
    ids = (rng.zipf(1.3, int(lengths.sum())) - 1) % vocab
    return TokenBags(ids.astype(np.int64), np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64))


def epoch_seconds(
    n: int,
    loss: str,
    device: str,
    vocab: int = SMALL_VOCAB,
    sparse: bool = True,
    seed: int = 0,
    timed: int = TIMED_EPOCHS,
) -> float:
    """Median wall time of ``timed`` epochs, after :data:`WARMUP_EPOCHS`, of one text tower of the default kind
    (a bag of fine-tuned word vectors over a ``vocab``-word table) on ``n`` random pairs with CNN-like
    non-negative image features (timing only; nothing to learn); set-up and input statistics excluded."""
    rng = np.random.default_rng(seed)
    words = rng.standard_normal((vocab, TEXT_DIM), dtype=np.float32)
    image = np.maximum(rng.standard_normal((n, IMAGE_DIM), dtype=np.float32), 0) * 3
    config = MappingConfig(
        epochs=WARMUP_EPOCHS + timed,
        loss=loss,
        text_members=1,
        sparse_words=sparse,
        linear_weight=0.0,
        device=device,
    )
    groups = np.arange(n) // 4  # 4 steps per recipe, as in real data
    bags = token_bags(n, vocab, rng)
    result = train_mapping(bags, image, None, None, config, groups, progress=False, word_vectors=words)
    return float(np.median([h.seconds for h in result.history[WARMUP_EPOCHS:]]))


def vocabulary_run(n: int, t_small: float, large: int, loss: str, device: str) -> dict:
    """Epoch seconds of ``n`` pairs at a ``large`` vocabulary (lazy word updates, the default) against
    ``t_small`` at :data:`SMALL_VOCAB` words, and at ``large`` with dense AdamW on the word table (the
    baseline), all in one run."""
    t_large = epoch_seconds(n, loss, device, vocab=large)
    t_dense = epoch_seconds(n, loss, device, vocab=large, sparse=False, timed=DENSE_TIMED_EPOCHS)
    print(
        f"bag tower epoch, {n} pairs: {SMALL_VOCAB} words {t_small:.2f}s, {large} words {t_large:.2f}s "
        f"(vocab ratio {t_large / t_small:.2f}, ideal 1); dense AdamW on {large} words {t_dense:.2f}s "
        f"(sparse speedup {t_dense / t_large:.1f}x)"
    )
    return {
        "vocab_pairs": n,
        "vocab_small": SMALL_VOCAB,
        "vocab_large": large,
        "vocab_small_epoch_s": round(t_small, 3),
        "vocab_large_epoch_s": round(t_large, 3),
        "vocab_ratio": round(t_large / t_small, 2),
        "vocab_large_dense_epoch_s": round(t_dense, 3),
        "sparse_speedup": round(t_dense / t_large, 2),
    }


def run(quick: bool = False, loss: str = "infonce", device: str = "cpu", threads: int | None = None) -> dict:
    small, large = (1_000, 10_000) if quick else (10_000, 100_000)
    if threads:
        torch.set_num_threads(threads)
    t_small = epoch_seconds(small, loss, device)
    t_large = epoch_seconds(large, loss, device)
    result = {
        "pairs": large,
        "train_epoch_s": round(t_large, 3),
        "pairs_per_s": round(large / t_large, 1),
        "small_pairs": small,
        "small_epoch_s": round(t_small, 3),
        "scaling_ratio": round(t_large / t_small, 2),
        "ideal_ratio": large / small,
        "loss": loss,
        "device": device,
        "torch_threads": torch.get_num_threads(),
        "warmup_epochs": WARMUP_EPOCHS,
        "timed_epochs": TIMED_EPOCHS,
        "dense_timed_epochs": DENSE_TIMED_EPOCHS,
    }
    result.update(vocabulary_run(small, t_small, 20_000 if quick else 100_000, loss, device))
    result["load_avg_1m"] = round(os.getloadavg()[0], 2)
    print(
        f"train epoch ({loss}, {device}, {torch.get_num_threads()} threads; median of {TIMED_EPOCHS} after "
        f"{WARMUP_EPOCHS} warm-up): {large} pairs {t_large:.2f}s "
        f"({large / t_large:,.0f} pairs/s); {small} pairs {t_small:.2f}s; "
        f"scaling ratio {t_large / t_small:.2f} (ideal {large / small:.0f})"
    )
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="1k and 10k pairs instead of 10k and 100k")
    parser.add_argument("--loss", choices=["infonce", "triplet"], default="infonce")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    parser.add_argument("--json", action="store_true", help="(the result is always the last line, as JSON)")
    args = parser.parse_args()
    start = time.perf_counter()
    result = run(args.quick, args.loss, args.device, args.threads)
    result["total_s"] = round(time.perf_counter() - start, 1)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
