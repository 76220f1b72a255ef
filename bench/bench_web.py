"""Load on the search page's API: 32 concurrent clients on loopback, the standard-library server and the
FastAPI/uvicorn server measured in the same run against the same model, index and node.

    ES_URL=... python bench/bench_web.py --model MODEL_DIR --index ALIAS --dataset ROOT [--seconds 10] [--json]

Each client sends ``GET /api/search`` (kNN, k=10, queries cycled from a fixed list) on its own keep-alive
connection for ``--seconds``. Judged by ``web_rps_ratio`` = FastAPI requests/s / stdlib requests/s (goal >= 1.0,
with 0 errors). Bounded: loopback only, a fixed duration, nothing left running.
"""

from __future__ import annotations

import argparse
import http.client
import json
import sys
import threading
import time
from pathlib import Path
from urllib.parse import urlencode

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

QUERIES = [
    "玉ねぎを薄切りにします。",
    "鶏肉を焼く",
    "キャベツを千切りにする",
    "豆腐を切る",
    "れんこんを炒める",
]


def _load(host: str, port: int, clients: int, seconds: float) -> dict:
    latencies: list[float] = []
    errors = [0]
    lock = threading.Lock()
    stop = time.monotonic() + seconds

    def client(n: int) -> None:
        conn = http.client.HTTPConnection(host, port, timeout=30)
        mine: list[float] = []
        bad = 0
        i = n
        while time.monotonic() < stop:
            path = "/api/search?" + urlencode({"q": QUERIES[i % len(QUERIES)], "mode": "knn", "k": 10})
            i += 1
            t = time.perf_counter()
            try:
                conn.request("GET", path)
                resp = conn.getresponse()
                resp.read()
                ok = resp.status == 200
            except (OSError, http.client.HTTPException):
                ok = False
                conn.close()
                conn = http.client.HTTPConnection(host, port, timeout=30)
            if ok:  # a failed request is counted as an error, not as served (nor in the latencies)
                mine.append(time.perf_counter() - t)
            bad += not ok
        conn.close()
        with lock:
            latencies.extend(mine)
            errors[0] += bad

    start = time.monotonic()
    threads = [threading.Thread(target=client, args=(n,)) for n in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.monotonic() - start
    lat = sorted(latencies)
    pick = lambda q: lat[min(len(lat) - 1, int(q * len(lat)))] * 1000 if lat else float("nan")  # noqa: E731
    return {
        "requests": len(lat),
        "errors": errors[0],
        "rps": round(len(lat) / wall, 1),
        "p50_ms": round(pick(0.50), 1),
        "p99_ms": round(pick(0.99), 1),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", type=Path, required=True)
    ap.add_argument("--index", required=True)
    ap.add_argument("--dataset", type=Path, required=True)
    ap.add_argument("--clients", type=int, default=32)
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()

    from toolkit.es.client import make_client
    from toolkit.model import SearchModel
    from toolkit.search.engine import Searcher
    from toolkit.web.api import ApiServer
    from toolkit.web.app import SearchApp
    from toolkit.web.server import start_in_thread

    app = SearchApp(Searcher(make_client(), SearchModel.load(args.model), args.index), args.dataset)
    app.search({"q": [QUERIES[0]]})  # warm: model, tokenizer, connection pool
    results = {}
    server, thread = start_in_thread(app)
    try:
        _load(*server.server_address[:2], args.clients, 2.0)  # warm-up
        results["stdlib"] = _load(*server.server_address[:2], args.clients, args.seconds)
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)
    api = ApiServer(app).start()
    try:
        _load(*api.server_address[:2], args.clients, 2.0)
        results["fastapi"] = _load(*api.server_address[:2], args.clients, args.seconds)
    finally:
        api.shutdown()
        api.server_close()
    errors = sum(r["errors"] for r in results.values())
    ratio = results["fastapi"]["rps"] / results["stdlib"]["rps"] if results["stdlib"]["rps"] else 0.0
    out = {
        "clients": args.clients,
        "seconds": args.seconds,
        **results,
        "web_rps_ratio": round(ratio, 3) if not errors else None,
    }
    lines = [
        f"{name}: {r['rps']} req/s, p50 {r['p50_ms']} ms, p99 {r['p99_ms']} ms, {r['errors']} errors "
        f"({r['requests']} requests, {args.clients} clients, {args.seconds:.0f} s)"
        for name, r in results.items()
    ]
    lines.append(f"web_rps_ratio (fastapi / stdlib) = {ratio:.3f} (goal >= 1.0, with 0 errors)")
    print("\n".join(lines), file=sys.stderr)
    if args.json:
        print(json.dumps(out, indent=2))
    if errors:
        raise SystemExit(f"{errors} requests failed: the servers did not do the same work, no ratio")


if __name__ == "__main__":
    main()
