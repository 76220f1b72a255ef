"""The local node and the client: a real round trip against Elasticsearch."""

from __future__ import annotations

import pytest
from elasticsearch import Elasticsearch

from toolkit.es.client import EsUnavailable, make_client
from toolkit.es.config import EsSettings, settings_from_env
from toolkit.es.node import free_port


def test_round_trip_create_bulk_search(es: Elasticsearch, index_name: str) -> None:
    from elasticsearch import helpers

    es.indices.create(
        index=index_name,
        mappings={
            "properties": {
                "tokens": {"type": "text", "analyzer": "whitespace"},
                "v": {"type": "dense_vector", "dims": 3, "similarity": "cosine"},
            }
        },
    )
    docs = [
        {"_index": index_name, "_id": "a", "tokens": "玉ねぎ を 炒める", "v": [1, 0, 0]},
        {"_index": index_name, "_id": "b", "tokens": "にんじん を 茹でる", "v": [0, 1, 0]},
    ]
    ok, errors = helpers.bulk(es, docs, refresh=True)
    assert ok == 2 and not errors
    hits = es.search(index=index_name, query={"match": {"tokens": "炒める"}})["hits"]["hits"]
    assert [h["_id"] for h in hits] == ["a"]
    knn = es.search(
        index=index_name, knn={"field": "v", "query_vector": [0, 1, 0.1], "k": 1, "num_candidates": 10}
    )
    assert knn["hits"]["hits"][0]["_id"] == "b"


def test_whitespace_analyzer_resolves_by_name(es: Elasticsearch) -> None:
    tokens = es.indices.analyze(analyzer="whitespace", text="玉ねぎ を 炒める")["tokens"]
    assert [t["token"] for t in tokens] == ["玉ねぎ", "を", "炒める"]


def test_unreachable_cluster_fails_fast_with_clear_message() -> None:
    port = free_port()
    with pytest.raises(EsUnavailable, match=f"127.0.0.1:{port} is unreachable"):
        make_client(EsSettings(url=f"http://127.0.0.1:{port}", request_timeout=2))


def test_settings_repr_never_shows_secrets() -> None:
    s = settings_from_env(
        env={"ES_URL": "http://x:9200", "ES_API_KEY": "s3cr3t-key", "ES_PASSWORD": "pw-123"}
    )
    assert "s3cr3t-key" not in repr(s) and "pw-123" not in repr(s) and "pw-123" not in s.describe()
    assert s.username == "elastic" and s.secrets == ("s3cr3t-key", "pw-123")
