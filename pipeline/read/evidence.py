"""What the answer's paragraph says of the question: the evidence the abstention reads besides the models' scores.

:class:`LexicalEvidence`: how much of the question's wording the answer's
paragraph and sentence hold, and how rare a missing term is in the index (how
SQuAD 2.0's unanswerable questions were written: a swapped-in entity, a negation
or a condition the paragraph lacks). :func:`dense_similarity` and
:func:`sentence_similarity`: how close the question is in the bi-encoder's space
to the top paragraph and to the closest sentence of the answer's paragraph.

>>> LexicalEvidence().features("Who founded Warsaw?", "Warsaw was founded by Boleslaw.", 22, 30)["question_coverage"]
1.0
"""

from __future__ import annotations

import math
import re
from typing import Callable, Iterable, Mapping, Sequence

import numpy as np

from pipeline.index.bm25 import (
    STOPWORDS,
    BM25Index,
    BM25Tokenizer,
    TokenizerSettings,
    idf,
)
from pipeline.results import Hit

#: Words that say what is asked, not what about: left out of the question's content terms.
_ASK_WORDS = frozenset(
    "what which who whom whose when where why how did does do done many much was were is are be been name "
    "a an and as at but by for if in into it of on or such that the their then there these they this to "
    "with from has have had can could would should "
    # what kind of answer is wanted, rarely said in the answering sentence
    "year years date day month century percent percentage number amount kind type term called".split()
)
_NEGATIONS = frozenset({"not", "no", "never", "none", "nor", "without", "cannot"})
_WORD = re.compile(r"\w+", re.UNICODE)
#: A sentence ends at . ! or ? before a space and a capital, a digit or the end, unless the word it closes
#: is an initial or a short abbreviation ("O.S. 28 June", "U.S. Army", "Dr. Smith").
_SENTENCE_END = re.compile(r"(?:(?<=[^\W\d_]{2})|(?<=[\d)\]\"']))[.!?](?=\s+[\"'(\[]?[A-Z0-9]|\s*$)")
_ABBREVIATIONS = frozenset("mr mrs ms dr st jr sr vs mt ft gen col lt sgt no co inc ltd corp approx est".split())
#: The lexical features of a search without a question or an answer: nothing says the question is off.
COVERED = {"question_coverage": 1.0, "sentence_coverage": 1.0, "missing_terms": 0.0, "negation_mismatch": 0.0,
           "rare_term_missing": 0.0}

#: The bi-encoder's cosine similarity of a question to each of some texts (:meth:`BiEncoder.similarities`).
Similarity = Callable[[str, Sequence[str]], Sequence[float]]
#: At most this many sentences of the answer's paragraph are compared with the question (a bound on the cost).
MAX_SENTENCES = 32


class LexicalEvidence:
    """How much of a question's wording the answer's paragraph and sentence hold (stemmed content terms).

    SQuAD 2.0's unanswerable questions were written against a real paragraph by
    swapping an entity, adding a negation or a condition the paragraph lacks: a
    term of the question that the answer's paragraph never mentions is evidence
    against it, which neither the reranker nor the reader sees on its own.

    With the index's document frequencies (:meth:`of_index`) it also weighs how
    rare a missing term is: a swapped-in name is rarer than a reworded verb.

    >>> lexical = LexicalEvidence()
    >>> lexical.features("Who founded Warsaw?", "Warsaw was founded by Boleslaw.", 22, 30)["missing_terms"]
    0.0
    """

    def __init__(
        self,
        frequencies: Callable[[Iterable[str]], Mapping[str, int]] | None = None,
        passages: int = 0,
        stemmer: str | None = "english",
    ) -> None:
        self._stem = BM25Tokenizer(TokenizerSettings(stopwords=False, stemmer=stemmer))
        self._frequencies = frequencies if passages > 0 else None
        self._passages = passages

    @classmethod
    def of_index(cls, bm25: BM25Index) -> "LexicalEvidence":
        """Lexical evidence that knows ``bm25``'s document frequencies and stems as its tokenizer does.

        ``bm25``: a :class:`BM25Index`, or anything with its ``document_frequencies``,
        ``stemmer`` and ``len`` (the Ray app asks its retrieval deployment).
        """
        return cls(bm25.document_frequencies, len(bm25), bm25.stemmer)

    def rarity(self, asked: set[str], held: set[str]) -> float:
        """How rare the rarest of the ``asked`` terms that ``held`` lacks is, relative to the rarest asked term (0..1).

        1: the question's rarest term is missing; 0: none is. Rarity is BM25's
        ``lucene`` idf, log(1 + (N - df + 0.5) / (df + 0.5)) over the index's N
        passages (:func:`pipeline.index.bm25.idf`); as a share
        of the question's own rarest term it reads the same in a small index and a
        large one. NaN without document frequencies.
        """
        if self._frequencies is None:
            return math.nan
        terms = [t for t in asked if t not in STOPWORDS]
        if not terms:
            return 0.0
        df = self._frequencies(terms)
        rarity = dict(zip(terms, idf(np.array([df[t] for t in terms]), self._passages, "lucene").tolist()))
        rarest = max(rarity.values())
        return max((rarity[t] for t in terms if t not in held), default=0.0) / rarest if rarest > 0 else 0.0

    def terms(self, text: str) -> set[str]:
        """The stemmed content terms of ``text``: no question words, negations or single letters."""
        words = _WORD.findall(text.lower())
        kept = [w for w in words if w not in _ASK_WORDS and w not in _NEGATIONS and (len(w) > 1 or w.isdigit())]
        return set(self._stem(" ".join(kept)))

    @staticmethod
    def _sentence_ends(text: str) -> list[int]:
        return [m.end() for m in _SENTENCE_END.finditer(text) if not LexicalEvidence._abbreviation(text, m.start())]

    @staticmethod
    def sentence(text: str, start: int, end: int) -> str:
        """The sentence of ``text`` that holds ``text[start:end]`` (cut at . ! ? followed by a space)."""
        ends = LexicalEvidence._sentence_ends(text)
        begin = max((e for e in ends if e <= start), default=0)
        after = min((e for e in ends if e >= max(end, begin + 1)), default=len(text))
        return text[begin:after].strip()

    @staticmethod
    def sentences(text: str) -> list[str]:
        """The sentences of ``text``, cut as :meth:`sentence` cuts them.

        >>> LexicalEvidence.sentences("Dr. Smith came in 1990. He left. ")
        ['Dr. Smith came in 1990.', 'He left.']
        """
        bounds = [0, *LexicalEvidence._sentence_ends(text), len(text)]
        return [part for begin, after in zip(bounds, bounds[1:]) if (part := text[begin:after].strip())]

    @staticmethod
    def _abbreviation(text: str, dot: int) -> bool:
        word = re.search(r"(\w+)$", text[:dot])
        return bool(word) and word.group(1).lower() in _ABBREVIATIONS

    def features(self, question: str, text: str, start: int, end: int) -> dict[str, float]:
        """The lexical features of answering ``question`` with ``text[start:end]`` (names as in :data:`FEATURES`)."""
        asked = self.terms(question)
        if not asked:
            return dict(COVERED)
        held = self.terms(text)
        sentence = self.sentence(text, start, end)
        in_sentence = self.terms(sentence)
        words = set(_WORD.findall(question.lower()))
        negated = bool(words & _NEGATIONS) or "n't" in question.lower()
        sentence_negated = bool(set(_WORD.findall(sentence.lower())) & _NEGATIONS) or "n't" in sentence.lower()
        return {
            "question_coverage": len(asked & held) / len(asked),
            "sentence_coverage": len(asked & in_sentence) / len(asked),
            "missing_terms": float(min(len(asked - held), 5)),
            "negation_mismatch": 1.0 if negated and not sentence_negated else 0.0,
            "rare_term_missing": self.rarity(asked, in_sentence),
        }


def dense_similarity(hits: Sequence[Hit]) -> float:
    """The bi-encoder's similarity of the question and the first hit (:func:`dense_scores`); NaN without dense scores.

    SQuAD 2.0's unanswerable questions sit further from their closest paragraph in
    the bi-encoder's space than answerable ones do (docs/answers.md), and the
    bi-encoder never saw them.
    """
    return dense_scores([h.scores for h in hits])[0] if hits else math.nan


def sentence_similarity(question: str, text: str, similarity: Similarity | None) -> float:
    """The bi-encoder's similarity of ``question`` and the closest sentence of ``text``; NaN without ``similarity``.

    The answer's paragraph may be close to the question as a whole (``dense_similarity``)
    while no sentence of it says what is asked: an unanswerable question of SQuAD 2.0
    shares the paragraph's topic, but its best sentence stays further from it than an
    answerable question's does (docs/answers.md). The first :data:`MAX_SENTENCES` count.

    >>> sentence_similarity("q", "One. Two.", lambda q, texts: [0.25 * len(t) for t in texts])
    1.0
    """
    if similarity is None:
        return math.nan
    sentences = compared_sentences(text)
    if not sentences:
        return math.nan
    return float(max(similarity(question, sentences)))


def compared_sentences(text: str) -> list[str]:
    """The sentences of ``text`` that :func:`sentence_similarity` compares with the question.

    The first :data:`MAX_SENTENCES`, cut as :meth:`LexicalEvidence.sentences` cuts them; the pipeline
    encodes these ahead for a batch of searches.
    """
    return LexicalEvidence.sentences(text)[:MAX_SENTENCES]


def dense_scores(scores: Sequence[Mapping[str, float]]) -> list[float]:
    """Each hit's bi-encoder similarity to the question, from its ``scores`` (``"dense"``).

    A reranked dense or hybrid search gives every hit its own. Where a hit has none
    (a collection made before it did), its similarity is below every one the dense
    list returned: the lowest among these hits stands in for it. NaN for every hit
    when none has a dense score (a BM25 search).
    """
    known = [float(s["dense"]) for s in scores if s.get("dense") is not None]
    floor = min(known) if known else math.nan
    return [float(s["dense"]) if s.get("dense") is not None else floor for s in scores]
