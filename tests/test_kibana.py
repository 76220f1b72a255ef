"""Kibana saved objects: structure and field names checked against the mapping; the import request."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer

import pytest

from toolkit.errors import ToolkitError
from toolkit.index.template import IndexModelInfo, render_template
from toolkit.kibana import DATA_VIEW_ID, KibanaSettings, import_saved_objects, saved_objects


def _mapping_fields() -> set[str]:
    body = render_template("recipes", IndexModelInfo(fingerprint="x", dims=4, backbone="b"))
    props = body["template"]["mappings"]["properties"]
    names = set(props)
    for name, spec in props.items():
        names |= {f"{name}.{sub}" for sub in spec.get("fields", {})}
    return names


def test_saved_objects_reference_real_fields_and_each_other() -> None:
    objs = saved_objects("recipes")
    by_type = {o["type"]: o for o in objs}
    assert set(by_type) == {"index-pattern", "search"}
    dv, search = by_type["index-pattern"], by_type["search"]
    assert dv["id"] == DATA_VIEW_ID and dv["attributes"]["title"] == "recipes"
    fields = _mapping_fields()
    fmt = json.loads(dv["attributes"]["fieldFormatMap"])
    assert set(fmt) <= fields
    assert fmt["image_url"]["id"] == "url" and fmt["image_url"]["params"]["type"] == "img"
    assert set(search["attributes"]["columns"]) <= fields
    assert {s[0] for s in search["attributes"]["sort"]} <= fields
    source = json.loads(search["attributes"]["kibanaSavedObjectMeta"]["searchSourceJSON"])
    ref = {r["name"]: r for r in search["references"]}[source["indexRefName"]]
    assert ref["id"] == dv["id"] and ref["type"] == "index-pattern"
    assert source["query"]["query"].split(":")[0] in fields


def test_alias_is_configurable() -> None:
    dv = next(o for o in saved_objects("kitchen") if o["type"] == "index-pattern")
    assert dv["attributes"]["title"] == "kitchen"


class _Recorder(BaseHTTPRequestHandler):
    seen: list[dict] = []
    status = 200
    refuse = False

    def do_POST(self) -> None:  # noqa: N802
        body = self.rfile.read(int(self.headers["Content-Length"]))
        _Recorder.seen.append({"path": self.path, "headers": dict(self.headers), "body": body})
        self.send_response(_Recorder.status)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        body = {"success": _Recorder.status == 200 and not _Recorder.refuse, "successCount": 2}
        if _Recorder.refuse:
            body |= {
                "successCount": 1,
                "errors": [{"id": "x", "type": "search", "error": {"type": "conflict"}}],
            }
        self.wfile.write(json.dumps(body).encode())

    def log_message(self, *args) -> None:
        pass


@pytest.fixture
def fake_kibana():
    server = HTTPServer(("127.0.0.1", 0), _Recorder)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    _Recorder.seen.clear()
    _Recorder.status = 200
    _Recorder.refuse = False
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()


def test_import_posts_ndjson_with_xsrf_and_auth(fake_kibana: str) -> None:
    settings = KibanaSettings.from_env(env={"KIBANA_URL": fake_kibana, "KIBANA_API_KEY": "k3y"}, space="food")
    result = import_saved_objects(settings, alias="recipes")
    assert result["successCount"] == 2
    req = _Recorder.seen[0]
    assert req["path"] == "/s/food/api/saved_objects/_import?overwrite=true"
    assert req["headers"]["kbn-xsrf"] == "true" and req["headers"]["Authorization"] == "ApiKey k3y"
    assert b'"jrs-recipes-data-view"' in req["body"] and b"application/ndjson" in req["body"]


def test_import_failure_is_clear_and_hides_password(fake_kibana: str) -> None:
    _Recorder.status = 403
    settings = KibanaSettings.from_env(
        env={"KIBANA_URL": fake_kibana, "KIBANA_PASSWORD": "hunter2"}, username="u"
    )
    with pytest.raises(ToolkitError, match="HTTP 403") as e:
        import_saved_objects(settings)
    assert "hunter2" not in str(e.value) and "hunter2" not in repr(settings)


def test_objects_kibana_refuses_are_an_error(fake_kibana: str) -> None:
    _Recorder.refuse = True  # HTTP 200, success false: an import that did not happen is no success
    with pytest.raises(
        ToolkitError, match=r"Kibana refused 1 saved object\(s\) \(search x: conflict\); imported 1"
    ):
        import_saved_objects(KibanaSettings.from_env(env={"KIBANA_URL": fake_kibana}))


def test_credentials_default_to_elasticsearch_ones() -> None:
    import base64

    def auth(env: dict[str, str]) -> str | None:
        return KibanaSettings.from_env(env=env).headers().get("Authorization")

    basic = "Basic " + base64.b64encode(b"elastic:pw").decode()
    assert auth({"KIBANA_PASSWORD": "pw"}) == basic  # a password alone: the elastic user's
    assert auth({"ES_PASSWORD": "pw"}) == basic
    assert auth({"ES_API_KEY": "k"}) == "ApiKey k"
    assert auth({"ES_API_KEY": "k", "KIBANA_USERNAME": "u", "KIBANA_PASSWORD": "p"}).startswith("Basic ")
    assert auth({}) is None
