"""A tokenised corpus held as int32 ids (CSR) plus one copy of each distinct token string.

Word2Vec reads its training sentences once for the vocabulary and once per epoch; a Python list of token
lists costs ~60 bytes per token, so :class:`EncodedCorpus` keeps 4 bytes per token instead and decodes a
sentence when gensim asks for it. It is a :class:`~collections.abc.Sequence` of token lists, so it gives
gensim exactly the sentences, in the same order, a list would (the same model, bit for bit).
"""

from __future__ import annotations

from array import array
from collections.abc import Iterable, Sequence


class EncodedCorpus(Sequence):
    """Sentences appended with :meth:`add`; ``corpus[i]`` is sentence ``i`` as a list of strings."""

    def __init__(self, sentences: Iterable[Sequence[str]] = ()) -> None:
        self._words: list[str] = []
        self._index: dict[str, int] = {}
        self._ids = array("i")  # every token's id, sentence after sentence (4 bytes each)
        self._ends = array("q")  # where each sentence's ids end (8 bytes per sentence)
        for s in sentences:
            self.add(s)

    def add(self, tokens: Sequence[str]) -> None:
        index, words = self._index, self._words
        for t in tokens:
            i = index.get(t)
            if i is None:
                i = index[t] = len(words)
                words.append(t)
            self._ids.append(i)
        self._ends.append(len(self._ids))

    def __len__(self) -> int:
        return len(self._ends)

    def __getitem__(self, i: int) -> list[str]:  # type: ignore[override]
        if not isinstance(i, int):
            raise TypeError("EncodedCorpus supports integer indexing only")
        if i < 0:
            i += len(self)
        if not 0 <= i < len(self):
            raise IndexError(i)
        start = self._ends[i - 1] if i else 0
        words = self._words
        return [words[t] for t in self._ids[start : self._ends[i]]]

    @property
    def tokens(self) -> int:
        return self._ends[-1] if self._ends else 0

    @property
    def distinct(self) -> int:
        return len(self._words)
