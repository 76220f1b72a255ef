"""Synthetic recipe-step documents for the bulk and search benchmarks, streamed batch by batch.

Documents have every field ``DocumentBuilder`` writes (ids ``r0000042:3``, title, text, whitespace
tokens, ingredients, tags, photo path) and two random unit float32 vectors of the real dims (256), as
numpy rows, exactly as the indexer hands them to the bulk loader: ``image_vector`` uniform on the sphere,
``text_vector`` clustered near a low-dimensional subspace like a learned embedding. Nothing is held beyond one batch, and
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


#: ``text_vector`` is drawn like a learned embedding: unit vectors near a 24-d subspace, around 500 "dishes"
LATENT_DIMS, CLUSTERS = 24, 500


def _latent_model(seed: int, dims: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng([seed, 77])
    basis = np.linalg.qr(rng.standard_normal((dims, LATENT_DIMS)))[0].astype(np.float32)
    centers = rng.standard_normal((CLUSTERS, LATENT_DIMS)).astype(np.float32)
    return basis, centers


def structured_vectors(n: int, seed: int, dims: int = DIMS) -> np.ndarray:
    """``n`` unit vectors with the low intrinsic dimension of learned embeddings (clustered, 24-d + noise)."""
    basis, centers = _latent_model(0, dims)
    rng = np.random.default_rng(seed)
    z = centers[rng.integers(0, CLUSTERS, n)] + 0.6 * rng.standard_normal((n, LATENT_DIMS), dtype=np.float32)
    v = z @ basis.T + 0.08 * rng.standard_normal((n, dims), dtype=np.float32)
    return (v / np.linalg.norm(v, axis=1, keepdims=True)).astype(np.float32)


def vectors_block(block: int, seed: int, dims: int = DIMS) -> tuple[np.ndarray, np.ndarray]:
    """(image, text) vectors of documents ``block * BLOCK`` .. ``(block + 1) * BLOCK - 1``: image vectors
    uniform on the sphere (the hardest case for HNSW), text vectors embedding-like (``structured_vectors``)."""
    key = seed * 1_000_003 + block
    return unit_vectors(BLOCK, key, dims), structured_vectors(BLOCK, key + 500_000_000, dims)


def field_vectors(n: int, field: str = "image_vector", seed: int = 0) -> np.ndarray:
    """The vectors of ``field`` of documents ``0 .. n-1`` (for exact search against the index)."""
    which = 0 if field == "image_vector" else 1
    blocks = [vectors_block(b, seed)[which] for b in range((n + BLOCK - 1) // BLOCK)]
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
