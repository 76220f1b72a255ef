"""Bulk loading against a real node: counts, idempotency, per-document errors, resume."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from elasticsearch import Elasticsearch

from toolkit.index import lifecycle
from toolkit.index.bulk import Batch, BulkOptions, Checkpoint, bulk_load
from toolkit.index.template import IndexModelInfo
from toolkit.rejects import RejectsWriter, read_rejects

DIMS = 8


def _doc(recipe: int, pos: int, rng: np.random.Generator, dims: int = DIMS) -> dict:
    v = rng.normal(size=dims)
    v /= np.linalg.norm(v)
    return {
        "_id": f"r{recipe}:{pos}",
        "step_id": f"r{recipe}:{pos}",
        "recipe_id": f"r{recipe}",
        "position": pos,
        "text": f"手順 {pos}",
        "tokens": f"手順 {pos}",
        "has_image": True,
        "image_vector": v.tolist(),
        "text_vector": v.tolist(),
    }


def _batches(n_recipes: int, steps: int = 3, seed: int = 0, start: int = 0, bad: set[str] = frozenset()):
    rng = np.random.default_rng(seed)
    for r in range(n_recipes):
        docs = []
        for p in range(1, steps + 1):
            d = _doc(r, p, rng)
            if d["_id"] in bad:
                d["image_vector"] = d["image_vector"][:3]  # wrong dims: Elasticsearch rejects it
            docs.append(d)
        if r < start:
            yield Batch(docs=[], read=len(docs), skipped=len(docs), position=r + 1)
        else:
            yield Batch(docs=docs, read=len(docs), position=r + 1)


@pytest.fixture
def target(es: Elasticsearch, index_name: str) -> str:
    lifecycle.put_template(es, index_name, IndexModelInfo(fingerprint="x", dims=DIMS, backbone="test"))
    return lifecycle.create_version(es, index_name)


def _count(es: Elasticsearch, index: str) -> int:
    es.indices.refresh(index=index)
    return es.count(index=index)["count"]


def test_counts_and_second_identical_load_is_idempotent(es, target, tmp_path) -> None:
    opts = BulkOptions(chunk_size=7)  # several chunks per batch
    with RejectsWriter(tmp_path / "rejects.jsonl") as rej:
        s1 = bulk_load(es, target, _batches(20), rej, options=opts)
    assert (s1.counts.read, s1.counts.indexed, s1.counts.rejected) == (60, 60, 0)
    assert _count(es, target) == 60
    with RejectsWriter(tmp_path / "rejects.jsonl") as rej:
        bulk_load(es, target, _batches(20), rej, options=opts)
    assert _count(es, target) == 60


def test_per_document_errors_go_to_rejects_and_valid_docs_survive(es, target, tmp_path) -> None:
    bad = {"r3:2", "r7:1"}
    path = tmp_path / "rejects.jsonl"
    with RejectsWriter(path) as rej:
        s = bulk_load(es, target, _batches(10, bad=bad), rej)
    assert s.counts.read == 30 and s.counts.indexed == 28 and s.counts.rejected == 2
    rows = list(read_rejects(path))
    assert {r.record for r in rows} == bad
    assert all(
        r.stage == "index" and "HTTP 400" in r.reason and "number of dimensions" in r.reason for r in rows
    )
    assert _count(es, target) == 28


def test_max_errors_stops_early(es, target, tmp_path) -> None:
    bad = {f"r{r}:1" for r in range(10)}
    with RejectsWriter(None) as rej:
        s = bulk_load(es, target, _batches(10, bad=bad), rej, options=BulkOptions(max_errors=2))
    assert s.stopped_early and s.counts.rejected == 3


def test_interrupted_load_resumes_from_checkpoint_with_exact_count(es, target, tmp_path) -> None:
    ckpt = Checkpoint(path=tmp_path / "load.checkpoint.json", index=target)

    def interrupted() -> Iterator[Batch]:
        for n, b in enumerate(_batches(25)):
            if n == 11:
                raise KeyboardInterrupt  # the user pressed Ctrl-C mid-load
            yield b

    with pytest.raises(KeyboardInterrupt), RejectsWriter(None) as rej:
        bulk_load(es, target, interrupted(), rej, checkpoint=ckpt)
    saved = Checkpoint.load(ckpt.path)
    assert saved is not None and saved.position == 11 and not saved.done
    assert _count(es, target) == 33
    with RejectsWriter(None) as rej:
        s = bulk_load(es, target, _batches(25, start=saved.position), rej, checkpoint=saved)
    assert s.resumed_from == 11
    assert s.counts.read == 75 and s.counts.skipped == 33 and s.counts.indexed == 42
    assert s.counts.read == s.counts.indexed + s.counts.rejected + s.counts.skipped
    assert _count(es, target) == 75
    assert json.loads(ckpt.path.read_text())["done"] is True


@pytest.mark.parametrize(
    "content",
    [
        b'{"index": "x-000001", "posi',
        b"",
        b"[1]",
        b'{"counts": {"foo": 1}}',
        b'{"position": "3"}',
        b"\xff\xfe",
    ],
)
def test_a_damaged_checkpoint_is_a_clear_error(tmp_path: Path, content: bytes) -> None:
    """A checkpoint cut short or edited is refused naming the file and --restart, never a traceback."""
    from toolkit.errors import ToolkitError

    path = tmp_path / "load.checkpoint.json"
    path.write_bytes(content)
    with pytest.raises(
        ToolkitError, match=r"load checkpoint .*load\.checkpoint\.json is damaged .*--restart"
    ):
        Checkpoint.load(path)
