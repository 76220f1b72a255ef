"""Image pipeline throughput: files on disk -> decode -> resize -> CNN forward -> vector set.

Judged by ``image_pipeline_ratio`` = whole-pipeline images/s (``extract_features``: read JPEG
files, decode in DataLoader workers, preprocess, ResNet-50 forward, memmap writes, final vector
set) divided by the forward-only images/s of the same encoder and batch size on tensors already
in memory, measured in the same run. Target: >= 0.9.

The photos are generated (512x384 JPEGs of drawn shapes) in a temporary directory; ResNet-50
uses random weights (weights do not change speed). Forward-only and pipeline runs alternate
and the best of each is kept, so a noisy neighbour hurts both alike. The full run also
reports the untuned-malloc figures and sweeps DataLoader workers and torch threads.

Usage: ``python bench/bench_image.py [--quick]``
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFilter

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from toolkit.image.encoders import create_encoder  # noqa: E402
from toolkit.image.features import (  # noqa: E402
    default_num_workers,
    extract_features,
    tune_malloc_for_inference,
)
from toolkit.image.loading import load_image  # noqa: E402


def make_photos(directory: Path, n: int, size: tuple[int, int] = (512, 384), seed: int = 0) -> list[Path]:
    """Write ``n`` photo-like JPEGs (gradient background, blurred shapes, grain)."""
    rng = np.random.default_rng(seed)
    w, h = size
    yy, xx = np.mgrid[0:h, 0:w]
    paths = []
    for i in range(n):
        c0, c1 = rng.integers(0, 256, 3), rng.integers(0, 256, 3)
        t = ((xx / w + yy / h) / 2)[..., None]
        bg = (c0 * (1 - t) + c1 * t).astype(np.uint8)
        img = Image.fromarray(bg, "RGB")
        draw = ImageDraw.Draw(img)
        for _ in range(25):
            x0, y0 = int(rng.integers(0, w)), int(rng.integers(0, h))
            x1, y1 = x0 + int(rng.integers(10, 200)), y0 + int(rng.integers(10, 200))
            fill = tuple(int(v) for v in rng.integers(0, 256, 3))
            (draw.ellipse if rng.random() < 0.5 else draw.rectangle)([x0, y0, x1, y1], fill=fill)
        img = img.filter(ImageFilter.GaussianBlur(1.5))
        grain = rng.normal(0, 6, (h, w, 3))
        img = Image.fromarray(np.clip(np.asarray(img, np.float32) + grain, 0, 255).astype(np.uint8))
        path = directory / f"photo_{i:05d}.jpg"
        img.save(path, quality=88)
        paths.append(path)
    return paths


def _cpu_seconds() -> float:
    """CPU time of this process and its reaped children (DataLoader workers)."""
    own = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def forward_rate(encoder, batch: torch.Tensor, n_batches: int) -> tuple[float, float]:
    """(images/s, CPU ms/image) of ``encode_batch`` alone on a preprocessed in-memory batch."""
    c0, t0 = _cpu_seconds(), time.perf_counter()
    for _ in range(n_batches):
        encoder.encode_batch(batch)
    n = n_batches * batch.shape[0]
    return n / (time.perf_counter() - t0), (_cpu_seconds() - c0) * 1000 / n


def pipeline_rate(encoder, items, out_dir: Path, batch_size: int, workers: int) -> tuple[float, float, float]:
    """(images/s, CPU ms/image, steady images/s) of one whole ``extract_features`` call.

    The first figure includes everything (worker start, first batch, cold heap, final write);
    the steady one counts from the first committed batch to the last.
    """
    stamps: list[tuple[float, int]] = []
    c0 = _cpu_seconds()
    res = extract_features(
        items,
        encoder,
        out_dir,
        batch_size,
        workers,
        progress=False,
        overwrite=True,
        on_batch=lambda done, total: stamps.append((time.perf_counter(), done)),
    )
    assert res.complete and res.encoded == len(items), res
    (t_first, n_first), (t_last, n_last) = stamps[0], stamps[-1]
    steady = (n_last - n_first) / (t_last - t_first) if n_last > n_first else float("nan")
    return len(items) / res.seconds, (_cpu_seconds() - c0) * 1000 / len(items), steady


def measure(encoder, batch: torch.Tensor, items, out_dir: Path, workers: int, rounds: int) -> dict:
    """Alternate forward-only and pipeline runs; keep the least disturbed (fastest) of each."""
    n_batches = len(items) // batch.shape[0]
    fwd, pipe = [], []
    for _ in range(rounds):
        fwd.append(forward_rate(encoder, batch, n_batches))
        pipe.append(pipeline_rate(encoder, items, out_dir, batch.shape[0], workers))
    (f_rate, f_cpu), (p_rate, p_cpu, _) = max(fwd), max(pipe)
    steady = max(s for _, _, s in pipe)
    return {
        "image_forward_per_s": round(f_rate, 2),
        "image_pipeline_per_s": round(p_rate, 2),
        "image_pipeline_ratio": round(p_rate / f_rate, 3),
        "image_pipeline_steady_per_s": round(steady, 2),
        "image_pipeline_steady_ratio": round(steady / f_rate, 3),
        "forward_rates": [round(r, 2) for r, _ in fwd],
        "pipeline_rates": [round(r, 2) for r, _, _ in pipe],
        "forward_cpu_ms_per_image": round(f_cpu, 1),
        "pipeline_cpu_ms_per_image": round(p_cpu, 1),
    }


def run(
    quick: bool = False, n_images: int | None = None, sweep: bool | None = None, untuned: bool | None = None
) -> dict:
    """Measure and return the figures (``image_pipeline_ratio`` is the judged one).

    The judged figures use the configuration of ``jrs embed-images``: malloc tuned for
    inference, torch threads = cores, ``default_num_workers()`` DataLoader workers (0 on 2
    cores: decoding in-process beat one or two workers there). A pipeline call carries about
    0.4 s of one-time costs (worker start, first batch, first forward on a cold heap, final
    write) that the warmed forward-only loop does not, so its ratio rises with the image count;
    ``image_pipeline_steady_ratio`` leaves them out. The full run (1024 photos) also measures
    the untuned process (glibc defaults) first, and sweeps workers/threads on 256 photos.
    """
    n_images = n_images or (256 if quick else 1024)
    sweep = (not quick) if sweep is None else sweep
    untuned = (not quick) if untuned is None else untuned
    batch_size, workers, threads = 32, default_num_workers(), os.cpu_count() or 2
    torch.set_num_threads(threads)
    encoder = create_encoder("resnet50", weights="random")
    out: dict = {"n_images": n_images, "batch_size": batch_size, "torch_threads": threads, "workers": workers}
    with tempfile.TemporaryDirectory(prefix="bench_image_") as tmp:
        root = Path(tmp)
        t0 = time.perf_counter()
        (root / "photos").mkdir()
        paths = make_photos(root / "photos", n_images)
        out["generate_s"] = round(time.perf_counter() - t0, 2)
        items = [(f"r{i}:1", p) for i, p in enumerate(paths)]

        t0 = time.perf_counter()
        for p in paths[:64]:
            encoder.preprocess(load_image(p, draft_size=encoder.load_size))
        out["decode_preprocess_ms_per_image"] = round((time.perf_counter() - t0) / 64 * 1000, 2)

        batch = torch.stack([encoder.preprocess(load_image(p)) for p in paths[:batch_size]])
        encoder.encode_batch(batch)  # warm-up
        if untuned:
            out["untuned_malloc"] = measure(encoder, batch, items, root / "out", workers, rounds=1)

        out["malloc_tuned"] = tune_malloc_for_inference()
        encoder.encode_batch(batch)  # warm the heap
        out.update(measure(encoder, batch, items, root / "out", workers, rounds=3))

        if sweep:
            sweeps, few = {}, items[:256]
            for w, th in [(0, threads), (1, threads), (2, threads), (1, 1)]:
                torch.set_num_threads(th)
                f, _ = forward_rate(encoder, batch, len(few) // batch_size)
                p, p_cpu, _ = pipeline_rate(encoder, few, root / "out", batch_size, w)
                sweeps[f"workers={w},threads={th}"] = {
                    "forward_per_s": round(f, 2),
                    "pipeline_per_s": round(p, 2),
                    "pipeline_cpu_ms_per_image": round(p_cpu, 1),
                }
            torch.set_num_threads(threads)
            out["sweep"] = sweeps
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer images, no sweep (about a minute)")
    parser.add_argument("--images", type=int, default=None, help="photos per pipeline run (256 / 1024)")
    parser.add_argument("--no-sweep", action="store_true", help="skip the workers/threads sweep")
    parser.add_argument("--no-untuned", action="store_true", help="skip the glibc-default malloc run")
    parser.add_argument("--json", action="store_true", help="print the result dict as one JSON line")
    args = parser.parse_args()
    result = run(
        quick=args.quick,
        n_images=args.images,
        sweep=False if args.no_sweep else None,
        untuned=False if args.no_untuned else None,
    )
    if args.json:
        print(json.dumps(result))
        return
    print(json.dumps(result, indent=2))
    ratio = result["image_pipeline_ratio"]
    print(f"image_pipeline_ratio = {ratio} (target >= 0.9): {'PASS' if ratio >= 0.9 else 'FAIL'}")


if __name__ == "__main__":
    main()
