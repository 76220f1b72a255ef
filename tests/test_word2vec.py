"""Word2Vec: real gensim training on a small generated corpus tokenised by real fugashi."""

from __future__ import annotations

import json
import random
from itertools import combinations

import numpy as np
import pytest
from click.testing import CliRunner

from toolkit.cli.text import train_w2v_cmd
from toolkit.data.jsonl import write_recipes_jsonl
from toolkit.data.schema import Recipe, Step
from toolkit.data.splits import split_of
from toolkit.errors import ModelDirError, ToolkitError
from toolkit.fingerprint import FingerprintMismatch
from toolkit.text.tokenizer import Tokenizer, TokenizerConfig
from toolkit.text.word2vec import Word2VecConfig, WordVectors, train_word2vec

VEGETABLES = ["人参", "玉ねぎ", "キャベツ", "茄子", "ピーマン", "大根"]
LIQUIDS = ["牛乳", "水", "酒", "醤油", "酢", "出汁"]
SOLID_VERBS = ["切る", "炒める", "刻む"]
LIQUID_VERBS = ["注ぐ", "沸かす"]


def corpus(n: int, seed: int = 0) -> list[str]:
    """A tiny grammar: vegetables are cut and fried on a board or pan; liquids are poured into pots."""
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        if rng.random() < 0.5:
            a, b = rng.sample(VEGETABLES, 2)
            out.append(f"{a}と{b}をまな板で{rng.choice(SOLID_VERBS)}。")
        else:
            a, b = rng.sample(LIQUIDS, 2)
            out.append(f"{a}と{b}を鍋に{rng.choice(LIQUID_VERBS)}。")
    return out


@pytest.fixture(scope="module")
def tokenizer() -> Tokenizer:
    return Tokenizer()


@pytest.fixture(scope="module")
def sentences(tokenizer: Tokenizer) -> list[list[str]]:
    return [tokenizer.tokenize(t) for t in corpus(2000)]


SMALL = Word2VecConfig(vector_size=24, window=3, min_count=1, epochs=15, seed=3, workers=1)


@pytest.fixture(scope="module")
def wv(sentences: list[list[str]], tokenizer: Tokenizer) -> WordVectors:
    return train_word2vec(sentences, SMALL, tokenizer_config=tokenizer.config)


def test_related_words_are_closer_than_unrelated(wv: WordVectors, tokenizer: Tokenizer) -> None:
    veg = [tokenizer.tokenize(v)[0] for v in VEGETABLES]
    liq = [tokenizer.tokenize(v)[0] for v in LIQUIDS]
    assert all(w in wv for w in veg + liq)
    within = np.mean([wv.similarity(a, b) for group in (veg, liq) for a, b in combinations(group, 2)])
    across = np.mean([wv.similarity(a, b) for a in veg for b in liq])
    assert within > across + 0.2
    # every vegetable is closer to the cutting verb than to the pouring one, and vice versa
    for v in veg:
        assert wv.similarity(v, "切る") > wv.similarity(v, "注ぐ")
    for v in liq:
        assert wv.similarity(v, "注ぐ") > wv.similarity(v, "切る")


def test_most_similar_is_cosine_ranking(wv: WordVectors) -> None:
    word = wv.vocab[0]
    got = wv.most_similar(word, k=5)
    unit = wv.matrix / np.linalg.norm(wv.matrix, axis=1, keepdims=True)
    sims = unit @ unit[0]
    order = [i for i in np.argsort(-sims) if i != 0][:5]
    assert [w for w, _ in got] == [wv.vocab[i] for i in order]
    assert np.allclose([s for _, s in got], sims[order], atol=1e-5)
    assert word not in [w for w, _ in got]
    with pytest.raises(ToolkitError, match="not in the Word2Vec vocabulary"):
        wv.most_similar("存在しない単語")


def test_deterministic_with_one_worker_and_seed(sentences, wv: WordVectors, tokenizer: Tokenizer) -> None:
    again = train_word2vec(iter(sentences), SMALL, tokenizer_config=tokenizer.config)  # a one-shot iterator
    assert again.vocab == wv.vocab
    assert np.array_equal(again.matrix, wv.matrix)
    assert again.fingerprint == wv.fingerprint
    other = train_word2vec(sentences, Word2VecConfig(**{**SMALL.__dict__, "seed": 4}))
    assert other.fingerprint != wv.fingerprint


def test_encoded_corpus_is_the_same_corpus_and_gives_the_same_model(
    sentences, wv: WordVectors, tokenizer: Tokenizer
) -> None:
    from toolkit.text.corpus import EncodedCorpus

    corpus = EncodedCorpus(sentences)
    corpus_list = list(corpus)
    assert len(corpus) == len(sentences) and list(corpus) == [list(s) for s in sentences]
    assert corpus[-1] == list(sentences[-1]) and corpus.tokens == sum(map(len, sentences))
    assert corpus.distinct == len({t for s in sentences for t in s})
    with pytest.raises(IndexError):
        corpus[len(sentences)]
    again = train_word2vec(corpus, SMALL, tokenizer_config=tokenizer.config)
    assert again.fingerprint == wv.fingerprint  # the same sentences in the same order: the same model
    small = EncodedCorpus(sentences[:3])
    small.add(["人参", "新語"])
    assert small[-1] == ["人参", "新語"] and len(small) == 4 and list(small)[:3] == corpus_list[:3]


def test_fingerprint_covers_tokenizer(wv: WordVectors) -> None:
    surface = WordVectors(wv.vocab, wv.matrix, TokenizerConfig(form="surface"), wv.config)
    assert surface.fingerprint != wv.fingerprint


def test_save_load_round_trip_and_fingerprint_checks(wv: WordVectors, tmp_path) -> None:
    d = wv.save(tmp_path / "w2v")
    assert {p.name for p in d.iterdir()} == {"word2vec.npy", "vocab.txt", "word2vec.json"}
    meta = json.loads((d / "word2vec.json").read_text(encoding="utf-8"))
    assert meta["fingerprint"] == wv.fingerprint
    assert meta["tokenizer_fingerprint"] == wv.tokenizer_fingerprint
    assert meta["config"]["sg"] == 0 and meta["config"]["vector_size"] == 24

    back = WordVectors.load(d, expected_fingerprint=wv.fingerprint)
    assert back.vocab == wv.vocab and np.array_equal(back.matrix, wv.matrix)
    assert back.config == wv.config and back.tokenizer_config == wv.tokenizer_config

    with pytest.raises(FingerprintMismatch, match="word2vec fingerprint mismatch"):
        WordVectors.load(d, expected_fingerprint="0" * 16)

    tampered = np.load(d / "word2vec.npy")
    tampered[0, 0] += 1.0
    np.save(d / "word2vec.npy", tampered)
    with pytest.raises(ModelDirError, match="recorded fingerprint"):
        WordVectors.load(d)

    (d / "vocab.txt").unlink()
    with pytest.raises(ModelDirError, match=r"missing vocab\.txt"):
        WordVectors.load(d)


def test_bad_training_input_is_refused(tokenizer: Tokenizer) -> None:
    with pytest.raises(ToolkitError, match="sentence 1 must be a list of tokens"):
        train_word2vec([["人参"], "人参を切る"], SMALL)
    with pytest.raises(ToolkitError, match="min_count=50"):
        train_word2vec([["人参", "切る"]] * 3, Word2VecConfig(vector_size=8, min_count=50))


def test_a_word_of_one_training_step_is_kept_by_default() -> None:
    """The default keeps words seen once (min_count 1): on small collections such a word is often the one
    a query needs, and the bag tower learns it from its one pair; an explicit min_count still drops it."""
    sentences = [["人参", "切る", "鍋"], ["人参", "炒める", "鍋"], ["玉葱", "炒める", "鍋"], ["蕪", "煮る"]]
    kept = train_word2vec(sentences, Word2VecConfig(vector_size=8, epochs=2))
    assert {"玉葱", "蕪", "煮る"} <= set(kept.index)
    dropped = train_word2vec(sentences, Word2VecConfig(vector_size=8, epochs=2, min_count=2))
    assert set(dropped.index) == {"人参", "炒める", "鍋"}


def test_the_vocabulary_is_capped_at_its_most_frequent_words() -> None:
    """``max_vocab`` bounds the word table on a large collection (its long tail of single words): the most
    frequent words are kept, and the cap is reported as a bad value when it is not a positive integer."""
    sentences = [["人参", "鍋", "切る"]] * 3 + [["人参", "鍋", "炒める"], ["人参", "煮る"], ["蕪"]]
    assert list(train_word2vec(sentences, Word2VecConfig(vector_size=8, epochs=2, max_vocab=3)).index) == [
        "人参",
        "鍋",
        "切る",
    ]
    assert len(train_word2vec(sentences, Word2VecConfig(vector_size=8, epochs=2)).index) == 6
    with pytest.raises(ToolkitError, match="max_vocab must be a positive integer"):
        Word2VecConfig(max_vocab=0)


def _letters(n: int) -> str:
    """A unique lowercase word per number (tokenised as one unknown noun)."""
    out = ""
    n += 26 * 27
    while n:
        n, r = divmod(n, 26)
        out = chr(ord("a") + r) + out
    return out


def test_cli_train_w2v_uses_only_the_training_split(tmp_path) -> None:
    recipes = []
    for i in range(40):
        rid = f"r{i:03d}"
        steps = (
            Step(1, f"{_letters(i)}と人参を切る。"),
            Step(2, f"牛乳を鍋に注ぐ。{_letters(i)}を炒める"),
        )
        recipes.append(Recipe(recipe_id=rid, title=f"料理{i}", steps=steps))
    root = tmp_path / "data"
    write_recipes_jsonl(root / "recipes.jsonl", recipes)
    (root / "recipes.jsonl").open("a", encoding="utf-8").write("{not json}\n")
    out = tmp_path / "model"
    result = CliRunner().invoke(
        train_w2v_cmd,
        [
            str(root),
            str(out),
            "--min-count",
            "1",
            "--epochs",
            "2",
            "--vector-size",
            "16",
            "--json",
            "--quiet",
        ],
    )
    assert result.exit_code == 0, result.output
    info = json.loads(result.output)
    train = [i for i in range(40) if split_of(f"r{i:03d}", seed=0) == "train"]
    assert 0 < len(train) < 40
    assert info["train_recipes"] == len(train) and info["train_steps"] == 2 * len(train)
    assert info["rejects"] == 1 and (out / "rejects.jsonl").is_file()
    wv = WordVectors.load(out, expected_fingerprint=info["fingerprint"])
    unique = {w for w in wv.vocab if w.isascii()}
    assert unique == {_letters(i) for i in train}
    assert wv.dim == 16 and {"人参", "切る", "牛乳", "注ぐ", "炒める"} <= set(wv.vocab)


def test_cli_train_w2v_missing_dataset(tmp_path) -> None:
    result = CliRunner().invoke(train_w2v_cmd, [str(tmp_path / "nope"), str(tmp_path / "out"), "--quiet"])
    assert result.exit_code == 2
    assert "does not exist" in result.output
