"""`jrs search`'s text output: one line per hit, whatever the indexed texts hold."""

from __future__ import annotations

import unicodedata

from toolkit.cli.search import _render
from toolkit.search.engine import Group, Hit, SearchResult


def _hit(step_id: str, title: str, text: str) -> Hit:
    recipe_id, position = step_id.split(":")
    return Hit(0.5, step_id, recipe_id, title, int(position), text, f"images/{recipe_id}/{position}.jpg")


def _raw_controls(out: str) -> list[str]:
    return [c for line in out.split("\n") for c in line if unicodedata.category(c) in ("Cc", "Zl", "Zp")]


def test_line_breaks_and_terminal_controls_in_indexed_texts_are_shown_escaped() -> None:
    """A Cookpad memo keeps its line breaks (CRLF), and a text may hold ESC or NUL: printed raw, a CR sends the
    cursor back over the score, a line break splits the hit and ESC drives the terminal."""
    hits = [
        _hit("a1:1", "肉じゃが\x1b[2J", "玉ねぎを切る。\r\n2行目\u20283行目"),
        _hit("a1:2", "肉じゃが\x1b[2J", "煮込む\x00。"),
    ]
    result = SearchResult("keyword", hits, [], 1.0, 2.0, notes=["no hit for \x1b[31m"])
    out = _render(result)
    lines = out.split("\n")
    assert len(lines) == 1 + 1 + 2 + 1  # mode, note, two hits, timing
    assert _raw_controls(out) == []
    assert lines[2] == (
        " 1.   0.5000  肉じゃが\\x1b[2J [a1:1]  玉ねぎを切る。\\r\\n2行目\\u20283行目  images/a1/1.jpg"
    )
    assert "煮込む\\x00。" in lines[3] and lines[1] == "note: no hit for \\x1b[31m"
    grouped = SearchResult("knn", hits[:1], [], 1.0, 2.0, groups=[Group("a1", hits[0].title, 0.5, hits)])
    out = _render(grouped)
    assert len(out.split("\n")) == 1 + 1 + 2 + 1 and _raw_controls(out) == []


def test_plain_texts_are_printed_as_they_are() -> None:
    out = _render(
        SearchResult("knn", [_hit("r1:3", "豆腐の温サラダ 🥗", "豆腐を 10分 茹でる。")], [], 1.0, 2.0)
    )
    assert " 1.   0.5000  豆腐の温サラダ 🥗 [r1:3]  豆腐を 10分 茹でる。  images/r1/3.jpg" in out.split("\n")
