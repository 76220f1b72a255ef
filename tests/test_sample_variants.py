"""Variants of the sample generator (distribution shift for the quality benchmark)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from toolkit.cli.data import sample_data
from toolkit.data.jsonl import iter_recipes, validate_dataset
from toolkit.data.sample import SampleVariant, generate_sample, grammar, make_recipe, step_labels
from toolkit.data.sample_draw import draw_step_photo
from toolkit.data.sample_variant import combo_allowed, held_out_combo
from toolkit.errors import ConfigError
from toolkit.rejects import RejectsWriter

TEXT = "フライパンに油を熱し、玉ねぎを入れて中火で飴色になるまで炒めます。"


def _photo(variant: SampleVariant | None, seed: int = 1) -> np.ndarray:
    return np.asarray(draw_step_photo(TEXT, np.random.default_rng(seed), 64, variant), dtype=np.float32)


def test_the_default_variant_draws_the_default_photo():
    assert np.array_equal(_photo(None), _photo(SampleVariant()))
    assert SampleVariant().is_default and not SampleVariant(style="ink").is_default


@pytest.mark.parametrize(
    "variant",
    [
        SampleVariant(style="ink"),
        SampleVariant(style="soft"),
        SampleVariant(style="mosaic"),
        SampleVariant(palette="warm"),
        SampleVariant(palette="muted"),
        SampleVariant(background="cloth"),
        SampleVariant(extra=1.0),
    ],
)
def test_each_drawing_variant_changes_the_photo(variant):
    assert np.abs(_photo(variant) - _photo(None)).mean() > 3.0


def test_palettes_shift_the_colours():
    def mean_rgb(v: SampleVariant) -> np.ndarray:
        return np.mean([_photo(v, s).reshape(-1, 3).mean(axis=0) for s in range(8)], axis=0)

    warm, cool = mean_rgb(SampleVariant(palette="warm")), mean_rgb(SampleVariant(palette="cool"))
    assert (warm[0] - warm[2]) - (cool[0] - cool[2]) > 20.0
    muted = [_photo(SampleVariant(palette="muted"), s) for s in range(8)]
    plain = [_photo(None, s) for s in range(8)]
    assert np.mean([m.std(axis=2).mean() for m in muted]) < 0.7 * np.mean(
        [p.std(axis=2).mean() for p in plain]
    )


def test_paraphrases_say_the_same_thing_otherwise():
    changed = 0
    for index in range(30):
        plain, plans = make_recipe(7, index, 30)
        para, para_plans = make_recipe(7, index, 30, variant=SampleVariant(phrasing="paraphrase"))
        assert [p.text for p in plans] == [p.text for p in para_plans]  # photos drawn from the same plan
        for a, b in zip(plain.steps, para.steps, strict=True):
            assert a.image == b.image
            changed += a.text != b.text
            # the paraphrase names no ingredient the original does not (under its name or a synonym)
            rest = b.text
            for name in step_labels(a.text)["ingredients"]:
                for word in sorted((name, *grammar.INGREDIENT_SYNONYMS.get(name, ())), key=len, reverse=True):
                    rest = rest.replace(word, "")
            assert step_labels(rest)["ingredients"] == [], (a.text, b.text)
    assert changed > 100


def test_unpictured_phrasing_rewords_only_the_steps_without_a_photo():
    reworded = 0
    for index in range(30):
        plain, _ = make_recipe(7, index, 30, photo_ratio=0.5)
        para, _ = make_recipe(7, index, 30, photo_ratio=0.5, variant=SampleVariant(phrasing="paraphrase"))
        unpictured, _ = make_recipe(
            7, index, 30, photo_ratio=0.5, variant=SampleVariant(phrasing="unpictured")
        )
        for a, b, c in zip(plain.steps, para.steps, unpictured.steps, strict=True):
            assert a.image == b.image == c.image
            assert c.text == (a.text if a.image else b.text)
            reworded += a.image is None and c.text != a.text
    assert reworded > 20


def test_unseen_combinations_are_never_in_the_seen_variant():
    def cooking_pairs(combos: str) -> set[tuple[str, str]]:
        pairs = set()
        for index in range(60):
            _, plans = make_recipe(9, index, 60, variant=SampleVariant(combos=combos))
            pairs |= {(p.main, p.method) for p in plans if p.method not in ("切る", "盛り付ける")}
        return pairs

    seen, unseen = cooking_pairs("seen"), cooking_pairs("unseen")
    assert seen and unseen and not seen & unseen
    assert all(not held_out_combo(*p) for p in seen) and all(held_out_combo(*p) for p in unseen)
    assert combo_allowed("all", "卵", "蒸す")


def test_a_variant_collection_is_valid_and_deterministic(tmp_path: Path):
    v = SampleVariant(style="soft", background="cloth", phrasing="paraphrase", extra=0.5, id_prefix="g")
    a = generate_sample(tmp_path / "a", 6, seed=2, image_size=32, variant=v)
    generate_sample(tmp_path / "b", 6, seed=2, image_size=32, variant=v, workers=2)
    assert validate_dataset(tmp_path / "a").ok
    for name in [
        "recipes.jsonl",
        *(str(p.relative_to(tmp_path / "a")) for p in (tmp_path / "a").rglob("*.jpg")),
    ]:
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()
    assert a.variant == v.to_dict() and "variant" in a.to_dict()
    ids = [r.recipe_id for r in iter_recipes(tmp_path / "a", RejectsWriter(None))]
    assert ids == [f"g{i:06d}" for i in range(6)]
    assert "variant" not in generate_sample(tmp_path / "c", 2, image_size=32).to_dict()


@pytest.mark.parametrize(
    "kwargs",
    [
        {"style": "oil"},
        {"palette": "neon"},
        {"phrasing": "poem"},
        {"extra": 1.5},
        {"combos": "some"},
        {"id_prefix": "x/"},
    ],
)
def test_bad_variants_are_refused(kwargs):
    with pytest.raises(ConfigError):
        SampleVariant(**kwargs)


def test_grammar_default_is_unchanged_by_the_combos_argument():
    a = grammar.make_recipe_parts(np.random.default_rng([1, 2, 0]))
    b = grammar.make_recipe_parts(np.random.default_rng([1, 2, 0]), "all")
    assert a == b


def test_cli_sample_data_variant_flags(tmp_path: Path):
    runner = CliRunner()
    args = ["--recipes", "3", "--image-size", "32", "--json", "--quiet", "--seed", "5"]
    plain = runner.invoke(sample_data, [str(tmp_path / "p"), *args])
    shifted = runner.invoke(
        sample_data,
        [
            str(tmp_path / "s"),
            *args,
            "--style",
            "ink",
            "--phrasing",
            "paraphrase",
            "--combos",
            "unseen",
            "--id-prefix",
            "g",
        ],
    )
    assert plain.exit_code == 0 and shifted.exit_code == 0, shifted.output
    assert (
        "variant" not in json.loads(plain.output) and json.loads(shifted.output)["variant"]["style"] == "ink"
    )
    text = (tmp_path / "s" / "recipes.jsonl").read_text(encoding="utf-8")
    assert '"recipe_id":"g000000"' in text and text != (tmp_path / "p" / "recipes.jsonl").read_text(
        encoding="utf-8"
    )
    bad = runner.invoke(sample_data, [str(tmp_path / "b"), *args, "--style", "oil"])
    assert bad.exit_code == 2 and "oil" in bad.output


def test_cli_sample_data_joined_styles_draw_like_the_library(tmp_path: Path):
    runner = CliRunner()
    args = ["--recipes", "3", "--image-size", "32", "--quiet", "--seed", "2"]
    got = runner.invoke(sample_data, [str(tmp_path / "cli"), *args, "--style", "Flat+mosaic"])
    assert got.exit_code == 0, got.output
    generate_sample(tmp_path / "lib", 3, seed=2, image_size=32, variant=SampleVariant(style="flat+mosaic"))
    photos = sorted(p.relative_to(tmp_path / "lib") for p in (tmp_path / "lib" / "images").rglob("*.jpg"))
    assert len(photos) > 4
    for rel in photos:
        assert (tmp_path / "cli" / rel).read_bytes() == (tmp_path / "lib" / rel).read_bytes(), rel
    flat = tmp_path / "flat"
    generate_sample(flat, 3, seed=2, image_size=32, variant=SampleVariant(style="flat"))
    assert any((flat / rel).read_bytes() != (tmp_path / "lib" / rel).read_bytes() for rel in photos)
    bad = runner.invoke(sample_data, [str(tmp_path / "bad"), *args, "--style", "flat+oil"])
    assert bad.exit_code == 2 and "'oil' is not one of" in bad.output and not (tmp_path / "bad").exists()


def test_concepts_collection(tmp_path: Path):
    from toolkit.data.sample_concepts import COLOURS, NOUNS, SHAPES, concept

    train = SampleVariant(content="concepts", style="flat+ink")
    gallery = SampleVariant(content="concepts", style="soft", id_prefix="g")
    generate_sample(tmp_path / "t", 12, seed=4, image_size=32, variant=train)
    generate_sample(tmp_path / "g", 12, seed=4, image_size=32, variant=gallery)
    assert validate_dataset(tmp_path / "t").ok and validate_dataset(tmp_path / "g").ok
    records = list(iter_recipes(tmp_path / "t", RejectsWriter(None)))
    twins = list(iter_recipes(tmp_path / "g", RejectsWriter(None)))
    assert [r.title for r in records] == list(NOUNS[:12]) == [r.title for r in twins]
    for r, g in zip(records, twins, strict=True):
        c = concept(4, NOUNS.index(r.title))
        assert r.tags == g.tags == (f"main:{c.colour}", f"method:{c.shape}", f"concept:{c.noun}")
        for step in r.steps:
            assert c.noun in step.text  # every description names the object
        said = " ".join(s.text for s in r.steps)
        assert COLOURS[c.colour][0] in said or SHAPES[c.shape] in said or c.pattern != "none"
    assert len({concept(4, i) for i in range(len(NOUNS))}) == len(NOUNS)
    with pytest.raises(ConfigError, match="at most"):
        generate_sample(tmp_path / "x", len(NOUNS) + 1, variant=train)


def test_concept_look_follows_its_colour():
    from toolkit.data.sample_concepts import Concept, draw_concept

    def mean_rgb(colour: str) -> np.ndarray:
        c = Concept(0, "傘", "square", colour, "white", "none", 1, "big")
        arrs = [
            np.asarray(draw_concept(c, np.random.default_rng(s), 48, SampleVariant()), dtype=np.float64)
            for s in range(12)
        ]
        return np.mean([a.reshape(-1, 3).mean(axis=0) for a in arrs], axis=0)

    red, blue = mean_rgb("red"), mean_rgb("blue")
    assert (red[0] - red[2]) - (blue[0] - blue[2]) > 20.0


def test_mixed_styles_alternate_by_photo():
    v = SampleVariant(style="flat+ink")
    assert {v.photo_style(0, p).style for p in range(1, 5)} == {"flat", "ink"}
    assert SampleVariant(style="soft").photo_style(3, 2).style == "soft"
    with pytest.raises(ConfigError):
        SampleVariant(style="flat+oil")
