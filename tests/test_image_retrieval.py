"""precision@k of image->image neighbours: exact values on hand-made vectors, groups, criteria, the command."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from toolkit.cli.main import cli
from toolkit.errors import ConfigError
from toolkit.evaluation.image_retrieval import (
    EncoderSpec,
    criterion_labels,
    evaluate_image_encoders,
    precision_at_k,
    results_table,
)


def test_precision_counts_relevant_neighbours_exactly() -> None:
    # two clusters of directions (angles in radians); labels follow them except item 3
    angles = [0.0, 0.01, 0.03, 0.06, np.pi / 2, np.pi / 2 - 0.01, np.pi / 2 - 0.03]
    x = np.array([[np.cos(a), np.sin(a)] for a in angles], np.float32)
    labels = ["a", "a", "a", "b", "b", "b", "b"]
    p1 = precision_at_k(x, labels, k=1)
    # nearest: 0->1, 1->0, 2->1, 3->2 (an "a": the one miss), 4->5, 5->4, 6->5
    assert p1["queries"] == 7 and p1["k"] == 1
    assert p1["precision"] == pytest.approx(6 / 7)
    p3 = precision_at_k(x, labels, k=3)
    # items 0-2: two "a" and item 3 among their 3 nearest; item 3: three "a"; items 4-6: two "b" + item 3
    assert p3["precision"] == pytest.approx((3 * 2 / 3 + 0 + 3 * 1) / 7)
    assert p3["chance"] == pytest.approx(np.mean([2 / 6] * 3 + [3 / 6] * 4))
    assert p3["lift"] == pytest.approx(p3["precision"] / p3["chance"])


def test_groups_hide_same_recipe_neighbours_and_multi_labels_intersect() -> None:
    x = np.array([[1, 0], [1, 0.01], [0.9, 0.2], [0, 1]], np.float32)
    labels = [{"dish:a", "main:x"}, {"dish:a", "main:x"}, {"dish:b", "main:x"}, {"dish:b", "main:y"}]
    groups = ["r1", "r1", "r2", "r3"]
    # without groups item 0's nearest is its twin; with groups it is item 2 (shares main:x only)
    assert precision_at_k(x, [{"dish:a"}, {"dish:a"}, {"dish:b"}, {"dish:b"}], k=1)["precision"] == 0.75
    p = precision_at_k(x, [{"dish:a"}, {"dish:a"}, {"dish:b"}, {"dish:b"}], k=1, groups=groups)
    assert p["precision"] == pytest.approx(0.25)  # only item 3 -> item 2 (dish:b) is relevant
    # dish or main: 0->2 and 1->2 share main:x, 2->1 main:x, 3->2 dish:b
    assert precision_at_k(x, labels, k=1, groups=groups)["precision"] == pytest.approx(1.0)
    with pytest.raises(ValueError, match="no query"):
        precision_at_k(x, labels, k=1, groups=["r"] * 4)
    with pytest.raises(ValueError, match="all zeros"):
        precision_at_k(np.zeros((3, 2)), ["a", "a", "b"])


def test_criteria_pick_tags_by_prefix() -> None:
    tags = [("main:鶏肉", "method:焼く", "dish:照り焼き"), ("main:豚肉",)]
    assert criterion_labels(tags, "dish") == [{"dish:照り焼き"}, set()]
    assert criterion_labels(tags, "dish|main") == [{"dish:照り焼き", "main:鶏肉"}, {"main:豚肉"}]
    with pytest.raises(ConfigError):
        criterion_labels(tags, "|")


def test_encoder_specs_parse() -> None:
    assert EncoderSpec.parse("pixels") == EncoderSpec("pixels", "auto", "pixels")
    assert EncoderSpec.parse("tuned=simclr:runs/a=b") == EncoderSpec("simclr", "runs/a=b", "tuned")
    assert EncoderSpec.parse("efficientnet-lite0:imagenet").weights == "imagenet"


def test_evaluation_compares_encoders_on_held_out_photos(sample_root: Path, tmp_path: Path) -> None:
    specs = [EncoderSpec("pixels", label="pixels"), EncoderSpec("resnet18", "random", "r18")]
    report = evaluate_image_encoders(sample_root, specs, image_size=16, cache_dir=tmp_path)
    assert report["split"] == "heldout" and report["photos"] > 20 and report["skipped_photos"] == 0
    assert [r["label"] for r in report["results"]] == ["pixels", "r18"]
    for r in report["results"]:
        assert set(r["criteria"]) == {"dish", "main", "dish|main"}
        for c in r["criteria"].values():
            assert 0 <= c["precision"] <= 1 and 0 < c["chance"] < 1 and c["k"] == 10
        assert r["criteria"]["dish|main"]["chance"] >= r["criteria"]["dish"]["chance"]
    table = results_table(report)
    assert "P@10 dish %" in table and "(chance)" in table and "r18" in table
    # features are cached per encoder fingerprint and reused
    assert len([p for p in tmp_path.iterdir() if (p / "vectors.npy").is_file()]) == 2


def _evaluate_pixels(root: Path, *more: str) -> list[str]:
    return ["evaluate-images", str(root), "-e", "pixels", "--image-size", "8", *more]


def test_evaluate_images_command(sample_root: Path) -> None:
    args = _evaluate_pixels(sample_root, "--k", "5", "--split", "test")
    res = CliRunner().invoke(cli, [*args, "-q"])
    assert res.exit_code == 0, res.output
    assert "image->image precision@5" in res.output and "pixels" in res.output
    res = CliRunner().invoke(cli, [*args, "--json", "-q", "--criterion", "method"])
    assert json.loads(res.output)["results"][0]["criteria"]["method"]["k"] == 5
    bad = CliRunner().invoke(cli, ["evaluate-images", str(sample_root), "-e", "nope", "-q"])
    assert bad.exit_code == 2 and "unknown image encoder 'nope'" in bad.output


def test_evaluate_images_cache_follows_the_photos_and_device_auto_works(
    sample_root: Path, tmp_path: Path
) -> None:
    """The feature cache of one split is replaced for another (it was refused, asking for an --overwrite the
    command lacks); ``--device auto`` resolves like everywhere else (it was a torch traceback)."""
    base = _evaluate_pixels(sample_root, "--cache-dir", str(tmp_path))
    for split in ("test", "val"):
        res = CliRunner().invoke(cli, [*base, "--split", split, "--device", "auto", "--json", "-q"])
        assert res.exit_code == 0, res.output
        assert json.loads(res.output)["results"]


def test_lift_without_chance_is_null_not_infinity() -> None:
    """No candidate shares a label: chance 0, and ``lift`` is None (JSON null; ``Infinity`` is no JSON)."""
    import json

    from toolkit.evaluation.image_retrieval import precision_at_k

    vectors = np.eye(4, dtype=np.float32) + 0.1
    out = precision_at_k(vectors, [{"a"}, {"b"}, {"c"}, {"d"}], k=2)
    assert out["chance"] == 0 and out["lift"] is None
    json.dumps(out, allow_nan=False)


def test_evaluate_images_refuses_a_criterion_no_recipe_has(sample_root: Path) -> None:
    """``--criterion nosuch`` printed ``0.0 / chance 0.0`` and exited 0."""
    res = CliRunner().invoke(cli, [*_evaluate_pixels(sample_root), "--criterion", "dish|nosuch", "-q"])
    assert res.exit_code == 2, res.output
    (line,) = res.stderr.splitlines()
    assert line.startswith("Error: criterion 'dish|nosuch': no recipe of the heldout photos of ")
    assert line.endswith("has a nosuch: tag (tag prefixes found: dish, main, method)"), line


def test_evaluate_images_refuses_two_encoders_under_one_label(sample_root: Path) -> None:
    """``-e a=pixels -e a=resnet18:random`` gave two rows labelled ``a``."""
    args = ["evaluate-images", str(sample_root), "-e", "a=pixels", "-e", "a=resnet18:random", "-q"]
    res = CliRunner().invoke(cli, args)
    assert res.exit_code == 2, res.output
    assert "Error: encoder label 'a' is given to more than one -e; give each its own LABEL=" in res.stderr
    same = CliRunner().invoke(
        cli, ["evaluate-images", str(sample_root), "-e", "pixels", "-e", "pixels", "-q"]
    )
    assert same.exit_code == 2 and "encoder label 'pixels' is given to more than one -e" in same.stderr


def test_evaluate_images_reports_the_image_size_it_applied(sample_root: Path) -> None:
    """``image_size`` was null in the JSON for the pixels encoder although --image-size 8 was applied."""
    res = CliRunner().invoke(cli, [*_evaluate_pixels(sample_root, "--split", "test"), "--json", "-q"])
    assert res.exit_code == 0, res.output
    (row,) = json.loads(res.stdout)["results"]
    assert row["image_size"] == 8 and row["dim"] == 8 * 8 * 3


def test_queries_without_a_label_are_left_out() -> None:
    """An unlabelled photo has nothing relevant to find: it scored 0 against a chance of 0, pulling both
    towards 0 by the share of unlabelled photos (as graded precision leaves such queries out). It still
    serves as a (never relevant) neighbour of the others."""
    angles = [0.0, 0.02, 0.04, 0.03, np.pi / 2, np.pi / 2 - 0.02]
    x = np.array([[np.cos(a), np.sin(a)] for a in angles], np.float32)
    labels: list[set[str]] = [{"a"}, {"a"}, {"a"}, set(), set(), set()]
    out = precision_at_k(x, labels, k=1)
    # nearest neighbours: 0 -> 1, 1 -> 3 (unlabelled: not relevant), 2 -> 3 (not relevant)
    assert out["queries"] == 3
    assert out["precision"] == pytest.approx(1 / 3)
    assert out["chance"] == pytest.approx(2 / 5)
    with pytest.raises(ValueError, match="no item has a label"):
        precision_at_k(x, [set()] * 6, k=1)


def test_the_encoder_message_is_logged_once(sample_root: Path, tmp_path: Path, caplog) -> None:
    """What an encoder chose (here ``weights=auto``: which ImageNet weights) was logged twice, by
    ``create_encoder`` and again by the evaluation."""
    from tests.logcapture import captured_log

    with captured_log(caplog, "toolkit"):
        evaluate_image_encoders(
            sample_root, [EncoderSpec.parse("resnet18")], split="test", image_size=16, cache_dir=tmp_path
        )
    # one record can reach caplog's handler twice (on "toolkit" and, propagated, on the root logger)
    notes = {id(r) for r in caplog.records if r.getMessage().startswith("weights=auto:")}
    assert len(notes) == 1, caplog.messages
