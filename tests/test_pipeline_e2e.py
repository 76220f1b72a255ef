"""`jrs build` on sample data: the model learns the text/photo link, its parts are consistent, evaluation works."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

from toolkit.cli.main import cli
from toolkit.data.splits import split_of
from toolkit.errors import ModelDirError
from toolkit.fingerprint import FingerprintMismatch
from toolkit.model import SearchModel


def test_trained_mapping_beats_random_towers_threefold(built_model: Path) -> None:
    ev = json.loads((built_model / "evaluation.json").read_text())
    model = ev["model_pooled"]["text_to_image"]["R@10"]
    random = ev["random_towers"]["text_to_image"]["R@10"]
    assert ev["split"] == "test" and ev["pairs"]["test"] >= 20
    assert model >= 3 * random, (model, random)
    assert model > ev["chance"]["text_to_image"]["R@10"]


def _recipe_in(split: str, prefix: str) -> str:
    return next(f"{prefix}{i}" for i in range(1000) if split_of(f"{prefix}{i}", 0) == split)


def test_word2vec_never_sees_the_test_split(sample_root: Path, tmp_path: Path) -> None:
    """A word that only test-split recipes use must not be in the vocabulary; one of the training split must."""
    from toolkit.pipeline import BuildOptions, build
    from toolkit.text.word2vec import WordVectors

    root = tmp_path / "data"
    shutil.copytree(sample_root, root)
    lines = []
    for split, word in (("test", "ズッキーニ"), ("train", "パプリカ")):
        for n in range(3):
            rid = _recipe_in(split, f"{split}{n}x")
            steps = [{"position": p, "text": f"{word}を薄切りにして、中火で炒めます。"} for p in (1, 2)]
            lines.append(
                json.dumps({"recipe_id": rid, "title": f"{word}炒め", "steps": steps}, ensure_ascii=False)
            )
    with (root / "recipes.jsonl").open("a", encoding="utf-8") as f:
        f.write("\n".join(lines) + "\n")
    options = BuildOptions(encoder="pixels", mapping={"epochs": 2}, eval_draws=1, progress=False)
    build(root, tmp_path / "model", options)
    vocab = WordVectors.load(tmp_path / "model" / "word2vec").index
    assert "パプリカ" in vocab
    assert "ズッキーニ" not in vocab


def test_model_loads_and_embeds_queries(built_model: Path) -> None:
    model = SearchModel.load(built_model)
    vec = model.embed_query("玉ねぎを薄切りにします。")
    assert vec.shape == (model.dims,) and abs(float(vec @ vec) - 1.0) < 1e-4


def test_mixed_up_model_directory_is_refused(built_model: Path, tmp_path: Path) -> None:
    mixed = tmp_path / "mixed"
    shutil.copytree(built_model, mixed)
    manifest = json.loads((mixed / "manifest.json").read_text())
    manifest["word2vec_fingerprint"] = "0" * 16
    (mixed / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(FingerprintMismatch):
        SearchModel.load(mixed)
    shutil.rmtree(mixed / "mapping")
    with pytest.raises(ModelDirError, match="missing mapping"):
        SearchModel.load(mixed)


def test_evaluate_prints_model_next_to_baselines(built_model: Path) -> None:
    res = CliRunner().invoke(cli, ["evaluate", str(built_model), "--json"])
    assert res.exit_code == 0, res.output
    data = json.loads(res.stdout)
    ev = data["in_memory"]
    assert {"model_pooled", "model_full", "random_towers", "keyword_overlap", "chance"} <= set(ev)
    # linear baselines on the model's own training pairs, evaluated like the model
    for name in ("cca", "ridge"):
        pooled = ev[f"{name}_pooled"]["text_to_image"]
        assert ev[f"{name}_full"]["n"] == ev["model_full"]["n"]
        assert pooled["R@10"] > 2 * ev["chance"]["text_to_image"]["R@10"]  # a linear map learns the link too
    # graded relevance from the sample data's main:/method: tags, above chance for the model
    graded = ev["graded"]
    assert {"model", "cca", "ridge", "chance"} <= set(graded)
    assert graded["model"]["method"] > graded["chance"]["method"]
    assert graded["model"]["main"] > graded["chance"]["main"]
    res = CliRunner().invoke(cli, ["evaluate", str(built_model)])
    assert "random towers" in res.stdout and "keyword overlap" in res.stdout
    assert "linear CCA (1k pools)" in res.stdout and "linear ridge (whole split)" in res.stdout
    assert "graded precision@10" in res.stdout


@pytest.mark.parametrize(
    ("extra", "named"),
    [
        (["-k", "5"], "-k applies"),
        (["--mode", "knn"], "--mode applies"),
        (["--limit", "3", "--num-candidates", "50"], "--num-candidates, --limit apply"),
    ],
)
def test_evaluate_refuses_index_options_without_an_index(
    built_model: Path, extra: list[str], named: str
) -> None:
    """``-k 5`` and ``--mode knn`` only apply through the index; without --index they were silently ignored."""
    res = CliRunner().invoke(cli, ["evaluate", str(built_model), *extra])
    assert res.exit_code == 2, res.output
    assert f"Error: {named} to the queries run through an index: add --index ALIAS" in res.stderr
    assert "held-out" not in res.stdout  # refused before any evaluation


def test_evaluate_through_the_index(built_model: Path, search_alias: str, es_settings) -> None:
    env = {"ES_URL": es_settings.url}
    args = ["evaluate", str(built_model), "--index", search_alias, "--json", "--quiet", "--limit", "30"]
    res = CliRunner().invoke(cli, args, env=env)
    assert res.exit_code == 0, res.output
    through = json.loads(res.stdout)["through_index"]
    modes = through["modes"]
    assert set(modes) == {
        "knn",
        "keyword",
        "hybrid",
        "rrf",
        "linear",
        "exact_knn",
        "cca_exact",
        "ridge_exact",
    }
    assert set(through["graded"]) == set(modes)
    for mode in ("knn", "cca_exact"):
        g = through["graded"][mode]
        assert g["method"] > g["method_chance"], (mode, g)
    assert through["queries"] + len(through["skipped_no_known_word"]) == 30
    assert 0.0 <= through["hnsw_recall@10"] <= 1.0
    # on a small index HNSW with num_candidates=100 is (nearly) exact
    assert through["hnsw_recall@10"] >= 0.9
    assert modes["hybrid"]["R@10"] >= modes["knn"]["R@10"]
    assert modes["keyword"]["R@10"] > 0.5  # a step's own text finds it
    # graded precision is named at the k it was computed at (it said @10 whatever -k was)
    short = CliRunner().invoke(cli, [*args[:-2], "--limit", "10", "-k", "3"], env=env)
    assert short.exit_code == 0, short.output
    assert all(g["k"] == 3 for g in json.loads(short.stdout)["through_index"]["graded"].values())
    text = CliRunner().invoke(
        cli, [a for a in args if a != "--json"][:-2] + ["--limit", "10", "-k", "3"], env=env
    )
    assert (
        "graded precision@3 (through the index" in text.output and "precision@10 (through" not in text.output
    )


def test_evaluate_writes_the_html_report(built_model: Path, search_alias: str, es_settings, tmp_path) -> None:
    report = tmp_path / "report.html"
    args = ["evaluate", str(built_model), "--index", search_alias, "--limit", "10", "--quiet"]
    res = CliRunner().invoke(cli, [*args, "--report", str(report)], env={"ES_URL": es_settings.url})
    assert res.exit_code == 0, res.output
    html = report.read_text(encoding="utf-8")
    assert f"report written to {report}" in res.stdout
    assert "<html" in html.lower() and "random_towers" in html and "data:image/png;base64," in html
    assert "hybrid" in html  # the through-index table is in the report too
    # linear baselines and graded relevance, in memory and through the index
    assert 'data-method="cca_pooled"' in html and 'data-method="ridge_exact"' in html
    assert 'id="graded"' in html and 'id="graded-index"' in html


def test_build_refuses_an_empty_dataset(tmp_path: Path) -> None:
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "recipes.jsonl").write_text('{"recipe_id": "r1"}\n', encoding="utf-8")
    res = CliRunner().invoke(cli, ["build", str(tmp_path / "data"), str(tmp_path / "m"), "--quiet"])
    assert res.exit_code == 2 and "no valid steps" in res.output


def test_rebuild_into_a_model_directory_replaces_it(built_model: Path, tmp_path: Path) -> None:
    """Building other data (other photos) into an existing model directory replaces every stage, the photo
    features included; a rebuild that fails leaves a directory that is refused, never old and new mixed."""
    from tests.conftest import E2E_IMAGE_SIZE, e2e_build_options
    from toolkit.data.sample import generate_sample
    from toolkit.pipeline import build
    from toolkit.vectorset import load_vector_set

    model_dir = tmp_path / "model"
    shutil.copytree(built_model, model_dir)
    old = SearchModel.load(model_dir).fingerprint
    other = tmp_path / "other"
    generate_sample(other, 40, seed=11, image_size=E2E_IMAGE_SIZE)
    options = e2e_build_options(epochs=2, eval_draws=1)
    manifest = build(other, model_dir, options)
    assert manifest["dataset"] == str(other.resolve())
    model = SearchModel.load(model_dir)
    assert model.fingerprint != old
    features = load_vector_set(model_dir / "image_features")
    photos = sum(
        1 for line in (other / "recipes.jsonl").open() for s in json.loads(line)["steps"] if s.get("image")
    )
    assert len(features.ids) == photos  # only the new photos (some step ids are the same as before)
    assert features.sources is not None
    assert all(s.split("\t", 2)[2].startswith(str(other.resolve())) for s in features.sources)

    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "recipes.jsonl").write_text('{"recipe_id": "r1"}\n', encoding="utf-8")
    with pytest.raises(Exception, match="no valid steps"):
        build(empty, model_dir, options)
    with pytest.raises(ModelDirError, match="incomplete: missing manifest.json"):
        SearchModel.load(model_dir)


def test_bad_weights_stop_a_build_before_it_touches_the_model(
    built_model: Path, sample_root: Path, tmp_path: Path
) -> None:
    from toolkit.errors import ToolkitError
    from toolkit.pipeline import BuildOptions, build

    model_dir = tmp_path / "model"
    shutil.copytree(built_model, model_dir)
    before = {p.name: p.stat().st_mtime_ns for p in model_dir.rglob("*") if p.is_file()}
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a state_dict")
    for weights in (str(bad), "nope"):
        with pytest.raises(ToolkitError, match="weights file"):
            build(sample_root, model_dir, BuildOptions(encoder="resnet18", weights=weights))
    after = {p.name: p.stat().st_mtime_ns for p in model_dir.rglob("*") if p.is_file()}
    assert after == before and SearchModel.load(model_dir).fingerprint
