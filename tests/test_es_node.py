"""The local node and the client: a real round trip against Elasticsearch."""

from __future__ import annotations

import os
import re
import signal
from pathlib import Path

import pytest
from click.testing import CliRunner
from elasticsearch import Elasticsearch

from tests.localnodes import HEAP, node_name
from toolkit.cli.main import cli
from toolkit.es import node
from toolkit.es.client import EsUnavailable, es_failure, make_client
from toolkit.es.config import EsSettings, settings_from_env
from toolkit.es.node import NodeError, free_port


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


def test_unreachable_cluster_says_why() -> None:
    """Not the exception's class name ("ConnectionError"): the reason the connection failed, before and during a
    command (a node that stops answering mid-command fails the same way)."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    with pytest.raises(EsUnavailable, match=f"^Elasticsearch at {url} is unreachable: Connection refused$"):
        make_client(EsSettings(url=url, request_timeout=2))
    client = Elasticsearch(url, request_timeout=2, max_retries=0)
    with pytest.raises(Exception) as lost:
        client.cluster.health()
    failure = es_failure(lost.value)
    assert isinstance(failure, EsUnavailable)
    assert str(failure) == "Elasticsearch stopped answering: Connection refused"


def test_a_server_that_is_not_elasticsearch_is_named_as_such() -> None:
    """ES_URL pointing at another HTTP server (a web server, a proxy) answers 404 with no Elasticsearch error:
    one line saying so, not "refused the request (HTTP 404): None"."""
    import http.server
    import threading

    class NotElasticsearch(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - the stdlib's name
            self.send_response(404)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.HTTPServer(("127.0.0.1", 0), NotElasticsearch)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        with pytest.raises(EsUnavailable) as info:
            make_client(EsSettings(url=url, request_timeout=2))
    finally:
        server.shutdown()
        server.server_close()
    assert str(info.value) == (
        f"{url} answered HTTP 404 without an Elasticsearch error body: is it an Elasticsearch server "
        "(check ES_URL)?"
    )


def test_settings_repr_never_shows_secrets() -> None:
    s = settings_from_env(
        env={"ES_URL": "http://x:9200", "ES_API_KEY": "s3cr3t-key", "ES_PASSWORD": "pw-123"}
    )
    assert "s3cr3t-key" not in repr(s) and "pw-123" not in repr(s) and "pw-123" not in s.describe()
    assert s.username == "elastic" and s.secrets == ("s3cr3t-key", "pw-123")


# --- jrs es up: bad options and a start that runs out of time ------------------------------------


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["--name", "../evil"], "node name '../evil' is not allowed"),
        (["--name", ".hidden"], "node name '.hidden' is not allowed"),
        (["--port", "70000"], "70000 is not in the range 1<=x<=65535"),
        (["--port", "-1"], "-1 is not in the range 1<=x<=65535"),
        (["--timeout", "-5"], "-5.0 is not in the range x>0"),
        (["--timeout", "0"], "0.0 is not in the range x>0"),
        (["--version", "../8.19.21"], "'../8.19.21' is not a release number like 8.19.21"),
        # Elasticsearch serves plain HTTP without security: the node never answered https://, the start timed out
        (["--tls"], "--tls needs --security: without security Elasticsearch serves plain HTTP"),
    ],
)
def test_es_up_refuses_bad_options_before_touching_anything(
    tmp_path: Path, args: list[str], expected: str
) -> None:
    """A traversing name made a directory outside nodes/, a port out of range was an OverflowError
    traceback, a negative timeout a TimeoutExpired traceback."""
    home = tmp_path / "home"
    result = CliRunner().invoke(cli, ["es", "up", *args], env={"JRS_HOME": str(home)})
    assert result.exit_code == 2, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)
    assert expected in result.stderr and "Traceback" not in result.output
    assert not home.exists() and not (tmp_path / "evil").exists()


def test_library_refuses_bad_names_and_ports() -> None:
    with pytest.raises(NodeError, match="is not allowed"):
        node.node_dir("../../etc")
    with pytest.raises(NodeError, match="port 70000 is not a TCP port"):
        free_port(70000)
    with pytest.raises(NodeError, match="more than 0 seconds"):
        node.up(name="never-started", timeout=-5)


MAVEN_NOT_FOUND = (
    "\x1b[0m[ERROR] Failed to execute goal org.apache.maven.plugins:maven-dependency-plugin:2.8:copy "
    "(default-cli) on project standalone-pom: Unable to find artifact. "
    "org.elasticsearch.distribution.integ-test-zip:elasticsearch:zip:1.2.3 was not found in "
    "https://repo.maven.apache.org/maven2 during a previous attempt.\n[ERROR] \n"
    + "[ERROR] Try downloading the file manually from the project website.\n"
    * 25
)


def test_unknown_version_is_one_line_and_the_maven_output_is_kept(tmp_path: Path) -> None:
    """``--version 1.2.3`` printed ~30 lines of Maven [ERROR] output. (Maven itself is stood in for by a
    script replaying what it prints for a version Central does not have.)"""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (tmp_path / "maven.out").write_text(MAVEN_NOT_FOUND, encoding="utf-8")
    fake = bin_dir / "mvn"
    fake.write_text(f"#!/bin/sh\ncat {tmp_path / 'maven.out'}\nexit 1\n", encoding="utf-8")
    fake.chmod(0o755)
    home = tmp_path / "home"
    env = {"JRS_HOME": str(home), "PATH": f"{bin_dir}:{os.environ['PATH']}"}
    result = CliRunner().invoke(cli, ["es", "up", "--name", "t", "--version", "1.2.3"], env=env)
    assert result.exit_code == 2, result.output
    log = home / "downloads" / "elasticsearch-1.2.3.maven.log"
    assert result.stderr.splitlines() == [
        "Error: fetching Elasticsearch 1.2.3 from Maven Central failed: no such version "
        "(org.elasticsearch.distribution.integ-test-zip:elasticsearch:zip:1.2.3 was not found in "
        f"https://repo.maven.apache.org/maven2); full Maven output in {log}"
    ]
    assert log.read_text(encoding="utf-8").count("[ERROR]") == 27


def _node_processes(ndir: Path) -> list[int]:
    """Running Elasticsearch JVMs using ``ndir``'s config (whatever wrote or did not write a PID file)."""
    pids = [int(p.name) for p in Path("/proc").iterdir() if p.name.isdigit()]
    return [pid for pid in pids if node._pid_is_node(pid, ndir)]


def test_a_start_past_its_timeout_stops_the_node_it_started() -> None:
    """``jrs es up --timeout 1`` was a TimeoutExpired traceback that left a daemonised node running with no
    state.json: `es status` said not running, `es down` stopped nothing, it had to be killed by hand."""
    name = node_name("timeout")
    ndir = node.node_dir(name)
    env = {"JRS_ES_HEAP": HEAP, "ES_URL": ""}
    try:
        result = CliRunner().invoke(cli, ["es", "up", "--name", name, "--timeout", "1"], env=env)
        assert result.exit_code == 2, result.output
        (line,) = [x for x in result.stderr.splitlines() if x.startswith("Error:")]
        assert line.startswith("Error: Elasticsearch did not become healthy within 1 s (--timeout); ")
        assert "stopped the Elasticsearch processes it started (pid " in line, line
        pids = [int(p) for p in re.search(r"\(pid ([\d, ]+)\)", line).group(1).split(", ")]
        assert pids and not any(node._running(p) for p in pids)
        assert _node_processes(ndir) == []
        assert not (ndir / "state.json").exists()
        status = CliRunner().invoke(cli, ["es", "status", "--name", name], env=env)
        assert status.exit_code == 1 and "not running" in status.output
    finally:
        for pid in _node_processes(ndir):  # never leave a node behind, whatever the assertions said
            os.kill(pid, signal.SIGKILL)
        node.destroy(name)


def test_the_start_note_names_the_scheme_the_node_serves(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With TLS on, the start note said ``starting Elasticsearch ... on http://...``: the node serves HTTPS.
    (A start cut short by a 1 s timeout: the note comes before the wait, and nothing is left running.)"""
    from tests.logcapture import captured_log

    name = node_name("scheme")
    ndir = node.node_dir(name)
    env = {"JRS_ES_HEAP": HEAP, "ES_URL": ""}
    try:
        result = CliRunner().invoke(
            cli, ["es", "up", "--name", name, "--security", "--timeout", "1"], env=env
        )
        assert result.exit_code == 2, result.output
        (note,) = [x for x in result.output.splitlines() if "starting Elasticsearch" in x]
        assert re.search(r" on https://127\.0\.0\.1:\d+ \(java: ", note), note
        monkeypatch.setenv("JRS_ES_HEAP", HEAP)
        caplog.clear()  # the command's records too may have reached caplog
        with captured_log(caplog, "toolkit.es.node"), pytest.raises(NodeError):
            node.up(name, timeout=1)  # plain HTTP
        # one record can reach caplog's handler twice (on the logger and, propagated, on the root logger)
        (note,) = {
            r.getMessage() for r in caplog.records if r.getMessage().startswith("starting Elasticsearch")
        }
        assert re.search(r" on http://127\.0\.0\.1:\d+ \(java: ", note), note
    finally:
        for pid in _node_processes(ndir):  # never leave a node behind, whatever the assertions said
            os.kill(pid, signal.SIGKILL)
        node.destroy(name)
