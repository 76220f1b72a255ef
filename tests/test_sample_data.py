"""The synthetic sample collection: deterministic, schema-valid, photos that follow the step text."""

from __future__ import annotations

import json
import signal
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from toolkit.cli.data import sample_data
from toolkit.data.jsonl import iter_recipes, validate_dataset
from toolkit.data.sample import generate_sample, grammar, make_recipe, step_labels
from toolkit.data.sample_draw import draw_step_photo
from toolkit.errors import ConfigError
from toolkit.rejects import RejectsWriter


def _files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def sample(tmp_path_factory):
    root = tmp_path_factory.mktemp("sample")
    summary = generate_sample(root, 12, seed=3, image_size=64)
    return root, summary


def test_counts_and_schema_valid_output(sample):
    root, summary = sample
    report = validate_dataset(root)
    assert report.ok, report.rejects[:5]
    assert (report.recipes, report.steps, report.steps_with_image) == (12, summary.steps, summary.photos)
    assert summary.recipes == 12 and summary.text_only == summary.steps - summary.photos
    assert len(list((root / "images").rglob("*.jpg"))) == summary.photos
    for recipe in iter_recipes(root, RejectsWriter(None)):
        assert 3 <= len(recipe.ingredients) <= 8
        assert 3 <= len(recipe.steps) <= 8
        assert [s.position for s in recipe.steps] == list(range(1, len(recipe.steps) + 1))
        tags = dict(t.split(":", 1) for t in recipe.tags)
        assert tags["main"] in recipe.title and tags["method"] in grammar.METHODS
        names = {i.name for i in recipe.ingredients}
        for step in recipe.steps:
            assert set(step_labels(step.text)["ingredients"]) <= names, step.text
            if step.image is not None:
                assert step.image == f"images/{recipe.recipe_id}/{step.position}.jpg"
                with Image.open(root / step.image) as im:
                    assert (im.format, im.size, im.mode) == ("JPEG", (64, 64), "RGB")


def test_same_arguments_give_the_same_bytes_whatever_the_workers(sample, tmp_path):
    root, _ = sample
    again = tmp_path / "again"
    generate_sample(again, 12, seed=3, image_size=64, workers=2)
    assert _files(again) == _files(root)
    other = tmp_path / "other"
    generate_sample(other, 12, seed=4, image_size=64)
    assert (other / "recipes.jsonl").read_bytes() != (root / "recipes.jsonl").read_bytes()


def test_every_photo_is_different(sample):
    root, _ = sample
    photos = [b for name, b in _files(root).items() if name.endswith(".jpg")]
    assert len(set(photos)) == len(photos)


def test_same_text_never_draws_the_same_photo():
    text = "器に鶏肉を盛り付けます。"
    a = np.asarray(draw_step_photo(text, np.random.default_rng(1), 64), dtype=np.float32)
    b = np.asarray(draw_step_photo(text, np.random.default_rng(2), 64), dtype=np.float32)
    assert np.abs(a - b).mean() > 5.0


def _mean_rgb(text: str, n: int = 24) -> np.ndarray:
    arrs = [
        np.asarray(draw_step_photo(text, np.random.default_rng(k), 48), dtype=np.float64) for k in range(n)
    ]
    return np.mean([a.reshape(-1, 3).mean(axis=0) for a in arrs], axis=0)


def test_photo_content_follows_the_text():
    tomato = _mean_rgb("まず、トマトを角切りにします。")
    cabbage = _mean_rgb("まず、キャベツを角切りにします。")
    assert (tomato[0] - tomato[1]) - (cabbage[0] - cabbage[1]) > 8.0  # redder, less green

    stew = _mean_rgb("鍋に水と豆腐を入れ、中火で10分ほど煮ます。")
    boil = _mean_rgb("たっぷりのお湯で豆腐を10分ほど茹でます。")
    assert (boil[2] - boil[0]) - (stew[2] - stew[0]) > 8.0  # water is bluer than broth

    raw = _mean_rgb("まず、鶏肉を一口大に切ります。")
    fried = _mean_rgb("170度の油で鶏肉をこんがりと揚げます。")
    assert raw.sum() - fried.sum() > 10.0  # frying browns (and the fryer is darker than the board)


def test_step_labels_recover_what_the_generator_meant():
    texts = []
    for index in range(300):
        recipe, plans = make_recipe(seed=0, index=index, n_recipes=300)
        for step, plan in zip(recipe.steps, plans, strict=True):
            labels = step_labels(step.text)
            assert (labels["main"], labels["method"]) == (plan.main, plan.method), step.text
            assert labels["scene"] == grammar.METHODS[plan.method].scene
            texts.append(step.text)
    assert len(set(texts)) > 0.6 * len(texts)  # varied sentences, not a handful of templates
    endings = Counter(t[-6:] for t in texts if t.endswith(("ます。", "ましょう。", "てください。")))
    assert sum(1 for e in endings if e.endswith("ましょう。")) and sum(
        1 for e in endings if e.endswith("ください。")
    )
    used = {step_labels(t)["main"] for t in texts} | {step_labels(t)["cut"] for t in texts}
    assert len(grammar.INGREDIENTS.keys() & used) >= 20 and len(grammar.CUTS.keys() & used) == len(
        grammar.CUTS
    )


def test_only_onions_are_fried_to_amber():
    """「玉ねぎを飴色になるまで炒める」 (the README's first query) has photos to find, and no other food is
    fried "to amber": onions fried golden or crisp are said (and drawn) amber instead."""
    fried: Counter[tuple[str, str | None]] = Counter()
    for index in range(600):
        recipe, plans = make_recipe(seed=0, index=index, n_recipes=600)
        for step, plan in zip(recipe.steps, plans, strict=True):
            if plan.method == "炒める":
                fried[(plan.main, step_labels(step.text)["doneness"])] += 1
    amber = grammar.D["amber"]
    assert {food for food, done in fried if done == amber} <= set(grammar.AMBER_FOODS)
    assert fried[("玉ねぎ", amber)] >= 2
    assert not fried[("玉ねぎ", grammar.D["golden"])] and not fried[("玉ねぎ", grammar.D["crisp"])]
    assert sum(n for (food, done), n in fried.items() if done == grammar.D["golden"]) > 0  # others still are


def test_step_labels_of_free_text():
    labels = step_labels("玉ねぎを薄切りにして、中火で5分ほど炒めます。")
    assert labels == {
        "ingredients": ["玉ねぎ"],  # not also ねぎ
        "main": "玉ねぎ",
        "seasonings": [],
        "method": "炒める",
        "scene": "pan",
        "cut": "薄切り",
        "heat": "中火",
        "doneness": None,
        "minutes": 5,
    }
    assert step_labels("Fry the onions.")["main"] is None
    assert step_labels("Fry the onions.")["method"] is None


def test_photo_ratio_and_overwrite(tmp_path):
    none = generate_sample(tmp_path / "a", 3, photo_ratio=0.0)
    assert none.photos == 0 and none.text_only == none.steps
    assert validate_dataset(tmp_path / "a").ok
    with pytest.raises(ConfigError, match="already holds a dataset"):
        generate_sample(tmp_path / "a", 3)
    full = generate_sample(tmp_path / "a", 3, photo_ratio=1.0, overwrite=True, image_size=32)
    assert full.photos == full.steps and validate_dataset(tmp_path / "a").ok


@pytest.mark.parametrize(
    "kwargs",
    [{"n_recipes": 0}, {"seed": -1}, {"image_size": 8}, {"photo_ratio": 1.5}, {"workers": 0}],
)
def test_bad_arguments_are_refused(tmp_path, kwargs):
    args = {"n_recipes": 2, **kwargs}
    with pytest.raises(ConfigError):
        generate_sample(tmp_path, **args)
    assert not (tmp_path / "recipes.jsonl").exists()


def test_a_numpy_integer_seed_draws_what_the_same_int_does(sample, tmp_path):
    # was accepted unchecked (a bool or a float too), and returned as given in the summary
    root, _ = sample
    summary = generate_sample(tmp_path / "np", 12, seed=np.int64(3), image_size=64)
    assert type(summary.seed) is int and summary.seed == 3
    assert _files(tmp_path / "np") == _files(root)


@pytest.mark.parametrize("seed", [True, 3.5, np.float64(3)], ids=repr)
def test_a_seed_that_is_no_integer_is_refused(tmp_path, seed):
    with pytest.raises(ConfigError, match="seed must be a non-negative integer"):
        generate_sample(tmp_path, 2, seed=seed)
    assert not (tmp_path / "images").exists()


def test_cli_sample_data(tmp_path):
    runner = CliRunner()
    out = tmp_path / "s"
    result = runner.invoke(
        sample_data, [str(out), "--recipes", "4", "--image-size", "32", "--json", "--quiet"]
    )
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert data["recipes"] == 4 and data["photos"] + data["text_only"] == data["steps"]
    result = runner.invoke(sample_data, [str(out), "--recipes", "4"])
    assert result.exit_code == 2 and "already holds a dataset" in result.output
    assert runner.invoke(sample_data, ["--help"]).exit_code == 0


def _signalled_sample_run(out: Path, signum: int) -> tuple[int, str]:
    """A real `jrs sample-data` process sent ``signum`` once it has drawn its first photos: its exit status and
    stderr."""
    import os
    import subprocess
    import sys
    import time

    cmd = [str(Path(sys.executable).with_name("jrs")), "sample-data", str(out), "--recipes", "20000", "-q"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 120
        while not any((out / "images").glob("*/*.jpg")) and time.monotonic() < deadline:
            assert proc.poll() is None, proc.communicate()
            time.sleep(0.1)
        proc.send_signal(signum)
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
    return proc.returncode, err


def test_an_interrupted_run_is_named_as_such_and_overwrite_redoes_it(tmp_path):
    """After Ctrl-C, images/ stayed without recipes.jsonl and a rerun was refused as "already holds a
    dataset". A real `jrs sample-data` process is interrupted with SIGINT while it draws."""
    out = tmp_path / "big"
    code, err = _signalled_sample_run(out, signal.SIGINT)
    assert code == 130 and "interrupted" in err, err
    assert (out / "images").is_dir() and not (out / "recipes.jsonl").exists()
    rerun = CliRunner().invoke(sample_data, [str(out), "--recipes", "3"])
    assert rerun.exit_code == 2
    assert (
        f"Error: {str(out)!r} holds images/ but no recipes.jsonl: an unfinished run (interrupted?) left its "
        "photos there; pass overwrite=True (--overwrite) to replace them"
    ) in rerun.stderr
    redo = CliRunner().invoke(sample_data, [str(out), "--recipes", "3", "--image-size", "16", "--overwrite"])
    assert redo.exit_code == 0, redo.output
    assert validate_dataset(out).recipes == 3 and len(list((out / "images").iterdir())) <= 3


def test_sigterm_stops_a_command_as_ctrl_c_does(tmp_path):
    """`kill`, `timeout` or a stopping container send SIGTERM: the command ends as on Ctrl-C (its cleanups
    run, one "interrupted" line, exit 130), not killed at once with status 143 and nothing said."""
    out = tmp_path / "big"
    code, err = _signalled_sample_run(out, signal.SIGTERM)
    assert code == 130 and err == "interrupted\n", (code, err)
    assert (out / "images").is_dir() and not (out / "recipes.jsonl").exists()


def test_validate_says_an_empty_dataset_holds_no_recipes(tmp_path):
    """An empty recipes.jsonl was "no rejects: the dataset is valid" (exit 0), which build then refused."""
    from toolkit.cli.data import validate

    (tmp_path / "recipes.jsonl").write_text("\n\n", encoding="utf-8")
    res = CliRunner().invoke(validate, [str(tmp_path)])
    assert res.exit_code == 2, res.output
    assert res.stderr.splitlines() == [
        f"Error: {tmp_path / 'recipes.jsonl'} holds no recipes: there is nothing to build or index"
    ]
    assert CliRunner().invoke(validate, [str(tmp_path), "--json"]).exit_code == 2
    # only rejected records: exit 1 (rejects), and the text says nothing is left
    (tmp_path / "recipes.jsonl").write_text('{"recipe_id": "r1"}\n', encoding="utf-8")
    res = CliRunner().invoke(validate, [str(tmp_path)])
    assert res.exit_code == 1 and "no recipe is valid: there is nothing to build or index" in res.stdout
