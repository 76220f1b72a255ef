"""Cookpad rows with more cells than columns: a separator inside a text field is never a silent cut.

The free text is kept whole when it is the last column (steps: ``recipe_id, position, memo``); a row of a table
whose text fields come before other columns (recipes, ingredients) cannot be split back and is rejected by
``file:line``.
"""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner

from toolkit.cli.data import import_cookpad
from toolkit.data.cookpad import convert_cookpad
from toolkit.data.jsonl import iter_recipes
from toolkit.rejects import Reject, RejectsWriter, read_rejects

#: Enough well-formed rows for the delimiter sniffer (80% of rows must agree on the number of columns).
_PLAIN = 8


def _recipes_rows(sep: str = "\t") -> str:
    return "".join(
        sep.join([f"p{i}", "u", f"料理{i}", "説明", "2人分", "", "", "2015-01-01"]) + "\n"
        for i in range(_PLAIN)
    )


def _steps_rows(sep: str = "\t", n: int = _PLAIN) -> str:
    return "".join(sep.join([f"p{i}", "1", f"手順{i}"]) + "\n" for i in range(n))


def _write(src: Path, **tables: str) -> Path:
    src.mkdir()
    for name, text in tables.items():
        (src / name.replace("_", ".")).write_text(text, encoding="utf-8")
    return src


def _convert(src: Path, out: Path) -> tuple[dict[str, list[tuple[int, str]]], list[Reject]]:
    rejects_file = out.parent / f"{out.name}-rejects.jsonl"
    with RejectsWriter(rejects_file) as writer:
        convert_cookpad(src, out, rejects=writer)
    steps = {r.recipe_id: [(s.position, s.text) for s in r.steps] for r in iter_recipes(out)}
    return steps, list(read_rejects(rejects_file)) if rejects_file.exists() else []


def test_cli_headerless_steps_keep_a_memo_holding_tabs_whole(tmp_path: Path) -> None:
    """The user's row ``r000004\\t10\\ttoo\\tmany\\tcols`` is the step text ``too\\tmany\\tcols``, with a warning."""
    recipes = "r000004\tu\t肉じゃが\t\t\t\t\t2015-01-01\n" + _recipes_rows()
    steps = "r000004\t10\ttoo\tmany\tcols\nr000004\t11\t煮る。\t\n" + _steps_rows()  # line 2: a trailing tab
    src = _write(tmp_path / "src", recipes_txt=recipes, steps_txt=steps)
    out = tmp_path / "out"
    result = CliRunner().invoke(import_cookpad, [str(src), str(out), "--json", "--quiet"])
    assert result.exit_code == 0, result.output  # nothing rejected
    assert json.loads(result.stdout)["rejects"] == 0
    got = {r.recipe_id: [(s.position, s.text) for s in r.steps] for r in iter_recipes(out)}
    assert got["r000004"] == [(10, "too\tmany\tcols"), (11, "煮る。")]
    assert len(got) == 1 + _PLAIN
    assert (
        "warning: steps.txt: 1 row(s) had more than 3 columns (first on line 1): the extra cells were kept as "
        "part of memo, joined by a tab" in result.stderr
    )


def test_cli_headerless_recipes_row_with_a_tab_in_its_text_is_rejected_by_file_and_line(
    tmp_path: Path,
) -> None:
    """A tab inside the title shifts every later column: the row is rejected, never read with a cut title."""
    recipes = _recipes_rows() + "r000005\tu\tカ\tレー\t説明\t2人分\t\t\t2015-01-01\n"  # line 9: 9 cells
    recipes += "r000006\tu\t豚汁\t説明\t\t\t\t2015-01-01\t\n"  # line 10: a trailing tab only, kept
    steps = _steps_rows() + "r000005\t1\t煮込む。\nr000006\t1\t切る。\n"
    src = _write(tmp_path / "src", recipes_txt=recipes, steps_txt=steps)
    out, rejects_file = tmp_path / "out", tmp_path / "rejects.jsonl"
    args = [str(src), str(out), "--rejects", str(rejects_file), "--json", "--quiet"]
    result = CliRunner().invoke(import_cookpad, args)
    assert result.exit_code == 1, result.output
    got = {r.recipe_id: r for r in iter_recipes(out)}
    assert "r000005" not in got and got["r000006"].title == "豚汁" and len(got) == 1 + _PLAIN
    reasons = {r.record: (r.stage, r.reason) for r in read_rejects(rejects_file)}
    assert reasons["recipes.txt:line 9"] == (
        "read",
        "has 9 columns, expected 8 (id, user_id, title, description, serving_for, advice, history, "
        "published_at): likely a tab inside a text field, and which field cannot be told, so the row cannot be "
        "split into its columns; row dropped",
    )
    assert "recipe id 'r000005'" in reasons["steps.txt:line 9"][1]  # its steps are accounted for too
    assert json.loads(result.stdout)["rejects"] == len(reasons) == 2


def test_headerless_ingredients_row_with_extra_cells_is_rejected(tmp_path: Path) -> None:
    """name and quantity are both free text: which one held the tab cannot be told."""
    ingredients = "p0\t胡\t椒\t少々\n" + "".join(f"p{i}\t塩\t少々\n" for i in range(_PLAIN))
    src = _write(
        tmp_path / "src", recipes_txt=_recipes_rows(), steps_txt=_steps_rows(), ingredients_txt=ingredients
    )
    out = tmp_path / "out"
    _, rejects = _convert(src, out)
    (reject,) = rejects
    assert (reject.record, reject.stage) == ("ingredients.txt:line 1", "read")
    assert reject.reason.startswith("has 4 columns, expected 3 (recipe_id, name, quantity): likely a tab")
    p0 = next(r for r in iter_recipes(out) if r.recipe_id == "p0")
    assert [(i.name, i.quantity) for i in p0.ingredients] == [("塩", "少々")]


def test_rows_longer_than_their_header(tmp_path: Path) -> None:
    """The one text column last in the header (memo; a recipes title): rejoined. Text before another column, or an unknown last column: rejected.
    A column the header names and the toolkit does not use stays ignored."""
    steps = "recipe_id\tposition\tmemo\n" + _steps_rows() + "a001\t1\t切る\tそして\t炒める\n"
    recipes = "id\ttitle\tdescription\n" + "".join(f"p{i}\t料理{i}\t説明\n" for i in range(_PLAIN))
    recipes += "a001\t肉じゃが\t説明\na002\tカ\tレー\t説明\n"
    src = _write(tmp_path / "a", recipes_tsv=recipes, steps_tsv=steps)
    got, rejects = _convert(src, tmp_path / "out-a")
    assert got["a001"] == [(1, "切る\tそして\t炒める")] and "a002" not in got
    assert [(r.record, r.reason.split(":")[0]) for r in rejects] == [
        ("recipes.tsv:line 11", "has 4 columns, expected 3 (id, title, description)")
    ]

    steps = "recipe_id\tposition\tmemo\tnote\n" + "".join(f"p{i}\t1\t手順{i}\tメモ\n" for i in range(_PLAIN))
    steps += "p0\t2\t煮る\tメモ\nq0\t1\t切る\tそして\tメモ\n"
    recipes = "id\ttitle\n" + "".join(f"{c}{i}\t料理{i}\n" for c in "pq" for i in range(_PLAIN))
    recipes += "r0\tカ\tレー\n"  # title is the last column and id cannot hold a tab: joined back
    src = _write(tmp_path / "b", recipes_tsv=recipes, steps_tsv=steps)
    got, rejects = _convert(src, tmp_path / "out-b")
    assert got["p0"] == [(1, "手順0"), (2, "煮る")]  # the note column is ignored
    assert next(r.title for r in iter_recipes(tmp_path / "out-b") if r.recipe_id == "r0") == "カ\tレー"
    (reject,) = rejects
    assert reject.record == "steps.tsv:line 11"
    assert reject.reason.startswith(
        "has 5 columns, expected 4 (recipe_id, position, memo, note): likely a tab"
    )

    # a tab at the end of the header names no column: memo is still the last one
    steps = (
        "recipe_id\tposition\tmemo\t\n" + _steps_rows(n=2 * _PLAIN) + "p0\t2\t切る\tそして\np0\t3\t盛る\t\n"
    )
    recipes = "id\ttitle\n" + "".join(f"p{i}\t料理{i}\n" for i in range(2 * _PLAIN))
    src = _write(tmp_path / "c", recipes_tsv=recipes, steps_tsv=steps)
    got, rejects = _convert(src, tmp_path / "out-c")
    assert got["p0"] == [(1, "手順0"), (2, "切る\tそして"), (3, "盛る")] and rejects == []


def test_comma_files_rejoin_an_unquoted_comma_and_keep_reading_quoted_ones(tmp_path: Path) -> None:
    """A comma-separated memo's unquoted commas are kept (the comma put back); a quoted field is read by csv."""
    steps = (
        _steps_rows(",")
        + 'a001,1,塩, 胡椒を振る。\na001,2,"砂糖, 醤油を入れる。"\na001,3,"煮る, 10分",弱火で\n'
    )
    recipes = _recipes_rows(",") + 'a001,u,肉じゃが,説明,,,,2015-01-01\na002,u,"カ,レー",説明,,,,2015-01-01\n'
    recipes += "a003,u,豚,汁,説明,,,,2015-01-01\n"
    src = _write(tmp_path / "src", recipes_csv=recipes, steps_csv=steps)
    got, rejects = _convert(src, tmp_path / "out")
    assert got["a001"] == [(1, "塩, 胡椒を振る。"), (2, "砂糖, 醤油を入れる。"), (3, "煮る, 10分,弱火で")]
    assert got["a002"] == [] and "a003" not in got
    (reject,) = rejects
    assert reject.record == "recipes.csv:line 11"
    assert (
        "has 9 columns, expected 8" in reject.reason and "likely a comma inside a text field" in reject.reason
    )


def test_cli_headerless_table_whose_rows_all_have_another_column_is_refused(tmp_path: Path) -> None:
    """Every row with a fourth cell is a column of the file's own (a date), not a tab inside each memo: joining
    it into every step text would corrupt them all, and rejecting them would drop them all, so the table is
    refused with the fix (a header row); a few memos with a tab among plain rows are still kept whole."""
    steps = "".join(f"p{i}\t1\t手順{i}\t2015-01-0{i + 1}\n" for i in range(_PLAIN))
    src = _write(tmp_path / "src", recipes_txt=_recipes_rows(), steps_txt=steps)
    result = CliRunner().invoke(import_cookpad, [str(src), str(tmp_path / "out"), "--quiet"])
    assert result.exit_code != 0 and not (tmp_path / "out" / "recipes.jsonl").exists()
    assert f"steps.txt: {_PLAIN} of the first {_PLAIN} rows have 4 or more columns" in result.output
    assert "add a header row naming the columns" in result.output

    steps = "recipe_id\tposition\tmemo\tcreated\n" + steps  # the fix the error names
    src2 = _write(tmp_path / "src2", recipes_txt=_recipes_rows(), steps_txt=steps)
    got, rejects = _convert(src2, tmp_path / "out2")
    assert rejects == [] and got["p3"] == [(1, "手順3")]

    steps = "p0\t1\t塩\tこしょう\n" + _steps_rows()[len("p0\t1\t手順0\n") :]  # one tab-memo among plain rows
    src3 = _write(tmp_path / "src3", recipes_txt=_recipes_rows(), steps_txt=steps)
    got, rejects = _convert(src3, tmp_path / "out3")
    assert rejects == [] and got["p0"] == [(1, "塩\tこしょう")]
