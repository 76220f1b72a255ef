"""Node faults on throw-away local nodes: SIGKILL mid-load then resume; two nodes, one replica, one node lost
during a load and during searches. Exact counts, no duplicates."""

from __future__ import annotations

import json
import threading
import time
import uuid
from pathlib import Path

import pytest
from click.testing import CliRunner

from tests.localnodes import local_node, node_name, start
from tests.test_faults import expected_step_ids, indexed_ids
from toolkit.cli.main import cli
from toolkit.data.jsonl import validate_dataset
from toolkit.errors import ToolkitError
from toolkit.es import node
from toolkit.es.client import make_client
from toolkit.es.config import EsSettings
from toolkit.es.node import free_port
from toolkit.index.bulk import BulkOptions, Checkpoint
from toolkit.index.indexer import IndexOptions, index_dataset
from toolkit.model import SearchModel
from toolkit.search.engine import Searcher
from toolkit.search.queries import Filters, KnnParams

pytestmark = pytest.mark.slow


def _kill_after(batches: int, name: str):
    """A progress callback that SIGKILLs node ``name`` once ``batches`` batches are acknowledged."""
    seen = {"n": 0}

    def progress(_step) -> None:
        seen["n"] += 1
        if seen["n"] == batches:
            assert node.down(name, kill=True)

    return progress


def test_sigkill_mid_load_then_rerun_resumes_with_exact_count(
    sample_root: Path, built_model: Path, tmp_path: Path
) -> None:
    name = node_name("kill")
    alias = f"killed-{uuid.uuid4().hex[:6]}"
    steps = validate_dataset(sample_root).steps
    with local_node(name) as state:
        es = make_client(EsSettings(url=state.url, request_timeout=10))
        opts = IndexOptions(
            alias=alias,
            batch_steps=32,
            bulk=BulkOptions(initial_backoff=0.1, max_backoff=0.4, unavailable_timeout=2),
        )
        with pytest.raises(ToolkitError, match="nothing acknowledged for 2s") as info:
            index_dataset(es, sample_root, built_model, opts, on_batch=_kill_after(4, name))
        assert "run the same command again to resume" in str(info.value)
        ckpt = Checkpoint.load(built_model / "loads" / f"{alias}.checkpoint.json")
        assert ckpt is not None and not ckpt.done and ckpt.position > 0
        acknowledged = ckpt.counts.indexed
        assert 0 < acknowledged < steps

        assert start(name, port=state.http_port).http_port == state.http_port  # same data, same port
        es.indices.refresh(index=ckpt.index)
        assert es.count(index=ckpt.index)["count"] >= acknowledged  # nothing acknowledged was lost
        result = CliRunner().invoke(
            cli,
            ["index", str(sample_root), str(built_model), "--alias", alias, "--json"],
            env={"ES_URL": state.url},
        )
        assert result.exit_code == 0, result.output
        out = json.loads(result.stdout)
        assert "resuming the load" in result.stderr
        assert out["index"] == ckpt.index and out["resumed_from"] == ckpt.position
        assert out["skipped"] == acknowledged and out["indexed"] == steps - acknowledged
        assert out["read"] == out["indexed"] + out["rejected"] + out["skipped"] == steps
        ids = indexed_ids(es, alias)
        assert len(ids) == len(set(ids)) == steps == out["count"]
        assert set(ids) == expected_step_ids(sample_root)


def test_two_nodes_one_replica_lose_a_node_during_load_and_searches(
    sample_root: Path, built_model: Path, tmp_path: Path
) -> None:
    n1, n2 = node_name("pair1"), node_name("pair2")
    t1, t2 = free_port(), free_port()
    common = {
        "cluster.name": f"jrs-pair-{n1}",
        "discovery.type": "multi-node",
        "discovery.seed_hosts": [f"127.0.0.1:{t1}", f"127.0.0.1:{t2}"],
    }
    steps = validate_dataset(sample_root).steps
    first = {**common, "cluster.initial_master_nodes": [n1]}
    second = {**common, "node.roles": ["data", "ingest"]}
    with (
        local_node(n1, transport_port=t1, extra_settings=first) as s1,
        local_node(n2, transport_port=t2, extra_settings=second),
    ):
        es = make_client(EsSettings(url=s1.url, request_timeout=30))
        assert es.cluster.health(wait_for_nodes="2", timeout="60s")["number_of_nodes"] == 2
        base = IndexOptions(replicas=1, keep_replicas=True, checkpoint_dir=tmp_path, batch_steps=32)
        base.bulk = BulkOptions(initial_backoff=0.2, max_backoff=2.0, unavailable_timeout=90)
        served = index_dataset(es, sample_root, built_model, _with(base, alias="served"))
        assert served["count"] == steps
        assert (
            es.cluster.health(index=served["index"], wait_for_status="green", timeout="60s")["status"]
            == "green"
        )
        copies = {s["node"] for s in es.cat.shards(index=served["index"], format="json")}
        assert len(copies) == 2  # a copy on each node

        searcher = Searcher(es, SearchModel.load(built_model), "served")
        answers: list[int] = []
        errors: list[str] = []
        stop = threading.Event()

        def search_loop() -> None:
            vec = searcher.text_vector("玉ねぎを炒める")
            deadline = time.monotonic() + 180
            while not stop.is_set() and time.monotonic() < deadline and len(answers) < 2000:
                try:
                    a = searcher.keyword("大根を切る", 5, Filters())
                    b = searcher.knn(vec, KnnParams(k=5, num_candidates=20), Filters())
                    answers.append(min(len(a.hits), len(b.hits)))
                except Exception as e:  # every failure is reported by the assertion below
                    errors.append(f"{type(e).__name__}: {e}")
                time.sleep(0.02)

        thread = threading.Thread(target=search_loop, daemon=True)
        thread.start()
        try:
            loaded = index_dataset(
                es,
                sample_root,
                built_model,
                _with(base, alias="loaded"),
                on_batch=_kill_after(3, n2),
            )
            time.sleep(1.0)  # a few searches with the node gone
        finally:
            stop.set()
            thread.join(30)
        assert not node.status(n2)[1]  # the second node is really gone
        assert loaded["indexed"] == loaded["count"] == steps and loaded["rejected"] == 0
        ids = indexed_ids(es, "loaded")
        assert len(ids) == len(set(ids)) == steps
        assert not errors, errors[:3]
        assert len(answers) >= 10 and all(n == 5 for n in answers)
        assert es.count(index="served")["count"] == steps
        assert es.cluster.health()["number_of_nodes"] == 1


def _with(base: IndexOptions, **changes) -> IndexOptions:
    from dataclasses import replace

    return replace(base, **changes)
