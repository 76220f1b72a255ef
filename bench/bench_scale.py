"""``jrs build`` at scale: per-stage seconds and peak RSS, and how both grow with the collection.

For each size (steps) the sample generator writes a dataset (photos at ``--photo-size`` px; generated
once and reused from ``--work``), then ``toolkit.pipeline.build`` runs in a child process with the
cheap ``pixels`` encoder (the subject is the pipeline, not the CNN). A logging handler in the child
reads the peak resident set size (``VmHWM``) at every log line and resets it (``clear_refs``), so each
stage's peak is its own. Judged: ``scale_rss_ratio`` = peak RSS of the largest size / the smallest
(target <= 1.3), ``scale_time_ratio`` = seconds per step of the largest / the smallest (<= 1.3), and
``scale_peak_rss_mb`` of the largest (target <= 3000 MB at 1M steps).

Then (unless ``--no-index``) each size is indexed the way ``jrs index`` does it (``index_dataset`` in a
child process, into the local node ``bench-scale`` or ``ES_URL``; see ``bench/scale_index.py``): index
seconds, docs/s, the loader's peak RSS and the node's ``VmRSS``/``VmHWM``; judged ``index_time_ratio``
(seconds per document, largest / smallest, <= 1.3) and ``index_loader_rss_ratio`` (<= 1.3). On the largest
size, every type of ``--index-types`` (default hnsw, int8_hnsw, bbq_hnsw where the node has it) is loaded
and queried with ``--queries`` held-out step texts through ``Searcher.knn`` (k=10) on ``image_vector`` and
``text_vector``: recall@10 against exact brute force over the indexed vectors (goal >= 0.97, as
``bench_search``'s random-vector figure, which stays the worst case) and p50/p95 latency (p50 goal <= 20 ms)
at each ``--candidates`` (default 100, 200 (the toolkit's default) and 400; the goals are judged at the
toolkit's default). Nothing here asserts.

Usage: ``python bench/bench_scale.py --sizes 20000,100000 [--work DIR] [--json]``; 1M steps:
``--sizes 100000,1000000`` (about 5 GB of photos at 32 px and an hour of generation on 2 cores), or with
``--distinct-steps 100000`` the 1M-step set repeats the 100k one's recipes under new ids (photos shared):
every stage still reads, tokenises, embeds and trains on 1M steps.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench import scale_index  # noqa: E402
from bench.common import client, elasticsearch, emit, machine, run_child  # noqa: E402
from toolkit.search.queries import DEFAULT_NUM_CANDIDATES  # noqa: E402

NODE = "bench-scale"  # a node of its own: other benchmarks start and stop ``bench``
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
def split_mb():
    got = {}
    for line in open("/proc/self/status"):
        key = line.split(":", 1)[0]
        if key in ("RssAnon", "RssFile"):
            got[key] = int(line.split()[1]) / 1024
    return got.get("RssAnon", 0.0), got.get("RssFile", 0.0)
class Meter(logging.Handler):
    def emit(self, record):
        marks.append((time.perf_counter(), record.getMessage()[:200], peak_rss_mb(), *split_mb()))
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
marks.append((time.perf_counter(), "done", peak_rss_mb(), *split_mb()))
print(json.dumps({"t0": t0, "marks": marks, "timings": result["timings_s"],
                  "pairs": result["evaluation"]["pairs"]}))
"""


def _repeats(steps: int, distinct: int) -> bool:
    """Whether the ``steps`` set is made by repeating the ``distinct``-step one (see :func:`_dataset`)."""
    return 0 < distinct < steps


def data_root(work: Path, steps: int, photo_size: int, distinct: int = 0) -> Path:
    """Where the dataset of ``steps`` lives (``-dN``: built from an ``N``-step one, see :func:`_dataset`)."""
    return work / (f"data-{steps}-{photo_size}px" + (f"-d{distinct}" if _repeats(steps, distinct) else ""))


def _dataset(work: Path, steps: int, photo_size: int, distinct: int = 0) -> tuple[Path, float | None]:
    """Generate (or reuse) a dataset of about ``steps`` steps. With ``distinct`` below ``steps``, the
    ``distinct``-step dataset is generated and its recipes are repeated under new ids, their photos shared
    (hard links: no link leaves the root), so 1M steps need 100k photos, not an hour of drawing."""
    root = data_root(work, steps, photo_size, distinct)
    if (root / "recipes.jsonl").is_file():
        return root, None
    t = time.perf_counter()
    if _repeats(steps, distinct):
        base, _ = _dataset(work, distinct, photo_size)
        lines = (base / "recipes.jsonl").read_text(encoding="utf-8").splitlines()
        copies = max(1, round(steps / distinct))
        tmp = root.with_name(root.name + ".tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        subprocess.run(["cp", "-al", str(base / "images"), str(tmp / "images")], check=True)
        with open(tmp / "recipes.jsonl", "w", encoding="utf-8") as out:
            for k in range(copies):
                for line in lines:
                    rec = json.loads(line)
                    rec["recipe_id"] = f"{rec['recipe_id']}c{k}"
                    out.write(json.dumps(rec, ensure_ascii=False) + "\n")
        tmp.rename(root)
        return root, time.perf_counter() - t
    from toolkit.data.sample import generate_sample

    generate_sample(root, max(1, round(steps / STEPS_PER_RECIPE)), seed=0, image_size=photo_size)
    return root, time.perf_counter() - t


def _stage_peaks(marks: list[list]) -> dict[str, float]:
    peaks: dict[str, float] = {}
    names = iter(STAGE_ENDS)
    current = next(names)
    for _, message, hwm, *_ in marks:
        stage = current[0] if current else "evaluate"
        peaks[stage] = max(peaks.get(stage, 0.0), hwm)
        if current and message.startswith(current[1]):
            current = next(names, None)
    return {k: round(v) for k, v in peaks.items()}


def _stage_ends(marks: list[list]) -> dict[str, list[int]]:
    """RSS at each stage's last log line, split into anonymous memory and mapped file pages (MB)."""
    ends: dict[str, list[int]] = {}
    names = iter(STAGE_ENDS)
    current = next(names)
    for _, message, _, anon, file in marks:
        stage = current[0] if current else "evaluate"
        ends[stage] = [round(anon), round(file)]
        if current and message.startswith(current[1]):
            current = next(names, None)
    return ends


def measure(
    work: Path, steps: int, photo_size: int, pixels: int, threads: int, epochs: int, distinct: int = 0
) -> dict:
    root, gen_s = _dataset(work, steps, photo_size, distinct)
    out = work / f"model-{steps}"
    shutil.rmtree(out, ignore_errors=True)  # a finished image stage would otherwise be reused, not measured
    # the child's own kernel peak (ru_maxrss) is not used: the meter resets the peak at every stage
    run = run_child(["-c", CHILD, str(root), str(out), str(pixels), str(threads), str(epochs)])
    child, wall = run.data, run.wall_s
    n = sum(child["pairs"].values())
    read = next(m[1] for m in child["marks"] if m[1].startswith("read "))
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
        "stage_end_anon_file_mb": _stage_ends(child["marks"]),
    }


def index_runs(args: argparse.Namespace, runs: list[dict]) -> dict:
    """Index every size (hnsw), then every ``--index-types`` type on the largest with recall and latency."""
    types = [t for t in args.index_types.split(",") if t]
    candidates = tuple(int(c) for c in args.candidates.split(","))
    out: dict = {"index_types": []}
    from toolkit.es import node

    with elasticsearch(NODE) as target:
        es = client(target.url)
        state = node.read_state(NODE)
        version = state.version if state is not None and state.pid == target.pid else None
        out["node"] = {"version": version, "heap": os.environ.get("JRS_ES_HEAP"), "url": target.url}
        for r in runs:
            steps = r["steps_requested"]
            root = data_root(args.work, steps, args.photo_size, args.distinct_steps)
            model = args.work / f"model-{steps}"
            name = f"bench-scale-{steps}-hnsw"
            r["index"] = scale_index.load(es, target.url, target.pid, root, model, name, "hnsw", args.threads)
            print(f"{steps:,} steps indexed: {r['index']}", file=sys.stderr)
            if r is not runs[-1]:
                scale_index.drop(es, name)
        big = runs[-1]
        steps = big["steps_requested"]
        root = data_root(args.work, steps, args.photo_size, args.distinct_steps)
        model = args.work / f"model-{steps}"
        truth = scale_index.indexed_vectors(root, model, args.queries)
        out["truth_check"] = scale_index.check_truth(es, big["index"]["index"], truth)
        print(f"indexed vectors vs recomputed: {out['truth_check']}", file=sys.stderr)
        for t in types:
            name = f"bench-scale-{steps}-{t}"
            row = big["index"] if t == "hnsw" else None
            if row is None:
                row = scale_index.load(es, target.url, target.pid, root, model, name, t, args.threads)
            if "unsupported" not in row:
                row.update(scale_index.recall(es, model, name, truth, candidates))
                if not args.keep:
                    scale_index.drop(es, name)
            out["index_types"].append(row)
            print(f"{t}: {row}", file=sys.stderr)
    out["candidates"] = list(candidates)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="20000,100000", help="comma-separated step counts (ascending)")
    parser.add_argument("--work", type=Path, default=Path("/tmp/jrs-bench-scale"))
    parser.add_argument("--photo-size", type=int, default=32, help="generated photo side (px)")
    parser.add_argument("--pixels", type=int, default=16, help="pixels encoder grid side (3*side^2 dims)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads in the build and the loader")
    parser.add_argument("--epochs", type=int, default=5, help="mapping epochs")
    parser.add_argument("--quick", action="store_true", help="sizes 3000,15000")
    parser.add_argument("--no-index", action="store_true", help="build only (no index, no recall)")
    parser.add_argument("--index-types", default=",".join(scale_index.INDEX_TYPES))
    parser.add_argument("--candidates", default="100,200,400", help="num_candidates values (k=10)")
    parser.add_argument("--queries", type=int, default=300, help="held-out query texts for recall")
    parser.add_argument("--keep", action="store_true", help="keep the largest size's indices")
    parser.add_argument(
        "--distinct-steps",
        type=int,
        default=0,
        help="sizes above this repeat a dataset of this many steps under new recipe ids, photos shared "
        "(0: every size drawn in full)",
    )
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    sizes = [3000, 15000] if args.quick else [int(s) for s in args.sizes.split(",")]
    args.work.mkdir(parents=True, exist_ok=True)
    runs = [
        measure(args.work, s, args.photo_size, args.pixels, args.threads, args.epochs, args.distinct_steps)
        for s in sizes
    ]
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
        f"peak RSS {r['peak_rss_mb']} MB; per stage {r['stage_peak_rss_mb']}; anon/file MB at each stage's "
        f"end {r['stage_end_anon_file_mb']}"
        for r in runs
    ]
    lines.append(
        f"peak RSS ratio {result['scale_rss_ratio']} (target <= 1.3), time/step ratio "
        f"{result['scale_time_ratio']} (target <= 1.3), largest peak {big['peak_rss_mb']} MB (target <= 3000)"
    )
    if not args.no_index:
        result.update(index_runs(args, runs))
        si, bi = small["index"], big["index"]
        result["index_time_ratio"] = round(
            (bi["index_s"] / bi["indexed"]) / (si["index_s"] / si["indexed"]), 3
        )
        result["index_loader_rss_ratio"] = round(bi["loader_peak_rss_mb"] / si["loader_peak_rss_mb"], 3)
        result["machine_end"] = machine()
        for r in runs:
            i = r["index"]
            lines.append(
                f"{i['indexed']:>9,} docs indexed (hnsw): {i['index_s']:.1f}s, {i['docs_per_s']:.0f} docs/s, "
                f"loader peak RSS {i['loader_peak_rss_mb']} MB, node RSS {i['node_rss_mb_before']} -> "
                f"{i['node_rss_mb_after']} MB (VmHWM {i['node_hwm_mb']} MB), {i['segments']} segments"
            )
        lines.append(
            f"index s/doc ratio {result['index_time_ratio']} (target <= 1.3), loader peak RSS ratio "
            f"{result['index_loader_rss_ratio']} (target <= 1.3)"
        )
        lines.append(f"indexed vectors vs exact-search vectors: {result['truth_check']}")
        lines += scale_index.table(result["index_types"], tuple(result["candidates"]))
        for r in result["index_types"]:
            if "unsupported" in r:
                continue
            nc = (
                DEFAULT_NUM_CANDIDATES
                if DEFAULT_NUM_CANDIDATES in result["candidates"]
                else result["candidates"][0]
            )
            for f in ("image_vector", "text_vector"):
                rec = r[f"recall_{f}_nc{nc}"] / scale_index.RECALL_GOAL
                lat = r[f"p50_ms_{f}_nc{nc}"] / scale_index.P50_GOAL_MS
                lines.append(
                    f"{r['index_type']} {f} nc={nc}: recall@10 / {scale_index.RECALL_GOAL} = {rec:.3f} "
                    f"(met when >= 1), p50 / {scale_index.P50_GOAL_MS:.0f} ms = {lat:.2f} (met when <= 1)"
                )
    emit(result, args.json, lines)


if __name__ == "__main__":
    main()
