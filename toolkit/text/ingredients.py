"""The key an ingredient name is filtered by: spelling variants of one word share it."""

from __future__ import annotations

from toolkit.text.tokenizer import Tokenizer, nfkc


def ingredient_key(tokenizer: Tokenizer, name: str) -> str:
    """``name``'s lemmas joined, so that たまねぎ, 玉ねぎ, 玉葱, タマネギ and ﾀﾏﾈｷﾞ all give 玉葱 (the index
    stores each recipe's keys in ``ingredient_keys``; an ingredient filter matches the name as written or its
    key); the NFKC-normalised, lowercased name where no token is left (symbols only)."""
    tokens = tokenizer.tokenize_all(name)
    return "".join(tokens) if tokens else nfkc(name).strip().lower()
