"""Tokenizer: real fugashi + unidic-lite; the cached fast path must equal a plain feature.pos1 filter."""

from __future__ import annotations

import json
import pickle
import random
import unicodedata
from concurrent.futures import ThreadPoolExecutor

import fugashi
import pytest
from click.testing import CliRunner

from toolkit.cli.text import tokenize_cmd
from toolkit.errors import ConfigError
from toolkit.text.tokenizer import INVISIBLE, Tokenizer, TokenizerConfig, load_stopwords, nfkc

# --- an independent, straightforward reference: fugashi nodes and word.feature --------------------------

_REF = fugashi.Tagger()
_UPPER = {c: c + 32 for c in range(ord("A"), ord("Z") + 1)}


def _clean(s: str, config: TokenizerConfig, normalise: bool) -> str:
    if normalise and config.nfkc:
        s = unicodedata.normalize("NFKC", s)
    if normalise and config.drop_invisible:
        s = INVISIBLE.sub("", s)
    s = "".join(s.split())
    return s.translate(_UPPER) if config.lowercase_ascii else s


def reference(text: str, config: TokenizerConfig) -> tuple[list[str], list[str]]:
    """(all, filtered) tokens per the documented rules, from word.feature.pos1 / .lemma."""
    text = text.replace("\x00", " ")
    if config.nfkc:
        text = unicodedata.normalize("NFKC", text)
    if config.drop_invisible:
        text = INVISIBLE.sub("", text)
    stop = {_clean(w, config, True) for w in config.stopwords}
    all_tokens, kept = [], []
    for word in _REF(text):
        surface = _clean(word.surface, config, False)
        if not surface:
            continue
        lemma = word.feature.lemma
        out = surface
        if config.form == "lemma" and lemma not in (None, "", "*"):
            if "-" in lemma and "-" not in word.surface:
                lemma = lemma.split("-")[0]
            out = _clean(lemma, config, True) or surface
        all_tokens.append(out)  # the keyword stream: every token, in the configured form
        if word.feature.pos1 in config.drop_pos:
            continue
        if out in stop or surface in stop:
            continue
        kept.append(out)
    return all_tokens, kept


# --- varied input ------------------------------------------------------------------------------------

FOODS = [
    "玉ねぎ",
    "人参",
    "じゃがいも",
    "豚バラ肉",
    "鶏むね肉",
    "ｷｬﾍﾞﾂ",
    "卵",
    "牛乳",
    "醤油",
    "みりん",
    "砂糖",
    "バター",
    "薄力粉",
    "だし汁",
    "生クリーム",
    "トマト缶",
    "ピーマン",
    "しめじ",
    "ベーコン",
    "豆腐",
    "ケーキ",
    "パン",
    "ＢＰ",
    "ｵﾘｰﾌﾞｵｲﾙ",
    "もやし",
    "鮭",
    "大根",
    "ごま油",
    "片栗粉",
    "ホットケーキミックス",
]
ACTIONS = [
    "炒めます",
    "切ります",
    "茹でる",
    "煮込みましょう",
    "加えてください",
    "混ぜ合わせる",
    "焼きました",
    "入れて",
    "注ぎます",
    "蒸らします",
    "冷やしておく",
    "盛り付けたら完成",
    "刻んで",
    "溶かします",
    "揚げない",
]
ADVS = [
    "弱火で",
    "中火で",
    "強火で",
    "さっと",
    "じっくり",
    "５分ほど",
    "10分",
    "軽く",
    "しっかり",
    "２～３分",
]
SHAPES = [
    "一口大に",
    "薄切りに",
    "みじん切りに",
    "千切りに",
    "乱切りに",
    "半分に",
    "1cm角に",
    "食べやすい大きさに",
]
TAILS = ["。", "！", "♪", "", " 🍳", "（お好みで）", "★", "…", "!!", "?", "。\n", "\r\n", "\u3000"]
EDGE = [
    "",
    " ",
    "\u3000\u3000",
    "🍅🍳🥕",
    "をにまで",
    "ＡＢＣ１２３ ａｂｃ",
    "ｶﾀｶﾅとﾊﾝｶｸ",
    "e-mail と T-シャツ と ｅ－ｍａｉｌ",
    "https://example.com/recipe?id=1&x=2 を参照",
    "大さじ½と小さじ1/2、①②③",
    "㍻の㌔グラム",
    "Preheat the oven to 180°C.",
    "改行\nタブ\tキャリッジ\rNBSP\xa0全角空白\u3000終わり",
    "NUL\x00の後も\x00続く",
    "\u2028\u2029\x85\x0b\x0c\x1c混在",
    "Ａ\u0301とé",
    "「玉ねぎ」（中）を『飴色』に",
    "ﾌﾗｲﾊﾟﾝにｻﾗﾀﾞ油をひく",
    "12345678901234567890",
    "ーーー〜〜〜・・・",
    "玉ね\u200bぎを\ufeff炒め\u00adる\u2060、ﾀﾏﾈ\u200dｷﾞ\ufe0f",
]


def grammar_sentences(n: int, seed: int = 0) -> list[str]:
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        parts = []
        for _ in range(rng.randint(1, 3)):
            a, b = rng.choice(FOODS), rng.choice(FOODS)
            parts.append(
                rng.choice(
                    [
                        f"{a}を{rng.choice(SHAPES)}{rng.choice(ACTIONS)}",
                        f"{a}と{b}を{rng.choice(ADVS)}{rng.choice(ACTIONS)}",
                        f"フライパンに{a}を入れ、{rng.choice(ADVS)}{rng.choice(ACTIONS)}",
                        f"{a}が柔らかくなったら{b}を{rng.choice(ACTIONS)}",
                    ]
                )
            )
        out.append("、".join(parts) + rng.choice(TAILS))
    return out


def random_soup(n: int, seed: int = 1) -> list[str]:
    """Random strings over hiragana, katakana (full and half width), kanji, ASCII, symbols and whitespace."""
    rng = random.Random(seed)
    ranges = [
        (0x3041, 0x3096),
        (0x30A1, 0x30FA),
        (0xFF66, 0xFF9F),
        (0x4E00, 0x4FFF),
        (0x21, 0x7E),
        (0xFF01, 0xFF5E),
        (0x2460, 0x24FF),
        (0x1F300, 0x1F64F),
        (0x3000, 0x303F),
    ]
    spaces = [" ", "\t", "\n", "\r", "\u3000", "\xa0", "\u2003", "\x0c", "\x00"]
    out = []
    for _ in range(n):
        chars = []
        for _ in range(rng.randint(1, 40)):
            if rng.random() < 0.08:
                chars.append(rng.choice(spaces))
            else:
                lo, hi = rng.choice(ranges)
                chars.append(chr(rng.randint(lo, hi)))
        out.append("".join(chars))
    return out


CORPUS = grammar_sentences(300) + random_soup(200) + EDGE

CONFIGS = [
    TokenizerConfig(),
    TokenizerConfig(form="surface"),
    TokenizerConfig(stopwords=frozenset({"炒める", "ＢＰ", "Cm", "の"})),
    TokenizerConfig(nfkc=False),
    TokenizerConfig(lowercase_ascii=False, drop_pos=("助詞",)),
    TokenizerConfig(drop_invisible=False),
]


@pytest.mark.filterwarnings("error::RuntimeWarning")
@pytest.mark.parametrize("config", CONFIGS, ids=lambda c: json.dumps(c.to_json(), ensure_ascii=False))
def test_fast_path_equals_plain_feature_filter(config: TokenizerConfig) -> None:
    tok = Tokenizer(config)
    expected = [reference(t, config) for t in CORPUS]
    for _ in range(2):  # cold cache, then warm
        assert [tok.tokenize(t) for t in CORPUS] == [e[1] for e in expected]
        assert [tok.tokenize_all(t) for t in CORPUS] == [e[0] for e in expected]
        assert [tok.tokenize_both(t) for t in CORPUS] == expected
    fresh = Tokenizer(config)  # tokenize_all first, on a cold cache
    assert [fresh.tokenize_all(t) for t in CORPUS] == [e[0] for e in expected]
    assert list(Tokenizer(config).tokenize_many(CORPUS)) == [e[1] for e in expected]


def test_drops_particles_and_symbols_keeps_lemmas() -> None:
    tok = Tokenizer()
    all_tokens, kept = tok.tokenize_both("玉ねぎを飴色になるまで炒める。")
    assert kept == ["玉葱", "飴色", "成る", "炒める"]
    assert all_tokens == ["玉葱", "を", "飴色", "に", "成る", "まで", "炒める", "。"]
    # the keyword stream is in lemma form too, so conjugations and spellings meet in BM25
    assert tok.tokenize_all("焼きます") == ["焼く", "ます"] and tok.tokenize_all("タマネギ")[0] == "玉葱"


def test_lemma_merges_inflections_surface_does_not() -> None:
    texts = ["野菜を炒め、", "野菜を炒めます。", "野菜を炒める。"]
    lemma = Tokenizer()
    surface = Tokenizer(TokenizerConfig(form="surface"))
    assert [lemma.tokenize(t) for t in texts] == [["野菜", "炒める"]] * 3
    assert [surface.tokenize(t)[1] for t in texts] == ["炒め", "炒め", "炒める"]
    assert Tokenizer().tokenize("ケーキとパン") == ["ケーキ", "パン"]  # UniDic's "-cake" suffix cut


def test_stopwords_and_stopword_file(tmp_path) -> None:
    path = tmp_path / "stop.txt"
    path.write_text("# kitchen words\n飴色\n\n  炒める  # verb\nＡＢＣ\n", encoding="utf-8")
    words = load_stopwords(path)
    assert words == {"飴色", "炒める", "ＡＢＣ"}
    tok = Tokenizer(TokenizerConfig(stopwords=words))
    assert tok.tokenize("玉ねぎを飴色になるまで炒める。ABC") == ["玉葱", "成る"]
    # the unfiltered stream keeps stopwords
    assert "飴色" in tok.tokenize_all("玉ねぎを飴色になるまで炒める。")
    with pytest.raises(ConfigError, match="cannot read"):
        load_stopwords(tmp_path / "missing.txt")


def test_nfkc_and_ascii_lowercase() -> None:
    assert Tokenizer().tokenize_all("ＡＢＣを１２３ｇ") == ["abc", "を", "123", "g"]
    assert Tokenizer(TokenizerConfig(lowercase_ascii=False)).tokenize("ＡＢＣ") == ["ABC"]
    raw = Tokenizer(TokenizerConfig(nfkc=False)).tokenize_all("１２３")
    assert raw == ["１２３"]
    assert Tokenizer().tokenize("ｶﾀｶﾅ") == Tokenizer().tokenize("カタカナ")


def test_invisible_characters_do_not_split_words() -> None:
    # a zero-width space, BOM, soft hyphen, word joiner or variation selector pasted inside a word (web pages,
    # word processors) must not change its tokens: the query and the indexed step would not meet
    tok = Tokenizer()
    plain = tok.tokenize_both("玉ねぎを炒める")
    for ch in ("\u200b", "\u200c", "\u200d", "\u2060", "\ufeff", "\u00ad", "\u200e", "\ufe0f", "\U000e0100"):
        assert tok.tokenize_both(f"玉ね{ch}ぎを炒{ch}める") == plain, repr(ch)
    assert tok.tokenize_all("ﾀﾏ\u200bﾈｷﾞ") == ["玉葱"]
    assert tok.tokenize_all("\u200b\ufeff") == []
    assert Tokenizer(TokenizerConfig(stopwords=frozenset({"炒\u200bめる"}))).tokenize("玉ねぎを炒める") == [
        "玉葱"
    ]


def test_configs_saved_before_drop_invisible_keep_their_tokens_and_fingerprint() -> None:
    saved = {"drop_pos": ["助詞"], "stopwords": [], "form": "lemma", "nfkc": True, "lowercase_ascii": True}
    old = TokenizerConfig.from_json(saved)
    assert old.drop_invisible is False and old.to_json() == saved  # the same JSON: the same fingerprint
    assert Tokenizer(old).tokenize_all("玉ね\u200bぎ") != ["玉葱"]  # as the model's index was made
    assert TokenizerConfig().to_json()["drop_invisible"] is True
    assert TokenizerConfig().fingerprint != TokenizerConfig(drop_invisible=False).fingerprint


def test_emoji_and_particles_only_give_nothing_filtered() -> None:
    tok = Tokenizer()
    assert tok.tokenize("🍅🍳") == []
    assert tok.tokenize("をにまで") == []
    assert tok.tokenize("") == []
    assert tok.tokenize_all("🍅🍳") != []


def test_no_token_contains_whitespace_so_whitespace_analyzer_round_trips() -> None:
    tok = Tokenizer()
    for text in CORPUS:
        all_tokens, kept = tok.tokenize_both(text)
        for stream in (all_tokens, kept):
            assert all(t and not any(c.isspace() for c in t) for t in stream), (text, stream)
            assert " ".join(stream).split() == stream
    assert tok.tokenize_all("NUL\x00の後") == ["nul", "の", "後"]


def test_fast_nfkc_equals_unicodedata() -> None:
    for text in CORPUS + ["Ａ\u0301", "ｶﾞｷﾞ", "①㍻㌔", "ｱ\u3099", "\uff21\u0308"]:
        assert nfkc(text) == unicodedata.normalize("NFKC", text), text


def test_config_json_round_trip_and_fingerprint() -> None:
    config = TokenizerConfig(stopwords=frozenset({"b", "a"}), form="surface")
    data = config.to_json()
    assert data["stopwords"] == ["a", "b"]
    assert TokenizerConfig.from_json(data) == config
    assert TokenizerConfig.from_json(json.dumps(data)) == config
    assert TokenizerConfig.from_json(data).fingerprint == config.fingerprint
    fingerprints = {c.fingerprint for c in CONFIGS}
    assert len(fingerprints) == len(CONFIGS)
    with pytest.raises(ConfigError, match="form"):
        TokenizerConfig(form="reading")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="unknown"):
        TokenizerConfig.from_json({"form": "lemma", "lower": True})


def test_threads_and_pickling_give_the_same_tokens() -> None:
    tok = Tokenizer()
    expected = [tok.tokenize(t) for t in CORPUS]
    shared = Tokenizer()
    with ThreadPoolExecutor(max_workers=4) as pool:
        got = list(pool.map(shared.tokenize, CORPUS))
    assert got == expected
    clone = pickle.loads(pickle.dumps(tok))
    assert clone.config == tok.config
    assert [clone.tokenize(t) for t in CORPUS] == expected


def test_rejects_non_text() -> None:
    with pytest.raises(TypeError, match="str"):
        Tokenizer().tokenize(None)  # type: ignore[arg-type]


def test_cli_tokenize(tmp_path) -> None:
    runner = CliRunner()
    result = runner.invoke(tokenize_cmd, ["玉ねぎを飴色になるまで炒める。"])
    assert result.exit_code == 0, result.output
    assert result.output.strip() == "玉葱 飴色 成る 炒める"
    result = runner.invoke(tokenize_cmd, ["--all", "--form", "surface", "玉ねぎを炒める"])
    assert result.output.strip() == "玉ねぎ を 炒める"
    texts = tmp_path / "in.txt"
    texts.write_text("人参を切る\n牛乳を注ぐ\n", encoding="utf-8")
    result = runner.invoke(tokenize_cmd, ["--file", str(texts), "--json"])
    assert result.exit_code == 0, result.output
    rows = json.loads(result.output)
    assert rows == [
        {"text": "人参を切る", "tokens": ["人参", "切る"]},
        {"text": "牛乳を注ぐ", "tokens": ["牛乳", "注ぐ"]},
    ]
    result = runner.invoke(tokenize_cmd, [])
    assert result.exit_code != 0 and "TEXT" in result.output


def test_cli_tokenize_refuses_an_argument_that_is_not_utf8() -> None:
    """A terminal in another encoding hands Python surrogate escapes: one usage error, not a traceback."""
    import subprocess
    import sys

    code = "import sys; from toolkit.cli.main import cli; sys.argv[0] = 'jrs'; cli()"
    res = subprocess.run(
        [
            sys.executable,
            "-c",
            code,
            "tokenize",
            "玉ねぎ",
            b"\xff\xe7\x82\x92".decode("utf-8", "surrogateescape"),
        ],
        capture_output=True,
        text=True,
        errors="replace",
    )
    assert res.returncode == 2 and "Traceback" not in res.stderr, res.stderr
    assert "TEXT 2" in res.stderr and "UTF-8" in res.stderr
