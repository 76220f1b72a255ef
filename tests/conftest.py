"""Shared fixtures: a real Elasticsearch node (the local one unless ES_URL is set) and unique index names."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator

import pytest
from elasticsearch import Elasticsearch

from toolkit.es import node
from toolkit.es.client import make_client
from toolkit.es.config import EsSettings, settings_from_env

TEST_NODE = "pytest"


@pytest.fixture(scope="session")
def es_settings() -> Iterator[EsSettings]:
    """Settings for a real cluster: ES_URL when given, else a local node started for the session."""
    settings = settings_from_env()
    if settings.url:
        yield settings
        return
    already_running = node.status(TEST_NODE)[1] is not None
    state = node.up(name=TEST_NODE, log=lambda m: None)
    try:
        yield EsSettings(url=state.url)
    finally:
        if not already_running and os.environ.get("JRS_KEEP_TEST_NODE") != "1":
            node.down(TEST_NODE)


@pytest.fixture(scope="session")
def es(es_settings: EsSettings) -> Elasticsearch:
    return make_client(es_settings)


@pytest.fixture
def index_name(es: Elasticsearch) -> Iterator[str]:
    """A unique index name per test; the index (and any versions/aliases under it) is deleted afterwards."""
    name = f"jrs-test-{uuid.uuid4().hex[:10]}"
    yield name
    existing = es.indices.get(index=f"{name}*", ignore_unavailable=True, allow_no_indices=True)
    for idx in existing:
        es.indices.delete(index=idx, ignore_unavailable=True)
    es.options(ignore_status=404).indices.delete_index_template(name=f"{name}-template")
