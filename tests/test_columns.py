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


def test_lines_split_at_line_feeds_only() -> None:
    raw = "r1:1\nr\u2028x:2\n\nr\x0b3:4\n玉ねぎ:5".encode()
    col = StringColumn.from_lines(raw)
    assert col == ["r1:1", "r\u2028x:2", "", "r\x0b3:4", "玉ねぎ:5"]
    assert StringColumn.from_lines(raw + b"\n") == col
    assert len(StringColumn.from_lines(b"")) == 0


def test_prefixes_cut_at_the_first_separator() -> None:
    col = StringColumn.from_strings(["r1:1", "玉:ね:ぎ", "plain", "", ":0", "r1:22"])
    assert col.prefixes(":") == ["r1", "玉", "plain", "", "", "r1"]
    with pytest.raises(ValueError):
        col.prefixes("::")


def test_codes_number_rows_in_order_of_first_appearance(monkeypatch: pytest.MonkeyPatch) -> None:
    strings = ["b", "a", "b", "c", "a", "b"]
    col = StringColumn.from_strings(strings)
    codes, distinct = col.codes()
    assert codes.tolist() == [0, 1, 0, 2, 1, 0] and distinct == ["b", "a", "c"]
    # every row hashing alike (a collision): the bytes check catches it and the strings decide
    monkeypatch.setattr(StringColumn, "hashes", lambda self: np.zeros(len(self), dtype=np.int64))
    codes, distinct = col.codes()
    assert codes.tolist() == [0, 1, 0, 2, 1, 0] and distinct == ["b", "a", "c"]


def test_align_rows_by_hash_equals_a_dict_join(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from toolkit.vectorset import VectorSet, align_rows, save_vector_set

    rng = np.random.default_rng(0)
    a_ids = [f"r{n % 7}:{n}" for n in rng.permutation(40)]
    b_ids = [f"r{n % 7}:{n}" for n in rng.permutation(60)[:35]]
    save_vector_set(tmp_path / "a", a_ids, rng.normal(size=(40, 3)), {})
    save_vector_set(tmp_path / "b", b_ids, rng.normal(size=(35, 2)), {})
    a, b = load_vector_set(tmp_path / "a"), load_vector_set(tmp_path / "b")
    assert isinstance(a.ids, StringColumn) and a.ids == a_ids

    def expected(b_list: list[str]) -> tuple[list[str], list[int], list[int]]:
        where = {i: n for n, i in enumerate(b_list)}  # the last of repeated ids wins
        kept = [(n, i) for n, i in enumerate(a_ids) if i in where]
        return [i for _, i in kept], [n for n, _ in kept], [where[i] for _, i in kept]

    ids, rows_a, rows_b = align_rows(a, b)
    assert (ids, rows_a.tolist(), rows_b.tolist()) == expected(b_ids) and len(ids) > 10
    repeated = [*b_ids, b_ids[3]]  # an id twice: the dict join decides
    ids, rows_a, rows_b = align_rows(a, VectorSet(repeated, np.zeros((36, 2), dtype=np.float32)))
    assert (ids, rows_a.tolist(), rows_b.tolist()) == expected(repeated)
    monkeypatch.setattr(StringColumn, "hashes", lambda self: np.arange(len(self), dtype=np.int64))
    ids, rows_a, rows_b = align_rows(a, b)  # hashes that match the wrong rows: the bytes check catches it
    assert (ids, rows_a.tolist(), rows_b.tolist()) == expected(b_ids)


def test_split_pairs_by_recipe_codes_equals_a_split_by_recipe_strings() -> None:
    from toolkit.data.splits import split_of
    from toolkit.stages.pairs import Pairs, check_same_sources, split_pairs

    ids = [f"rec{n % 23}:{n}" for n in range(200)]
    x = np.arange(400, dtype=np.float32).reshape(200, 2)
    parts = split_pairs(Pairs(ids, x, x, "w", "e"), split_seed=3)
    for name, part in parts.items():
        want = [i for i in ids if split_of(i.split(":")[0], seed=3) == name]
        assert part.ids == want and part.text[:, 0].tolist() == [2 * ids.index(i) for i in want]
    codes, recipes = parts["train"].recipe_codes()
    assert [recipes[c] for c in codes] == parts["train"].groups
    check_same_sources(parts["train"], parts["val"])
    with pytest.raises(Exception, match="in both the training and validation"):
        check_same_sources(parts["train"], parts["train"])


def test_row_index_maps_like_a_dict_of_the_rows(monkeypatch: pytest.MonkeyPatch) -> None:
    from toolkit.data.columns import RowIndex

    strings = ["r1:1", "玉ねぎ:2", "r1:1", "", "r3:x"]
    want = {s: n for n, s in enumerate(strings)}
    for index in (RowIndex(StringColumn.from_strings(strings)),):
        assert {s: index[s] for s in strings} == want and index.get("r9:9") is None
        assert "r3:x" in index and "r3" not in index and index.get("", -1) == 3
    # every row hashing alike: rows are still told apart by their bytes
    monkeypatch.setattr("toolkit.data.columns.row_hash", lambda raw: 0)
    index = RowIndex(StringColumn.from_strings(strings))
    assert {s: index[s] for s in strings} == want and "r9:9" not in index
