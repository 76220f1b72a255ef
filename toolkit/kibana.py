"""Kibana saved objects (a data view over the alias, a saved search) and their import."""

from __future__ import annotations

import base64
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import urllib3

from toolkit.errors import ConfigError, ToolkitError

SAVED_OBJECTS = Path(__file__).resolve().parent / "es_mappings" / "kibana" / "saved_objects.ndjson"
DATA_VIEW_ID = "jrs-recipes-data-view"


@dataclass(frozen=True)
class KibanaSettings:
    url: str
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    api_key: str | None = field(default=None, repr=False)
    ca_certs: str | None = None
    space: str | None = None

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None, **overrides: Any) -> KibanaSettings:
        """``KIBANA_*`` variables, then flag overrides. Without Kibana credentials of their own, the
        Elasticsearch ones (``ES_API_KEY``, ``ES_USERNAME``/``ES_PASSWORD``: Kibana signs in the same users);
        a password without a user is the ``elastic`` user's, as for Elasticsearch."""
        e = dict(os.environ if env is None else env)
        values = {
            "url": e.get("KIBANA_URL", "http://localhost:5601"),
            "username": e.get("KIBANA_USERNAME") or None,
            "password": e.get("KIBANA_PASSWORD") or None,
            "api_key": e.get("KIBANA_API_KEY") or None,
            "ca_certs": e.get("KIBANA_CA_CERTS") or None,
            "space": e.get("KIBANA_SPACE") or None,
        }
        values.update({k: v for k, v in overrides.items() if v is not None})
        if not (values["api_key"] or values["username"] or values["password"]):
            values["api_key"] = e.get("ES_API_KEY") or None
            values["username"] = e.get("ES_USERNAME") or None
            values["password"] = e.get("ES_PASSWORD") or None
        if values["password"] and not values["username"]:
            values["username"] = "elastic"
        return cls(**values)

    def headers(self) -> dict[str, str]:
        h = {"kbn-xsrf": "true"}
        if self.api_key:
            h["Authorization"] = f"ApiKey {self.api_key}"
        elif self.username:
            token = base64.b64encode(f"{self.username}:{self.password or ''}".encode()).decode()
            h["Authorization"] = f"Basic {token}"
        return h


def saved_objects(alias: str = "recipes") -> list[dict[str, Any]]:
    """The saved objects, with the data view pointed at ``alias``."""
    objs = [
        json.loads(line) for line in SAVED_OBJECTS.read_text(encoding="utf-8").splitlines() if line.strip()
    ]
    for o in objs:
        if o["type"] == "index-pattern":
            o["attributes"]["title"] = alias
            o["attributes"]["name"] = f"Recipe steps ({alias})"
    return objs


def to_ndjson(objs: list[dict[str, Any]]) -> bytes:
    return "".join(json.dumps(o, ensure_ascii=False) + "\n" for o in objs).encode()


def import_saved_objects(
    settings: KibanaSettings, alias: str = "recipes", overwrite: bool = True
) -> dict[str, Any]:
    """POST the NDJSON to ``/api/saved_objects/_import``; a clear error when Kibana says no."""
    if not settings.url.startswith(("http://", "https://")):
        raise ConfigError(f"KIBANA_URL must start with http:// or https://, got {settings.url!r}")
    prefix = f"/s/{settings.space}" if settings.space else ""
    url = f"{settings.url.rstrip('/')}{prefix}/api/saved_objects/_import?overwrite={str(overwrite).lower()}"
    http = urllib3.PoolManager(ca_certs=settings.ca_certs) if settings.ca_certs else urllib3.PoolManager()
    try:
        resp = http.request(
            "POST",
            url,
            fields={"file": ("jrecipe-search.ndjson", to_ndjson(saved_objects(alias)), "application/ndjson")},
            headers=settings.headers(),
            timeout=30,
        )
    except urllib3.exceptions.HTTPError as e:
        raise ToolkitError(f"Kibana at {settings.url} is unreachable: {type(e).__name__}") from e
    if resp.status >= 300:
        raise ToolkitError(
            f"Kibana import failed: HTTP {resp.status}: {resp.data[:500].decode(errors='replace')}"
        )
    result = json.loads(resp.data)
    if result.get("success") is False:  # HTTP 200 with objects refused: say which and why
        errors = result.get("errors") or []
        named = "; ".join(
            f"{err.get('type')} {err.get('id')}: {(err.get('error') or {}).get('type', 'refused')}"
            for err in errors[:5]
        )
        raise ToolkitError(
            f"Kibana refused {len(errors)} saved object(s) ({named}); imported {result.get('successCount', 0)}"
        )
    return result
