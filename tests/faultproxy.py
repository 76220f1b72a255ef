"""A small fault-injecting HTTP proxy for tests: forwards to a real Elasticsearch node on loopback and
answers a share of ``_bulk`` requests with 429 or 503, or drops the connection (before or after the
request reached the node). ``item429`` (only when named) forwards the request and then reports its
first item as throttled, as a busy node does for single documents.

Faults are chosen from a script (the first bulk requests) and then at random with a fixed seed, so a
test run is reproducible. Every bulk request is recorded with its arrival time and the fault applied.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import random
import socket
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

#: Fault kinds: a status answered by the proxy, or a dropped connection.
FAULTS = ("429", "503", "drop", "drop_after")
_HOP_HEADERS = {"connection", "keep-alive", "transfer-encoding", "content-length", "host"}


@dataclass
class BulkRecord:
    at: float
    fault: str | None


@dataclass
class FaultPolicy:
    """``script``: faults for the first bulk requests (None = pass); then ``share`` of them at random."""

    script: list[str | None] = field(default_factory=list)
    share: float = 0.0
    kinds: tuple[str, ...] = FAULTS
    seed: int = 0
    max_faults: int = 1000

    def __post_init__(self) -> None:
        self._rng = random.Random(self.seed)

    def choose(self, n: int, injected: int) -> str | None:
        if n < len(self.script):
            return self.script[n]
        if injected >= self.max_faults or self._rng.random() >= self.share:
            return None
        return self._rng.choice(self.kinds)


class FaultProxy:
    """``with FaultProxy(upstream, policy) as proxy: ... proxy.url``."""

    def __init__(self, upstream: str, policy: FaultPolicy | None = None) -> None:
        parts = urlsplit(upstream)
        self.upstream = (parts.hostname or "127.0.0.1", parts.port or 9200)
        self.policy = policy or FaultPolicy()
        self.bulk: list[BulkRecord] = []
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def faults(self, kinds: Iterable[str] = FAULTS) -> int:
        wanted = set(kinds)
        return sum(1 for r in self.bulk if r.fault in wanted)

    def __enter__(self) -> FaultProxy:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()

    def _decide(self) -> str | None:
        with self._lock:
            fault = self.policy.choose(len(self.bulk), sum(1 for r in self.bulk if r.fault))
            self.bulk.append(BulkRecord(time.monotonic(), fault))
            return fault

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: object) -> None:  # quiet
                pass

            def _drop(self) -> None:
                self.close_connection = True
                with contextlib.suppress(OSError):
                    self.connection.shutdown(socket.SHUT_RDWR)

            def _send(self, status: int, headers: list[tuple[str, str]], body: bytes) -> None:
                self.send_response(status)
                for k, v in headers:
                    if k.lower() not in _HOP_HEADERS:
                        self.send_header(k, v)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def _handle(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                fault = proxy._decide() if "_bulk" in self.path.split("?")[0] else None
                if fault in ("429", "503"):
                    err = {"error": {"type": "injected_fault", "reason": f"fault proxy: HTTP {fault}"}}
                    payload = json.dumps({**err, "status": int(fault)}).encode()
                    headers = [("Content-Type", "application/json"), ("X-elastic-product", "Elasticsearch")]
                    self._send(int(fault), headers, payload)
                    return
                if fault == "drop":
                    self._drop()
                    return
                conn = http.client.HTTPConnection(*proxy.upstream, timeout=60)
                try:
                    headers = {k: v for k, v in self.headers.items() if k.lower() not in _HOP_HEADERS}
                    conn.request(self.command, self.path, body=body if length else None, headers=headers)
                    resp = conn.getresponse()
                    data = resp.read()
                except OSError:
                    self._drop()
                    return
                finally:
                    conn.close()
                if fault == "drop_after":  # the node did the work; the client never hears of it
                    self._drop()
                    return
                if fault == "item429" and resp.status == 200:
                    doc = json.loads(data)
                    ((op, item),) = doc["items"][0].items()
                    error = {"type": "es_rejected_execution_exception", "reason": "fault proxy: item 429"}
                    doc["items"][0] = {op: {"_index": item.get("_index"), "_id": item.get("_id"),
                                            "status": 429, "error": error}}  # fmt: skip
                    doc["errors"] = True
                    data = json.dumps(doc).encode()
                self._send(resp.status, resp.getheaders(), data)

            do_GET = do_POST = do_PUT = do_DELETE = do_HEAD = _handle

        return Handler
