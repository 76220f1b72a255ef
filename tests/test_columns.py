"""Column-wise steps (issue 14): string columns, the step table, photo items, means written to a memmap."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from toolkit.data.columns import StringColumn
from toolkit.fingerprint import fingerprint
from toolkit.image.features import items_fingerprint
from toolkit.image.items import PhotoItems
from toolkit.stages.read import (
    photo_items,
    read_steps,
    recipe_count,
    split_counts,
    step_columns,
    steps_of_split,
)
from toolkit.stages.step_table import StepRecord, StepTable
from toolkit.text.step_vectors import step_vectors, write_step_vectors_to
from toolkit.text.tokenizer import Tokenizer
from toolkit.text.word2vec import WordVectors
from toolkit.vectorset import load_vector_set

WORDS = ["人参", "切る", "牛乳", "注ぐ", "鍋", "玉葱", "炒める"]


def test_string_column_round_trips_and_takes_rows() -> None:
    strings = ["r1:1", "", "玉ねぎを炒める", "é\u3000x", "r2:10"]
    col = StringColumn.from_strings(strings)
    assert list(col) == strings and len(col) == 5 and col == strings
    assert col[2] == "玉ねぎを炒める" and col[-1] == "r2:10"
    assert col[1:4] == strings[1:4]
    assert col.take(np.array([4, 0, 0])) == ["r2:10", "r1:1", "r1:1"]
    assert col.take(np.array([True, False, True, False, False])) == ["r1:1", "玉ねぎを炒める"]
    with pytest.raises(IndexError):
        col[5]
    with pytest.raises(IndexError):
        col.take(np.array([7]))
    assert col.nbytes < sum(len(s.encode()) for s in strings) + 8 * 6 + 1


def test_repeated_marks_every_later_copy_only() -> None:
    col = StringColumn.from_strings(["a", "b", "a", "c", "b", "a", "d"])
    assert col.repeated().tolist() == [False, False, True, False, True, True, False]
    assert not StringColumn.from_strings(["x", "y"]).repeated().any()
    assert StringColumn.from_strings([]).repeated().shape == (0,)


def _table(tmp_path: Path) -> StepTable:
    root = tmp_path / "data"
    (root / "images").mkdir(parents=True)
    for name in ("a1.jpg", "b2.jpg"):
        (root / "images" / name).write_bytes(b"\xff\xd8 not decoded here")
    recipes = [
        {"recipe_id": "ra", "title": "t", "tags": ["main:人参"], "steps": [
            {"position": 1, "text": "人参を切る", "image": "images/a1.jpg"},
            {"position": 2, "text": "鍋に注ぐ"}]},
        {"recipe_id": "rb", "title": "t", "steps": [
            {"position": 1, "text": "玉ねぎを炒める"},
            {"position": 2, "text": "牛乳を注ぐ", "image": "images/b2.jpg"}]},
    ]  # fmt: skip
    (root / "recipes.jsonl").write_text(
        "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in recipes), encoding="utf-8"
    )
    return read_steps(root, None)


def test_step_table_gives_the_records_a_list_would(tmp_path: Path) -> None:
    table = _table(tmp_path)
    records = list(table)
    assert [r.step_id for r in records] == ["ra:1", "ra:2", "rb:1", "rb:2"]
    assert all(isinstance(r, StepRecord) for r in records)
    assert records[0].image is not None and records[0].image.name == "a1.jpg" and records[1].image is None
    assert records[0].tags == ("main:人参",) and records[2].tags == ()
    assert table[3] == records[3] and table[-1] == records[3]
    assert list(table[1:3]) == records[1:3]
    # the table helpers agree with the plain-list code paths on the same records
    for split in ("train", "val", "test", "all"):
        assert list(steps_of_split(table, split)) == steps_of_split(records, split)
        assert step_columns(steps_of_split(table, split)) == step_columns(steps_of_split(records, split))
        assert list(photo_items(table, split)) == list(photo_items(records, split))
    assert split_counts(table) == split_counts(records)
    assert recipe_count(table) == recipe_count(records) == 2
    assert list(photo_items(table)) == [("ra:1", records[0].image), ("rb:2", records[3].image)]


def test_photo_items_checks_ids_and_hashes_like_the_list() -> None:
    pairs = [("r:1", Path("/x/1.jpg")), ("r:2", Path("/x/写真.jpg")), ("r:3", Path("/x/3.jpg"))]
    items = PhotoItems.of(pairs)
    assert list(items) == pairs and items[1] == pairs[1] and list(items[1:]) == pairs[1:]
    legacy = fingerprint("image-items/1", [[sid, str(p)] for sid, p in pairs])  # the list-built hash
    assert items_fingerprint(items) == items_fingerprint(pairs) == legacy
    assert items_fingerprint(pairs[:2]) != legacy
    with pytest.raises(ValueError, match=r"item 2: duplicate step id 'r:1'"):
        PhotoItems.of([*pairs[:2], ("r:1", "/y.jpg")])
    with pytest.raises(ValueError, match="item 1: invalid step id ''"):
        PhotoItems.of([pairs[0], ("", "/y.jpg")])
    with pytest.raises(ValueError, match="item 1: invalid step id 'a\\\\nb'"):
        PhotoItems.of([pairs[0], ("a\nb", "/y.jpg")])
    with pytest.raises(ValueError, match="item 0: expected"):
        PhotoItems.of([("only-one",)])  # type: ignore[list-item]


def test_means_written_to_a_memmap_equal_the_in_memory_ones(tmp_path: Path) -> None:
    tok = Tokenizer()
    rng = np.random.default_rng(0)
    wv = WordVectors(WORDS, rng.normal(size=(len(WORDS), 8)).astype(np.float32), tok.config)
    ids = ["r1:1", "r1:2", "r1:3", "r1:1", "r2:1"]
    texts = ["人参を切る。", "🍅🍳", "牛乳を鍋に注ぐ", "玉ねぎ", "玉ねぎを炒める"]
    mem = step_vectors(ids, texts, tok, wv)
    disk = write_step_vectors_to(tmp_path / "sv", ids, texts, tok, wv, {"split": "all"})
    assert isinstance(disk.vectors, np.memmap)
    assert disk.ids == mem.ids == ["r1:1", "r1:3", "r2:1"]
    np.testing.assert_array_equal(np.asarray(disk.vectors), mem.vectors)
    assert [(r.record, r.reason.split(";")[0]) for r in disk.rejects] == [
        (r.record, r.reason.split(";")[0]) for r in mem.rejects
    ]
    vs = load_vector_set(tmp_path / "sv")
    assert vs.ids == list(mem.ids) and vs.meta["count"] == 3 and vs.meta["rejected"] == 2
    np.testing.assert_array_equal(np.asarray(vs.vectors), mem.vectors)


def test_take_gathers_chunk_by_chunk_the_same_rows(monkeypatch: pytest.MonkeyPatch) -> None:
    import toolkit.data.columns as columns

    rng = np.random.default_rng(3)
    strings = ["".join(rng.choice(list("あいうabc"), size=int(k))) for k in rng.integers(0, 6, size=41)]
    col = StringColumn.from_strings(strings)
    rows = rng.integers(0, 41, size=29)
    whole = col.take(rows)
    monkeypatch.setattr(columns, "TAKE_CHUNK_ROWS", 4)  # 8 chunks, the last one short
    assert col.take(rows) == whole == [strings[r] for r in rows]
