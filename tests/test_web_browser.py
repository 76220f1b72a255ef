"""The search page in headless Chromium (Debian's ``chromium`` driven by Playwright) on loopback."""

from __future__ import annotations

import io
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from elasticsearch import Elasticsearch
from PIL import Image

from toolkit.search.modes import TEXT_MODES

QUERY = "玉ねぎを薄切りにします。"
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"


@pytest.fixture(scope="module")
def server(es_settings, built_model: Path, search_alias: str, sample_root: Path) -> Iterator[str]:
    """``jrs web`` itself, in a subprocess on a free loopback port; yields its URL."""
    repo = Path(__file__).resolve().parents[1]
    env = {
        **os.environ,
        "ES_URL": es_settings.url,
        "PYTHONPATH": os.pathsep.join([str(repo), os.environ.get("PYTHONPATH", "")]),
    }
    cmd = [
        sys.executable,
        "-c",
        "from toolkit.cli.main import cli; cli()",
        "web",
        "--model",
        str(built_model),
    ]
    cmd += ["--index", search_alias, "--dataset", str(sample_root), "--host", "127.0.0.1", "--port", "0"]
    proc = subprocess.Popen(cmd, env=env, stderr=subprocess.PIPE, text=True)
    try:
        lines = []
        while True:
            line = proc.stderr.readline()  # type: ignore[union-attr]
            lines.append(line)
            if not line:
                pytest.fail(f"jrs web exited ({proc.wait()}): {''.join(lines)}")
            match = re.search(r"at (http://127\.0\.0\.1:\d+/)", line)
            if match:
                break
        # Keep reading the server's log: a pipe nobody reads fills up and then blocks the server.
        threading.Thread(target=proc.stderr.read, daemon=True).start()  # type: ignore[union-attr]
        yield match.group(1)
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.fixture(scope="module")
def browser():
    if not Path(CHROMIUM).exists():
        pytest.fail("Chromium is missing: apt-get install chromium (scripts/bootstrap.sh does it as root)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(
            executable_path=CHROMIUM, headless=True, args=["--no-sandbox", "--disable-dev-shm-usage"]
        )
        yield b
        b.close()


def _hits(page) -> list[dict]:
    return page.eval_on_selector_all(
        "#results article.hit",
        """cards => cards.map(c => ({
            step_id: c.dataset.stepId,
            score: parseFloat(c.dataset.score),
            text: c.querySelector('.step').textContent,
            img: c.querySelector('img') ? c.querySelector('img').naturalWidth : 0,
        }))""",
    )


def _wait_results(page, mode: str, count: int) -> list[dict]:
    page.wait_for_selector(f'#results[data-mode="{mode}"][data-count="{count}"]:not([aria-busy])')
    # a function, not an expression string: the page's CSP forbids eval
    page.wait_for_function("() => [...document.querySelectorAll('#results img')].every(i => i.complete)")
    return _hits(page)


def _screenshot(page, path: Path) -> None:
    page.screenshot(path=str(path), full_page=True)
    with Image.open(path) as img:
        img.verify()
    img = Image.open(io.BytesIO(path.read_bytes()))
    assert img.format == "PNG" and img.width >= 1000 and img.height >= 600


def test_search_page_in_chromium(
    browser, server: str, es: Elasticsearch, search_alias: str, sample_root: Path, tmp_path: Path
) -> None:
    page = browser.new_page(viewport={"width": 1200, "height": 900}, locale="ja-JP")
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.goto(server)
    page.wait_for_selector("body[data-ready='1']")
    assert page.eval_on_selector_all("#ingredient option", "os => os.length") > 5

    # a Japanese query, kNN: photo results with scores, best first
    page.fill("#k", "6")
    page.fill("#q", QUERY)
    page.click("#go")
    hits = _wait_results(page, "knn", 6)
    assert all(h["img"] > 0 for h in hits)  # every photo actually loaded from /photo/
    scores = [h["score"] for h in hits]
    assert scores == sorted(scores, reverse=True)
    assert "mode knn" in page.inner_text("#status")
    page.evaluate("() => document.fonts.ready.then(() => true)")
    assert page.evaluate("() => document.fonts.check('16px IPAexGothic', '玉ねぎ')")
    _screenshot(page, tmp_path / "knn.png")

    # the switch offers every text mode, and switching the mode searches again
    radios = page.eval_on_selector_all("input[name=mode]", "rs => rs.map(r => r.value)")
    assert radios == list(TEXT_MODES)
    page.check("input[name=mode][value=keyword]")
    hits = _wait_results(page, "keyword", 6)
    assert hits[0]["text"] == QUERY
    for mode in [m for m in TEXT_MODES if m not in ("knn", "keyword")]:  # the fused modes: both lists
        page.check(f"input[name=mode][value={mode}]")
        hits = _wait_results(page, mode, 6)
        assert QUERY in [h["text"] for h in hits] and f"mode {mode}" in page.inner_text("#status")

    # the ingredient filter
    page.select_option("#ingredient", "玉ねぎ")
    page.check("input[name=mode][value=knn]")
    hits = _wait_results(page, "knn", 6)
    docs = es.mget(index=search_alias, ids=[h["step_id"] for h in hits])["docs"]
    assert all("玉ねぎ" in d["_source"]["ingredients"] for d in docs)
    page.select_option("#ingredient", "")

    # query by photo: the uploaded step photo comes back first
    doc = es.get(index=search_alias, id=hits[3]["step_id"])["_source"]
    page.set_input_files("#photo", str(sample_root / doc["image_path"]))
    hits = _wait_results(page, "image", 6)
    assert hits[0]["step_id"] == doc["step_id"] and hits[0]["score"] > 0.99
    _screenshot(page, tmp_path / "photo.png")

    # recipe-level results: one section per recipe, its best steps inside
    page.check("#group")
    page.wait_for_selector('#results[data-mode="knn"][data-grouped="1"][data-count="6"]:not([aria-busy])')
    sections = page.eval_on_selector_all(
        "#results section.recipe",
        "ss => ss.map(s => ({id: s.dataset.recipeId, steps: [...s.querySelectorAll('article.hit')].map(a => a.dataset.stepId)}))",
    )
    assert len(sections) == 6 and len({s["id"] for s in sections}) == 6
    for s in sections:
        docs = es.mget(index=search_alias, ids=s["steps"])["docs"]
        assert 1 <= len(docs) <= 3 and {d["_source"]["recipe_id"] for d in docs} == {s["id"]}
    page.uncheck("#group")
    hits = _wait_results(page, "knn", 6)
    assert page.eval_on_selector_all("#results section.recipe", "s => s.length") == 0

    # the explanation: tokens, and each word's effect on the top hits
    page.check("#explain")
    page.wait_for_selector("#explanation table.contributions tr[data-word]")
    words = page.eval_on_selector_all("#explanation tr[data-word]", "rs => rs.map(r => r.dataset.word)")
    assert words and "玉葱" in page.inner_text("#explanation .tokens")
    page.uncheck("#explain")
    _wait_results(page, "knn", 6)

    # more like these: pick two photos, search with their mean vector
    chosen = [hits[0]["step_id"], hits[1]["step_id"]]
    for step_id in chosen:
        page.check(f'#results article.hit[data-step-id="{step_id}"] .pick')
    page.click("#like")
    liked = _wait_results(page, "like", 6)
    assert not set(chosen) & {h["step_id"] for h in liked}
    assert all(h["img"] > 0 for h in liked)

    # a query with no known word is reported on the page
    page.fill("#q", "ｘｙｚｚｙ")
    page.click("#go")
    page.wait_for_selector("#status.error")
    assert (
        "vocabulary" in page.inner_text("#status")
        and page.eval_on_selector_all("#results article", "a => a.length") == 0
    )
    assert errors == []
    page.close()


def test_the_page_says_which_unknown_words_were_not_looked_up(browser, server: str) -> None:
    """Past the looked-up unknown words the page said "→ no suggestion", as if nothing were close."""
    from toolkit.search.explain import SUGGESTED_WORDS

    words = [f"xq{chr(ord('a') + i)}zz" for i in range(SUGGESTED_WORDS + 2)]
    page = browser.new_page(viewport={"width": 1200, "height": 900}, locale="ja-JP")
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.goto(server)
    page.wait_for_selector("body[data-ready='1']")
    page.fill("#q", "玉ねぎ " + " ".join(words))
    page.check("#explain")
    page.click("#go")
    page.wait_for_selector("#explanation .unknown.skipped")
    lines = page.eval_on_selector_all("#explanation .unknown", "us => us.map(u => u.textContent)")
    assert len(lines) == SUGGESTED_WORDS + 1 and all("→" in line for line in lines[:-1])
    assert lines[-1] == f"unknown: {words[-2]} {words[-1]} (not looked up)"
    assert errors == []
    page.close()
