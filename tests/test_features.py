"""Feature extraction: bad photos become rejects, runs resume bit-for-bit, stale output is refused."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from PIL import Image

from toolkit.image import features
from toolkit.image.encoders import create_encoder
from toolkit.image.features import PARTIAL_DIR, FeatureStateError, extract_features
from toolkit.image.loading import load_image
from toolkit.rejects import RejectsWriter, read_rejects
from toolkit.vectorset import load_vector_set


def _write_photos(directory: Path, n: int, seed: int = 0) -> list[Path]:
    rng = np.random.default_rng(seed)
    directory.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(n):
        h, w = int(rng.integers(30, 70)), int(rng.integers(30, 90))
        img = Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8))
        path = directory / (f"p{i:03d}.jpg" if i % 2 else f"p{i:03d}.png")
        img.save(path)
        paths.append(path)
    return paths


def _bad_files(directory: Path) -> dict[str, Path]:
    good = directory / "p000.png"
    (directory / "empty.jpg").write_bytes(b"")
    (directory / "garbage.jpg").write_bytes(b"\xff\xd8 not really a jpeg" * 20)
    (directory / "cut.png").write_bytes(good.read_bytes()[:200])
    return {
        "empty": directory / "empty.jpg",
        "garbage": directory / "garbage.jpg",
        "cut": directory / "cut.png",
        "missing": directory / "missing.jpg",
    }


@pytest.fixture
def dataset(tmp_path: Path) -> tuple[list[tuple[str, Path]], dict[str, str]]:
    """22 items: 18 good photos with 4 bad ones spread between them; returns (items, bad id -> kind)."""
    photos = _write_photos(tmp_path / "photos", 18)
    bad = _bad_files(tmp_path / "photos")
    items: list[tuple[str, Path]] = []
    bad_ids: dict[str, str] = {}
    kinds = iter(bad)
    for i, p in enumerate(photos):
        items.append((f"r{i}:1", p))
        if i % 5 == 2:
            kind = next(kinds)
            items.append((f"r{i}:2", bad[kind]))
            bad_ids[f"r{i}:2"] = kind
    assert len(bad_ids) == 4
    return items, bad_ids


def test_good_photos_are_encoded_in_order_and_bad_ones_rejected(
    dataset: tuple[list[tuple[str, Path]], dict[str, str]], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    items, bad_ids = dataset
    monkeypatch.setattr(features, "COMPACT_CHUNK", 5)  # compaction crosses chunk boundaries
    enc = create_encoder("pixels")
    out = tmp_path / "out"
    with RejectsWriter(tmp_path / "rejects.jsonl") as rw:
        res = extract_features(items, enc, out, batch_size=4, num_workers=0, rejects=rw, progress=False)
    assert res.complete and (res.total, res.encoded, res.rejected, res.dim) == (22, 18, 4, 768)
    assert not (out / PARTIAL_DIR).exists()

    vs = load_vector_set(out)
    good = [(sid, p) for sid, p in items if sid not in bad_ids]
    assert vs.ids == [sid for sid, _ in good]
    expected = enc.encode_batch(torch.stack([enc.preprocess(load_image(p, draft_size=16)) for _, p in good]))
    assert np.array_equal(np.asarray(vs.vectors), expected)
    assert vs.meta["kind"] == "image" and vs.meta["encoder"] == "pixels" and vs.meta["dim"] == 768
    assert vs.meta["encoder_fingerprint"] == enc.fingerprint and vs.meta["rejected"] == 4

    rejects = {r.record: r for r in read_rejects(tmp_path / "rejects.jsonl")}
    assert set(rejects) == set(bad_ids) and all(r.stage == "image" for r in rejects.values())
    words = {"empty": "empty file", "garbage": "not an image", "cut": "truncated", "missing": "not found"}
    for sid, kind in bad_ids.items():
        assert words[kind] in rejects[sid].reason, rejects[sid]


def test_interrupted_run_resumes_to_the_same_bits(
    dataset: tuple[list[tuple[str, Path]], dict[str, str]], tmp_path: Path
) -> None:
    items, bad_ids = dataset
    enc = create_encoder("resnet18", weights="random", image_size=32)
    full = extract_features(items, enc, tmp_path / "full", batch_size=4, num_workers=2, progress=False)
    assert full.complete and full.encoded == 18

    out = tmp_path / "resumed"
    rejects_path = tmp_path / "resumed_rejects.jsonl"

    def crash_after_two(done: int, total: int) -> None:
        if done >= 8:
            raise KeyboardInterrupt("simulated interruption")

    with RejectsWriter(rejects_path) as rw, pytest.raises(KeyboardInterrupt):
        extract_features(items, enc, out, 4, 0, rejects=rw, progress=False, on_batch=crash_after_two)
    progress = json.loads((out / PARTIAL_DIR / "progress.json").read_text())
    assert progress["done"] == 8 and not (out / "vectors.npy").exists()

    with RejectsWriter(tmp_path / "part.jsonl") as rw:
        part = extract_features(items, enc, out, 4, 0, rejects=rw, progress=False, max_batches=1)
    assert not part.complete and part.resumed_from == 8
    with RejectsWriter(tmp_path / "done.jsonl") as rw:
        done = extract_features(items, enc, out, 4, 0, rejects=rw, progress=False)
    assert done.complete and done.resumed_from == 12 and done.encoded == 18 and done.rejected == 4
    with RejectsWriter(tmp_path / "again.jsonl") as rw:
        again = extract_features(items, enc, out, 4, 0, rejects=rw, progress=False)
    assert again.already_done and again.rejected == 4

    a, b = load_vector_set(tmp_path / "full"), load_vector_set(out)
    assert a.ids == b.ids
    assert np.asarray(a.vectors).tobytes() == np.asarray(b.vectors).tobytes()
    assert a.meta == b.meta
    # every run reports every reject of the rows it covers, each once: its own and those of the runs it resumed
    rows = {sid: i for i, (sid, _) in enumerate(items)}
    for name, upto in [("resumed_rejects", 8), ("part", 12), ("done", 22), ("again", 22)]:
        got = [r.record for r in read_rejects(tmp_path / f"{name}.jsonl")]
        assert got == sorted((sid for sid in bad_ids if rows[sid] < upto), key=rows.get), name


def test_other_encoder_or_items_are_refused_unless_overwrite(
    dataset: tuple[list[tuple[str, Path]], dict[str, str]], tmp_path: Path
) -> None:
    items, _ = dataset
    a = create_encoder("pixels", image_size=8)
    b = create_encoder("pixels", image_size=4)
    out = tmp_path / "out"
    assert not extract_features(items, a, out, 4, 0, progress=False, max_batches=1).complete
    with pytest.raises(FeatureStateError, match="unfinished run.*fingerprint.*overwrite"):
        extract_features(items, b, out, 4, 0, progress=False)
    with pytest.raises(FeatureStateError, match="item list"):
        extract_features(items[:-1], a, out, 4, 0, progress=False)

    res = extract_features(items, b, out, 4, 0, progress=False, overwrite=True)
    assert (
        res.complete
        and res.resumed_from == 0
        and load_vector_set(out).meta["encoder_fingerprint"] == b.fingerprint
    )
    again = extract_features(items, b, out, 4, 0, progress=False)
    assert again.already_done and again.encoded == res.encoded and again.rejected == res.rejected
    with pytest.raises(FeatureStateError, match="vector set"):
        extract_features(items, a, out, 4, 0, progress=False)


def test_a_partial_state_cut_short_is_refused_or_started_again(
    dataset: tuple[list[tuple[str, Path]], dict[str, str]], tmp_path: Path
) -> None:
    """A run's features file cut short (a full disk, a copy interrupted) is never zero-filled and resumed."""
    import os

    items, _ = dataset
    enc = create_encoder("pixels", image_size=8)
    full = extract_features(items, enc, tmp_path / "full", 4, 0, progress=False)
    out = tmp_path / "out"
    assert not extract_features(items, enc, out, 4, 0, progress=False, max_batches=3).complete
    partial = out / PARTIAL_DIR / "features.npy"
    os.truncate(partial, 200)
    with pytest.raises(FeatureStateError, match="partial state .* is damaged.*overwrite"):
        extract_features(items, enc, out, 4, 0, progress=False)
    assert partial.stat().st_size == 200  # not zero-extended by the look
    res = extract_features(items, enc, out, 4, 0, progress=False, replace_other=True)  # what jrs build does
    assert res.complete and res.resumed_from == 0
    a, b = load_vector_set(tmp_path / "full"), load_vector_set(out)
    assert res.encoded == full.encoded and a.ids == b.ids
    assert np.asarray(a.vectors).tobytes() == np.asarray(b.vectors).tobytes()


@pytest.mark.parametrize("damage", ["vectors", "ids", "meta"])
def test_a_damaged_finished_set_is_refused_or_encoded_again(
    dataset: tuple[list[tuple[str, Path]], dict[str, str]], tmp_path: Path, damage: str
) -> None:
    """A finished set whose files were cut short is not reused: refused, or encoded again by a build."""
    items, _ = dataset
    enc = create_encoder("pixels", image_size=8)
    out = tmp_path / "out"
    extract_features(items, enc, out, 4, 0, progress=False)
    before = load_vector_set(out)
    ids, vectors = list(before.ids), np.asarray(before.vectors).copy()
    name = {"vectors": "vectors.npy", "ids": "ids.txt", "meta": "meta.json"}[damage]
    (out / name).write_bytes((out / name).read_bytes()[:60])
    with pytest.raises(FeatureStateError, match=rf"damaged vector set .*{name}.*overwrite"):
        extract_features(items, enc, out, 4, 0, progress=False)
    res = extract_features(items, enc, out, 4, 0, progress=False, replace_other=True)
    assert res.complete and not res.already_done and res.resumed_from == 0
    after = load_vector_set(out)
    assert list(after.ids) == ids and np.asarray(after.vectors).tobytes() == vectors.tobytes()
    assert extract_features(items, enc, out, 4, 0, progress=False).already_done


def test_a_finished_set_that_cannot_be_read_just_now_is_not_deleted(
    dataset: tuple[list[tuple[str, Path]], dict[str, str]], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An I/O error, a permission refused, too many open files or no memory for the map says nothing of the
    set: before, it was called damaged, and a build (``replace_other``) deleted a finished set of every photo's
    features and encoded them all again."""
    import errno

    items, _ = dataset
    enc = create_encoder("pixels", image_size=8)
    out = tmp_path / "out"
    extract_features(items, enc, out, 4, 0, progress=False)
    real_load = np.load

    def busy(path, *args, **kwargs):
        if Path(path) == out / "vectors.npy":
            raise OSError(errno.EMFILE, "Too many open files")
        return real_load(path, *args, **kwargs)

    monkeypatch.setattr(np, "load", busy)
    with pytest.raises(OSError, match="Too many open files"):
        extract_features(items, enc, out, 4, 0, progress=False, replace_other=True)
    monkeypatch.setattr(np, "load", real_load)
    assert (out / "vectors.npy").is_file()
    assert extract_features(items, enc, out, 4, 0, progress=False).already_done


def test_a_full_disk_is_an_error_naming_the_file_not_a_crash(
    dataset: tuple[list[tuple[str, Path]], dict[str, str]], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The features file is allocated before any write through its map (sparse, a full disk would be SIGBUS)."""
    import errno
    import os

    items, _ = dataset
    enc = create_encoder("pixels", image_size=8)
    out = tmp_path / "out"
    real, calls = os.posix_fallocate, []

    def full(fd: int, offset: int, size: int) -> None:
        calls.append(size)
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "posix_fallocate", full)
    with pytest.raises(OSError, match="No space left on device") as caught:
        extract_features(items, enc, out, 4, 0, progress=False)
    assert calls and caught.value.filename == str(out / PARTIAL_DIR / "features.npy")
    monkeypatch.setattr(os, "posix_fallocate", real)
    res = extract_features(items, enc, out, 4, 0, progress=False)  # room again: a clean run
    assert res.complete and res.resumed_from == 0


def test_a_set_older_than_its_photos_is_refused_or_replaced(
    dataset: tuple[list[tuple[str, Path]], dict[str, str]], tmp_path: Path
) -> None:
    """Same ids and paths, new pictures (a photo edited or replaced in place): the set is not reused."""
    import os

    items, _ = dataset
    enc = create_encoder("pixels", image_size=8)
    out = tmp_path / "out"
    first = extract_features(items, enc, out, 4, 0, progress=False)
    before = np.asarray(load_vector_set(out).vectors).copy()
    edited = items[0][1]
    Image.new("RGB", (20, 20), (250, 10, 10)).save(edited)  # another picture at the same path
    future = (out / "meta.json").stat().st_mtime_ns + 1  # newer than the set, older than a rewrite
    os.utime(edited, ns=(future, future))
    with pytest.raises(FeatureStateError, match=r"1 photo\(s\) that changed after they were encoded"):
        extract_features(items, enc, out, 4, 0, progress=False)
    again = extract_features(items, enc, out, 4, 0, progress=False, replace_other=True)
    assert not again.already_done and again.encoded == first.encoded
    after = load_vector_set(out).vectors
    assert not np.array_equal(after[0], before[0]) and np.array_equal(after[1:], before[1:])
    assert extract_features(items, enc, out, 4, 0, progress=False).already_done  # unchanged since: reused


def test_a_photo_replaced_by_an_older_file_is_caught(
    dataset: tuple[list[tuple[str, Path]], dict[str, str]], tmp_path: Path
) -> None:
    """``cp -p`` / ``rsync -a`` put another picture at a photo's path with an mtime older than the set: the
    recorded source (size, mtime) tells it, where a comparison with the set's own write time cannot."""
    import os
    import shutil

    items, bad_ids = dataset
    enc = create_encoder("pixels", image_size=8)
    out = tmp_path / "out"
    extract_features(items, enc, out, 4, 0, progress=False)
    before = np.asarray(load_vector_set(out).vectors).copy()
    target = items[2][1]
    donor = tmp_path / "donor.png"
    Image.new("RGB", (33, 21), (10, 200, 30)).save(donor)
    old = (out / "meta.json").stat().st_mtime_ns - 10**9
    os.utime(donor, ns=(old, old))
    shutil.copy2(donor, target)  # keeps the donor's old mtime
    assert target.stat().st_mtime_ns < (out / "meta.json").stat().st_mtime_ns
    with pytest.raises(FeatureStateError, match=rf"1 photo\(s\) that changed .*first: {target}"):
        extract_features(items, enc, out, 4, 0, progress=False)
    again = extract_features(items, enc, out, 4, 0, progress=False, replace_other=True)
    assert not again.already_done
    after = load_vector_set(out)
    row = after.ids.index(items[2][0])
    assert not np.array_equal(after.vectors[row], before[row])
    assert bad_ids  # rejected rows sit between the recorded ones: none of them counts as changed
    assert extract_features(items, enc, out, 4, 0, progress=False).already_done


def test_all_rejected_gives_an_empty_vector_set(tmp_path: Path) -> None:
    bad = _bad_files(_write_photos(tmp_path / "photos", 1)[0].parent)
    items = [(f"r{i}:1", p) for i, p in enumerate(bad.values())]
    res = extract_features(items, create_encoder("pixels"), tmp_path / "out", 2, 0, progress=False)
    assert res.complete and res.encoded == 0 and res.rejected == 4
    vs = load_vector_set(tmp_path / "out")
    assert vs.ids == [] and vs.vectors.shape == (0, 768)


def test_duplicate_step_ids_are_refused(tmp_path: Path) -> None:
    p = _write_photos(tmp_path, 1)[0]
    with pytest.raises(ValueError, match="duplicate step id 'r1:1'"):
        extract_features([("r1:1", p), ("r1:1", p)], create_encoder("pixels"), tmp_path / "o", progress=False)


class _NanOnDark:
    """A plug-in style encoder whose output is NaN for dark photos (a broken model)."""

    name, dim, fingerprint = "nan-on-dark", 1, "nan-on-dark-v1"

    def preprocess(self, img: Image.Image) -> torch.Tensor:
        return torch.from_numpy(np.asarray(img, np.float32).transpose(2, 0, 1).copy())

    def encode_batch(self, batch: torch.Tensor) -> np.ndarray:
        m = batch.mean(dim=(1, 2, 3)).numpy()
        return np.where(m < 10, np.nan, m).astype(np.float32)[:, None]


def test_non_finite_features_are_rejected_not_stored(tmp_path: Path) -> None:
    Image.new("RGB", (8, 8), (0, 0, 0)).save(tmp_path / "dark.png")
    Image.new("RGB", (8, 8), (200, 200, 200)).save(tmp_path / "light.png")
    items = [("r1:1", tmp_path / "dark.png"), ("r1:2", tmp_path / "light.png")]
    with RejectsWriter(tmp_path / "rej.jsonl") as rw:
        res = extract_features(items, _NanOnDark(), tmp_path / "out", 2, 0, rejects=rw, progress=False)
    assert (res.encoded, res.rejected) == (1, 1)
    assert load_vector_set(tmp_path / "out").ids == ["r1:2"]
    assert "non-finite" in next(read_rejects(tmp_path / "rej.jsonl")).reason


def test_cli_embed_images_and_encoders(tmp_path: Path) -> None:
    from toolkit.cli.image import embed_images_cmd, encoders_cmd

    root = tmp_path / "data"
    photos = _write_photos(root / "img", 3)
    (root / "img" / "broken.jpg").write_bytes(b"junk")
    recipes = [
        {
            "recipe_id": "r1",
            "title": "卵焼き",
            "steps": [
                {"position": 1, "text": "卵を割る", "image": "img/p000.png"},
                {"position": 2, "text": "混ぜる", "image": "img/p001.jpg"},
                {"position": 3, "text": "焼く"},
            ],
        },
        {
            "recipe_id": "r2",
            "title": "味噌汁",
            "steps": [
                {"position": 1, "text": "出汁をとる", "image": "../outside.jpg"},
                {"position": 2, "text": "味噌を溶く", "image": "img/broken.jpg"},
                {"position": 3, "text": "盛る", "image": f"img/{photos[2].name}"},
            ],
        },
    ]
    (root / "recipes.jsonl").write_text("\n".join(json.dumps(r, ensure_ascii=False) for r in recipes) + "\n")
    out, rejects = tmp_path / "vec", tmp_path / "rejects.jsonl"
    args = [str(root), str(out), "--encoder", "pixels", "--workers", "0", "--rejects", str(rejects), "--json"]
    args.append("--no-malloc-tuning")  # process-wide: leave the test process alone
    result = CliRunner().invoke(embed_images_cmd, args)
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["complete"] and report["encoded"] == 3 and report["encoder"] == "pixels"
    assert load_vector_set(out).ids == ["r1:1", "r1:2", "r2:3"]
    found = {r.record: r.reason for r in read_rejects(rejects)}
    assert set(found) == {"r2:1", "r2:2"}
    assert "unsafe image path" in found["r2:1"] and "not an image" in found["r2:2"]

    wrong = CliRunner().invoke(
        embed_images_cmd, [str(root), str(out), "--encoder", "pixels", "--image-size", "4"]
    )
    assert wrong.exit_code != 0 and "overwrite" in wrong.output

    listing = CliRunner().invoke(encoders_cmd, ["--json"])
    assert listing.exit_code == 0
    names = {e["name"] for e in json.loads(listing.output)["encoders"]}
    assert {"resnet50", "resnet18", "efficientnet-lite0", "pixels"} <= names
    assert CliRunner().invoke(embed_images_cmd, ["--help"]).exit_code == 0


def test_stack_matches_torch_stack_and_falls_back_where_numpy_cannot() -> None:
    rng = torch.Generator().manual_seed(0)
    xs = [torch.randn(3, 5, 7, generator=rng) for _ in range(4)]
    got = features._stack(xs)
    assert got.dtype == torch.float32 and got.is_contiguous() and torch.equal(got, torch.stack(xs))
    got[0, 0, 0, 0] = 123.0  # a copy, not a view of the first photo
    assert xs[0][0, 0, 0] != 123.0
    strided = [x.transpose(1, 2) for x in xs]  # non-contiguous inputs stack like torch.stack
    assert torch.equal(features._stack(strided), torch.stack(strided))
    bf16 = [x.to(torch.bfloat16) for x in xs]  # numpy has no bfloat16: torch.stack does it
    assert torch.equal(features._stack(bf16), torch.stack(bf16))
    with pytest.raises(RuntimeError):  # mismatched shapes fail as before
        features._stack([torch.zeros(3, 4, 4), torch.zeros(3, 5, 5)])
