"""The Cookpad adapter: delimiter and header sniffing, pairing text and photo by step position."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

from toolkit.cli.data import import_cookpad
from toolkit.data.cookpad import CookpadError, convert_cookpad, sniff_table
from toolkit.data.jsonl import iter_recipes, validate_dataset
from toolkit.rejects import RejectsWriter, read_rejects

FIXTURES = Path(__file__).parent / "fixtures" / "data"
TSV, CSV = FIXTURES / "cookpad_tsv", FIXTURES / "cookpad_csv"


def _convert(src: Path, out: Path, **kwargs):
    rejects_file = out.parent / f"{out.name}-rejects.jsonl"
    with RejectsWriter(rejects_file) as writer:
        summary = convert_cookpad(src, out, rejects=writer, **kwargs)
    rejects = list(read_rejects(rejects_file)) if rejects_file.exists() else []
    return summary, rejects


def _source_photo(src: Path, rid: str, pos: int) -> Path:
    return src / "images" / "steps" / rid[0] / f"{rid}_{pos}.jpg"


def _assert_paired_by_position(src: Path, out: Path) -> dict[str, list[tuple[int, str | None]]]:
    """Each step's text names its position, and its photo is the source photo of that position."""
    found: dict[str, list[tuple[int, str | None]]] = {}
    for recipe in iter_recipes(out, RejectsWriter(None), check_images=True):
        for step in recipe.steps:
            assert step.text.startswith(f"手順{step.position}:"), step
            if step.image is not None:
                assert (out / step.image).read_bytes() == _source_photo(
                    src, recipe.recipe_id, step.position
                ).read_bytes()
            else:
                assert not _source_photo(src, recipe.recipe_id, step.position).exists()
            found.setdefault(recipe.recipe_id, []).append((step.position, step.image))
    return found


def test_sniffs_delimiter_and_header():
    assert (
        sniff_table(TSV / "recipes.tsv", "recipes").delimiter,
        sniff_table(TSV / "recipes.tsv", "recipes").header,
    ) == (
        "\t",
        True,
    )
    steps = sniff_table(CSV / "steps.txt", "steps")  # comma-separated despite the .txt name
    assert (steps.delimiter, steps.header) == (",", False)
    assert steps.columns == {"recipe_id": 0, "position": 1, "memo": 2}
    recipes = sniff_table(TSV / "recipes.tsv", "recipes")
    assert recipes.columns["title"] == 1 and recipes.columns["description"] == 3  # header order, not default


def test_tsv_with_header_steps_out_of_order_and_a_missing_photo(tmp_path):
    out = tmp_path / "out"
    summary, rejects = _convert(TSV, out)
    assert rejects == []
    assert (summary.recipes, summary.steps, summary.paired, summary.text_only, summary.rejects) == (
        2,
        5,
        4,
        1,
        0,
    )
    steps = _assert_paired_by_position(TSV, out)
    assert steps == {
        "a1b2": [
            (1, "images/steps/a/a1b2_1.jpg"),
            (2, "images/steps/a/a1b2_2.jpg"),
            (3, "images/steps/a/a1b2_3.jpg"),
        ],
        "c3d4": [(1, None), (2, "images/steps/c/c3d4_2.jpg")],
    }
    recipe = next(iter_recipes(out, RejectsWriter(None)))
    assert recipe.title == "豚肉とキャベツの炒め物" and recipe.description == "シャキシャキの炒め物です。"
    assert [(i.name, i.quantity) for i in recipe.ingredients] == [("豚肉", "200g"), ("キャベツ", "1/4個")]
    # Hard links by default: same file, and the output validates on its own (paths stay under OUT).
    assert os.path.samefile(out / "images/steps/a/a1b2_1.jpg", _source_photo(TSV, "a1b2", 1))
    assert validate_dataset(out).ok


def test_csv_without_header_quoted_fields_and_bad_rows(tmp_path):
    out = tmp_path / "out"
    summary, rejects = _convert(CSV, out, link_images=False)
    steps = _assert_paired_by_position(CSV, out)
    assert steps == {
        "e5f6": [
            (1, "images/steps/e/e5f6_1.jpg"),
            (2, "images/steps/e/e5f6_2.jpg"),
            (3, None),
            (4, "images/steps/e/e5f6_4.jpg"),
        ],
        "i9j0": [(2, "images/steps/i/i9j0_2.jpg")],
    }
    assert (summary.recipes, summary.steps, summary.paired, summary.text_only) == (2, 5, 4, 1)
    recipe = next(iter_recipes(out, RejectsWriter(None)))
    assert recipe.title == "トマトと卵の炒め物, 中華風"
    assert recipe.description == "ふわふわ卵の一品です。\n簡単です。"
    assert recipe.steps[0].text == "手順1: トマトを\nくし形切りにします。"
    assert not os.path.samefile(out / "images/steps/e/e5f6_1.jpg", _source_photo(CSV, "e5f6", 1))  # copied

    expected = {
        ("steps.txt:line 12", "read"): "not valid UTF-8 (undecodable byte 0xff)",
        ("ingredients.csv:line 3", "validate"): "ingredient name is empty",
        ("recipes.csv:line 3", "validate"): "recipe g7h8: field title: must not be empty",
        ("recipes.csv:line 5", "validate"): "duplicate recipe id 'e5f6' (first on line 2)",
        ("i9j0:x", "validate"): "steps.txt line 7: position must be a positive integer, got 'x'",
        ("i9j0:1", "validate"): "steps.txt line 8: memo must not be empty",
        (
            "steps.txt:line 11",
            "validate",
        ): "1 step row(s) for recipe id 'zz99', which is not among the recipes read",
    }
    dup = [r for r in rejects if r.record == "i9j0:3"]
    assert len(dup) == 2 and all("duplicate position 3 (lines 9, 10)" in r.reason for r in dup)
    rest = {(r.record, r.stage): r.reason for r in rejects if r.record != "i9j0:3"}
    assert rest.keys() == expected.keys()
    for key, fragment in expected.items():
        assert fragment in rest[key]
    assert summary.rejects == len(rejects) == 9
    assert not (out / "images/steps/i/i9j0_3.jpg").exists()  # the photo of a dropped step is not carried


def test_in_place_conversion_links_nothing(tmp_path):
    src = tmp_path / "cookpad"
    shutil.copytree(TSV, src)
    summary, _ = _convert(src, src)
    assert summary.paired == 4
    assert validate_dataset(src).ok
    assert sorted(p.name for p in src.iterdir() if p.name.startswith(".")) == []  # temp files removed


def test_missing_or_ambiguous_tables_are_clear_errors(tmp_path):
    with pytest.raises(CookpadError, match="no steps table"):
        (tmp_path / "a").mkdir()
        shutil.copy(TSV / "recipes.tsv", tmp_path / "a" / "recipes.tsv")
        convert_cookpad(tmp_path / "a", tmp_path / "out")
    with pytest.raises(CookpadError, match="more than one recipes table"):
        shutil.copy(TSV / "recipes.tsv", tmp_path / "a" / "recipes.csv")
        convert_cookpad(tmp_path / "a", tmp_path / "out")
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "recipes.txt").write_text("just one column\nand another\n", encoding="utf-8")
    (tmp_path / "b" / "steps.txt").write_text("r1,1,x\n", encoding="utf-8")
    with pytest.raises(CookpadError, match="cannot tell the delimiter"):
        convert_cookpad(tmp_path / "b", tmp_path / "out")


def test_ingredients_table_is_optional(tmp_path):
    src = tmp_path / "src"
    shutil.copytree(TSV, src)
    (src / "ingredients.tsv").unlink()
    summary, rejects = _convert(src, tmp_path / "out")
    assert summary.recipes == 2 and rejects == []
    assert all(r.ingredients == () for r in iter_recipes(tmp_path / "out", RejectsWriter(None)))


def test_cli_import_cookpad(tmp_path):
    out = tmp_path / "out"
    result = CliRunner().invoke(import_cookpad, [str(CSV), str(out), "--json", "--quiet"])
    assert result.exit_code == 1, result.output  # finished, but rows were rejected
    data = json.loads(result.stdout)
    assert (data["recipes"], data["paired"], data["rejects"]) == (2, 4, 9)
    assert sum(data["rejects_by_stage"].values()) == data["rejects"]
    assert len(list(read_rejects(data["rejects_file"]))) == 9
    clean = CliRunner().invoke(import_cookpad, [str(TSV), str(tmp_path / "clean"), "--json", "--quiet"])
    assert clean.exit_code == 0, clean.output
    assert json.loads(clean.stdout)["rejects"] == 0 and json.loads(clean.stdout)["rejects_file"] is None


def test_import_cookpad_keeps_the_valid_rows_and_exits_1_on_a_bad_one(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    (src / "recipes.csv").write_text("id,title\na001,肉じゃが\nb002,カレー\n", encoding="utf-8")
    steps = "recipe_id,position,memo\na001,1,玉ねぎを切る。\na001,x,炒める。\nb002,1,煮込む。\n"
    (src / "steps.csv").write_text(steps, encoding="utf-8")
    out, rejects_file = tmp_path / "out", tmp_path / "bad.jsonl"
    args = [str(src), str(out), "--rejects", str(rejects_file), "--quiet"]
    result = CliRunner().invoke(import_cookpad, args)
    assert result.exit_code == 1, result.output
    assert f"see {rejects_file}" in result.stdout and "1 rejected" in result.stdout
    recipes = {r.recipe_id: [s.text for s in r.steps] for r in iter_recipes(out, RejectsWriter(None))}
    assert recipes == {"a001": ["玉ねぎを切る。"], "b002": ["煮込む。"]}  # valid rows are never lost
    (reject,) = read_rejects(rejects_file)
    assert reject.record == "a001:x" and "steps.csv line 3" in reject.reason
    assert "position must be a positive integer" in reject.reason
    as_json = CliRunner().invoke(import_cookpad, [*args, "--json"])
    assert as_json.exit_code == 1, as_json.output
    data = json.loads(as_json.stdout)
    assert (data["recipes"], data["rejects"], data["rejects_file"]) == (2, 1, str(rejects_file))
    assert data["rejects_by_stage"] == {"validate": 1}
    assert len(list(read_rejects(rejects_file))) == 1  # rewritten, not appended to


def test_a_blank_line_before_the_header_does_not_make_the_header_a_row(tmp_path):
    steps = "\nrecipe_id\tposition\tmemo\na001\t1\t玉ねぎを切る。\n"
    src = _tables(tmp_path / "src", "\n\nid\ttitle\na001\t肉じゃが\n", steps)
    summary, rejects = _convert(src, tmp_path / "out")
    assert (summary.recipes, summary.steps, rejects) == (1, 1, [])
    assert [r.recipe_id for r in iter_recipes(tmp_path / "out", RejectsWriter(None))] == ["a001"]


def _tables(src: Path, recipes: str, steps: str) -> Path:
    src.mkdir()
    (src / "recipes.tsv").write_text(recipes, encoding="utf-8")
    (src / "steps.tsv").write_text(steps, encoding="utf-8")
    return src


def test_a_two_column_header_is_enough_and_a_header_missing_a_column_is_refused(tmp_path):
    steps = "recipe_id\tposition\tmemo\na001\t1\t玉ねぎを切る。\n"
    src = _tables(tmp_path / "two", "id\ttitle\na001\t肉じゃが\n", steps)
    summary, rejects = _convert(src, tmp_path / "out-two")
    assert (summary.recipes, summary.steps, rejects) == (1, 1, [])
    # a header naming known columns but not the title: never read as a recipe called "title" or "name"
    src = _tables(tmp_path / "no-title", "id\tuser_id\tname\tdescription\na001\tu1\t肉じゃが\td\n", steps)
    with pytest.raises(CookpadError, match="names the columns id, user_id, description but not title"):
        _convert(src, tmp_path / "out-no-title")
    src = _tables(
        tmp_path / "no-memo", "id\ttitle\na001\t肉じゃが\n", "recipe_id\tposition\ttext\na001\t1\tx\n"
    )
    with pytest.raises(CookpadError, match="but not memo"):
        _convert(src, tmp_path / "out-no-memo")


def test_a_valid_row_after_a_rejected_one_of_the_same_id_is_kept(tmp_path):
    recipes = "id\ttitle\na001\t\na001\t肉じゃが\n"  # line 2: empty title (rejected); line 3: valid
    src = _tables(tmp_path / "src", recipes, "recipe_id\tposition\tmemo\na001\t1\t玉ねぎを切る。\nzz\t1\tx\n")
    summary, rejects = _convert(src, tmp_path / "out")
    assert summary.recipes == 1 and summary.steps == 1
    reasons = {r.record: r.reason for r in rejects}
    assert "title" in reasons["recipes.tsv:line 2"] and "recipes.tsv:line 3" not in reasons
    assert "not among the recipes read" in reasons["steps.tsv:line 3"]


def test_an_unterminated_quote_loses_only_its_own_row(tmp_path):
    """A '"' never closed would make the rest of a comma file one field: that row is rejected, the rows after
    it are read as rows."""
    src = tmp_path / "src"
    src.mkdir()
    recipes = 'id,title\na001,"肉じゃが\nb002,カレー\nc003,"豚汁, 具だくさん"\n'
    (src / "recipes.csv").write_text(recipes, encoding="utf-8")
    steps = 'recipe_id,position,memo\nb002,1,"煮込む。\nc003,1,"切る。\n2行目"\nc003,2,盛る。\n'
    (src / "steps.csv").write_text(steps, encoding="utf-8")
    summary, rejects = _convert(src, tmp_path / "out")
    got = {r.recipe_id: (r.title, [s.text for s in r.steps]) for r in iter_recipes(tmp_path / "out")}
    assert got == {"b002": ("カレー", []), "c003": ("豚汁, 具だくさん", ["切る。\n2行目", "盛る。"])}
    reasons = {r.record: r.reason for r in rejects}
    assert "quoted field opened on line 2 is never closed" in reasons["recipes.csv:line 2"]
    assert "quoted field opened on line 2 is never closed" in reasons["steps.csv:line 2"]
    assert summary.rejects == len(rejects) == 2


def test_a_field_over_the_csv_module_limit_is_its_rows_reject(tmp_path):
    """csv refuses a field over 128 KiB by default: the long text is refused by its length, not a traceback."""
    src = tmp_path / "src"
    src.mkdir()
    (src / "recipes.csv").write_text(f"id,title,description\na001,長い,{'あ' * 200_000}\nb002,カレー,\n")
    (src / "steps.csv").write_text("recipe_id,position,memo\nb002,1,煮込む。\n", encoding="utf-8")
    summary, rejects = _convert(src, tmp_path / "out")
    assert [r.recipe_id for r in iter_recipes(tmp_path / "out")] == ["b002"]
    (reject,) = rejects
    assert reject.record == "recipes.csv:line 2"
    assert "description: text is 200000 characters, over the limit of 20000" in reject.reason


def test_a_position_over_the_index_limit_names_its_row(tmp_path):
    steps = f"recipe_id\tposition\tmemo\na001\t99999999999\t大きすぎる。\na001\t2\t煮る。\na001\t{'9' * 5000}\tx\n"
    src = _tables(tmp_path / "src", "id\ttitle\na001\t肉じゃが\n", steps)
    summary, rejects = _convert(src, tmp_path / "out")
    assert summary.steps == 1
    assert [r.record for r in rejects] == ["a001:99999999999", f"a001:{'9' * 5000}"]
    assert rejects[0].reason == (
        "steps.tsv line 2: position must be at most 2147483647 (the index stores it as an integer), "
        "got '99999999999'"
    )
    assert rejects[1].reason.startswith("steps.tsv line 4: position must be at most 2147483647")


def test_tables_with_bare_cr_line_ends_are_read_row_by_row(tmp_path):
    """Classic Mac exports end lines with a bare CR: the delimiter is sniffed from those rows, as they are read."""
    src = tmp_path / "src"
    src.mkdir()
    (src / "recipes.tsv").write_bytes("id\ttitle\ra001\t肉じゃが\rb002\tカレー\r".encode())
    (src / "steps.tsv").write_bytes(
        "recipe_id\tposition\tmemo\ra001\t1\t切る。\rb002\t1\t煮る。\rb002\t2\t盛る。\r".encode()
    )
    summary, rejects = _convert(src, tmp_path / "out")
    assert (summary.recipes, summary.steps, rejects) == (2, 3, [])
    assert [len(r.steps) for r in iter_recipes(tmp_path / "out")] == [1, 2]


def test_a_recipe_id_too_long_for_a_photo_file_name_keeps_its_steps_text_only(tmp_path):
    """A valid 300-character id makes a photo name over the file system's 255 bytes: a reject, not an abort."""
    rid = "a" * 300
    src = _tables(
        tmp_path / "src",
        f"id\ttitle\n{rid}\t長い\nb002\tカレー\n",
        f"recipe_id\tposition\tmemo\n{rid}\t1\t切る。\nb002\t1\t煮る。\n",
    )
    (src / "images" / "steps" / "a").mkdir(parents=True)
    summary, rejects = _convert(src, tmp_path / "out")
    assert (summary.recipes, summary.steps, summary.paired) == (2, 2, 0)
    (reject,) = rejects
    assert (reject.record, reject.stage) == (f"{rid}:1", "image")
    assert "File name too long" in reject.reason and reject.reason.endswith("step kept as text-only")


@pytest.mark.parametrize("encoding", ["utf-16", "utf-16-le", "utf-32"])
def test_a_utf16_table_is_refused_as_such(tmp_path, encoding):
    """Excel's "Unicode text" export is UTF-16: the error says so, not that the delimiter cannot be told."""
    src = tmp_path / "src"
    src.mkdir()
    (src / "recipes.tsv").write_text("id\ttitle\na001\t肉じゃが\n", encoding="utf-8")
    (src / "steps.tsv").write_bytes("recipe_id\tposition\tmemo\na001\t1\t切る。\n".encode(encoding))
    with pytest.raises(
        CookpadError, match=r"steps.tsv is UTF-16 or UTF-32 encoded, not UTF-8: save it as UTF-8"
    ):
        convert_cookpad(src, tmp_path / "out")
