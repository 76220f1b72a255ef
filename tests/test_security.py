"""A node with security on (a password for ``elastic``, an API key, HTTPS with a CA made for the test): the
toolkit connects with ES_API_KEY / basic auth and ES_CA_CERTS, and no secret ever reaches output or logs."""

from __future__ import annotations

import base64
import json
import logging
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner
from elasticsearch import BadRequestError

from tests.localnodes import local_node, node_name
from toolkit.cli.main import cli
from toolkit.errors import ConfigError
from toolkit.es import node
from toolkit.es.client import EsUnavailable, make_client
from toolkit.es.config import settings_from_env
from toolkit.es.node import NodeState

pytestmark = pytest.mark.slow


class Secure:
    def __init__(self, state: NodeState) -> None:
        self.state = state
        self.password = node.node_password(state.name) or ""
        assert state.ca_certs and state.url.startswith("https://")
        self.ca = state.ca_certs
        admin = make_client(
            settings_from_env(env={"ES_URL": state.url, "ES_PASSWORD": self.password, "ES_CA_CERTS": self.ca})
        )
        #: a well-formed API key the node has never issued (the 401 path of ES_API_KEY)
        self.bogus_key = base64.b64encode(b"jrs-no-such-id:" + b"k" * 22).decode()
        self.api_key: str | None = None
        self.no_api_keys = ""
        try:
            self.api_key = admin.security.create_api_key(name="jrs-test", expiration="1h")["encoded"]
        except BadRequestError as e:
            # The integ-test distribution has no analysis-common module, which the .security index
            # (where API keys live) needs; a full distribution (ES_URL, docker compose) has it.
            if "pattern_capture" not in str(e):
                raise
            self.no_api_keys = f"this Elasticsearch distribution cannot store API keys: {e.message}"

    @property
    def secrets(self) -> tuple[str, ...]:
        return tuple(s for s in (self.password, self.api_key, self.bogus_key) if s)


@pytest.fixture(scope="module")
def secure() -> Iterator[Secure]:
    with local_node(node_name("secure"), security=True) as state:
        yield Secure(state)


def _no_secret(text: str, secure: Secure) -> None:
    for s in secure.secrets:
        assert s not in text
    assert base64.b64encode(f"elastic:{secure.password}".encode()).decode() not in text


def test_node_serves_https_only_with_its_own_ca(secure: Secure) -> None:
    pem = Path(secure.ca).read_text()
    assert "BEGIN CERTIFICATE" in pem and not (Path(secure.ca).parent / "ca.key").exists()
    url = secure.state.url
    # no credentials: refused; no CA: the certificate cannot be verified; plain HTTP: no answer
    with pytest.raises(EsUnavailable, match=r"refused the credentials \(HTTP 401\)"):
        make_client(settings_from_env(env={"ES_URL": url, "ES_CA_CERTS": secure.ca}))
    with pytest.raises(EsUnavailable, match="could not be verified: set ES_CA_CERTS"):
        make_client(settings_from_env(env={"ES_URL": url, "ES_PASSWORD": secure.password}))
    with pytest.raises(EsUnavailable, match="unreachable"):
        make_client(
            settings_from_env(env={"ES_URL": url.replace("https:", "http:"), "ES_PASSWORD": secure.password})
        )


@pytest.mark.parametrize("how", ["basic", "api_key", "credentials_file"])
def test_client_connects_over_tls(secure: Secure, how: str, tmp_path: Path) -> None:
    env = {"ES_URL": secure.state.url, "ES_CA_CERTS": secure.ca}
    if how == "basic":
        env |= {"ES_USERNAME": "elastic", "ES_PASSWORD": secure.password}
    elif how == "api_key":
        if secure.api_key is None:
            pytest.skip(secure.no_api_keys)
        env |= {"ES_API_KEY": secure.api_key}
    else:
        creds = tmp_path / "es.env"
        creds.write_text(f"# test\nES_PASSWORD='{secure.password}'\n", encoding="utf-8")
        creds.chmod(0o600)
        env |= {"ES_CREDENTIALS_FILE": str(creds)}
    settings = settings_from_env(env=env)
    es = make_client(settings)
    who = es.security.authenticate()
    assert who["username"] == "elastic"
    assert (who.get("authentication_type") == "api_key") == (how == "api_key")
    _no_secret(repr(settings) + settings.describe(), secure)


def test_credentials_file_readable_by_others_is_refused(secure: Secure, tmp_path: Path) -> None:
    creds = tmp_path / "es.env"
    creds.write_text(f"ES_PASSWORD={secure.password}\n", encoding="utf-8")
    creds.chmod(0o644)
    with pytest.raises(ConfigError, match="readable by others") as info:
        settings_from_env(env={"ES_CREDENTIALS_FILE": str(creds)})
    _no_secret(str(info.value), secure)
    result = CliRunner().invoke(
        cli, ["indices", "--alias", "nothing"], env={"ES_CREDENTIALS_FILE": str(creds), "ES_URL": ""}
    )
    assert result.exit_code == 2 and "chmod 600" in result.output
    _no_secret(result.output, secure)


def test_api_key_is_sent_and_a_refused_key_is_not_shown(secure: Secure) -> None:
    env = {"ES_URL": secure.state.url, "ES_CA_CERTS": secure.ca, "ES_API_KEY": secure.bogus_key}
    settings = settings_from_env(env=env)
    assert settings.describe().endswith("(auth: api-key)")
    with pytest.raises(EsUnavailable, match=r"refused the credentials \(HTTP 401\)") as info:
        make_client(settings)
    _no_secret(str(info.value) + repr(settings), secure)


def test_cli_index_and_search_over_tls_leak_no_secret(
    secure: Secure, sample_root: Path, built_model: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    runner = CliRunner()
    env = {"ES_URL": secure.state.url, "ES_CA_CERTS": secure.ca, "ES_USERNAME": "elastic"}
    env |= {"ES_API_KEY": secure.api_key} if secure.api_key else {"ES_PASSWORD": secure.password}
    outputs: list[str] = []

    def run(*args: str, env: dict[str, str] = env) -> tuple[int, str]:
        with caplog.at_level(logging.DEBUG):
            r = runner.invoke(cli, list(args), env=env)
        outputs.append(r.output)
        return r.exit_code, r.stdout

    code, out = run("index", str(sample_root), str(built_model), "--alias", "secure", "--json", "-q")
    assert code == 0, outputs[-1]
    indexed = json.loads(out)
    assert indexed["indexed"] == indexed["count"] > 0 and indexed["rejected"] == 0
    for mode in ("knn", "keyword", "hybrid", "rrf", "linear"):
        code, out = run("search", "玉ねぎを炒める", "--model", str(built_model), "--index", "secure",
                        "--mode", mode, "--show-query")  # fmt: skip
        assert code == 0, outputs[-1]
        assert "POST secure/_search" in outputs[-1]
    code, out = run("indices", "--alias", "secure", "--json")
    assert code == 0 and json.loads(out)["versions"][0]["count"] == indexed["count"]
    # wrong credentials: a clear error naming the URL, never the secret that was tried
    code, _ = run("indices", "--alias", "secure", env={**env, "ES_API_KEY": secure.bogus_key})
    assert code == 3 and "refused the credentials (HTTP 401)" in outputs[-1]
    wrong = {**env, "ES_API_KEY": "", "ES_PASSWORD": secure.password + "-wrong"}
    code, _ = run(
        "search", "玉ねぎ", "--model", str(built_model), "--index", "secure", "--show-query", env=wrong
    )
    assert code == 3 and "refused the credentials" in outputs[-1] and "-wrong" not in outputs[-1]
    everything = "\n".join(outputs) + "\n".join(r.getMessage() for r in caplog.records)
    _no_secret(everything, secure)
    assert os.environ.get("ES_API_KEY") is None or os.environ["ES_API_KEY"] not in everything


def test_credentials_in_es_url_are_used_and_never_shown(secure: Secure) -> None:
    """``https://user:password@host:port`` works like ES_USERNAME/ES_PASSWORD; no message repeats the password."""
    scheme, rest = secure.state.url.split("://", 1)
    url = f"{scheme}://elastic:{secure.password}@{rest}"
    env = {"ES_URL": url, "ES_CA_CERTS": secure.ca, "ES_API_KEY": "", "ES_PASSWORD": ""}
    settings = settings_from_env(env=env)
    assert settings.url == secure.state.url and settings.describe().endswith("(auth: basic (elastic))")
    assert make_client(settings).cluster.health()["status"] in ("green", "yellow")
    runner = CliRunner()
    ok = runner.invoke(cli, ["es", "ping", "--json"], env=env)
    assert ok.exit_code == 0 and json.loads(ok.stdout)["url"] == secure.state.url
    wrong = {**env, "ES_URL": f"{scheme}://elastic:{secure.password}-wrong@{rest}"}
    refused = runner.invoke(cli, ["es", "ping"], env=wrong)
    assert refused.exit_code == 3 and "refused the credentials" in refused.output
    _no_secret(ok.output + refused.output + repr(settings) + settings.describe(), secure)
    assert "-wrong" not in refused.output


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"ES_URL": "http://elastic:S3cret@127.0.0.1:notaport"}, "invalid port"),
        ({"ES_URL": "127.0.0.1:9200"}, "must look like http"),
        ({"ES_URL": "http://127.0.0.1:9200", "ES_TIMEOUT": "abc"}, "ES_TIMEOUT must be"),
        ({"ES_URL": "http://127.0.0.1:9200", "ES_TIMEOUT": "0"}, "ES_TIMEOUT must be"),
    ],
)
def test_bad_connection_settings_are_clear_errors(env: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError, match=message) as info:
        settings_from_env(env=env)
    assert "S3cret" not in str(info.value)
    result = CliRunner().invoke(cli, ["es", "ping"], env={"ES_API_KEY": "", "ES_PASSWORD": "", **env})
    assert result.exit_code == 2 and message in result.output and "S3cret" not in result.output
    assert "Traceback" not in result.output


def test_unreachable_url_with_a_password_does_not_print_it() -> None:
    env = {"ES_URL": "http://elastic:S3cretPW@127.0.0.1:9", "ES_API_KEY": "", "ES_PASSWORD": ""}
    result = CliRunner().invoke(cli, ["es", "ping"], env=env)
    assert result.exit_code == 3 and "unreachable" in result.output
    assert "S3cretPW" not in result.output and "http://127.0.0.1:9" in result.output


def test_password_beyond_ascii_is_sent_and_refused_cleanly(secure: Secure) -> None:
    """elasticsearch-py encodes a (user, password) pair as ASCII: a password such as パスワード was a traceback."""
    env = {
        "ES_URL": secure.state.url,
        "ES_CA_CERTS": secure.ca,
        "ES_API_KEY": "",
        "ES_PASSWORD": "パスワード",
    }
    result = CliRunner().invoke(cli, ["es", "ping"], env=env)
    assert result.exit_code == 3 and "refused the credentials (HTTP 401)" in result.output, result.output
    assert "パスワード" not in result.output and "Traceback" not in result.output


def test_kibana_over_tls_needs_the_ca_and_says_so(secure: Secure) -> None:
    """An HTTPS server whose CA is not given (the secure node stands in for Kibana): a clear line, not
    ``MaxRetryError``; with ``--ca-certs`` the request goes through (and Elasticsearch, being no Kibana, says no)."""
    runner = CliRunner()
    env = {"KIBANA_URL": secure.state.url, "KIBANA_PASSWORD": secure.password, "KIBANA_CA_CERTS": ""}
    unverified = runner.invoke(cli, ["kibana", "import"], env=env)
    assert unverified.exit_code == 2, unverified.output
    assert f"the TLS certificate of Kibana at {secure.state.url} could not be verified" in unverified.output
    assert "--ca-certs" in unverified.output
    verified = runner.invoke(cli, ["kibana", "import", "--ca-certs", secure.ca], env=env)
    assert verified.exit_code == 2 and "Kibana import failed: HTTP 4" in verified.output, verified.output
    _no_secret(unverified.output + verified.output, secure)
