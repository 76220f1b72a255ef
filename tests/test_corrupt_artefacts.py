"""Damaged files in a model directory or a vector set are one clear ``Error:`` line naming the file (exit
status 2), never a traceback: a manifest.json that is not JSON, a meta.json cut short, a truncated
vectors.npy, an evaluation.json that is not UTF-8 or not an object."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from toolkit.cli.main import cli
from toolkit.errors import ModelDirError
from toolkit.model import read_manifest
from toolkit.vectorset import load_vector_set, read_json_object, save_vector_set


@pytest.fixture
def model_copy(built_model: Path, tmp_path: Path) -> Path:
    """The parts of the shared model the commands read first, copied so they can be damaged."""
    out = tmp_path / "model"
    out.mkdir()
    for name in ("manifest.json", "evaluation.json"):
        shutil.copy2(built_model / name, out / name)
    for name in ("word2vec", "mapping", "step_vectors", "image_features"):
        shutil.copytree(built_model / name, out / name)
    return out


def _one_error_line(result: Result) -> str:
    """The ``Error:`` line of a command that failed cleanly (exit 2, no traceback)."""
    assert result.exit_code == 2, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    assert "Traceback" not in result.output
    (line,) = [x for x in result.stderr.splitlines() if x.startswith("Error:")]
    return line


@pytest.mark.parametrize("command", ["evaluate", "report", "search", "index"])
def test_a_manifest_that_is_not_json_is_a_clear_error(
    command: str, model_copy: Path, sample_root: Path, es_settings, tmp_path: Path
) -> None:
    """``{bad`` was a JSONDecodeError traceback in evaluate, report, search and index."""
    manifest = model_copy / "manifest.json"
    manifest.write_text("{bad", encoding="utf-8")
    args = {
        "evaluate": ["evaluate", str(model_copy)],
        "report": ["report", str(model_copy), "--out", str(tmp_path / "r.html")],
        "search": ["search", "玉ねぎを炒める", "--model", str(model_copy), "--index", "nope-corrupt"],
        "index": ["index", str(sample_root), str(model_copy), "--alias", "nope-corrupt"],
    }[command]
    line = _one_error_line(CliRunner().invoke(cli, args, env={"ES_URL": es_settings.url}))
    assert line.startswith(f"Error: {manifest} is not valid JSON: Expecting property name"), line
    assert "rebuild the model with `jrs build`" in line
    assert not (tmp_path / "r.html").exists()


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (b"\xff\xfe{}", "is not UTF-8 text (invalid start byte at byte 0)"),
        (b"[]", "holds a JSON array, not an object"),
        (b"{}", "is not a complete model manifest (missing fingerprint, word2vec_fingerprint, dims, encoder"),
        (
            b'{"fingerprint": "f", "word2vec_fingerprint": "w", "dims": 8, "encoder": {"name": "x"}}',
            "missing encoder.fingerprint",
        ),
    ],
)
def test_damaged_manifests_name_the_file(model_copy: Path, content: bytes, expected: str) -> None:
    (model_copy / "manifest.json").write_bytes(content)
    with pytest.raises(ModelDirError, match=f"^{model_copy / 'manifest.json'} .*{re.escape(expected)}"):
        read_manifest(model_copy)


def _evaluate_vectors(model: Path) -> Result:
    args = [
        "evaluate-vectors",
        str(model / "mapping"),
        str(model / "step_vectors"),
        str(model / "image_features"),
    ]
    return CliRunner().invoke(cli, [*args, "--draws", "1"])


def test_a_vector_set_meta_cut_short_is_a_clear_error(model_copy: Path) -> None:
    """meta.json = ``{`` was a JSONDecodeError traceback in evaluate-vectors."""
    meta = model_copy / "image_features" / "meta.json"
    meta.write_text("{", encoding="utf-8")
    line = _one_error_line(_evaluate_vectors(model_copy))
    assert line.startswith(f"Error: {meta} is not valid JSON: Expecting property name"), line
    assert "make the set again" in line


def test_a_truncated_vectors_file_is_a_clear_error(model_copy: Path) -> None:
    """A vectors.npy cut short was ``ValueError: mmap length is greater than file size``."""
    vectors = model_copy / "step_vectors" / "vectors.npy"
    data = vectors.read_bytes()
    vectors.write_bytes(data[: len(data) // 2])
    line = _one_error_line(_evaluate_vectors(model_copy))
    assert line.startswith(f"Error: {vectors} is truncated or not a .npy array ("), line
    with pytest.raises(ModelDirError, match="is truncated or not a .npy array"):
        load_vector_set(model_copy / "step_vectors", mmap=False)
    vectors.write_bytes(b"not an array at all")
    with pytest.raises(ModelDirError, match="is truncated or not a .npy array"):
        load_vector_set(model_copy / "step_vectors")


def test_vectors_and_ids_that_disagree_are_a_clear_error(tmp_path: Path) -> None:
    import numpy as np

    save_vector_set(tmp_path / "s", ["a", "b", "c"], np.ones((3, 4), dtype=np.float32), {})
    (tmp_path / "s" / "ids.txt").write_text("a\nb\n", encoding="utf-8")
    with pytest.raises(ModelDirError, match=r"vectors.npy has shape \(3, 4\) but ids.txt has 2 ids"):
        load_vector_set(tmp_path / "s")


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (b'{"model_pooled": "\xff"}', "is not UTF-8 text (invalid start byte at byte 18)"),
        (b"[]", "holds a JSON array, not an object"),
        (b"{bad", "is not valid JSON: Expecting property name"),
    ],
)
@pytest.mark.parametrize("command", ["report", "evaluate"])
def test_a_damaged_evaluation_is_a_clear_error(
    command: str, model_copy: Path, tmp_path: Path, content: bytes, expected: str
) -> None:
    """evaluation.json not UTF-8 was a UnicodeDecodeError traceback in report, ``[]`` an AttributeError."""
    evaluation = model_copy / "evaluation.json"
    evaluation.write_bytes(content)
    args = ["report", str(model_copy), "--out", str(tmp_path / "r.html")]
    if command == "evaluate":
        args = ["evaluate", str(model_copy)]
    line = _one_error_line(CliRunner().invoke(cli, args))
    assert line.startswith(f"Error: {evaluation} {expected}"), line
    assert not (tmp_path / "r.html").exists()


def test_read_json_object_says_what_the_file_holds(tmp_path: Path) -> None:
    path = tmp_path / "x.json"
    for text, kind in (('"s"', "string"), ("3", "number"), ("null", "null"), ("true", "boolean")):
        path.write_text(text, encoding="utf-8")
        with pytest.raises(ModelDirError, match=f"{path} holds a JSON {kind}, not an object; fix it"):
            read_json_object(path, "fix it")
    with pytest.raises(ModelDirError, match="cannot be read"):
        read_json_object(tmp_path, "")
