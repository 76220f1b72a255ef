"""Synthetic sample generation throughput: steps written per second (recipes.jsonl + drawn JPEGs).

Judged by ``sample_speed_ratio`` = steps/s of one worker at 96 px divided by the 300 steps/s
target (so >= 1.0 passes). Each step counts whether or not it has a photo (90% do, the default).
The run writes to a temporary directory on disk, so file creation is part of the figure;
``draw_only_steps_per_s`` (text + drawing + JPEG encoding, nothing written) shows the CPU side
alone. The full run also measures 2 workers (scaling) and 224 px photos.

Usage: ``python bench/bench_sample.py [--quick]``
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402

from toolkit.data.sample import generate_sample, make_recipe  # noqa: E402
from toolkit.data.sample_draw import step_photo_jpeg  # noqa: E402

TARGET_STEPS_PER_S = 300.0


def _measure(n_recipes: int, workers: int, image_size: int, repeats: int) -> dict:
    best = None
    for _ in range(repeats):
        with tempfile.TemporaryDirectory(prefix="bench-sample-") as tmp:
            s = generate_sample(Path(tmp) / "data", n_recipes, seed=0, image_size=image_size, workers=workers)
        if best is None or s.steps_per_s > best.steps_per_s:
            best = s
    assert best is not None
    return {
        "recipes": best.recipes,
        "steps": best.steps,
        "photos": best.photos,
        "workers": workers,
        "image_size": image_size,
        "seconds": best.seconds,
        "steps_per_s": round(best.steps_per_s, 1),
    }


def _draw_only(n_recipes: int, image_size: int) -> float:
    """Steps/s of making recipes and encoding their photos in memory (no files)."""
    start = time.perf_counter()
    steps = 0
    for i in range(n_recipes):
        recipe, _ = make_recipe(0, i, n_recipes)
        for step in recipe.steps:
            steps += 1
            if step.image is not None:
                step_photo_jpeg(step.text, np.random.default_rng([0, i, step.position]), image_size)
    return steps / (time.perf_counter() - start)


def run(quick: bool = False) -> dict:
    """Measure and return the figures (``sample_speed_ratio`` is the judged one)."""
    n = 200 if quick else 2000
    repeats = 2
    one = _measure(n, 1, 96, repeats)
    out: dict = {
        "cpu_count": os.cpu_count(),
        "one_worker_96px": one,
        "draw_only_steps_per_s": round(_draw_only(n // 2, 96), 1),
        "target_steps_per_s": TARGET_STEPS_PER_S,
        "sample_speed_ratio": round(one["steps_per_s"] / TARGET_STEPS_PER_S, 3),
    }
    if not quick:
        two = _measure(n, 2, 96, repeats)
        out["two_workers_96px"] = two
        out["two_worker_scaling"] = round(two["steps_per_s"] / one["steps_per_s"], 3)
        out["one_worker_224px"] = _measure(n // 4, 1, 224, repeats)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="Small run (200 recipes, one worker).")
    parser.add_argument("--json", action="store_true", help="print the result dict as one JSON line")
    args = parser.parse_args()
    result = run(quick=args.quick)
    if args.json:
        print(json.dumps(result))
        return
    print(json.dumps(result, indent=2))
    ratio = result["sample_speed_ratio"]
    print(f"sample_speed_ratio = {ratio} (target >= 1.0): {'PASS' if ratio >= 1.0 else 'FAIL'}")


if __name__ == "__main__":
    main()
