"""Split a collection's photos over machines (``--shard I/N``) and merge the shard vector sets.

A step belongs to shard ``I`` of ``N`` when a stable hash of its step id (BLAKE2b, not Python's
salted ``hash()``) is ``I - 1`` modulo ``N``, so every machine computes the same split from the
same dataset without talking to the others. Each shard's output directory is an ordinary vector
set plus ``shard.json`` (which shard, of how many, of which item list) and ``positions.npy`` (each
row's position in the full item list); its ``photo_rejects.jsonl`` also gives each rejected photo's
position. :func:`merge_vector_sets` checks that the shards belong together (same encoder, same full
item list, every shard exactly once, no id twice, every photo a row or a reject) and writes one vector
set that is row for row what one unsharded run writes: same ids, order, vectors, metadata and photo
rejects. Vectors are copied in blocks into a memory-mapped file, never all in memory.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

from toolkit.atomic import atomic_path, write_json_atomic, write_text_atomic
from toolkit.errors import ConfigError, ToolkitError
from toolkit.memory import new_memmap
from toolkit.vectorset import IDS, META, SOURCES, VECTORS, load_sources, load_vector_set, save_sources

log = logging.getLogger(__name__)

SHARD_FILE = "shard.json"
POSITIONS = "positions.npy"
#: key added to each line of a shard's photo rejects: the photo's position in the full item list
REJECT_POSITION = "position"
#: what ``shard.json`` holds (besides its format), and of which type
_SHARD_KEYS = {"index": int, "count": int, "items_total": int, "all_items_fingerprint": str, "rows": int}
#: Rows copied at a time when merging.
MERGE_BLOCK = 16384
_SPEC = re.compile(r"^\s*(\d+)\s*/\s*(\d+)\s*$")

T = TypeVar("T")


class ShardMergeError(ToolkitError):
    """Shard vector sets that do not make one collection together."""


@dataclass(frozen=True)
class Shard:
    """Shard ``index`` (1-based) of ``count``."""

    index: int
    count: int

    def __str__(self) -> str:
        return f"{self.index}/{self.count}"


def parse_shard(spec: str) -> Shard:
    """``"I/N"`` with ``1 <= I <= N`` -> :class:`Shard`; a clear error otherwise."""
    m = _SPEC.match(spec or "")
    if m is None:
        raise ConfigError(f"--shard {spec!r}: expected I/N, e.g. 1/3 (shard I of N, counting from 1)")
    index, count = int(m.group(1)), int(m.group(2))
    if count < 1 or not 1 <= index <= count:
        raise ConfigError(f"--shard {spec!r}: need 1 <= I <= N, got I={index}, N={count}")
    return Shard(index, count)


def shard_of(step_id: str, count: int) -> int:
    """The 1-based shard of ``step_id`` among ``count``: the same on every machine and Python run."""
    digest = hashlib.blake2b(step_id.encode("utf-8"), digest_size=8).digest()
    return int.from_bytes(digest, "big") % count + 1


def select_shard(items: Sequence[tuple[str, T]], shard: Shard) -> tuple[list[tuple[str, T]], np.ndarray]:
    """The items of ``shard`` (in their order) and their positions in ``items``."""
    positions = [n for n, (sid, _) in enumerate(items) if shard_of(sid, shard.count) == shard.index]
    return [items[n] for n in positions], np.asarray(positions, dtype=np.int64)


def extract_shard_features(
    items: Sequence[tuple[str, Path]], shard: Shard, encoder: Any, out_dir: str | Path, **kwargs: Any
) -> Any:
    """:func:`~toolkit.image.features.extract_features` on the items of ``shard``, recorded as a shard.

    Returns the feature result; once complete, ``out_dir`` also holds ``shard.json`` and
    ``positions.npy`` for :func:`merge_vector_sets`.
    """
    from toolkit.image.features import extract_features, items_fingerprint

    items = list(items)
    selected, positions = select_shard(items, shard)
    result = extract_features(selected, encoder, out_dir, **kwargs)
    if result.complete:
        position_of = {sid: int(p) for (sid, _), p in zip(selected, positions, strict=True)}
        ids = load_vector_set(out_dir).ids
        _locate_rejects(Path(out_dir), positions)
        _write_shard_info(Path(out_dir), shard, items_fingerprint(items), len(items), ids, position_of)
    return result


def _locate_rejects(d: Path, positions: np.ndarray) -> None:
    """Add to each line of the shard's photo rejects (numbered by the shard's own rows, which its reruns
    replay) the photo's position in the full item list (:data:`REJECT_POSITION`), which the merge numbers
    them by."""
    from toolkit.image.features import PHOTO_REJECTS

    path = d / PHOTO_REJECTS
    if not path.is_file():
        return
    lines = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    located = [{**item, REJECT_POSITION: int(positions[item["row"]])} for item in lines]
    write_text_atomic(path, "".join(json.dumps(item) + "\n" for item in located))


def _write_shard_info(
    d: Path,
    shard: Shard,
    all_items_fingerprint: str,
    total: int,
    ids: Sequence[str],
    position_of: dict[str, int],
) -> None:
    positions = np.asarray([position_of[i] for i in ids], dtype=np.int64)
    with atomic_path(d / POSITIONS) as tmp, tmp.open("wb") as f:
        np.save(f, positions)
    info = {
        "format": "jrs-shard/1",
        "index": shard.index,
        "count": shard.count,
        "items_total": total,
        "all_items_fingerprint": all_items_fingerprint,
        "rows": len(positions),
    }
    write_json_atomic(d / SHARD_FILE, info, indent=1)


@dataclass
class MergeResult:
    out_dir: Path
    shards: int
    rows: int
    dim: int
    items: int
    rejected: int
    #: the rejected photos' reasons (:data:`~toolkit.image.features.PHOTO_REJECTS`), when any
    photo_rejects: Path | None = None

    def to_dict(self) -> dict[str, Any]:
        photo_rejects = str(self.photo_rejects) if self.photo_rejects else None
        return {**self.__dict__, "out_dir": str(self.out_dir), "photo_rejects": photo_rejects}


def _rerun_hint(d: Path) -> str:
    return f"rerun `jrs embed-images DATASET {d} --shard I/N` with its options (it finds its photos done)"


def _read_shard(d: Path) -> tuple[dict[str, Any], dict[str, Any], np.ndarray, Any]:
    info_path = d / SHARD_FILE
    if not info_path.is_file():
        raise ShardMergeError(
            f"{d} is not a shard vector set: no {SHARD_FILE} (made by embed-images --shard)"
        )
    try:
        info = json.loads(info_path.read_text(encoding="utf-8"))
    except ValueError as e:  # not JSON, not UTF-8
        raise ShardMergeError(f"{info_path} is damaged (not valid JSON: {e}); {_rerun_hint(d)}") from e
    try:
        vs = load_vector_set(d)
        positions = np.load(d / POSITIONS)
    except (ValueError, OSError) as e:  # damaged meta.json or .npy, a file missing
        raise ShardMergeError(f"{d} is a damaged shard vector set ({e}); {_rerun_hint(d)}") from e
    bad = [
        k for k, kind in _SHARD_KEYS.items() if not isinstance(info, dict) or type(info.get(k)) is not kind
    ]
    if bad:
        raise ShardMergeError(f"{info_path} is damaged: no valid {', '.join(bad)}; {_rerun_hint(d)}")
    if positions.shape != (len(vs.ids),) or info.get("rows") != len(vs.ids):
        raise ShardMergeError(f"{d}: {POSITIONS} has {positions.shape[0]} rows, the vector set {len(vs.ids)}")
    return info, vs.meta, positions, vs


def _read_photo_rejects(d: Path, meta: dict[str, Any]) -> dict[int, dict[str, Any]]:
    """The shard's rejected photos by their position in the full item list (the last line of a row counts,
    as when a run replays them); refuses a shard whose rejects lack their positions."""
    from toolkit.image.features import PHOTO_REJECTS

    path, rows = d / PHOTO_REJECTS, {}
    try:
        if path.is_file():
            for line in path.read_text(encoding="utf-8").splitlines():
                if line.strip():
                    item = json.loads(line)
                    rows[int(item["row"])] = item
        located = {int(item[REJECT_POSITION]): item for item in rows.values() if REJECT_POSITION in item}
    except (ValueError, KeyError, TypeError) as e:
        raise ShardMergeError(f"{path} is damaged ({e}); {_rerun_hint(d)}") from e
    rejected = int(meta.get("rejected", 0))
    if len(located) != rejected:
        raise ShardMergeError(
            f"{d}: {rejected} of its photos were rejected, but its {PHOTO_REJECTS} gives the item-list position of "
            f"{len(located)} (a shard written before shards recorded them); {_rerun_hint(d)}"
        )
    return located


def _check_out_dir(out: Path, dirs: Sequence[Path], overwrite: bool) -> None:
    """Refuse an ``out`` that is one of the shards, or (unless ``overwrite``) a vector set or a non-empty
    directory."""
    for d in dirs:
        if out.exists() and d.exists() and os.path.samefile(out, d):
            raise ShardMergeError(f"OUT_DIR {out} is the shard {d}: merging into it would destroy the shard")
    if out.exists() and not out.is_dir():
        raise ShardMergeError(f"OUT_DIR {out} is a file, not a directory")
    if not overwrite and out.is_dir() and any(out.iterdir()):
        what = "holds a vector set" if (out / META).is_file() else "is not empty"
        raise ShardMergeError(
            f"OUT_DIR {out} {what}; pass --overwrite to replace it (or use a new directory)"
        )


def _clear_out_dir(out: Path) -> None:
    """Remove every file an earlier vector set (of any stage, or an unfinished run) left in ``out``; other
    files stay."""
    from toolkit.image.features import PARTIAL_DIR, PHOTO_REJECTS
    from toolkit.pipeline import REJECTS_FILE
    from toolkit.text.tokens import TOKEN_IDS, TOKEN_OFFSETS

    names = (VECTORS, IDS, META, SOURCES, PHOTO_REJECTS, SHARD_FILE, POSITIONS, TOKEN_IDS, TOKEN_OFFSETS)
    for name in (*names, REJECTS_FILE):
        (out / name).unlink(missing_ok=True)
    shutil.rmtree(out / PARTIAL_DIR, ignore_errors=True)


def merge_vector_sets(
    shard_dirs: Sequence[str | Path], out_dir: str | Path, *, overwrite: bool = False
) -> MergeResult:
    """Merge the shard vector sets in ``shard_dirs`` (any order) into one at ``out_dir``.

    Refuses (:class:`ShardMergeError`, naming the directory and the reason) shards of different
    encoders or item lists, a shard given twice or missing, ids in two shards, and rows whose
    positions disagree with their shard; an ``out_dir`` that is one of the shards, and (unless
    ``overwrite``, which replaces every file of the set there) one holding a vector set or other files.
    """
    dirs = [Path(d) for d in shard_dirs]
    if not dirs:
        raise ShardMergeError("no shard directories given")
    out = Path(out_dir)
    _check_out_dir(out, dirs, overwrite)  # before any reading; emptied once the shards pass their checks
    shards = [(d, *_read_shard(d)) for d in dirs]
    first_dir, first_info, first_meta = shards[0][0], shards[0][1], shards[0][2]
    keys = ("count", "items_total", "all_items_fingerprint")
    same_meta = ("kind", "encoder", "encoder_fingerprint", "dim")
    seen: dict[int, Path] = {}
    for d, info, meta, _, _ in shards:
        for k in keys:
            if info.get(k) != first_info.get(k):
                raise ShardMergeError(
                    f"{d}: {k} {info.get(k)!r} differs from {first_info.get(k)!r} of {first_dir} "
                    "(shards of another item list or split)"
                )
        for k in same_meta:
            if meta.get(k) != first_meta.get(k):
                raise ShardMergeError(
                    f"{d}: {k} {meta.get(k)!r} differs from {first_meta.get(k)!r} of {first_dir} "
                    "(shards made with another encoder)"
                )
        index = int(info["index"])
        if index in seen:
            raise ShardMergeError(f"{d}: shard {index}/{info['count']} is also given as {seen[index]}")
        seen[index] = d
    count = int(first_info["count"])
    missing = sorted(set(range(1, count + 1)) - set(seen))
    if missing:
        raise ShardMergeError(f"missing shard(s) {', '.join(f'{i}/{count}' for i in missing)} of {count}")

    positions = np.concatenate([s[3] for s in shards])
    order = np.argsort(positions, kind="stable")
    sorted_pos = positions[order]
    dup = np.flatnonzero(sorted_pos[1:] == sorted_pos[:-1])
    if len(dup) or (len(sorted_pos) and (sorted_pos[0] < 0 or sorted_pos[-1] >= first_info["items_total"])):
        raise ShardMergeError(
            "shards overlap or hold rows outside the item list (a position twice or out of range)"
        )
    for d, info, _, _, vs in shards:
        wrong = [sid for sid in vs.ids if shard_of(sid, count) != info["index"]]
        if wrong:
            raise ShardMergeError(f"{d}: step {wrong[0]!r} does not belong to shard {info['index']}/{count}")
    photo_rejects = _merged_rejects(shards, sorted_pos, int(first_info["items_total"]))

    dim = int(first_meta["dim"])
    out.mkdir(parents=True, exist_ok=True)
    _clear_out_dir(out)
    source = np.concatenate([np.full(len(s[3]), k, dtype=np.int32) for k, s in enumerate(shards)])
    local = np.concatenate([np.arange(len(s[3]), dtype=np.int64) for s in shards])
    src_sorted, local_sorted = source[order], local[order]
    with atomic_path(out / VECTORS) as tmp:
        merged = new_memmap(tmp, np.float32, (len(order), dim))
        for a in range(0, len(order), MERGE_BLOCK):
            src, loc = src_sorted[a : a + MERGE_BLOCK], local_sorted[a : a + MERGE_BLOCK]
            for k in np.unique(src):
                sel = src == k
                merged[a + np.flatnonzero(sel)] = shards[k][4].vectors[loc[sel]]
        merged.flush()
        del merged
    ids = [shards[k][4].ids[m] for k, m in zip(src_sorted.tolist(), local_sorted.tolist(), strict=True)]
    rejected = sum(int(s[2].get("rejected", 0)) for s in shards)
    meta = {k: v for k, v in first_meta.items() if k not in ("count", "dim")}
    ran = sorted({f"{s[2].get('encoder_backend')} {s[2].get('encoder_precision')}" for s in shards})
    if len(ran) > 1:  # shards run on other backends (each within tolerance of torch): say so, not the first's
        meta.update({"encoder_backend": "mixed", "encoder_precision": None, "encoder_backends": ran})
    meta.update(
        {
            "items_fingerprint": first_info["all_items_fingerprint"],
            "items": int(first_info["items_total"]),
            "rejected": rejected,
        }
    )
    write_text_atomic(out / IDS, "".join(f"{i}\n" for i in ids))
    shard_sources = [load_sources(s[0], len(s[4].ids)) for s in shards]
    if all(src is not None for src in shard_sources):  # the merged set knows its photo files too
        save_sources(
            out,
            [shard_sources[k][m] for k, m in zip(src_sorted.tolist(), local_sorted.tolist(), strict=True)],
        )
    rejects_file = _write_photo_rejects(out, photo_rejects)
    write_json_atomic(out / META, {**meta, "count": len(ids), "dim": dim})
    log.info("merged %d shards into %s: %d rows", len(shards), out, len(ids))
    return MergeResult(
        out, len(shards), len(ids), dim, int(first_info["items_total"]), rejected, rejects_file
    )


def _merged_rejects(shards: Sequence[tuple], rows: np.ndarray, total: int) -> dict[int, dict[str, Any]]:
    """Every shard's rejected photos by position in the item list; refuses rejects that are rows too, out of
    range, or that with the (sorted, checked) row positions ``rows`` do not cover the ``total`` photos."""
    rejects: dict[int, dict[str, Any]] = {}
    for d, _, meta, _, _ in shards:
        for position, item in _read_photo_rejects(d, meta).items():
            if position in rejects or not 0 <= position < total:
                raise ShardMergeError(
                    f"{d}: rejected photo {item.get('record')!r} is placed outside the item list or where another "
                    "shard's is (a position twice or out of range)"
                )
            rejects[position] = item
    placed = np.fromiter(rejects, dtype=np.int64, count=len(rejects))
    if np.isin(placed, rows).any():
        raise ShardMergeError("shards overlap: a photo is both a row and a rejected photo")
    if len(rows) + len(rejects) != total:
        raise ShardMergeError(
            f"the shards hold {len(rows)} rows and {len(rejects)} rejected photos, but the item list has {total}"
        )
    return rejects


def _write_photo_rejects(out: Path, rejects: dict[int, dict[str, Any]]) -> Path | None:
    """The merged :data:`~toolkit.image.features.PHOTO_REJECTS`, numbered by position in the item list as one
    unsharded run numbers its rows (none when no photo was rejected, as there)."""
    from toolkit.image.features import PHOTO_REJECTS

    if not rejects:
        return None
    lines = (
        json.dumps({"row": p, "record": rejects[p]["record"], "reason": rejects[p]["reason"]}) + "\n"
        for p in sorted(rejects)
    )
    write_text_atomic(out / PHOTO_REJECTS, "".join(lines))
    return out / PHOTO_REJECTS
