"""Word2Vec (gensim, CBOW) trained on filtered step tokens, and the word vectors it yields.

Train on the TRAINING split only (the caller selects it): vectors learnt from validation or test
steps would leak evaluation text into the model.

A trained model is plain data: ``vocab`` (list of words, row order) and a float32 matrix ``[V, D]``.
On disk (:meth:`WordVectors.save`): ``word2vec.npy`` (matrix), ``vocab.txt`` (one word per line) and
``word2vec.json`` (fingerprint, training config, tokenizer config and fingerprint, counts). The
fingerprint hashes vocabulary, vectors and the tokenizer fingerprint, so step vectors and indices
built from a model can name exactly which model and tokenisation produced them.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from toolkit.errors import ConfigError, ModelDirError, ToolkitError, plain_int
from toolkit.fingerprint import check_fingerprint, fingerprint
from toolkit.seeding import check_seed
from toolkit.text.tokenizer import TokenizerConfig

VECTORS_FILE = "word2vec.npy"
VOCAB_FILE = "vocab.txt"
META_FILE = "word2vec.json"
FORMAT_VERSION = 1


@dataclass(frozen=True)
class Word2VecConfig:
    """Training settings (CBOW, negative sampling). ``workers=1`` plus ``seed`` makes training deterministic."""

    vector_size: int = 300
    window: int = 5
    # 1: a word of a single training step is kept. On small collections with real wording (the emoji
    # artwork: a tenth to a quarter of the queries hold such a word) that is worth +1.5 R@10; the bag
    # tower fine-tunes it from its one pair (docs/quality-log.md, 2026-12-06)
    min_count: int = 1
    # at most this many words, the most frequent (gensim's max_final_vocab raises min_count as needed): a
    # large collection's long tail of single words would otherwise grow every text tower's word table
    # (300 float32 a word: 120 MB at the cap)
    max_vocab: int = 100_000
    epochs: int = 20
    seed: int = 0
    workers: int = 1

    def __post_init__(self) -> None:
        for name in ("vector_size", "window", "min_count", "max_vocab", "epochs", "workers"):
            value = getattr(self, name)
            number = plain_int(value)  # a NumPy integer made plain (the manifest's JSON)
            if number is None or number < 1:
                raise ConfigError(f"word2vec {name} must be a positive integer, got {value!r}")
            object.__setattr__(self, name, number)  # frozen
        object.__setattr__(self, "seed", check_seed("word2vec seed", self.seed))  # frozen

    def to_json(self) -> dict[str, Any]:
        return {**asdict(self), "sg": 0}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Word2VecConfig:
        return cls(**{k: v for k, v in data.items() if k != "sg"})


@dataclass
class WordVectors:
    """Vocabulary + float32 matrix (row ``i`` is ``vocab[i]``) + the tokenizer config the words came from."""

    vocab: list[str]
    matrix: np.ndarray
    tokenizer_config: TokenizerConfig
    config: Word2VecConfig | None = None
    stats: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.matrix = np.ascontiguousarray(self.matrix, dtype=np.float32)
        if self.matrix.ndim != 2 or self.matrix.shape[0] != len(self.vocab):
            raise ValueError(f"matrix shape {self.matrix.shape} does not match {len(self.vocab)} words")
        if len(set(self.vocab)) != len(self.vocab):
            raise ValueError("vocabulary has duplicate words")
        self._index: dict[str, int] | None = None
        self._unit: np.ndarray | None = None
        self._fingerprint: str | None = None

    def __len__(self) -> int:
        return len(self.vocab)

    def __contains__(self, word: object) -> bool:
        return word in self.index

    @property
    def dim(self) -> int:
        return int(self.matrix.shape[1])

    @property
    def index(self) -> dict[str, int]:
        """Word -> row."""
        if self._index is None:
            self._index = {w: i for i, w in enumerate(self.vocab)}
        return self._index

    @property
    def tokenizer_fingerprint(self) -> str:
        return self.tokenizer_config.fingerprint

    @property
    def fingerprint(self) -> str:
        """Hash of vocabulary, vectors and tokenizer fingerprint."""
        if self._fingerprint is None:
            self._fingerprint = fingerprint("word2vec", self.vocab, self.matrix, self.tokenizer_fingerprint)
        return self._fingerprint

    def vector(self, word: str) -> np.ndarray:
        """The vector of ``word``; :class:`ToolkitError` if it is not in the vocabulary."""
        row = self.index.get(word)
        if row is None:
            raise ToolkitError(f"word {word!r} is not in the Word2Vec vocabulary ({len(self.vocab)} words)")
        return self.matrix[row]

    def most_similar(self, word: str, k: int = 10) -> list[tuple[str, float]]:
        """The ``k`` words with the highest cosine similarity to ``word`` (itself excluded)."""
        query = self.vector(word)
        if self._unit is None:
            norms = np.linalg.norm(self.matrix, axis=1, keepdims=True)
            self._unit = self.matrix / np.maximum(norms, 1e-12)
        q = query / max(float(np.linalg.norm(query)), 1e-12)
        sims = self._unit @ q
        sims[self.index[word]] = -np.inf
        k = max(0, min(k, len(self.vocab) - 1))
        if k == 0:
            return []
        top = np.argpartition(-sims, k - 1)[:k]
        top = top[np.argsort(-sims[top], kind="stable")]
        return [(self.vocab[i], float(sims[i])) for i in top]

    def similarity(self, a: str, b: str) -> float:
        """Cosine similarity of two in-vocabulary words."""
        va, vb = self.vector(a), self.vector(b)
        denom = max(float(np.linalg.norm(va) * np.linalg.norm(vb)), 1e-12)
        return float(va @ vb) / denom

    # -- persistence ---------------------------------------------------------------------------------

    def save(self, directory: str | Path) -> Path:
        """Write ``word2vec.npy``, ``vocab.txt`` and ``word2vec.json`` under ``directory``."""
        d = Path(directory)
        d.mkdir(parents=True, exist_ok=True)
        bad = next((w for w in self.vocab if not w or any(c.isspace() for c in w)), None)
        if bad is not None:
            raise ValueError(f"cannot save word {bad!r}: words must be non-empty and free of whitespace")
        np.save(d / VECTORS_FILE, self.matrix)
        (d / VOCAB_FILE).write_text("".join(f"{w}\n" for w in self.vocab), encoding="utf-8")
        meta = {
            "format_version": FORMAT_VERSION,
            "fingerprint": self.fingerprint,
            "vocab_size": len(self.vocab),
            "dim": self.dim,
            "config": self.config.to_json() if self.config else None,
            "tokenizer": self.tokenizer_config.to_json(),
            "tokenizer_fingerprint": self.tokenizer_fingerprint,
            "stats": self.stats,
        }
        (d / META_FILE).write_text(json.dumps(meta, ensure_ascii=False, indent=2), encoding="utf-8")
        return d

    @classmethod
    def load(cls, directory: str | Path, expected_fingerprint: str | None = None) -> WordVectors:
        """Read a model saved by :meth:`save`.

        Raises :class:`ModelDirError` when files are missing, inconsistent or were altered after saving,
        and :class:`~toolkit.fingerprint.FingerprintMismatch` when ``expected_fingerprint`` is given and
        differs (also when the dictionary the tokenizer used has changed since training).
        """
        d = Path(directory)
        missing = [n for n in (VECTORS_FILE, VOCAB_FILE, META_FILE) if not (d / n).is_file()]
        if missing:
            raise ModelDirError(f"Word2Vec model directory {str(d)!r} is missing {', '.join(missing)}")
        try:
            meta = json.loads((d / META_FILE).read_text(encoding="utf-8"))
            matrix = np.load(d / VECTORS_FILE, allow_pickle=False)
            vocab = (d / VOCAB_FILE).read_text(encoding="utf-8").split("\n")[:-1]
            tok = TokenizerConfig.from_json(meta["tokenizer"])
            config = Word2VecConfig.from_json(meta["config"]) if meta.get("config") else None
            wv = cls(vocab, matrix, tok, config, dict(meta.get("stats") or {}))
        except (ValueError, KeyError, TypeError, ConfigError, UnicodeDecodeError) as e:
            raise ModelDirError(f"Word2Vec model directory {str(d)!r} is unreadable: {e}") from None
        if meta.get("tokenizer_fingerprint") != wv.tokenizer_fingerprint:
            check_fingerprint(
                "tokenizer",
                str(meta.get("tokenizer_fingerprint")),
                wv.tokenizer_fingerprint,
                "the MeCab dictionary (or the recorded tokenizer settings) differ from training",
            )
        stored = meta.get("fingerprint")
        wv_fp = fingerprint("word2vec", wv.vocab, wv.matrix, str(meta.get("tokenizer_fingerprint")))
        if stored != wv_fp:
            raise ModelDirError(
                f"Word2Vec model directory {str(d)!r} does not match its recorded fingerprint "
                f"{stored} (files changed after saving?)"
            )
        if expected_fingerprint is not None:
            check_fingerprint("word2vec", expected_fingerprint, wv.fingerprint)
        return wv


def _as_sequence(sentences: Iterable[Sequence[str]]) -> tuple[Sequence[Sequence[str]], int]:
    """Materialise one-shot iterables (gensim needs several passes); return it and the token count."""
    seq = sentences if isinstance(sentences, Sequence) else list(sentences)
    tokens = 0
    for i, s in enumerate(seq):
        if isinstance(s, str) or not isinstance(s, Sequence):
            raise ToolkitError(f"sentence {i} must be a list of tokens, got {type(s).__name__}")
        tokens += len(s)
    return seq, tokens


def train_word2vec(
    sentences: Iterable[Sequence[str]],
    config: Word2VecConfig | None = None,
    *,
    tokenizer_config: TokenizerConfig | None = None,
) -> WordVectors:
    """Train CBOW Word2Vec on token lists from the TRAINING split only.

    ``sentences`` may be any iterable (a one-shot generator is materialised: gensim reads it once for
    the vocabulary and once per epoch). ``tokenizer_config`` is the configuration that produced the
    tokens (default: :class:`TokenizerConfig` defaults); it is recorded in the model.
    """
    from gensim.models import Word2Vec

    config = config or Word2VecConfig()
    tokenizer_config = tokenizer_config or TokenizerConfig()
    seq, tokens = _as_sequence(sentences)
    model = Word2Vec(
        vector_size=config.vector_size,
        window=config.window,
        min_count=config.min_count,
        max_final_vocab=config.max_vocab,
        sg=0,
        seed=config.seed,
        workers=config.workers,
        epochs=config.epochs,
    )
    model.build_vocab(seq)
    if not model.wv.index_to_key:
        raise ToolkitError(
            f"no word occurs at least min_count={config.min_count} times in {len(seq)} training sentences "
            f"({tokens} tokens); lower --min-count or use more data"
        )
    model.train(seq, total_examples=model.corpus_count, epochs=config.epochs)
    matrix = np.asarray(model.wv.vectors, dtype=np.float32)
    if not np.isfinite(matrix).all():
        raise ToolkitError("Word2Vec training produced non-finite vectors")
    stats = {"sentences": len(seq), "tokens": tokens, "vocab_size": len(model.wv.index_to_key)}
    return WordVectors(list(model.wv.index_to_key), matrix, tokenizer_config, config, stats)
