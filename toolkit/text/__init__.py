"""Text side: fugashi tokenisation, Word2Vec word vectors, step vectors (mean of word vectors)."""

from toolkit.text.step_vectors import (
    StepVectorResult,
    encode_token_ids,
    mean_vectors,
    query_vector,
    save_step_vectors,
    step_vectors,
)
from toolkit.text.tokenizer import Tokenizer, TokenizerConfig, load_stopwords
from toolkit.text.word2vec import Word2VecConfig, WordVectors, train_word2vec

__all__ = [
    "StepVectorResult",
    "Tokenizer",
    "TokenizerConfig",
    "Word2VecConfig",
    "WordVectors",
    "encode_token_ids",
    "load_stopwords",
    "mean_vectors",
    "query_vector",
    "save_step_vectors",
    "step_vectors",
    "train_word2vec",
]
