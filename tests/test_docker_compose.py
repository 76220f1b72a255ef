"""docker-compose.yml for users: parsed and checked (no Docker engine runs here)."""

from __future__ import annotations

import re
from pathlib import Path

import yaml

from toolkit.versions import ES_VERSION

ROOT = Path(__file__).resolve().parents[1]


def _compose() -> dict:
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text(encoding="utf-8"))


def _default_version(image: str) -> str:
    m = re.search(r"\$\{STACK_VERSION:-([^}]+)\}", image)
    assert m, f"image {image} does not take STACK_VERSION with a default"
    return m.group(1)


def test_services_images_and_versions_match_local_node() -> None:
    services = _compose()["services"]
    assert {"es01", "kibana"} <= set(services)
    assert services["es01"]["image"].startswith("docker.elastic.co/elasticsearch/elasticsearch:")
    assert services["kibana"]["image"].startswith("docker.elastic.co/kibana/kibana:")
    for svc in services.values():
        assert _default_version(svc["image"]) == ES_VERSION
    env_example = (ROOT / ".env.example").read_text(encoding="utf-8")
    assert f"STACK_VERSION={ES_VERSION}" in env_example


def test_ports_healthchecks_and_volume() -> None:
    compose = _compose()
    services = compose["services"]
    assert any(p.endswith(":9200") for p in services["es01"]["ports"])
    assert any(p.endswith(":5601") for p in services["kibana"]["ports"])
    for name in ("es01", "kibana"):
        assert "healthcheck" in services[name], name
    assert "esdata:/usr/share/elasticsearch/data" in services["es01"]["volumes"]
    assert "esdata" in compose["volumes"]
    assert services["es01"]["environment"]["xpack.security.enabled"] == "true"


def test_no_password_is_hard_coded() -> None:
    for name, svc in _compose()["services"].items():
        env = svc.get("environment", {})
        for key, value in env.items():
            if "PASSWORD" in key:
                assert str(value).startswith("${") and ":?" in str(value), f"{name}.{key} must come from .env"
    example = (ROOT / ".env.example").read_text(encoding="utf-8")
    for line in example.splitlines():
        if line.startswith(("ELASTIC_PASSWORD", "KIBANA_SYSTEM_PASSWORD")):
            assert line.split("=", 1)[1] == "", line
    assert ".env" in (ROOT / ".gitignore").read_text().splitlines()
