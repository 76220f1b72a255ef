"""Search: HNSW recall against exact kNN, latency of kNN and hybrid queries, and the toolkit's own overhead.

    python bench/bench_search.py [--quick] [--json] [--index NAME:N ...]

Judged by ``hnsw_recall_at_10`` (kNN top-10 through the index with default m and ef_construction, k=10 and
num_candidates=100, the recorded figure's setting, against the exact top-10 by brute force over the same vectors; goal >= 0.97),
``knn_p50_ms`` (goal <= 20) / ``knn_p95_ms`` / ``hybrid_p50_ms`` (one warm ``Searcher`` call: query text ->
tokens -> Word2Vec -> text tower -> request -> hits) and ``search_overhead_p50_ms`` (that call's time minus
Elasticsearch's ``took``; goal <= 10).

The indices hold the synthetic documents of ``bench/bulkdata.py`` (random unit 256-d vectors, every one
with a photo) loaded by the toolkit's bulk loader in the real template; ``bench_bulk.py --keep`` leaves
its 10k and 100k indices for this benchmark (``--index NAME:N``), otherwise they are loaded here. Query
texts are step texts of a small generated dataset and the model is built from it (ResNet-18 with random
weights: the image side is not used). Recall uses random unit query vectors (the distribution of the
indexed vectors); uniformly random 256-d vectors are the hardest case for HNSW, so recall is also
reported at larger ``num_candidates``.
"""

from __future__ import annotations

import argparse
import http.client
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402
import orjson  # noqa: E402

from bench import bulkdata  # noqa: E402
from bench.common import client, elasticsearch, emit, machine  # noqa: E402
from toolkit.index import lifecycle  # noqa: E402
from toolkit.index.bulk import bulk_load  # noqa: E402
from toolkit.rejects import RejectsWriter  # noqa: E402

ALIAS = "bench-search"
CANDIDATES = (100, 200, 400, 800)


def build_model(root: Path) -> tuple[Any, list[str]]:
    """A small real model and the step texts of its dataset (the query texts)."""
    from toolkit.data.jsonl import iter_recipes
    from toolkit.data.sample import generate_sample
    from toolkit.mapping.train import MappingConfig
    from toolkit.model import SearchModel
    from toolkit.pipeline import BuildOptions, build

    generate_sample(root / "data", 120, seed=0, image_size=64)
    # the default mapping appends its linear branch's dimensions to the towers' (256 + 64): the towers are
    # narrowed so that the query vectors have the indexed documents' dims (bulkdata.DIMS)
    defaults = MappingConfig()
    linear_dims = defaults.linear_dims if defaults.linear_weight > 0 else 0
    options = BuildOptions(
        encoder="resnet18",
        weights="random",
        image_size=64,
        mapping={"epochs": 3, "dim": bulkdata.DIMS - linear_dims},
        eval_draws=1,
        progress=False,
    )
    build(root / "data", root / "model", options)
    model = SearchModel.load(root / "model")
    if model.dims != bulkdata.DIMS:
        raise RuntimeError(f"the model's query vectors have {model.dims} dims, the index's {bulkdata.DIMS}")
    with RejectsWriter(None) as rejects:
        texts = [s.text for r in iter_recipes(root / "data", rejects) for s in r.steps]
    return model, texts


def load_index(es: Any, n: int) -> str:
    """``n`` synthetic documents in a fresh index of the real template, loaded by the toolkit."""
    lifecycle.put_template(es, ALIAS, bulkdata.MODEL)
    name = lifecycle.create_version(es, ALIAS)
    with RejectsWriter(None) as rejects:
        bulk_load(es, name, bulkdata.batches(n), rejects)
    return name


def ready(es: Any, index: str) -> None:
    """What ``jrs index`` does after a load: settings back (refresh on), then a refresh."""
    lifecycle.finish_load(es, index, {"index.refresh_interval": "1s", "index.number_of_replicas": 0})


def exact_top10(vectors: np.ndarray, queries: np.ndarray) -> np.ndarray:
    """Row ids of the 10 most similar vectors for each query (cosine = dot product on unit vectors)."""
    out = []
    for a in range(0, len(queries), 64):
        sims = queries[a : a + 64] @ vectors.T
        top = np.argpartition(-sims, 10, axis=1)[:, :10]
        out.append(top)
    return np.concatenate(out)


def recall(
    es: Any, index: str, n: int, n_queries: int, field: str = "image_vector", candidates=CANDIDATES
) -> dict[str, Any]:
    """Mean recall@10 of the index's kNN on ``field`` against exact top-10, at several num_candidates.
    Queries come from the field's own distribution (uniform, or embedding-like for ``text_vector``)."""
    from toolkit.search.queries import Filters, KnnParams, knn_request

    vectors = bulkdata.field_vectors(n, field)
    if field == "image_vector":
        queries = bulkdata.unit_vectors(n_queries, seed=987_654)
    else:
        queries = bulkdata.structured_vectors(n_queries, seed=987_654)
    truth = exact_top10(vectors, queries)
    ids = [bulkdata.doc_id(i) for i in range(n)]
    out: dict[str, Any] = {}
    suffix = "" if field == "image_vector" else "_structured"
    for nc in candidates:
        hits, took = 0, []
        for q, t in zip(queries, truth, strict=True):
            body = knn_request(q, KnnParams(k=10, num_candidates=nc, field=field), Filters())
            body["_source"] = False
            resp = es.search(index=index, **body)
            took.append(resp["took"])
            hits += len({h["_id"] for h in resp["hits"]["hits"]} & {ids[i] for i in t})
        out[f"recall_at_10{suffix}_nc{nc}"] = round(hits / (10 * n_queries), 4)
        out[f"took_p50_ms{suffix}_nc{nc}"] = round(pct(took, 50), 2)
    return out


def raw_floor(url: str, index: str, body: dict[str, Any], n: int) -> float:
    """p50 of (round trip - took) for one pre-serialised kNN request over a kept-alive plain HTTP
    connection: what the server's HTTP layer and the network cost, with no client library at all."""
    parts = urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=60)
    data = orjson.dumps(body)
    over = []
    for i in range(n + 20):
        t0 = time.perf_counter()
        conn.request("POST", f"/{index}/_search", data, {"Content-Type": "application/json"})
        resp = orjson.loads(conn.getresponse().read())
        if i >= 20:
            over.append((time.perf_counter() - t0) * 1000 - resp["took"])
    conn.close()
    return round(pct(over, 50), 2)


def pct(values: list[float], p: float) -> float:
    return float(np.percentile(np.asarray(values), p))


def latency(searcher: Any, texts: list[str], n_queries: int) -> dict[str, Any]:
    """Warm per-call times of kNN and hybrid searches through ``Searcher`` (ms)."""
    from toolkit.search.queries import Filters, HybridParams, KnnParams

    params, filters, hybrid = KnnParams(), Filters(), HybridParams()
    for t in texts[:20]:  # warm-up: JIT, caches, connections
        searcher.knn(searcher.text_vector(t), params, filters)
        searcher.hybrid(t, params, filters, hybrid)
    knn, knn_took, knn_over, hyb, hyb_took, embed = [], [], [], [], [], []
    for i in range(n_queries):
        text = texts[(i * 7919) % len(texts)]
        t0 = time.perf_counter()
        vec = searcher.text_vector(text)
        t1 = time.perf_counter()
        res = searcher.knn(vec, params, filters)
        t2 = time.perf_counter()
        total = (t2 - t0) * 1000
        knn.append(total)
        knn_took.append(res.took_ms)
        knn_over.append(total - res.took_ms)
        embed.append((t1 - t0) * 1000)
        t0 = time.perf_counter()
        res = searcher.hybrid(text, params, filters, hybrid)
        hyb.append((time.perf_counter() - t0) * 1000)
        hyb_took.append(res.took_ms)
    return {
        "knn_p50_ms": round(pct(knn, 50), 2),
        "knn_p95_ms": round(pct(knn, 95), 2),
        "knn_took_p50_ms": round(pct(knn_took, 50), 2),
        "hybrid_p50_ms": round(pct(hyb, 50), 2),
        "hybrid_p95_ms": round(pct(hyb, 95), 2),
        "hybrid_took_p50_ms": round(pct(hyb_took, 50), 2),
        "search_overhead_p50_ms": round(pct(knn_over, 50), 2),
        "search_overhead_p95_ms": round(pct(knn_over, 95), 2),
        "query_embed_p50_ms": round(statistics.median(embed), 2),
    }


def segments(es: Any, index: str) -> int:
    return len(es.cat.segments(index=index, format="json").body)


def run(url: str, indices: dict[int, str] | None = None, quick: bool = False) -> dict[str, Any]:
    from toolkit.search.engine import Searcher
    from toolkit.search.queries import Filters, KnnParams, knn_request

    small, large = (2_000, 10_000) if quick else (10_000, 100_000)
    n_queries = 50 if quick else 200
    es = client(url)
    indices = dict(indices or {})
    out: dict[str, Any] = {"machine": machine(), "quick": quick, "queries": n_queries}
    with tempfile.TemporaryDirectory(prefix="bench-search-") as tmp:
        t0 = time.perf_counter()
        model, texts = build_model(Path(tmp))
        out["model_build_s"] = round(time.perf_counter() - t0, 1)
        created = []
        try:
            for n in (small, large):
                if n not in indices:
                    indices[n] = load_index(es, n)
                    created.append(indices[n])
                ready(es, indices[n])
                count = es.count(index=indices[n])["count"]
                if count != n:
                    raise RuntimeError(f"index {indices[n]} holds {count} documents, expected {n}")
            for label, n in (("small", small), ("large", large)):
                searcher = Searcher(es, model, indices[n], check=False)
                row: dict[str, Any] = {"docs": n, "segments": segments(es, indices[n])}
                recall_queries = min(n_queries, 100)
                row.update(recall(es, indices[n], n, recall_queries))
                row.update(recall(es, indices[n], n, recall_queries, "text_vector", (100,)))
                row.update(latency(searcher, texts, n_queries))
                body = knn_request(model.embed_query(texts[0]), KnnParams(), Filters())
                row["search_overhead_floor_p50_ms"] = raw_floor(url, indices[n], body, n_queries)
                out[label] = row
                print(f"{n:>9,} docs: {row}", file=sys.stderr)
        finally:
            for name in created:
                es.indices.delete(index=name)
    big = out["large"]
    out["hnsw_recall_at_10"] = big["recall_at_10_nc100"]
    out["hnsw_recall_at_10_structured"] = big["recall_at_10_structured_nc100"]
    for key in ("knn_p50_ms", "knn_p95_ms", "hybrid_p50_ms", "search_overhead_p50_ms"):
        out[key] = big[key]
    out["search_overhead_floor_p50_ms"] = big["search_overhead_floor_p50_ms"]
    out["knn_p50_scaling"] = round(big["knn_p50_ms"] / out["small"]["knn_p50_ms"], 2)
    out["sizes"] = {"small": small, "large": large}
    return out


def _lines(r: dict[str, Any]) -> list[str]:
    s, b = r["small"], r["large"]
    lines = []
    for row in (s, b):
        recalls = ", ".join(f"nc={nc}: {row[f'recall_at_10_nc{nc}']:.3f}" for nc in CANDIDATES)
        lines.append(
            f"{row['docs']:>9,} docs ({row['segments']} segments): recall@10 {recalls}; knn p50 "
            f"{row['knn_p50_ms']:.1f} ms p95 {row['knn_p95_ms']:.1f} ms (took {row['knn_took_p50_ms']:.1f}); "
            f"hybrid p50 {row['hybrid_p50_ms']:.1f} ms; overhead p50 {row['search_overhead_p50_ms']:.1f} ms "
            f"(query embedding {row['query_embed_p50_ms']:.1f} ms, plain-HTTP floor "
            f"{row['search_overhead_floor_p50_ms']:.1f} ms); took p50 by num_candidates "
            + ", ".join(f"{nc}: {row[f'took_p50_ms_nc{nc}']:.0f} ms" for nc in CANDIDATES)
        )
    lines += [
        f"hnsw_recall_at_10       {r['hnsw_recall_at_10']:>8.3f}  (goal >= 0.97; uniform random vectors)",
        f"  embedding-like vectors {r['hnsw_recall_at_10_structured']:>8.3f}  (text_vector field)",
        f"knn_p50_ms              {r['knn_p50_ms']:>8.1f}  (goal <= 20)",
        f"knn_p95_ms              {r['knn_p95_ms']:>8.1f}",
        f"hybrid_p50_ms           {r['hybrid_p50_ms']:>8.1f}",
        f"search_overhead_p50_ms  {r['search_overhead_p50_ms']:>8.1f}  (goal <= 10)",
    ]
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="2k/10k documents, 50 queries")
    parser.add_argument("--index", action="append", default=[], help="NAME:N, an index already loaded")
    parser.add_argument("--json", action="store_true", help="print the result dict as one JSON line")
    args = parser.parse_args()
    given = {int(n): name for name, n in (spec.rsplit(":", 1) for spec in args.index)}
    with elasticsearch() as target:
        result = run(target.url, given, quick=args.quick)
    emit(result, args.json, _lines(result))


if __name__ == "__main__":
    main()
