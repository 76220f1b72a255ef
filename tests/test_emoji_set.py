"""The real-artwork benchmark set's writer, on a tiny package tree laid out like the npm packages."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from bench.bench_quality import QualitySet, available, gallery_steps, prepare
from bench.emoji_set import NEVER_TRAINED_SHARE, VENDORS, emoji_dir, load_concepts, write_emoji_set
from toolkit.data.jsonl import iter_recipes
from toolkit.data.splits import split_of
from toolkit.rejects import RejectsWriter

COLOURS = {"google": (200, 30, 30, 255), "twitter": (30, 200, 30, 255), "facebook": (30, 30, 200, 255)}


def _package_tree(root: Path, n: int = 30) -> Path:
    """``n`` drawable concepts, plus one flag, one concept a vendor lacks and one without a Japanese name."""
    meta, ann = [], {}
    for i in range(n + 3):
        code = f"{0x1F400 + i:x}"
        meta.append(
            {
                "unified": code.upper(),
                "image": f"{code}.png",
                "sort_order": i,
                "category": "Flags" if i == n else "Animals & Nature",
                "subcategory": f"sub{i % 4}",
                **{f"has_img_{v}": not (i == n + 1 and v == "twitter") for v in VENDORS},
            }
        )
        if i != n + 2:
            ann[chr(0x1F400 + i)] = {"default": [f"動物{i}", f"名{i}", "生き物"], "tts": [f"名{i}"]}
    for v in VENDORS:
        img = root / v / "img" / v / "64"
        img.mkdir(parents=True)
        for m in meta:
            Image.new("RGBA", (64, 64), COLOURS[v]).save(img / m["image"])
        (root / v / "emoji.json").write_text(json.dumps(meta), encoding="utf-8")
    ja = root / "cldr" / "annotations" / "ja"
    ja.mkdir(parents=True)
    (ja / "annotations.json").write_text(
        json.dumps({"annotations": {"annotations": ann}}, ensure_ascii=False), encoding="utf-8"
    )
    return root


def _recipes(root: Path) -> list:
    with RejectsWriter(None) as rejects:
        return list(iter_recipes(root, rejects))


def _tag(recipe, head: str) -> list[str]:
    return [t.partition(":")[2] for t in recipe.tags if t.startswith(head + ":")]


def test_concepts_are_the_drawable_named_ones(tmp_path: Path) -> None:
    root = _package_tree(tmp_path / "pkg")
    concepts = load_concepts(root)
    assert [c.name for c in concepts] == [f"名{i}" for i in range(30)]
    assert concepts[0].keywords == ("動物0", "生き物") and concepts[5].subcategory == "sub1"
    assert emoji_dir(root) == root and emoji_dir(tmp_path) is None


@pytest.mark.parametrize("seed", [0, 1])
def test_a_draw_holds_out_concepts_and_a_drawing_style(tmp_path: Path, seed: int) -> None:
    root = _package_tree(tmp_path / "pkg")
    train, gallery = write_emoji_set(root, tmp_path / "draw", seed)
    trained, shown = _recipes(train), _recipes(gallery)
    gallery_vendor = VENDORS[seed % 3]
    assert len(shown) == 30 and all(len(r.steps) == 1 and r.steps[0].image for r in shown)
    assert {v for r in shown for v in _tag(r, "style")} == {gallery_vendor}
    assert len(trained) == 30 - round(NEVER_TRAINED_SHARE * 30)
    for r in trained:
        assert set(_tag(r, "style")) == set(VENDORS) - {gallery_vendor}
        assert len(r.steps) == 4 and all((train / s.image).is_file() for s in r.steps)
        assert all(s.text for s in r.steps)

    # the photos are the vendor's drawing: the gallery's show its colour, the training ones never do
    def pixels_near(path: Path, colour: tuple[int, ...]) -> int:
        px = np.asarray(Image.open(path).convert("RGB"), dtype=np.int32)
        return int((np.abs(px - np.array(colour[:3])).sum(axis=2) < 60).sum())

    colour = COLOURS[gallery_vendor]
    assert all(pixels_near(gallery / r.steps[0].image, colour) > 2000 for r in shown[:5])
    assert all(pixels_near(train / s.image, colour) < 50 for r in trained[:5] for s in r.steps)
    # every gallery record names its training twin exactly when the concept has one
    twins = {t for r in shown for t in _tag(r, "twin")}
    assert twins == {r.recipe_id for r in trained}
    # the same seed writes the same collections; another seed another draw
    again = write_emoji_set(root, tmp_path / "again", seed)
    for a, b in zip((train, gallery), again, strict=True):
        assert (a / "recipes.jsonl").read_bytes() == (b / "recipes.jsonl").read_bytes()
    other = write_emoji_set(root, tmp_path / "other", seed + 2)
    assert (other[1] / "recipes.jsonl").read_bytes() != (gallery / "recipes.jsonl").read_bytes()


def test_bench_quality_reads_the_set(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = _package_tree(tmp_path / "pkg")
    dataset = QualitySet("emoji", "tiny", seed=3, gallery_recipes=20, source="emoji")
    monkeypatch.delenv("JRS_EMOJI_DIR", raising=False)
    assert available([dataset], log=lambda m: None) == ()
    monkeypatch.setenv("JRS_EMOJI_DIR", str(root))
    assert available([dataset]) == (dataset,)
    train, gallery_root = prepare(dataset, tmp_path / "work")
    g = gallery_steps(gallery_root, dataset, split_seed=0)
    assert len(g.ids) == 20 and all(p.is_file() for p in g.photos)
    assert all(lab["method"] == "Animals & Nature" and lab["main"].startswith("sub") for lab in g.labels)
    train_split = {r.recipe_id for r in _recipes(train) if split_of(r.recipe_id, seed=0) == "train"}
    expect = [not (set(_tag(r, "twin")) & train_split) for r in _recipes(gallery_root)]
    assert g.heldout == expect and any(expect) and not all(expect)
