"""Every command that talks to Elasticsearch fails fast, with one clear line, when the cluster is unreachable,
the index is missing or the model directory is incomplete (exit status 2, no traceback)."""

from __future__ import annotations

import json
import os
import time
from dataclasses import asdict
from pathlib import Path

import pytest
from click.testing import CliRunner

from toolkit.cli.main import cli
from toolkit.es.config import EsSettings
from toolkit.es.node import free_port

COMMANDS = {
    "es-ping": ["es", "ping"],
    "index": ["index", "{root}", "{model}", "--alias", "nope-failfast"],
    "indices": ["indices", "--alias", "nope-failfast"],
    "search": ["search", "玉ねぎを炒める", "--model", "{model}", "--index", "nope-failfast"],
    "search-keyword": [
        "search",
        "玉ねぎ",
        "--mode",
        "keyword",
        "--model",
        "{model}",
        "--index",
        "nope-failfast",
    ],
}


def _run(args: list[str], env: dict[str, str], **paths: Path) -> tuple[int, str, float]:
    args = [a.format(**{k: str(v) for k, v in paths.items()}) for a in args]
    t0 = time.monotonic()
    result = CliRunner().invoke(cli, args, env=env)
    return result.exit_code, result.output, time.monotonic() - t0


@pytest.fixture
def incomplete_model(tmp_path: Path) -> Path:
    model = tmp_path / "model"
    (model / "word2vec").mkdir(parents=True)
    (model / "manifest.json").write_text("{}", encoding="utf-8")
    return model


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_unreachable_cluster(command: str, sample_root: Path, incomplete_model: Path) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    code, out, seconds = _run(COMMANDS[command], {"ES_URL": url}, root=sample_root, model=incomplete_model)
    assert code == 3 and f"Error: Elasticsearch at {url} is unreachable" in out, out
    assert "Traceback" not in out and seconds < 15


@pytest.mark.parametrize("command", ["index", "search"])
def test_incomplete_model_directory(
    command: str, es_settings: EsSettings, sample_root, incomplete_model
) -> None:
    env = {"ES_URL": es_settings.url}
    code, out, seconds = _run(COMMANDS[command], env, root=sample_root, model=incomplete_model)
    assert code == 2 and f"model directory {incomplete_model} is incomplete: missing mapping" in out, out
    assert "Traceback" not in out and seconds < 30


def test_missing_index(es_settings: EsSettings, built_model: Path) -> None:
    code, out, _ = _run(COMMANDS["search"], {"ES_URL": es_settings.url}, model=built_model)
    assert code == 2 and "index or alias 'nope-failfast' does not exist" in out, out
    code, out, _ = _run(COMMANDS["indices"], {"ES_URL": es_settings.url})
    assert code == 0 and "no versions of nope-failfast" in out


def test_no_cluster_configured_at_all(tmp_path: Path) -> None:
    """No ES_URL and no local node: say how to get one."""
    env = {"ES_URL": "", "JRS_HOME": str(tmp_path / "empty-home")}
    code, out, _ = _run(COMMANDS["indices"], env)
    assert code == 2 and "set ES_URL" in out and "jrs es up" in out


def test_es_ping_answers_for_a_reachable_cluster(es_settings: EsSettings) -> None:
    code, out, _ = _run(["es", "ping"], {"ES_URL": es_settings.url})
    assert (
        code == 0
        and out.startswith(f"{es_settings.url} (auth: none): ")
        and out.split()[-1]
        in (
            "green",
            "yellow",
        )
    )


def test_a_named_local_node_is_pinged_by_name_and_named_when_no_cluster_is_configured(
    es_settings: EsSettings, tmp_path: Path
) -> None:
    """With only a node started by ``jrs es up --name X`` running, commands said "start the local node with
    `jrs es up`" and ``jrs es ping`` had no ``--name``: the error now names the running node and how to use it,
    and ``jrs es ping --name X`` pings it (whatever ES_URL says), as ``es up/down/status --name`` act on it."""
    from tests.conftest import TEST_NODE
    from toolkit.es import node

    if os.environ.get("ES_URL"):
        pytest.skip("the tests run against ES_URL, not a local node")
    state = node.read_state(TEST_NODE)
    assert state is not None
    home = tmp_path / "home"  # a home where the only node is the test node under another name
    (home / "nodes" / "other").mkdir(parents=True)
    (home / "nodes" / "other" / "state.json").write_text(json.dumps({**asdict(state), "name": "other"}))
    env = {
        "JRS_HOME": str(home),
        "ES_URL": "",
        "ES_CREDENTIALS_FILE": "",
        "ES_PASSWORD": "",
        "ES_API_KEY": "",
    }
    code, out, _ = _run(COMMANDS["indices"], env)
    assert code == 2 and "or start the local node with `jrs es up`; " in out, out
    use = f"the local node 'other' is running at {state.url}: use it with ES_URL={state.url} "
    assert use in out and "(Python: make_client(node_name='other'))" in out, out
    code, out, _ = _run(COMMANDS["indices"], {**env, "ES_URL": state.url})  # as the error says
    assert code == 0, out
    for url in ("", "http://127.0.0.1:9"):  # --name: that node, whatever ES_URL says
        code, out, _ = _run(["es", "ping", "--name", "other"], {**env, "ES_URL": url})
        assert code == 0 and out.startswith(f"{state.url} (auth: none): "), out
    code, out, _ = _run(["es", "ping", "--name", "missing", "--json"], env)
    assert code == 3, out
    assert "the local node 'missing' is not running: start it with `jrs es up --name missing`" in out
    code, out, _ = _run(["es", "ping"], env)  # no --name, no ES_URL: the default node, absent here
    assert code == 2 and use in out, out
    code, out, _ = _run(["es", "ping", "--name", "../x"], env)
    assert code == 2 and "node name '../x' is not allowed" in out, out
