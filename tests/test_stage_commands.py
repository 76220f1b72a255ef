"""`jrs build` and the single-stage commands run the same stage functions: same options, same model."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from conftest import E2E_IMAGE_SIZE

from toolkit.cli.main import cli
from toolkit.mapping.checkpoint import load_mapping
from toolkit.text.word2vec import WordVectors
from toolkit.vectorset import load_vector_set, save_vector_set

IMAGE = ["--encoder", "resnet18", "--weights", "random", "--image-size", str(E2E_IMAGE_SIZE)]
MAPPING = ["--epochs", "3", "--dim", "64", "--seed", "1"]


def _run(args: list[str]) -> dict:
    res = CliRunner().invoke(cli, [*args, "--json", "--quiet"])
    assert res.exit_code == 0, res.output
    return json.loads(res.stdout)


def _untimed(history: list[dict]) -> list[dict]:
    return [{k: v for k, v in epoch.items() if k != "seconds"} for epoch in history]


def _same_vectors(a: Path, b: Path) -> None:
    va, vb = load_vector_set(a), load_vector_set(b)
    assert va.ids == vb.ids and len(va.ids) > 100
    assert np.array_equal(np.asarray(va.vectors), np.asarray(vb.vectors))


def test_build_equals_the_stage_commands_in_sequence(sample_root: Path, tmp_path: Path) -> None:
    built = tmp_path / "built"
    manifest = _run(["build", str(sample_root), str(built), *IMAGE, *MAPPING, "--w2v-epochs", "5"])

    s = tmp_path / "stages"
    root = str(sample_root)
    w2v = _run(["train-w2v", root, str(s / "w2v"), "--epochs", "5"])
    _run(["step-vectors", root, str(s / "w2v"), str(s / "sv")])
    _run(["embed-images", root, str(s / "img"), *IMAGE])
    mapping = _run(
        [
            "train-mapping",
            str(s / "sv"),
            str(s / "img"),
            str(s / "map"),
            "--word2vec",
            str(s / "w2v"),
            *MAPPING,
        ]
    )
    _run(["step-vectors", root, str(s / "w2v"), str(s / "sv-test"), "--split", "test"])
    evaluation = _run(["evaluate-vectors", str(s / "map"), str(s / "sv-test"), str(s / "img")])

    assert w2v["fingerprint"] == manifest["word2vec_fingerprint"]
    assert WordVectors.load(s / "w2v").vocab == WordVectors.load(built / "word2vec").vocab
    _same_vectors(s / "sv", built / "step_vectors")
    _same_vectors(s / "img", built / "image_features")
    assert mapping["fingerprint"] == manifest["mapping_fingerprint"]
    assert load_mapping(s / "map").fingerprint == load_mapping(built / "mapping").fingerprint
    assert _untimed(mapping["history"]) == _untimed(manifest["history"])
    assert mapping["train_pairs"] > mapping["val_pairs"] > 0
    ev = manifest["evaluation"]
    assert evaluation["pairs"] == ev["pairs"]["test"]
    assert evaluation["results"]["mapping"] == ev["model_pooled"]
    assert evaluation["results"]["random towers"] == ev["random_towers"]
    assert evaluation["results"]["chance"] == ev["chance"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--dim", "0"], "dim and hidden must be positive"),
        (["--min-count", "0"], "min_count must be a positive integer"),
        (["--max-vocab", "0"], "max_vocab must be a positive integer"),
        (["--encoder", "nope"], "unknown image encoder 'nope'"),
        (["--batch-size", "0"], "batch_size must be an integer >= 1"),
        (["--stopwords", "missing.txt"], "stopword file missing.txt does not exist"),
        (["--linear-strong-reg", "-1"], "x>=0"),
    ],
)
def test_build_refuses_bad_options_before_any_work(
    sample_root: Path, tmp_path: Path, args: list[str], message: str
) -> None:
    out = tmp_path / "model"
    res = CliRunner().invoke(cli, ["build", str(sample_root), str(out), *args, "--quiet"])
    assert res.exit_code == 2, res.output
    assert message in res.output and "Traceback" not in res.output
    assert not out.exists()  # nothing was started


def test_build_says_what_it_rejected(sample_root: Path, tmp_path: Path) -> None:
    """A build that drops records exits 0 but says how many, by stage, and where their reasons are."""
    import shutil

    data = tmp_path / "data"
    shutil.copytree(sample_root, data)
    photo = sorted((data / "images").rglob("*.jpg"))[0]
    photo.write_bytes(photo.read_bytes()[:200])  # truncated: rejected at the image stage
    with (data / "recipes.jsonl").open("a", encoding="utf-8") as fh:
        fh.write('{"recipe_id": "broken", "title": "壊れた行"\n')  # read
        fh.write(
            '{"recipe_id": "sur", "title": "t", "steps": [{"position": 1, "text": "卵を\\ud800焼く"}]}\n'
        )
    args = ["build", str(data), str(tmp_path / "m"), *IMAGE, *MAPPING, "--text-members", "1", "--quiet"]
    res = CliRunner().invoke(cli, args)
    assert res.exit_code == 0, res.output
    want = {"image": 1, "read": 1, "validate": 1}
    assert f"3 rejected (image 1, read 1, validate 1): see {tmp_path / 'm' / 'rejects.jsonl'}" in res.stdout
    manifest = json.loads((tmp_path / "m" / "manifest.json").read_text(encoding="utf-8"))
    assert manifest["rejects"] == {"count": 3, "by_stage": want, "file": "rejects.jsonl"}
    rows = [
        json.loads(line)
        for line in (tmp_path / "m" / "rejects.jsonl").read_text(encoding="utf-8").splitlines()
    ]
    assert sorted(r["stage"] for r in rows) == ["image", "read", "validate"]
    assert any(r["record"] == "sur:1" and "unpaired surrogate" in r["reason"] for r in rows)

    # a rerun into the same directory (photo features found done) lists the same rejects, once each
    again = CliRunner().invoke(cli, args)
    assert again.exit_code == 0 and "3 rejected (image 1, read 1, validate 1)" in again.stdout, again.output
    assert (tmp_path / "m" / "rejects.jsonl").read_text(encoding="utf-8").splitlines() == [
        json.dumps(r, ensure_ascii=False) for r in rows
    ]


def test_tower_options_give_the_config_defaults_and_zero_turns_the_strong_cca_off() -> None:
    import click

    from toolkit.cli.options import tower_options
    from toolkit.mapping.train import MappingConfig

    @click.command()
    @tower_options("toolkit.mapping.train:MappingConfig")
    def show(**fields: object) -> None:
        click.echo(json.dumps(MappingConfig(**fields).to_dict()))

    default = json.loads(CliRunner().invoke(show, []).stdout)
    assert default["linear_strong_reg"] == MappingConfig().linear_strong_reg is not None
    assert (
        json.loads(CliRunner().invoke(show, ["--linear-strong-reg", "0"]).stdout)["linear_strong_reg"] is None
    )
    assert (
        json.loads(CliRunner().invoke(show, ["--linear-strong-reg", "30"]).stdout)["linear_strong_reg"]
        == 30.0
    )


def test_stage_commands_write_each_runs_rejects_once(sample_root: Path, tmp_path: Path) -> None:
    """train-w2v and step-vectors rerun into the same directory: the file holds the last run's rejects (it
    kept every run's before), and a text file that is not UTF-8 is a clear usage error."""
    import shutil

    data = tmp_path / "data"
    shutil.copytree(sample_root, data)
    with (data / "recipes.jsonl").open("a", encoding="utf-8") as fh:
        fh.write('{"recipe_id": "broken", "title": "壊れた行"\n')
    w2v, vectors = tmp_path / "w2v", tmp_path / "vectors"
    for _ in range(2):
        assert _run(["train-w2v", str(data), str(w2v), "--epochs", "1"])["rejects"] == 1
        assert _run(["step-vectors", str(data), str(w2v), str(vectors)])["rejects"] >= 1
    assert len((w2v / "rejects.jsonl").read_text(encoding="utf-8").splitlines()) == 1
    lines = (vectors / "rejects.jsonl").read_text(encoding="utf-8").splitlines()
    assert len(lines) == _run(["step-vectors", str(data), str(w2v), str(vectors)])["rejects"]
    binary = tmp_path / "bin.txt"
    binary.write_bytes(b"\xff\xfe\x00")
    res = CliRunner().invoke(cli, ["tokenize", "--file", str(binary)])
    assert res.exit_code == 2 and "is not UTF-8 text" in res.output and "Traceback" not in res.output


def test_stages_refuse_a_split_seed_other_than_word2vecs(sample_root: Path, tmp_path: Path) -> None:
    """Word2Vec trained on seed 3's training split: splitting with seed 0 later would let its test recipes
    in (their words shaped the vectors), so step-vectors of a split and train-mapping refuse it."""
    w2v, vectors = tmp_path / "w2v", tmp_path / "vectors"
    _run(["train-w2v", str(sample_root), str(w2v), "--epochs", "1", "--split-seed", "3"])
    assert json.loads((w2v / "word2vec.json").read_text(encoding="utf-8"))["stats"]["split_seed"] == 3
    _run(["step-vectors", str(sample_root), str(w2v), str(vectors)])  # every step: no split involved
    runner = CliRunner()
    res = runner.invoke(
        cli, ["step-vectors", str(sample_root), str(w2v), str(tmp_path / "t"), "--split", "test"]
    )
    assert res.exit_code == 2 and "trained on the training split of seed 3" in res.output, res.output
    args = ["train-mapping", str(vectors), str(vectors), str(tmp_path / "m"), "--word2vec", str(w2v)]
    res = runner.invoke(cli, args)
    assert res.exit_code == 2 and "pass --split-seed 3" in res.output, res.output
    assert not (tmp_path / "m").exists()


def test_train_mapping_refuses_options_of_another_loss(tmp_path: Path) -> None:
    """--margin 5 --mining hard with the default infonce loss were accepted and silently unused."""
    sv, img, out = tmp_path / "sv", tmp_path / "img", tmp_path / "m"
    sv.mkdir(), img.mkdir()
    base = ["train-mapping", str(sv), str(img), str(out)]
    for extra, option in (
        (["--margin", "5"], "--margin"),
        (["--mining", "hard", "--loss", "infonce"], "--mining"),
    ):
        res = CliRunner().invoke(cli, [*base, *extra])
        assert res.exit_code == 2 and res.output.count("\n") == 1, res.output
        assert f"Error: {option} applies to --loss triplet only, not infonce" in res.output
    # the triplet loss reads them: the command goes on (to the empty vector sets)
    triplet = ["--loss", "triplet", "--margin", "5", "--mining", "hard", "--text-tower", "mean"]
    res = CliRunner().invoke(cli, [*base, *triplet])
    assert res.exit_code == 2 and "is incomplete" in res.output, res.output
    assert not out.exists()


def test_step_vectors_names_its_rejects_file_only_when_it_wrote_one(tmp_path: Path) -> None:
    """It printed ``(0 rejects in OUT/rejects.jsonl)`` and wrote no such file; train-w2v names none either."""
    from toolkit.data.sample import generate_sample

    data, w2v, sv = tmp_path / "data", tmp_path / "w2v", tmp_path / "sv"
    generate_sample(data, 8, seed=1, image_size=16)
    res = CliRunner().invoke(
        cli, ["train-w2v", str(data), str(w2v), "--epochs", "1", "--min-count", "1", "-q"]
    )
    assert res.exit_code == 0 and res.stdout.rstrip().endswith("(0 rejects)"), res.output
    res = CliRunner().invoke(cli, ["step-vectors", str(data), str(w2v), str(sv), "-q"])
    assert res.exit_code == 0 and res.stdout.rstrip().endswith("(0 rejects)"), res.output
    assert not (sv / "rejects.jsonl").exists() and not (w2v / "rejects.jsonl").exists()
    assert _run(["step-vectors", str(data), str(w2v), str(sv)])["rejects_file"] is None

    with (data / "recipes.jsonl").open("a", encoding="utf-8") as fh:
        fh.write('{"recipe_id": "broken"\n')
    res = CliRunner().invoke(cli, ["step-vectors", str(data), str(w2v), str(sv), "-q"])
    assert res.exit_code == 0 and f"(1 rejects in {sv / 'rejects.jsonl'})" in res.stdout, res.output
    assert len((sv / "rejects.jsonl").read_text(encoding="utf-8").splitlines()) == 1
    assert _run(["step-vectors", str(data), str(w2v), str(sv)])["rejects_file"] == str(sv / "rejects.jsonl")


def _vector_sets(root: Path, recipes: int) -> tuple[Path, Path, list[str]]:
    """Random text and photo vector sets of ``recipes`` recipes of two steps (the mapping's quality is not
    the point here)."""
    ids = [f"r{k:04d}:{p}" for k in range(recipes) for p in (1, 2)]
    rng = np.random.default_rng(0)
    text, image = root / "text", root / "image"
    save_vector_set(text, ids, rng.normal(size=(len(ids), 12)), {"word2vec_fingerprint": "w2v-x"})
    save_vector_set(image, ids, rng.normal(size=(len(ids), 10)), {"encoder_fingerprint": "enc-x"})
    return text, image, ids


def _subset(src: Path, dst: Path, keep: list[str]) -> Path:
    """The rows of ``keep`` of the vector set ``src``, as a vector set at ``dst``."""
    vs = load_vector_set(src)
    rows = [list(vs.ids).index(i) for i in keep]
    return save_vector_set(dst, keep, np.asarray(vs.vectors)[rows], vs.meta)


SMALL = ["--text-tower", "mean", "--text-members", "1", "--epochs", "1", "--dim", "8", "--hidden", "16", "-q"]


def test_evaluate_vectors_refuses_the_mappings_training_recipes(tmp_path: Path) -> None:
    """A text set of split "all" (the training pairs included) gave inflated metrics without a word, while
    train-mapping refuses validation pairs that share its training recipes: evaluate-vectors now does too."""
    from toolkit.data.splits import split_of

    text, image, ids = _vector_sets(tmp_path, 150)
    mapping = tmp_path / "m"
    assert (
        CliRunner().invoke(cli, ["train-mapping", str(text), str(image), str(mapping), *SMALL]).exit_code == 0
    )
    train = {i.split(":")[0] for i in ids if split_of(i.split(":")[0]) == "train"}

    res = CliRunner().invoke(cli, ["evaluate-vectors", str(mapping), str(text), str(image), "-q"])
    assert res.exit_code == 2 and res.output.count("\n") == 1, res.output
    assert (
        f"Error: {len(train)} of the 150 recipes of {text} are among the mapping's training recipes"
        in res.output
    )
    report = _run(["evaluate-vectors", str(mapping), str(text), str(image), "--include-training"])
    assert len(report["warnings"]) == 1 and "the metrics are optimistic" in report["warnings"][0]

    test = _subset(text, tmp_path / "test", [i for i in ids if i.split(":")[0] not in train])
    assert _run(["evaluate-vectors", str(mapping), str(test), str(image)])["warnings"] == []

    # validation pairs given: every pair of the training sets was trained on
    given = tmp_path / "given"
    args = [
        "train-mapping",
        str(text),
        str(image),
        str(given),
        "--val-text",
        str(test),
        "--val-image",
        str(image),
    ]
    res = CliRunner().invoke(cli, [*args, *SMALL])
    assert res.exit_code == 2 and "in both the training and validation sets" in res.output  # as before
    args[1] = str(_subset(text, tmp_path / "tr", [i for i in ids if i.split(":")[0] in train]))
    assert CliRunner().invoke(cli, [*args, *SMALL]).exit_code == 0
    res = CliRunner().invoke(cli, ["evaluate-vectors", str(given), str(text), str(image), "-q"])
    assert res.exit_code == 2 and f"training recipes (the pairs of {tmp_path / 'tr'}" in res.output, (
        res.output
    )


def test_a_build_mappings_training_recipes_come_from_its_model(tmp_path: Path) -> None:
    """A mapping of `jrs build` records no sources: its model's manifest gives the split seed, its step vectors
    and photo features the pairs."""
    from types import SimpleNamespace

    from toolkit.cli.mapping import _training_recipes
    from toolkit.data.splits import split_of

    model = tmp_path / "model"
    text, image, ids = _vector_sets(model, 40)
    text.rename(model / "step_vectors"), image.rename(model / "image_features")
    (model / "mapping").mkdir()
    manifest = {"mapping_fingerprint": "fp", "split_seed": 3}
    (model / "manifest.json").write_text(json.dumps(manifest), encoding="utf-8")
    recipes, where = _training_recipes(str(model / "mapping"), SimpleNamespace(meta={}, fingerprint="fp"))
    assert recipes == {i.split(":")[0] for i in ids if split_of(i.split(":")[0], seed=3) == "train"}
    assert where == f"the train split of {model / 'step_vectors'}, split seed 3"
    assert _training_recipes(str(model / "mapping"), SimpleNamespace(meta={}, fingerprint="other")) is None


def test_train_mapping_says_how_many_texts_had_no_photo(tmp_path: Path) -> None:
    """Trained on one shard of the photos, it said nothing of the two thirds of texts left unpaired."""
    text, image, ids = _vector_sets(tmp_path, 100)
    kept = ids[: len(ids) // 3]
    shard = _subset(image, tmp_path / "shard", kept)
    (shard / "shard.json").write_text("{}", encoding="utf-8")
    res = CliRunner().invoke(cli, ["train-mapping", str(text), str(shard), str(tmp_path / "m"), *SMALL])
    assert res.exit_code == 0, res.output
    unpaired = len(ids) - len(kept)
    assert f"{unpaired} of {len(ids)} text vectors have no photo vector in {shard}, left out" in res.stdout
    assert "is one shard of the photos: merge the shards with `jrs merge-vectors`" in res.stdout
    report = _run(["train-mapping", str(text), str(shard), str(tmp_path / "m2"), *SMALL[:-1]])
    assert report["unpaired_text"] == unpaired
