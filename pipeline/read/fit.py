"""Fitting the answer policy's abstention model on questions known to have an answer or not (``qa-search fit-answers``).

The shipped policy (``answer_policy.json``) was fitted for the offline stand-in
models; with other models its answerability is uncalibrated. This refits it on
the models a deployment runs. The pipeline searches each question as usual,
reading as it does, with a collecting policy that measures the features to fit
and never abstains; every search whose reader found a candidate becomes one
:class:`AnswerRow`: its features (:attr:`~pipeline.results.SearchResult.evidence`)
and whether the question has an answer (SQuAD v2.0's ``is_impossible``). A
logistic regression (scikit-learn, standardised features, as the shipped policy)
is cross-validated grouped by article (no article is fitted and measured on),
then fitted on every row; the threshold is where ``keep`` of the answerable
questions keep their answer. How answers are chosen (paragraphs, weight,
temperature) is kept from the policy in use.

Fit on questions the models were not trained on: a model's outputs on its own
training questions are surer than on a user's, and a threshold fitted there
withholds answers elsewhere (docs/answers.md, "Fitting the policy").

Example::

    >>> rows, skipped = collect_answer_rows(qa, questions, FITTABLE)                         # doctest: +SKIP
    >>> fitted = fit_answer_policy(rows, qa.answer_policy, FITTABLE, fitted_for={})          # doctest: +SKIP
    >>> fitted.policy.save("my_answer_policy.json")                                          # doctest: +SKIP
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import numpy as np

from pipeline.errors import ConfigError
from pipeline.read.policy import FEATURES, AnswerPolicy

#: L2 strength of the logistic regression (benchmarks/answers_fit.py measured 0.03-3 alike on 5,690 questions).
C = 0.3
#: Share of the answerable questions that keep an answer at the fitted threshold (issue 18's operating point).
KEEP = 0.85
#: Features this fit measures from the searches. ``question_form`` is fitted out of fold on the questions'
#: wording, which benchmarks/answers_fit.py does.
FITTABLE = tuple(f for f in FEATURES if f != "question_form")


@dataclass(frozen=True)
class AnswerRow:
    """One searched question: its article (the cross-validation group), whether it has an answer, its features."""

    question_id: str
    group: str
    answerable: bool
    features: Mapping[str, float]


@dataclass
class AnswerFit:
    """A fitted :class:`AnswerPolicy` and how it did out of fold (per fold, and pooled over every fold's questions)."""

    policy: AnswerPolicy
    folds: list[dict[str, Any]]
    pooled: dict[str, Any]


def collecting_policy(base: AnswerPolicy, names: Sequence[str]) -> AnswerPolicy:
    """``base``'s way of choosing answers, measuring ``names`` and never abstaining (no threshold)."""
    n = len(names)
    return AnswerPolicy(paragraphs=base.paragraphs, paragraph_weight=base.paragraph_weight,
                        temperature=base.temperature, features=tuple(names), mean=(0.0,) * n, scale=(1.0,) * n,
                        coef=(0.0,) * n, intercept=0.0, threshold=None)


def check_features(names: Sequence[str]) -> tuple[str, ...]:
    """``names`` as a tuple, or a :class:`ConfigError` naming the unknown ones and the valid values."""
    unknown = [n for n in names if n not in FITTABLE]
    if unknown or not names:
        raise ConfigError(f"Unknown answer-policy feature(s) {', '.join(unknown) or '(none)'}; "
                          f"valid values: {', '.join(FITTABLE)}.")
    return tuple(names)


def collect_answer_rows(qa, questions: Sequence, names: Sequence[str], *, batch_size: int = 16,
                        progress: bool = True) -> tuple[list[AnswerRow], int]:
    """Search and read ``questions`` with ``qa`` (its settings), measuring ``names``; rows and the count without a candidate.

    ``questions``: :class:`~pipeline.eval.questions.Question` objects (their ``title``
    groups them, ``answerable`` labels them). ``qa`` keeps its own answer policy: the
    collecting policy is used for these searches only.
    """
    from tqdm.auto import tqdm

    if qa.reader is None:
        raise ConfigError("Fitting the answer policy needs a reader; do not pass --no-read.")
    names = check_features(names)
    rows: list[AnswerRow] = []
    skipped = 0
    base = qa.answer_policy
    qa.answer_policy = collecting_policy(base, names)
    try:
        with tqdm(total=len(questions), desc="Searching", unit="q", disable=not progress) as bar:
            for start in range(0, len(questions), batch_size):
                batch = questions[start:start + batch_size]
                for q, result in zip(batch, qa.search_many([q.text for q in batch], abstain=False, read=True)):
                    if result.evidence:
                        rows.append(AnswerRow(q.id, q.title, q.answerable, dict(result.evidence)))
                    else:
                        skipped += 1
                bar.update(len(batch))
    finally:
        qa.answer_policy = base
    return rows, skipped


def require_scikit_learn() -> None:
    """A :class:`ConfigError` saying how to install scikit-learn, which the fit needs, when it is missing."""
    import importlib.util

    if importlib.util.find_spec("sklearn") is None:
        raise ConfigError("Fitting the answer policy needs scikit-learn: pip install 'qa-search[eval]'.")


def fit_logistic(X: np.ndarray, y: np.ndarray, C: float = C):
    """Standardise ``X`` and fit scikit-learn's L2 logistic regression: ``(scaler, model)``."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    scaler = StandardScaler().fit(X)
    return scaler, LogisticRegression(C=C, max_iter=1000).fit(scaler.transform(X), y)


def model_fields(scaler, model) -> dict[str, Any]:
    """An :class:`AnswerPolicy`'s ``mean``, ``scale``, ``coef`` and ``intercept`` from a fitted scaler and model, as stored."""
    return {"mean": tuple(round(float(v), 6) for v in scaler.mean_),
            "scale": tuple(round(float(v), 6) for v in scaler.scale_),
            "coef": tuple(round(float(v), 6) for v in model.coef_[0]),
            "intercept": round(float(model.intercept_[0]), 6)}


def keep_threshold(scores: np.ndarray, y: np.ndarray, keep: float = KEEP) -> float:
    """The score at which ``keep`` of the answerable questions (y == 1) stay at or above it."""
    return float(np.quantile(scores[y == 1], 1.0 - keep))


def _filled(X: np.ndarray, means: np.ndarray) -> np.ndarray:
    """``X`` with each unmeasured (NaN) value replaced by its column's mean: no pull, as the policy reads it."""
    out = X.copy()
    missing = ~np.isfinite(out)
    out[missing] = np.take(means, np.nonzero(missing)[1])
    return out


def false_answer_rate_at_keep(scores: np.ndarray, y: np.ndarray, keep: float = KEEP) -> float:
    """The share of unanswerable questions (y == 0) that keep an answer where ``keep`` of the answerable ones do."""
    return float((scores[y == 0] >= keep_threshold(scores, y, keep)).mean())


def abstention_figures(y: np.ndarray, scores: np.ndarray, threshold: float) -> dict[str, Any]:
    """Questions, answerable ones, AUROC, and false-answer rate and recall at ``threshold`` (None where undefined)."""
    from sklearn.metrics import roc_auc_score

    kept = scores >= threshold
    return {"questions": int(len(y)), "answerable": int(y.sum()),
            "auroc": float(roc_auc_score(y, scores)) if 0 < y.sum() < len(y) else None,
            "false_answer_rate": float(kept[y == 0].mean()) if (y == 0).any() else None,
            "recall": float(kept[y == 1].mean()) if (y == 1).any() else None}


def fit_answer_policy(rows: Sequence[AnswerRow], base: AnswerPolicy, names: Sequence[str], *, folds: int = 5,
                      keep: float = KEEP, C: float = C, fitted_for: Mapping[str, Any] | None = None) -> AnswerFit:
    """Cross-validate by article, then fit on every row; the policy keeps ``base``'s way of choosing answers."""
    from sklearn.metrics import roc_auc_score
    from sklearn.model_selection import GroupKFold

    require_scikit_learn()
    names = check_features(names)
    if not 0.0 < keep < 1.0:
        raise ConfigError(f"--keep must be between 0 and 1 (the share of answerable questions that keep an answer), "
                          f"got {keep}.")
    y = np.array([int(r.answerable) for r in rows])
    if not len(y) or y.all() or not y.any():
        raise ConfigError("Fitting the answer policy needs questions with an answer and questions without one "
                          f"(SQuAD v2.0's is_impossible, or \"answerable\": false); got {int(y.sum())} answerable of {len(y)} searched with a "
                          "candidate.")
    groups = np.array([r.group for r in rows])
    articles = len(set(groups))
    if folds < 2 or articles < folds:
        raise ConfigError(f"--folds {folds} needs at least 2 folds and as many articles (or groups); the "
                          f"questions come from {articles}.")
    X = np.array([[float(r.features.get(n, np.nan)) for n in names] for r in rows], dtype=float)
    unmeasured = [n for j, n in enumerate(names) if not np.isfinite(X[:, j]).any()]
    if unmeasured:
        raise ConfigError(f"No search measured {', '.join(unmeasured)} (dense_similarity and sentence_similarity "
                          "need the bi-encoder's scores: a hybrid or dense search); leave it out of --features.")
    per_fold, out_of_fold = [], np.zeros(len(y))
    for k, (train, test) in enumerate(GroupKFold(n_splits=folds).split(X, y, groups)):
        if len(set(y[train])) < 2:
            raise ConfigError(f"Fold {k}'s training articles hold only {'answerable' if y[train].all() else 'unanswerable'}"
                              " questions; use fewer --folds, or questions of both kinds in more articles.")
        means = np.nanmean(X[train], axis=0)
        scaler, model = fit_logistic(_filled(X[train], means), y[train], C)
        threshold = keep_threshold(model.predict_proba(scaler.transform(_filled(X[train], means)))[:, 1], y[train],
                                   keep)
        out_of_fold[test] = model.predict_proba(scaler.transform(_filled(X[test], means)))[:, 1]
        per_fold.append({"fold": k, "articles": sorted(set(groups[test])), "threshold": threshold,
                         **abstention_figures(y[test], out_of_fold[test], threshold)})
    pooled = {"auroc": float(roc_auc_score(y, out_of_fold)), "keep": keep,
              "false_answer_rate_at_keep": false_answer_rate_at_keep(out_of_fold, y, keep),
              "questions": int(len(y)), "answerable": int(y.sum()), "articles": articles}
    means = np.nanmean(X, axis=0)
    scaler, model = fit_logistic(_filled(X, means), y, C)
    threshold = keep_threshold(model.predict_proba(scaler.transform(_filled(X, means)))[:, 1], y, keep)
    policy = AnswerPolicy(
        paragraphs=base.paragraphs, paragraph_weight=base.paragraph_weight, temperature=base.temperature,
        features=names,
        **model_fields(scaler, model),
        threshold=round(threshold, 6),
        fitted_for={**dict(fitted_for or {}), "questions": int(len(y)), "articles": sorted(set(groups)),
                    "keep_answerable": keep, "C": C, "folds": folds},
        figures={"cv_pooled_auroc": round(pooled["auroc"], 4),
                 "cv_false_answer_rate_at_keep": round(pooled["false_answer_rate_at_keep"], 4),
                 "cv_mean_fold_recall": round(float(np.mean([f["recall"] for f in per_fold])), 4)},
    )
    return AnswerFit(policy, per_fold, pooled)
