"""Bulk loading: the toolkit's loader against the server's ceiling and against one request per document.

    python bench/bench_bulk.py [--quick] [--json] [--no-1m]

Judged by ``bulk_vs_raw_ratio`` (toolkit docs/s / raw ``_bulk`` POSTs of the same pre-serialised NDJSON,
same index settings, same chunks; goal >= 0.9), ``bulk_vs_naive_ratio`` (toolkit / one ``index()`` call
per document; goal >= 20) and ``bulk_peak_rss_mb_100k`` / ``bulk_peak_rss_mb_1m`` (peak RSS of the
loading process; goal <= 600 MB and flat in N).

Documents are synthetic (``bench/bulkdata.py``: every field the indexer writes, two random unit 256-d
float32 vectors) and streamed, in the real template (``render_template`` via ``put_template`` +
``create_version``, refresh off, no replicas). The raw ceiling posts the NDJSON, written to a file
beforehand by the toolkit's own serialiser, from threads with keep-alive connections and nothing else
to do; it is measured with 1 and 2 requests in flight and the faster counts. The toolkit load runs in a
child process (so its peak RSS is its own, from ``wait4``). Every load goes into a fresh index that is
deleted afterwards. The 1M-document run uses ``index_options: flat`` (exact kNN, no HNSW graph): building
two HNSW graphs over 1M vectors takes the 2-core node far longer than the suite's budget, and the
loader's memory does not depend on the server's index type. CPU seconds of the node (``/proc``) and of
the loader show where the 2 cores went.
"""

from __future__ import annotations

import argparse
import http.client
import os
import resource
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import orjson  # noqa: E402

from bench import bulkdata  # noqa: E402
from bench.common import client, cpu_seconds, elasticsearch, emit, machine, run_child  # noqa: E402
from toolkit.index import lifecycle  # noqa: E402
from toolkit.index.bulk import BulkOptions, bulk_load, dumps_source  # noqa: E402
from toolkit.index.template import VectorIndexOptions  # noqa: E402
from toolkit.rejects import RejectsWriter  # noqa: E402

ALIAS = "bench-bulk"


def write_ndjson(path: Path, n: int, seed: int = 0) -> list[int]:
    """The ``_bulk`` bodies of the toolkit's batches for ``n`` documents, back to back in ``path``;
    returns the byte offsets of batch boundaries (``len = batches + 1``)."""
    offsets = [0]
    with path.open("wb") as fh:
        for batch in bulkdata.batches(n, seed):
            parts = []
            for d in batch.docs:
                src = {k: v for k, v in d.items() if k != "_id"}
                parts.append(orjson.dumps({"index": {"_id": d["_id"]}}))
                parts.append(dumps_source(src))
            body = b"\n".join(parts) + b"\n"
            fh.write(body)
            offsets.append(offsets[-1] + len(body))
    return offsets


def batch_size(batch_steps: int = 256) -> int:
    """Documents per full batch of ``bulkdata.batches`` (whole recipes of STEPS_PER_RECIPE steps)."""
    return -(-batch_steps // bulkdata.STEPS_PER_RECIPE) * bulkdata.STEPS_PER_RECIPE


def raw_load(url: str, index: str, path: Path, offsets: list[int], concurrency: int) -> float:
    """POST the pre-serialised batches with ``concurrency`` connections; seconds from first to last reply."""
    parts = urlsplit(url)
    todo = iter(range(len(offsets) - 1))
    lock = threading.Lock()
    errors: list[str] = []
    fd = os.open(path, os.O_RDONLY)
    bodies_ready = threading.Event()

    def worker() -> None:
        conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=600)
        bodies_ready.wait()
        try:
            while True:
                with lock:
                    i = next(todo, None)
                if i is None:
                    break
                body = os.pread(fd, offsets[i + 1] - offsets[i], offsets[i])
                conn.request("POST", f"/{index}/_bulk", body, {"Content-Type": "application/x-ndjson"})
                resp = conn.getresponse()
                data = resp.read()
                if resp.status != 200 or orjson.loads(data)["errors"]:
                    errors.append(f"HTTP {resp.status}: {data[:300]!r}")
        except Exception as e:  # a dead thread would leave batches unsent and the ceiling look faster
            errors.append(f"{type(e).__name__}: {e}")
        finally:
            conn.close()

    threads = [threading.Thread(target=worker) for _ in range(concurrency)]
    for t in threads:
        t.start()
    t0 = time.perf_counter()
    bodies_ready.set()
    for t in threads:
        t.join()
    seconds = time.perf_counter() - t0
    os.close(fd)
    if errors:
        raise RuntimeError(f"raw bulk load failed: {errors[0]}")
    return seconds


def naive_load(es: Any, index: str, n: int) -> float:
    """One ``index()`` request per document, as a straightforward script would do it; seconds."""
    docs = bulkdata.documents(n)
    t0 = time.perf_counter()
    for d in docs:
        src = {k: (v.tolist() if hasattr(v, "tolist") else v) for k, v in d.items() if k != "_id"}
        es.index(index=index, id=d["_id"], document=src)
    return time.perf_counter() - t0


def legacy_load(url: str, index: str, n: int) -> tuple[float, int]:
    """The loader before this benchmark (for comparison): one batch at a time through ``streaming_bulk``,
    vectors as float lists (``tolist()``) serialised by the client's stdlib JSON serializer."""
    from elasticsearch import Elasticsearch, helpers

    es = Elasticsearch(url, request_timeout=300)
    t0, indexed = time.monotonic(), 0
    for batch in bulkdata.batches(n):
        actions = (
            {
                "_op_type": "index",
                "_index": index,
                "_id": d["_id"],
                "_source": {
                    k: (v.tolist() if hasattr(v, "tolist") else v) for k, v in d.items() if k != "_id"
                },
            }
            for d in batch.docs
        )
        for ok, _ in helpers.streaming_bulk(es, actions, chunk_size=500, raise_on_error=False):
            indexed += ok
    return time.monotonic() - t0, indexed


def child_main(args: argparse.Namespace) -> None:
    """The toolkit load of ``--n`` documents into ``--index`` (run as a child process)."""
    r0 = resource.getrusage(resource.RUSAGE_SELF)
    if args.legacy:
        seconds, indexed = legacy_load(args.url, args.index, args.n)
        read = indexed
    else:
        with RejectsWriter(None) as rejects:
            summary = bulk_load(
                client(args.url),
                args.index,
                bulkdata.batches(args.n),
                rejects,
                options=BulkOptions(concurrency=args.concurrency),
            )
        seconds, indexed, read = summary.seconds, summary.counts.indexed, summary.counts.read
    r1 = resource.getrusage(resource.RUSAGE_SELF)
    if indexed != args.n or read != args.n:
        raise SystemExit(f"expected {args.n} documents indexed, got {indexed} of {read}")
    cpu = (r1.ru_utime + r1.ru_stime) - (r0.ru_utime + r0.ru_stime)
    print(orjson.dumps({"seconds": seconds, "indexed": indexed, "cpu_s": cpu}).decode())


class Loads:
    """Fresh indices from the real template, each deleted after its load; CPU of the node around loads."""

    def __init__(self, es: Any, url: str, es_pid: int | None) -> None:
        self.es, self.url, self.es_pid = es, url, es_pid
        self.log: list[str] = []
        self.keep: str | None = None  # set to a label to keep the next index (for the search benchmark)
        self.kept: dict[str, str] = {}

    def index(self, options: VectorIndexOptions) -> str:
        lifecycle.put_template(self.es, ALIAS, bulkdata.MODEL, options)
        return lifecycle.create_version(self.es, ALIAS)

    def measure(self, what: str, n: int, options: VectorIndexOptions, load) -> dict[str, Any]:
        name = self.index(options)
        c0 = cpu_seconds(self.es_pid)
        try:
            out = load(name)
        finally:
            node_cpu = cpu_seconds(self.es_pid) - c0
            if self.keep:
                self.kept[self.keep] = name
                self.keep = None
            else:
                self.es.indices.delete(index=name)
        seconds = out["seconds"]
        loader_cpu = out.pop("cpu_s", 0.0)
        row = {
            "docs": n,
            "seconds": round(seconds, 3),
            "docs_per_s": round(n / seconds, 1),
            "node_cpu_cores": round(node_cpu / seconds, 2) if self.es_pid else None,
            # node + loader CPU per document: what the load costs the machine, whatever else runs on it
            "cpu_ms_per_doc": round((node_cpu + loader_cpu) * 1000 / n, 3) if self.es_pid else None,
            **{k: v for k, v in out.items() if k != "seconds"},
        }
        self.log.append(
            f"{what:<28} {n:>9,} docs {row['docs_per_s']:>10,.0f} docs/s"
            + (f"  node {row['node_cpu_cores']:.2f} cores" if self.es_pid else "")
            + (f"  loader {row['loader_cpu_cores']:.2f} cores" if "loader_cpu_cores" in row else "")
            + (f"  peak RSS {row['peak_rss_mb']:.0f} MB" if "peak_rss_mb" in row else "")
        )
        print(self.log[-1], file=sys.stderr)
        return row

    def raw(self, n: int, total: int, path: Path, offsets: list[int], concurrency: int) -> dict[str, Any]:
        """The first whole batches of the file holding at least ``n`` of its ``total`` documents."""
        k = -(-n // batch_size())
        used = offsets[: k + 1]
        n = min(k * batch_size(), total)

        def load(name: str) -> dict[str, Any]:
            return {"seconds": raw_load(self.url, name, path, used, concurrency), "concurrency": concurrency}

        return self.measure(f"raw _bulk x{concurrency}", n, VectorIndexOptions(), load)

    def toolkit(
        self, n: int, concurrency: int = 2, options: VectorIndexOptions | None = None, legacy: bool = False
    ) -> dict:
        def load(name: str) -> dict[str, Any]:
            res = run_child(
                ["bench/bench_bulk.py", "child", "--url", self.url, "--index", name, "--n", str(n)]
                + ["--concurrency", str(concurrency)]
                + (["--legacy"] if legacy else [])
            )
            return {
                "seconds": res.data["seconds"],
                "cpu_s": res.data["cpu_s"],
                "concurrency": concurrency,
                "peak_rss_mb": round(res.peak_rss_mb, 1),
                "loader_cpu_cores": round(res.data["cpu_s"] / res.data["seconds"], 2),
            }

        opts = options or VectorIndexOptions()
        what = "before: sequential, stdlib" if legacy else f"toolkit x{concurrency}"
        return self.measure(f"{what} ({opts.type})", n, opts, load)

    def naive(self, n: int, options: VectorIndexOptions | None = None) -> dict[str, Any]:
        opts = options or VectorIndexOptions()
        return self.measure(
            f"naive index() per doc ({opts.type})",
            n,
            opts,
            lambda name: {"seconds": naive_load(self.es, name, n)},
        )


def run(
    url: str, es_pid: int | None, quick: bool = False, million: bool = True, keep: bool = False
) -> dict[str, Any]:
    """Measure everything; with ``keep`` the toolkit-loaded HNSW indices (small, large) are left in place
    for ``bench_search.py`` and named in ``kept``."""
    small, large, naive_n = (2_000, 10_000, 300) if quick else (10_000, 100_000, 2_000)
    huge = 20_000 if quick else 1_000_000
    es = client(url)
    loads = Loads(es, url, es_pid)
    out: dict[str, Any] = {"machine": machine(), "quick": quick}
    with tempfile.TemporaryDirectory(prefix="bench-bulk-") as tmp:
        path = Path(tmp) / "bulk.ndjson"
        t0 = time.perf_counter()
        offsets = write_ndjson(path, large)
        out["ndjson_bytes_per_doc"] = round(offsets[-1] / large, 1)
        out["ndjson_write_s"] = round(time.perf_counter() - t0, 2)
        loads.raw(2_000, large, path, offsets, 2)  # warm-up (JIT, caches); not reported
        loads.log.pop()
        # small: which concurrency is the ceiling, the toolkit at 1 and 2 in flight, the naive loop
        raw1 = loads.raw(small, large, path, offsets, 1)
        raw2 = loads.raw(small, large, path, offsets, 2)
        loads.keep = "small" if keep else None
        tk2 = loads.toolkit(small, 2)
        tk1 = loads.toolkit(small, 1)
        legacy = loads.toolkit(small, 1, legacy=True)
        naive = loads.naive(naive_n)
        tk_naive = loads.toolkit(naive_n, 2)  # the same documents into the same empty index: like for like
        best_c = 2 if raw2["docs_per_s"] >= raw1["docs_per_s"] else 1
        # large: ceiling and toolkit, alternated
        raw_large = loads.raw(large, large, path, offsets, best_c)
        loads.keep = "large" if keep else None
        tk_large = loads.toolkit(large, 2)
    out["small"] = {"raw_x1": raw1, "raw_x2": raw2, "toolkit_x2": tk2, "toolkit_x1": tk1, "before": legacy}
    out["naive"] = {"naive": naive, "toolkit": tk_naive}
    out["large"] = {"raw": raw_large, "toolkit": tk_large}
    ceiling_small = max(raw1["docs_per_s"], raw2["docs_per_s"])
    out["bulk_vs_raw_ratio_before_10k"] = round(legacy["docs_per_s"] / ceiling_small, 3)
    out["bulk_docs_per_s_10k" if not quick else "bulk_docs_per_s_small"] = tk2["docs_per_s"]
    out["bulk_docs_per_s_100k" if not quick else "bulk_docs_per_s_large"] = tk_large["docs_per_s"]
    out["bulk_vs_raw_ratio_10k"] = round(tk2["docs_per_s"] / ceiling_small, 3)
    out["bulk_vs_raw_ratio"] = round(tk_large["docs_per_s"] / raw_large["docs_per_s"], 3)
    if raw_large["cpu_ms_per_doc"] and tk_large["cpu_ms_per_doc"]:
        # machine CPU per document, raw ceiling / toolkit: the ratio a dedicated machine would show
        out["bulk_vs_raw_cpu_ratio"] = round(raw_large["cpu_ms_per_doc"] / tk_large["cpu_ms_per_doc"], 3)
    out["bulk_vs_naive_ratio"] = round(tk_naive["docs_per_s"] / naive["docs_per_s"], 1)
    out["bulk_peak_rss_mb_10k"] = tk2["peak_rss_mb"]
    out["bulk_peak_rss_mb_100k"] = tk_large["peak_rss_mb"]
    out["bulk_scaling_10k_to_100k"] = round(tk_large["seconds"] / tk2["seconds"], 2)
    if million:
        flat = VectorIndexOptions(type="flat")
        tk_flat = loads.toolkit(large, 2, flat)
        tk_huge = loads.toolkit(huge, 2, flat)
        naive_flat = loads.naive(naive_n, flat)
        out["flat"] = {"large": tk_flat, "huge": tk_huge, "naive": naive_flat}
        out["bulk_vs_naive_ratio_flat"] = round(tk_flat["docs_per_s"] / naive_flat["docs_per_s"], 1)
        out["bulk_peak_rss_mb_1m"] = tk_huge["peak_rss_mb"]
        out["bulk_scaling_100k_to_1m_flat"] = round(tk_huge["seconds"] / tk_flat["seconds"], 2)
    out["sizes"] = {"small": small, "large": large, "naive": naive_n, "huge": huge}
    out["log"] = loads.log
    out["kept"] = loads.kept
    return out


def _lines(r: dict[str, Any]) -> list[str]:
    s = r["sizes"]
    lines = [
        f"bulk_vs_raw_ratio        {r['bulk_vs_raw_ratio']:>8.3f}  ({s['large']:,} docs; goal >= 0.90)",
        f"bulk_vs_raw_ratio small  {r['bulk_vs_raw_ratio_10k']:>8.3f}  ({s['small']:,} docs)",
        f"bulk_vs_raw_cpu_ratio    {r.get('bulk_vs_raw_cpu_ratio') or float('nan'):>8.3f}  (node+loader CPU/doc, raw/toolkit)",
        f"bulk_vs_naive_ratio      {r['bulk_vs_naive_ratio']:>8.1f}  (goal >= 20)",
        f"bulk_peak_rss_mb_100k    {r['bulk_peak_rss_mb_100k']:>8.1f}  ({s['large']:,} docs; goal <= 600, flat)",
    ]
    if "bulk_peak_rss_mb_1m" in r:
        lines.append(
            f"bulk_peak_rss_mb_1m      {r['bulk_peak_rss_mb_1m']:>8.1f}  ({s['huge']:,} docs, flat index)"
        )
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="cmd")
    child = sub.add_parser("child", help="(internal) one toolkit load, JSON on stdout")
    child.add_argument("--url", required=True)
    child.add_argument("--index", required=True)
    child.add_argument("--n", type=int, required=True)
    child.add_argument("--concurrency", type=int, default=2)
    child.add_argument("--legacy", action="store_true", help="the loader before this benchmark")
    parser.add_argument("--quick", action="store_true", help="2k/10k/20k documents instead of 10k/100k/1M")
    parser.add_argument("--no-1m", action="store_true", help="skip the 1M-document memory run")
    parser.add_argument("--keep", action="store_true", help="keep the toolkit-loaded HNSW indices (see kept)")
    parser.add_argument("--json", action="store_true", help="print the result dict as one JSON line")
    args = parser.parse_args()
    if args.cmd == "child":
        child_main(args)
        return
    with elasticsearch() as target:
        result = run(target.url, target.pid, quick=args.quick, million=not args.no_1m, keep=args.keep)
    emit(result, args.json, _lines(result))


if __name__ == "__main__":
    main()
