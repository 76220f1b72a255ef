"""Helpers shared by the benchmarks: the Elasticsearch node to run against, machine facts, child processes."""

from __future__ import annotations

import contextlib
import json
import os
import platform
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
BENCH_NODE = "bench"
DEFAULT_HEAP = "3g"


@dataclass
class EsTarget:
    url: str
    pid: int | None  # the node's JVM when we know it (for its CPU time)
    started_here: bool


def _node_pid(url: str) -> int | None:
    from toolkit.es import node

    for name in (BENCH_NODE, "default"):
        state = node.read_state(name)
        if state is not None and state.url.rstrip("/") == url.rstrip("/"):
            return state.pid
    return None


#: Lucene's SIMD vector code (Panama) and Elasticsearch's native vector library need Java 21+; on Java 17
#: the node spent 2-4x the CPU per document building HNSW graphs in the same benchmark
MIN_FAST_JAVA = 21
JVM_DIRS = (Path("/usr/lib/jvm"), Path("/opt/java"))


def _java_version(home: Path) -> int:
    release = home / "release"
    with contextlib.suppress(OSError):
        for line in release.read_text(errors="replace").splitlines():
            if line.startswith("JAVA_VERSION="):
                major = line.split("=", 1)[1].strip('"').split(".")[0]
                return int(major) if major.isdigit() else 0
    return 0


def newest_jdk() -> Path | None:
    """The newest installed JDK of Java 21 or later (None when there is none: the node's default applies)."""
    homes = [p for root in JVM_DIRS if root.is_dir() for p in root.iterdir() if (p / "bin" / "java").exists()]
    best = max(homes, key=_java_version, default=None)
    return best if best is not None and _java_version(best) >= MIN_FAST_JAVA else None


@contextlib.contextmanager
def elasticsearch(name: str = BENCH_NODE) -> Iterator[EsTarget]:
    """``ES_URL`` when set; else a dedicated local node ``name`` (heap ``JRS_ES_HEAP``, default 3g; on the
    newest JDK 21+ installed unless ``ES_JAVA_HOME`` says otherwise), stopped afterwards when started here."""
    from toolkit.es import node

    url = os.environ.get("ES_URL")
    if url:
        yield EsTarget(url, _node_pid(url), False)
        return
    running = node.status(name)[1] is not None
    os.environ.setdefault("JRS_ES_HEAP", DEFAULT_HEAP)
    if not os.environ.get("ES_JAVA_HOME"):
        jdk = newest_jdk()
        if jdk is not None:
            os.environ["ES_JAVA_HOME"] = str(jdk)
    state = node.up(name=name)
    try:
        yield EsTarget(state.url, state.pid, not running)
    finally:
        if not running:
            node.down(name)


def client(url: str):
    """An elasticsearch-py client made by the toolkit (orjson serializer, generous timeout)."""
    from toolkit.es.client import make_client
    from toolkit.es.config import EsSettings

    return make_client(EsSettings(url=url, request_timeout=300))


def cpu_seconds(pid: int | None) -> float:
    """User + system CPU seconds of a process (0 when unknown); for the JVM this covers all its threads."""
    if pid is None:
        return 0.0
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def machine() -> dict[str, Any]:
    """What the figures were measured on, and how busy it was."""
    mem_kb = 0
    with contextlib.suppress(OSError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                mem_kb = int(line.split()[1])
    cpu = platform.processor()
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    return {
        "cpus": os.cpu_count(),
        "cpu_model": cpu,
        "memory_gib": round(mem_kb / 1024**2, 1),
        "python": platform.python_version(),
        "load_avg": [round(x, 2) for x in os.getloadavg()],
    }


@dataclass
class ChildResult:
    data: dict[str, Any]
    peak_rss_mb: float
    cpu_s: float
    wall_s: float


def run_child(args: Sequence[str], env: dict[str, str] | None = None) -> ChildResult:
    """Run ``python ARGS`` (cwd: the repository); its last stdout line is JSON. Peak RSS and CPU time come
    from the kernel's accounting of that child (``wait4``), so they are the child's alone."""
    full_env = {**os.environ, "PYTHONPATH": str(REPO), **(env or {})}
    t0 = time.perf_counter()
    proc = subprocess.Popen(
        [sys.executable, *args], cwd=REPO, env=full_env, stdout=subprocess.PIPE, text=True
    )
    out = proc.stdout.read() if proc.stdout else ""
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(args)} failed with exit status {proc.returncode}:\n{out[-2000:]}")
    last = [line for line in out.splitlines() if line.strip()][-1]
    return ChildResult(json.loads(last), usage.ru_maxrss / 1024, usage.ru_utime + usage.ru_stime, wall)


def emit(result: dict[str, Any], as_json: bool, lines: Sequence[str]) -> None:
    """Print the human lines (to stderr when ``--json``) and, with ``--json``, the result as one JSON line."""
    for line in lines:
        print(line, file=sys.stderr if as_json else sys.stdout)
    if as_json:
        print(json.dumps(result))
