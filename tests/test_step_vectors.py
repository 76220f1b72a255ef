"""Step vectors: vectorised means checked against naive numpy; unusable steps are reported, never zero."""

from __future__ import annotations

import json

import numpy as np
import pytest
from click.testing import CliRunner

from toolkit.cli.text import step_vectors_cmd, train_w2v_cmd
from toolkit.data.jsonl import write_recipes_jsonl
from toolkit.data.schema import Recipe, Step
from toolkit.errors import ToolkitError
from toolkit.fingerprint import FingerprintMismatch
from toolkit.rejects import read_rejects
from toolkit.text.step_vectors import (
    encode_token_ids,
    mean_vectors,
    query_vector,
    save_step_vectors,
    step_vectors,
)
from toolkit.text.tokenizer import NO_WORD_REASON, Tokenizer, TokenizerConfig
from toolkit.text.word2vec import WordVectors
from toolkit.vectorset import load_vector_set


def test_mean_vectors_equals_naive_mean_on_random_data() -> None:
    rng = np.random.default_rng(0)
    vocab_size, dim, n = 50, 7, 300
    matrix = rng.standard_normal((vocab_size, dim)).astype(np.float32)
    lengths = rng.integers(0, 6, size=n)
    rows = [rng.integers(0, vocab_size, size=k) for k in lengths]
    flat = np.concatenate(rows).astype(np.int64)
    offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
    vectors, empty = mean_vectors(flat, offsets, matrix)
    assert vectors.shape == (n, dim) and vectors.dtype == np.float32
    assert np.array_equal(empty, lengths == 0) and empty.any()
    for i, r in enumerate(rows):
        if len(r):
            np.testing.assert_allclose(vectors[i], matrix[r].mean(axis=0), rtol=1e-5, atol=1e-6)


def test_encode_token_ids_drops_unknown_tokens() -> None:
    index = {"人参": 0, "切る": 1, "牛乳": 2}
    lists = [["人参", "を", "切る"], [], ["謎"], ["牛乳", "牛乳"]]
    flat, offsets = encode_token_ids(lists, index)
    assert flat.dtype == np.int64 and offsets.dtype == np.int64
    assert flat.tolist() == [0, 1, 2, 2]
    assert offsets.tolist() == [0, 2, 2, 2, 4]
    flat, offsets = encode_token_ids([], index)
    assert flat.tolist() == [] and offsets.tolist() == [0]
    assert encode_token_ids(iter([["切る"]]), index)[0].tolist() == [1]


def test_mean_vectors_refuses_bad_offsets() -> None:
    matrix = np.zeros((3, 2), dtype=np.float32)
    with pytest.raises(ValueError, match="offsets"):
        mean_vectors(np.array([0, 1]), np.array([0, 3]), matrix)
    with pytest.raises(ValueError, match="ids must lie"):
        mean_vectors(np.array([0, 5]), np.array([0, 2]), matrix)


@pytest.fixture(scope="module")
def tokenizer() -> Tokenizer:
    return Tokenizer()


@pytest.fixture(scope="module")
def wv(tokenizer: Tokenizer) -> WordVectors:
    vocab = ["人参", "切る", "牛乳", "注ぐ", "鍋", "玉葱", "炒める"]
    matrix = np.random.default_rng(1).standard_normal((len(vocab), 8)).astype(np.float32)
    return WordVectors(vocab, matrix, tokenizer.config)


def test_step_vectors_means_and_rejects(tokenizer: Tokenizer, wv: WordVectors) -> None:
    ids = ["r1:1", "r1:2", "r1:3", "r1:4", "r1:5", "r1:1"]
    texts = ["人参を切る。", "🍅🍳", "をにまで", "謎のスパイスを振る", "牛乳を鍋に注ぎます", "玉ねぎ"]
    result = step_vectors(ids, texts, tokenizer, wv)
    assert result.ids == ["r1:1", "r1:5"]
    by_id = dict(zip(result.ids, result.vectors, strict=True))
    for step_id, text in zip(ids[:5], texts[:5], strict=True):
        known = [wv.index[t] for t in tokenizer.tokenize(text) if t in wv.index]
        if known:
            np.testing.assert_allclose(by_id[step_id], wv.matrix[known].mean(axis=0), rtol=1e-5, atol=1e-6)
        else:
            assert step_id not in by_id
    reasons = {r.record: r for r in result.rejects}
    assert all(r.stage == "text" for r in result.rejects)
    assert reasons["r1:2"].reason == f"no in-vocabulary token after filtering: {NO_WORD_REASON}"
    assert reasons["r1:3"].reason == f"no in-vocabulary token after filtering: {NO_WORD_REASON}"
    assert "duplicate" in [r for r in result.rejects if r.record == "r1:1"][0].reason
    assert "r1:1" in result.ids  # the first occurrence is kept
    assert not np.any(np.all(result.vectors == 0, axis=1))


def test_chunked_tokenising_gives_the_same_vectors_bags_and_rejects(
    tokenizer: Tokenizer, wv: WordVectors, monkeypatch: pytest.MonkeyPatch
) -> None:
    import importlib

    sv = importlib.import_module("toolkit.text.step_vectors")

    texts = [
        "人参を切る。",
        "🍅🍳",
        "牛乳を鍋に注ぎます",
        "をにまで",
        "玉ねぎを炒める",
        "人参",
        "謎のスパイス",
    ] * 5
    ids = [f"r{i // 3}:{i % 3}" for i in range(len(texts))] + ["r0:0"]  # one duplicate at the end
    texts = [*texts, "玉ねぎ"]
    whole = step_vectors(ids, texts, tokenizer, wv)
    monkeypatch.setattr(sv, "TOKENIZE_CHUNK", 4)
    chunked = step_vectors(ids, texts, tokenizer, wv)
    assert chunked.ids == whole.ids and len(whole.ids) > 10
    assert np.array_equal(chunked.vectors, whole.vectors)
    assert np.array_equal(chunked.tokens.ids, whole.tokens.ids)
    assert np.array_equal(chunked.tokens.offsets, whole.tokens.offsets)
    assert [(r.record, r.reason) for r in chunked.rejects] == [(r.record, r.reason) for r in whole.rejects]
    for row, step_id in enumerate(whole.ids):  # bag i holds exactly the known tokens of step i
        text = texts[ids.index(step_id)]
        expected = [wv.index[t] for t in tokenizer.tokenize(text) if t in wv.index]
        assert whole.tokens.bag(row).tolist() == expected


def test_unknown_words_are_listed_in_the_reject(tokenizer: Tokenizer, wv: WordVectors) -> None:
    result = step_vectors(["x:1"], ["謎のスパイスを振る"], tokenizer, wv)
    assert result.ids == [] and result.vectors.shape == (0, 8)
    (reject,) = result.rejects
    assert reject.reason.startswith("no in-vocabulary token after filtering: ")
    for token in tokenizer.tokenize("謎のスパイスを振る"):
        assert token in reject.reason


def test_tokenizer_must_match_the_model(wv: WordVectors) -> None:
    other = Tokenizer(TokenizerConfig(form="surface"))
    with pytest.raises(FingerprintMismatch, match="tokenizer"):
        step_vectors(["a:1"], ["人参を切る"], other, wv)
    with pytest.raises(FingerprintMismatch):
        query_vector("人参を切る", other, wv)


def test_query_vector(tokenizer: Tokenizer, wv: WordVectors) -> None:
    vec = query_vector("人参を切ります", tokenizer, wv)
    np.testing.assert_allclose(vec, wv.matrix[[0, 1]].mean(axis=0), rtol=1e-5, atol=1e-6)
    with pytest.raises(ToolkitError, match="no in-vocabulary token.*スパイス"):
        query_vector("スパイスを振る", tokenizer, wv)


def test_save_step_vectors_writes_a_text_vector_set(tokenizer: Tokenizer, wv: WordVectors, tmp_path) -> None:
    result = step_vectors(["a:1", "a:2"], ["人参を切る", "牛乳"], tokenizer, wv)
    save_step_vectors(tmp_path / "sv", result, wv)
    vs = load_vector_set(tmp_path / "sv")
    assert vs.ids == ["a:1", "a:2"]
    assert np.array_equal(np.asarray(vs.vectors), result.vectors)
    assert vs.meta["kind"] == "text" and vs.meta["word2vec_fingerprint"] == wv.fingerprint


def test_cli_step_vectors(tmp_path) -> None:
    recipes = [
        Recipe(
            recipe_id=f"r{i:02d}",
            title="料理",
            steps=(Step(1, "人参と玉ねぎを切る。"), Step(2, "牛乳を鍋に注ぐ。"), Step(3, "をにまで")),
        )
        for i in range(12)
    ]
    root = tmp_path / "data"
    write_recipes_jsonl(root / "recipes.jsonl", recipes)
    runner = CliRunner()
    model = tmp_path / "w2v"
    args = [str(root), str(model), "--min-count", "1", "--epochs", "1", "--vector-size", "8", "--quiet"]
    assert runner.invoke(train_w2v_cmd, args).exit_code == 0
    out = tmp_path / "sv"
    result = runner.invoke(step_vectors_cmd, [str(root), str(model), str(out), "--json", "--quiet"])
    assert result.exit_code == 0, result.output
    info = json.loads(result.output)
    assert info["steps"] == 36 and info["vectors"] == 24 and info["no_token"] == 12
    vs = load_vector_set(out)
    assert len(vs.ids) == 24 and vs.dim == 8 and "r00:3" not in vs.ids
    rejects = list(read_rejects(out / "rejects.jsonl"))
    assert {r.record for r in rejects} == {f"r{i:02d}:3" for i in range(12)}

    result = runner.invoke(
        step_vectors_cmd, [str(root), str(model), str(out), "--expect-fingerprint", "0" * 16, "--quiet"]
    )
    assert result.exit_code == 2 and "fingerprint mismatch" in result.output


def test_step_vectors_count_the_words_the_model_lacks(
    tokenizer: Tokenizer, wv: WordVectors, tmp_path
) -> None:
    """Each usable step's count of words dropped as unknown is kept with the vectors (the word grounding picks
    its share on validation steps that have one), and paired and split with them."""
    from toolkit.stages.pairs import Pairs
    from toolkit.text.tokens import load_unknown_counts

    ids, texts = ["a:1", "a:2", "a:3"], ["人参を切る", "人参とスパイスを切る", "牛乳"]
    result = step_vectors(ids, texts, tokenizer, wv)
    expected = [sum(t not in wv.index for t in tokenizer.tokenize(texts[ids.index(i)])) for i in result.ids]
    assert result.unknown is not None and result.unknown.tolist() == expected
    assert expected[1] > 0 and expected[0] == expected[2] == 0  # スパイス is not in the test vocabulary
    save_step_vectors(tmp_path / "sv", result, wv)
    assert load_unknown_counts(tmp_path / "sv", len(result.ids)).tolist() == expected
    assert load_unknown_counts(tmp_path, 3) is None  # a set written before the counts
    pairs = Pairs(list(result.ids), result.vectors, result.vectors, "w", "e", unknown=result.unknown)
    assert pairs.subset(np.array([len(expected) - 1, 0])).unknown.tolist() == [expected[-1], expected[0]]
