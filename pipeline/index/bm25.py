"""The lexical index: BM25 over a term table, served by bm25s (default) or rank-bm25 (reference).

Every index keeps its tokenised passages once, as a *term table* in
``bm25/``: for each passage its distinct term ids and their counts
(``terms.npy``, ``tfs.npy``, ``doc_ptr.npy``), its length in tokens
(``doc_len.npy``) and the vocabulary (``vocab.index.json``). Nothing is
pickled; every array is a plain ``.npy`` loaded with ``allow_pickle=False``.

Engines:

* ``bm25s`` (default): the BM25 score of every (term, passage) pair is
  precomputed into a sparse column matrix and saved in bm25s's own layout
  (``data/indices/indptr.csc.index.npy``, ``params.index.json``); it is opened
  with ``bm25s.BM25.load(mmap=True)``, so opening costs milliseconds and a
  query touches only the columns of its terms. The matrix is computed here
  with vectorised NumPy from the term table (bm25s's own builder loops over
  documents in Python); tests check it equals ``bm25s.BM25.index`` exactly.
  Appending passages recomputes the matrix from the stored term table without
  re-tokenising anything.
* ``rank-bm25``: ``BM25Okapi`` rebuilt in memory from the term table at load;
  the reference the tests compare against, linear in the corpus per query.

IDF: rank-bm25 uses ``log((N - df + 0.5) / (df + 0.5))`` and replaces a
negative value (a term in more than half of the passages) by 0.25 × the mean
idf. bm25s's ``robertson`` uses the same formula but clips negatives to 0;
``lucene`` uses ``log(1 + (N - df + 0.5) / (df + 0.5))`` (never negative,
flatter); ``atire`` uses ``log(N / df)``. The term-frequency part is
``tf / (tf + k1 (1 - b + b dl/avgdl))`` for robertson and lucene (rank-bm25
multiplies it by the constant ``k1 + 1``, which changes no ranking) and
``tf (k1 + 1) / (...)`` for atire. The default method was chosen on the tune
articles (``benchmarks/bm25_agreement.py``; figures in docs/scale.md).

Example::

    >>> from pipeline.index.bm25 import BM25Index
    >>> bm25 = BM25Index.from_texts(["Paris is in France.", "Berlin is in Germany.", "Rome is in Italy."])
    >>> bm25.search("capital of Germany", k=1)[0][0]
    1
"""

from __future__ import annotations

import json
import logging
import re
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

from pipeline.config import BM25Engine
from pipeline.errors import ConfigError, IndexMismatchError

logger = logging.getLogger(__name__)

DIR_NAME = "bm25"
FORMAT = "qa-search-bm25/2"
TABLE_FILE = "table.json"
VOCAB_FILE = "vocab.index.json"
ARRAYS = ("terms", "tfs", "doc_ptr", "doc_len")
BM25S_FILES = ("data.csc.index.npy", "indices.csc.index.npy", "indptr.csc.index.npy", "params.index.json")
METHODS = ("robertson", "lucene", "atire")
#: Chosen on the tune articles: the method whose top-10 agrees with rank-bm25 most often.
DEFAULT_METHOD = "robertson"

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


@dataclass
class TermTable:
    """Tokenised passages as distinct (term id, count) pairs per passage, and the vocabulary.

    ``terms[doc_ptr[i]:doc_ptr[i + 1]]`` are passage ``i``'s term ids,
    ``tfs`` the same slice's counts, ``doc_len[i]`` its length in tokens.
    """

    terms: np.ndarray
    tfs: np.ndarray
    doc_ptr: np.ndarray
    doc_len: np.ndarray
    vocab: dict[str, int]

    @classmethod
    def empty(cls, vocab: dict[str, int] | None = None) -> "TermTable":
        return cls(
            np.zeros(0, np.int32), np.zeros(0, np.int32), np.zeros(1, np.int64), np.zeros(0, np.int32), dict(vocab or {})
        )

    def __len__(self) -> int:
        return len(self.doc_len)

    @classmethod
    def from_tokens(cls, docs: Sequence[Sequence[str]], vocab: dict[str, int] | None = None) -> "TermTable":
        """Tabulate tokenised passages; new terms get the next ids in ``vocab`` (which is extended in place)."""
        vocab = {} if vocab is None else vocab
        lengths = np.fromiter((len(d) for d in docs), dtype=np.int64, count=len(docs))
        flat = np.fromiter(
            (vocab.setdefault(t, len(vocab)) for d in docs for t in d), dtype=np.int64, count=int(lengths.sum())
        )
        doc_of = np.repeat(np.arange(len(docs), dtype=np.int64), lengths)
        keys, counts = np.unique(doc_of * (len(vocab) + 1) + flat, return_counts=True)
        pair_doc = keys // (len(vocab) + 1)
        doc_ptr = np.zeros(len(docs) + 1, np.int64)
        np.cumsum(np.bincount(pair_doc, minlength=len(docs)), out=doc_ptr[1:])
        return cls(
            (keys % (len(vocab) + 1)).astype(np.int32), counts.astype(np.int32), doc_ptr, lengths.astype(np.int32), vocab
        )

    @classmethod
    def concat(cls, tables: Sequence["TermTable"]) -> "TermTable":
        """One table of ``tables`` in order; each must use (a prefix of) the last one's vocabulary."""
        if not tables:
            return cls.empty()
        ptrs, offset = [np.zeros(1, np.int64)], 0
        for t in tables:
            ptrs.append(np.asarray(t.doc_ptr[1:], dtype=np.int64) + offset)
            offset += int(t.doc_ptr[-1])
        return cls(
            np.concatenate([np.asarray(t.terms) for t in tables]).astype(np.int32, copy=False),
            np.concatenate([np.asarray(t.tfs) for t in tables]).astype(np.int32, copy=False),
            np.concatenate(ptrs),
            np.concatenate([np.asarray(t.doc_len) for t in tables]).astype(np.int32, copy=False),
            tables[-1].vocab,
        )

    def tokens(self, i: int, names: list[str]) -> list[str]:
        """Passage ``i`` as a bag of terms (each repeated by its count); ``names`` is the id → term list."""
        a, b = int(self.doc_ptr[i]), int(self.doc_ptr[i + 1])
        return [names[t] for t, n in zip(self.terms[a:b].tolist(), self.tfs[a:b].tolist()) for _ in range(n)]

    def save(self, directory: Path) -> None:
        """Write the arrays (``np.save``, no pickle) and the vocabulary into ``directory``."""
        directory.mkdir(parents=True, exist_ok=True)
        for name in ARRAYS:
            np.save(directory / f"{name}.npy", np.asarray(getattr(self, name)), allow_pickle=False)
        (directory / VOCAB_FILE).write_text(json.dumps(self.vocab, ensure_ascii=False), encoding="utf-8")

    @classmethod
    def load(cls, directory: Path, *, mmap: bool = True) -> "TermTable":
        """Open a saved table, checking types and shapes first (the files may come from someone else).

        Only headers and the last pointer are read: the checks cost nothing at a
        million passages. The vocabulary JSON, read whole, is bounded by the
        number of postings (a passage cannot bring more new terms than it holds).
        """
        try:
            arrays = {
                name: np.load(directory / f"{name}.npy", mmap_mode="r" if mmap else None, allow_pickle=False)
                for name in ARRAYS
            }
        except (OSError, ValueError) as exc:
            raise IndexMismatchError(f"{directory} holds an unreadable term table ({exc}); rebuild the index.") from exc
        _check_table(directory, arrays)
        vocab_path = directory / VOCAB_FILE
        limit = MAX_VOCAB_BYTES_PER_POSTING * (len(arrays["terms"]) + 1) + 2**20
        if vocab_path.stat().st_size > limit:
            raise IndexMismatchError(
                f"{vocab_path} is {vocab_path.stat().st_size:,} bytes, more than its {len(arrays['terms']):,} postings "
                "can name; rebuild the index."
            )
        try:
            vocab = json.loads(vocab_path.read_text(encoding="utf-8"))
        except (UnicodeDecodeError, ValueError) as exc:
            raise IndexMismatchError(f"{vocab_path} is not valid JSON ({exc}); rebuild the index.") from exc
        if not isinstance(vocab, dict):
            raise IndexMismatchError(f"{vocab_path} is not a term → id mapping; rebuild the index.")
        return cls(vocab=vocab, **arrays)


MAX_VOCAB_BYTES_PER_POSTING = 256


def _check_matrix(directory: Path, scores: dict, passages: int, vocabulary: int) -> None:
    """Raise :class:`IndexMismatchError` unless bm25s's score matrix fits the term table (headers only)."""
    try:
        data, indices, indptr = scores["data"], scores["indices"], scores["indptr"]
        ok = (
            int(scores["num_docs"]) == passages
            and data.ndim == indices.ndim == indptr.ndim == 1
            and data.dtype.kind == "f" and indices.dtype.kind in "iu" and indptr.dtype.kind in "iu"
            and len(data) == len(indices)
            and len(indptr) <= vocabulary + 2
            and (len(indptr) == 0 or (int(indptr[0]) == 0 and int(indptr[-1]) == len(data)))
        )
    except (KeyError, AttributeError, TypeError, ValueError):
        ok = False
    if not ok:
        raise IndexMismatchError(f"{directory} holds a BM25 matrix that does not fit its term table; rebuild the index.")


def _check_table(directory: Path, arrays: dict[str, np.ndarray]) -> None:
    """Raise :class:`IndexMismatchError` unless the term-table arrays have the types and shapes a build writes."""
    problems = []
    for name, kinds in (("terms", "i"), ("tfs", "i"), ("doc_ptr", "i"), ("doc_len", "i")):
        array = arrays[name]
        if array.ndim != 1 or array.dtype.kind not in kinds:
            problems.append(f"{name} is {array.dtype}{list(array.shape)}")
    if not problems:
        n = len(arrays["doc_len"])
        if len(arrays["tfs"]) != len(arrays["terms"]):
            problems.append(f"{len(arrays['tfs'])} counts for {len(arrays['terms'])} terms")
        if len(arrays["doc_ptr"]) != n + 1 or int(arrays["doc_ptr"][0]) != 0 or int(arrays["doc_ptr"][-1]) != len(arrays["terms"]):
            problems.append("the passage pointers do not cover the terms")
    if problems:
        raise IndexMismatchError(f"{directory} holds a damaged term table ({'; '.join(problems)}); rebuild the index.")


def idf(df: np.ndarray, n: int, method: str) -> np.ndarray:
    """Each term's idf by ``method`` (one of :data:`METHODS`), from its document frequency ``df`` among ``n`` passages."""
    df = np.asarray(df).astype(np.float64)
    with np.errstate(divide="ignore"):
        if method == "robertson":
            return np.log(np.maximum((n - df + 0.5) / (df + 0.5), 1.0))
        if method == "lucene":
            return np.log(1.0 + (n - df + 0.5) / (df + 0.5))
        if method == "atire":
            return np.where(df > 0, np.log(n / np.maximum(df, 1)), 0.0)
    raise ConfigError(f"Unknown BM25 method {method!r}; valid values: {', '.join(METHODS)}.")


def score_matrix(table: TermTable, *, k1: float, b: float, method: str) -> dict:
    """bm25s's precomputed score matrix (``data``, ``indices``, ``indptr``, ``num_docs``) from a term table.

    Same formulas and dtypes as ``bm25s.BM25.index`` (float32 scores, int32
    passage indices, int64 column pointers), vectorised: every posting's term
    part is computed in passage order, scipy's CSR → CSC conversion (one
    counting pass in C++, passages kept ascending within a term) lays it out
    by term, and each column is scaled by its term's idf (the document
    frequencies are the column lengths). Large temporaries are reused in
    place: at 85M postings each fresh array costs a pass of page faults, which
    on some machines (VMs) is slower than the arithmetic itself.
    """
    from scipy import sparse

    n, n_vocab = len(table), len(table.vocab)
    terms = np.asarray(table.terms)
    doc_len = np.asarray(table.doc_len)
    doc_ptr = np.asarray(table.doc_ptr, dtype=np.int64)
    avg = float(doc_len.mean()) if n else 1.0
    norm = (k1 * ((1 - b) + b * doc_len.astype(np.float32) / np.float32(avg or 1.0))).astype(np.float32)
    tfs = np.array(table.tfs, dtype=np.float32)  # a copy we own: overwritten below
    norm = np.repeat(norm, np.diff(doc_ptr))
    np.add(norm, tfs, out=norm)  # tf + k1 (1 - b + b dl / avgdl)
    if method == "atire":
        np.multiply(tfs, np.float32(k1 + 1), out=tfs)
    np.divide(tfs, norm, out=tfs)
    del norm
    by_term = sparse.csr_matrix((tfs, terms, doc_ptr), shape=(n, n_vocab), copy=False).tocsc()
    del tfs
    df = np.diff(by_term.indptr)
    data = by_term.data.astype(np.float32, copy=False)
    data *= np.repeat(idf(df, n, method).astype(np.float32), df)
    return {
        "data": data,
        "indices": by_term.indices.astype(np.int32, copy=False),
        "indptr": by_term.indptr.astype(np.int64, copy=False),
        "num_docs": n,
    }


class BM25Index:
    """BM25 over a :class:`TermTable`, searched with bm25s or rank-bm25."""

    def __init__(
        self,
        table: TermTable,
        *,
        engine: str | BM25Engine = BM25Engine.BM25S,
        method: str = DEFAULT_METHOD,
        k1: float = 1.5,
        b: float = 0.75,
        settings: TokenizerSettings = TokenizerSettings(),
        bm25s_model=None,
    ):
        self.table = table
        self.engine = BM25Engine.parse(engine)
        if method not in METHODS:
            raise ConfigError(f"Unknown BM25 method {method!r}; valid values: {', '.join(METHODS)}.")
        self.method, self.k1, self.b = method, k1, b
        self.tokenizer = BM25Tokenizer(settings)
        self._vocab = table.vocab
        self._bm25s = bm25s_model
        self._okapi = None
        self._df: np.ndarray | None = None  # passages per term id, counted on first use
        if self.engine is BM25Engine.BM25S and self._bm25s is None:
            self._bm25s = self._make_bm25s()
        elif self.engine is BM25Engine.RANK_BM25 and len(table):
            from rank_bm25 import BM25Okapi

            names = [""] * len(self._vocab)
            for term, i in self._vocab.items():
                names[i] = term
            self._okapi = BM25Okapi([table.tokens(i, names) for i in range(len(table))], k1=k1, b=b)

    def _make_bm25s(self):
        import bm25s

        model = bm25s.BM25(k1=self.k1, b=self.b, method=self.method)
        model.scores = score_matrix(self.table, k1=self.k1, b=self.b, method=self.method)
        model.vocab_dict = self._vocab
        model.unique_token_ids_set = set(self._vocab.values())
        model.nonoccurrence_array = None
        return model

    @property
    def bm25s_model(self):
        """The ``bm25s.BM25`` object serving queries (``None`` for the rank-bm25 engine)."""
        return self._bm25s

    @classmethod
    def from_texts(cls, texts: Iterable[str], **kwargs) -> "BM25Index":
        settings = kwargs.get("settings", TokenizerSettings())
        return cls(TermTable.from_tokens(BM25Tokenizer(settings).many(texts)), **kwargs)

    def __len__(self) -> int:
        return len(self.table)

    def extended(self, texts: Iterable[str]) -> "BM25Index":
        """A new index with ``texts`` appended: only they are tokenised; statistics are recomputed."""
        vocab = dict(self._vocab)
        new = TermTable.from_tokens(self.tokenizer.many(texts), vocab)
        return self.with_table(TermTable.concat([self.table, new]))

    def with_table(self, table: TermTable) -> "BM25Index":
        return BM25Index(
            table, engine=self.engine, method=self.method, k1=self.k1, b=self.b, settings=self.tokenizer.settings
        )

    @property
    def stemmer(self) -> str | None:
        """The Snowball stemmer this index's terms went through (``None``: none)."""
        return self.tokenizer.settings.stemmer

    def document_frequencies(self, terms: Iterable[str]) -> dict[str, int]:
        """How many passages hold each of ``terms`` (terms as this index's tokenizer makes them); 0 for one none holds.

        Read once, on first use: with bm25s, from the lengths of its score matrix's
        term columns (one number per term, however many passages); with rank-bm25,
        counted in one pass over the term table's postings.
        """
        if self._df is None:
            self._df = self._count_documents()
        return {t: int(self._df[self._vocab[t]]) if t in self._vocab else 0 for t in terms}

    def _count_documents(self) -> np.ndarray:
        """Passages per term id (see :meth:`document_frequencies`)."""
        n_vocab = len(self._vocab)
        if self._bm25s is not None:  # column j of the matrix holds the passages of term j (score_matrix)
            per_term = np.diff(np.asarray(self._bm25s.scores["indptr"], dtype=np.int64))[:n_vocab]
            return np.pad(per_term, (0, n_vocab - len(per_term)))
        return np.bincount(np.asarray(self.table.terms), minlength=n_vocab)

    def term_ids(self, query: str) -> list[int]:
        """The query's term ids (repeats kept, unknown terms dropped)."""
        return [self._vocab[t] for t in self.tokenizer(query) if t in self._vocab]

    def scores(self, query: str) -> np.ndarray:
        """BM25 score of every passage for ``query``."""
        if self.engine is BM25Engine.RANK_BM25:
            terms = self.tokenizer(query)
            if not terms or self._okapi is None:
                return np.zeros(len(self), dtype=np.float32)
            return np.asarray(self._okapi.get_scores(terms), dtype=np.float32)
        ids = self.term_ids(query)
        if not ids or not len(self):
            return np.zeros(len(self), dtype=np.float32)
        return np.asarray(self._bm25s.get_scores_from_ids(ids), dtype=np.float32)

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
        return {
            "engine": self.engine.value,
            "method": self.method if self.engine is BM25Engine.BM25S else "rank-bm25 (BM25Okapi, epsilon 0.25)",
            "k1": self.k1,
            "b": self.b,
            "tokenizer": asdict(self.tokenizer.settings),
            "vocabulary": len(self._vocab),
        }

    def save(self, index_dir: str | Path) -> Path:
        """Write ``bm25/`` into ``index_dir``: the term table, and bm25s's matrix for the bm25s engine."""
        directory = Path(index_dir) / DIR_NAME
        self.table.save(directory)
        if self.engine is BM25Engine.BM25S:
            self._bm25s.save(directory, show_progress=False)
        header = {"format": FORMAT, "count": len(self), **self.settings_dict()}
        (directory / TABLE_FILE).write_text(json.dumps(header, indent=2) + "\n", encoding="utf-8")
        return directory

    @classmethod
    def load(cls, index_dir: str | Path, *, engine: str | BM25Engine | None = None, mmap: bool = True) -> "BM25Index":
        """Open ``bm25/``; ``engine`` overrides the built one (rank-bm25 can open any index, bm25s needs its matrix)."""
        directory = Path(index_dir) / DIR_NAME
        try:
            header = json.loads((directory / TABLE_FILE).read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise IndexMismatchError(f"{directory} has no readable {TABLE_FILE} ({exc}); rebuild the index.") from exc
        if header.get("format") != FORMAT:
            raise IndexMismatchError(f"{directory} is not a {FORMAT} index (found {header.get('format')!r}); rebuild the index.")
        table = TermTable.load(directory, mmap=mmap)
        if len(table) != header["count"]:
            raise IndexMismatchError(f"{directory} is truncated: {len(table)} of {header['count']} passages; rebuild the index.")
        engine = BM25Engine.parse(engine or header["engine"])
        method = header["method"] if header["engine"] == BM25Engine.BM25S.value else DEFAULT_METHOD
        kwargs = dict(engine=engine, method=method, k1=header["k1"], b=header["b"], settings=TokenizerSettings(**header["tokenizer"]))
        model = None
        if engine is BM25Engine.BM25S and header["engine"] == BM25Engine.BM25S.value:
            import bm25s

            try:
                model = bm25s.BM25.load(directory, mmap=mmap, load_vocab=False)
            except (OSError, ValueError, KeyError, TypeError) as exc:
                raise IndexMismatchError(f"{directory} holds an unreadable BM25 matrix ({exc}); rebuild the index.") from exc
            _check_matrix(directory, model.scores, len(table), len(table.vocab))
            model.vocab_dict = table.vocab
            model.unique_token_ids_set = set(table.vocab.values())
        return cls(table, bm25s_model=model, **kwargs)
