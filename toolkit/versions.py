"""The one place that names the Elasticsearch version the project runs and ships."""

from __future__ import annotations

import os

#: Elasticsearch (and Kibana) version used by the local node, docker-compose.yml and the tests.
ES_VERSION = "8.19.21"
#: Maven coordinates of the integration-test distribution used for the local node.
ES_MAVEN_ARTIFACT = "org.elasticsearch.distribution.integ-test-zip:elasticsearch:{version}:zip"


def es_version() -> str:
    """The version the local node runs: ``JRS_ES_VERSION`` when set (e.g. a 9.x), else :data:`ES_VERSION`."""
    return os.environ.get("JRS_ES_VERSION", "").strip() or ES_VERSION


def required_java(version: str) -> int:
    """The oldest JDK feature release that runs Elasticsearch ``version`` (9.x needs 21)."""
    major = int(version.split(".", 1)[0])
    return 21 if major >= 9 else 17
