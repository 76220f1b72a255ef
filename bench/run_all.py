"""Run the whole benchmark suite; write ``bench/results.json`` and ``bench/results.md``.

    python bench/run_all.py [--quick] [--only text,bulk,...] [--update-readme]

Every benchmark runs as its own process with ``--json`` (its human-readable lines go to stderr). The
Elasticsearch benchmarks run first and share one node (``ES_URL``, or a dedicated local node ``bench`` started here with
``JRS_ES_HEAP``, default 3g, and stopped at the end). ``--quick`` is a smoke run on small sizes (its results
go to ``bench/results.quick.json`` / ``.md`` so the committed full results stay). ``--only`` keeps the other
benchmarks' results already in the file and replaces just those it runs. ``--update-readme`` copies the tables
into README.md between the ``bench:start`` / ``bench:end`` (and ``quality:start`` / ``quality:end``) markers.
Benchmarks are never timed assertions: a missed goal is reported, not failed.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import REPO, elasticsearch, machine, run_child  # noqa: E402
from bench.report import QUALITY_MARKERS, render_markdown, update_readme  # noqa: E402

CPU_BENCHES = ("text", "image", "train", "sample")
ES_BENCHES = ("bulk", "search", "quality")
#: run unless --only says otherwise (bench_sample.py measures the sample generator, not a stage in the table)
DEFAULT = ("text", "image", "train", "bulk", "search", "quality")


def _args(name: str, quick: bool, extra: dict[str, Any]) -> list[str]:
    q = ["--quick"] if quick else []
    if name == "text":
        return ["bench/bench_text.py", "--json", *q]
    if name == "image":
        sizes = ["--images", "128"] if quick else ["--images", "384"]
        return ["bench/bench_image.py", "--json", *q, *sizes]
    if name == "train":
        return ["bench/bench_train.py", "--json", *q]
    if name == "sample":
        return ["bench/bench_sample.py", "--json", *q]
    if name == "bulk":
        return ["bench/bench_bulk.py", "--json", "--keep", *q]
    if name == "quality":
        configs = ["--configs", extra["quality_configs"]] if extra.get("quality_configs") else []
        return ["bench/bench_quality.py", "--json", *q, *configs]
    if name == "search":
        kept = extra.get("kept", {})
        sizes = extra.get("sizes", {})
        given = [f"{kept[k]}:{sizes[k]}" for k in ("small", "large") if k in kept and k in sizes]
        return ["bench/bench_search.py", "--json", *q, *(a for g in given for a in ("--index", g))]
    raise ValueError(name)


def _node_facts(url: str) -> dict[str, Any]:
    from bench.common import client

    es = client(url)
    node = next(iter(es.nodes.info(metric="jvm")["nodes"].values()))
    jvm = node["jvm"]
    return {
        "es_version": node["version"],
        "jvm": f"{jvm.get('vm_vendor', '')} {jvm.get('version', '')}".strip(),
        "heap_gb": round(jvm["mem"]["heap_max_in_bytes"] / 1024**3, 1),
    }


def _cleanup(url: str, kept: dict[str, str]) -> None:
    from bench.common import client

    es = client(url)
    for name in kept.values():
        es.options(ignore_status=404).indices.delete(index=name)


def save(results: dict[str, Any], path: Path) -> None:
    path.write_text(json.dumps(results, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


def run(
    names: list[str],
    quick: bool,
    out_json: Path,
    keep: dict[str, Any] | None = None,
    quality_configs: str = "",
) -> dict[str, Any]:
    """Run ``names``; the results so far are saved to ``out_json`` after every benchmark. ``keep`` (an
    earlier results file) supplies the benchmarks not run now; ``quality_configs`` is ``bench_quality.py
    --configs`` (the first configuration is the judged one)."""
    started = time.perf_counter()
    results: dict[str, Any] = {"machine_start": machine(), "quick": quick, "benchmarks": {}, "seconds": {}}
    if keep and keep.get("quick") == quick:
        results["benchmarks"] = {k: v for k, v in keep.get("benchmarks", {}).items() if k not in names}
        results["seconds"] = {k: v for k, v in keep.get("seconds", {}).items() if k not in names}
        if "elasticsearch" in keep:
            results["elasticsearch"] = keep["elasticsearch"]

    def one(name: str, extra: dict[str, Any] | None = None) -> None:
        print(f"== {name}", file=sys.stderr, flush=True)
        t0 = time.perf_counter()
        try:
            res = run_child(_args(name, quick, extra or {}))
            results["benchmarks"][name] = res.data
        except RuntimeError as e:
            print(f"!! {name} failed: {e}", file=sys.stderr)
            results["benchmarks"][name] = {"error": str(e)[-2000:]}
        results["seconds"][name] = round(time.perf_counter() - t0, 1)
        print(f"== {name}: {results['seconds'][name]:.0f} s", file=sys.stderr, flush=True)
        results.update(headline(results["benchmarks"]))
        save(results, out_json)

    if any(n in names for n in ES_BENCHES):
        previous_url = os.environ.get("ES_URL")
        with elasticsearch() as target:
            os.environ["ES_URL"] = target.url  # the children use this node
            bulk: dict[str, Any] = {}
            try:
                results["elasticsearch"] = _node_facts(target.url)
                if "bulk" in names:
                    one("bulk")
                    bulk = results["benchmarks"]["bulk"]
                if "search" in names:
                    one("search", bulk)
                if "quality" in names:
                    one("quality", {"quality_configs": quality_configs})
            finally:
                _cleanup(target.url, bulk.get("kept", {}))
                if previous_url is None:
                    os.environ.pop("ES_URL", None)
    for name in (n for n in CPU_BENCHES if n in names):  # after the node is stopped: all cores to them
        one(name)
    results["machine_end"] = machine()
    results["total_s"] = round(time.perf_counter() - started, 1)
    now = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    if keep:  # the header describes the run of the benchmarks kept; each new one records its own machine
        results["total_s"] = round(sum(results["seconds"].values()), 1)
        for key in ("machine_start", "machine_end", "elasticsearch", "measured"):
            if key in keep:
                results[key] = keep[key]
        rerun = {k: v for k, v in keep.get("rerun", {}).items() if k not in names}
        results["rerun"] = rerun | dict.fromkeys(names, now)
    else:
        results["measured"] = now
    results.update(headline(results["benchmarks"]))
    return results


#: the judged keys, where they come from and their goals (None: reported)
KEYS: list[tuple[str, str, str, str | None]] = [
    ("tokenize_ratio", "text", "toolkit tokenise+filter chars/s / raw fugashi", ">= 0.85"),
    ("step_vectors_per_s", "text", "step vectors averaged per second, 100k steps", ">= 1000000"),
    ("image_speedup_lite0", "image", "EfficientNet-Lite0 files -> features, default backend / torch", ">= 4"),
    (
        "image_speedup_lite0_ms4_gem",
        "image",
        "the build's default encoder (Lite0 ms4-sgem) files -> features, default backend / torch",
        ">= 4",
    ),
    ("image_speedup_resnet50", "image", "ResNet-50 files -> features, default backend / torch", ">= 2"),
    (
        "image_pipeline_ratio",
        "image",
        "files -> features on disk / forward-only, same model+batch",
        ">= 0.90",
    ),
    ("bulk_vs_raw_ratio", "bulk", "toolkit bulk docs/s / raw _bulk of the same NDJSON, 100k", ">= 0.90"),
    ("bulk_vs_naive_ratio", "bulk", "toolkit bulk / one index() per document", ">= 20"),
    (
        "hnsw_recall_at_10",
        "search",
        "kNN top-10 via the index vs exact, 100k, default m / ef_construction, num_candidates 100",
        ">= 0.97",
    ),
    ("knn_p50_ms", "search", "kNN search, 100k docs, warm (text -> hits)", "<= 20"),
    ("knn_p95_ms", "search", "kNN search p95", None),
    ("hybrid_p50_ms", "search", "hybrid (BM25 + kNN) search p50", None),
    ("search_overhead_p50_ms", "search", "API search time minus ES took, warm", "<= 10"),
    ("bulk_peak_rss_mb_100k", "bulk", "peak RSS of a 100k-document bulk load", "<= 600"),
    ("bulk_peak_rss_mb_1m", "bulk", "peak RSS of a 1M-document bulk load", "<= 600"),
    ("train_epoch_s", "train", "mapping training seconds per epoch and text tower, 100k pairs", None),
    ("vocab_ratio", "train", "that epoch (10k pairs) at a 100k-word / a 1k-word vocabulary", "<= 1.5"),
    (
        "sparse_speedup",
        "train",
        "at 100k words: dense AdamW on the word table / lazy updates (default)",
        None,
    ),
    (
        "quality_points_over_linear_min",
        "quality",
        "text->photo R@10 of the model minus the best linear baseline (CCA/ridge), worst dataset, points",
        ">= 5",
    ),
    (
        "quality_r10_shifted_mean",
        "quality",
        "model R@10 through Elasticsearch, mean over the shifted sets",
        None,
    ),
    (
        "quality_p10_main_shifted_mean",
        "quality",
        "model P@10 same main ingredient, mean over the shifted sets",
        None,
    ),
]


def headline(benchmarks: dict[str, Any]) -> dict[str, Any]:
    """The judged keys at the top level of results.json (None where a benchmark did not run)."""
    return {key: benchmarks.get(source, {}).get(key) for key, source, _, _ in KEYS}


def quality_section(results: dict[str, Any]) -> str:
    """The quality benchmark's table (empty when it did not run)."""
    quality = results["benchmarks"].get("quality")
    if not isinstance(quality, dict) or "results" not in quality:
        return ""
    from bench.bench_quality import render_markdown as quality_markdown

    return quality_markdown(quality)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes: a smoke run of every benchmark")
    parser.add_argument("--only", default="", help=f"comma-separated subset of {CPU_BENCHES + ES_BENCHES}")
    parser.add_argument("--update-readme", action="store_true", help="copy the table into README.md")
    parser.add_argument(
        "--quality-configs",
        default="",
        help="bench_quality.py --configs: JSON {label: BuildOptions overrides}, the first one judged",
    )
    args = parser.parse_args()
    names = [n for n in (args.only.split(",") if args.only else DEFAULT) if n]
    unknown = set(names) - set(CPU_BENCHES + ES_BENCHES)
    if unknown:
        parser.error(f"unknown benchmark(s): {', '.join(sorted(unknown))}")
    stem = "results.quick" if args.quick else "results"
    out_json, out_md = REPO / "bench" / f"{stem}.json", REPO / "bench" / f"{stem}.md"
    keep = json.loads(out_json.read_text(encoding="utf-8")) if args.only and out_json.is_file() else None
    results = run(names, args.quick, out_json, keep, args.quality_configs)
    save(results, out_json)
    table = render_markdown(results, KEYS)
    quality = quality_section(results)
    extra = f"\nRetrieval quality (`bench_quality.py`):\n\n{quality}" if quality else ""
    out_md.write_text(table + extra, encoding="utf-8")
    print(table)
    if quality:
        print(quality)
    print(f"wrote {out_json.relative_to(REPO)} and {out_md.relative_to(REPO)} in {results['total_s']:.0f} s")
    if args.update_readme:
        update_readme(REPO / "README.md", table)
        if quality:
            update_readme(REPO / "README.md", quality, QUALITY_MARKERS)
        print("updated README.md")


if __name__ == "__main__":
    main()
