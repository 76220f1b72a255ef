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
    blocker = work["blocker"]
    assert (
        _one_error(_jrs(*args))
        == f"Error: cannot write {out}: Not a directory ({blocker} is a file, not a folder)"
    )


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
        f"Error: cannot write {tmp_path / 'f' / 'x'}: Not a directory ({tmp_path / 'f'} is a file, not a folder)",
        f"Error: cannot read {source}: No such file or directory",
    ]
    # "File exists" named no culprit: a folder to make where a file stands, further up
    run_reporting_errors(
        lambda: (tmp_path / "f" / "a" / "b").mkdir(parents=True, exist_ok=True), exits.append
    )
    assert (
        capsys.readouterr()
        .err.strip()
        .endswith(f": Not a directory ({tmp_path / 'f'} is a file, not a folder)")
    )
    run_reporting_errors(lambda: (tmp_path / "f").mkdir(), exits.append)  # the path itself: nothing to add
    assert capsys.readouterr().err.strip() == f"Error: cannot write {tmp_path / 'f'}: File exists"

    def broken_pipe() -> None:
        raise BrokenPipeError(32, "Broken pipe")

    with pytest.raises(BrokenPipeError):  # no file named: not the user's path, propagates as before
        run_reporting_errors(broken_pipe, exits.append)


def test_a_refused_write_says_write(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A write the system refuses was reported as ``cannot read``: a file created in a folder that exists but
    cannot hold one (``/proc`` answers "No such file or directory", as for a missing input), or permission
    refused where only a write can be (a file that can be read, a new file in a folder that can be searched)."""
    import errno

    readable = tmp_path / "readable.txt"
    readable.write_text("x", encoding="utf-8")

    def create(path: Path, mode: str = "wb") -> None:  # as the kernel answers pathlib's open under /proc
        raise FileNotFoundError(errno.ENOENT, "No such file or directory", str(path))

    def publish(path: Path) -> None:  # a builtin open(path, "w") refused: its mode is in no Python frame
        raise PermissionError(errno.EACCES, "Permission denied", str(path))

    calls = [
        lambda: create(tmp_path / "new.png"),
        lambda: publish(readable),
        lambda: publish(tmp_path / "new.txt"),
        lambda: (tmp_path / "missing.json").read_text(encoding="utf-8"),  # still a read
    ]
    expected = [
        f"Error: cannot write {tmp_path / 'new.png'}: No such file or directory",
        f"Error: cannot write {readable}: Permission denied",
        f"Error: cannot write {tmp_path / 'new.txt'}: Permission denied",
        f"Error: cannot read {tmp_path / 'missing.json'}: No such file or directory",
    ]
    if Path("/proc/self").is_dir() and Path("/sys/kernel").is_dir():  # the real thing, where it can be tried
        from PIL import Image

        calls += [
            lambda: Path("/proc/jrs-test.png").write_bytes(b"x"),
            lambda: Image.new("RGB", (2, 2)).save("/proc/jrs-test.png"),
            lambda: open("/sys/kernel/jrs-test", "w"),  # noqa: SIM115 - it fails
        ]
        expected += ["Error: cannot write /proc/jrs-test.png: ", "Error: cannot write /proc/jrs-test.png: "]
        expected += ["Error: cannot write /sys/kernel/jrs-test: "]
    exits: list[int] = []
    for call in calls:
        run_reporting_errors(call, exits.append)
    lines = capsys.readouterr().err.splitlines()
    assert exits == [EXIT_ERROR] * len(calls)
    assert len(lines) == len(expected) and all(
        line.startswith(want) for line, want in zip(lines, expected, strict=True)
    ), lines


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="needs /dev/full")
def test_a_full_disk_names_the_file_being_written(capsys: pytest.CaptureFixture[str]) -> None:
    """A write the disk refuses raises an OSError naming no file: the error line still names it."""
    exits: list[int] = []

    def write_full() -> None:
        with open("/dev/full", "w", encoding="utf-8") as fh:
            fh.write("x" * 100_000)

    run_reporting_errors(write_full, exits.append)
    run_reporting_errors(lambda: Path("/dev/full").write_text("{}", encoding="utf-8"), exits.append)
    assert exits == [EXIT_ERROR] * 2
    assert (
        capsys.readouterr().err.splitlines() == ["Error: cannot write /dev/full: No space left on device"] * 2
    )


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


def test_a_full_disk_error_names_the_file_written_not_one_read_beside_it(tmp_path: Path) -> None:
    """The path of a write the disk refused comes from the traceback's open files: only one open for writing
    (the input open in the same frame is not it)."""
    from toolkit.errors import os_error_path

    source = tmp_path / "in.txt"
    source.write_text("x" * 100_000)

    def copy() -> None:
        with open(source) as fin, open("/dev/full", "w") as fout:
            fout.write(fin.read())
            fout.flush()

    with pytest.raises(OSError) as info:
        copy()
    assert os_error_path(info.value) == "/dev/full"


def test_a_failed_atomic_write_names_the_target_not_its_temporary_file(tmp_path: Path) -> None:
    """Writes go through a temporary file beside the target; a disk that refused the write was reported as
    ``cannot write .../.name.ab4rqox4.tmp``, a file the user never asked for and that no longer exists."""
    import errno

    from toolkit.atomic import atomic_path

    target = tmp_path / "checkpoint.json"
    for error in (
        OSError(errno.ENOSPC, "No space left on device"),
        OSError(errno.EACCES, "Permission denied"),
    ):
        with pytest.raises(OSError) as info, atomic_path(target) as tmp:
            if error.errno == errno.EACCES:
                error.filename = str(tmp)
            raise error
        assert info.value.filename == str(target) and info.value.errno == error.errno
        assert list(tmp_path.iterdir()) == []  # the temporary file is gone


@pytest.mark.skipif(not Path("/proc/self").is_dir(), reason="needs Linux's /proc")
def test_an_atomic_write_that_cannot_even_start_names_the_target(tmp_path: Path) -> None:
    """The temporary file was made before the errors were turned into ones about the target: a directory
    where no file can be created (/proc; a read-only one) said ``.../.x.json.abcd1234.tmp``, a file in the
    place of a parent directory named only that parent."""
    from toolkit.atomic import write_json_atomic
    from toolkit.cli.common import file_error

    for target in (
        Path("/proc/x.json"),
        tmp_path / "a-file" / "x.json",
        tmp_path / "a-file" / "d" / "x.json",
    ):
        (tmp_path / "a-file").write_text("in the way\n", encoding="utf-8")
        with pytest.raises(OSError) as info:
            write_json_atomic(target, {"a": 1})
        assert info.value.filename == str(target), info.value
        message = str(file_error(info.value))
        assert message.startswith(f"cannot write {target}: ") and ".tmp" not in message, message
        if target.parent != Path("/proc"):  # the parent in the way is named in the reason
            assert f"({target.parent})" in message, message
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a-file"]


def test_a_second_run_into_the_same_output_is_refused_while_the_first_runs(tmp_path: Path) -> None:
    """Two `jrs build` into one model directory, or two encodings into one feature directory, interleaved
    their files; the second is now refused by name (the lock goes with the first's process)."""
    from conftest import e2e_build_options

    from toolkit.image.encoders import create_encoder
    from toolkit.image.features import extract_features
    from toolkit.locks import Busy, exclusive
    from toolkit.pipeline import build

    lock = tmp_path / "x.lock"
    with (
        exclusive(lock, "a test run"),
        pytest.raises(Busy, match="a test run is already running"),
        exclusive(lock, "a test run"),
    ):
        pass
    with exclusive(lock, "a test run"):  # released when the first block ended
        pass
    data = tmp_path / "data"
    generate_sample(data, n_recipes=3, seed=0, image_size=16)
    model = tmp_path / "model"
    model.mkdir()
    with (
        exclusive(model, "another build"),
        pytest.raises(Busy, match=f"a build of {model} is already running"),
    ):
        build(data, model, e2e_build_options())
    assert not (model / "manifest.json").exists()
    out = tmp_path / "features"
    out.mkdir()
    photo = next(data.rglob("*.jpg"))
    with exclusive(out, "another encoding"), pytest.raises(Busy, match="an encoding of photos into"):
        extract_features([("r:1", photo)], create_encoder("pixels", image_size=8), out, progress=False)
    assert extract_features(
        [("r:1", photo)], create_encoder("pixels", image_size=8), out, progress=False
    ).complete
