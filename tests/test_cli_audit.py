"""Bad option values refused by the CLI as one clear error with exit 2, before any model, photo or cluster is
touched (a consistency audit of every command: no traceback, no silent "no hits", no output into a model)."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from toolkit.cli.main import cli
from toolkit.errors import ConfigError

#: nothing listens there: a command that reached the cluster would fail with exit 3, not 2
NO_CLUSTER = {"ES_URL": "http://127.0.0.1:1", "JRS_MODEL": None, "JRS_INDEX": None}


def refused(args: list[str], *fragments: str) -> str:
    """Run ``jrs ARGS``: exit 2, no traceback, and an ``Error:`` line holding every one of ``fragments``."""
    result = CliRunner().invoke(cli, args, env=NO_CLUSTER)
    out = result.output
    assert result.exit_code == 2, out
    assert isinstance(result.exception, SystemExit) and "Traceback" not in out, out
    errors = [line for line in out.splitlines() if line.startswith("Error: ")]
    assert len(errors) == 1, out
    for fragment in fragments:
        assert fragment in errors[0], out
    return errors[0]


@pytest.fixture
def model_dir(tmp_path: Path) -> Path:
    """A directory that `jrs build` wrote a model into (its manifest is what marks one)."""
    model = tmp_path / "model"
    model.mkdir()
    (model / "manifest.json").write_text("{}", encoding="utf-8")
    return model


def test_embedding_map_refuses_a_seed_tsne_does_not_take(tmp_path: Path) -> None:
    # was a scikit-learn InvalidParameterError traceback (exit 1) after the model had loaded
    refused(
        ["embedding-map", "--model", str(tmp_path), "-o", str(tmp_path / "m.png"), "--seed", "-1"],
        "embedding map seed",
        "-1",
    )
    from toolkit.viz.embedding_map import MapOptions

    with pytest.raises(ConfigError):
        MapOptions(seed=2**32)


@pytest.mark.parametrize("port", ["-1", "65536"])
def test_web_refuses_a_port_out_of_range(tmp_path: Path, port: str) -> None:
    # was an OverflowError traceback from bind() once the model had loaded
    refused(
        ["web", "--model", str(tmp_path), "--port", port], "--port", f"{port} is not in the range 0<=x<=65535"
    )


def test_web_refuses_an_empty_host(tmp_path: Path) -> None:
    # an empty --host listened on every interface
    refused(["web", "--model", str(tmp_path), "--host", " "], "--host", "empty address", "0.0.0.0")


@pytest.mark.parametrize(
    ("alias", "problem"), [("", "it is empty"), ("Recipes", "upper-case"), ("a,b", "contains ','")]
)
def test_indices_refuses_an_alias_elasticsearch_would_not_accept(alias: str, problem: str) -> None:
    # printed "no versions of " and exited 0, as for an alias with no versions; `jrs index` and `jrs delete`
    # refuse such names
    for args in (["indices", "--alias", alias], ["indices", "--alias", alias, "--json"]):
        refused(args, f"alias {alias!r} is not a valid Elasticsearch index name", problem)


def test_writers_refuse_a_model_directory(tmp_path: Path, model_dir: Path) -> None:
    # embed-images wrote vectors.npy, ids.txt... among the model's files (train-w2v, step-vectors, simclr,
    # train-mapping and merge-vectors refuse); sample-data and import-cookpad wrote recipes.jsonl and images/
    data = tmp_path / "data"
    data.mkdir()
    (data / "recipes.jsonl").write_text("", encoding="utf-8")
    for args in (
        ["embed-images", str(data), str(model_dir), "--encoder", "pixels"],
        ["sample-data", str(model_dir), "--recipes", "1"],
        ["import-cookpad", str(data), str(model_dir)],
    ):
        refused(args, f"{model_dir} is a model directory", args[0])
    assert sorted(p.name for p in model_dir.iterdir()) == ["manifest.json"]


@pytest.mark.parametrize(
    "args",
    [
        ["search", "玉ねぎ", "--recipe", ""],
        ["search", "玉ねぎ", "--ingredient", " "],
        ["search", "玉ねぎ", "--ingredient", "玉ねぎ", "--ingredient", ""],
        ["grid", "玉ねぎ", "--ingredient", "", "-o", "GRID"],
    ],
)
def test_search_filters_refuse_blank_values(tmp_path: Path, args: list[str]) -> None:
    # a blank --recipe or --ingredient matched nothing: exit 0 with "no hits" (`jrs delete --recipe ''` refuses)
    flag = "--recipe" if "--recipe" in args else "--ingredient"
    args = [str(tmp_path / "grid.png") if a == "GRID" else a for a in args]
    refused([*args, "--model", str(tmp_path)], flag, "is blank")


def test_unreadable_weights_file_is_one_line(tmp_path: Path) -> None:
    # torch's weights_only failure ran to five lines of advice (re-run with weights_only=False...)
    from toolkit.image.backbones import load_state_dict_file

    junk = tmp_path / "junk.pt"
    junk.write_bytes(bytes(range(256)) * 4)
    with pytest.raises(ConfigError) as caught:
        load_state_dict_file(junk)
    message = str(caught.value)
    assert "\n" not in message and "weights_only" not in message, message
    assert "not a torch.save file of tensors" in message
    empty = tmp_path / "empty.pt"
    empty.write_bytes(b"")
    with pytest.raises(ConfigError, match=r"empty file \(0 bytes\)$"):
        load_state_dict_file(empty)


def test_python_m_toolkit_cli_runs_jrs() -> None:
    """``python -m toolkit.cli`` failed ("'toolkit.cli' is a package and cannot be directly executed"): there
    was no ``__main__``; it now runs the same command as the ``jrs`` script, under that name."""
    import subprocess
    import sys

    res = subprocess.run(
        [sys.executable, "-m", "toolkit.cli", "indices", "--help"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert res.returncode == 0, res.stderr
    assert res.stdout.startswith("Usage: jrs indices") and "--remove-old" in res.stdout


@pytest.mark.parametrize("command", ["grid", "embedding-map"])
def test_a_picture_path_under_a_file_is_refused_while_the_options_are_read(
    tmp_path: Path, command: str
) -> None:
    """`jrs grid --out FILE/x.png` searched, then failed with "cannot write FILE: File exists"; the picture's
    folder is now checked with the options, as every other output file is, naming the file in the way."""
    blocker = tmp_path / "afile"
    blocker.write_text("", encoding="utf-8")
    args = [command, *(["玉ねぎ"] if command == "grid" else []), "--model", str(tmp_path)]
    res = CliRunner().invoke(cli, [*args, "--out", str(blocker / "x.png")])
    assert res.exit_code == 2, res.output
    assert f"cannot write {blocker / 'x.png'}: {blocker} is not a writable directory" in res.output


@pytest.mark.parametrize("command", [["search", "玉ねぎ"], ["grid", "玉ねぎ", "--out", "x.png"], ["web"]])
def test_a_blank_index_is_refused_by_its_flag(tmp_path: Path, command: list[str]) -> None:
    """`--index ""` said "the searcher's index must be an index or alias name, got str ''", naming no flag."""
    res = CliRunner().invoke(cli, [*command, "--model", str(tmp_path), "--index", " "])
    assert res.exit_code == 2, res.output
    assert "Invalid value for '--index'" in res.output and "empty: give an alias or index name" in res.output
