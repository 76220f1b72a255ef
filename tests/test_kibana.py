"""Kibana saved objects: structure and field names checked against the mapping; the import request."""

from __future__ import annotations

import base64
import json
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path

import pytest
from click.testing import CliRunner

from tests.cliassert import one_clear_error_line
from toolkit.cli.main import cli
from toolkit.errors import ConfigError, ToolkitError
from toolkit.es.node import free_port
from toolkit.index.template import IndexModelInfo, render_template
from toolkit.kibana import DATA_VIEW_ID, KibanaSettings, import_saved_objects, saved_objects

#: What a test's ``jrs kibana import`` must not inherit from the shell running the tests
CLEAN = {
    k: ""
    for k in (
        "KIBANA_URL", "KIBANA_USERNAME", "KIBANA_PASSWORD", "KIBANA_API_KEY", "KIBANA_CA_CERTS", "KIBANA_SPACE",
        "ES_URL", "ES_API_KEY", "ES_USERNAME", "ES_PASSWORD", "ES_CREDENTIALS_FILE", "ES_CA_CERTS",
    )
}  # fmt: skip


def _basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def _kibana(*args: str, env: dict[str, str] | None = None) -> tuple[int, str]:
    result = CliRunner().invoke(cli, ["kibana", *args], env={**CLEAN, **(env or {})})
    return result.exit_code, result.output


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


def test_thumbnail_url_is_the_indexed_url_unescaped() -> None:
    # Kibana's url format fills {{value}} with encodeURIComponent(value): a whole http://... URL would become
    # "http%3A%2F%2F..." (a relative path: no thumbnail); {{rawValue}} is the value as indexed
    dv = next(o for o in saved_objects("recipes") if o["type"] == "index-pattern")
    params = json.loads(dv["attributes"]["fieldFormatMap"])["image_url"]["params"]
    assert params["urlTemplate"] in (None, "{{rawValue}}")


def test_type_versions_are_known_to_kibana_8_19_and_9() -> None:
    # Kibana refuses (HTTP 400 "belongs to a more recent version of Kibana") an object whose typeMigrationVersion
    # is above the latest its type knows; a lower one is migrated up. The search type's model version 6 (10.6.0,
    # Discover tabs) came in 9.2: 8.19 and 9.0/9.1 know 10.5.0 at most.
    def parts(version: str) -> tuple[int, ...]:
        return tuple(int(p) for p in version.split("."))

    newest = {"index-pattern": "8.0.0", "search": "10.5.0"}
    for o in saved_objects("recipes"):
        assert parts(o["typeMigrationVersion"]) <= parts(newest[o["type"]]), o["id"]
        assert parts(o["coreMigrationVersion"]) <= parts("8.8.0"), o["id"]


def test_alias_is_configurable() -> None:
    dv = next(o for o in saved_objects("kitchen") if o["type"] == "index-pattern")
    assert dv["attributes"]["title"] == "kitchen"


class _Recorder(BaseHTTPRequestHandler):
    seen: list[dict] = []
    status = 200
    refuse = False
    page: bytes | None = None  # an answer that is not Kibana's JSON (a proxy's login page)

    def do_POST(self) -> None:  # noqa: N802
        body = self.rfile.read(int(self.headers["Content-Length"]))
        _Recorder.seen.append({"path": self.path, "headers": dict(self.headers), "body": body})
        self.send_response(_Recorder.status)
        self.send_header("Content-Type", "text/html" if _Recorder.page else "application/json")
        self.end_headers()
        if _Recorder.page:
            self.wfile.write(_Recorder.page)
            return
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
    _Recorder.page = None
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
    # Kibana at a base path (server.basePath, a reverse proxy): the API goes under it
    settings = KibanaSettings.from_env(env={"KIBANA_URL": f"{fake_kibana}/kibana/"})
    import_saved_objects(settings, alias="recipes")
    assert _Recorder.seen[-1]["path"] == "/kibana/api/saved_objects/_import?overwrite=true"


def test_a_ca_certificate_for_a_plain_http_kibana_is_ignored_with_a_warning(
    fake_kibana: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """``KIBANA_CA_CERTS`` naming a missing file stopped an import into a plain-HTTP Kibana ("file not found",
    exit 2) where ``ES_CA_CERTS`` with an http:// ``ES_URL`` is ignored with a warning: now it is too, given
    as a variable, as ``--ca-certs`` or in code. For https:// a missing file is still refused (above)."""
    from tests.logcapture import captured_log

    missing = tmp_path / "ca.crt"
    code, out = _kibana("import", env={"KIBANA_URL": fake_kibana, "KIBANA_CA_CERTS": str(missing)})
    assert code == 0, out
    assert (
        f"KIBANA_CA_CERTS ({missing}) is ignored: it applies to https:// URLs only, and KIBANA_URL is" in out
    )
    code, out = _kibana("import", "--url", fake_kibana, "--ca-certs", str(missing))
    assert code == 0 and f"--ca-certs ({missing}) is ignored" in out and "--url is" in out, out
    assert len(_Recorder.seen) == 2
    with captured_log(caplog, "toolkit.kibana"):
        import_saved_objects(KibanaSettings(url=fake_kibana, ca_certs=str(missing)))
    assert len(_Recorder.seen) == 3
    assert any("is ignored: it applies to https:// URLs only" in m for m in caplog.messages), caplog.messages


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


def test_credentials_default_to_elasticsearch_ones(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("JRS_HOME", str(tmp_path / "home"))  # no local node to take a password from

    def auth(env: dict[str, str]) -> str | None:
        return KibanaSettings.from_env(env=env).headers().get("Authorization")

    basic = _basic("elastic", "pw")
    assert auth({"KIBANA_PASSWORD": "pw"}) == basic  # a password alone: the elastic user's
    assert auth({"ES_PASSWORD": "pw"}) == basic
    assert auth({"ES_API_KEY": "k"}) == "ApiKey k"
    assert auth({"ES_API_KEY": "k", "KIBANA_USERNAME": "u", "KIBANA_PASSWORD": "p"}).startswith("Basic ")
    assert auth({}) is None
    # the same credentials the Elasticsearch client signs in with: ES_URL's user:password@, the credentials file
    assert auth({"ES_URL": "https://ops:p%40ss@es.example.com:9200"}) == _basic("ops", "p@ss")
    creds = tmp_path / "es.env"
    creds.write_text("ES_USERNAME=ops\nES_PASSWORD='from file'\n", encoding="utf-8")
    creds.chmod(0o600)
    assert auth({"ES_CREDENTIALS_FILE": str(creds)}) == _basic("ops", "from file")
    assert auth({"ES_CREDENTIALS_FILE": str(creds), "KIBANA_API_KEY": "kk"}) == "ApiKey kk"  # its own first


def test_password_in_kibana_url_is_basic_auth_and_never_printed(fake_kibana: str) -> None:
    with_password = fake_kibana.replace("http://", "http://elastic:s3cret@")
    for args, env in (([], {"KIBANA_URL": with_password}), (["--url", with_password], {})):
        code, out = _kibana("import", *args, env=env)
        assert code == 0 and out == f"imported 2 saved objects into {fake_kibana}\n", out
        assert _Recorder.seen[-1]["headers"]["Authorization"] == _basic("elastic", "s3cret")
    settings = KibanaSettings.from_env(env={"KIBANA_URL": with_password})
    assert settings.url == fake_kibana and "s3cret" not in repr(settings)


def test_unreachable_kibana_says_why_without_the_password() -> None:
    url = f"http://127.0.0.1:{free_port()}"
    with_password = url.replace("http://", "http://elastic:s3cret@")
    for args, env in (([], {"KIBANA_URL": with_password}), (["--url", with_password], {})):
        code, out = _kibana("import", *args, env=env)
        one_clear_error_line(code, out, f"Kibana at {url} is unreachable: Connection refused")
        assert "s3cret" not in out


def test_an_answer_that_is_not_json_is_a_clear_error(fake_kibana: str) -> None:
    _Recorder.page = b"<!DOCTYPE html>\n<html><title>Sign in</title>\n" + b"x" * 500
    with pytest.raises(
        ToolkitError, match=r"answered HTTP 200 without a JSON result .*<!DOCTYPE html> <html>"
    ):
        import_saved_objects(KibanaSettings.from_env(env={"KIBANA_URL": fake_kibana, "KIBANA_API_KEY": "k"}))
    code, out = _kibana("import", "--url", fake_kibana, env={"KIBANA_PASSWORD": "s3cret"})
    one_clear_error_line(code, out, "HTTP 200", "<title>Sign in</title>", "xxx...")
    assert len(out) < 500 and "s3cret" not in out


@pytest.mark.parametrize(
    ("args", "env", "message"),
    [
        (["--url", "localhost:5601"], {}, "--url must look like http(s)://host[:port], got 'localhost:5601'"),
        ([], {"KIBANA_URL": "elastic:s3cret@localhost:5601"}, "KIBANA_URL must look like"),
        ([], {"KIBANA_URL": "http://elastic:s3/cret@localhost:5601"}, "must be written %2F"),
        (["--url", "http://elastic:s3cret@[::1:5601"], {}, "--url is not a valid URL"),
        (
            ["--url", "https://h:5601", "--ca-certs", "/no/ca.crt"],
            {},
            "--ca-certs file not found: /no/ca.crt",
        ),
        (["--url", "https://h:5601"], {"KIBANA_CA_CERTS": "/no/ca.crt"}, "KIBANA_CA_CERTS file not found"),
        (["--space", "a/b"], {}, "--space must be a Kibana space id"),
        (["--alias", "\udcff"], {"KIBANA_API_KEY": "k"}, "the alias is not valid UTF-8 text"),
        (["--username", "u\udcff"], {}, "--username is not valid UTF-8 text"),
    ],
)
def test_bad_kibana_settings_areone_clear_error_line(
    args: list[str], env: dict[str, str], message: str
) -> None:
    code, out = _kibana("import", *args, env=env)
    one_clear_error_line(code, out, message)
    assert "cret" not in out


def test_export_with_an_alias_that_is_not_utf8_is_a_clear_error() -> None:
    one_clear_error_line(*_kibana("export", "--alias", "\udcff"), "the alias is not valid UTF-8 text")
    with pytest.raises(ConfigError, match="must not be empty"):
        saved_objects(" ")
    code, out = _kibana("export", "--alias", "レシピ")
    assert code == 0 and '"title": "レシピ"' in out


def test_elasticsearch_settings_kibana_does_not_need_do_not_stop_it(caplog) -> None:
    """Without Kibana credentials the Elasticsearch ones are tried; an Elasticsearch setting that is off (a CA
    file that is not there) only costs that fallback, with a warning, not the import into an open Kibana."""
    import logging

    with caplog.at_level(logging.WARNING, logger="toolkit.kibana"):
        settings = KibanaSettings.from_env(
            env={"KIBANA_URL": "http://127.0.0.1:5601", "ES_CA_CERTS": "/nonexistent/ca.pem"}
        )
    assert settings.username is None and settings.api_key is None and settings.password is None
    assert any("ES_CA_CERTS" in r.getMessage() for r in caplog.records)
