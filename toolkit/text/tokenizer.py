"""Japanese tokenisation with fugashi + unidic-lite: the filtered stream for Word2Vec, the full one for BM25.

Two streams come out of one MeCab analysis:

* ``tokenize`` (filtered): content words only; particles, auxiliary verbs, symbols (``drop_pos``) and
  stopwords are dropped; each token is the UniDic lemma (``form="lemma"``) or the surface. This is
  the stream Word2Vec is trained on and step vectors are built from.
* ``tokenize_all`` (unfiltered): every token, in the same form (lemma by default, so conjugations
  match). Elasticsearch indexes it joined by spaces and splits it back with the ``whitespace``
  analyzer, so no token ever contains whitespace.

Normalisation: the text is NFKC-normalised before tagging (``nfkc``), NUL characters become spaces,
invisible default-ignorable characters (zero-width space and joiners, soft hyphen, BOM, bidi marks, variation
selectors: :data:`INVISIBLE`) are removed (``drop_invisible``; without it a zero-width space inside a word
splits it: 「玉ね\u200bぎ」 would not be 玉葱), whitespace characters MeCab does not skip itself (e.g. ``\\r``,
NBSP) are removed from tokens, ASCII ``A-Z`` are lowercased (``lowercase_ascii``). Lemmas are NFKC-normalised too; a missing lemma (unknown
words, ``*``) falls back to the surface, and UniDic's loanword suffix is cut (``ケーキ-cake`` ->
``ケーキ``) unless the surface itself has a hyphen.

Speed: MeCab prints ``surface, left context id, right context id`` per token (cheap: no feature CSV
is parsed) and each line is looked up in a per-tokenizer cache, so the per-token Python work is one
dict lookup done in C (``map``/``filter``). The cache is exact: two dictionary entries with the same
surface and the same context ids cost the same in every context except for their word cost, so
MeCab's Viterbi search always picks the same one of them; the triple therefore determines the full
feature. A sentence with a line not yet cached is parsed again with the full features, which fills
the cache (and checks that assumption, falling back to full parsing for good if it ever fails).

Thread safety: MeCab taggers are not thread-safe. One pair of taggers is shared per process and
every parse holds a module lock, so a :class:`Tokenizer` may be used from several threads (serially).
Processes (``multiprocessing``) each build their own taggers; a tokenizer pickles as its config.
"""

from __future__ import annotations

import json
import re
import threading
import unicodedata
import warnings
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import fugashi

from toolkit.chars import INVISIBLE
from toolkit.errors import ConfigError
from toolkit.fingerprint import fingerprint

Form = Literal["lemma", "surface"]

DEFAULT_DROP_POS: tuple[str, ...] = ("助詞", "助動詞", "補助記号", "記号")
#: Why a text gives no filtered token at all: ``jrs validate`` and the text stage of a build say it alike.
NO_WORD_REASON = "the text has no word the tokenizer keeps (only emoji, symbols or particles)"

# MeCab output formats (escaped for MeCab's own argument parser). The fast format is what the cache is
# keyed on; the full one adds pos1 and lemma (unknown words have no lemma field: "*"). The "@" lines
# for BOS/EOS keep whitespace tokens at either end from being stripped off the output by fugashi.
_FAST_ARGS = r'-O "" -F%m\\t%phl\\t%phr\\n -U%m\\t%phl\\t%phr\\n -B@\\n -E@'
_FULL_ARGS = r'-O "" -F%m\\t%phl\\t%phr\\t%f[0]\\t%f[7]\\n -U%m\\t%phl\\t%phr\\t%f[0]\\t*\\n -B@\\n -E@'
_MARK = "@"

_ASCII_LOWER = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ", "abcdefghijklmnopqrstuvwxyz")

#: Entries kept per tokenizer before its line cache is cleared (one entry per distinct analysed token).
MAX_CACHE_ENTRIES = 2_000_000

_lock = threading.Lock()
_taggers: tuple[Any, Any] | None = None


def _get_taggers() -> tuple[Any, Any]:
    """The process-wide (fast, full) taggers, created on first use."""
    global _taggers
    if _taggers is None:
        with _lock:
            if _taggers is None:
                _taggers = (fugashi.Tagger(_FAST_ARGS), fugashi.Tagger(_FULL_ARGS))
    return _taggers


_DICTIONARY_ID: str | None = None


def dictionary_id() -> str:
    """Name and version of the MeCab dictionary in use (part of every tokenizer fingerprint)."""
    global _DICTIONARY_ID
    if _DICTIONARY_ID is None:
        info = _get_taggers()[0].dictionary_info[0]
        path = Path(info["filename"]).parent
        version_file = path / "version"
        version = version_file.read_text(encoding="utf-8").strip() if version_file.is_file() else "?"
        _DICTIONARY_ID = f"{path.parent.name}/{version}/{info['size']}"
    return _DICTIONARY_ID


@dataclass(frozen=True)
class TokenizerConfig:
    """How text becomes tokens; its :attr:`fingerprint` travels with every model trained on the tokens."""

    drop_pos: tuple[str, ...] = DEFAULT_DROP_POS
    stopwords: frozenset[str] = field(default_factory=frozenset)
    form: Form = "lemma"
    nfkc: bool = True
    lowercase_ascii: bool = True
    #: remove :data:`INVISIBLE` characters before tagging; configs saved before this option existed read as False
    #: (their tokens, and so their fingerprints, stay as they were)
    drop_invisible: bool = True

    def __post_init__(self) -> None:
        if self.form not in ("lemma", "surface"):
            raise ConfigError(f"tokenizer form must be 'lemma' or 'surface', got {self.form!r}")
        if isinstance(self.drop_pos, str) or not all(isinstance(p, str) for p in self.drop_pos):
            raise ConfigError(f"drop_pos must be a tuple of part-of-speech names, got {self.drop_pos!r}")
        object.__setattr__(self, "drop_pos", tuple(self.drop_pos))
        if isinstance(self.stopwords, str) or not all(isinstance(w, str) for w in self.stopwords):
            raise ConfigError("stopwords must be a set of strings")
        object.__setattr__(self, "stopwords", frozenset(self.stopwords))

    def to_json(self) -> dict[str, Any]:
        """A JSON-able dict (stopwords sorted) that :meth:`from_json` reads back (``drop_invisible`` only when
        set, so a config from before that option keeps its fingerprint)."""
        out: dict[str, Any] = {
            "drop_pos": list(self.drop_pos),
            "stopwords": sorted(self.stopwords),
            "form": self.form,
            "nfkc": self.nfkc,
            "lowercase_ascii": self.lowercase_ascii,
        }
        if self.drop_invisible:
            out["drop_invisible"] = True
        return out

    @classmethod
    def from_json(cls, data: Mapping[str, Any] | str) -> TokenizerConfig:
        """Build a config from :meth:`to_json` output (a dict or its JSON text)."""
        obj = json.loads(data) if isinstance(data, str) else dict(data)
        known = {"drop_pos", "stopwords", "form", "nfkc", "lowercase_ascii", "drop_invisible"}
        unknown = set(obj) - known
        if unknown:
            raise ConfigError(f"unknown tokenizer config keys: {', '.join(sorted(unknown))}")
        if "drop_pos" in obj:
            obj["drop_pos"] = tuple(obj["drop_pos"])
        if "stopwords" in obj:
            obj["stopwords"] = frozenset(obj["stopwords"])
        obj.setdefault("drop_invisible", False)  # saved before the option existed: tokens as they were then
        return cls(**obj)

    @property
    def fingerprint(self) -> str:
        """Hash of the config and the dictionary version: equal fingerprints mean equal tokens."""
        return fingerprint("tokenizer", self.to_json(), dictionary_id())


def load_stopwords(path: str | Path) -> frozenset[str]:
    """Read a stopword file: one word per line; blank lines and ``#`` comments are ignored."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as e:
        raise ConfigError(f"cannot read stopword file {str(p)!r}: {e.strerror or e}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"stopword file {str(p)!r} is not UTF-8") from None
    words = set()
    for line in text.splitlines():
        word = line.split("#", 1)[0].strip()
        if word:
            words.add(word)
    return frozenset(words)


_is_normalized = unicodedata.is_normalized
_normalize = unicodedata.normalize


def _changing_chars_class() -> re.Pattern[str]:
    """A regex for runs of characters that NFKC changes, in the blocks Japanese text draws them from.

    (Latin-1 supplement, general punctuation to CJK compatibility, CJK compatibility forms,
    half-/full-width forms: full-width ASCII, half-width katakana, ℃, ①, ㍻, ...)
    """
    blocks = [(0xA0, 0x100), (0x2000, 0x3400), (0xFE30, 0xFE50), (0xFF00, 0xFFF0)]
    cps = [c for lo, hi in blocks for c in range(lo, hi) if _normalize("NFKC", chr(c)) != chr(c)]
    parts, i = [], 0
    while i < len(cps):
        j = i
        while j + 1 < len(cps) and cps[j + 1] == cps[j] + 1:
            j += 1
        parts.append(re.escape(chr(cps[i])) + (f"-{re.escape(chr(cps[j]))}" if j > i else ""))
        i = j + 1
    return re.compile(f"[{''.join(parts)}]+")


_CHANGING = _changing_chars_class()


def _nfkc_run(match: re.Match[str]) -> str:
    return _normalize("NFKC", match.group())


def nfkc(text: str) -> str:
    """``unicodedata.normalize("NFKC", text)``, several times faster on typical Japanese recipe text.

    Runs of characters NFKC changes (full-width digits, half-width katakana, ℃ ...) are normalised on
    their own; each run's NFKC is equivalent to its compatibility decomposition, so NFKC of the result
    equals NFKC of the original, and when the result is already normalised it *is* that NFKC. Anything
    else (e.g. a combining mark after a run) falls back to normalising the whole text.
    """
    if _is_normalized("NFKC", text):
        return text
    text = _CHANGING.sub(_nfkc_run, text)
    return text if _is_normalized("NFKC", text) else _normalize("NFKC", text)


def _prepare_nfkc(text: str) -> str:
    """The text MeCab sees: NUL (which would end MeCab's C string) becomes a space, then NFKC."""
    if not isinstance(text, str):
        raise TypeError(f"text must be a str, got {type(text).__name__}")
    if "\x00" in text:
        text = text.replace("\x00", " ")
    return nfkc(text)


def _prepare_plain(text: str) -> str:
    """As :func:`_prepare_nfkc`, without NFKC."""
    if not isinstance(text, str):
        raise TypeError(f"text must be a str, got {type(text).__name__}")
    return text.replace("\x00", " ") if "\x00" in text else text


def _drop_invisible(text: str) -> str:
    """``text`` without :data:`INVISIBLE` characters."""
    return INVISIBLE.sub("", text)


def _strip_ws(token: str) -> str:
    """Remove every whitespace character (Python's definition, a superset of Lucene's)."""
    return "".join(token.split())


class Tokenizer:
    """Tokenises Japanese text according to a :class:`TokenizerConfig` (see the module docstring)."""

    def __init__(self, config: TokenizerConfig | None = None) -> None:
        self.config = config or TokenizerConfig()
        self._drop = frozenset(self.config.drop_pos)
        self._stop = frozenset(self._norm(w) for w in self.config.stopwords)
        self._all: dict[str, str] = {_MARK: ""}
        self._filtered: dict[str, str] = {_MARK: ""}
        self._fast = True
        self._tagger, self._full_tagger = _get_taggers()
        prepare = _prepare_nfkc if self.config.nfkc else _prepare_plain
        if self.config.drop_invisible:
            self._prepare = lambda text: _drop_invisible(prepare(text))
        else:
            self._prepare = prepare

    def __reduce__(self) -> tuple[Any, ...]:
        return (Tokenizer, (self.config,))

    def __repr__(self) -> str:
        return f"Tokenizer({self.config!r})"

    @property
    def fingerprint(self) -> str:
        return self.config.fingerprint

    # -- normalisation -------------------------------------------------------------------------------

    def _norm(self, s: str) -> str:
        if self.config.nfkc:
            s = nfkc(s)
        if self.config.drop_invisible:
            s = _drop_invisible(s)
        s = _strip_ws(s)
        return s.translate(_ASCII_LOWER) if self.config.lowercase_ascii else s

    def _decide(self, surface: str, pos1: str, lemma: str | None) -> tuple[str, str]:
        """The (unfiltered, filtered) token for one analysed word; ``""`` means "no token".

        Both streams use the configured form (the lemma by default), so a keyword query 「焼く」 matches a
        step that says 「焼きます」; the unfiltered stream only keeps what the filter drops."""
        token = _strip_ws(surface)
        if self.config.lowercase_ascii:
            token = token.translate(_ASCII_LOWER)
        if not token:
            return "", ""
        out = token
        if self.config.form == "lemma" and lemma and lemma != "*":
            if "-" in lemma and "-" not in surface:
                lemma = lemma.split("-", 1)[0]
            out = self._norm(lemma) or token
        if pos1 in self._drop or out in self._stop or token in self._stop:
            return out, ""
        return out, out

    # -- analysis ------------------------------------------------------------------------------------

    def _full(self, text: str) -> tuple[list[str], list[str]]:
        """Analyse ``text`` with full features; fill the cache (checking it); return both streams."""
        with _lock:
            out = self._full_tagger.parse(text)
        if len(self._all) > MAX_CACHE_ENTRIES:
            self._all = {_MARK: ""}
            self._filtered = {_MARK: ""}
        all_tokens: list[str] = []
        filtered: list[str] = []
        for line in out.split("\n")[1:-1]:
            surface, lid, rid, pos1, lemma = line.split("\t")
            token, kept = self._decide(surface, pos1, lemma)
            if token:
                all_tokens.append(token)
            if kept:
                filtered.append(kept)
            key = f"{surface}\t{lid}\t{rid}"
            old = self._filtered.get(key)
            if old is not None and (old != kept or self._all.get(key, token) != token):
                warnings.warn(
                    f"tokenizer cache disagrees with MeCab for {surface!r}; using full analysis from now on",
                    RuntimeWarning,
                    stacklevel=3,
                )
                self._fast = False
            self._all[key] = token
            self._filtered[key] = kept
        return all_tokens, filtered

    def tokenize(self, text: str) -> list[str]:
        """Filtered tokens (content words, lemma or surface form): the Word2Vec stream."""
        text = self._prepare(text)
        if self._fast:
            with _lock:
                lines = self._tagger.parse(text).split("\n")
            try:
                return list(filter(None, map(self._filtered.__getitem__, lines)))
            except KeyError:
                pass
        return self._full(text)[1]

    def tokenize_all(self, text: str) -> list[str]:
        """Every token (the configured form), whitespace-free: the BM25 keyword stream."""
        text = self._prepare(text)
        if self._fast:
            with _lock:
                lines = self._tagger.parse(text).split("\n")
            try:
                return list(filter(None, map(self._all.__getitem__, lines)))
            except KeyError:
                pass
        return self._full(text)[0]

    def tokenize_both(self, text: str) -> tuple[list[str], list[str]]:
        """``(tokenize_all(text), tokenize(text))`` from a single analysis."""
        text = self._prepare(text)
        if self._fast:
            with _lock:
                lines = self._tagger.parse(text).split("\n")
            try:
                kept = list(filter(None, map(self._filtered.__getitem__, lines)))
                return list(filter(None, map(self._all.__getitem__, lines))), kept
            except KeyError:
                pass
        return self._full(text)

    def tokenize_many(self, texts: Iterable[str]) -> Iterator[list[str]]:
        """Filtered tokens for each text, lazily."""
        for text in texts:
            yield self.tokenize(text)
