"""Synthetic recipe-step documents for the bulk and search benchmarks, streamed batch by batch.

Documents have every field ``DocumentBuilder`` writes (ids ``r0000042:3``, title, text, whitespace
tokens, ingredients, tags, photo path) and two random unit float32 vectors of the real dims (256), as
numpy rows, exactly as the indexer hands them to the bulk loader. Nothing is held beyond one batch, and
the vectors of document ``i`` depend only on the seed and ``i``, so a search benchmark can regenerate
them for exact kNN.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from typing import Any

import numpy as np

from toolkit.index.bulk import Batch
from toolkit.index.template import IndexModelInfo

DIMS = 256
STEPS_PER_RECIPE = 5
#: vectors are generated in blocks of this many documents (each block has its own seeded generator)
BLOCK = 1024
MODEL = IndexModelInfo(fingerprint="bench-synthetic", dims=DIMS, backbone="synthetic")

_INGREDIENTS = [
    "玉ねぎ",
    "にんじん",
    "じゃがいも",
    "豚こま肉",
    "鶏もも肉",
    "キャベツ",
    "卵",
    "牛乳",
    "豆腐",
    "鮭",
]
_TAGS = ["簡単", "時短", "お弁当", "作り置き", "和食", "洋食", "中華", "節約"]


def _text_pool(n: int = 512, seed: int = 0) -> list[tuple[str, str]]:
    """(text, tokens) pairs: recipe sentences and a cheap whitespace tokenisation (2-char pieces)."""
    from bench.bench_text import recipe_sentences

    out = []
    for s in recipe_sentences(n, seed):
        out.append((s, " ".join(s[i : i + 2] for i in range(0, len(s), 2))))
    return out


def unit_vectors(n: int, seed: int, dims: int = DIMS) -> np.ndarray:
    """``n`` random unit float32 vectors (uniform on the sphere)."""
    v = np.random.default_rng(seed).standard_normal((n, dims), dtype=np.float32)
    v /= np.linalg.norm(v, axis=1, keepdims=True)
    return v


def vectors_block(block: int, seed: int, dims: int = DIMS) -> tuple[np.ndarray, np.ndarray]:
    """(image, text) vectors of documents ``block * BLOCK`` .. ``(block + 1) * BLOCK - 1``."""
    both = unit_vectors(2 * BLOCK, seed * 1_000_003 + block, dims)
    return both[:BLOCK], both[BLOCK:]


def image_vectors(n: int, seed: int = 0) -> np.ndarray:
    """The ``image_vector`` of documents ``0 .. n-1`` (for exact search against the index)."""
    blocks = [vectors_block(b, seed)[0] for b in range((n + BLOCK - 1) // BLOCK)]
    return np.concatenate(blocks)[:n]


def doc_id(i: int) -> str:
    return f"r{i // STEPS_PER_RECIPE:07d}:{i % STEPS_PER_RECIPE + 1}"


def documents(n: int, seed: int = 0) -> Iterator[dict[str, Any]]:
    """``n`` documents, one at a time."""
    pool = _text_pool()
    rng = random.Random(seed)
    picks = [(sorted(rng.sample(_INGREDIENTS, 3)), rng.sample(_TAGS, 2)) for _ in range(251)]
    image = text = np.empty((0, DIMS), np.float32)
    for i in range(n):
        if i % BLOCK == 0:
            image, text = vectors_block(i // BLOCK, seed)
        recipe, pos = divmod(i, STEPS_PER_RECIPE)
        title, title_tokens = pool[recipe % len(pool)]
        step_text, tokens = pool[(i * 7919) % len(pool)]
        ingredients, tags = picks[recipe % len(picks)]
        sid = doc_id(i)
        yield {
            "_id": sid,
            "step_id": sid,
            "recipe_id": f"r{recipe:07d}",
            "title": title[:30],
            "title_tokens": title_tokens[:45],
            "description": "",
            "position": pos + 1,
            "text": step_text,
            "tokens": tokens,
            "ingredients": ingredients,
            "tags": tags,
            "has_image": True,
            "image_path": f"images/r{recipe:07d}/{pos + 1}.jpg",
            "image_vector": image[i % BLOCK],
            "text_vector": text[i % BLOCK],
        }


def batches(n: int, seed: int = 0, batch_steps: int = 256) -> Iterator[Batch]:
    """The documents in :class:`Batch` objects of whole recipes (about ``batch_steps`` documents each)."""
    docs: list[dict[str, Any]] = []
    recipes = 0
    for d in documents(n, seed):
        docs.append(d)
        if d["position"] == STEPS_PER_RECIPE:
            recipes += 1
            if len(docs) >= batch_steps:
                yield Batch(docs=docs, read=len(docs), position=recipes)
                docs = []
    if docs:
        yield Batch(docs=docs, read=len(docs), position=recipes + 1)
