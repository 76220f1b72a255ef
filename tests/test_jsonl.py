"""Reading the JSONL layout: every bad record named with its reason, every valid one kept."""

from __future__ import annotations

import json
import logging
import os
import shutil
from collections import Counter
from pathlib import Path

import pytest
from click.testing import CliRunner

from toolkit.cli.data import validate
from toolkit.data.jsonl import (
    RECIPES_FILE,
    DatasetError,
    iter_recipes,
    validate_dataset,
    write_recipes_jsonl,
)
from toolkit.data.schema import Recipe, Step
from toolkit.errors import ToolkitError
from toolkit.rejects import RejectsWriter, read_rejects

FIXTURE = Path(__file__).parent / "fixtures" / "data" / "jsonl_corpus"
EXPECTED = json.loads((FIXTURE / "expected.json").read_text(encoding="utf-8"))


@pytest.fixture
def corpus(tmp_path: Path) -> Path:
    """The fixture corpus plus a symlink inside the root that points at a real file outside it."""
    root = tmp_path / "corpus"
    shutil.copytree(FIXTURE, root)
    outside = tmp_path / "secret.jpg"
    outside.write_bytes((FIXTURE / "images" / "r001" / "1.jpg").read_bytes())
    (root / "images" / "link_out.jpg").symlink_to(outside)
    return root


def _assert_rejects(found, expected):
    assert Counter((r.record, r.stage) for r in found) == Counter((rec, stage) for rec, stage, _ in expected)
    for record, stage, fragment in expected:
        reasons = [r.reason for r in found if (r.record, r.stage) == (record, stage)]
        assert any(fragment in reason for reason in reasons), (record, fragment, reasons)


def test_every_bad_record_is_named_and_every_valid_one_survives(corpus, tmp_path):
    rejects_file = tmp_path / "rejects.jsonl"
    with RejectsWriter(rejects_file) as writer:
        recipes = list(iter_recipes(corpus, writer))
    found = list(read_rejects(rejects_file))
    _assert_rejects(found, EXPECTED["rejects"])

    assert [r.recipe_id for r in recipes] == EXPECTED["recipes"]
    assert [r.step_id(s) for r in recipes for s in r.steps] == EXPECTED["steps"]

    # Accounting: each non-blank line is either a recipe or a line-level reject.
    lines = [ln for ln in (corpus / RECIPES_FILE).read_bytes().split(b"\n") if ln.strip()]
    line_rejects = [r for r in found if r.record.startswith(f"{RECIPES_FILE}:line ")]
    assert len(lines) == len(recipes) + len(line_rejects)

    first = recipes[0]
    assert first.steps[0] == Step(1, "じゃがいもを乱切りにします。", "images/r001/1.jpg")
    emoji_ascii = next(r for r in recipes if r.recipe_id == "r009")
    assert [s.text for s in emoji_ascii.steps] == ["🍳🔥", "Fry the onions until golden."]


def test_huge_numbers_and_overlong_ids_are_rejects_not_crashes(tmp_path):
    """An integer of 5,000 digits stopped the whole read; a 600-byte recipe id passed validation and then
    failed a whole bulk request (Elasticsearch ids are at most 512 bytes)."""
    good = {"recipe_id": "r1", "title": "t", "steps": [{"position": 1, "text": "a"}]}
    lines = [
        json.dumps(good),
        '{"recipe_id": "big", "title": "x", "steps": [{"position": ' + "1" * 5000 + ', "text": "a"}]}',
        json.dumps({**good, "recipe_id": "r" * 600}),
        json.dumps({**good, "recipe_id": "長" * 170}),  # 510 bytes in UTF-8
        json.dumps({**good, "recipe_id": "r" * 480}),  # at the limit: kept
        json.dumps({**good, "recipe_id": "r2"}),
    ]
    (tmp_path / RECIPES_FILE).write_text("\n".join(lines) + "\n", encoding="utf-8")
    with RejectsWriter(tmp_path / "rejects.jsonl") as writer:
        recipes = list(iter_recipes(tmp_path, writer))
    assert [r.recipe_id for r in recipes] == ["r1", "r" * 480, "r2"]
    found = {r.record: r.reason for r in read_rejects(tmp_path / "rejects.jsonl")}
    assert "unreadable JSON value" in found[f"{RECIPES_FILE}:line 2"]
    assert "600 bytes in UTF-8, over the limit of 480" in found[f"{RECIPES_FILE}:line 3"]
    assert "510 bytes in UTF-8" in found[f"{RECIPES_FILE}:line 4"]


def test_without_image_checks_paths_are_passed_through(corpus):
    recipes = {r.recipe_id: r for r in iter_recipes(corpus, RejectsWriter(None))}
    assert recipes["r008"].steps[0].image == "../../etc/passwd"


def test_image_checks_make_unsafe_and_missing_photos_text_only(corpus, tmp_path):
    writer = RejectsWriter(tmp_path / "rejects.jsonl")
    recipes = list(iter_recipes(corpus, writer, check_images=True))
    writer.close()
    _assert_rejects(
        list(read_rejects(tmp_path / "rejects.jsonl")), EXPECTED["rejects"] + EXPECTED["image_rejects"]
    )
    with_photo = [r.step_id(s) for r in recipes for s in r.steps if s.image]
    assert with_photo == EXPECTED["photos"]
    assert [r.step_id(s) for r in recipes for s in r.steps] == EXPECTED["steps"]


def test_a_photo_name_too_long_for_the_file_system_is_one_reject(tmp_path):
    """stat() fails with ENAMETOOLONG (not "not found"): that step is made text-only with the reason; validate,
    build and index used to stop at it with "Error: cannot read ..." and lose every valid record."""
    (tmp_path / "images").mkdir()
    (tmp_path / "images" / "ok.jpg").write_bytes((FIXTURE / "images" / "r001" / "1.jpg").read_bytes())
    os.mkfifo(tmp_path / "images" / "fifo.jpg")
    steps = [
        {"position": 1, "text": "x", "image": "images/" + "a" * 300 + ".jpg"},
        {"position": 2, "text": "y", "image": "images/ok.jpg"},
        {"position": 3, "text": "z", "image": "images/fifo.jpg"},
    ]
    (tmp_path / RECIPES_FILE).write_text(json.dumps({"recipe_id": "a", "title": "t", "steps": steps}) + "\n")
    writer = RejectsWriter(None)
    (recipe,) = iter_recipes(tmp_path, writer, check_images=True)
    assert [s.image for s in recipe.steps] == [None, "images/ok.jpg", None]
    report = validate_dataset(tmp_path, decode_images=True)
    long_name, fifo = report.rejects
    assert (long_name.record, long_name.stage, report.missing_images) == ("a:1", "image", 2)
    assert "cannot be read (File name too long)" in long_name.reason and long_name.reason.endswith(
        "text-only"
    )
    assert fifo.record == "a:3" and "image file is not a regular file: 'images/fifo.jpg'" in fifo.reason


def test_validate_dataset_reports_counts_and_rejects(corpus):
    report = validate_dataset(corpus)
    assert report.recipes == len(EXPECTED["recipes"])
    assert report.steps == len(EXPECTED["steps"])
    assert report.steps_with_image == len(EXPECTED["photos"])
    assert (report.missing_images, report.unsafe_paths) == (2, 3)  # r008:4 missing, r016:4 a directory
    assert not report.ok
    _assert_rejects(
        report.rejects, EXPECTED["rejects"] + EXPECTED["text_rejects"] + EXPECTED["image_rejects"]
    )
    assert json.loads(json.dumps(report.to_dict()))["ok"] is False
    assert report.steps_without_words == len(EXPECTED["text_rejects"])

    unchecked = validate_dataset(corpus, check_images=False)
    assert unchecked.steps_with_image == len(EXPECTED["photos"]) + 5
    assert unchecked.missing_images == unchecked.unsafe_paths == 0


def test_rejects_are_logged_when_no_writer_is_given(corpus, caplog):
    with caplog.at_level(logging.WARNING, logger="toolkit.data.jsonl"):
        recipes = list(iter_recipes(corpus))
    assert len(recipes) == len(EXPECTED["recipes"])
    assert len(caplog.records) == len(EXPECTED["rejects"])
    assert any("recipes.jsonl:line 2 [read]: malformed JSON" in r.getMessage() for r in caplog.records)


def test_bom_crlf_and_blank_lines_are_accepted(tmp_path):
    body = '{"recipe_id":"a","title":"t","steps":[{"position":1,"text":"x"}]}\r\n\r\n{"recipe_id":"b","title":"u"}\r\n'
    (tmp_path / RECIPES_FILE).write_bytes(b"\xef\xbb\xbf" + body.encode())
    writer = RejectsWriter(None)
    assert [r.recipe_id for r in iter_recipes(tmp_path, writer)] == ["a", "b"]
    assert writer.count == 0


def test_files_joined_with_their_byte_order_marks_lose_no_record(tmp_path):
    """``cat a.jsonl b.jsonl`` of two files saved with a UTF-8 BOM put one mid-file: the record after it was
    rejected ("Unexpected UTF-8 BOM (decode using utf-8-sig)"). A BOM opening any line is read past (offsets in
    the line count from after it, as on line 1; those in the file count it)."""
    one, two = (json.dumps({"recipe_id": i, "title": "t"}).encode() for i in "ab")
    bom = b"\xef\xbb\xbf"
    (tmp_path / RECIPES_FILE).write_bytes(bom + one + b"\r\n" + bom + two + b"\r\n" + bom + b"{\xff}\r\n")
    writer = RejectsWriter(tmp_path / "rejects.jsonl")
    assert [r.recipe_id for r in iter_recipes(tmp_path, writer)] == ["a", "b"]
    writer.close()
    [bad] = read_rejects(tmp_path / "rejects.jsonl")
    start = 2 * len(bom) + len(one) + len(two) + 4
    assert bad.record == f"{RECIPES_FILE}:line 3" and bad.stage == "read"
    assert f"at byte offset 1 of the line (byte {start + 4} of the file)" in bad.reason  # as on line 1


def test_records_run_together_on_one_line_are_named_as_such(tmp_path):
    """Bare-CR line ends (classic Mac) make the whole file one line: the reject says why, not just "Extra data"."""
    one, two = (json.dumps({"recipe_id": i, "title": "t"}) for i in "ab")
    (tmp_path / RECIPES_FILE).write_bytes(f"{one}\r{two}\r".encode())
    writer = RejectsWriter(tmp_path / "rejects.jsonl")
    assert list(iter_recipes(tmp_path, writer)) == []
    (tmp_path / RECIPES_FILE).write_bytes(f"{one} {two}\n".encode())
    assert list(iter_recipes(tmp_path, writer)) == []
    writer.close()
    first, second = read_rejects(tmp_path / "rejects.jsonl")
    assert (
        first.record == "recipes.jsonl:line 1"
        and "bare CR: save it with LF or CRLF line ends" in first.reason
    )
    assert "more than one JSON value on the line" in second.reason


def test_iter_recipes_is_lazy(tmp_path):
    good = json.dumps({"recipe_id": "a", "title": "t"})
    (tmp_path / RECIPES_FILE).write_text(good + "\n" + "{broken\n", encoding="utf-8")
    writer = RejectsWriter(None)
    it = iter_recipes(tmp_path, writer)
    assert next(it).recipe_id == "a"
    assert writer.count == 0  # the bad second line has not been read yet
    assert list(it) == [] and writer.count == 1


def test_missing_root_or_file_is_a_clear_error(tmp_path):
    with pytest.raises(DatasetError, match="does not exist"):
        list(iter_recipes(tmp_path / "nope"))
    with pytest.raises(DatasetError, match="no recipes.jsonl"):
        validate_dataset(tmp_path)
    (tmp_path / "f").write_text("x")
    with pytest.raises(DatasetError, match="is a file"):
        list(iter_recipes(tmp_path / "f"))
    (tmp_path / RECIPES_FILE).mkdir()
    with pytest.raises(DatasetError, match="recipes.jsonl in dataset root .* is a directory, not a file"):
        validate_dataset(tmp_path)
    (tmp_path / RECIPES_FILE).rmdir()
    for encoding in ("utf-16", "utf-16-le", "utf-16-be", "utf-32", "utf-32-be"):  # with and without a BOM
        (tmp_path / RECIPES_FILE).write_text('{"recipe_id": "a", "title": "t"}\n', encoding=encoding)
        with pytest.raises(DatasetError, match="is UTF-16 or UTF-32 encoded, not UTF-8: save it as UTF-8"):
            validate_dataset(tmp_path)


def test_write_recipes_jsonl_round_trips(corpus, tmp_path):
    recipes = list(iter_recipes(corpus, RejectsWriter(None)))
    out = tmp_path / "copy" / RECIPES_FILE
    assert write_recipes_jsonl(out, iter(recipes)) == len(recipes)
    writer = RejectsWriter(None)
    assert list(iter_recipes(out.parent, writer)) == recipes
    assert writer.count == 0


@pytest.mark.parametrize(
    ("bad", "fragment"),
    [
        (Recipe("a:1", "t"), "must not contain ':'"),
        (Recipe("b", "t", steps=(Step(2, "x"), Step(1, "y"))), "sorted by position"),
        (Recipe("c", "t", steps=(Step(1, " x "),)), "surrounding whitespace"),
        (Recipe("d", "t", steps=(Step(0, "x"),)), "positive integer"),
        (Recipe("ok", "t"), "duplicate recipe_id"),
    ],
)
def test_write_refuses_what_the_reader_would_reject_and_leaves_target_alone(tmp_path, bad, fragment):
    out = tmp_path / RECIPES_FILE
    out.write_text("previous\n", encoding="utf-8")
    with pytest.raises(ToolkitError, match=fragment):
        write_recipes_jsonl(out, [Recipe("ok", "t"), bad])
    assert out.read_text(encoding="utf-8") == "previous\n"
    assert [p.name for p in tmp_path.iterdir()] == [RECIPES_FILE]


def test_cli_validate(corpus, tmp_path):
    runner = CliRunner()
    rejects_file = tmp_path / "r.jsonl"
    result = runner.invoke(validate, [str(corpus), "--rejects", str(rejects_file)])
    assert result.exit_code == 1
    n_recipes, n_steps = len(EXPECTED["recipes"]), len(EXPECTED["steps"])
    assert f"{n_recipes} recipes, {n_steps} steps (2 with a usable photo)" in result.output
    assert "recipes.jsonl:line 2 [read]: malformed JSON" in result.output
    expected = EXPECTED["rejects"] + EXPECTED["text_rejects"] + EXPECTED["image_rejects"]
    assert len(list(read_rejects(rejects_file))) == len(expected)
    assert "r009:1 [text]: the text has no word the tokenizer keeps" in result.output

    result = runner.invoke(validate, [str(corpus), "--json", "--no-images"])
    data = json.loads(result.output)
    assert (
        result.exit_code == 1
        and data["recipes"] == n_recipes
        and len(data["rejects"]) == len(EXPECTED["rejects"]) + len(EXPECTED["text_rejects"])
    )

    clean = tmp_path / "clean"
    write_recipes_jsonl(clean / RECIPES_FILE, [Recipe("a", "t", steps=(Step(1, "x"),))])
    result = runner.invoke(validate, [str(clean)])
    assert result.exit_code == 0, result.output
    assert "no rejects" in result.output

    result = runner.invoke(validate, [str(tmp_path / "missing")])
    assert result.exit_code == 2 and "does not exist" in result.output


def test_a_text_without_a_word_is_noted_by_validate_as_the_build_will_note_it(tmp_path):
    """An emoji-only step passed `jrs validate` and was first named by the build's text stage (no text vector):
    validate names it now, kept, with the reason the build gives for the same steps."""
    import numpy as np

    from toolkit.text.step_vectors import step_vectors
    from toolkit.text.tokenizer import NO_WORD_REASON, Tokenizer
    from toolkit.text.word2vec import WordVectors

    steps = (Step(1, "🍳🔥"), Step(2, "をにまで"), Step(3, "玉ねぎを炒めます。"))
    write_recipes_jsonl(tmp_path / RECIPES_FILE, [Recipe("e", "t", steps=steps)])
    report = validate_dataset(tmp_path)
    assert (report.steps, report.steps_without_words, report.ok) == (3, 2, False)
    assert [(r.record, r.stage) for r in report.rejects] == [("e:1", "text"), ("e:2", "text")]
    assert all(r.reason.startswith(NO_WORD_REASON) and "step is kept" in r.reason for r in report.rejects)
    result = CliRunner().invoke(validate, [str(tmp_path)])
    assert result.exit_code == 1 and f"e:1 [text]: {NO_WORD_REASON}" in result.output
    assert "steps without a text vector (no word the tokenizer keeps): 2" in result.output

    tokenizer = Tokenizer()
    matrix = np.random.default_rng(0).standard_normal((2, 4)).astype(np.float32)
    built = step_vectors(
        ["e:1", "e:2", "e:3"],
        [s.text for s in steps],
        tokenizer,
        WordVectors(["玉葱", "炒める"], matrix, tokenizer.config),
    )
    assert list(built.ids) == ["e:3"]
    assert [r.record for r in built.rejects] == ["e:1", "e:2"]
    assert all(r.stage == "text" and NO_WORD_REASON in r.reason for r in built.rejects)


def test_a_key_given_twice_is_a_reject_naming_the_record_and_the_key(tmp_path):
    """JSON's last value silently won: two "steps" keys left a recipe without steps, and two "recipe_id" keys
    indexed it under the second. The object holding the repeated key is now dropped (a record, a step, an
    ingredient), named with the key; unknown keys, ignored anyway, may repeat, and so may a key with the same
    value."""
    step = '{"position": 1, "text": "玉ねぎを炒めます。"}'
    lines = [
        '{"recipe_id": "r1", "title": "t", "steps": [' + step + '], "steps": []}',
        '{"recipe_id": "x", "title": "t", "recipe_id": "r2", "steps": [' + step + "]}",
        '{"recipe_id": "r3", "title": "a", "title": "b", "tags": [], "tags": ["c"], "steps": []}',
        '{"recipe_id": "r4", "title": "t", "steps": [{"position": 1, "text": "a", "text": "b"}, '
        '{"position": 2, "position": 3, "text": "c"}, {"position": 4, "text": "d", "note": 1, "note": 2}], '
        '"ingredients": [{"name": "卵", "name": "塩"}, {"name": "酢", "quantity": "1", "quantity": "2"}, '
        '{"name": "油"}], "source": {"a": 1, "a": 2}, "source": "web"}',
        '{"recipe_id": "r5", "title": "t", "steps": [' + step + "]}",
        '{"recipe_id": "r6", "title": "t", "title": "t", "steps": ['
        + step
        + "]}",  # the same value: harmless
    ]
    (tmp_path / RECIPES_FILE).write_text("\n".join(lines) + "\n", encoding="utf-8")
    rejects_file = tmp_path / "rejects.jsonl"
    with RejectsWriter(rejects_file) as writer:
        recipes = list(iter_recipes(tmp_path, writer))
    twice = "key given 2 times in one JSON object"
    _assert_rejects(
        list(read_rejects(rejects_file)),
        [
            (f"{RECIPES_FILE}:line 1", "validate", f"recipe r1: field steps: {twice}"),
            (f"{RECIPES_FILE}:line 2", "validate", f"field recipe_id: {twice}"),
            (f"{RECIPES_FILE}:line 3", "validate", f"recipe r3: field title, tags: {twice}"),
            ("r4:1", "validate", f"field steps[0].text: {twice}"),
            ("r4:steps[1]", "validate", f"field steps[1].position: {twice}"),
            ("r4:ingredients[0]", "validate", f"field ingredients[0].name: {twice}"),
            ("r4:ingredients[1]", "validate", f"field ingredients[1].quantity: {twice}"),
        ],
    )
    assert [r.recipe_id for r in recipes] == ["r4", "r5", "r6"]
    r4 = recipes[0]
    assert [s.text for s in r4.steps] == ["d"] and [i.name for i in r4.ingredients] == ["油"]
    assert "recipe r2" not in next(read_rejects(rejects_file)).reason  # which id is meant is not known

    result = CliRunner().invoke(validate, [str(tmp_path)])
    assert result.exit_code == 1
    assert f"{RECIPES_FILE}:line 1 [validate]: recipe r1: field steps: {twice}" in result.output
