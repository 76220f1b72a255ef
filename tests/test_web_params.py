"""Odd spellings of the search parameters get the same answer from both servers (one parser, toolkit.web.params)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

import pytest
from elasticsearch import Elasticsearch

from tests.test_web import _serve, request
from toolkit.model import SearchModel
from toolkit.search.engine import Searcher
from toolkit.search.modes import TEXT_MODES
from toolkit.web.app import SearchApp
from toolkit.web.params import DEFAULT_K, MAX_K, BadRequest, parse_search, query_params
from toolkit.web.server import SearchServer

Q = "q=" + quote("玉ねぎを薄切りにします。")

#: (query string, the status both servers must give)
TEXT_CASES = [
    (f"{Q}&k=", 200),  # blank: the default
    (f"{Q}&k=%20", 200),
    (f"{Q}&k=abc", 400),
    (f"{Q}&k=0", 400),
    (f"{Q}&k=-3", 400),
    (f"{Q}&k={MAX_K + 1}", 400),
    (f"{Q}&k=99999999999999999999999", 400),
    (f"{Q}&k=" + "9" * 5000, 400),  # past Python's int() digit limit
    (f"{Q}&k=+5", 200),
    (f"{Q}&k=007", 200),
    (f"{Q}&k=%EF%BC%95", 400),  # a full-width digit
    (f"{Q}&k=5.0", 400),
    (f"{Q}&k=1_0", 400),
    (f"{Q}&k=%205%20", 200),
    (f"{Q}&k=3&k=5", 400),  # a single-valued parameter given twice
    (f"{Q}&k=abc&k=3", 400),
    (f"{Q}&mode=", 200),
    (f"{Q}&mode=sql", 400),
    (f"{Q}&mode=KNN", 400),
    (f"{Q}&mode=knn&mode=keyword", 400),
    *[(f"{Q}&mode={mode}", 200) for mode in TEXT_MODES],
    (f"{Q}&explain=", 200),
    (f"{Q}&explain=yes", 200),
    (f"{Q}&explain=off", 200),
    (f"{Q}&explain=TRUE", 200),
    (f"{Q}&explain=2", 400),
    (f"{Q}&explain=1&explain=0", 400),
    (f"{Q}&group=", 200),
    (f"{Q}&group=tag", 400),
    (f"{Q}&group=recipe&per_group=", 200),
    (f"{Q}&group=recipe&per_group=0", 400),
    (f"{Q}&per_group=x", 400),
    (f"{Q}&ingredient=&recipe=%20&like=", 200),  # blank filters: none
    (f"{Q}&unknown=1", 200),  # unknown parameters are ignored
    ("q=+++", 400),  # whitespace only
    ("q=", 400),
    ("", 400),
    ("q=%E7%8E%89%E3%81%AD%E3%81%8E&q=x", 400),
    ("q=" + "a" * 1990 + "+" * 20, 400),  # over the limit only before trimming: too short to be one
    ("q=" + "%E7%8E%89" * 2001, 400),
    ("q=%FF%FE", 400),  # not UTF-8
    ("q=%20&like=%20", 400),
]
PHOTO_CASES = [
    ("k=", 400),  # both get as far as the bytes, which are not a photo: 400 too
    ("k=0", 400),
    ("k=ten", 400),
    ("k=3&k=4", 400),
    ("group=tag", 400),
    ("name=a.jpg&name=b.jpg", 400),
    ("name=%20", 400),
    ("mode=sql", 400),
]


@pytest.fixture(scope="module")
def servers(es: Elasticsearch, built_model: Path, search_alias: str, sample_root: Path) -> Iterator[list]:
    """Both servers over one app."""
    app = SearchApp(Searcher(es, SearchModel.load(built_model), search_alias), sample_root)
    stdlib, fastapi = _serve(app, "stdlib"), _serve(app, "fastapi")
    yield [next(stdlib), next(fastapi)]
    for gen in (stdlib, fastapi):
        next(gen, None)


def answer(server: SearchServer, method: str, path: str, body: bytes | None = None) -> tuple:
    """What a client sees: the status and the error, or for a result its mode and hits."""
    status, _, raw = request(server, method, path, body, {"Content-Type": "image/jpeg"} if body else None)
    data = json.loads(raw)
    if status != 200:
        return status, data["error"]
    return status, data["mode"], [h["step_id"] for h in data["hits"]], "explanation" in data, "groups" in data


@pytest.mark.parametrize("query, status", TEXT_CASES, ids=lambda v: str(v).replace(Q, "Q")[:40])
def test_both_servers_answer_odd_searches_alike(servers: list, query: str, status: int) -> None:
    stdlib, fastapi = (answer(s, "GET", "/api/search?" + query) for s in servers)
    assert stdlib == fastapi
    assert stdlib[0] == status, stdlib


@pytest.mark.parametrize("query, status", PHOTO_CASES, ids=lambda v: str(v)[:40])
def test_both_servers_answer_odd_photo_searches_alike(servers: list, query: str, status: int) -> None:
    stdlib, fastapi = (answer(s, "POST", "/api/search/photo?" + query, b"not a photo") for s in servers)
    assert stdlib == fastapi
    assert stdlib[0] == status, stdlib


def test_parameters_mean_what_they_say() -> None:
    """The parser itself: blank means the default, a number is read as one, a repeated one is refused."""
    parse = lambda query, **kw: parse_search(query_params(query), **kw)  # noqa: E731
    assert parse("q=x&k=").options.k == DEFAULT_K
    assert parse("q=x&k=+007").options.k == 7
    assert parse("q=x&explain=On").options.explain and not parse("q=x&explain=no").options.explain
    assert parse("q=x&group=%20").options.group is None
    assert parse("q=%20x%20&like=%20s1%20&like=").text == "x" and parse("like=s1").like == ("s1",)
    assert parse("k=3", photo=True).options.mode == "knn"  # a photo needs no text
    with pytest.raises(BadRequest, match="k is given 2 times"):
        parse("q=x&k=3&k=3")
    with pytest.raises(BadRequest, match=r"k must be between 1 and 100, got '9999.*\(5000 characters\)"):
        parse("q=x&k=" + "9" * 5000)
    with pytest.raises(BadRequest, match="choose one of " + ", ".join(TEXT_MODES)):
        parse("q=x&mode=bm25")
    assert parse("name=" + "a" * 255, photo=True).name == "a" * 255
    with pytest.raises(BadRequest, match=r"^name 'a{40}'\.\.\. is 256 characters, over the limit of 255$"):
        parse("name=" + "a" * 256, photo=True)
    assert parse("q=x&name=" + "a" * 256).text == "x"  # a text search reads no photo name
