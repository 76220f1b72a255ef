"""Output paths: one the system refuses is a one-line ``Error: cannot write PATH: reason`` (exit 2, it was a
FileNotFoundError traceback, exit 1), and no command writes its files into a model directory of `jrs build`."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from toolkit.cli.common import EXIT_ERROR, run_reporting_errors
from toolkit.cli.main import cli
from toolkit.data.sample import generate_sample

SIZE = 32


@pytest.fixture(scope="module")
def work(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A tiny dataset (one broken line), its Word2Vec model and a one-shard photo vector set."""
    root = tmp_path_factory.mktemp("outdirs")
    data = root / "data"
    generate_sample(data, 8, seed=1, image_size=SIZE)
    with (data / "recipes.jsonl").open("a", encoding="utf-8") as fh:
        fh.write('{"recipe_id": "broken"\n')
    w2v, shard = root / "w2v", root / "shard"
    assert _jrs("train-w2v", data, w2v, "--epochs", "1", "-q").exit_code == 0
    args = ["embed-images", data, shard, "--encoder", "pixels", "--workers", "0", "--shard", "1/1", "-q"]
    assert _jrs(*args).exit_code == 0
    blocker = root / "a-file"  # a path under a file: no system lets it be created, root included
    blocker.write_text("", encoding="utf-8")
    return {"data": data, "w2v": w2v, "shard": shard, "blocker": blocker}


def _jrs(*args: str | Path) -> Result:
    return CliRunner().invoke(cli, [str(a) for a in args])


def _one_error(res: Result) -> str:
    assert res.exit_code == EXIT_ERROR, res.output
    assert "Traceback" not in res.output and res.output.count("\n") == 1, res.output
    return res.output.strip()


@pytest.mark.parametrize(
    "command",
    [
        ["sample-data", "{out}", "--recipes", "2"],
        ["train-w2v", "{data}", "{out}", "--epochs", "1", "-q"],
        ["step-vectors", "{data}", "{w2v}", "{out}", "-q"],
        ["merge-vectors", "{out}", "{shard}"],
        ["validate", "{data}", "--rejects", "{out}"],
    ],
    ids=lambda c: c[0],
)
def test_an_output_path_that_cannot_be_created_is_one_error_line(
    work: dict[str, Path], command: list[str]
) -> None:
    out = work["blocker"] / "out"
    args = [a.format(out=out, **work) for a in command]
    assert _one_error(_jrs(*args)) == f"Error: cannot write {out}: Not a directory"


def test_file_errors_say_read_or_write_and_others_propagate(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Only an OSError naming its file becomes an error line; which way it failed comes from the call."""
    exits: list[int] = []
    missing = tmp_path / "missing" / "x.json"
    (tmp_path / "f").write_bytes(b"")
    run_reporting_errors(lambda: missing.read_text(encoding="utf-8"), exits.append)
    run_reporting_errors(lambda: missing.write_text("{}", encoding="utf-8"), exits.append)
    run_reporting_errors(lambda: (tmp_path / "f" / "x").mkdir(parents=True), exits.append)
    import shutil

    source = tmp_path / "photo.jpg"  # a copy whose source is missing: the file to read, not the one to write
    run_reporting_errors(lambda: shutil.copy(source, tmp_path / "out.jpg"), exits.append)
    assert exits == [EXIT_ERROR] * 4
    assert capsys.readouterr().err.splitlines() == [
        f"Error: cannot read {missing}: No such file or directory",
        f"Error: cannot write {missing}: No such file or directory",
        f"Error: cannot write {tmp_path / 'f' / 'x'}: Not a directory",
        f"Error: cannot read {source}: No such file or directory",
    ]

    def broken_pipe() -> None:
        raise BrokenPipeError(32, "Broken pipe")

    with pytest.raises(BrokenPipeError):  # no file named: not the user's path, propagates as before
        run_reporting_errors(broken_pipe, exits.append)


@pytest.mark.parametrize(
    "command",
    [
        ["train-w2v", "{data}", "{model}", "--epochs", "1", "-q"],
        ["step-vectors", "{data}", "{w2v}", "{model}", "-q"],
        ["merge-vectors", "{model}", "{shard}", "--overwrite"],
        ["train-mapping", "{shard}", "{shard}", "{model}", "--text-tower", "mean"],
    ],
    ids=lambda c: c[0],
)
def test_commands_refuse_a_model_directory(work: dict[str, Path], tmp_path: Path, command: list[str]) -> None:
    """`jrs train-w2v data model` dropped its Word2Vec files among a model's (SimCLR: tests/test_simclr.py)."""
    model = tmp_path / "model"
    model.mkdir()
    manifest = json.dumps({"format": "jrs-model", "fingerprint": "m"})
    (model / "manifest.json").write_text(manifest, encoding="utf-8")
    line = _one_error(_jrs(*[a.format(model=model, **work) for a in command]))
    assert line.startswith(
        f"Error: {model} is a model directory (it holds manifest.json): {command[0]} would"
    )
    assert sorted(p.name for p in model.iterdir()) == ["manifest.json"]


@pytest.mark.parametrize("command", ["evaluate", "report"])
def test_a_report_path_that_cannot_be_written_is_refused_before_any_work(
    command: str, work: dict[str, Path], built_model: Path
) -> None:
    """The report is written at the end of an evaluation through the index: the path is checked first (with
    Elasticsearch unreachable, the work would have exited 3)."""
    out = work["blocker"] / "r.html"
    flag = "--report" if command == "evaluate" else "--out"
    args = [command, str(built_model), flag, str(out), "--index", "recipes"]
    res = CliRunner().invoke(cli, args, env={"ES_URL": "http://127.0.0.1:9"})
    assert res.exit_code == 2 and f"cannot write {out}" in res.output, res.output
    assert "is not a writable directory" in res.output and not out.exists()
