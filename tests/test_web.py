"""The search page's HTTP API on loopback against a real node: searches, photo upload, photo containment."""

from __future__ import annotations

import http.client
import json
import re
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from urllib.parse import quote, urlencode

import pytest
from click.testing import CliRunner
from elasticsearch import Elasticsearch
from PIL import Image

from toolkit.cli.main import cli
from toolkit.model import SearchModel
from toolkit.search.engine import Searcher
from toolkit.search.modes import TEXT_MODES
from toolkit.web.api import ApiServer
from toolkit.web.app import SearchApp
from toolkit.web.params import MAX_PHOTO_NAME_CHARS
from toolkit.web.server import HEAD_TIMEOUT_S, READ_TIMEOUT_S, SearchServer, start_in_thread

QUERY = "玉ねぎを薄切りにします。"
SECRET = b"TOP-SECRET-OUTSIDE-THE-ROOT"


@pytest.fixture(scope="module")
def searcher(es: Elasticsearch, built_model: Path, search_alias: str) -> Searcher:
    return Searcher(es, SearchModel.load(built_model), search_alias)


STACKS = ["stdlib", "fastapi"]


def _serve(
    app: SearchApp,
    stack: str,
    read_timeout: float = READ_TIMEOUT_S,
    allowed_hosts: tuple[str, ...] = (),
    head_timeout: float = HEAD_TIMEOUT_S,
) -> Iterator[SearchServer]:
    if stack == "fastapi":
        api = ApiServer(
            app, read_timeout=read_timeout, allowed_hosts=allowed_hosts, head_timeout=head_timeout
        )
        api.start()
        yield api  # type: ignore[misc]
        api.shutdown()
        api.server_close()
        return
    server, thread = start_in_thread(
        app, read_timeout=read_timeout, allowed_hosts=allowed_hosts, head_timeout=head_timeout
    )
    yield server
    server.shutdown()
    server.server_close()
    thread.join(5)


@pytest.fixture(scope="module", params=STACKS)
def server(searcher: Searcher, sample_root: Path, request) -> Iterator[SearchServer]:
    yield from _serve(SearchApp(searcher, sample_root), request.param)


@pytest.fixture(scope="module", params=STACKS)
def trap_server(
    searcher: Searcher, tmp_path_factory: pytest.TempPathFactory, request
) -> Iterator[SearchServer]:
    """A dataset root with one real photo and symlinks (file and folder) pointing outside it."""
    base = tmp_path_factory.mktemp("trap")
    outside = base / "outside"
    outside.mkdir()
    (outside / "secret.jpg").write_bytes(SECRET)
    (outside / "secret.txt").write_bytes(SECRET)
    root = base / "root"
    (root / "images").mkdir(parents=True)
    Image.new("RGB", (8, 8), (0, 128, 0)).save(root / "images" / "ok.jpg")
    (root / "recipes.jsonl").write_text("{}\n")
    (root / "images" / "evil.jpg").symlink_to(outside / "secret.jpg")
    (root / "images" / "dir").symlink_to(outside, target_is_directory=True)
    (root / "images" / "inside.jpg").symlink_to(root / "images" / "ok.jpg")
    yield from _serve(SearchApp(searcher, root), request.param)


def request(server: SearchServer, method: str, path: str, body: bytes | None = None, headers=None):
    """A raw request: the path goes on the wire as is (no client-side ``..`` normalisation)."""
    host, port = server.server_address[:2]
    conn = http.client.HTTPConnection(host, port, timeout=30)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        resp = conn.getresponse()
        return resp.status, resp.headers, resp.read()
    finally:
        conn.close()


def get_json(server: SearchServer, path: str) -> tuple[int, dict]:
    status, _, body = request(server, "GET", path)
    return status, json.loads(body)


def search(server: SearchServer, **params) -> tuple[int, dict]:
    return get_json(server, "/api/search?" + urlencode(params, doseq=True))


def test_page_and_info(server: SearchServer, es: Elasticsearch, search_alias: str) -> None:
    status, headers, body = request(server, "GET", "/")
    assert status == 200 and headers["Content-Type"].startswith("text/html")
    assert b'id="search-form"' in body and b'type="file"' in body
    assert "default-src 'self'" in headers["Content-Security-Policy"]
    # the mode switch offers every text mode the API runs, the first one checked
    radios = re.findall(rb'<input type="radio" name="mode" value="(\w+)"( checked)?>', body)
    assert [m.decode() for m, _ in radios] == list(TEXT_MODES) and [c for _, c in radios][0]
    assert sum(1 for _, c in radios if c) == 1
    status, info = get_json(server, "/api/info")
    assert status == 200 and info["documents"] == es.count(index=search_alias)["count"]
    assert info["modes"] == list(TEXT_MODES) and set(info["mode_help"]) == set(TEXT_MODES)
    assert "玉ねぎ" in info["ingredients"]
    status, headers, font = request(server, "GET", "/assets/font.ttf")
    assert status == 200 and font[:4] in (b"\x00\x01\x00\x00", b"OTTO") and len(font) > 1_000_000


@pytest.mark.parametrize("mode", TEXT_MODES)
def test_search_modes_return_photos_that_are_served(
    server: SearchServer, sample_root: Path, mode: str
) -> None:
    status, data = search(server, q=QUERY, mode=mode, k=5)
    assert status == 200, data
    assert data["mode"] == mode and len(data["hits"]) == 5
    assert [h["rank"] for h in data["hits"]] == [1, 2, 3, 4, 5]
    if mode == "keyword":
        assert data["hits"][0]["text"] == QUERY
    hit = data["hits"][0]
    assert hit["photo_url"] == "/photo/" + quote(hit["image_path"])
    status, headers, body = request(server, "GET", hit["photo_url"])
    assert status == 200 and headers["Content-Type"] == "image/jpeg"
    assert body == (sample_root / hit["image_path"]).read_bytes()


def test_filters_restrict_hits(server: SearchServer, searcher: Searcher) -> None:
    status, data = search(server, q=QUERY, mode="knn", k=10, ingredient="玉ねぎ")
    assert status == 200 and data["hits"]
    ids = [h["recipe_id"] for h in data["hits"]]
    docs = searcher.es.mget(index=searcher.index, ids=[h["step_id"] for h in data["hits"]])["docs"]
    assert all("玉ねぎ" in d["_source"]["ingredients"] for d in docs)
    status, data = search(server, q=QUERY, mode="hybrid", k=10, recipe=ids[0])
    assert status == 200 and {h["recipe_id"] for h in data["hits"]} == {ids[0]}


def test_upload_a_photo_finds_its_own_step(server: SearchServer, sample_root: Path) -> None:
    _, data = search(server, q=QUERY, mode="knn", k=3)
    hit = data["hits"][2]
    photo = (sample_root / hit["image_path"]).read_bytes()
    status, _, body = request(
        server, "POST", "/api/search/photo?k=4&name=x.jpg", photo, {"Content-Type": "image/jpeg"}
    )
    result = json.loads(body)
    assert status == 200, result
    assert result["mode"] == "image" and result["hits"][0]["step_id"] == hit["step_id"]
    assert result["hits"][0]["score"] > 0.99


def test_an_uploaded_photo_name_is_capped_at_a_file_name_length(
    server: SearchServer, sample_root: Path
) -> None:
    """A photo's ``name`` (quoted back in the answer and in errors) was capped only by the URL's length."""
    _, data = search(server, q=QUERY, mode="knn", k=1)
    photo = (sample_root / data["hits"][0]["image_path"]).read_bytes()
    longest = "玉" * (MAX_PHOTO_NAME_CHARS - 4) + ".jpg"

    def upload(name: str) -> tuple[int, dict]:
        path = "/api/search/photo?" + urlencode({"k": 1, "name": name})
        status, _, body = request(server, "POST", path, photo, {"Content-Type": "image/jpeg"})
        return status, json.loads(body)

    status, result = upload(longest)
    assert status == 200 and result["query"] == longest, result
    status, result = upload(longest + "x")
    assert status == 400, result
    assert result["error"] == f"name {longest[:40]!r}... is 256 characters, over the limit of 255"
    assert upload(" " + longest + " ")[0] == 200  # trimmed first, as every parameter is


def test_recipe_groups_explanations_and_more_like_these(server: SearchServer) -> None:
    status, data = search(server, q=QUERY, mode="hybrid", k=4, group="recipe", per_group=2)
    assert status == 200, data
    groups = data["groups"]
    assert len(groups) == 4 and len({g["recipe_id"] for g in groups}) == 4
    assert all(1 <= len(g["steps"]) <= 2 and g["steps"][0]["score"] == g["score"] for g in groups)
    assert [h["step_id"] for h in data["hits"]] == [g["steps"][0]["step_id"] for g in groups]
    status, data = search(server, q=QUERY + " xyzzyq", mode="knn", k=3, explain=1)
    assert status == 200, data
    ex = data["explanation"]
    assert ex["unknown"][0]["word"] == "xyzzyq" and ex["known"] and ex["contributions"]["method"] == "cosine"
    assert any("xyzzyq" in n for n in data["notes"])
    liked = [h["step_id"] for h in data["hits"][:2]]
    status, data = search(server, like=liked, k=5)
    assert status == 200 and data["mode"] == "like" and len(data["hits"]) == 5
    assert not set(liked) & {h["step_id"] for h in data["hits"]}
    status, data = search(server, like="nope:1")
    assert status == 400 and "nope:1" in data["error"]


@pytest.mark.parametrize(
    "params, message",
    [
        ({"q": QUERY, "group": "tag"}, "unknown group 'tag'"),
        ({"q": QUERY, "group": "recipe", "per_group": "0"}, "per_group must be between 1 and 10"),
        ({"q": QUERY, "explain": "maybe"}, "explain must be 1 or 0"),
        ({"q": QUERY, "mode": "sql"}, "choose one of " + ", ".join(TEXT_MODES)),
        ({"q": QUERY, "mode": "sql"}, "unknown mode 'sql'"),
        ({"q": QUERY, "k": "0"}, "k must be between 1 and 100"),
        ({"q": QUERY, "k": "ten"}, "k must be a whole number"),
        ({"q": "   "}, "type a query"),
        ({"q": "ｘｙｚｚｙ"}, "vocabulary"),
        ({"q": "玉ねぎ" * 700}, "over the limit of 2000"),  # a 500 on the stdlib server once
    ],
)
def test_bad_searches_are_clear_400s(server: SearchServer, params: dict, message: str) -> None:
    """The same words on both servers (FastAPI's own validation once answered "k: Input should be ...")."""
    status, data = search(server, **params)
    assert status == 400, data
    assert message in data["error"]


def test_openapi_description(server: SearchServer) -> None:
    if not isinstance(server, ApiServer):
        pytest.skip("the OpenAPI description comes with the FastAPI server")
    status, spec = get_json(server, "/openapi.json")
    assert status == 200 and {"/api/search", "/api/search/photo", "/api/info"} <= set(spec["paths"])
    names = {p["name"] for p in spec["paths"]["/api/search"]["get"]["parameters"]}
    assert {"q", "mode", "k", "group", "per_group", "explain", "like", "ingredient", "recipe"} <= names
    status, _, body = request(server, "GET", "/docs")
    assert status == 200 and b"swagger" in body.lower()
    # the page works offline: every script and style it loads is served by this server (no CDN)
    page = body.decode("utf-8")
    assets = re.findall(r'(?:src|href)="([^"]+\.(?:js|css))"', page)
    assert assets and all(a.startswith("/") for a in assets), assets
    for asset in assets:
        status, headers, content = request(server, "GET", asset)
        assert (
            status == 200
            and len(content) > 1000
            and headers["Content-Type"].split(";")[0]
            in (
                "text/javascript",
                "application/javascript",
                "text/css",
            )
        )


def test_bad_uploads_are_refused(server: SearchServer) -> None:
    status, _, body = request(
        server, "POST", "/api/search/photo", b"not a photo at all", {"Content-Type": "image/jpeg"}
    )
    assert status == 400 and "not an image" in json.loads(body)["error"]
    error = json.loads(body)["error"]
    assert "'uploaded photo'" in error and "jrs-upload-" not in error  # not the server's temporary file
    status, _, body = request(
        server, "POST", "/api/search/photo?name=dinner.jpg", b"not a photo", {"Content-Type": "image/jpeg"}
    )
    assert status == 400 and "the uploaded photo 'dinner.jpg'" in json.loads(body)["error"]
    status, _, body = request(server, "POST", "/api/search/photo", b"", {"Content-Length": "0"})
    assert status == 400 and "empty" in json.loads(body)["error"]
    status, _, body = request(
        server, "POST", "/api/search/photo", b"x", {"Content-Length": str(64 * 1024 * 1024)}
    )
    assert status == 413
    status, _, _ = request(server, "POST", "/api/other", b"x")
    assert status == 404


@pytest.mark.parametrize(
    "path",
    [
        "/photo/../outside/secret.jpg",
        "/photo/images/../../outside/secret.jpg",
        "/photo/%2e%2e/outside/secret.jpg",
        "/photo/images%2f..%2f..%2foutside%2fsecret.jpg",
        "/photo/..%5coutside%5csecret.jpg",
        "/photo//etc/passwd",
        "/photo/%2Fetc%2Fpasswd",
        "/photo/C:%5cWindows%5cwin.ini",
        "/photo/images/evil.jpg",
        "/photo/images/dir/secret.jpg",
        "/photo/images/dir/secret.txt",
        "/photo/images/ok.jpg%00.txt",
    ],
)
def test_photos_never_come_from_outside_the_root(trap_server: SearchServer, path: str) -> None:
    status, _, body = request(trap_server, "GET", path)
    assert status == 403, (path, status, body)
    assert SECRET not in body and b":0:0:" not in body


def test_only_photo_files_inside_the_root_are_served(trap_server: SearchServer) -> None:
    ok = request(trap_server, "GET", "/photo/images/ok.jpg")
    assert ok[0] == 200 and ok[1]["Content-Type"] == "image/jpeg" and ok[2][:2] == b"\xff\xd8"
    assert request(trap_server, "GET", "/photo/images/inside.jpg")[2] == ok[2]  # a link that stays inside
    assert request(trap_server, "GET", "/photo/recipes.jsonl")[0] == 404  # inside, but not a photo
    assert request(trap_server, "GET", "/photo/images/missing.jpg")[0] == 404
    # a name longer than the file system allows (stat fails with ENAMETOOLONG): not found, not a 500
    assert request(trap_server, "GET", "/photo/images/" + "a" * 300 + ".jpg")[0] == 404
    assert request(trap_server, "GET", "/nowhere")[0] == 404


def test_web_command_refuses_a_root_without_recipes(tmp_path: Path, built_model: Path) -> None:
    res = CliRunner().invoke(cli, ["web", "--model", str(built_model), "--dataset", str(tmp_path)])
    assert res.exit_code == 2 and f"dataset root {tmp_path} has no recipes.jsonl" in res.output


@pytest.mark.parametrize("stack", STACKS)
def test_elasticsearch_gone_is_a_503_the_page_can_show(
    searcher: Searcher, sample_root: Path, stack: str
) -> None:
    """Elasticsearch stops answering while the page is served: a JSON 503 that says so, with the security
    headers (FastAPI sent a bare text/plain 500 the page could not parse; stdlib said "internal error")."""
    import copy

    gone = copy.copy(searcher)
    gone.es = Elasticsearch("http://127.0.0.1:9", max_retries=0, request_timeout=2)
    for server in _serve(SearchApp(gone, sample_root), stack):
        for path in ("/api/info", "/api/search?q=%E7%8E%89%E3%81%AD%E3%81%8E"):
            status, headers, body = request(server, "GET", path)
            assert status == 503, (path, body)
            assert "Elasticsearch stopped answering" in json.loads(body)["error"]
            assert "Content-Security-Policy" in headers


def raw_exchange(server: SearchServer, data: bytes, timeout: float = 30) -> bytes:
    """Send ``data`` on a fresh connection and read until the server closes it."""
    with socket.create_connection(server.server_address[:2], timeout=timeout) as sock:
        sock.sendall(data)
        return read_until_closed(sock)


def read_until_closed(sock: socket.socket) -> bytes:
    reply = b""
    while chunk := sock.recv(65536):
        reply += chunk
    return reply


def head_and_body(reply: bytes) -> tuple[int, dict[str, str], bytes]:
    head, _, body = reply.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = dict(line.split(": ", 1) for line in lines[1:])
    return int(lines[0].split()[1]), {k.lower(): v for k, v in headers.items()}, body


@pytest.mark.parametrize(
    "path", ["/", "/assets/font.ttf", "/api/info", f"/api/search?q={quote(QUERY)}&k=3", "/photo", "/nowhere"]
)
def test_head_answers_like_get_without_a_body(server: SearchServer, path: str) -> None:
    """HEAD on every GET route: GET's status and headers, no body (FastAPI answered 405)."""
    if path == "/photo":
        path = search(server, q=QUERY, k=1)[1]["hits"][0]["photo_url"]
    ask = f"{{}} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
    get_status, get_headers, get_body = head_and_body(raw_exchange(server, ask.format("GET").encode()))
    status, headers, body = head_and_body(raw_exchange(server, ask.format("HEAD").encode()))
    assert status == get_status and get_body and body == b""
    assert headers["content-type"] == get_headers["content-type"]
    assert "content-security-policy" in headers
    if not path.startswith("/api/search"):  # a search's took_ms varies: its length may too
        assert headers["content-length"] == get_headers["content-length"] == str(len(get_body))


STALL_S = 1.0


@pytest.mark.parametrize("stack", STACKS)
def test_a_stalled_upload_is_answered_408_and_the_server_stays_responsive(
    searcher: Searcher, sample_root: Path, stack: str
) -> None:
    """A client announces a 1000-byte photo and sends 10 bytes: after the read timeout it gets a 408 and
    the connection closes (the stdlib server waited forever, holding a thread); others are served meanwhile."""
    for server in _serve(SearchApp(searcher, sample_root), stack, read_timeout=STALL_S):
        with socket.create_connection(server.server_address[:2], timeout=STALL_S * 10) as sock:
            started = time.monotonic()
            sock.sendall(
                b"POST /api/search/photo HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: image/jpeg\r\n"
                b"Content-Length: 1000\r\n\r\n" + b"\xff\xd8" * 5
            )
            assert request(server, "GET", "/")[0] == 200  # not blocked by the stalled upload
            status, _, body = head_and_body(read_until_closed(sock))
            waited = time.monotonic() - started
        assert status == 408 and "stalled" in json.loads(body)["error"], body
        assert STALL_S * 0.9 <= waited < STALL_S * 5


def test_a_stalled_request_head_is_closed(searcher: Searcher, sample_root: Path) -> None:
    """Half a request line on the stdlib server: the connection is closed after the read timeout."""
    for server in _serve(SearchApp(searcher, sample_root), "stdlib", read_timeout=STALL_S):
        started = time.monotonic()
        assert raw_exchange(server, b"GET / HTTP/1.1\r\nHost:", timeout=STALL_S * 10) == b""
        assert time.monotonic() - started < STALL_S * 5
        assert request(server, "GET", "/")[0] == 200


def seconds_until_closed(server: SearchServer, head: bytes, every: float, limit: float) -> float | None:
    """Send ``head`` one byte every ``every`` seconds: the seconds until the server closed the connection (None:
    still open after ``limit`` seconds)."""
    with socket.create_connection(server.server_address[:2], timeout=every) as sock:
        started = time.monotonic()
        for byte in head:
            if time.monotonic() - started > limit:
                return None
            try:
                sock.sendall(bytes([byte]))
                if sock.recv(65536) == b"":
                    return time.monotonic() - started
            except TimeoutError:
                continue
            except OSError:  # reset: closed
                return time.monotonic() - started
    return None


@pytest.mark.parametrize("stack", STACKS)
def test_a_request_head_sent_byte_by_byte_is_closed(
    searcher: Searcher, sample_root: Path, stack: str
) -> None:
    """Slowloris: a head trickling in a byte every 0.25 s (well within the read timeout) held a connection (on
    the stdlib server a thread) for ever on both servers; the connection is now closed once the head has taken
    ``head_timeout`` seconds, and the server goes on serving."""
    head = b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: " + b"a" * 200
    for server in _serve(SearchApp(searcher, sample_root), stack, read_timeout=STALL_S, head_timeout=STALL_S):
        waited = seconds_until_closed(server, head, every=STALL_S / 4, limit=STALL_S * 8)
        assert waited is not None and STALL_S * 0.9 <= waited < STALL_S * 5, waited
        assert request(server, "GET", "/")[0] == 200


#: Host names a loopback server answers, and names a page elsewhere could have pointed at 127.0.0.1
LOOPBACK_HOSTS = [
    "127.0.0.1:{port}",
    "localhost:{port}",
    "localhost",
    "[::1]:{port}",
    "127.0.0.2",
    "LocalHost",
]
REBOUND_HOSTS = [
    "evil.example:{port}",
    "evil.example",
    "127.0.0.1.evil.example",
    "localhost.evil.example",
    "",
]


@pytest.mark.parametrize("stack", STACKS)
def test_a_loopback_server_answers_only_loopback_and_allowed_host_names(
    searcher: Searcher, sample_root: Path, stack: str
) -> None:
    """DNS rebinding: a page elsewhere points a name of its own at 127.0.0.1 and its requests reach the loopback
    server with that name in Host. Both servers answered any Host; now 421 with a short JSON reason (the docs,
    uploads and HEAD included), and the names given with --allowed-host are answered."""
    for server in _serve(SearchApp(searcher, sample_root), stack, allowed_hosts=("recipes.lan", "[fe80::1]")):
        port = server.server_address[1]
        allowed = [*LOOPBACK_HOSTS, "recipes.lan:8000", "RECIPES.LAN", "[fe80::1]:80"]
        for host in (h.format(port=port) for h in allowed):
            assert request(server, "GET", "/api/info", headers={"Host": host})[0] == 200, host
        for host in (h.format(port=port) for h in REBOUND_HOSTS):
            for method, path, body in [
                ("GET", "/", None),
                ("GET", "/api/info", None),
                ("GET", "/docs", None),
            ] + [
                ("POST", "/api/search/photo?k=1", b"\xff\xd8" * 8),
                ("HEAD", "/", None),
            ]:
                status, headers, got = request(server, method, path, body, {"Host": host})
                assert status == 421, (host, method, path, status)
                assert "Content-Security-Policy" in headers
                if method == "HEAD":
                    assert got == b""
                    continue
                error = json.loads(got)["error"]
                assert f"host {host!r} is not served here" in error or "Host header is missing" in error, (
                    error
                )
                assert len(error) < 200
        assert request(server, "GET", "/")[0] == 200  # still serving


def test_which_hosts_are_checked() -> None:
    """Only a server on a loopback address checks unless names are allowed; a name that cannot be a host is
    refused naming it."""
    from toolkit.errors import ConfigError
    from toolkit.web.hosts import HostCheck, host_name

    assert HostCheck.for_server("0.0.0.0") is None and HostCheck.for_server("192.0.2.1") is None
    assert HostCheck.for_server("localhost") == HostCheck.for_server("::1") == HostCheck()
    lan = HostCheck.for_server("0.0.0.0", ["Recipes.LAN:8000", "fe80::1", "[fe80:0::2]"])
    assert lan is not None and lan.allowed == {"recipes.lan", "fe80::1", "fe80::2"}
    assert lan.refusal(["192.0.2.1:8000"]) is not None and lan.refusal(["localhost:8000"]) is None
    assert lan.refusal(["localhost", "localhost"]) == "the Host header is given 2 times"
    for bad in ("", "a b", "x:y", "[::1", "[foo]", "a/b", "user@host"):
        assert host_name(bad) is None, bad
        with pytest.raises(ConfigError, match=re.escape(f"--allowed-host {bad!r} is not a host name")):
            HostCheck.for_server("127.0.0.1", [bad])


def test_web_command_allowed_hosts_from_flags_and_the_environment(
    tmp_path: Path, built_model: Path, search_alias: str, sample_root: Path, es_settings, monkeypatch
) -> None:
    from toolkit.web.hosts import ALLOWED_HOSTS_ENV

    bad = CliRunner().invoke(cli, ["web", "--model", str(tmp_path), "--allowed-host", "a b"])
    assert bad.exit_code == 2 and "--allowed-host 'a b' is not a host name or address" in bad.output
    seen: list = []
    monkeypatch.setattr(SearchServer, "serve_forever", lambda self: seen.append(self.host_check))
    args = ["web", "--model", str(built_model), "--index", search_alias, "--dataset", str(sample_root)]
    args += ["--server", "stdlib", "--port", "0"]
    env = {"ES_URL": es_settings.url, ALLOWED_HOSTS_ENV: "a.lan  b.lan"}
    res = CliRunner().invoke(cli, args, env=env)
    assert res.exit_code == 0, res.output
    assert "answering the Host names localhost, 127.0.0.1, [::1], a.lan, b.lan" in res.output
    res = CliRunner().invoke(
        cli, [*args, "--allowed-host", "c.lan"], env=env
    )  # the flag replaces the variable
    assert res.exit_code == 0, res.output
    assert [c.allowed for c in seen] == [{"a.lan", "b.lan"}, {"c.lan"}]


def _web_command(
    args: list[str], es_settings, monkeypatch: pytest.MonkeyPatch, exercise: Callable[[SearchServer], None]
):
    """``jrs web ARGS --server stdlib --port 0``, with ``exercise(server)`` run while it serves; then it stops."""
    serve = SearchServer.serve_forever

    def serve_while_exercised(server: SearchServer) -> None:
        thread = threading.Thread(target=serve, args=(server,), daemon=True)
        thread.start()
        try:
            exercise(server)
        finally:
            server.shutdown()
            thread.join(5)

    monkeypatch.setattr(SearchServer, "serve_forever", serve_while_exercised)
    return CliRunner().invoke(
        cli, ["web", *args, "--server", "stdlib", "--port", "0"], env={"ES_URL": es_settings.url}
    )


def test_web_command_warms_up_before_it_serves(
    built_model: Path, search_alias: str, sample_root: Path, es_settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``jrs web`` built the tokenizer, the photo encoder and the index's hubness bank on the first requests
    (the first search was slow); they are built before it listens now."""
    searchers: list[Searcher] = []
    args = ["--model", str(built_model), "--index", search_alias, "--dataset", str(sample_root)]
    res = _web_command(args, es_settings, monkeypatch, lambda server: searchers.append(server.app.searcher))
    assert res.exit_code == 0, res.output
    (searcher,) = searchers
    assert searcher.model.warmed
    assert searcher._target is not None and searcher._target.hub is not None  # the photo hubness bank


def test_web_command_started_before_its_index_serves_it_once_made(
    es: Elasticsearch,
    built_model: Path,
    search_alias: str,
    sample_root: Path,
    es_settings,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """``jrs web --index NAME`` before ``jrs index`` made NAME stopped at once (exit 2, index not found): it now
    starts with a warning, answers a clear 400 while NAME is missing, refuses an index of another model once
    NAME points at one, and searches NAME's index once it is this model's."""
    from toolkit.index.lifecycle import alias_targets

    late = f"jrs-test-late-{uuid.uuid4().hex[:8]}"
    other = f"{late}-other-model"
    (made,) = alias_targets(es, search_alias)
    answers: list[tuple[int, dict]] = []

    def exercise(server: SearchServer) -> None:
        answers.append(search(server, q=QUERY, k=3))
        es.indices.create(index=other, mappings={"_meta": {"model_fingerprint": "another-model"}})
        es.indices.put_alias(index=other, name=late)
        answers.append(search(server, q=QUERY, k=3))
        es.indices.update_aliases(
            actions=[{"remove": {"index": other, "alias": late}}, {"add": {"index": made, "alias": late}}]
        )
        answers.append(search(server, q=QUERY, k=3))
        answers.append(get_json(server, "/api/info"))

    try:
        args = ["--model", str(built_model), "--index", late, "--dataset", str(sample_root)]
        res = _web_command(args, es_settings, monkeypatch, exercise)
    finally:
        es.options(ignore_status=404).indices.delete_alias(index=made, name=late)
        es.options(ignore_status=404).indices.delete(index=other)
    assert res.exit_code == 0, res.output
    assert f"index or alias {late!r} does not exist yet (build it with `jrs index`)" in res.output
    (missing, mismatch, found, info) = answers
    assert missing[0] == 400 and f"index or alias {late!r} does not exist" in missing[1]["error"], missing
    assert mismatch[0] == 400 and "found another-model" in mismatch[1]["error"], mismatch
    assert found[0] == 200 and len(found[1]["hits"]) == 3, found
    assert info[0] == 200 and info[1]["documents"] > 0, info


def _control_characters(text: str) -> list[str]:
    import unicodedata

    return [c for c in text if unicodedata.category(c) in ("Cc", "Zl", "Zp")]


@pytest.mark.parametrize("stack", STACKS)
def test_no_response_reflects_control_characters(searcher: Searcher, sample_root: Path, stack: str) -> None:
    """A 404 names the path: FastAPI's reflected DEL, C1 and U+2028 decoded and raw, and answered a path with
    CR/LF in FastAPI's own shape ({"detail": ...}, not the page's {"error": ...}); the stdlib server reflected a
    raw DEL. Both now say the same thing, as the path was sent (percent-encoded), with no raw control byte."""
    paths = ["/a%0d%0aX-Injected:%20yes", "/a%7f%c2%85b%e2%80%a8", "/docs-assets/a%0d%0ab", "/photo%0a"]
    for server in _serve(SearchApp(searcher, sample_root), stack):
        for path in paths:
            status, headers, body = request(server, "GET", path)
            assert status == 404 and "X-Injected" not in headers, (path, body)
            assert json.loads(body) == {"error": f"no such page: {path}"}
            assert not _control_characters(body.decode("utf-8"))
        raw = raw_exchange(server, b"GET /a\x7fb HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
        status, _, body = head_and_body(raw)
        assert status in (400, 404) and not _control_characters(body.decode("utf-8")), body  # h11: 400
        assert status == 400 or json.loads(body) == {"error": "no such page: /a\\x7fb"}


def test_explanation_says_which_unknown_words_were_not_looked_up(server: SearchServer) -> None:
    """The API gave ``"suggestions": []`` past the looked-up words (the page said "no suggestion")."""
    from toolkit.search.explain import SUGGESTED_WORDS

    words = [f"xq{chr(ord('a') + i)}zz" for i in range(SUGGESTED_WORDS + 2)]
    status, data = search(server, q="玉ねぎ " + " ".join(words), explain=1, k=3)
    assert status == 200, data
    unknown = data["explanation"]["unknown"]
    assert [u["looked_up"] for u in unknown] == [True] * SUGGESTED_WORDS + [False] * 2
    assert [u["suggestions"] is None for u in unknown] == [False] * SUGGESTED_WORDS + [True] * 2


#: a "simple" cross-site POST a page elsewhere can make a browser send: a form upload of a photo
FORM_BODY = (
    b'--b\r\nContent-Disposition: form-data; name="photo"; filename="x.jpg"\r\n'
    b"Content-Type: image/jpeg\r\n\r\n" + b"\xff\xd8" * 8 + b"\r\n--b--\r\n"
)
FORM = {"Content-Type": "multipart/form-data; boundary=b"}


@pytest.mark.parametrize("stack", STACKS)
def test_requests_other_sites_pages_send_are_refused(
    searcher: Searcher, sample_root: Path, stack: str
) -> None:
    """Cross-site request forgery: any page could have a visitor's browser POST a photo search here (a model
    inference each; both servers ran it). A method other than GET/HEAD whose Origin is not the server's own, or
    marked Sec-Fetch-Site: cross-site, is now a 403 in the page's JSON shape with the security headers; the
    server's own origin (an allowed host's too), requests without Origin (curl, scripts) and GETs are answered."""
    for server in _serve(SearchApp(searcher, sample_root), stack, allowed_hosts=("recipes.lan",)):
        port = server.server_address[1]
        own = f"127.0.0.1:{port}"
        refused = [
            {"Origin": "http://evil.example"},
            {"Origin": "null"},  # a sandboxed frame or a file:// page
            {"Origin": f"http://127.0.0.1:{port + 1}"},  # another server on this machine
            {"Origin": f"http://localhost:{port}"},  # the same server, but another origin than Host's
            {"Origin": f"http://{own}/path"},
            {"Origin": f"http://{own}", "Sec-Fetch-Site": "cross-site"},
            {"Sec-Fetch-Site": "cross-site"},
        ]
        for extra in refused:
            for method in ("POST", "PUT", "DELETE", "PATCH"):
                status, headers, body = request(
                    server, method, "/api/search/photo?k=1", FORM_BODY, {"Host": own, **FORM, **extra}
                )
                assert status == 403, (extra, method, status, body)
                error = json.loads(body)["error"]
                assert "is not answered here" in error and method in error, error
                assert headers["X-Content-Type-Options"] == "nosniff" and "Content-Security-Policy" in headers
                assert headers["Connection"] == "close"
        # a request for another host is refused as one first (421), whatever its Origin
        status, _, _ = request(
            server,
            "POST",
            "/api/search/photo",
            FORM_BODY,
            {"Host": "evil.example", "Origin": "http://evil.example"},
        )
        assert status == 421
        # answered: the search reaches the app (which finds the form no photo: 400 "not an image")
        answered = [
            {"Host": own},  # no Origin: curl, scripts
            {"Host": own, "Origin": f"http://{own}", "Sec-Fetch-Site": "same-origin"},  # the page itself
            {"Host": f"localhost:{port}", "Origin": f"http://LOCALHOST:{port}"},
            {"Host": "recipes.lan", "Origin": "http://recipes.lan"},  # an allowed host, port 80
            {"Host": "recipes.lan:443", "Origin": "https://recipes.lan"},  # behind a TLS reverse proxy
            {"Host": own, "Sec-Fetch-Site": "none"},  # typed by the user
            # a reverse proxy that rewrites Host to the server's address: the page's origin is an allowed name
            {"Host": own, "Origin": "https://recipes.lan"},
            {"Host": own, "Origin": "https://recipes.lan:8443"},
        ]
        for extra in answered:
            status, _, body = request(server, "POST", "/api/search/photo?k=1", FORM_BODY, {**FORM, **extra})
            assert status == 400 and "not an image" in json.loads(body)["error"], (extra, body)
        for method in ("GET", "HEAD"):  # reading is left to the browser's same-origin policy
            status, _, _ = request(server, method, "/api/info", None, {"Origin": "http://evil.example"})
            assert status == 200
        photo = (sample_root / search(server, q=QUERY, k=1)[1]["hits"][0]["image_path"]).read_bytes()
        status, _, body = request(
            server,
            "POST",
            "/api/search/photo?k=1",
            photo,
            {"Content-Type": "image/jpeg", "Origin": f"http://{own}"},
        )
        assert status == 200 and json.loads(body)["hits"], body


def test_which_origins_are_the_servers_own() -> None:
    """An Origin is the server's own when it names Host's host and port (as the Host check reads them)."""
    from toolkit.web.hosts import cross_site_refusal, is_own_origin

    for origin, host in [
        ("http://127.0.0.1:8000", "127.0.0.1:8000"),
        ("http://localhost", "localhost:80"),
        ("http://Recipes.LAN:80", "recipes.lan"),
        ("https://recipes.lan", "recipes.lan:443"),
        ("https://recipes.lan", "recipes.lan"),  # a reverse proxy forwarding Host as the browser sent it
        ("http://[::1]:8000", "[0:0::1]:8000"),
    ]:
        assert is_own_origin(origin, host), (origin, host)
    for origin, host in [
        ("http://127.0.0.1:8001", "127.0.0.1:8000"),
        ("http://localhost:8000", "127.0.0.1:8000"),
        ("https://recipes.lan", "recipes.lan:80"),
        ("ftp://recipes.lan", "recipes.lan"),
        ("http://user@recipes.lan", "recipes.lan"),
        ("http://recipes.lan/", "recipes.lan"),
        ("null", "recipes.lan"),
        ("http://recipes.lan", "not a host"),
    ]:
        assert not is_own_origin(origin, host), (origin, host)
    assert cross_site_refusal("GET", ["a"], ["http://evil.example"], ["cross-site"]) is None
    assert cross_site_refusal("POST", [], [], []) is None
    assert cross_site_refusal("POST", ["a", "a"], ["http://a"], []) is not None  # which Host?
    assert cross_site_refusal("OPTIONS", ["a"], ["http://b"], []) is not None
    # an allowed name (jrs web --allowed-host) is the origin of a reverse proxy's pages, whatever Host it forwards
    allowed = frozenset({"recipes.lan"})
    assert cross_site_refusal("POST", ["127.0.0.1:8000"], ["https://recipes.lan"], [], allowed) is None
    for origin in (
        "https://evil.example",
        "ftp://recipes.lan",
        "https://recipes.lan/x",
        "https://u@recipes.lan",
    ):
        assert cross_site_refusal("POST", ["127.0.0.1:8000"], [origin], [], allowed) is not None, origin
    assert cross_site_refusal("POST", ["127.0.0.1:8000"], ["https://recipes.lan"], ["cross-site"], allowed)


def test_the_docs_are_not_sniffed(server: SearchServer) -> None:
    """/docs, /openapi.json and Swagger UI's assets went without nosniff and Referrer-Policy (left out with the
    page's CSP, which Swagger UI's own scripts cannot run under: it stays left out there)."""
    if not isinstance(server, ApiServer):
        pytest.skip("the docs come with the FastAPI server")
    for path in ("/docs", "/openapi.json", "/docs-assets/swagger-ui-bundle.js"):
        status, headers, _ = request(server, "GET", path)
        assert status == 200, path
        assert (
            headers["X-Content-Type-Options"] == "nosniff" and headers["Referrer-Policy"] == "no-referrer"
        ), path
        assert "Content-Security-Policy" not in headers, path


@pytest.mark.parametrize("ask", [b"GARBAGE\r\n\r\n", b"GET / HTTP/1.1\r\nHost 127.0.0.1\r\n\r\n"])
def test_a_request_no_server_can_parse_is_a_json_400_with_the_security_headers(
    server: SearchServer, ask: bytes
) -> None:
    """uvicorn answered a request h11 cannot parse with plain text and none of the security headers. (The stdlib
    server's own refusals: tests/test_hostile_data.py; to a request line it cannot read at all it answers as
    to HTTP/0.9, a body without status line or headers.)"""
    if not isinstance(server, ApiServer):
        pytest.skip("uvicorn's own 400")
    status, headers, body = head_and_body(raw_exchange(server, ask))
    assert status == 400 and headers["content-type"].startswith("application/json"), (headers, body)
    assert json.loads(body)["error"] and headers["x-content-type-options"] == "nosniff"
    assert "content-security-policy" in headers and headers["connection"] == "close"
