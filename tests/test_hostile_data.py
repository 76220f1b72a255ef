"""A collection and requests written by an attacker (or a careless user): markup, scripts, right-to-left overrides
and oversized values in recipe text, ids, ingredients, tags and photo names, against a real node, both servers,
the report, headless Chromium and ``jrs index --image-base-url``."""

from __future__ import annotations

import base64
import hashlib
import json
import re
import shutil
import time
import uuid
from collections.abc import Iterator
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import quote, urlencode

import pytest
from click.testing import CliRunner
from elasticsearch import Elasticsearch

from tests.test_web import STACKS, _serve, head_and_body, raw_exchange, request
from tests.test_web_browser import browser  # noqa: F401 - the Chromium fixture
from toolkit.cli.main import cli
from toolkit.index.indexer import IndexOptions
from toolkit.index.update import UpdateOptions
from toolkit.model import SearchModel
from toolkit.search.engine import Searcher
from toolkit.web.app import SearchApp
from toolkit.web.server import SearchServer, start_in_thread

#: markup that runs a script wherever it is pasted into HTML unescaped, and a right-to-left override
PAYLOAD = '"><img src=x onerror=alert(1)><script>alert(2)</script>\u202e'
RECIPE_ID = "r000000" + PAYLOAD.replace(" ", "_")  # a recipe id has no spaces to trim
TITLE = "えび" + PAYLOAD
INGREDIENT = "えび" + PAYLOAD
PHOTO_NAME = 'x" onerror="alert(3).jpg'
BASE_URL = "http://127.0.0.1:8000/photo/"
#: values an ``ingredient`` or ``recipe`` filter takes (toolkit.web.params.MAX_FILTER_VALUES)
MAX_FILTER_VALUES = 100


@pytest.fixture(scope="module")
def hostile_root(sample_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``sample_root`` whose first recipe carries :data:`PAYLOAD` in every field and in a photo's file name."""
    root = tmp_path_factory.mktemp("hostile") / "root"
    shutil.copytree(sample_root, root)
    lines = (root / "recipes.jsonl").read_text(encoding="utf-8").splitlines()
    recipe = json.loads(lines[0])
    recipe.update(recipe_id=RECIPE_ID, title=TITLE, tags=[*recipe["tags"], "tag" + PAYLOAD])
    recipe["ingredients"][0]["name"] = INGREDIENT
    step = next(s for s in recipe["steps"] if s.get("image"))
    photo = root / step["image"]
    photo.rename(photo.with_name(PHOTO_NAME))
    step["image"] = str(photo.with_name(PHOTO_NAME).relative_to(root))
    step["text"] += PAYLOAD
    lines[0] = json.dumps(recipe, ensure_ascii=False)
    (root / "recipes.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return root


@pytest.fixture(scope="module")
def hostile_alias(es: Elasticsearch, hostile_root: Path, built_model: Path) -> Iterator[str]:
    from toolkit.index.indexer import index_dataset

    alias = f"jrs-test-hostile-{uuid.uuid4().hex[:8]}"
    index_dataset(es, hostile_root, built_model, IndexOptions(alias=alias, image_base_url=BASE_URL))
    yield alias
    for idx in es.indices.get(index=f"{alias}*", ignore_unavailable=True, allow_no_indices=True):
        es.indices.delete(index=idx, ignore_unavailable=True)
    es.options(ignore_status=404).indices.delete_index_template(name=f"{alias}-template")


@pytest.fixture(scope="module")
def app(es: Elasticsearch, built_model: Path, hostile_alias: str, hostile_root: Path) -> SearchApp:
    return SearchApp(Searcher(es, SearchModel.load(built_model), hostile_alias), hostile_root)


@pytest.fixture(scope="module", params=STACKS)
def server(app: SearchApp, request) -> Iterator[SearchServer]:
    yield from _serve(app, request.param)


def _search(server: SearchServer, **params) -> tuple[int, dict, bytes]:
    status, headers, body = request(server, "GET", "/api/search?" + urlencode(params, doseq=True))
    return status, headers, body


def test_the_api_returns_hostile_text_as_data(
    server: SearchServer, es: Elasticsearch, hostile_alias: str
) -> None:
    """Markup in a recipe comes back as JSON strings, nosniff, exactly as written; its photo is served."""
    status, headers, body = _search(server, q="えび", recipe=RECIPE_ID, k=10)
    assert status == 200, body
    assert (
        headers["Content-Type"].startswith("application/json")
        and headers["X-Content-Type-Options"] == "nosniff"
    )
    hits = json.loads(body)["hits"]
    assert hits and {h["recipe_id"] for h in hits} == {RECIPE_ID} and {h["title"] for h in hits} == {TITLE}
    hit = next(h for h in hits if h["image_path"].endswith(PHOTO_NAME))
    assert hit["photo_url"] == "/photo/" + quote(hit["image_path"], safe="/") and '"' not in hit["photo_url"]
    status, headers, photo = request(server, "GET", hit["photo_url"])
    assert status == 200 and headers["Content-Type"] == "image/jpeg" and photo[:2] == b"\xff\xd8"
    # the Kibana thumbnail URL: the base, then the path percent-encoded (no quote or space to leave src="...")
    doc = es.get(index=hostile_alias, id=hit["step_id"])["_source"]
    assert doc["image_url"] == BASE_URL + quote(hit["image_path"], safe="/")
    status, _, info = request(server, "GET", "/api/info")
    assert status == 200 and INGREDIENT in json.loads(info)["ingredients"]


@pytest.mark.parametrize(
    "params, message",
    [
        ({"ingredient": "x" * 1001}, "ingredient 'xxxx"),
        ({"ingredient": "x" * 60_000}, "is 60000 characters, over the limit of 1000"),  # seconds to tokenise
        ({"recipe": "r" * 481}, "is 481 bytes in UTF-8, over the limit of 480"),
        ({"recipe": "あ" * 161}, "is 483 bytes in UTF-8, over the limit of 480"),
        (
            {"recipe": [f"r{i}" for i in range(MAX_FILTER_VALUES + 1)]},
            "recipe is given 101 times, over the limit",
        ),
        ({"ingredient": [f"i{i}" for i in range(MAX_FILTER_VALUES + 1)]}, "ingredient is given 101 times"),
        ({"like": "s" * 513}, "like 'ssss"),
    ],
)
def test_oversized_filters_are_refused_before_any_work(
    server: SearchServer, params: dict, message: str
) -> None:
    """A filter no recipe can match is a 400 saying which and why, at once and in a short message: a 60,000
    character ingredient held the search lock for 7 s and then got Elasticsearch's "failed to parse field
    [filter]"; a 481-byte recipe id or 101 recipe ids searched (no recipe id is that long; the filter lists
    are bounded like ``like``); a 513-byte step id was quoted back whole."""
    started = time.monotonic()
    status, _, body = _search(server, q="えび", **params)
    assert status == 400 and message in json.loads(body)["error"], body
    assert len(body) < 300 and time.monotonic() - started < 2


def test_filters_at_the_limits_still_search(server: SearchServer) -> None:
    """The longest ingredient and recipe id a collection can hold, and as many as allowed, are searched."""
    status, _, body = _search(server, q="えび", ingredient="x" * 1000, recipe="r" * 480, mode="keyword")
    assert status == 200 and json.loads(body)["hits"] == [], body
    recipes = [RECIPE_ID, *(f"r{i:06d}" for i in range(1, MAX_FILTER_VALUES))]
    status, _, body = _search(server, q="えび", recipe=recipes, k=5, mode="keyword")
    assert status == 200 and json.loads(body)["hits"], body


def test_the_page_runs_only_its_own_script(server: SearchServer) -> None:
    """The page's CSP names its one inline script by hash (it allowed any inline script, and any site could
    frame it): injected markup could run nothing."""
    status, headers, page = request(server, "GET", "/")
    assert status == 200
    csp = dict(d.strip().split(" ", 1) for d in headers["Content-Security-Policy"].split(";"))
    (script,) = re.findall(rb"<script>(.*?)</script>", page, re.DOTALL)
    assert csp["script-src"] == f"'sha256-{base64.b64encode(hashlib.sha256(script).digest()).decode()}'"
    assert (
        csp["frame-ancestors"] == "'none'" and csp["object-src"] == "'none'" and csp["base-uri"] == "'none'"
    )


def test_the_stdlib_servers_own_refusals_are_json_with_the_security_headers(app: SearchApp) -> None:
    """What the standard library refuses itself (a request line over 64 KiB, a method with no route, a header
    line too long) was its HTML error page, without the security headers; now the page's JSON shape."""
    for server in _serve(app, "stdlib"):
        asks = {
            414: b"GET /api/search?q=" + b"x" * 70_000 + b" HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n",
            501: b"PUT / HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 0\r\n\r\n",
            431: b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nX: " + b"y" * 70_000 + b"\r\n\r\n",
        }
        for code, ask in asks.items():
            status, headers, body = head_and_body(raw_exchange(server, ask))
            assert status == code and headers["content-type"].startswith("application/json"), body
            assert json.loads(body)["error"] and headers["x-content-type-options"] == "nosniff"
            assert "Content-Security-Policy".lower() in headers and headers["connection"] == "close"


class _Tags(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []

    def handle_starttag(self, tag: str, attrs) -> None:
        self.tags.append((tag, dict(attrs)))


def test_the_report_escapes_and_isolates_collection_text(
    app: SearchApp, built_model: Path, hostile_root: Path, tmp_path: Path
) -> None:
    """Sample queries carrying markup stay text; each sits in <bdi> (its right-to-left override reordered the
    closing bracket after it), and the page's CSP lets no script run and nothing load."""
    from toolkit.viz.report import write_report

    out = tmp_path / "report.html"
    query = "えびを蒸し器に並べます。" + PAYLOAD
    write_report(built_model, out, app.searcher, dataset_root=hostile_root, queries=[query], k=4, title=TITLE)
    page = out.read_text(encoding="utf-8")
    parser = _Tags()
    parser.feed(page)
    assert not [
        t for t, a in parser.tags if t in ("script", "iframe", "object") or any(k.startswith("on") for k in a)
    ]
    assert all(a["src"].startswith("data:image/png;base64,") for t, a in parser.tags if t == "img")  # type: ignore[union-attr]
    csp = next(
        a["content"]
        for t, a in parser.tags
        if t == "meta" and a.get("http-equiv") == "Content-Security-Policy"
    )
    assert "default-src 'none'" in csp and "script-src" not in csp  # type: ignore[operator]
    escaped = '"&gt;&lt;img src=x onerror=alert(1)&gt;&lt;script&gt;alert(2)&lt;/script&gt;\u202e'
    assert f"「<bdi>えびを蒸し器に並べます。&quot;{escaped[1:]}</bdi>」" in page
    assert f"<title>えび&quot;{escaped[1:]}</title>" in page


def test_the_page_shows_hostile_text_as_text(browser, app: SearchApp) -> None:  # noqa: F811
    """In Chromium: no alert, no injected element, the ingredient list and the cards show the text as written,
    and a recipe's title is isolated in its heading (its right-to-left override turned "(3.6066)" after it
    into "(6606.3)")."""
    server, thread = start_in_thread(app)
    try:
        page = browser.new_page(viewport={"width": 1200, "height": 900}, locale="ja-JP")
        events: list[str] = []
        page.on("dialog", lambda d: (events.append(f"dialog {d.message}"), d.dismiss()))
        page.on("pageerror", lambda e: events.append(f"error {e}"))
        page.on("console", lambda m: events.append(m.text) if "Content Security Policy" in m.text else None)
        page.goto(server.url)
        page.wait_for_selector("body[data-ready='1']")
        options = page.eval_on_selector_all("#ingredient option", "os => os.map(o => o.textContent)")
        assert INGREDIENT in options
        page.fill("#q", "えびトマト角切り")
        page.check("input[name=mode][value=keyword]")
        page.fill("#recipe", RECIPE_ID)
        page.check("#group")
        page.wait_for_selector('#results[data-grouped="1"][data-count="1"]:not([aria-busy])')
        page.wait_for_function("() => [...document.querySelectorAll('#results img')].every(i => i.complete)")
        heading = page.eval_on_selector(
            "#results section.recipe h2", "h => [h.textContent, h.querySelector('bdi')?.textContent]"
        )
        assert heading[1] == TITLE and heading[0].startswith(f"#1 {TITLE} (")
        titles = page.eval_on_selector_all("#results .hit .title", "ts => ts.map(t => t.textContent)")
        assert titles and set(titles) == {TITLE}
        widths = page.eval_on_selector_all("#results img", "is => is.map(i => i.naturalWidth)")
        assert widths and all(w > 0 for w in widths)  # the photo named with a quote too
        assert (
            page.eval_on_selector_all("#results script, #results img[src='x'], [onerror]", "es => es.length")
            == 0
        )
        assert events == []
        page.close()
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


@pytest.mark.parametrize(
    "url, message",
    [
        ("javascript:alert(1)//", "its scheme 'javascript' is not http or https"),
        ("JavaScript:alert(1)//", "its scheme 'javascript' is not http or https"),
        ("data:image/svg+xml,", "its scheme 'data' is not http or https"),
        ("file:///srv/photos/", "its scheme 'file' is not http or https"),
        ("localhost:8000/photo/", "its scheme 'localhost' is not http or https"),
        (" javascript:alert(1)//", "it holds whitespace or control characters"),
        ("java\tscript:alert(1)//", "it holds whitespace or control characters"),
        ("http://elastic:s3cret-pw@127.0.0.1:8000/photo/", "it carries a user or password"),
    ],
)
@pytest.mark.parametrize("update", [False, True])
def test_image_base_url_must_be_a_web_url(
    url: str, message: str, update: bool, hostile_root: Path, built_model: Path
) -> None:
    """``image_url`` is every document's Kibana thumbnail: a ``javascript:`` or ``data:`` base made each a URL that
    runs or embeds something else, and a base with a password showed it in every document. Refused before any
    work (no cluster is asked), the password not repeated."""
    args = ["index", str(hostile_root), str(built_model), "--alias", "never-made", "--image-base-url", url]
    res = CliRunner().invoke(
        cli, args + (["--update"] if update else []), env={"ES_URL": "http://127.0.0.1:9"}
    )
    assert res.exit_code == 2 and message in res.output, res.output
    assert "s3cret-pw" not in res.output


def test_image_base_urls_that_are_web_urls_are_taken() -> None:
    for url in (
        "http://127.0.0.1:8000/photo/",
        "https://cdn.example.com/p",
        "/photo/",
        "//cdn.example.com/p/",
        None,
    ):
        assert IndexOptions(image_base_url=url).image_base_url == url
        assert UpdateOptions(image_base_url=url).image_base_url == url
