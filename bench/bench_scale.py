"""``jrs build`` at scale: per-stage seconds and peak RSS, and how both grow with the collection.

For each size (steps) the sample generator writes a dataset (photos at ``--photo-size`` px; generated
once and reused from ``--work``), then ``toolkit.pipeline.build`` runs in a child process with the
cheap ``pixels`` encoder (the subject is the pipeline, not the CNN). A logging handler in the child
reads the peak resident set size (``VmHWM``) at every log line and resets it (``clear_refs``), so each
stage's peak is its own. Judged: ``scale_rss_ratio`` = peak RSS of the largest size / the smallest
(target <= 1.3), ``scale_time_ratio`` = seconds per step of the largest / the smallest (<= 1.3), and
``scale_peak_rss_mb`` of the largest (target <= 3000 MB at 1M steps).

Usage: ``python bench/bench_scale.py --sizes 20000,100000 [--work DIR] [--json]``; 1M steps:
``--sizes 100000,1000000`` (about 5 GB of photos at 32 px and an hour of generation on 2 cores).
Not measured here yet: ``jrs index`` at these sizes and the recall of hnsw/int8_hnsw/bbq_hnsw.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import emit, machine, run_child  # noqa: E402

STEPS_PER_RECIPE = 5.49  # the sample generator's mean (101,541 steps from 18,500 recipes)
#: which log line ends which stage of build (the build's own stage messages)
STAGE_ENDS = (
    ("read", "read "),
    ("word2vec", "word2vec:"),
    ("step_vectors", "step vectors:"),
    ("image_features", "image features:"),
    ("mapping", "mapping "),
)

CHILD = r"""
import json, logging, sys, time
from toolkit.memory import peak_rss_mb, reset_peak_rss
marks = []
class Meter(logging.Handler):
    def emit(self, record):
        marks.append((time.perf_counter(), record.getMessage()[:200], peak_rss_mb()))
        reset_peak_rss()
logging.getLogger("toolkit").addHandler(Meter())
logging.getLogger("toolkit").setLevel(logging.INFO)
import torch
torch.set_num_threads(int(sys.argv[4]))
from toolkit.pipeline import BuildOptions, build
reset_peak_rss()
t0 = time.perf_counter()
opts = BuildOptions(encoder="pixels", image_size=int(sys.argv[3]), workers=0, progress=False,
                    mapping={"epochs": int(sys.argv[5])})
result = build(sys.argv[1], sys.argv[2], opts)
marks.append((time.perf_counter(), "done", peak_rss_mb()))
print(json.dumps({"t0": t0, "marks": marks, "timings": result["timings_s"],
                  "pairs": result["evaluation"]["pairs"]}))
"""


def _dataset(work: Path, steps: int, photo_size: int) -> tuple[Path, float | None]:
    root = work / f"data-{steps}-{photo_size}px"
    if (root / "recipes.jsonl").is_file():
        return root, None
    from toolkit.data.sample import generate_sample

    t = time.perf_counter()
    generate_sample(root, max(1, round(steps / STEPS_PER_RECIPE)), seed=0, image_size=photo_size)
    return root, time.perf_counter() - t


def _stage_peaks(marks: list[list]) -> dict[str, float]:
    peaks: dict[str, float] = {}
    names = iter(STAGE_ENDS)
    current = next(names)
    for _, message, hwm in marks:
        stage = current[0] if current else "evaluate"
        peaks[stage] = max(peaks.get(stage, 0.0), hwm)
        if current and message.startswith(current[1]):
            current = next(names, None)
    return {k: round(v) for k, v in peaks.items()}


def measure(work: Path, steps: int, photo_size: int, pixels: int, threads: int, epochs: int) -> dict:
    root, gen_s = _dataset(work, steps, photo_size)
    out = work / f"model-{steps}"
    # the child's own kernel peak (ru_maxrss) is not used: the meter resets the peak at every stage
    run = run_child(["-c", CHILD, str(root), str(out), str(pixels), str(threads), str(epochs)])
    child, wall = run.data, run.wall_s
    n = sum(child["pairs"].values())
    read = next(m for _, m, _ in child["marks"] if m.startswith("read "))
    steps_read = int(read.split()[1])
    peaks = _stage_peaks(child["marks"])
    build_s = sum(child["timings"].values())
    return {
        "steps_requested": steps,
        "steps": steps_read,
        "pairs": n,
        "generate_s": None if gen_s is None else round(gen_s, 1),
        "build_s": round(build_s, 1),
        "child_wall_s": round(wall, 1),
        "us_per_step": round(1e6 * build_s / max(1, steps_read), 1),
        "stage_s": child["timings"],
        "stage_peak_rss_mb": peaks,
        "peak_rss_mb": max(peaks.values()),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="20000,100000", help="comma-separated step counts (ascending)")
    parser.add_argument("--work", type=Path, default=Path("/tmp/jrs-bench-scale"))
    parser.add_argument("--photo-size", type=int, default=32, help="generated photo side (px)")
    parser.add_argument("--pixels", type=int, default=16, help="pixels encoder grid side (3*side^2 dims)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads in the build")
    parser.add_argument("--epochs", type=int, default=5, help="mapping epochs")
    parser.add_argument("--quick", action="store_true", help="sizes 3000,15000")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    sizes = [3000, 15000] if args.quick else [int(s) for s in args.sizes.split(",")]
    args.work.mkdir(parents=True, exist_ok=True)
    runs = [measure(args.work, s, args.photo_size, args.pixels, args.threads, args.epochs) for s in sizes]
    small, big = runs[0], runs[-1]
    result = {
        "machine": machine(),
        "runs": runs,
        "scale_rss_ratio": round(big["peak_rss_mb"] / small["peak_rss_mb"], 3),
        "scale_time_ratio": round(big["us_per_step"] / small["us_per_step"], 3),
        "scale_peak_rss_mb": big["peak_rss_mb"],
        "scale_steps": big["steps_requested"],
    }
    lines = [
        f"{r['steps']:>9,} steps: build {r['build_s']:7.1f}s ({r['us_per_step']:.0f} us/step), "
        f"peak RSS {r['peak_rss_mb']} MB; per stage {r['stage_peak_rss_mb']}"
        for r in runs
    ]
    lines.append(
        f"peak RSS ratio {result['scale_rss_ratio']} (target <= 1.3), time/step ratio "
        f"{result['scale_time_ratio']} (target <= 1.3), largest peak {big['peak_rss_mb']} MB (target <= 3000)"
    )
    emit(result, args.json, lines)


if __name__ == "__main__":
    main()
