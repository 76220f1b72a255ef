"""Resumable image feature extraction into a vector set (kind ``image``).

Photos are decoded and preprocessed by a DataLoader, in worker processes or (the default on
2 cores, where the forward pass already uses every core) in-process by a small thread pool
between forward passes; a photo that fails becomes a :class:`~toolkit.rejects.Reject`
(stage ``image``) and never takes its batch down. Features are
written batch by batch into a preallocated memory-mapped ``.npy`` under
``OUT_DIR/.image-features.partial/`` together with a per-item status array and a commit file,
so an interrupted run continues after its last committed batch when re-run with the same items
and encoder. At the end the successfully encoded rows are compacted (in chunks, never all in
memory) into ``OUT_DIR/vectors.npy`` + ``ids.txt`` + ``meta.json``
(see :mod:`toolkit.vectorset`) and the partial state is removed.
"""

from __future__ import annotations

import ctypes
import functools
import inspect
import json
import logging
import math
import os
import shutil
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, get_worker_info

from toolkit.atomic import write_json_atomic
from toolkit.data.columns import StringColumnBuilder
from toolkit.errors import ToolkitError
from toolkit.fingerprint import fingerprint
from toolkit.image.encoders import ImageEncoder, encoder_metadata
from toolkit.image.items import PhotoItems
from toolkit.image.loading import DEFAULT_MAX_PIXELS, ImageRejected, load_image
from toolkit.locks import exclusive
from toolkit.memory import new_memmap, release_pages
from toolkit.progress import progress_bar
from toolkit.rejects import Reject, RejectsWriter
from toolkit.resume import decide_resume
from toolkit.vectorset import (
    IDS,
    META,
    SOURCES,
    VECTORS,
    file_source,
    load_sources,
    read_lines,
    same_file,
    save_sources,
    save_vector_set,
    source_path,
)

log = logging.getLogger(__name__)

PARTIAL_DIR = ".image-features.partial"
_FEATURES = "features.npy"
_STATUS = "status.npy"
_PROGRESS = "progress.json"
_COMPACT = "compact.npy"
#: the rejected photos' reasons (JSON lines with their row), in the partial state and next to a finished set,
#: so a run that resumes or finds the set finished reports them again
PHOTO_REJECTS = "photo_rejects.jsonl"
_PENDING, _OK, _REJECTED = 0, 1, 2
#: Batches between giving the feature memmap's resident pages back (toolkit.memory.release_pages).
RELEASE_EVERY = 64
#: Rows copied at a time when compacting the memmap into the final vector set.
COMPACT_CHUNK = 8192


_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3


@functools.cache
def _libc() -> ctypes.CDLL | None:
    """glibc, when this process runs on it (``mallopt`` and ``malloc_trim`` are glibc's)."""
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:
        return None
    return libc if hasattr(libc, "mallopt") and hasattr(libc, "malloc_trim") else None


def tune_malloc_for_inference(threshold: int = 1 << 30) -> bool:
    """Keep big tensors on the malloc heap instead of fresh ``mmap`` pages (glibc only).

    By default glibc serves every allocation over 32 MiB with ``mmap`` and unmaps it on free, so
    each CNN forward pass page-faults its activations in again: on this project's 2-core test
    machine ResNet-50 spends a third of its time in the kernel (24 -> 43 images/s with this
    tuning). The cost: the process keeps its peak heap until it exits. Process-wide, so it is
    left to applications (``jrs embed-images`` calls it); returns False where unsupported.
    """
    libc = _libc()
    if libc is None:
        return False
    return bool(libc.mallopt(_M_MMAP_THRESHOLD, threshold)) and bool(
        libc.mallopt(_M_TRIM_THRESHOLD, threshold)
    )


def release_free_memory() -> None:
    """Give free heap pages back to the OS (``malloc_trim``), so forked workers share less.

    A forked DataLoader worker shares the parent's pages copy-on-write; every later write by
    the parent to a shared page then costs a page copy. Trimming first makes those writes
    cheap fresh pages instead.
    """
    libc = _libc()
    if libc is not None:
        libc.malloc_trim(0)


def default_num_workers(cores: int | None = None) -> int:
    """DataLoader workers for this machine: 0 (decode in-process) up to 2 cores, then 1, then cores/4.

    The forward pass already keeps every core busy through torch's threads; a worker can only
    take its CPU from them (and a pre-empted thread stalls its siblings), while adding
    inter-process copies. Measured on 2 cores (ResNet-50, 512x384 JPEGs): in-process decoding
    is the fastest pipeline. More cores leave room for workers.
    """
    cores = cores or os.cpu_count() or 2
    if cores <= 2:
        return 0
    return 1 if cores <= 4 else min(4, cores // 4)


class FeatureStateError(ToolkitError):
    """The output directory holds work from other items or another encoder."""


@dataclass
class FeatureResult:
    """What one call of :func:`extract_features` did; ``complete`` once the vector set is written."""

    out_dir: Path
    total: int
    encoded: int
    rejected: int
    dim: int
    encoder: str
    encoder_fingerprint: str
    complete: bool
    resumed_from: int = 0
    already_done: bool = False
    seconds: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["out_dir"] = str(self.out_dir)
        return out


@dataclass
class _Batch:
    start: int
    end: int
    ok: list[int]
    tensor: torch.Tensor | None
    failed: list[tuple[int, str]]


@functools.cache
def _decode_pool(pid: int, threads: int) -> ThreadPoolExecutor:
    """One decoding pool per process (keyed by pid: a forked worker must not reuse its parent's)."""
    return ThreadPoolExecutor(threads, thread_name_prefix="jrs-decode")


class _PhotoDataset(Dataset):
    """Item ``k`` is photo ``start + k``: returns ``(index, tensor)`` or ``(index, reason)``."""

    def __init__(
        self,
        paths: Sequence[str],
        start: int,
        preprocess: Callable[[Any], torch.Tensor],
        draft_size: int | None,
        max_pixels: int,
        threads: int = 1,
    ) -> None:
        self.paths = paths
        self.threads = threads
        self.start = start
        self.preprocess = preprocess
        self.draft_size = draft_size
        self.max_pixels = max_pixels

    def __len__(self) -> int:
        return len(self.paths) - self.start

    def __getitems__(self, ks: list[int]) -> list[tuple[int, torch.Tensor | str]]:
        """A batch, decoded by ``threads`` threads (PIL releases the GIL while decoding)."""
        if self.threads <= 1 or len(ks) <= 1:
            return [self[k] for k in ks]
        return list(_decode_pool(os.getpid(), self.threads).map(self.__getitem__, ks))

    def __getitem__(self, k: int) -> tuple[int, torch.Tensor | str]:
        i = self.start + k
        try:
            img = load_image(self.paths[i], max_pixels=self.max_pixels, draft_size=self.draft_size)
        except ImageRejected as e:
            return i, e.reason
        except Exception as e:  # a loader bug must not kill the batch either
            return i, f"could not load image ({type(e).__name__}: {e})"
        try:
            x = self.preprocess(img)
        except Exception as e:
            return i, f"preprocessing failed ({type(e).__name__}: {e})"
        if not isinstance(x, torch.Tensor) or x.ndim != 3:
            return i, f"preprocessing returned {type(x).__name__}, not a CHW tensor"
        return i, x


_NUMPY_DTYPES = (torch.float32, torch.float64, torch.float16, torch.uint8)


def _stack(tensors: list[torch.Tensor]) -> torch.Tensor:
    """``torch.stack`` of same-shape CPU tensors, as one single-threaded numpy copy where it can.

    In-process, between forward passes, torch's parallel copy waits on intra-op threads that the
    inference runtime's own threads still hold: measured in the Lite0 pipeline on 2 cores
    (OpenVINO f32, 384 photos), ``torch.stack`` took 0.4-1.2 s per run and this 0.04-0.06 s.
    """
    first = tensors[0]
    plain = first.dtype in _NUMPY_DTYPES and all(
        t.device.type == "cpu"
        and t.dtype == first.dtype
        and t.shape == first.shape
        and not t.requires_grad
        and not t.is_conj()
        and not t.is_neg()
        for t in tensors
    )
    if not plain:
        return torch.stack(tensors)
    return torch.from_numpy(np.stack([t.numpy() for t in tensors]))


def _collate(samples: list[tuple[int, torch.Tensor | str]]) -> _Batch:
    ok, tensors, failed = [], [], []
    for i, x in samples:
        if isinstance(x, torch.Tensor):
            ok.append(i)
            tensors.append(x)
        else:
            failed.append((i, x))
    batch = None
    if tensors:
        out = None
        if get_worker_info() is not None:  # stack straight into shared memory: one copy less
            shape = (len(tensors), *tensors[0].shape)
            storage = tensors[0].untyped_storage()._new_shared(math.prod(shape) * tensors[0].element_size())
            out = tensors[0].new(storage).resize_(shape)
        batch = torch.stack(tensors, out=out) if out is not None else _stack(tensors)
    return _Batch(samples[0][0], samples[-1][0] + 1, ok, batch, failed)


def items_fingerprint(items: Sequence[tuple[str, Path]]) -> str:
    """Identity of an item list (step ids and photo paths, in order): the hash of ``[[id, path], ...]``,
    computed in pieces (no list of a million pairs is built)."""
    columns = items if isinstance(items, PhotoItems) else PhotoItems.of(items)
    return fingerprint("image-items/1", columns.canonical_json_chunks())


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        obj = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return obj if isinstance(obj, dict) else None


_LABELS = {"encoder_fingerprint": "encoder fingerprint", "items_fingerprint": "item list fingerprint"}


def _check_state(what: str, found: dict[str, Any], enc_fp: str, items_fp: str, out_dir: Path) -> None:
    """Refuse ``found`` (an unfinished run or a vector set) unless it was made by this encoder from these items."""
    expected = {"encoder_fingerprint": enc_fp, "items_fingerprint": items_fp}
    decision = decide_resume(found, expected, labels=_LABELS)
    if decision.action == "mismatch":
        hint = "use another output directory or overwrite=True (--overwrite) to replace it"
        raise FeatureStateError(decision.refusal(out_dir, what, hint))


def _holds_other(out_dir: Path, enc_fp: str, items_fp: str, paths: Sequence[str]) -> bool:
    """``out_dir`` holds an unfinished run or a vector set made from other items or by another encoder, or a
    vector set older than some of its photos."""
    for what, path in (
        ("an unfinished run", out_dir / PARTIAL_DIR / _PROGRESS),
        ("a vector set", out_dir / META),
    ):
        found = _read_json(path)
        if found is not None:
            try:
                _check_state(what, found, enc_fp, items_fp, out_dir)
                if path.name == META:
                    _check_photos_unchanged(out_dir, paths)
            except FeatureStateError as e:
                log.info("replacing the photo features in %s: %s", out_dir, e)
                return True
            return False
    return False


def _check_photos_unchanged(out_dir: Path, paths: Sequence[str]) -> None:
    """Refuse the vector set in ``out_dir`` when a photo file changed after it was encoded: the same step ids
    and paths do not make the same photos. A row whose source file was recorded (``sources.txt``) must be that
    same file (size and mtime: a picture replaced by an older one, ``cp -p`` or ``rsync -a``, is caught); a
    rejected photo, or any photo of a set written before sources were kept, must be older than the set (one
    that still cannot be read is a reject again, replayed)."""
    written = (out_dir / META).stat().st_mtime_ns
    count = int((_read_json(out_dir / META) or {}).get("count", -1))
    sources = load_sources(out_dir, count) if count >= 0 else None
    changed, first, row = 0, "", 0
    for p in paths:
        if sources is not None and row < len(sources) and source_path(sources[row]) == str(p):
            stale = not same_file(sources[row], p)  # rows keep the items' order: a merge, no lookup table
            row += 1
        else:
            stale = _newer_than(p, written)
        if stale:
            changed, first = changed + 1, first or str(p)
    if changed:
        raise FeatureStateError(
            f"{out_dir} holds features of {changed} photo(s) that changed after they were encoded (first: {first}); "
            "use overwrite=True (--overwrite) to encode them again"
        )


def _set_damage(out_dir: Path, meta: dict[str, Any] | None) -> str | None:
    """What is wrong with the finished vector set in ``out_dir`` (its ``meta``: None when unreadable): a
    meta that is no JSON object, a vectors file cut short or damaged, or vectors and ids that do not number
    what the meta says; None when nothing is."""
    if meta is None:
        return f"{META} is not a JSON object"
    try:
        vectors = np.load(out_dir / VECTORS, mmap_mode="r", allow_pickle=False)
        ids = len(read_lines(out_dir / IDS))
    except (FileNotFoundError, ValueError, EOFError, ToolkitError) as e:
        # missing, cut short or not the format: damage. Any other OSError (permission, I/O, too many open
        # files, no memory for the map) says nothing of the set, which `jrs build` would delete and encode again
        return f"{VECTORS} or {IDS} cannot be read: {e}"
    expected = (meta.get("count"), meta.get("dim"))
    if vectors.shape != expected or ids != expected[0]:
        return (
            f"{META} says {expected[0]} x {expected[1]}, {VECTORS} holds {vectors.shape} and {IDS} {ids} ids"
        )
    return None


def _newer_than(path: str | Path, written_ns: int) -> bool:
    try:
        return os.stat(path).st_mtime_ns > written_ns
    except OSError:
        return False


def _clear_final(out_dir: Path) -> None:
    for name in (VECTORS, IDS, META, SOURCES, PHOTO_REJECTS):
        (out_dir / name).unlink(missing_ok=True)


def _replay_rejects(path: Path, below: int, rejects: RejectsWriter | None) -> None:
    """Report again the rejects of rows ``< below`` kept in ``path`` (the last line per row counts: a batch
    redone after a crash logs its rejects twice)."""
    rows: dict[int, Reject] = {}
    if path.is_file():
        for line in path.read_text(encoding="utf-8").splitlines():
            if line.strip():
                item = json.loads(line)
                if item["row"] < below:
                    rows[item["row"]] = Reject(item["record"], "image", item["reason"])
    for row in sorted(rows):
        _report(rows[row], rejects)


def _report(reject: Reject, rejects: RejectsWriter | None) -> None:
    if rejects is not None:
        rejects.write(reject)
    else:
        log.warning("rejected %s", reject)


def _open_state(
    work: Path, total: int, dim: int, header: dict[str, Any], state: dict[str, Any] | None
) -> tuple[np.memmap, np.memmap, int]:
    """Open the memmaps of an unfinished run (``state``: its commit file) or create fresh ones."""
    fpath, spath = work / _FEATURES, work / _STATUS
    if state is not None:
        try:
            for path in (fpath, spath):  # read-only first: r+ would silently zero-extend a file cut short
                np.load(path, mmap_mode="r", allow_pickle=False)
            feats = np.lib.format.open_memmap(fpath, mode="r+")
            status = np.lib.format.open_memmap(spath, mode="r+")
        except (FileNotFoundError, ValueError, EOFError) as e:  # another OSError is no damage: raised as is
            raise FeatureStateError(
                f"partial state in {work} is damaged ({e}); rerun with overwrite=True"
            ) from e
        done = state.get("done")
        if feats.shape != (total, dim) or status.shape != (total,) or not isinstance(done, int):
            raise FeatureStateError(f"partial state in {work} is inconsistent; rerun with overwrite=True")
        if not 0 <= done <= total:
            raise FeatureStateError(f"partial state in {work} is inconsistent; rerun with overwrite=True")
        return feats, status, done
    work.mkdir(parents=True, exist_ok=True)
    feats = new_memmap(fpath, np.float32, (total, dim))
    status = new_memmap(spath, np.uint8, (total,))
    write_json_atomic(work / _PROGRESS, {**header, "done": 0}, indent=1)
    return feats, status, 0


def _finalize(
    out_dir: Path,
    work: Path,
    items: PhotoItems,
    feats: np.ndarray,
    status: np.ndarray,
    meta: dict[str, Any],
) -> int:
    """Compact the OK rows chunk by chunk into the final vector set; return how many."""
    ok_rows = np.flatnonzero(np.asarray(status) == _OK)
    dim = feats.shape[1]
    if len(ok_rows):
        compact = new_memmap(work / _COMPACT, np.float32, (len(ok_rows), dim))
        for a in range(0, len(ok_rows), COMPACT_CHUNK):
            rows = ok_rows[a : a + COMPACT_CHUNK]
            compact[a : a + len(rows)] = feats[rows]
            release_pages(feats)  # written data stays in the files; RSS stays flat in N
            release_pages(compact)
        compact.flush()
    else:
        compact = np.zeros((0, dim), dtype=np.float32)
    save_vector_set(out_dir, items.ids.take(ok_rows), compact, meta)
    sources = StringColumnBuilder()  # which photo file each row is, as it was: reuse checks it
    for path in items.paths.take(ok_rows):
        sources.append(file_source(path))
    save_sources(out_dir, sources.build())
    del compact
    return len(ok_rows)


def _extract_features(
    items: Sequence[tuple[str, Path]],
    encoder: ImageEncoder,
    out_dir: str | Path,
    batch_size: int = 32,
    num_workers: int | None = None,
    rejects: RejectsWriter | None = None,
    progress: bool = True,
    *,
    overwrite: bool = False,
    replace_other: bool = False,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    max_batches: int | None = None,
    on_batch: Callable[[int, int], None] | None = None,
    start_method: str | None = None,
) -> FeatureResult:
    """Encode the photo of each ``(step_id, absolute path)`` into a vector set at ``out_dir``.

    Re-running with the same items and encoder fingerprint resumes an interrupted run (or
    returns at once when it already finished); different items or encoder raise
    :class:`FeatureStateError` unless ``overwrite`` (or ``replace_other``, which replaces only such
    a run or set: what ``jrs build`` does in the model directory it owns). ``max_batches`` stops after that many
    batches (the result is then ``complete=False``); ``on_batch(done, total)`` is called after
    each committed batch. Rejected photos go to ``rejects`` (or the log) with stage ``image``.
    ``num_workers`` DataLoader processes decode the photos (``None``: :func:`default_num_workers`).
    ``start_method`` picks how workers start (``"fork"``, ``"forkserver"``, ``"spawn"``;
    default: torch's choice, ``fork`` on Linux); with the latter two the encoder's
    ``preprocess`` is pickled and scripts need the ``if __name__ == "__main__"`` guard.
    ``out_dir`` is locked while it runs: a second run into it (another `jrs embed-images`, or one beside a
    `jrs build` of that model) raises :class:`~toolkit.locks.Busy` instead of sharing its files.
    """
    t0 = time.perf_counter()
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    items = PhotoItems.of(items)  # checked; two string columns, not a Python object per photo
    out_dir = Path(out_dir)
    work = out_dir / PARTIAL_DIR
    total, dim = len(items), int(encoder.dim)
    enc_fp, items_fp = encoder.fingerprint, items_fingerprint(items)
    header = {
        "version": 1,
        "encoder": encoder.name,
        "encoder_fingerprint": enc_fp,
        "items_fingerprint": items_fp,
        "total": total,
        "dim": dim,
    }

    def result(
        encoded: int, rejected: int, complete: bool, resumed: int = 0, done: bool = False
    ) -> FeatureResult:
        secs = time.perf_counter() - t0
        return FeatureResult(
            out_dir, total, encoded, rejected, dim, encoder.name, enc_fp, complete, resumed, done, secs
        )

    if overwrite or (replace_other and _holds_other(out_dir, enc_fp, items_fp, items.paths)):
        shutil.rmtree(work, ignore_errors=True)
        _clear_final(out_dir)
    state = _read_json(work / _PROGRESS)
    if state is not None:
        _check_state("an unfinished run", state, enc_fp, items_fp, out_dir)
    elif (out_dir / META).is_file():
        final = _read_json(out_dir / META)
        damage = _set_damage(out_dir, final)
        if damage is None:
            assert final is not None
            _check_state("a vector set", final, enc_fp, items_fp, out_dir)
            _check_photos_unchanged(out_dir, items.paths)
            _replay_rejects(out_dir / PHOTO_REJECTS, total, rejects)
            return result(int(final.get("count", 0)), int(final.get("rejected", 0)), True, total, True)
        if not replace_other:
            raise FeatureStateError(
                f"{out_dir} holds a damaged vector set ({damage}); use overwrite=True (--overwrite) to encode "
                "the photos again"
            )
        log.info("replacing the damaged photo features in %s: %s", out_dir, damage)
        _clear_final(out_dir)
        shutil.rmtree(work, ignore_errors=True)
    elif work.exists():
        shutil.rmtree(work)  # a crash before the first commit file: nothing to keep

    try:
        feats, status, done = _open_state(work, total, dim, header, state)
    except FeatureStateError as e:
        if state is None or not replace_other:
            raise
        log.info("starting the photo features in %s again: %s", out_dir, e)
        shutil.rmtree(work, ignore_errors=True)
        state = None
        feats, status, done = _open_state(work, total, dim, header, state)
    resumed_from = done
    _replay_rejects(work / PHOTO_REJECTS, done, rejects)
    if done:
        log.info("resuming image features in %s at %d/%d", out_dir, done, total)
    paths = items.paths
    draft = getattr(encoder, "load_size", None) or None
    dataset = _PhotoDataset(paths, done, encoder.preprocess, draft, max_pixels)
    if num_workers is None:
        num_workers = default_num_workers()
    workers = num_workers if len(dataset) > batch_size else 0
    # In-process decoding runs between forward passes, when the cores are free: use them all.
    dataset.threads = 1 if workers else min(4, os.cpu_count() or 1)
    if workers and start_method in (None, "fork"):
        release_free_memory()
    loader = DataLoader(
        dataset,
        batch_size=batch_size,
        shuffle=False,
        num_workers=workers,
        collate_fn=_collate,
        multiprocessing_context=start_method if workers else None,
        # pinned batches let the encoder's non-blocking copies to a GPU overlap the forward pass
        pin_memory=str(getattr(encoder, "device", "cpu")).startswith("cuda"),
    )
    bar = progress_bar(progress, "image features", "img", total=total, initial=done)
    batches = 0
    try:
        for batch in loader if len(dataset) else ():
            _encode_into(batch, encoder, feats, status, items, rejects, work / PHOTO_REJECTS)
            feats.flush()
            if batches % RELEASE_EVERY == 0:
                release_pages(feats)
            status.flush()
            done = batch.end
            write_json_atomic(work / _PROGRESS, {**header, "done": done}, indent=1)
            bar.update(batch.end - batch.start)
            batches += 1
            if on_batch is not None:
                on_batch(done, total)
            if max_batches is not None and batches >= max_batches and done < total:
                break
    finally:
        bar.close()
    n_rej = int(np.count_nonzero(np.asarray(status[:done]) == _REJECTED))
    if done < total:
        n_ok = int(np.count_nonzero(np.asarray(status[:done]) == _OK))
        return result(n_ok, n_rej, False, resumed_from)
    meta = {"kind": "image", **encoder_metadata(encoder), "items_fingerprint": items_fp}
    meta.update({"items": total, "rejected": n_rej})
    n_ok = _finalize(out_dir, work, items, feats, status, meta)
    del feats, status
    if (work / PHOTO_REJECTS).is_file():
        os.replace(work / PHOTO_REJECTS, out_dir / PHOTO_REJECTS)
    shutil.rmtree(work, ignore_errors=True)
    return result(n_ok, n_rej, True, resumed_from)


@functools.wraps(_extract_features)
def extract_features(*args: Any, **kwargs: Any) -> FeatureResult:
    out_dir = Path(inspect.signature(_extract_features).bind(*args, **kwargs).arguments["out_dir"])
    out_dir.mkdir(parents=True, exist_ok=True)
    with exclusive(out_dir, f"an encoding of photos into {out_dir}"):
        return _extract_features(*args, **kwargs)


def _encode_into(
    batch: _Batch,
    encoder: ImageEncoder,
    feats: np.ndarray,
    status: np.ndarray,
    items: Sequence[tuple[str, Path]],
    rejects: RejectsWriter | None,
    reasons_log: Path,
) -> None:
    failed = list(batch.failed)
    if batch.tensor is not None:
        vecs = encoder.encode_batch(batch.tensor)
        if not isinstance(vecs, np.ndarray) or vecs.shape != (len(batch.ok), feats.shape[1]):
            shape = getattr(vecs, "shape", None)
            raise ToolkitError(
                f"encoder {encoder.name} returned {shape} for a batch of {len(batch.ok)}; "
                f"expected ({len(batch.ok)}, {feats.shape[1]})"
            )
        finite = np.isfinite(vecs).all(axis=1)
        rows = np.asarray(batch.ok)
        feats[rows[finite]] = vecs[finite]
        status[rows[finite]] = _OK
        failed += [(int(i), "encoder produced non-finite values (NaN/inf)") for i in rows[~finite]]
    if not failed:
        return
    with reasons_log.open("a", encoding="utf-8") as fh:  # before the batch is committed: never lost
        for i, reason in sorted(failed):
            status[i] = _REJECTED
            reject = Reject(record=items[i][0], stage="image", reason=f"{reason}: {items[i][1]}")
            fh.write(json.dumps({"row": int(i), "record": reject.record, "reason": reject.reason}) + "\n")
            _report(reject, rejects)
