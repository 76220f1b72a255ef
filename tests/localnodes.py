"""Throw-away local Elasticsearch nodes for the fault and security tests: small heap, distinct names, always
destroyed afterwards (they never touch the shared node on 9200)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager

from toolkit.es import node
from toolkit.es.node import NodeState

#: Heap of each throw-away node (JRS_TEST_NODE_HEAP overrides).
HEAP = os.environ.get("JRS_TEST_NODE_HEAP", "512m")


def node_name(kind: str) -> str:
    return f"t6-{kind}-{os.getpid()}"


def start(name: str, **kwargs) -> NodeState:
    """``node.up`` with the small test heap."""
    old = os.environ.get("JRS_ES_HEAP")
    os.environ["JRS_ES_HEAP"] = HEAP
    try:
        return node.up(name=name, **kwargs)
    finally:
        if old is None:
            os.environ.pop("JRS_ES_HEAP", None)
        else:
            os.environ["JRS_ES_HEAP"] = old


@contextmanager
def local_node(name: str, **kwargs) -> Iterator[NodeState]:
    """A node for the duration of the block; stopped and its data deleted afterwards, whatever happened."""
    try:
        yield start(name, **kwargs)
    finally:
        node.destroy(name)
