"""The second recipe generator of the quality benchmark (``bench/kitchen_set.py``), on a tiny package tree
laid out like the emoji npm packages (one plain-coloured PNG per vendor and emoji)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from bench.bench_quality import DATASETS, available, gallery_steps, prepare
from bench.kitchen_set import INGREDIENTS, METHODS, SCENES, UNSEEN_PAIR_SHARE, write_kitchen_set
from toolkit.data.jsonl import iter_recipes
from toolkit.data.splits import split_of
from toolkit.rejects import RejectsWriter

VENDORS_RGB = {"google": (200, 30, 30, 255), "twitter": (30, 200, 30, 255), "facebook": (30, 30, 200, 255)}


def _package_tree(root: Path) -> Path:
    codes = {i.code for i in INGREDIENTS}
    for scene in SCENES.values():
        codes |= set(scene["props"]) | ({scene["base"]} if scene["base"] else set())
    for vendor, rgb in VENDORS_RGB.items():
        img = root / vendor / "img" / vendor / "64"
        img.mkdir(parents=True)
        for code in codes:
            icon = Image.new("RGBA", (64, 64), (0, 0, 0, 0))
            icon.paste(rgb, (8, 8, 56, 56))
            icon.save(img / code)
    return root


def _recipes(root: Path) -> list:
    """The collection's recipes; the generator writes only valid records (no field dropped, no reject)."""
    with RejectsWriter(None) as rejects:
        recipes = list(iter_recipes(root, rejects))
    assert rejects.count == 0
    return recipes


def _method_of(text: str) -> str:
    """The one method whose verb (either word, any of its forms) the step text uses."""
    found = {m.key for m in METHODS for form in (*m.verb, *m.other) if form in text}
    assert len(found) == 1, (text, found)
    return found.pop()


def _main(recipe) -> str:
    return next(t.partition(":")[2] for t in recipe.tags if t.startswith("main:"))


@pytest.mark.parametrize("seed", [0, 1])
def test_a_draw_holds_out_pairs_and_a_vendor(tmp_path: Path, seed: int) -> None:
    root = _package_tree(tmp_path / "pkg")
    train, gallery = write_kitchen_set(root, tmp_path / "draw", seed, train_recipes=60, gallery_steps=150)
    trained, shown = _recipes(train), _recipes(gallery)
    assert len(trained) == 60 and len(shown) == 150

    trained_pairs: dict[tuple[str, str], set[str]] = {}
    for r in trained:
        ing = next(i for i in INGREDIENTS if i.key == _main(r))
        for step in r.steps:
            assert any(name in step.text for name in ing.names), step.text  # the step names its ingredient
            if step.image:
                assert (train / step.image).is_file()
                trained_pairs.setdefault((ing.key, _method_of(step.text)), set()).add(r.recipe_id)
    gallery_vendor = list(VENDORS_RGB)[seed % 3]
    pixels = []
    unseen = 0
    for r in shown:
        (step,) = r.steps
        tags = dict(t.split(":", 1) for t in r.tags if not t.startswith("twin:"))
        twins = {t.partition(":")[2] for t in r.tags if t.startswith("twin:")}
        assert tags["style"] == gallery_vendor and _method_of(step.text) == tags["method"]
        # its twins are exactly the training recipes with a photo of its ingredient x method pair
        assert twins == trained_pairs.get((tags["main"], tags["method"]), set())
        unseen += not twins
        pixels.append(np.asarray(Image.open(gallery / step.image).convert("RGB"), dtype=np.int32))
    # the gallery's icons are drawn by its vendor only: its colour dominates the saturated pixels
    stack = np.concatenate([p.reshape(-1, 3) for p in pixels])
    vivid = stack[stack.max(axis=1) - stack.min(axis=1) > 120]
    assert np.bincount(vivid.argmax(axis=1), minlength=3).argmax() == seed % 3
    pairs = len(INGREDIENTS) * len(METHODS)
    assert abs(unseen / len(shown) - UNSEEN_PAIR_SHARE) < 0.12 and len(trained_pairs) < pairs


def test_the_same_seed_writes_the_same_draw_and_another_seed_another(tmp_path: Path) -> None:
    root = _package_tree(tmp_path / "pkg")
    texts = []
    for out, seed in (("a", 3), ("b", 3), ("c", 4)):
        train, gallery = write_kitchen_set(root, tmp_path / out, seed, train_recipes=20, gallery_steps=30)
        texts.append(
            (train / "recipes.jsonl").read_text("utf-8") + (gallery / "recipes.jsonl").read_text("utf-8")
        )
    assert texts[0] == texts[1] and texts[0] != texts[2]
    a, b = (tmp_path / d / "gallery" / "images" / "q00007" / "1.jpg" for d in "ab")
    assert a.read_bytes() == b.read_bytes()


def test_the_benchmark_reads_its_labels_and_never_trained_pairs(tmp_path: Path, monkeypatch) -> None:
    root = _package_tree(tmp_path / "pkg")
    (tmp_path / "pkg" / "cldr").mkdir()  # emoji_dir() wants the annotations too
    monkeypatch.setenv("JRS_EMOJI_DIR", str(root))
    kitchen = next(d for d in DATASETS if d.name == "kitchen").scaled(0.1)
    train, gallery_root = prepare(kitchen, tmp_path / "work")
    gallery = gallery_steps(gallery_root, kitchen, split_seed=0)
    assert len(gallery.ids) == kitchen.gallery_recipes
    trained = {r.recipe_id for r in _recipes(train) if split_of(r.recipe_id, seed=0) == "train"}
    for recipe, labels, held in zip(_recipes(gallery_root), gallery.labels, gallery.heldout, strict=True):
        twins = {t.partition(":")[2] for t in recipe.tags if t.startswith("twin:")}
        assert labels == {"main": _main(recipe), "method": _method_of(recipe.steps[0].text)}
        assert held == (not twins & trained)  # never trained: no twin in the train split
    assert any(gallery.heldout) and not all(gallery.heldout)


def test_without_the_emoji_data_the_set_is_skipped_by_name(monkeypatch) -> None:
    monkeypatch.delenv("JRS_EMOJI_DIR", raising=False)
    said: list[str] = []
    kept = available(DATASETS, log=said.append)
    assert "kitchen" not in {d.name for d in kept} and "plain" in {d.name for d in kept}
    assert "kitchen" in said[0] and "emoji" in said[0]
