"""Benchmark: seconds per training epoch of the two-tower mapping, and how it scales with data size.

Default config (dim 256, hidden 512, batch 128, InfoNCE) on synthetic 300-d text / 2048-d image pairs.
Full run: 10k and 100k pairs (train_epoch_s is the 100k figure); ``--quick``: 1k and 10k. The ratio
it is judged by is ``scaling_ratio`` = epoch time at 10x the pairs / epoch time at 1x (ideal: 10,
linear; well above 10 means per-epoch work grows faster than the data).

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

TEXT_DIM, IMAGE_DIM = 300, 2048


def synthetic(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Random pairs with CNN-like non-negative image features (timing only; nothing to learn)."""
    rng = np.random.default_rng(seed)
    text = rng.standard_normal((n, TEXT_DIM), dtype=np.float32)
    image = np.maximum(rng.standard_normal((n, IMAGE_DIM), dtype=np.float32), 0) * 3
    return text, image


def epoch_seconds(n: int, loss: str, device: str) -> float:
    """Wall time of one training epoch (set-up and input statistics excluded)."""
    text, image = synthetic(n)
    config = MappingConfig(epochs=1, loss=loss, device=device)
    groups = np.arange(n) // 4  # 4 steps per recipe, as in real data
    result = train_mapping(text, image, None, None, config, groups, progress=False)
    return result.history[0].seconds


def run(quick: bool = False, loss: str = "infonce", device: str = "cpu", threads: int | None = None) -> dict:
    small, large = (1_000, 10_000) if quick else (10_000, 100_000)
    if threads:
        torch.set_num_threads(threads)
    epoch_seconds(512, loss, device)  # warm-up: lazy imports and allocator
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
        "load_avg_1m": round(os.getloadavg()[0], 2),
    }
    print(
        f"train epoch ({loss}, {device}, {torch.get_num_threads()} threads): {large} pairs {t_large:.2f}s "
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
