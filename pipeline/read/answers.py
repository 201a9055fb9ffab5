"""From read paragraphs to one answer, or to "no paragraph here answers this".

**Evidence.** The pipeline reads the top :attr:`AnswerPolicy.paragraphs` hits
in the blended order, before their span scores move them (whether or not they
pass the answerable threshold). Every span the reader proposes in hit *p* (:class:`~pipeline.read.reader.Reading`)
gets the weight

    w(p, span) = paragraph_weight * log P(p) + span_score / temperature

where ``P(p)`` is the hit's probability (the paragraph's probability of
answering; 1 without a reranker) and ``span_score`` is start + end logit
(relative to the null score for no-answer models), a number that means the
same in every paragraph. A softmax over all spans of all read paragraphs turns
the weights into shares of the evidence (they sum to 1 over the search).

**Aggregation.** Spans whose text normalises alike (official SQuAD
normalisation) are one answer: its score is the sum of their shares, and every
paragraph that gives it is listed in ``support`` (its best span there and its
share). The best answer is the one with most evidence, as open-domain QA
systems aggregate.

**Abstention.** A logistic regression (:class:`AnswerPolicy`: standardised
features, coefficients, intercept, threshold; a small JSON file) turns
:func:`answer_features` (the top paragraph's probability and its lead over the
next, the best answer's share and how many read paragraphs agree on it, its
span score, whether the reranker's top is the retriever's top, and how much of
the question's wording the answer's paragraph and sentence hold, and how rare
in the index a question term the answer's sentence lacks is:
:class:`LexicalEvidence`, and how close the top paragraph is to the question
in the bi-encoder's space, and the answer's paragraph's closest sentence:
:func:`dense_similarity`, :func:`sentence_similarity`; opt-in, how the question
is worded: :meth:`AnswerPolicy.question_form_score`) into ``answerability``;
below the policy's threshold the search abstains. The
shipped policy (``answer_policy.json`` beside this module) was fitted by
``benchmarks/answers_fit.py`` on SQuAD v2.0 questions of the tune articles
with grouped cross-validation by article; it records the models it was fitted
for and its cross-validated figures.
"""

from __future__ import annotations

import json
import logging
import math
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Sequence

import numpy as np

from pipeline.errors import ConfigError
from pipeline.files import write_json
from pipeline.index.bm25 import (
    STOPWORDS,
    BM25Index,
    BM25Tokenizer,
    TokenizerSettings,
    idf,
)
from pipeline.rank.reading import reading_mismatch
from pipeline.read.normalize import normalize_answer
from pipeline.read.reader import Reading
from pipeline.results import Answer, BestAnswer, Hit, Support

logger = logging.getLogger(__name__)

#: The policy shipped with the package (fitted on the stand-in models; see the module doc).
DEFAULT_POLICY = Path(__file__).with_name("answer_policy.json")

#: Features of the abstention model, in the order its coefficients follow.
FEATURES = (
    "probability",
    "probability_gap",
    "share",
    "agreement",
    "span_score",
    "answer_probability",
    "top_agrees",
    "answer_in_top",
    "question_coverage",
    "sentence_coverage",
    "missing_terms",
    "negation_mismatch",
    "dense_similarity",
    "rare_term_missing",
    "sentence_similarity",
    "question_form",
)

#: How an abstention's reason names a feature that weighed against answering (every name in :data:`FEATURES`).
FEATURE_LABELS = {
    "probability": "the top paragraph's reranker probability",
    "probability_gap": "its lead over the next paragraph",
    "share": "the answer's share of the evidence",
    "agreement": "the read paragraphs that agree on it",
    "span_score": "the reader's span score",
    "answer_probability": "the probability of the paragraphs that give it",
    "top_agrees": "whether reranker and retriever agree on the top paragraph",
    "answer_in_top": "whether the top paragraph gives it",
    "question_coverage": "the question's terms in the paragraph",
    "sentence_coverage": "the question's terms in the answer's sentence",
    "missing_terms": "the question's terms the paragraph never mentions",
    "negation_mismatch": "a negation the answer's sentence does not make",
    "dense_similarity": "how close question and paragraph are in meaning",
    "rare_term_missing": "the question's rare terms the answer's sentence lacks",
    "sentence_similarity": "how close the question is in meaning to the paragraph's closest sentence",
    "question_form": "how the question is worded",
}

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
#: The words :meth:`AnswerPolicy.question_form_score` reads: scikit-learn's CountVectorizer tokens (2+ word characters).
_FORM_TOKEN = re.compile(r"(?u)\b\w\w+\b")
#: A sentence ends at . ! or ? before a space and a capital, a digit or the end, unless the word it closes
#: is an initial or a short abbreviation ("O.S. 28 June", "U.S. Army", "Dr. Smith").
_SENTENCE_END = re.compile(r"(?:(?<=[^\W\d_]{2})|(?<=[\d)\]\"']))[.!?](?=\s+[\"'(\[]?[A-Z0-9]|\s*$)")
_ABBREVIATIONS = frozenset("mr mrs ms dr st jr sr vs mt ft gen col lt sgt no co inc ltd corp approx est".split())
#: The lexical features of a search without a question or an answer: nothing says the question is off.
_COVERED = {"question_coverage": 1.0, "sentence_coverage": 1.0, "missing_terms": 0.0, "negation_mismatch": 0.0,
            "rare_term_missing": 0.0}

_FLOOR = 1e-6  # probabilities are clipped here before the log

#: The bi-encoder's cosine similarity of a question to each of some texts (:meth:`BiEncoder.similarities`).
Similarity = Callable[[str, Sequence[str]], Sequence[float]]
#: At most this many sentences of the answer's paragraph are compared with the question (a bound on the cost).
MAX_SENTENCES = 32


@dataclass(frozen=True)
class AnswerPolicy:
    """How answers are chosen and when the search abstains (see the module doc)."""

    paragraphs: int = 5
    paragraph_weight: float = 1.0
    temperature: float = 1.0
    features: tuple[str, ...] = ()
    mean: tuple[float, ...] = ()
    scale: tuple[float, ...] = ()
    coef: tuple[float, ...] = ()
    intercept: float = 0.0
    threshold: float | None = None
    question_form: Mapping[str, Any] = field(default_factory=dict)
    fitted_for: Mapping[str, Any] = field(default_factory=dict)
    figures: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not isinstance(self.paragraphs, int) or self.paragraphs < 1:
            raise ConfigError(f"The answer policy's paragraphs must be a positive whole number, got {self.paragraphs!r}.")
        if self.temperature <= 0 or self.paragraph_weight < 0:
            raise ConfigError("The answer policy's temperature must be > 0 and its paragraph_weight >= 0.")
        unknown = [f for f in self.features if f not in FEATURES]
        if unknown:
            raise ConfigError(f"Unknown answer-policy feature(s) {', '.join(unknown)}; known: {', '.join(FEATURES)}.")
        sizes = {len(self.features), len(self.mean), len(self.scale), len(self.coef)}
        if len(sizes) != 1:
            raise ConfigError("The answer policy needs one mean, scale and coefficient per feature.")
        if self.threshold is not None and not 0.0 <= self.threshold <= 1.0:
            raise ConfigError(f"The answer policy's threshold must be between 0 and 1, got {self.threshold}.")
        if not isinstance(self.question_form, Mapping):
            raise ConfigError("The answer policy's question_form must be a JSON object (intercept and weights).")
        if "question_form" in self.features:
            weights = self.question_form.get("weights")
            if not isinstance(weights, Mapping) or not weights or not all(
                    isinstance(w, str) and isinstance(v, (int, float)) for w, v in weights.items()):
                raise ConfigError("The answer policy uses the question_form feature but has no question_form "
                                  "weights (a JSON object of word: weight); refit it with benchmarks/answers_fit.py.")

    @property
    def abstains(self) -> bool:
        """Whether this policy can abstain (it has a fitted model and a threshold)."""
        return bool(self.features) and self.threshold is not None

    @classmethod
    def load(cls, path: str | Path | None = None) -> "AnswerPolicy":
        """The policy in the JSON file at ``path`` (``None``: the shipped one)."""
        path = Path(path).expanduser() if path is not None else DEFAULT_POLICY
        if not path.is_file():
            raise ConfigError(f"No answer policy file at {path}; fit one with benchmarks/answers_fit.py.")
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise ConfigError(f"The answer policy {path} is not JSON ({exc}).") from exc
        if not isinstance(data, dict):
            raise ConfigError(f"The answer policy {path} must be a JSON object.")
        known = {f.name for f in cls.__dataclass_fields__.values()}
        args = {k: v for k, v in data.items() if k in known}
        for key in ("features", "mean", "scale", "coef"):
            args[key] = tuple(args.get(key, ()))
        try:
            return cls(**args)
        except TypeError as exc:
            raise ConfigError(f"The answer policy {path} is malformed ({exc}).") from exc

    def save(self, path: str | Path) -> Path:
        """Write the policy as JSON (to a temporary file first, then renamed into place)."""
        data = asdict(self)
        data["fitted_for"], data["figures"] = dict(self.fitted_for), dict(self.figures)
        if self.question_form:
            data["question_form"] = json.loads(json.dumps(self.question_form, default=dict))
        else:  # a policy without the feature reads as before it existed
            del data["question_form"]
        return write_json(path, data)

    def question_form_score(self, question: str) -> float:
        """How the wording of ``question`` alone bears on its being answerable: a log-odds; NaN without weights.

        A logistic model over which closed-class words (scikit-learn's English stop
        words: question words, negations, quantifiers) the question uses, fitted by
        ``benchmarks/answers_fit.py --features ...,question_form`` out of fold on the
        questions the policy is fitted on. It is a prior learned from how those
        questions were written, not evidence from the paragraphs, so the shipped
        policy leaves it out: on SQuAD 2.0 it learns that crowd's habits ("not"
        and "never" in unanswerable questions, "which" in answerable ones), which
        a product's users do not share (docs/answers.md). Fitted on a deployment's
        own questions, it learns how its users word what the documents cannot answer.

        >>> AnswerPolicy(question_form={"intercept": 0.5, "weights": {"not": -2.0}}).question_form_score("Who did not win?")
        -1.5
        """
        weights = self.question_form.get("weights") if self.question_form else None
        if not weights:
            return math.nan
        words = set(_FORM_TOKEN.findall(question.lower()))
        return float(self.question_form.get("intercept", 0.0)) + sum(float(weights.get(w, 0.0)) for w in words)

    def mismatch(self, *, read_paragraphs: int, read_weight: float) -> str | None:
        """Why this policy's answerability does not hold for a search reading so, or ``None`` when it does.

        A policy records the reading it was fitted with (``fitted_for``); its features
        (the span scores after the reader's move, the agreement over the paragraphs
        read) mean something else when a search reads another number of paragraphs
        or moves them by another weight.
        """
        return reading_mismatch(self.fitted_for.get("read_weight"), self.fitted_for.get("read_paragraphs"),
                                read_weight, read_paragraphs)

    def answerability(self, features: Mapping[str, float]) -> float | None:
        """The fitted probability (0..1) that some read paragraph answers; ``None`` without a fitted model."""
        if not self.features:
            return None
        z = self.intercept + sum(self.contributions(features).values())
        return 1.0 / (1.0 + math.exp(-z)) if z > -700 else 0.0

    def contributions(self, features: Mapping[str, float]) -> dict[str, float]:
        """Each feature's pull on the answerability logit: coefficient × its standardised value.

        Negative pulls toward abstaining. A feature the search could not measure (NaN)
        counts as the fit's mean: no pull.
        """
        pulls = {}
        for name, mean, scale, coef in zip(self.features, self.mean, self.scale, self.coef):
            value = float(features[name])
            pulls[name] = coef * (value - mean) / (scale or 1.0) if math.isfinite(value) else 0.0
        return pulls

    def weighed_against(self, features: Mapping[str, float], most: int = 2) -> str:
        """The ``most`` features that pulled hardest toward abstaining, in words with their values ("" if none did)."""
        pulls = sorted((pull, name) for name, pull in self.contributions(features).items() if pull < 0)
        return ", ".join(f"{FEATURE_LABELS[name]} ({_shown(features[name])})" for _, name in pulls[:most])


@dataclass
class Candidate:
    """One distinct (normalised) answer with the evidence for it, best paragraph first in ``support``."""

    text: str
    key: str
    score: float
    span_score: float
    support: list[Support]


@dataclass
class Decision:
    """The answer of one search: ``answer`` (``None`` when abstaining), the best ``candidate``, why not."""

    answer: BestAnswer | None
    candidate: BestAnswer | None
    answerability: float | None
    reason: str | None
    candidates: list[Candidate]
    hit_answers: list[Answer | None]


def aggregate(hits: Sequence[Hit], readings: Sequence[Reading], policy: AnswerPolicy) -> tuple[list[Candidate], list[Answer | None]]:
    """Distinct answers over the read hits, most evidence first, and each hit's own best span (see the module doc)."""
    rows: list[tuple[int, float, Any]] = []  # (hit index, weight, span)
    for h, (hit, reading) in enumerate(zip(hits, readings)):
        prior = 0.0 if hit.probability is None else policy.paragraph_weight * math.log(max(reranker_probability(hit), _FLOOR))
        for span in reading.spans:
            rows.append((h, prior + span.score / policy.temperature, span))
    hit_answers: list[Answer | None] = [None] * len(hits)
    if not rows:
        return [], hit_answers
    weights = np.array([w for _, w, _ in rows])
    shares = np.exp(weights - weights.max())
    shares /= shares.sum()
    groups: dict[str, dict[int, list[tuple[float, Any]]]] = {}
    for (h, _, span), share in zip(rows, shares):
        key = normalize_answer(span.text) or span.text.strip().lower()
        groups.setdefault(key, {}).setdefault(h, []).append((float(share), span))
        best = hit_answers[h]
        if best is None or share > best.score:
            hit_answers[h] = Answer(span.text, span.start, span.end, float(share), float(span.score))
    candidates = []
    for key, by_hit in groups.items():
        support = []
        for h, items in by_hit.items():
            top_share, top_span = max(items, key=lambda item: item[0])
            support.append((sum(s for s, _ in items), top_share, h, top_span))
        support.sort(key=lambda item: (-item[0], item[2]))
        first = support[0][3]
        candidates.append(
            Candidate(
                text=first.text,
                key=key,
                score=float(sum(s[0] for s in support)),
                span_score=float(max(s[3].score for s in support)),
                support=[Support(hits[h].id, span.start, span.end, round(total, 6)) for total, _, h, span in support],
            )
        )
    candidates.sort(key=lambda c: -c.score)
    return candidates, hit_answers


def reranker_probability(hit: Hit) -> float:
    """The reranker's own probability of a hit: what the shipped answer policy was fitted on.

    ``hit.probability`` is the ranking policy's (pipeline/rank); until the answer
    policy is refitted on it, the evidence and the abstention model read the
    reranker's probability (``scores["rerank"]``), as when they were fitted.
    """
    return float(hit.scores.get("rerank", hit.probability or 0.0))


def _retrieval_rank(hit: Hit) -> int | None:
    for stage in ("fused", "bm25", "dense"):
        if stage in hit.ranks:
            return hit.ranks[stage]
    return None


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
            return dict(_COVERED)
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


def answer_features(
    hits: Sequence[Hit], candidates: Sequence[Candidate], read: int, question: str = "",
    lexical: LexicalEvidence | None = None, question_form: Callable[[str], float] | None = None,
    similarity: Similarity | None = None,
) -> dict[str, float]:
    """The abstention model's inputs for one search (names in :data:`FEATURES`).

    ``question`` (and the hits' texts) feed the lexical features; without them
    those features read as a fully covered question. ``similarity`` (the
    bi-encoder's) gives ``sentence_similarity``; without it that is NaN
    (unmeasured: no pull). ``question_form`` scores the
    question's wording (:meth:`AnswerPolicy.question_form_score`); without it or
    a question, ``question_form`` is NaN (unmeasured: no pull).
    """
    probs = [reranker_probability(h) if h.probability is not None else 0.0 for h in hits]
    top = candidates[0] if candidates else None
    ids = {s.id for s in top.support} if top else set()
    by_id = {h.id: p for h, p in zip(hits, probs)}
    lexical_features = dict(_COVERED)
    closest = math.nan
    if top is not None and question:
        first = top.support[0]
        text = next((h.text for h in hits if h.id == first.id), "")
        if text:
            lexical_features = (lexical or LexicalEvidence()).features(question, text, first.start, first.end)
            closest = sentence_similarity(question, text, similarity)
    return {
        "probability": probs[0] if probs else 0.0,
        "probability_gap": (probs[0] - probs[1]) if len(probs) > 1 else (probs[0] if probs else 0.0),
        "share": top.score if top else 0.0,
        "agreement": len(top.support) / max(read, 1) if top else 0.0,
        "span_score": top.span_score if top else 0.0,
        "answer_probability": max((by_id.get(i, 0.0) for i in ids), default=0.0),
        "top_agrees": 1.0 if hits and _retrieval_rank(hits[0]) == 1 else 0.0,
        "answer_in_top": 1.0 if hits and hits[0].id in ids else 0.0,
        **lexical_features,
        "dense_similarity": dense_similarity(hits),
        "sentence_similarity": closest,
        "question_form": question_form(question) if question_form is not None and question else math.nan,
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


def _given_by(support: int, decided_on: int) -> str:
    """Which of the paragraphs the answer is decided on give the candidate, in words."""
    if decided_on == 1:
        return "from the first paragraph"
    return f"given by {support} of the first {decided_on} paragraphs"


def _below(score: float, threshold: float) -> str:
    """"0.19 is below 0.38": to two places, or as many more as it takes to tell them apart (0.3737 is below 0.3738)."""
    for places in (2, 3, 4, 5, 6):
        if f"{score:.{places}f}" != f"{threshold:.{places}f}":
            break
    return f"{score:.{places}f} is below {threshold:.{places}f}"


def _shown(value: float) -> str:
    """A feature's value as a reason shows it: whole numbers without decimals, others to two places."""
    value = float(value)
    if not math.isfinite(value):
        return "not measured"
    return str(int(value)) if value.is_integer() else f"{value:.2f}"


def best_answer_of(candidate: Candidate) -> BestAnswer:
    """The :class:`BestAnswer` of a candidate: text and span of its strongest paragraph, every paragraph in support."""
    first = candidate.support[0]
    return BestAnswer(
        text=candidate.text,
        start=first.start,
        end=first.end,
        score=round(candidate.score, 6),
        span_score=round(candidate.span_score, 4),
        id=first.id,
        support=list(candidate.support),
    )


def decide(
    hits: Sequence[Hit], readings: Sequence[Reading], policy: AnswerPolicy, *, abstain: bool = True, question: str = "",
    lexical: LexicalEvidence | None = None, threshold: float | None = None, similarity: Similarity | None = None,
) -> Decision:
    """Aggregate the read ``hits`` (``readings[i]`` is ``hits[i]``'s) and decide whether to answer ``question``.

    Abstains when the answerability is below ``threshold`` (``None``: the policy's).
    ``similarity``: the bi-encoder's (:func:`sentence_similarity`), asked only when the policy reads it.
    """
    read_hits = list(hits[: len(readings)])
    candidates, hit_answers = aggregate(read_hits, readings, policy)
    if not candidates:
        reason = "The reader found no answer span in the paragraphs it read." if read_hits else "No paragraph was read."
        return Decision(None, None, None, reason, [], hit_answers)
    candidate = best_answer_of(candidates[0])
    features = answer_features(hits, candidates, len(read_hits), question, lexical, policy.question_form_score,
                               similarity if "sentence_similarity" in policy.features else None)
    score = policy.answerability(features)
    limit = policy.threshold if threshold is None else threshold
    if abstain and policy.features and limit is not None and score is not None and score < limit:
        against = policy.weighed_against(features)
        reason = (
            f"No paragraph here answers this: answerability {_below(score, limit)} "
            f"(best candidate {candidate.text!r}, {_given_by(len(candidate.support), len(read_hits))}"
            + (f"; against it most: {against}" if against else "") + ")."
        )
        return Decision(None, candidate, score, reason, candidates, hit_answers)
    return Decision(candidate, candidate, score, None, candidates, hit_answers)
