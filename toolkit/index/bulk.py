"""Bulk loading with elasticsearch-py's ``streaming_bulk``: bounded chunks, retries with backoff,
per-document errors to the rejects file, and a checkpoint after every batch so a load resumes.

Input is a stream of :class:`Batch` objects (documents of whole recipes, plus how many input records
they stand for), so the collection is never held in memory. Sending overlaps with building: up to
``BulkOptions.concurrency`` batches are in flight on worker threads (each through ``streaming_bulk`` with
its retries) while the caller's generator builds the next one; batches are accounted, their rejects
written and the checkpoint advanced strictly in input order, each only once it is fully acknowledged.
Document sources are serialised with orjson (numpy vectors natively, float32 written in its shortest form). Counting: ``read`` records (steps, or
unparsable input lines) = ``indexed`` + ``rejected`` + ``skipped`` (skipped: before the resume point),
counted for this run; the checkpoint holds the position, so a resumed run reads past the loaded part.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import orjson
from elasticsearch import Elasticsearch, helpers
from elasticsearch import exceptions as es_exc

from toolkit.atomic import write_json_atomic
from toolkit.errors import ConfigError, ToolkitError
from toolkit.progress import progress_bar
from toolkit.rejects import Reject, RejectsWriter

log = logging.getLogger(__name__)

RETRY_STATUS = (429, 502, 503, 504)


@dataclass
class Batch:
    """Documents for one or more whole recipes. ``position`` = input recipes consumed after this batch."""

    docs: list[dict[str, Any]]
    read: int
    rejected: int = 0
    skipped: int = 0
    position: int = 0


@dataclass
class LoadCounts:
    read: int = 0
    indexed: int = 0
    rejected: int = 0
    skipped: int = 0

    def add(self, other: LoadCounts) -> None:
        self.read += other.read
        self.indexed += other.indexed
        self.rejected += other.rejected
        self.skipped += other.skipped


@dataclass
class LoadSummary:
    index: str
    counts: LoadCounts = field(default_factory=LoadCounts)
    seconds: float = 0.0
    retries: int = 0
    resumed_from: int = 0
    stopped_early: bool = False

    @property
    def docs_per_s(self) -> float:
        return self.counts.indexed / self.seconds if self.seconds > 0 else 0.0

    def as_dict(self) -> dict[str, Any]:
        return {
            "index": self.index,
            **asdict(self.counts),
            "seconds": round(self.seconds, 3),
            "docs_per_s": round(self.docs_per_s, 1),
            "retries": self.retries,
            "resumed_from": self.resumed_from,
            "stopped_early": self.stopped_early,
        }


class TooManyErrors(ToolkitError):
    """More records were rejected than ``--max-errors`` allows."""


@dataclass
class Checkpoint:
    """Where a load into ``index`` stands: recipes consumed and counts so far, for one input and model."""

    path: Path
    index: str = ""
    input_fingerprint: str = ""
    model_fingerprint: str = ""
    #: what shapes the index and its documents (toolkit.index.indexer.options_fingerprint)
    options_fingerprint: str = ""
    position: int = 0
    counts: LoadCounts = field(default_factory=LoadCounts)
    done: bool = False

    @classmethod
    def load(cls, path: str | Path) -> Checkpoint | None:
        p = Path(path)
        if not p.is_file():
            return None
        try:
            data = json.loads(p.read_text(encoding="utf-8"))
            data["counts"] = LoadCounts(**data.get("counts", {}))
            ckpt = cls(path=p, **{k: v for k, v in data.items() if k != "path"})
            if not isinstance(ckpt.index, str) or not isinstance(ckpt.position, int) or ckpt.position < 0:
                raise ValueError("bad index or position")
        except (ValueError, TypeError, AttributeError) as e:  # cut short, edited, not this file's format
            raise ToolkitError(
                f"load checkpoint {p} is damaged ({e}); run with --restart to start a new load"
            ) from None
        return ckpt

    def save(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        data = {k: v for k, v in asdict(self).items() if k != "path"}
        write_json_atomic(self.path, data)


@dataclass
class BulkOptions:
    """How documents are sent (:func:`bulk_load`); validated on construction (:class:`ConfigError`).

    - ``chunk_size`` / ``max_chunk_bytes``: documents / bytes per ``_bulk`` request, at most
    - ``max_retries``: re-sends of a document Elasticsearch throttles on its own (per-item HTTP 429)
    - ``initial_backoff`` .. ``max_backoff``: seconds waited before a retry, doubling with each consecutive
      failure and reset by progress
    - ``unavailable_timeout``: seconds of failed attempts with nothing acknowledged before the load gives up
      (it resumes when run again)
    - ``max_errors``: stop after more than this many rejected records (None: never)
    - ``concurrency``: batches sent at once (worker threads; 2 lets a one-shard index use two write threads);
      with ``max_errors`` set, loading is sequential so it stops exactly after the batch that exceeds it
    """

    chunk_size: int = 500
    max_chunk_bytes: int = 8 * 1024 * 1024
    max_retries: int = 8
    initial_backoff: float = 0.5
    max_backoff: float = 30.0
    unavailable_timeout: float = 180.0
    max_errors: int | None = None
    concurrency: int = 2

    def __post_init__(self) -> None:
        check_int("bulk chunk_size", self.chunk_size, 1)
        check_int("bulk max_chunk_bytes", self.max_chunk_bytes, 1)
        check_int("bulk max_retries", self.max_retries, 0)
        check_int("bulk concurrency", self.concurrency, 1)
        if self.max_errors is not None:
            check_int("bulk max_errors", self.max_errors, 0)
        for name in ("initial_backoff", "max_backoff", "unavailable_timeout"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | float) or not 0 < value < float("inf"):
                raise ConfigError(f"bulk {name} must be a number of seconds > 0, got {value!r}")
        if self.initial_backoff > self.max_backoff:
            raise ConfigError(
                f"bulk initial_backoff ({self.initial_backoff}) must not exceed max_backoff ({self.max_backoff})"
            )


def check_int(name: str, value: Any, minimum: int) -> int:
    """``value`` when it is an integer >= ``minimum``; else :class:`ConfigError` naming ``name``."""
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ConfigError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return value


def _json_default(value: Any) -> Any:
    """What orjson cannot write itself: non-contiguous arrays, other numpy scalars."""
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    raise TypeError(f"cannot serialise {type(value).__name__} to JSON")


def dumps_source(src: dict[str, Any]) -> bytes:
    """A document source as JSON bytes (numpy arrays included), as sent in the ``_bulk`` body."""
    return orjson.dumps(src, default=_json_default, option=orjson.OPT_SERIALIZE_NUMPY)


#: the key of a batch document that changes some fields of an indexed document instead of replacing it
#: (:func:`partial_doc`)
PARTIAL = "_partial"


def partial_doc(doc_id: str, fields: dict[str, Any]) -> dict[str, Any]:
    """A batch document that sets ``fields`` of the indexed document ``doc_id`` (a bulk ``update``; refused as
    a reject when the document is gone), counted like a document sent whole."""
    return {"_id": doc_id, PARTIAL: fields}


def _actions(index: str, docs: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    """Bulk actions with the source already serialised (``streaming_bulk`` passes bytes through)."""
    for d in docs:
        if PARTIAL in d:
            yield {"_op_type": "update", "_index": index, "_id": d["_id"], "doc": d[PARTIAL]}
            continue
        src = {k: v for k, v in d.items() if k != "_id"}
        yield {"_op_type": "index", "_index": index, "_id": d["_id"], "_source": dumps_source(src)}


def _reason(info: dict[str, Any]) -> str:
    err = info.get("error", {})
    if isinstance(err, dict):
        caused = err.get("caused_by", {}) or {}
        parts = [err.get("type", "error"), err.get("reason", "")]
        if caused.get("reason"):
            parts.append(f"caused by: {caused['reason']}")
        return f"HTTP {info.get('status')}: " + " - ".join(p for p in parts if p)
    return f"HTTP {info.get('status')}: {err}"


def _status(e: Exception) -> int | None:
    return getattr(e, "status_code", None) or getattr(getattr(e, "meta", None), "status", None)


def _send_batch(
    es: Elasticsearch,
    index: str,
    docs: list[dict[str, Any]],
    opts: BulkOptions,
    rejects: RejectsWriter,
    on_retry: Callable[[str], None],
) -> tuple[int, int]:
    """Index one batch; (indexed, rejected).

    One retry loop, every retry logged through ``on_retry``: a failed request (connection lost,
    timeout, HTTP 429/502/503/504) re-sends the documents not yet acknowledged, and a document
    throttled on its own (per-item 429) is re-sent up to ``max_retries`` times. The wait doubles
    with each consecutive failure (``initial_backoff`` .. ``max_backoff``) and resets after
    progress; the load gives up when nothing was acknowledged for ``unavailable_timeout`` seconds.
    The client's own silent retries are turned off so none is hidden. Every attempt re-sends the
    same ids, so a retry never duplicates a document.
    """
    client = es.options(max_retries=0, retry_on_timeout=False)
    pending = {d["_id"]: d for d in docs}
    throttles: dict[str, int] = {}
    indexed = rejected = failures = 0
    last_progress = time.monotonic()
    while pending:
        progressed, throttled, error = False, 0, ""
        try:
            for ok, info in helpers.streaming_bulk(
                client,
                _actions(index, list(pending.values())),
                chunk_size=opts.chunk_size,
                max_chunk_bytes=opts.max_chunk_bytes,
                max_retries=0,
                raise_on_error=False,
                raise_on_exception=True,
            ):
                _, item = info.popitem()
                doc_id = str(item.get("_id"))
                if ok:
                    pending.pop(doc_id, None)
                    indexed += 1
                    progressed = True
                elif item.get("status") in RETRY_STATUS and throttles.get(doc_id, 0) < opts.max_retries:
                    throttles[doc_id] = throttles.get(doc_id, 0) + 1
                    throttled += 1
                else:
                    pending.pop(doc_id, None)
                    rejected += 1
                    rejects.write(Reject(record=doc_id, stage="index", reason=_reason(item)))
        except (es_exc.ConnectionError, es_exc.ConnectionTimeout, es_exc.ApiError) as e:
            status = _status(e)
            if isinstance(e, es_exc.ApiError) and status not in RETRY_STATUS:
                raise ToolkitError(f"bulk request to {index} failed: {type(e).__name__}: {e}") from e
            error = f"{type(e).__name__}" + (f", HTTP {status}" if status else "")
        if not pending:
            break
        now = time.monotonic()
        if progressed:
            failures, last_progress = 0, now
        failures += 1
        if error and now - last_progress > opts.unavailable_timeout:
            raise ToolkitError(
                f"bulk request to {index} failed: {error}; nothing acknowledged for "
                f"{opts.unavailable_timeout:.0f}s ({len(pending)} documents of the batch not loaded; "
                "run the same command again to resume)"
            )
        wait = min(opts.max_backoff, opts.initial_backoff * 2 ** (failures - 1))
        what = error or f"{throttled} document(s) throttled (HTTP 429)"
        on_retry(
            f"bulk request to {index} failed ({what}); {len(pending)} document(s) pending; "
            f"retry {failures} in {wait:.2f}s"
        )
        time.sleep(wait)
    return indexed, rejected


class _Deferred(RejectsWriter):
    """Collects the rejects of a batch sent on a worker thread; the loading thread writes them in order."""

    def __init__(self) -> None:
        super().__init__(None)
        self.rows: list[Reject] = []

    def write(self, reject: Reject) -> None:
        self.rows.append(reject)


@dataclass
class _InFlight:
    batch: Batch
    future: Future[tuple[int, int]] | None
    rejects: _Deferred


def bulk_load(
    es: Elasticsearch,
    index: str,
    batches: Iterable[Batch],
    rejects: RejectsWriter,
    checkpoint: Checkpoint | None = None,
    options: BulkOptions | None = None,
    progress: bool = False,
    on_batch: Callable[[LoadCounts], None] | None = None,
    *,
    mark_done: bool = True,
) -> LoadSummary:
    """Load ``batches`` into ``index``; after each batch the checkpoint (if any) records the position, and
    at the end that the load is done (unless ``mark_done`` is False: the caller marks it once its own last
    steps, such as an alias swap, are done too, so an interruption before them resumes instead).

    Batches are sent on worker threads while the next one is built; each is accounted (counts,
    rejects, checkpoint, the progress bar over steps read, ``on_batch`` with the batch's counts) in input
    order once it and every batch before it are fully acknowledged. When the input raises (e.g. Ctrl-C), batches already sent are still accounted before
    the error propagates; when a batch fails for good, nothing after it is checkpointed.
    """
    opts = options or BulkOptions()
    summary = LoadSummary(index=index)
    if checkpoint is not None:
        summary.resumed_from = checkpoint.position
    start = time.monotonic()
    lock = threading.Lock()

    def on_retry(message: str) -> None:
        with lock:
            summary.retries += 1
        log.warning(message)

    def account(item: _InFlight) -> None:
        indexed, failed = item.future.result() if item.future is not None else (0, 0)
        for reject in item.rejects.rows:
            rejects.write(reject)
        batch = item.batch
        step = LoadCounts(
            read=batch.read, indexed=indexed, rejected=batch.rejected + failed, skipped=batch.skipped
        )
        summary.counts.add(step)
        if checkpoint is not None:
            checkpoint.position = batch.position
            checkpoint.counts = summary.counts
            checkpoint.save()
        bar.update(step.read)
        if on_batch is not None:
            on_batch(step)
        if opts.max_errors is not None and summary.counts.rejected > opts.max_errors:
            summary.stopped_early = True

    workers = max(1, opts.concurrency)
    ahead = workers if opts.max_errors is None else 0  # batches left in flight while the next is built
    pending: deque[_InFlight] = deque()
    pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="bulk")
    bar = progress_bar(progress, f"indexing {index}", "step")
    try:
        for batch in batches:
            deferred = _Deferred()
            future = (
                pool.submit(_send_batch, es, index, batch.docs, opts, deferred, on_retry)
                if batch.docs
                else None
            )
            pending.append(_InFlight(batch, future, deferred))
            while len(pending) > ahead and not summary.stopped_early:
                account(pending[0])
                pending.popleft()
            if summary.stopped_early:
                break
        while pending:
            account(pending[0])
            pending.popleft()
    except BaseException:
        _account_sent(pending, account)
        raise
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
        bar.close()
    summary.seconds = time.monotonic() - start
    if checkpoint is not None and mark_done and not summary.stopped_early:
        checkpoint.done = True
        checkpoint.save()
    return summary


def _account_sent(pending: deque[_InFlight], account: Callable[[_InFlight], None]) -> None:
    """After an error: account the batches still in flight, in order, up to the first that failed."""
    while pending:
        item = pending[0]
        if item.future is not None and item.future.exception() is not None:
            break
        account(item)
        pending.popleft()
