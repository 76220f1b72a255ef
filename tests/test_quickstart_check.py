"""The CI check of the quickstart's output (scripts/check_quickstart.py) on complete and broken logs."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "check_quickstart.py"
spec = importlib.util.spec_from_file_location("check_quickstart", SCRIPT)
check_quickstart = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
spec.loader.exec_module(check_quickstart)  # type: ignore[union-attr]

HIT = " 1.   0.8123  肉じゃが [r000001:2]  玉ねぎを炒める  images/r000001_2.jpg"


def _log(titles: list[str], hits: dict[str, bool], finished: bool = True) -> str:
    lines = ["== index into the alias recipes", "indexed 10"]
    for t in titles:
        lines += [f"== example: {t}", "mode: knn", HIT if hits.get(t, True) else "no hits", "took 5 ms"]
    if finished:
        lines += [
            "== summary",
            "quickstart finished: data and model under work/quickstart, index alias recipes",
        ]
    return "\n".join(lines)


TITLES = [
    "kNN: a sentence",
    "keyword (BM25)",
    "hybrid (BM25 + kNN)",
    "by photo: a.jpg",
    "composed: a + b - c",
]


def test_complete_log_passes(tmp_path: Path) -> None:
    log = tmp_path / "log"
    log.write_text(_log(TITLES, {}), encoding="utf-8")
    assert check_quickstart.check(log.read_text(encoding="utf-8")) == []
    assert check_quickstart.main([str(log)]) == 0


def test_skipped_example_fails() -> None:
    problems = check_quickstart.check(_log([t for t in TITLES if not t.startswith("by photo")], {}))
    assert problems == ["example 'by photo' never ran"]


def test_example_without_hits_fails() -> None:
    problems = check_quickstart.check(_log(TITLES, {"hybrid (BM25 + kNN)": False}))
    assert problems == ["example 'hybrid' printed no result"]


def test_stopped_early_fails(tmp_path: Path) -> None:
    """The SIGPIPE failure of issue 11: the first three examples ran, then the script died."""
    log = tmp_path / "log"
    log.write_text(_log(TITLES[:3], {}, finished=False), encoding="utf-8")
    problems = check_quickstart.check(log.read_text(encoding="utf-8"))
    assert "example 'by photo' never ran" in problems and "example 'composed' never ran" in problems
    assert any("stopped early" in p for p in problems)
    assert check_quickstart.main([str(log)]) == 1


def _summary(work: Path) -> str:
    """The quickstart's closing summary (the Python between its PYEOF markers) run for ``work``."""
    script = (SCRIPT.parent / "quickstart.sh").read_text(encoding="utf-8")
    code = script.split("<<'PYEOF'\n", 1)[1].split("\nPYEOF\n", 1)[0]
    argv = [sys.executable, "-", str(work), "recipes", "kNN: a sentence"]
    return subprocess.run(argv, input=code, text=True, capture_output=True, check=True).stdout


def test_the_summary_names_the_rejects_file_only_when_the_build_wrote_one(tmp_path: Path) -> None:
    """The summary listed ``rejects.jsonl`` in the model directory always; the build writes it only when it
    rejected something."""
    model = tmp_path / "model"
    model.mkdir()
    (model / "evaluation.json").write_text(json.dumps({"split": "test"}), encoding="utf-8")
    clean = _summary(tmp_path)
    assert f"model:  {model} (manifest.json, evaluation.json; nothing rejected)" in clean
    assert "rejects.jsonl" not in clean
    row = {"record": "r1:2", "stage": "text", "reason": "x"}
    (model / "rejects.jsonl").write_text(json.dumps(row) + "\n" + json.dumps(row) + "\n", encoding="utf-8")
    assert "(manifest.json, evaluation.json, rejects.jsonl: 2 rejected)" in _summary(tmp_path)
