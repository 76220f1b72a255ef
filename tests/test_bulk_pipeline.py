"""The bulk loader's pipelining: batches finish out of order, yet are accounted and checkpointed in order."""

from __future__ import annotations

import time

import pytest

from toolkit.errors import ToolkitError
from toolkit.index import bulk
from toolkit.index.bulk import Batch, BulkOptions, Checkpoint, bulk_load
from toolkit.rejects import Reject, RejectsWriter


def _batches(n: int):
    for i in range(n):
        yield Batch(docs=[{"_id": f"r{i}:1"}, {"_id": f"r{i}:2"}], read=2, position=i + 1)


def _fake_send(fail_at: int | None = None):
    def send(es, index, docs, opts, rejects, on_retry):
        i = int(docs[0]["_id"][1:].split(":")[0])
        time.sleep(0.05 if i % 2 == 0 else 0.0)  # even batches finish after the odd one sent with them
        if i == fail_at:
            raise ToolkitError("cluster gone")
        rejects.write(Reject(docs[1]["_id"], "index", "HTTP 400: bad"))
        return 1, 1

    return send


def test_out_of_order_completion_is_accounted_in_order(monkeypatch, tmp_path) -> None:
    monkeypatch.setattr(bulk, "_send_batch", _fake_send())
    positions: list[int] = []
    ckpt = Checkpoint(path=tmp_path / "c.json", index="x")
    orig_save = ckpt.save
    monkeypatch.setattr(ckpt, "save", lambda: (positions.append(ckpt.position), orig_save()))
    path = tmp_path / "rejects.jsonl"
    with RejectsWriter(path) as rej:
        s = bulk_load(None, "x", _batches(8), rej, checkpoint=ckpt, options=BulkOptions(concurrency=3))
    assert positions[:-1] == list(range(1, 9))  # then the final save with done=True
    assert (s.counts.read, s.counts.indexed, s.counts.rejected) == (16, 8, 8)
    assert [line.split('"')[3] for line in path.read_text().splitlines()] == [f"r{i}:2" for i in range(8)]


def test_a_failed_batch_stops_the_checkpoint_before_it(monkeypatch, tmp_path) -> None:
    monkeypatch.setattr(bulk, "_send_batch", _fake_send(fail_at=4))
    ckpt = Checkpoint(path=tmp_path / "c.json", index="x")
    with pytest.raises(ToolkitError), RejectsWriter(None) as rej:
        bulk_load(None, "x", _batches(10), rej, checkpoint=ckpt, options=BulkOptions(concurrency=2))
    saved = Checkpoint.load(ckpt.path)
    assert saved is not None and saved.position == 4 and not saved.done
    assert saved.counts.read == 8
