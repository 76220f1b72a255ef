"""Why a text query found what it found: the tokens it became, which words the model knows (and for the
others the nearest known words by surface form or reading), and each known word's leave-one-word-out
contribution to the scores of the top hits."""

from __future__ import annotations

import difflib
import logging
import threading
from typing import TYPE_CHECKING, Any

import numpy as np

from toolkit.search.queries import KnnParams, match_clause
from toolkit.search.stored import source_vectors

if TYPE_CHECKING:
    from toolkit.model import SearchModel
    from toolkit.search.dispatch import SearchOptions
    from toolkit.search.engine import Searcher, SearchResult

log = logging.getLogger(__name__)

#: suggestions offered per unknown word, and top hits whose scores are explained
SUGGESTIONS = 5
EXPLAINED_HITS = 5
#: distinct unknown words given suggestions, and distinct words left out one by one: each costs a scan of the
#: whole vocabulary or one more search, so a long query of many words (up to 2,000 characters:
#: :data:`~toolkit.model.MAX_QUERY_CHARS`) must not cost that per word
SUGGESTED_WORDS = 10
EXPLAINED_WORDS = 30

_readings_lock = threading.Lock()
_readings: dict[str, dict[str, list[str]]] = {}


def _to_katakana(s: str) -> str:
    return "".join(chr(ord(c) + 0x60) if "ぁ" <= c <= "ゖ" else c for c in s)


def reading(word: str) -> str:
    """The katakana reading of ``word`` (MeCab's ``kana`` feature, morpheme by morpheme)."""
    with _readings_lock:
        parts = [getattr(w.feature, "kana", None) or w.surface for w in _reading_tagger()(word)]
    return _to_katakana("".join(p for p in parts if p and p != "*"))


_tagger: Any = None


def _reading_tagger() -> Any:
    global _tagger
    if _tagger is None:
        import fugashi

        _tagger = fugashi.Tagger()
    return _tagger


def reading_index(model: SearchModel) -> dict[str, list[str]]:
    """Reading -> vocabulary words with that reading; built once per model (fingerprint) on first use."""
    key = model.fingerprint
    found = _readings.get(key)
    if found is None:
        out: dict[str, list[str]] = {}
        for word in model.word_vectors.index:
            out.setdefault(reading(word), []).append(word)
        _readings[key] = found = out
    return found


def suggestions(model: SearchModel, word: str, n: int = SUGGESTIONS) -> list[str]:
    """Known words nearest to ``word``: same reading first, then closest surface forms."""
    same = [w for w in reading_index(model).get(reading(word), []) if w != word]
    vocab = list(model.word_vectors.index)
    close = difflib.get_close_matches(word, vocab, n=n, cutoff=0.5)
    out: list[str] = []
    for w in same + close:
        if w not in out:
            out.append(w)
    return out[:n]


def vocabulary_split(model: SearchModel, text: str) -> tuple[list[str], list[str], list[str]]:
    """(Word2Vec tokens, known ones, unknown ones) of ``text``, in query order."""
    tokens = model.tokenizer.tokenize(text)
    index = model.word_vectors.index
    return tokens, [t for t in tokens if t in index], [t for t in tokens if t not in index]


def unknown_words_note(model: SearchModel, text: str) -> str | None:
    """A note for a text none of whose words the model knows (what the vector modes refuse with an error, said
    of a keyword search, which needs no vocabulary): the unknown words; else None (also for a text with no content
    word at all, which every mode refuses: :meth:`~toolkit.search.engine.Searcher.tokens`). No nearest-word
    suggestions here: they scan the vocabulary per word, too slow for every keyword query (``explain`` gives
    them)."""
    tokens, known, unknown = vocabulary_split(model, text)
    if known or not tokens:
        return None
    return (
        f"no word of the query is in the model's vocabulary (unknown: {', '.join(dict.fromkeys(unknown))}): "
        "only a keyword search finds it"
    )


def explain_tokens(model: SearchModel, text: str) -> dict[str, Any]:
    """The tokens of ``text`` (all, for keywords; filtered, for the vector), known and unknown words: each
    distinct unknown word with ``looked_up`` and its ``suggestions`` (the first :data:`SUGGESTED_WORDS`; past
    them ``looked_up`` is false and ``suggestions`` None: not looked up, which an empty list would not say)."""
    every = model.tokenizer.tokenize_all(text)
    tokens, known, unknown = vocabulary_split(model, text)
    return {
        "keyword_tokens": every,
        "tokens": tokens,
        "dropped": [t for t in every if t not in tokens],
        "known": known,
        "unknown": [
            unknown_word(model, w, i < SUGGESTED_WORDS) for i, w in enumerate(dict.fromkeys(unknown))
        ],
    }


def unknown_word(model: SearchModel, word: str, look_up: bool) -> dict[str, Any]:
    """``{"word", "looked_up", "suggestions"}`` of an unknown ``word``: suggestions None when not looked up."""
    return {"word": word, "looked_up": look_up, "suggestions": suggestions(model, word) if look_up else None}


def _similarity_scores(query: np.ndarray, vectors: np.ndarray) -> np.ndarray:
    """Elasticsearch's ``cosine`` score, ``(1 + cos) / 2``, of each row of ``vectors``."""
    q = query / np.linalg.norm(query)
    v = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
    return (1.0 + v @ q) / 2.0


def _vector_scores(
    searcher: Searcher, words: list[str], hit_vectors: np.ndarray, field_boost: float, field: str
) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """kNN scores of the hits for the full query and with each distinct word left out."""
    model = searcher.model
    wv = model.word_vectors
    rows = [wv.index[w] for w in words]

    mapping = model.mapping.model

    def embed(selected: list[int]) -> np.ndarray:
        if mapping.text_input == "tokens":
            from toolkit.text.tokens import TokenBags

            bag = TokenBags(np.asarray(selected, dtype=np.int32), np.array([0, len(selected)]))
            return searcher.field_vector(mapping.embed_text(bag)[0], field)
        feats = wv.matrix[selected].mean(axis=0, dtype=np.float32)[None, :]
        return searcher.field_vector(mapping.embed_text(feats)[0], field)

    full = field_boost * _similarity_scores(embed(rows), hit_vectors)
    out: dict[str, np.ndarray] = {}
    for w in list(dict.fromkeys(words))[:EXPLAINED_WORDS]:
        rest = [r for r, x in zip(rows, words, strict=True) if x != w]
        out[w] = field_boost * _similarity_scores(embed(rest), hit_vectors) if rest else np.zeros(len(full))
    return full, out


def _keyword_scores(
    searcher: Searcher, tokens: list[str], ids: list[str], boost: float
) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """BM25 scores of the hits (by id) for all tokens and with each of the first :data:`EXPLAINED_WORDS`
    distinct tokens left out (one _msearch)."""
    left_out = list(dict.fromkeys(tokens))[:EXPLAINED_WORDS]
    variants = [tokens] + [[t for t in tokens if t != w] for w in left_out]
    bodies: list[dict[str, Any]] = []
    for toks in variants:
        query: dict[str, Any] = {"bool": {"filter": [{"ids": {"values": ids}}]}}
        if toks:
            query["bool"]["must"] = [match_clause(toks)]
        else:
            query = {"bool": {"must_not": [{"match_all": {}}]}}
        bodies.append({"query": query, "size": len(ids), "_source": False})
    resp = searcher.msearch(bodies)
    scores = []
    for r in resp:
        by_id = {h["_id"]: float(h["_score"] or 0.0) for h in r.get("hits", {}).get("hits", [])}
        scores.append(boost * np.array([by_id.get(i, 0.0) for i in ids]))
    return scores[0], dict(zip(left_out, scores[1:], strict=True))


def contributions(
    searcher: Searcher, text: str, opts: SearchOptions, params: KnnParams, result: SearchResult
) -> dict[str, Any]:
    """Leave-one-word-out: how much each word adds to the score of each of the top hits.

    kNN: the cosine score with the word's vector left out of the mean (plus, for a query the word grounding
    reranks, :meth:`~toolkit.search.engine.Searcher.text_knn`, its term with the word left out of it too);
    keyword: BM25 without the token; hybrid: the boosted sum of both, as Elasticsearch adds them (the cosine only for hits among the kNN
    section's nearest). ``recomputed`` is the full score recomputed this way, next to the returned one.
    RRF scores come from ranks and linear fusion's from each list's range: neither is explained."""
    hits = result.hits[:EXPLAINED_HITS]
    if not hits:
        return {"method": None, "hits": [], "words": []}
    if opts.mode == "rrf":
        return {"method": None, "note": "rank fusion scores come from ranks: no per-word contribution"}
    if opts.mode == "linear":
        note = "linear fusion scales each list by its own best and worst hit: no per-word contribution"
        return {"method": None, "note": note}
    ids = [h.step_id for h in hits]
    zeros = np.zeros(len(hits))
    vec_without: dict[str, np.ndarray]
    kw_without: dict[str, np.ndarray]
    vec_full, vec_without = zeros, {}
    kw_full, kw_without = zeros, {}
    if opts.mode in ("knn", "hybrid"):
        _, known, _ = vocabulary_split(searcher.model, text)
        docs = searcher.mget(ids, [params.field])
        vectors = source_vectors(docs, params.field, searcher.index, "--explain")
        boost = opts.hybrid.knn_boost if opts.mode == "hybrid" else 1.0
        vec_full, vec_without = _vector_scores(searcher, known, vectors, boost, params.field)
        grounded = searcher.reranked_words(text, params, opts.grouping()) if opts.mode == "knn" else None
        if grounded is not None:  # reranked so (Searcher.text_knn)
            beta, index = searcher.photo_hubness_beta, searcher.model.word_vectors.index
            vec_full = vec_full + searcher.grounding_term(grounded, vectors, 1.0, beta)
            vec_without = {
                w: v + searcher.grounding_term(grounded[grounded != index[w]], vectors, 1.0, beta)
                for w, v in vec_without.items()
            }
    if opts.mode in ("keyword", "hybrid"):
        tokens = searcher.model.tokenizer.tokenize_all(text)
        boost = opts.hybrid.keyword_boost if opts.mode == "hybrid" else 1.0
        kw_full, kw_without = _keyword_scores(searcher, tokens, ids, boost)
    if opts.mode == "hybrid":
        # Elasticsearch adds the kNN score only for hits among the kNN section's k nearest: tell them apart
        # by which sum reproduces the score it returned (the membership is kept when a word is left out)
        scores = np.array([h.score for h in hits])
        in_knn = np.abs(scores - (kw_full + vec_full)) <= np.abs(scores - kw_full)
        vec_full = np.where(in_knn, vec_full, 0.0)
        vec_without = {w: np.where(in_knn, v, 0.0) for w, v in vec_without.items()}
    total = vec_full + kw_full
    without = {
        w: vec_without.get(w, vec_full) + kw_without.get(w, kw_full)
        for w in dict.fromkeys([*vec_without, *kw_without])
    }
    words: list[dict[str, Any]] = [
        {
            "word": w,
            "mean_delta": round(float(np.mean(total - s)), 6),
            "deltas": [round(float(d), 6) for d in total - s],
        }
        for w, s in without.items()
    ]
    words.sort(key=lambda x: -x["mean_delta"])
    method = {"knn": "cosine", "keyword": "bm25", "hybrid": "bm25 + cosine"}[opts.mode]
    return {
        "method": method,
        "hits": [
            {"step_id": h.step_id, "score": h.score, "recomputed": round(float(t), 6)}
            for h, t in zip(hits, total, strict=True)
        ],
        "words": words,
    }
