"""When a search abstains: the fitted answer policy (:class:`AnswerPolicy`) and its features.

A logistic regression (standardised features, coefficients, intercept and
threshold; ``answer_policy.json`` beside this module, fitted by
``benchmarks/answers_fit.py`` on SQuAD v2.0 questions of the tune articles with
grouped cross-validation by article) turns the features of one search
(:data:`FEATURES`, computed by :func:`pipeline.read.answers.answer_features`)
into ``answerability``; below its threshold the search abstains. The policy also
says how answers are chosen (how many paragraphs, the paragraph weight, the
temperature: :mod:`pipeline.read.answers`), and records the models and the
reading it was fitted for.

>>> policy = AnswerPolicy(paragraphs=1, features=("span_score",), mean=(8.0,), scale=(2.0,), coef=(1.0,), threshold=0.5)
>>> round(policy.answerability({"span_score": 10.0}), 3)
0.731
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Mapping

from pipeline.errors import ConfigError
from pipeline.files import write_json
from pipeline.rank.reading import reading_mismatch

#: The policy shipped with the package (fitted on the stand-in models; docs/answers.md).
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

#: The words :meth:`AnswerPolicy.question_form_score` reads: scikit-learn's CountVectorizer tokens (2+ word characters).
_FORM_TOKEN = re.compile(r"(?u)\b\w\w+\b")


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
            raise ConfigError(f"No answer policy file at {path}; fit one with qa-search fit-answers.")
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
        return self._weighed(features, -1, most)

    def weighed_for(self, features: Mapping[str, float], most: int = 2) -> str:
        """The ``most`` features that pulled hardest toward answering, in words with their values ("" if none did)."""
        return self._weighed(features, +1, most)

    def _weighed(self, features: Mapping[str, float], sign: int, most: int) -> str:
        pulls = sorted((-sign * pull, name) for name, pull in self.contributions(features).items() if sign * pull > 0)
        return ", ".join(f"{FEATURE_LABELS[name]} ({_shown(features[name])})" for _, name in pulls[:most])


def _shown(value: float) -> str:
    """A feature's value as a reason shows it: whole numbers without decimals, others to two places."""
    value = float(value)
    if not math.isfinite(value):
        return "not measured"
    return str(int(value)) if value.is_integer() else f"{value:.2f}"
