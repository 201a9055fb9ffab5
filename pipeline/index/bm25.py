"""The lexical index: BM25 (rank-bm25's ``BM25Okapi``) with a pickle-free file format.

The index file ``bm25.jsonl.gz`` holds a header line (parameters, tokenizer
settings) and one JSON list of tokens per passage. Loading rebuilds
``BM25Okapi`` from the tokens, so opening an index someone sent you runs none
of their code.

Example::

    >>> from pipeline.index.bm25 import BM25Index
    >>> bm25 = BM25Index.from_texts(["Paris is in France.", "Berlin is in Germany.", "Rome is in Italy."])
    >>> bm25.search("capital of Germany", k=1)[0][0]
    1
"""

from __future__ import annotations

import gzip
import json
import re
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Iterable

import numpy as np
from rank_bm25 import BM25Okapi

from pipeline.errors import IndexMismatchError

FILE_NAME = "bm25.jsonl.gz"
FORMAT = "qa-search-bm25/1"

# A short English stop-word list (the usual Lucene/Elasticsearch default set).
STOPWORDS = frozenset(
    "a an and are as at be but by for if in into is it no not of on or such that the their then there "
    "these they this to was will with".split()
)
_TOKEN = re.compile(r"\w+", re.UNICODE)


@dataclass(frozen=True)
class TokenizerSettings:
    """How text becomes BM25 terms: lower case, word characters, stop words out, Snowball stems."""

    lowercase: bool = True
    stopwords: bool = True
    stemmer: str | None = "english"


class BM25Tokenizer:
    def __init__(self, settings: TokenizerSettings = TokenizerSettings()):
        self.settings = settings
        self._stem = None
        if settings.stemmer:
            import Stemmer  # PyStemmer

            self._stem = Stemmer.Stemmer(settings.stemmer).stemWords

    def __call__(self, text: str) -> list[str]:
        if self.settings.lowercase:
            text = text.lower()
        tokens = _TOKEN.findall(text)
        if self.settings.stopwords:
            tokens = [t for t in tokens if t not in STOPWORDS]
        return self._stem(tokens) if self._stem else tokens

    def many(self, texts: Iterable[str]) -> list[list[str]]:
        return [self(t) for t in texts]


class BM25Index:
    """BM25Okapi over tokenised passages, with ``save``/``load`` in plain JSON."""

    def __init__(
        self,
        tokens: list[list[str]],
        *,
        k1: float = 1.5,
        b: float = 0.75,
        settings: TokenizerSettings = TokenizerSettings(),
    ):
        self.tokens = tokens
        self.k1, self.b = k1, b
        self.tokenizer = BM25Tokenizer(settings)
        # BM25Okapi divides by the corpus size; an empty corpus has no index.
        self._bm25 = BM25Okapi(tokens, k1=k1, b=b) if tokens else None

    @classmethod
    def from_texts(cls, texts: Iterable[str], **kwargs) -> "BM25Index":
        settings = kwargs.pop("settings", TokenizerSettings())
        return cls(BM25Tokenizer(settings).many(texts), settings=settings, **kwargs)

    def __len__(self) -> int:
        return len(self.tokens)

    def extended(self, texts: Iterable[str]) -> "BM25Index":
        """A new index with ``texts`` appended (statistics recomputed; old tokens reused)."""
        return BM25Index(self.tokens + self.tokenizer.many(texts), k1=self.k1, b=self.b, settings=self.tokenizer.settings)

    def scores(self, query: str) -> np.ndarray:
        """BM25 score of every passage for ``query``."""
        terms = self.tokenizer(query)
        if not terms or self._bm25 is None:
            return np.zeros(len(self.tokens), dtype=np.float32)
        return np.asarray(self._bm25.get_scores(terms), dtype=np.float32)

    def search(self, query: str, k: int) -> list[tuple[int, float]]:
        """The ``k`` best (passage position, score) pairs; passages sharing no term with the query are left out."""
        scores = self.scores(query)
        k = min(k, len(scores))
        if k <= 0:
            return []
        top = np.argpartition(-scores, k - 1)[:k]
        top = top[np.lexsort((top, -scores[top]))]
        return [(int(i), float(scores[i])) for i in top if scores[i] > 0]

    def settings_dict(self) -> dict:
        return {"k1": self.k1, "b": self.b, "tokenizer": asdict(self.tokenizer.settings)}

    def save(self, directory: str | Path) -> Path:
        path = Path(directory) / FILE_NAME
        with gzip.open(path, "wt", encoding="utf-8") as fh:
            fh.write(json.dumps({"format": FORMAT, **self.settings_dict(), "count": len(self.tokens)}) + "\n")
            for doc in self.tokens:
                fh.write(json.dumps(doc, ensure_ascii=False) + "\n")
        return path

    @classmethod
    def load(cls, directory: str | Path) -> "BM25Index":
        path = Path(directory) / FILE_NAME
        with gzip.open(path, "rt", encoding="utf-8") as fh:
            header = json.loads(fh.readline())
            if header.get("format") != FORMAT:
                raise IndexMismatchError(f"{path} is not a {FORMAT} file (found {header.get('format')!r}).")
            tokens = [json.loads(line) for line in fh]
        if len(tokens) != header["count"]:
            raise IndexMismatchError(f"{path} is truncated: {len(tokens)} of {header['count']} passages.")
        return cls(tokens, k1=header["k1"], b=header["b"], settings=TokenizerSettings(**header["tokenizer"]))
