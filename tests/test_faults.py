"""Faults against real Elasticsearch: a throttling, failing, connection-dropping proxy in front of the node."""

from __future__ import annotations

import logging
import re
from pathlib import Path

from elasticsearch import Elasticsearch, helpers

from tests.faultproxy import FaultPolicy, FaultProxy
from toolkit.data.jsonl import validate_dataset
from toolkit.es.client import make_client
from toolkit.es.config import EsSettings
from toolkit.index.bulk import BulkOptions
from toolkit.index.indexer import IndexOptions, index_dataset


class StopLoad(Exception):
    """An interruption after an acknowledged batch (what Ctrl-C or a crash leaves behind)."""


def stop_after_a_batch(_counts) -> None:
    raise StopLoad


def indexed_ids(es: Elasticsearch, index: str) -> list[str]:
    es.indices.refresh(index=index)
    return [
        h["_id"] for h in helpers.scan(es, index=index, query={"query": {"match_all": {}}}, _source=False)
    ]


def expected_step_ids(root: Path) -> set[str]:
    from toolkit.data.jsonl import iter_recipes

    return {r.step_id(s) for r in iter_recipes(root) for s in r.steps}


def test_load_through_faulty_proxy_is_exact_logged_and_backs_off(
    es: Elasticsearch,
    es_settings: EsSettings,
    sample_root: Path,
    built_model: Path,
    index_name: str,
    tmp_path,
) -> None:
    script = ["429", "503", "drop", "drop_after"]  # four failures in a row: the wait must double each time
    policy = FaultPolicy(script=script, share=0.3, seed=7, max_faults=14)
    opts = IndexOptions(
        alias=index_name,
        batch_steps=64,
        # one batch in flight: the scripted failures then hit one batch in a row (with two, their retries
        # interleave in the log); exact counts with batches in flight: the other fault tests
        bulk=BulkOptions(chunk_size=40, initial_backoff=0.02, max_backoff=0.3, concurrency=1),
        checkpoint_dir=tmp_path,
    )
    caplog_records: list[logging.LogRecord] = []
    handler = logging.Handler(logging.WARNING)
    handler.emit = caplog_records.append  # type: ignore[method-assign]
    bulk_log = logging.getLogger("toolkit.index.bulk")
    bulk_log.addHandler(handler)
    try:
        with FaultProxy(es_settings.url, policy) as proxy:
            client = make_client(EsSettings(url=proxy.url, request_timeout=20))
            result = index_dataset(
                client,
                sample_root,
                built_model,
                opts,
                rejects_path=tmp_path / "rej.jsonl",
            )
    finally:
        bulk_log.removeHandler(handler)

    report = validate_dataset(sample_root)
    assert report.ok
    assert result["indexed"] == report.steps == result["count"] and result["rejected"] == 0
    assert result["read"] == result["indexed"] + result["rejected"] + result["skipped"]
    ids = indexed_ids(es, result["index"])
    assert len(ids) == len(set(ids)) == report.steps and set(ids) == expected_step_ids(sample_root)

    injected = proxy.faults()
    kinds = {k: proxy.faults([k]) for k in ("429", "503", "drop", "drop_after")}
    assert injected >= len(script) + 3 and all(kinds.values()), kinds
    messages = [r.getMessage() for r in caplog_records]
    assert result["retries"] == injected == len(messages)
    assert any("HTTP 429" in m for m in messages) and any("HTTP 503" in m for m in messages)
    assert any("ConnectionError" in m for m in messages)
    waits = [float(re.search(r"in ([0-9.]+)s$", m).group(1)) for m in messages]
    assert waits[:4] == [0.02, 0.04, 0.08, 0.16]
    assert max(waits) <= 0.3
    # the proxy saw the growing gaps too: request n+1 came at least wait(n) after request n
    times = [r.at for r in proxy.bulk[:5]]
    gaps = [b - a for a, b in zip(times, times[1:], strict=False)]
    assert all(g >= w * 0.9 for g, w in zip(gaps, waits[:4], strict=True)), (gaps, waits[:4])


def test_throttled_documents_are_resent_not_rejected(
    es: Elasticsearch,
    es_settings: EsSettings,
    sample_root: Path,
    built_model: Path,
    index_name: str,
    tmp_path,
) -> None:
    """Item-level 429s (the node throttles single documents inside a 200 response) are retried, logged."""
    policy = FaultPolicy(script=["item429", None, "item429"])
    opts = IndexOptions(
        alias=index_name,
        batch_steps=10_000,  # one batch: the two throttled items are in two chunks of one attempt
        bulk=BulkOptions(chunk_size=100, initial_backoff=0.01, max_backoff=0.1),
        checkpoint_dir=tmp_path,
    )
    records: list[logging.LogRecord] = []
    handler = logging.Handler(logging.WARNING)
    handler.emit = records.append  # type: ignore[method-assign]
    logging.getLogger("toolkit.index.bulk").addHandler(handler)
    try:
        with FaultProxy(es_settings.url, policy) as proxy:
            client = make_client(EsSettings(url=proxy.url, request_timeout=20))
            result = index_dataset(client, sample_root, built_model, opts)
    finally:
        logging.getLogger("toolkit.index.bulk").removeHandler(handler)
    steps = validate_dataset(sample_root).steps
    assert proxy.faults(["item429"]) == 2
    assert (result["indexed"], result["rejected"], result["count"]) == (steps, 0, steps)
    assert [r.getMessage().split("; ")[0] for r in records] == [
        f"bulk request to {result['index']} failed (2 document(s) throttled (HTTP 429))"
    ]
    assert result["retries"] == 1


def test_a_failed_load_leaves_no_index_with_refresh_off(
    es: Elasticsearch, sample_root: Path, built_model: Path, index_name: str, tmp_path
) -> None:
    """A load that stops with an error restores the index's settings (refresh was off while loading); the
    checkpoint still resumes it."""
    import pytest

    from toolkit.index import lifecycle

    opts = IndexOptions(alias=index_name, batch_steps=32, checkpoint_dir=tmp_path)
    with pytest.raises(StopLoad):
        index_dataset(es, sample_root, built_model, opts, on_batch=stop_after_a_batch)
    (version,) = lifecycle.list_versions(es, index_name)
    flat = es.indices.get_settings(index=version, flat_settings=True)[version]["settings"]
    assert flat.get("index.refresh_interval", "1s") != "-1"
    result = index_dataset(es, sample_root, built_model, opts)  # resumed into the same version
    assert result["index"] == version and result["indexed"] + result["skipped"] == result["read"]


def test_a_stop_between_the_last_batch_and_the_swap_resumes_the_same_version(
    es: Elasticsearch, sample_root: Path, built_model: Path, index_name: str, tmp_path, monkeypatch
) -> None:
    """The checkpoint said "done" before the alias swap: a rerun after a stop there built a whole new version
    and left the loaded one orphaned. Now it resumes the loaded version, swaps, and loads nothing again."""
    import pytest

    from toolkit.index import lifecycle

    opts = IndexOptions(alias=index_name, batch_steps=64, checkpoint_dir=tmp_path)
    real_swap = lifecycle.swap_alias

    def stop(*_args, **_kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(lifecycle, "swap_alias", stop)
    with pytest.raises(KeyboardInterrupt):
        index_dataset(es, sample_root, built_model, opts)
    (loaded,) = lifecycle.list_versions(es, index_name)
    monkeypatch.setattr(lifecycle, "swap_alias", real_swap)
    result = index_dataset(es, sample_root, built_model, opts)
    assert result["index"] == loaded and result["swapped"] and result["indexed"] == 0
    assert lifecycle.list_versions(es, index_name) == [loaded]
    assert lifecycle.alias_targets(es, index_name) == [loaded]
    assert es.count(index=loaded)["count"] == result["count"] > 0
    # --index may name an alias: the load goes to the index behind it (it was a KeyError)
    again = index_dataset(es, sample_root, built_model, IndexOptions(alias=index_name, index=index_name))
    assert again["index"] == loaded and again["read"] == again["indexed"] + again["skipped"]


def test_a_load_rerun_with_other_index_options_starts_a_new_version(
    es: Elasticsearch, sample_root: Path, built_model: Path, index_name: str, tmp_path
) -> None:
    """An interrupted load resumed with other index options (`--index-type flat`, no hubness correction)
    used to go on into the index made with the old ones, silently. Now it starts a new version that has
    them; the same options resume as before."""
    import pytest

    from toolkit.index import lifecycle
    from toolkit.index.template import VectorIndexOptions

    opts = IndexOptions(alias=index_name, batch_steps=32, checkpoint_dir=tmp_path)
    with pytest.raises(StopLoad):
        index_dataset(es, sample_root, built_model, opts, on_batch=stop_after_a_batch)
    (first,) = lifecycle.list_versions(es, index_name)
    other = IndexOptions(
        alias=index_name,
        batch_steps=32,
        checkpoint_dir=tmp_path,
        vector_options=VectorIndexOptions(type="flat"),
        hubness_correction=False,
    )
    result = index_dataset(es, sample_root, built_model, other)
    assert result["index"] != first and result["skipped"] == 0 and result["indexed"] > 0
    assert not result["photos_hubness_corrected"]
    mapping = es.indices.get_mapping(index=result["index"])[result["index"]]["mappings"]["properties"]
    assert mapping["image_vector"]["index_options"]["type"] == "flat"
    with pytest.raises(StopLoad):  # the same options still resume the same version
        index_dataset(es, sample_root, built_model, opts, on_batch=stop_after_a_batch)
    third = lifecycle.list_versions(es, index_name)[-1]
    resumed = index_dataset(es, sample_root, built_model, opts)
    assert resumed["index"] == third and resumed["skipped"] > 0


def test_a_load_does_not_resume_into_its_index_made_again_by_another_model(
    es: Elasticsearch, sample_root: Path, built_model: Path, index_name: str, tmp_path
) -> None:
    """The checkpoint's version deleted and made again by a load of another model (the next version number is
    free again): a rerun resumed into it, writing this model's vectors over the other's under its ``_meta``,
    and moved the alias onto the mixture. Now it starts a new version and leaves that index alone."""
    import pytest

    from toolkit.index import lifecycle

    opts = IndexOptions(alias=index_name, batch_steps=32, checkpoint_dir=tmp_path)
    with pytest.raises(StopLoad):
        index_dataset(es, sample_root, built_model, opts, on_batch=stop_after_a_batch)
    (first,) = lifecycle.list_versions(es, index_name)
    # what a load of another model into that version leaves: its fingerprint in _meta
    meta = es.indices.get_mapping(index=first)[first]["mappings"]["_meta"]
    es.indices.put_mapping(index=first, meta={**meta, "model_fingerprint": "another-model"})
    before = es.count(index=first)["count"]
    result = index_dataset(es, sample_root, built_model, opts)
    assert result["index"] != first and result["skipped"] == 0 and result["resumed_from"] == 0
    assert es.count(index=first)["count"] == before  # not written to
    assert lifecycle.alias_targets(es, index_name) == [result["index"]]


def test_a_load_interrupted_before_the_upgrade_still_resumes(
    es: Elasticsearch, sample_root: Path, built_model: Path, index_name: str, tmp_path
) -> None:
    """A checkpoint written before index options were recorded (no options fingerprint, a whole-second input
    fingerprint) resumes into its index after an upgrade, instead of starting a new version."""
    import json

    import pytest

    from toolkit.index import lifecycle
    from toolkit.index.indexer import legacy_input_fingerprint

    opts = IndexOptions(alias=index_name, batch_steps=32, checkpoint_dir=tmp_path)
    with pytest.raises(StopLoad):
        index_dataset(es, sample_root, built_model, opts, on_batch=stop_after_a_batch)
    (first,) = lifecycle.list_versions(es, index_name)
    path = tmp_path / f"{index_name}.checkpoint.json"
    old = json.loads(path.read_text(encoding="utf-8"))
    old.pop("options_fingerprint")
    old["input_fingerprint"] = legacy_input_fingerprint(sample_root)
    path.write_text(json.dumps(old), encoding="utf-8")
    result = index_dataset(es, sample_root, built_model, opts)
    assert result["index"] == first and result["skipped"] > 0
