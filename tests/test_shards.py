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
from toolkit.image.features import PHOTO_REJECTS, extract_features
from toolkit.rejects import RejectsWriter
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
    # the rejected photo's reason too, numbered as the unsharded run numbers it (it had none: 2 shards kept
    # theirs under their own row numbers, the merge wrote none)
    assert merged.photo_rejects == tmp_path / "merged" / PHOTO_REJECTS
    whole_rejects = (tmp_path / "whole" / PHOTO_REJECTS).read_text(encoding="utf-8")
    assert (tmp_path / "merged" / PHOTO_REJECTS).read_text(encoding="utf-8") == whole_rejects
    assert json.loads(whole_rejects)["row"] == 5
    # and a run that finds the merged set done reports it again, as it does for the unsharded set
    with RejectsWriter(None) as rejects:
        again = extract_features(
            photos, encoder, tmp_path / "merged", batch_size=1, progress=False, rejects=rejects
        )
    assert again.already_done and rejects.count == 1


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


@pytest.fixture(scope="module")
def two_shards(photos, tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    return _embed_shards(photos, tmp_path_factory.mktemp("two"), 2, create_encoder("pixels"))


def _files(d: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(d.iterdir()) if p.is_file()}


def test_merge_refuses_to_write_into_a_shard_or_a_directory_in_use(two_shards, tmp_path: Path) -> None:
    """OUT_DIR one of the shards overwrote it (and deleted its sources.txt); a vector set or any directory
    with files was written into: refused, and nothing in them changes."""
    from toolkit.cli.main import cli

    before = _files(two_shards[0])
    runner = CliRunner()
    for out in (two_shards[0], two_shards[0] / ".." / two_shards[0].name):
        for extra in ([], ["--overwrite"]):
            res = runner.invoke(cli, ["merge-vectors", str(out), *map(str, two_shards), *extra])
            assert res.exit_code == 2 and res.output.count("\n") == 1, res.output
            assert "is the shard" in res.output and "Traceback" not in res.output
    assert _files(two_shards[0]) == before

    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("mine", encoding="utf-8")
    res = runner.invoke(cli, ["merge-vectors", str(mine), *map(str, two_shards)])
    assert res.exit_code == 2 and f"Error: OUT_DIR {mine} is not empty; pass --overwrite" in res.output
    assert _files(mine) == {"notes.txt": b"mine"}
    res = runner.invoke(cli, ["merge-vectors", str(mine), *map(str, two_shards), "--overwrite"])
    assert res.exit_code == 0, res.output
    assert (mine / "notes.txt").read_text(encoding="utf-8") == "mine" and (mine / "vectors.npy").is_file()

    res = runner.invoke(cli, ["merge-vectors", str(mine), *map(str, two_shards)])  # now a vector set
    assert res.exit_code == 2 and "holds a vector set; pass --overwrite" in res.output


def test_merge_overwrite_replaces_every_file_of_another_set(two_shards, tmp_path: Path) -> None:
    """A copy of a text vector set merged over with --overwrite kept its token files (and a shard's copy its
    shard.json): a set of two kinds. Now every file of the old set goes; other files stay."""
    text = tmp_path / "text"
    shutil.copytree(two_shards[0], text)  # a shard copy: shard.json, positions.npy ...
    np.save(text / "token_ids.npy", np.arange(3))  # ... and a text set's token bags
    np.save(text / "token_offsets.npy", np.array([0, 3]))
    (text / "rejects.jsonl").write_text(
        '{"record": "r:1", "stage": "text", "reason": "x"}\n', encoding="utf-8"
    )
    (text / "README").write_text("mine", encoding="utf-8")
    with pytest.raises(ShardMergeError, match="holds a vector set; pass --overwrite"):
        merge_vector_sets(two_shards, text)
    merge_vector_sets(two_shards, text, overwrite=True)
    fresh = merge_vector_sets(two_shards, tmp_path / "fresh")
    assert sorted(_files(text)) == sorted([*_files(tmp_path / "fresh"), "README"])
    assert fresh.photo_rejects is not None and (text / PHOTO_REJECTS).is_file()
    assert load_vector_set(text).ids == load_vector_set(tmp_path / "fresh").ids


def test_damaged_or_old_shards_are_named(two_shards, photos, tmp_path: Path) -> None:
    """shard.json = ``{`` was a JSONDecodeError traceback; a shard whose rejects do not say where they are in
    the item list (written before shards recorded it) would merge into a set without its rejects."""
    from toolkit.cli.main import cli

    broken = tmp_path / "broken"
    shutil.copytree(two_shards[0], broken)
    (broken / "shard.json").write_text("{", encoding="utf-8")
    res = CliRunner().invoke(cli, ["merge-vectors", str(tmp_path / "m"), str(broken), str(two_shards[1])])
    assert res.exit_code == 2 and res.output.count("\n") == 1 and "Traceback" not in res.output
    assert res.output.startswith(f"Error: {broken / 'shard.json'} is damaged (not valid JSON"), res.output
    assert not (tmp_path / "m").exists()

    old = [tmp_path / "old1", tmp_path / "old2"]
    for src, dst in zip(two_shards, old, strict=True):
        shutil.copytree(src, dst)
    holder = next(d for d in old if (d / PHOTO_REJECTS).is_file())
    lines = [json.loads(line) for line in (holder / PHOTO_REJECTS).read_text(encoding="utf-8").splitlines()]
    (holder / PHOTO_REJECTS).write_text(
        "".join(json.dumps({k: v for k, v in r.items() if k != "position"}) + "\n" for r in lines)
    )
    with pytest.raises(
        ShardMergeError, match=f"{holder}: 1 of its photos were rejected.*rerun `jrs embed-images"
    ):
        merge_vector_sets(old, tmp_path / "m")
    # the rerun it asks for finds the photos done and records where the reject is
    index = json.loads((holder / "shard.json").read_text(encoding="utf-8"))["index"]
    rerun = extract_shard_features(
        photos, parse_shard(f"{index}/2"), create_encoder("pixels"), holder, progress=False
    )
    assert rerun.already_done
    assert merge_vector_sets(old, tmp_path / "m").rejected == 1
