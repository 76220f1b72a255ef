"""--shard I/N and merge-vectors: N shards merged are row for row one unsharded run; bad sets are refused."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from toolkit.data.sample import generate_sample
from toolkit.errors import ConfigError
from toolkit.image.encoders import create_encoder
from toolkit.image.features import extract_features
from toolkit.shards import (
    ShardMergeError,
    extract_shard_features,
    merge_vector_sets,
    parse_shard,
    select_shard,
    shard_of,
)
from toolkit.vectorset import load_vector_set

SIZE = 32


@pytest.fixture(scope="module")
def photos(tmp_path_factory: pytest.TempPathFactory) -> list[tuple[str, Path]]:
    """``(step_id, path)`` of every drawn step photo of a small sample dataset, plus one broken photo."""
    root = tmp_path_factory.mktemp("shard-data")
    generate_sample(root, 10, seed=3, image_size=SIZE)
    items = []
    for line in (root / "recipes.jsonl").read_text(encoding="utf-8").splitlines():
        recipe = json.loads(line)
        for step in recipe["steps"]:
            if step.get("image"):
                items.append((f"{recipe['recipe_id']}:{step['position']}", root / step["image"]))
    broken = root / "broken.jpg"
    broken.write_bytes(b"\xff\xd8 not a jpeg")
    items.insert(5, ("zz:1", broken))
    assert len(items) > 20
    return items


def _encoder():
    return create_encoder("resnet18", weights="random", image_size=SIZE, seed=0)


def _embed_shards(items, out: Path, n: int, encoder) -> list[Path]:
    dirs = []
    for i in range(1, n + 1):
        d = out / f"shard{i}"
        # batch_size 1: a CNN's float sums may differ in the last bit between batch shapes
        result = extract_shard_features(
            items, parse_shard(f"{i}/{n}"), encoder, d, batch_size=1, progress=False
        )
        assert result.complete
        dirs.append(d)
    return dirs


def test_three_shards_merged_equal_one_unsharded_run(photos, tmp_path: Path) -> None:
    encoder = _encoder()
    whole = extract_features(photos, encoder, tmp_path / "whole", batch_size=1, progress=False)
    assert whole.complete and whole.rejected == 1
    dirs = _embed_shards(photos, tmp_path, 3, encoder)
    sizes = [len(load_vector_set(d).ids) for d in dirs]
    assert all(s > 0 for s in sizes) and sum(sizes) == whole.encoded

    merged = merge_vector_sets(list(reversed(dirs)), tmp_path / "merged")  # any order
    a, b = load_vector_set(tmp_path / "whole"), load_vector_set(tmp_path / "merged")
    assert b.ids == a.ids
    assert np.array_equal(np.asarray(b.vectors), np.asarray(a.vectors))
    assert b.meta == a.meta
    assert (merged.rows, merged.items, merged.rejected) == (len(a.ids), len(photos), 1)
    # both know which photo file each row was encoded from (the rejected photo has no row)
    by_id = {sid: str(path) for sid, path in photos}
    assert a.sources is not None and [s.split("\t", 2)[2] for s in a.sources] == [by_id[i] for i in a.ids]
    assert b.sources is not None and list(b.sources) == list(a.sources)


def test_shards_run_on_other_backends_merge_as_mixed(photos, tmp_path: Path) -> None:
    """One shard encoded on another backend: the merged set says "mixed" and lists them (it named the first)."""
    dirs = _embed_shards(photos, tmp_path, 2, _encoder())
    meta_path = dirs[1] / "meta.json"
    meta = json.loads(meta_path.read_text(encoding="utf-8"))
    meta_path.write_text(json.dumps({**meta, "encoder_backend": "openvino", "encoder_precision": "f32"}))
    merge_vector_sets(dirs, tmp_path / "merged")
    out = load_vector_set(tmp_path / "merged").meta
    assert out["encoder_backend"] == "mixed" and len(out["encoder_backends"]) == 2
    assert "openvino f32" in out["encoder_backends"]


def test_shard_choice_is_stable_and_covers_every_item(photos) -> None:
    # fixed values: BLAKE2b of the id, the same in every process and on every machine
    assert [shard_of(f"r{i}:1", 3) for i in range(6)] == [shard_of(f"r{i}:1", 3) for i in range(6)]
    assert {shard_of("r000001:1", 4), shard_of("r000001:2", 4)} <= {1, 2, 3, 4}
    seen: list[int] = []
    for i in (1, 2, 3):
        part, positions = select_shard(photos, parse_shard(f"{i}/3"))
        assert [photos[p] for p in positions] == part
        assert all(shard_of(sid, 3) == i for sid, _ in part)
        seen += positions.tolist()
    assert sorted(seen) == list(range(len(photos)))
    assert select_shard(photos, parse_shard("1/1"))[0] == photos


@pytest.mark.parametrize("spec", ["0/3", "4/3", "1/0", "3", "a/b", "1/3/2"])
def test_bad_shard_specs_are_refused(spec: str) -> None:
    with pytest.raises(ConfigError, match="--shard"):
        parse_shard(spec)


def test_incomplete_mixed_or_overlapping_shards_are_refused(photos, tmp_path: Path) -> None:
    encoder = _encoder()
    dirs = _embed_shards(photos, tmp_path / "three", 3, encoder)
    with pytest.raises(ShardMergeError, match="missing shard"):
        merge_vector_sets(dirs[:2], tmp_path / "m1")
    with pytest.raises(ShardMergeError, match="also given"):
        merge_vector_sets([*dirs, dirs[1]], tmp_path / "m2")

    other = tmp_path / "pixels2"
    extract_shard_features(photos, parse_shard("2/3"), create_encoder("pixels"), other, progress=False)
    with pytest.raises(ShardMergeError, match="another encoder"):
        merge_vector_sets([dirs[0], other, dirs[2]], tmp_path / "m3")

    two = _embed_shards(photos, tmp_path / "two", 2, encoder)
    with pytest.raises(ShardMergeError, match="count"):
        merge_vector_sets([*dirs, two[0]], tmp_path / "m4")

    fewer = tmp_path / "fewer"
    extract_shard_features(photos[:-3], parse_shard("2/3"), encoder, fewer, batch_size=1, progress=False)
    with pytest.raises(ShardMergeError, match="item list"):
        merge_vector_sets([dirs[0], fewer, dirs[2]], tmp_path / "m5")

    forged = tmp_path / "forged"
    shutil.copytree(dirs[1], forged)
    (forged / "shard.json").write_text(
        (forged / "shard.json").read_text().replace('"index": 2', '"index": 3'), encoding="utf-8"
    )
    with pytest.raises(ShardMergeError, match="does not belong|overlap"):
        merge_vector_sets([dirs[0], forged, dirs[1]], tmp_path / "m6")

    with pytest.raises(ShardMergeError, match="not a shard"):
        merge_vector_sets([dirs[0], tmp_path / "three"], tmp_path / "m7")
    assert not (tmp_path / "m1" / "vectors.npy").exists()


def test_cli_merge_vectors(photos, tmp_path: Path) -> None:
    from toolkit.cli.vectors import merge_vectors_cmd

    dirs = _embed_shards(photos, tmp_path, 2, create_encoder("pixels"))
    out = tmp_path / "merged"
    result = CliRunner().invoke(merge_vectors_cmd, [str(out), *map(str, dirs), "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["shards"] == 2 and report["rows"] == len(load_vector_set(out).ids) == len(photos) - 1
    bad = CliRunner().invoke(merge_vectors_cmd, [str(tmp_path / "m2"), str(dirs[0])])
    assert bad.exit_code == 2 and "missing shard(s) 2/2" in bad.output


def test_cli_embed_images_shards_merge_to_the_unsharded_set(tmp_path: Path) -> None:
    from toolkit.cli.main import cli

    root = tmp_path / "data"
    generate_sample(root, 6, seed=1, image_size=SIZE)
    base = ["embed-images", str(root), "--encoder", "pixels", "--workers", "0", "--no-malloc-tuning"]
    runner = CliRunner()
    assert runner.invoke(cli, [*base[:2], str(tmp_path / "whole"), *base[2:]]).exit_code == 0
    for i in (1, 2):
        r = runner.invoke(cli, [*base[:2], str(tmp_path / f"s{i}"), *base[2:], "--shard", f"{i}/2"])
        assert r.exit_code == 0, r.output
    r = runner.invoke(cli, ["merge-vectors", str(tmp_path / "m"), str(tmp_path / "s1"), str(tmp_path / "s2")])
    assert r.exit_code == 0, r.output
    a, b = load_vector_set(tmp_path / "whole"), load_vector_set(tmp_path / "m")
    assert (
        a.ids == b.ids and np.array_equal(np.asarray(a.vectors), np.asarray(b.vectors)) and a.meta == b.meta
    )
    bad = runner.invoke(cli, [*base[:2], str(tmp_path / "x"), *base[2:], "--shard", "3/2"])
    assert bad.exit_code == 2 and "1 <= I <= N" in bad.output
