"""The recipe record: strict parsing, what is dropped and why, and the JSON round trip."""

from __future__ import annotations

import pytest

from toolkit.data.schema import (
    DEFAULT_MAX_TEXT_LEN,
    Ingredient,
    Recipe,
    RecordError,
    Step,
    parse_recipe,
    recipe_to_json,
)
from toolkit.errors import ToolkitError

WHERE = "recipes.jsonl:line 12"


def _recipe(**overrides):
    obj = {
        "recipe_id": "r1",
        "title": "鶏肉の照り焼き",
        "description": "甘辛いたれで。",
        "ingredients": [{"name": "鶏肉", "quantity": "1枚"}, {"name": "醤油"}],
        "steps": [
            {"position": 2, "text": "フライパンで焼きます。", "image": "images/r1/2.jpg"},
            {"position": 1, "text": "鶏肉を一口大に切ります。"},
        ],
        "tags": ["main:鶏肉"],
    }
    obj.update(overrides)
    return obj


def _reasons(rejects):
    return {(r.record, r.stage): r.reason for r in rejects}


def test_valid_record_parses_sorted_and_round_trips():
    recipe, rejects = parse_recipe(_recipe(), WHERE)
    assert rejects == []
    assert [s.position for s in recipe.steps] == [1, 2]
    assert recipe.steps[1] == Step(2, "フライパンで焼きます。", "images/r1/2.jpg")
    assert recipe.ingredients == (Ingredient("鶏肉", "1枚"), Ingredient("醤油", ""))
    assert recipe.step_id(recipe.steps[0]) == "r1:1"
    back, again = parse_recipe(recipe_to_json(recipe), WHERE)
    assert back == recipe and again == []


def test_record_error_names_record_field_and_reason():
    with pytest.raises(RecordError) as info:
        parse_recipe(_recipe(steps="1. 切る"), WHERE)
    err = info.value
    assert isinstance(err, ToolkitError)
    assert (err.record, err.field, err.recipe_id) == (WHERE, "steps", "r1")
    assert str(err) == "recipes.jsonl:line 12: recipe r1: field steps: must be a list, got '1. 切る'"


@pytest.mark.parametrize(
    ("obj", "field", "fragment"),
    [
        ([1, 2], None, "must be a JSON object"),
        ({"title": "x"}, "recipe_id", "missing"),
        (_recipe(recipe_id=7), "recipe_id", "must be a string, got 7 (int)"),
        (_recipe(recipe_id=""), "recipe_id", "must not be empty"),
        (_recipe(recipe_id="a:b"), "recipe_id", "must not contain ':'"),
        (_recipe(recipe_id="a\nb"), "recipe_id", "line break"),
        (_recipe(recipe_id=" r1"), "recipe_id", "surrounding whitespace"),
        ({"recipe_id": "r1"}, "title", "missing"),
        (_recipe(title=None), "title", "must be a string, got None (NoneType)"),
        (_recipe(title="  "), "title", "must not be blank"),
        (_recipe(description=["x"]), "description", "must be a string"),
        (_recipe(ingredients={"name": "x"}), "ingredients", "must be a list"),
        (_recipe(tags="main:x"), "tags", "must be a list"),
    ],
)
def test_whole_record_problems_raise(obj, field, fragment):
    with pytest.raises(RecordError) as info:
        parse_recipe(obj, WHERE)
    assert info.value.field == field
    assert fragment in info.value.reason
    assert str(info.value).startswith(WHERE)


@pytest.mark.parametrize(
    ("step", "record", "fragment"),
    [
        ({"position": "3", "text": "x"}, "r1:steps[2]", "got '3' (a string; write it as a JSON number)"),
        ({"position": 3.0, "text": "x"}, "r1:steps[2]", "got 3.0 (float)"),
        ({"position": True, "text": "x"}, "r1:steps[2]", "got True (bool)"),
        ({"position": -1, "text": "x"}, "r1:steps[2]", "got -1"),
        ({"text": "x"}, "r1:steps[2]", "field steps[2].position: missing"),
        ({"position": 3}, "r1:3", "field steps[2].text: missing"),
        ({"position": 3, "text": 5}, "r1:3", "must be a string, got 5 (int)"),
        ({"position": 3, "text": ""}, "r1:3", "must not be empty"),
        ({"position": 3, "text": "x", "image": ["a.jpg"]}, "r1:3", "must be a string or null"),
        ("3. 盛り付ける", "r1:steps[2]", "must be an object"),
    ],
)
def test_bad_step_is_dropped_alone(step, record, fragment):
    obj = _recipe()
    obj["steps"].append(step)
    recipe, rejects = parse_recipe(obj, WHERE)
    assert [s.position for s in recipe.steps] == [1, 2]
    assert len(rejects) == 1
    assert (rejects[0].record, rejects[0].stage) == (record, "validate")
    assert fragment in rejects[0].reason


def test_duplicate_positions_drop_every_step_sharing_it():
    steps = [
        {"position": 1, "text": "一"},
        {"position": 2, "text": "二のA"},
        {"position": 2, "text": "二のB"},
        {"position": 3, "text": "三"},
    ]
    recipe, rejects = parse_recipe(_recipe(steps=steps), WHERE)
    assert [s.text for s in recipe.steps] == ["一", "三"]
    assert [r.record for r in rejects] == ["r1:2", "r1:2"]
    assert all("duplicate position 2 (steps[1], steps[2])" in r.reason for r in rejects)


def test_text_is_stripped_not_normalised_and_length_is_limited():
    text = " \u30ac\u3099 ｶﾞ 🍳\n"  # precomposed + combining + half-width kana + emoji, kept as given
    recipe, _ = parse_recipe(_recipe(steps=[{"position": 1, "text": text}]), WHERE)
    assert recipe.steps[0].text == text.strip()

    ok = "あ" * DEFAULT_MAX_TEXT_LEN
    long = ok + "い"
    recipe, rejects = parse_recipe(
        _recipe(steps=[{"position": 1, "text": ok}, {"position": 2, "text": long}]), WHERE
    )
    assert [s.position for s in recipe.steps] == [1]
    assert (
        f"{DEFAULT_MAX_TEXT_LEN + 1} characters, over the limit of {DEFAULT_MAX_TEXT_LEN}"
        in rejects[0].reason
    )

    recipe, rejects = parse_recipe(_recipe(title="照り焼き", description=""), WHERE, max_text_len=5)
    assert recipe.steps == () and len(rejects) == 2
    with pytest.raises(RecordError, match="field title: text is 7 characters"):
        parse_recipe(_recipe(), WHERE, max_text_len=5)


def test_empty_image_path_keeps_the_step_text_only():
    recipe, rejects = parse_recipe(_recipe(steps=[{"position": 1, "text": "x", "image": " "}]), WHERE)
    assert recipe.steps == (Step(1, "x", None),)
    assert (rejects[0].record, rejects[0].stage) == ("r1:1", "image")


def test_bad_ingredients_and_tags_are_dropped_alone_and_extra_keys_ignored():
    obj = _recipe(
        ingredients=[{"name": "卵"}, {"quantity": "1個"}, {"name": "塩", "quantity": [1]}, "砂糖"],
        tags=["main:卵", 3, ""],
        source="web",
        rating=5,
    )
    obj["steps"][0]["note"] = "ignored"
    recipe, rejects = parse_recipe(obj, WHERE)
    assert recipe.ingredients == (Ingredient("卵"),)
    assert recipe.tags == ("main:卵",)
    assert len(recipe.steps) == 2
    assert sorted(r.record for r in rejects) == [
        "r1:ingredients[1]",
        "r1:ingredients[2]",
        "r1:ingredients[3]",
        "r1:tags[1]",
        "r1:tags[2]",
    ]


def test_null_lists_mean_empty():
    recipe, rejects = parse_recipe({"recipe_id": "r9", "title": "t", "steps": None, "tags": None}, WHERE)
    assert recipe == Recipe("r9", "t") and rejects == []


def test_a_null_description_and_numeric_quantities_keep_the_recipe():
    """``"description": null`` dropped the whole recipe (every valid step with it) and a quantity written as a
    JSON number dropped its ingredient; null reads as no description, a number as its digits."""
    obj = _recipe(description=None)
    obj["ingredients"] = [
        {"name": "玉ねぎ", "quantity": 2},
        {"name": "塩", "quantity": 0.5},
        {"name": "水", "quantity": None},
        {"name": "油", "quantity": True},
        {"name": "酢", "quantity": float("nan")},
    ]
    recipe, rejects = parse_recipe(obj, WHERE)
    assert recipe.description == "" and [s.position for s in recipe.steps] == [1, 2]
    assert [(i.name, i.quantity) for i in recipe.ingredients] == [("玉ねぎ", "2"), ("塩", "0.5"), ("水", "")]
    assert [r.record for r in rejects] == ["r1:ingredients[3]", "r1:ingredients[4]"]
    assert all("quantity: must be a string" in r.reason for r in rejects)


@pytest.mark.parametrize(
    ("rid", "shown"),
    [
        ("a\x00b", r"'\x00' at character 2"),
        ("a\tb", r"'\t' at character 2"),
        ("a\x1b[31mb", r"'\x1b' at character 2"),
        ("ab\x7f", r"'\x7f' at character 3"),
        ("a\x85b", r"'\x85' at character 2"),
        ("a\u2028b", r"'\u2028' at character 2"),
        ("a\x0bb", r"'\x0b' at character 2"),
    ],
)
def test_a_recipe_id_with_a_control_character_or_a_unicode_line_break_is_refused(
    rid: str, shown: str
) -> None:
    """Step ids are printed, logged, written one per line and sent as document ids: no character in a recipe
    id may end a line (U+2028, NEL, ...) or drive a terminal (ESC, NUL, ...)."""
    with pytest.raises(RecordError) as info:
        parse_recipe(_recipe(recipe_id=rid), WHERE)
    assert info.value.field == "recipe_id"
    assert info.value.reason.startswith("must not contain a ")
    assert shown in info.value.reason
    assert rid not in str(info.value)  # the message itself shows the character escaped


def test_a_recipe_id_of_letters_from_any_script_is_kept() -> None:
    for rid in ("レシピ001", "r_1-2.3", "食譜 7", "🍳1"):
        recipe, _ = parse_recipe(_recipe(recipe_id=rid), WHERE)
        assert recipe.recipe_id == rid


def test_a_text_of_only_invisible_characters_is_blank() -> None:
    """Zero-width spaces, a BOM or variation selectors show nothing and carry no word (the tokenizer drops
    them): a title or step of only those and whitespace is as blank as one of spaces."""
    with pytest.raises(RecordError, match="field title: must not be blank .only whitespace or invisible"):
        parse_recipe(_recipe(title="\u200b"), WHERE)
    steps = [
        {"position": 1, "text": "\u200b \u200d\ufeff"},
        {"position": 2, "text": "\u3000\ufe0f\n"},
        {"position": 3, "text": "玉ね\u200bぎを切る。"},
        {"position": 4, "text": "❤\ufe0f"},
    ]
    recipe, rejects = parse_recipe(_recipe(steps=steps), WHERE)
    assert [(s.position, s.text) for s in recipe.steps] == [(3, "玉ね\u200bぎを切る。"), (4, "❤\ufe0f")]
    assert [(r.record, r.reason) for r in rejects] == [
        ("r1:1", "field steps[0].text: must not be blank (only whitespace or invisible characters)"),
        ("r1:2", "field steps[1].text: must not be blank (only whitespace or invisible characters)"),
    ]
    recipe, rejects = parse_recipe(_recipe(description="\u200b", tags=["\u2060"]), WHERE)
    assert recipe.description == "\u200b" and recipe.tags == ()  # an optional text may be empty
    assert rejects[0].record == "r1:tags[0]" and "blank" in rejects[0].reason
