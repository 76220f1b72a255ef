"""``jrs index`` at scale for ``bench_scale.py``: the load in a child process, the node's memory, and recall
of the learned vectors against exact search for each index type.

The load is :func:`toolkit.index.indexer.index_dataset` (what ``jrs index`` runs) into a concrete index;
a type the node refuses (``bbq_hnsw`` before Elasticsearch 8.15) is reported, not measured. Exact
search is numpy brute force over the vectors the load indexed (recomputed from the model the way
:class:`~toolkit.index.documents.DocumentBuilder` makes them, and checked against the index's ``_source``).
Queries are held-out (test split) step texts through :class:`~toolkit.search.engine.Searcher`.

Alone, on a build ``bench_scale.py`` left in ``--work`` (no new build)::

    python bench/scale_index.py --steps 100000 --index-type hnsw --num-candidates 100,200,400 [--reuse]
    python bench/scale_index.py --steps 1000000 --distinct-steps 100000 --index-type hnsw

loads that build into the ``bench-scale`` node (or ``ES_URL``; ``--reuse``: an index of that name already
holding every step is queried as it is) and prints recall and latency at each num_candidates.
"""

from __future__ import annotations

import argparse
import logging
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402

from bench.common import client, elasticsearch, emit, machine, run_child  # noqa: E402

log = logging.getLogger(__name__)

#: the approximate types of ``--index-type`` measured by default
INDEX_TYPES = ("hnsw", "int8_hnsw", "bbq_hnsw")
RECALL_GOAL = 0.97  # bench_search's goal for hnsw_recall_at_10
P50_GOAL_MS = 20.0  # bench_search's goal for knn_p50_ms

INDEX_CHILD = r"""
import json, sys, time
from pathlib import Path
import torch
torch.set_num_threads(int(sys.argv[6]))
from toolkit.es.client import make_client
from toolkit.es.config import EsSettings
from toolkit.index.indexer import IndexOptions, index_dataset
from toolkit.index.template import VectorIndexOptions
es = make_client(EsSettings(url=sys.argv[1], request_timeout=300))
# the model's plain vectors (no feature statistics, centre or hubness layout), as the truth check computes them
opts = IndexOptions(index=sys.argv[4], vector_options=VectorIndexOptions(type=sys.argv[5]), restart=True,
                    checkpoint_dir=Path(sys.argv[7]), device="cpu", adapt_features=False, center_photos=False,
                    hubness_correction=False)
t = time.perf_counter()
result = index_dataset(es, sys.argv[2], sys.argv[3], opts)
from toolkit.memory import peak_rss_mb
print(json.dumps({"wall_s": time.perf_counter() - t, "result": result, "peak_rss_mb": peak_rss_mb()}))
"""


def node_memory_mb(pid: int | None) -> dict[str, float | None]:
    """``VmRSS`` and ``VmHWM`` (peak since the node started) of the node's JVM, in MB."""
    out: dict[str, float | None] = {"VmRSS": None, "VmHWM": None}
    if pid is None:
        return out
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            key = line.split(":", 1)[0]
            if key in out:
                out[key] = round(int(line.split()[1]) / 1024)
    except OSError:
        pass
    return out


def _refused(es: Any, name: str, model_dir: Path, index_type: str) -> str | None:
    """The node's reason for refusing ``index_type`` for ``model_dir``'s vectors (the toolkit's template put
    for ``name``, as the load will put it), else ``None``."""
    from toolkit.errors import ConfigError
    from toolkit.index.lifecycle import put_template
    from toolkit.index.template import IndexModelInfo, VectorIndexOptions
    from toolkit.model import SearchModel

    model = SearchModel.load(model_dir, "cpu")
    info = IndexModelInfo(fingerprint=model.fingerprint, dims=model.dims, backbone=model.encoder_name)
    try:
        put_template(es, name, info, VectorIndexOptions(type=index_type))
    except ConfigError as e:
        return str(e)
    return None


def drop(es: Any, name: str) -> None:
    """Delete a benchmark index and the template the toolkit put for it."""
    from toolkit.index.lifecycle import template_name

    es.options(ignore_status=404).indices.delete(index=name)
    es.options(ignore_status=404).indices.delete_index_template(name=template_name(name))


def load(
    es: Any, url: str, pid: int | None, root: Path, model_dir: Path, name: str, index_type: str, threads: int
) -> dict[str, Any]:
    """Index ``root`` with ``model_dir`` into a fresh index ``name`` of ``index_type`` in a child process."""
    drop(es, name)
    reason = _refused(es, name, model_dir, index_type)
    if reason is not None:  # an older node without the type: reported, not measured
        log.warning("%s: %s", name, reason)
        return {"index_type": index_type, "unsupported": reason[:300]}
    before = node_memory_mb(pid)
    ckpt = model_dir / "bench-loads"
    run = run_child(
        ["-c", INDEX_CHILD, url, str(root), str(model_dir), name, index_type, str(threads), str(ckpt)]
    )
    r = run.data["result"]
    after = node_memory_mb(pid)
    segments = len(es.cat.segments(index=name, format="json").body)
    return {
        "index_type": index_type,
        "index": name,
        "indexed": r["indexed"],
        "rejected": r["rejected"],
        "photos_encoded_now": r["photos_encoded_now"],
        "index_s": round(run.data["wall_s"], 1),
        "docs_per_s": round(r["indexed"] / run.data["wall_s"], 1),
        # the child's own VmHWM: wait4's ru_maxrss starts from the parent's RSS at fork
        "loader_peak_rss_mb": round(run.data["peak_rss_mb"]),
        "loader_cpu_s": round(run.cpu_s, 1),
        "node_rss_mb_before": before["VmRSS"],
        "node_rss_mb_after": after["VmRSS"],
        "node_hwm_mb": after["VmHWM"],
        "segments": segments,
    }


@dataclass
class Truth:
    """The vectors a load indexed, by field: step ids and unit rows (exact search runs over these)."""

    ids: dict[str, list[str]]
    vectors: dict[str, np.ndarray]
    queries: list[str]  # held-out step texts


def _unit(x: np.ndarray) -> np.ndarray:
    n = np.linalg.norm(x, axis=1, keepdims=True)
    return (x / np.maximum(n, 1e-12)).astype(np.float32)


def indexed_vectors(root: Path, model_dir: Path, n_queries: int, seed: int = 0, block: int = 4096) -> Truth:
    """Every ``image_vector`` and ``text_vector`` the loader writes (same model calls as DocumentBuilder)
    and ``n_queries`` held-out (test split) step texts with a photo, drawn with ``seed``."""
    from toolkit.index.documents import build_features
    from toolkit.model import SearchModel
    from toolkit.stages.read import read_steps

    model = SearchModel.load(model_dir, "cpu")
    steps = read_steps(root, None)
    features, _ = build_features(model, root)
    if features is None:
        raise RuntimeError(f"{model_dir} has no image features for {root}")
    row_of = features.index()
    with_photo = [s for s in steps if s.image is not None and s.step_id in row_of]
    image_parts = []
    for a in range(0, len(with_photo), block):
        rows = np.asarray([row_of[s.step_id] for s in with_photo[a : a + block]])
        image_parts.append(model.embed_image_features(np.asarray(features.vectors[rows])))
    text_ids: list[str] = []
    text_parts = []
    for a in range(0, len(steps), block):
        chunk = steps[a : a + block]
        vecs, ok = model.embed_texts([s.text for s in chunk])
        text_parts.append(vecs[ok])
        text_ids += [s.step_id for s, good in zip(chunk, ok, strict=True) if good]
    held = [s.text for s in with_photo if s.split == "test"]
    pick = np.random.default_rng(seed).choice(len(held), size=min(n_queries, len(held)), replace=False)
    return Truth(
        ids={"image_vector": [s.step_id for s in with_photo], "text_vector": text_ids},
        vectors={
            "image_vector": _unit(np.concatenate(image_parts)),
            "text_vector": _unit(np.concatenate(text_parts)),
        },
        queries=[held[i] for i in sorted(pick)],
    )


def check_truth(es: Any, index: str, truth: Truth, n: int = 20) -> dict[str, Any]:
    """The recomputed vectors against the index: per-field document counts and the minimum cosine of ``n``
    documents' indexed vectors (``_source``) to the recomputed ones."""
    out: dict[str, Any] = {}
    for field, ids in truth.ids.items():
        out[f"{field}_docs"] = int(es.count(index=index, query={"exists": {"field": field}})["count"])
        out[f"{field}_expected"] = len(ids)
        picks = np.linspace(0, len(ids) - 1, n).astype(int)
        resp = es.mget(index=index, ids=[ids[i] for i in picks], source=[field])
        got = _unit(np.asarray([d["_source"][field] for d in resp["docs"]], dtype=np.float32))
        out[f"{field}_min_cos"] = round(float(np.min(np.sum(got * truth.vectors[field][picks], axis=1))), 6)
    return out


def pct(values: list[float], p: float) -> float:
    return round(float(np.percentile(np.asarray(values), p)), 2)


def recall(
    es: Any,
    model_dir: Path,
    index: str,
    truth: Truth,
    candidates: tuple[int, ...],
    warmup: int = 20,
) -> dict[str, Any]:
    """Recall@10 against exact top-10 and latency of ``Searcher.knn`` (k=10) per field and num_candidates.

    A hit counts when its exact cosine reaches the exact 10th best (ties count: sample step texts repeat,
    so many documents share one ``text_vector``). Latency: the ``Searcher.knn`` round trip (query vector
    precomputed) and Elasticsearch's ``took``, after ``warmup`` queries; each query runs at every
    num_candidates in turn (rotated), so the values share the machine's load. ``cos_gap``: how much lower the
    mean exact cosine of the 10 hits is than that of the exact top-10 (0 when recall is 1)."""
    from toolkit.model import SearchModel
    from toolkit.search.engine import Searcher
    from toolkit.search.queries import Filters, KnnParams

    searcher = Searcher(es, SearchModel.load(model_dir, "cpu"), index)
    queries = np.stack([searcher.text_vector(t) for t in truth.queries])
    queries = _unit(queries)
    out: dict[str, Any] = {"queries": len(queries)}
    for field in ("image_vector", "text_vector"):
        vectors, ids = truth.vectors[field], truth.ids[field]
        row = {sid: i for i, sid in enumerate(ids)}
        sims = queries @ vectors.T
        top = -np.partition(-sims, 9, axis=1)[:, :10]
        kth, best = top.min(axis=1), top.sum(axis=1)
        out[f"exact_cos_top1_{field}"] = round(float(np.mean(top.max(axis=1))), 4)
        out[f"exact_cos_top10_{field}"] = round(float(np.mean(kth)), 4)
        params = {nc: KnnParams(k=10, num_candidates=nc, field=field) for nc in candidates}
        for q in queries[:warmup]:
            for p in params.values():
                searcher.knn(q, p, Filters())
        # every query at every num_candidates in turn: a change of the machine's load falls on all of them
        found = dict.fromkeys(candidates, 0)
        total: dict[int, list[float]] = {nc: [] for nc in candidates}
        took: dict[int, list[float]] = {nc: [] for nc in candidates}
        gap: dict[int, list[float]] = {nc: [] for nc in candidates}
        order = list(candidates)
        for qi, q in enumerate(queries):
            for nc in order[qi % len(order) :] + order[: qi % len(order)]:  # rotated: no value always first
                p = params[nc]
                res = searcher.knn(q, p, Filters())
                total[nc].append(res.total_ms)
                took[nc].append(res.took_ms)
                got = np.asarray([sims[qi, row[h.step_id]] for h in res.hits])
                found[nc] += int(np.sum(got >= kth[qi] - 1e-5))
                gap[nc].append(float(best[qi] - got.sum()) / 10)
        for nc in candidates:
            key = f"{field}_nc{nc}"
            out[f"recall_{key}"] = round(found[nc] / (10 * len(queries)), 4)
            out[f"cos_gap_{key}"] = round(float(np.mean(gap[nc])), 5)
            out[f"p50_ms_{key}"] = pct(total[nc], 50)
            out[f"p95_ms_{key}"] = pct(total[nc], 95)
            out[f"took_p50_ms_{key}"] = pct(took[nc], 50)
    return out


def table(rows: list[dict[str, Any]], candidates: tuple[int, ...]) -> list[str]:
    """Markdown rows: index type, field, num_candidates, recall@10, p50/p95 ms, took p50, index s, docs/s."""
    lines = [
        "| index type | field (queries) | num_candidates | recall@10 | cos gap | p50 ms | p95 ms | took p50 ms "
        "| index s | docs/s |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        if "unsupported" in r:
            lines.append(f"| {r['index_type']} | not offered by this node | | | | | | | | |")
            continue
        for field, label in (("image_vector", "image_vector (text)"), ("text_vector", "text_vector (text)")):
            for nc in candidates:
                key = f"{field}_nc{nc}"
                lines.append(
                    f"| {r['index_type']} | {label} | {nc} | {r[f'recall_{key}']:.3f} | {r[f'cos_gap_{key}']:.4f} | "
                    f"{r[f'p50_ms_{key}']:.1f} | "
                    f"{r[f'p95_ms_{key}']:.1f} | {r[f'took_p50_ms_{key}']:.1f} | {r['index_s']:.0f} | "
                    f"{r['docs_per_s']:.0f} |"
                )
    return lines


def _loaded(es: Any, name: str, root: Path) -> int | None:
    """The document count of index ``name`` when it holds every step of ``root``, else ``None``."""
    from toolkit.stages.read import read_steps

    if not es.indices.exists(index=name):
        return None
    count = int(es.count(index=name)["count"])
    return count if count == len(read_steps(root, None)) else None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=100000, help="the size bench_scale.py built")
    parser.add_argument("--work", type=Path, default=Path("/tmp/jrs-bench-scale"))
    parser.add_argument("--photo-size", type=int, default=32)
    parser.add_argument(
        "--distinct-steps",
        type=int,
        default=0,
        help="the build's --distinct-steps (its data directory's name)",
    )
    parser.add_argument("--index-type", default="hnsw")
    parser.add_argument("--num-candidates", default="100,200,400", help="comma-separated (k=10)")
    parser.add_argument("--queries", type=int, default=300, help="held-out query texts")
    parser.add_argument("--threads", type=int, default=1, help="torch threads in the loader")
    parser.add_argument("--reuse", action="store_true", help="query a complete index of that name as it is")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    from bench.bench_scale import data_root

    root = data_root(args.work, args.steps, args.photo_size, args.distinct_steps)
    model = args.work / f"model-{args.steps}"
    candidates = tuple(int(c) for c in args.num_candidates.split(","))
    name = f"bench-scale-{args.steps}-{args.index_type}"
    result: dict[str, Any] = {"machine": machine(), "index": name, "candidates": list(candidates)}
    with elasticsearch("bench-scale") as target:
        es = client(target.url)
        count = _loaded(es, name, root) if args.reuse else None
        if count is None:
            row = load(es, target.url, target.pid, root, model, name, args.index_type, args.threads)
        else:
            row = {"index_type": args.index_type, "index": name, "indexed": count, "reused": True}
        if "unsupported" not in row:
            truth = indexed_vectors(root, model, args.queries)
            result["truth_check"] = check_truth(es, name, truth)
            row.update(recall(es, model, name, truth, candidates))
        result["row"] = row
    result["machine_end"] = machine()
    lines = [f"{name}: {row.get('indexed')} docs, {result.get('truth_check')}"]
    if "unsupported" in row:
        lines.append(f"{args.index_type}: {row['unsupported']}")
    else:
        lines += [
            f"{f} nc={nc}: recall@10 {row[f'recall_{f}_nc{nc}']:.3f}, p50 {row[f'p50_ms_{f}_nc{nc}']:.1f} ms, "
            f"p95 {row[f'p95_ms_{f}_nc{nc}']:.1f} ms, took p50 {row[f'took_p50_ms_{f}_nc{nc}']:.1f} ms"
            for f in ("image_vector", "text_vector")
            for nc in candidates
        ]
    emit(result, args.json, lines)


if __name__ == "__main__":
    main()
