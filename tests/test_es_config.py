"""Connection settings without a cluster: a bad ``ES_URL``, credentials file or credential is one clear line
(exit 2) that never shows a secret, and the scrubber knows every secret the environment holds."""

from __future__ import annotations

import base64
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from tests.cliassert import one_clear_error_line
from toolkit.cli.main import cli
from toolkit.errors import ConfigError
from toolkit.es.client import make_client
from toolkit.es.config import EsSettings, known_secrets, settings_from_env, split_url

#: What a test's ``jrs es ping`` must not inherit from the shell running the tests
CLEAN = {"ES_API_KEY": "", "ES_PASSWORD": "", "ES_USERNAME": "", "ES_CREDENTIALS_FILE": "", "ES_CA_CERTS": ""}
#: An HTTPS URL nothing answers (where ``ES_CA_CERTS`` applies)
HTTPS = "https://127.0.0.1:9"


def _ping(env: dict[str, str]) -> tuple[int, str]:
    result = CliRunner().invoke(cli, ["es", "ping"], env={**CLEAN, **env})
    return result.exit_code, result.output


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("http://elastic:s3/cret@127.0.0.1:9200", "must be written %2F"),
        ("http://elastic:s3#cret@127.0.0.1:9200", "must be written %2F"),
        ("http://elastic:s3?cret@127.0.0.1:9200", "must be written %2F"),
        ("elastic:s3cret@127.0.0.1:9200", "got '***@127.0.0.1:9200'"),
        ("https//elastic:s3cret@127.0.0.1:9200", "got 'https//***@127.0.0.1:9200'"),
        ("http://elastic:s3cret@[::1:9200", "not a valid URL (Invalid IPv6 URL)"),
        ("http://elastic:s3cret@127.0.0.1:notaport", "invalid port"),
    ],
)
def test_a_malformed_url_never_shows_its_password(url: str, message: str) -> None:
    with pytest.raises(ConfigError, match="ES_URL") as info:
        settings_from_env(env={"ES_URL": url})
    assert "cret" not in str(info.value) and message in str(info.value)
    code, out = _ping({"ES_URL": url})
    one_clear_error_line(code, out, message)
    assert "cret" not in out


@pytest.mark.parametrize("url", ["http://127.0.0.1:9200/?x=1", "http://h:9200#f", "http://h:9200/es?x=1"])
def test_a_url_with_a_query_or_fragment_is_refused(url: str) -> None:
    code, out = _ping({"ES_URL": url})
    one_clear_error_line(code, out, "a query or fragment is not supported", repr(url))
    # the expected form comes before the URL given, not glued after it
    assert f"host[:port][/path prefix], got {url!r}: a query" in out
    assert split_url("http://127.0.0.1:9200/")[0] == "http://127.0.0.1:9200"  # a bare "/" is no path


def test_a_path_is_a_proxy_prefix_the_requests_go_under() -> None:
    """Elasticsearch behind a reverse proxy at a path: the prefix is kept and every request goes under it."""
    import threading
    from http.server import BaseHTTPRequestHandler, HTTPServer

    paths: list[str] = []

    class Proxy(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            paths.append(self.path)
            self.send_response(503)
            self.end_headers()

        def log_message(self, *args) -> None:
            pass

    server = HTTPServer(("127.0.0.1", 0), Proxy)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_port}/search/es/"
        assert split_url(url)[0] == url.rstrip("/")
        code, _ = _ping({"ES_URL": url})
        assert code != 0 and paths and all(p.startswith("/search/es/") for p in paths), paths
    finally:
        server.shutdown()


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("http://bad host:9200", "invalid host name"),
        ("http://h\udcff:9200", "invalid host name"),  # a byte that is not UTF-8 in the variable
        ("http://127.0.0.1:0", "invalid port"),
    ],
)
def test_a_host_or_port_no_client_takes_is_refused(url: str, message: str) -> None:
    one_clear_error_line(*_ping({"ES_URL": url}), message)


def test_a_url_without_a_port_gets_the_schemes_default() -> None:
    assert split_url("http://127.0.0.1")[0] == "http://127.0.0.1:80"
    assert split_url("https://elastic:pw@search.example.com/") == (
        "https://search.example.com:443",  # a trailing / is no prefix
        "elastic",
        "pw",
    )
    make_client(
        settings_from_env(env={"ES_URL": "http://127.0.0.1"}), check=False
    )  # elasticsearch-py takes it


def test_known_secrets_cover_urls_that_do_not_parse_and_kibana(tmp_path: Path) -> None:
    secrets = known_secrets({"ES_URL": "http://elastic:s3/cret@127.0.0.1:9200"})
    assert {"elastic:s3/cret", "s3/cret"} <= set(secrets)
    assert "s3cret" in known_secrets({"ES_URL": "elastic:s3cret@127.0.0.1:9200"})
    assert "p@ss w" in known_secrets({"ES_URL": "http://u:p%40ss%20w@[::1:9200"})
    kibana = {"KIBANA_PASSWORD": "kpw", "KIBANA_API_KEY": "kkey", "KIBANA_URL": "http://u:kurl@h:5601"}
    assert {"kpw", "kkey", "kurl", "u:kurl"} <= set(known_secrets(kibana))
    creds = tmp_path / "es.env"
    creds.write_bytes(b"ES_URL=http://elastic:in-file@h:9200\n\xff\n")  # not UTF-8, mode 0644: read anyway
    assert "in-file" in known_secrets({"ES_CREDENTIALS_FILE": str(creds)})
    assert known_secrets({"ES_URL": "http://h:9200", "ES_CREDENTIALS_FILE": str(tmp_path)}) == ()


def test_credentials_file_that_cannot_be_read_is_named_with_the_reason(tmp_path: Path) -> None:
    creds = tmp_path / "es.env"
    creds.write_bytes(b"# latin-1\nES_PASSWORD=s\xe9cret\n")
    creds.chmod(0o600)
    cases = [(creds, f"credentials file {creds} is not UTF-8 text (line 2"), (tmp_path, "is a directory")]
    for path, message in cases:
        with pytest.raises(ConfigError, match="credentials file"):
            settings_from_env(env={"ES_CREDENTIALS_FILE": str(path)})
        one_clear_error_line(
            *_ping({"ES_CREDENTIALS_FILE": str(path), "ES_URL": "http://127.0.0.1:9"}), message
        )


def test_an_empty_variable_does_not_hide_the_credentials_file(tmp_path: Path) -> None:
    creds = tmp_path / "es.env"
    creds.write_text("ES_PASSWORD=from-file\n", encoding="utf-8")
    creds.chmod(0o600)
    s = settings_from_env(env={"ES_CREDENTIALS_FILE": str(creds), "ES_PASSWORD": "", "ES_URL": "http://h:1"})
    assert (s.username, s.password) == ("elastic", "from-file")


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"ES_PASSWORD": "s3cret\udcff"}, "ES_PASSWORD is not valid UTF-8 text"),
        ({"ES_API_KEY": "キー"}, "ES_API_KEY must be the key Elasticsearch gave"),
        ({"ES_URL": HTTPS, "ES_CA_CERTS": "/no/such/ca.crt"}, "ES_CA_CERTS file not found: /no/such/ca.crt"),
        ({"ES_URL": HTTPS, "ES_CA_CERTS": "/"}, "ES_CA_CERTS names a directory"),
    ],
)
def test_credentials_no_request_can_carry_are_clear_errors(env: dict[str, str], message: str) -> None:
    code, out = _ping({"ES_URL": "http://127.0.0.1:9", **env})
    one_clear_error_line(code, out, message)
    assert "s3cret" not in out


@pytest.mark.parametrize("ca", ["missing", "a file", "a directory"])
def test_a_ca_certificate_with_a_plain_http_url_is_ignored_with_a_warning(
    es_settings, tmp_path: Path, ca: str
) -> None:
    """An ``ES_CA_CERTS`` kept exported for an HTTPS cluster stopped every command against a plain-HTTP one:
    a missing file with "file not found" (exit 2), an existing one with "is for an https:// URL". It is now
    left out with a warning saying it applies to HTTPS only; with https:// a missing file is still refused."""
    if not es_settings.url.startswith("http://"):
        pytest.skip("needs a plain-HTTP cluster")
    path = {"missing": tmp_path / "ca.crt", "a file": tmp_path / "ca.pem", "a directory": tmp_path}[ca]
    if ca == "a file":
        path.write_text("not used\n", encoding="utf-8")
    result = CliRunner().invoke(
        cli, ["es", "ping"], env={**CLEAN, "ES_URL": es_settings.url, "ES_CA_CERTS": str(path)}
    )
    assert result.exit_code == 0, result.output
    warning = (
        f"ES_CA_CERTS ({path}) is ignored: it applies to https:// URLs only, and ES_URL is {es_settings.url}"
    )
    assert warning in result.output
    assert settings_from_env(env={**CLEAN, "ES_URL": "http://h:1", "ES_CA_CERTS": str(path)}).ca_certs is None
    if ca == "missing":
        with pytest.raises(ConfigError, match="ES_CA_CERTS file not found"):
            settings_from_env(env={**CLEAN, "ES_URL": HTTPS, "ES_CA_CERTS": str(path)})


def test_a_ca_certificate_given_in_code_for_a_plain_http_cluster_is_ignored_with_a_warning(
    es_settings, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """``make_client`` still refused "ES_CA_CERTS is for an https:// URL" where the settings came from code (or
    ES_URL was unset and the local node is plain HTTP) although ``ES_CA_CERTS`` with an http:// ``ES_URL`` is
    ignored with a warning: it is now ignored with a warning there too."""
    from tests.conftest import TEST_NODE
    from tests.logcapture import captured_log
    from toolkit.es.client import resolve_settings

    if not es_settings.url.startswith("http://"):
        pytest.skip("needs a plain-HTTP cluster")
    ca = tmp_path / "ca.pem"
    ca.write_text("not used\n", encoding="utf-8")
    given = [EsSettings(url=es_settings.url, ca_certs=str(ca))]
    if not settings_from_env().url:  # the local node the tests started: ES_URL unset
        given.append(EsSettings(ca_certs=str(ca)))
    for settings in given:
        caplog.clear()
        with captured_log(caplog, "toolkit.es.client"):
            es = make_client(settings, node_name=TEST_NODE)
            assert es.cluster.health()["status"] in ("green", "yellow")
            assert resolve_settings(settings, TEST_NODE).ca_certs is None
        warning = (
            f"ES_CA_CERTS ({ca}) is ignored: it applies to https:// URLs only, and Elasticsearch is at "
            f"{es_settings.url}"
        )
        assert warning in caplog.messages, caplog.messages
    https = make_client(EsSettings(url=HTTPS, ca_certs=str(ca)), check=False)  # where it applies, it is kept
    assert https.transport.node_pool.all()[0].config.ca_certs == str(ca)


def test_a_password_beyond_ascii_is_sent_as_utf8_basic_auth() -> None:
    es = make_client(
        settings_from_env(env={"ES_URL": "http://127.0.0.1:9", "ES_PASSWORD": "パスワード"}), check=False
    )
    sent = es._headers["authorization"]  # elasticsearch-py refused it (UnicodeEncodeError) before
    assert sent == "Basic " + base64.b64encode("elastic:パスワード".encode()).decode()


def test_a_missing_ca_file_without_es_url_is_judged_by_the_local_nodes_url(
    es_settings, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """With ``ES_URL`` unset (the local plain-HTTP node), a missing ``ES_CA_CERTS`` file was refused ("file not
    found", exit 2) before the node's URL was known, where with an http:// ``ES_URL`` it is ignored with a
    warning: it is now ignored with the warning too; where the URL is https:// it is still refused by name."""
    from tests.conftest import TEST_NODE
    from tests.logcapture import captured_log
    from toolkit.es.client import resolve_settings

    if settings_from_env().url or not es_settings.url.startswith("http://"):
        pytest.skip("needs the local plain-HTTP node the tests start (ES_URL unset)")
    missing = tmp_path / "no-such-ca.crt"
    settings = settings_from_env(env={**CLEAN, "ES_PASSWORD": "s3cret", "ES_CA_CERTS": str(missing)})
    assert settings.url is None and settings.ca_certs == str(missing)
    with captured_log(caplog, "toolkit.es.client"):
        resolved = resolve_settings(settings, TEST_NODE)
    assert resolved.url == es_settings.url and resolved.ca_certs is None
    warning = (
        f"ES_CA_CERTS ({missing}) is ignored: it applies to https:// URLs only, and Elasticsearch is at "
    )
    assert [m for m in caplog.messages if m.startswith(warning)], caplog.messages
    assert not any("s3cret" in m for m in caplog.messages)
    no_node = settings_from_env(env={**CLEAN, "ES_CA_CERTS": str(missing)})
    with pytest.raises(ConfigError, match="no Elasticsearch to talk to"):  # not a CA complaint: no URL at all
        resolve_settings(no_node, "no-such-node")
    https = replace(settings, url=HTTPS)
    for refuse in (lambda: resolve_settings(https, TEST_NODE), lambda: make_client(https, check=False)):
        with pytest.raises(ConfigError, match=f"^ES_CA_CERTS file not found: {missing}$") as info:
            refuse()
        assert "s3cret" not in str(info.value)


SECRETS = {"api_key": "s3cret-key", "password": "s3cret-pw"}


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("request_timeout", -1, r"request_timeout \(ES_TIMEOUT\) must be a number of seconds > 0, got -1$"),
        ("request_timeout", 0, r"request_timeout \(ES_TIMEOUT\) must be a number of seconds > 0, got 0$"),
        ("request_timeout", "30", r"request_timeout \(ES_TIMEOUT\) must be .*, got str '30'$"),
        ("request_timeout", float("nan"), r"request_timeout \(ES_TIMEOUT\) must be .*, got float nan$"),
        ("request_timeout", True, r"request_timeout \(ES_TIMEOUT\) must be .*, got bool True$"),
        ("verify_certs", "no", r"verify_certs \(ES_VERIFY_CERTS\) must be True or False, got str 'no'$"),
        ("url", 9200, r"url \(ES_URL\) must be None or a string, got int 9200$"),
        ("api_key", b"s3cret-key", r"api_key \(ES_API_KEY\) must be None or a string, got bytes$"),
        ("password", b"s3cret-pw", r"password \(ES_PASSWORD\) must be None or a string, got bytes$"),
    ],
)
def test_settings_of_the_wrong_type_or_range_are_refused_by_name_without_secrets(
    field: str, value: object, message: str
) -> None:
    """``EsSettings(request_timeout=-1)`` was taken, for every request to time out at once (or the client to
    fail on its first one); in code, from the environment or replaced, a bad field is a ConfigError naming it
    and its variable, and no secret's value is ever shown."""
    made = [lambda: EsSettings(**{**SECRETS, field: value})]
    if field not in SECRETS:
        made.append(lambda: replace(EsSettings(url="http://h:1", **SECRETS), **{field: value}))
    for make in made:
        with pytest.raises(ConfigError, match=f"^EsSettings {message}") as info:
            make()
        assert "s3cret" not in str(info.value)


def test_a_bad_timeout_from_the_environment_names_its_variable_without_secrets() -> None:
    env = {"ES_URL": "http://u:s3cret-url@h:1", "ES_API_KEY": "s3cret-key", "ES_TIMEOUT": "-1"}
    with pytest.raises(ConfigError, match=r"^ES_TIMEOUT must be a number of seconds > 0, got '-1'$") as info:
        settings_from_env(env)
    assert "s3cret" not in str(info.value)
    settings = settings_from_env({**env, "ES_TIMEOUT": "2.5"}, request_timeout=np.float64(4))
    assert settings.request_timeout == 4.0 and type(settings.request_timeout) is float
    assert EsSettings(request_timeout=np.int64(5)).request_timeout == 5.0
