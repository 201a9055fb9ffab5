"""The bi-encoder's similarities of questions to sentences, each text encoded once.

The answer policy's ``sentence_similarity`` compares a question with every
sentence of its answer's paragraph (:func:`pipeline.read.evidence.sentence_similarity`).
A batch of searches, or a fit over thousands of collected questions, asks for
many such comparisons; :class:`SentenceSimilarity` encodes the texts it is
warmed with in one call (sentence-transformers sorts them by length, so little
is padded) and answers every comparison from those vectors.

>>> import numpy as np
>>> similarity = SentenceSimilarity(lambda texts: np.array([[1.0, 0.0] if "a" in t else [0.0, 1.0] for t in texts]))
>>> similarity.warm(["a?", "a.", "b."])
>>> similarity("a?", ["a.", "b."])
[1.0, 0.0]
"""

from __future__ import annotations

from typing import Callable, Iterable, Sequence

import numpy as np


class SentenceSimilarity:
    """Cosine similarities from ``encode`` (normalised vectors, one row per text), each text encoded once.

    A :data:`pipeline.read.evidence.Similarity`: call it with a question and texts.
    It keeps every vector it encoded, so make one per batch of searches (or per
    fit), not one for a server's lifetime.
    """

    def __init__(self, encode: Callable[[list[str]], np.ndarray]):
        self._encode_texts = encode
        self._vectors: dict[str, np.ndarray] = {}

    def warm(self, texts: Iterable[str]) -> None:
        """Encode every text not seen yet, in one call."""
        new = [t for t in dict.fromkeys(texts) if t not in self._vectors]
        if new:
            self._vectors.update(zip(new, np.asarray(self._encode_texts(new))))

    def __call__(self, query: str, texts: Sequence[str]) -> list[float]:
        self.warm([query, *texts])
        q = self._vectors[query]
        return [float(self._vectors[t] @ q) for t in texts]
