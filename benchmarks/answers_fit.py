"""Fit the answer policy (pipeline/read/answer_policy.json) on tune questions; report held-out end-to-end F1.

Works from the files of benchmarks/answers_collect.py (each question's hits and
reader spans), so no model runs here:

1. **Answer selection** (tune, answerable questions): a grid over the paragraphs
   read (N), the weight of the paragraph probability and the span-score
   temperature; end-to-end F1 (official normalisation) of the best aggregated
   answer. Kept: the fewest paragraphs within one standard error of the best
   (reading costs time; :func:`tune_selection`).
2. **Abstention** (tune SQuAD v2.0 questions, answerable vs unanswerable):
   scikit-learn LogisticRegression on standardised
   :data:`DEFAULT_FEATURES` (``--features``), grouped cross-validation by article
   (GroupKFold): each fold is scored by a model fitted on the other articles,
   at the threshold where 85% of the *training* articles' answerable questions
   keep an answer. Per fold: AUROC, false-answer rate on unanswerable
   questions, recall on answerable ones, HasAns/NoAns EM/F1 (official v2.0
   rules); pooled out of fold, with 95% intervals over the articles resampled
   (:func:`article_interval`). The shipped model is then fitted on every tune question.
3. **Held-out** (v1.1 articles 24-47): end-to-end F1 of the shipped selection
   against the oracle (the reader on the gold paragraph) on the same questions,
   and the previous rule (read only hits over the threshold, highest
   probability x per-paragraph softmax share) on the same cached spans.

    PYTHONPATH=$PWD nice -n 10 python benchmarks/answers_fit.py --tune benchmarks/results/answers-v2-tune.jsonl \\
        --heldout benchmarks/results/answers-v1-heldout.jsonl --out benchmarks/results/answers_fit.json --write-policy
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from pipeline.config import SearchSettings  # noqa: E402
from pipeline.eval.squad_metrics import squad_v2_scores  # noqa: E402
from pipeline.files import write_json  # noqa: E402
from pipeline.index.search_index import SearchIndex  # noqa: E402
from pipeline.models.encoder import BiEncoder  # noqa: E402
from pipeline.rank.reading import read_first, read_order  # noqa: E402
from pipeline.read.answers import aggregate, answer_features  # noqa: E402
from pipeline.read.evidence import LexicalEvidence, Similarity, compared_sentences  # noqa: E402
from pipeline.read.fit import (  # noqa: E402
    KEEP,
    C,
    abstention_figures,
    false_answer_rate_at_keep,
    fit_logistic,
    keep_threshold,
    model_fields,
)
from pipeline.read.policy import DEFAULT_POLICY, FEATURES, AnswerPolicy  # noqa: E402
from pipeline.read.reader import Reading, Span  # noqa: E402
from pipeline.read.similarity import SentenceSimilarity  # noqa: E402
from pipeline.results import Hit  # noqa: E402

SHIPPED = SearchSettings()
#: Fitted only when ``--features`` names them. ``question_form`` reads the question's wording alone: on SQuAD 2.0 it
#: learns how that crowd wrote unanswerable questions ("which" 9.4% of answerable questions, 2.0% of unanswerable
#: ones), which a product's users do not share (docs/answers-history.md, "How the question is worded").
OPT_IN_FEATURES = ("question_form",)
DEFAULT_FEATURES = tuple(f for f in FEATURES if f not in OPT_IN_FEATURES)
#: Other shares for the table of operating points (``abstain_below``: docs/answers.md, "Choosing the threshold").
OPERATING_KEEPS = (0.75, 0.80, 0.85, 0.90, 0.95)
GRID_N = (1, 2, 3, 4, 5)
GRID_WEIGHT = (0.0, 0.5, 1.0, 2.0, 4.0)
GRID_TEMPERATURE = (0.5, 1.0, 2.0, 4.0)


def load(path: str, read_paragraphs: int = SHIPPED.read_paragraphs, read_weight: float = SHIPPED.read_weight) -> list[dict]:
    """A collection's questions, each with its hits in the order the pipeline decides the answer on (see :func:`move`)."""
    records = [json.loads(line) for line in Path(path).read_text(encoding="utf-8").splitlines() if line.strip()]
    for r in records:
        parse(r)
        move(r, read_paragraphs, read_weight)
    return records


def parse(record: dict) -> dict:
    """Add the pipeline's objects to one collected question: ``hit_objs`` (Hit) and ``reading_objs`` (Reading)."""
    record["hit_objs"] = [
        Hit(id=h["id"], title="", text=h.get("text", ""), source_id=h["source_id"], answerable=None,
            probability=h["probability"], scores=h.get("scores", {}), ranks=h["ranks"])
        for h in record["hits"]
    ]
    record["reading_objs"] = [Reading([Span(**s) for s in x["spans"]], x["null"]) for x in record["readings"]]
    return record


def move(record: dict, read_paragraphs: int, read_weight: float) -> None:
    """Replay the reader's move in place, as ``QAPipeline`` does it: the first ``read_paragraphs`` hits were read.

    Their best span scores move them (:func:`pipeline.rank.reading.read_order`), and
    the read hits come first in their new order (:func:`pipeline.rank.reading.read_first`):
    ``hits``, ``hit_objs``, ``readings`` and ``reading_objs`` all follow.
    """
    spans, read = read_span_scores(record, read_paragraphs)
    order = read_first(read_order([h["scores"]["final"] for h in record["hits"]], spans, read_weight), lambda i: i < read)
    for key in ("hits", "hit_objs"):
        record[key] = [record[key][i] for i in order]
    for key in ("readings", "reading_objs"):
        record[key] = [record[key][i] for i in order[:read]]


def read_span_scores(record: dict, read_paragraphs: int) -> tuple[list[float | None], int]:
    """The reader's evidence in one collected question, as the move takes it: and how many hits were read.

    Each of the first ``read_paragraphs`` hits gets its best span score (``None``
    without a span), every other hit ``None``. The one place the replays
    (this script, read_weight.py, calibration_fit.py) read it from a collection.
    """
    hits, readings = record["hits"], record["readings"]
    if len(readings) < min(read_paragraphs, len(hits)):
        raise ValueError(f"the collection read {len(readings)} paragraphs of question {record.get('id')}; "
                         f"the replay needs {read_paragraphs}")
    read = min(read_paragraphs, len(readings))
    return [max((s["score"] for s in readings[i]["spans"]), default=None) if i < read else None
            for i in range(len(hits))], read


def paired_gap(best: np.ndarray, other: np.ndarray) -> tuple[float, float]:
    """How far ``other`` is behind ``best`` on the same questions (mean per-question difference), and its standard error."""
    diff = best - other
    return float(diff.mean()), (float(diff.std(ddof=1) / np.sqrt(len(diff))) if len(diff) > 1 else 0.0)


def choose(record: dict, policy: AnswerPolicy):
    n = policy.paragraphs
    candidates, _ = aggregate(record["hit_objs"][:n], record["reading_objs"][:n], policy)
    return candidates


def f1_of(records: list[dict], predictions: list[str | None]) -> float:
    return squad_v2_scores(predictions, [r["answers"] for r in records])["f1"]


def previous_rule(record: dict, threshold: float = 0.5) -> str | None:
    """The rule before: read hits over the threshold; best = probability x the span's softmax share in its paragraph."""
    best, value = None, -1.0
    for hit, reading in zip(record["hit_objs"], record["reading_objs"]):
        if hit.probability is None or hit.probability < threshold or not reading.spans:
            continue
        scores = np.array([s.score for s in reading.spans])
        share = 1.0 / np.exp(scores - scores[0]).sum()
        if hit.probability * share > value:
            best, value = reading.spans[0].text, hit.probability * share
    return best


def tune_selection(records: list[dict], paragraphs: int | None = None,
                   grid_n: tuple[int, ...] = GRID_N) -> tuple[AnswerPolicy, list[dict]]:
    """The answer selection of the grid, by the one-standard-error rule on the answerable tune questions.

    Reading a paragraph costs time (0.3 s each at ELECTRA-base size on 2 cores in
    PyTorch, about 64 ms with the int8 reader, benchmarks/latency_budget.py), so the
    rule takes the *fewest* paragraphs whose best setting is within one standard
    error of the best setting's F1 (paired per-question differences), not the
    highest F1 on tune alone. ``paragraphs`` fixes how many are read instead (the
    best weight and temperature for it are taken). ``grid_n``: the counts tried
    (at most the hits the pipeline reads, ``read_paragraphs``).
    """
    answerable = [r for r in records if r["answerable"]]
    golds = [r["answers"] for r in answerable]
    rows, per_question = [], {}
    for n, w, t in itertools.product(grid_n, GRID_WEIGHT, GRID_TEMPERATURE):
        policy = AnswerPolicy(paragraphs=n, paragraph_weight=w, temperature=t)
        preds = [(c[0].text if (c := choose(r, policy)) else None) for r in answerable]
        scores = np.array([squad_v2_scores([p], [g])["f1"] for p, g in zip(preds, golds)])
        per_question[(n, w, t)] = scores
        rows.append({"paragraphs": n, "paragraph_weight": w, "temperature": t, "f1": float(scores.mean())})
    key = lambda row: (row["paragraphs"], row["paragraph_weight"], row["temperature"])  # noqa: E731
    best = max(rows, key=lambda row: (round(row["f1"], 6), -row["paragraphs"]))
    chosen = None
    for n in sorted(grid_n):
        top = max((row for row in rows if row["paragraphs"] == n), key=lambda row: row["f1"])
        top["behind_best"], top["standard_error"] = paired_gap(per_question[key(best)], per_question[key(top)])
        if chosen is None and (n == paragraphs if paragraphs else top["behind_best"] <= top["standard_error"]):
            chosen = top
    if chosen is None:
        raise ValueError(f"--paragraphs {paragraphs} is not in the grid {grid_n}")
    for row in rows:
        row["chosen"] = row is chosen
    return AnswerPolicy(paragraphs=chosen["paragraphs"], paragraph_weight=chosen["paragraph_weight"],
                        temperature=chosen["temperature"]), rows


def features_of(records: list[dict], policy: AnswerPolicy, names: tuple[str, ...] = FEATURES,
                lexical: LexicalEvidence | None = None,
                similarity: Similarity | None = None) -> tuple[np.ndarray, list[str | None]]:
    """The abstention features of every collected question, and the answer each would give.

    ``lexical``: the evidence of the index the collection was made on
    (:meth:`LexicalEvidence.of_index`); without it, ``rare_term_missing`` is unmeasured.
    ``similarity``: its bi-encoder's (:func:`sentence_similarity_of`); without it, ``sentence_similarity`` is unmeasured.
    """
    X, preds = [], []
    lexical = lexical or LexicalEvidence()
    for r in records:
        c = choose(r, policy)
        feats = answer_features(r["hit_objs"], c, min(policy.paragraphs, len(r["reading_objs"])), r["question"], lexical,
                                policy.question_form_score, similarity)
        X.append([feats[f] for f in names])
        preds.append(c[0].text if c else None)
    X = np.array(X, dtype=float)
    missing = ~np.isfinite(X)
    if missing.any():  # unmeasured (a hit list without dense scores): the column's mean, as the policy reads it
        measured = (~missing).sum(axis=0)
        means = np.where(missing, 0.0, X).sum(axis=0) / np.maximum(measured, 1)  # 0 where nothing was measured
        X[missing] = np.take(means, np.nonzero(missing)[1])
    return X, preds


def sentence_similarity_of(encoder: BiEncoder, records: list[dict]) -> SentenceSimilarity:
    """The bi-encoder's :class:`SentenceSimilarity`, warmed with every question and the compared sentences of every hit.

    A collection repeats its paragraphs across questions: each text is encoded once, in large batches.
    """
    texts = {r["question"] for r in records}
    texts.update(s for r in records for h in r["hit_objs"] for s in compared_sentences(h.text))
    similarity = SentenceSimilarity(lambda batch: encoder.encode(batch, batch_size=64, progress=True))
    similarity.warm(sorted(texts))
    return similarity


#: Which way each feature's evidence points by its meaning: +1, more of it says the question is answered; -1, less.
#: ``--signs meaning`` bounds each coefficient to it (measured worse than free coefficients: docs/answers.md).
FEATURE_SIGNS = {name: -1 if name in ("missing_terms", "negation_mismatch", "rare_term_missing") else 1
                 for name in FEATURES}



class SignedLogistic:
    """L2-regularised logistic regression (scikit-learn's objective at the same ``C``) whose coefficients keep signs.

    ``signs[j]`` is +1 (coefficient >= 0), -1 (<= 0) or 0 (free). Fitted by L-BFGS-B
    with the signs as bounds; the intercept is free. Exposes ``coef_``,
    ``intercept_`` and ``predict_proba`` like scikit-learn's model.
    """

    def __init__(self, C: float, signs: tuple[int, ...]):
        self.C, self.signs = C, signs

    def fit(self, X: np.ndarray, y: np.ndarray) -> "SignedLogistic":
        from scipy.optimize import minimize
        from scipy.special import expit

        t = 2.0 * y - 1.0

        def loss(w):
            z = X @ w[:-1] + w[-1]
            margin = t * z
            value = np.logaddexp(0.0, -margin).sum() * self.C + 0.5 * w[:-1] @ w[:-1]
            g = -t * expit(-margin) * self.C
            return value, np.concatenate([X.T @ g + w[:-1], [g.sum()]])

        bounds = [(0.0, None) if s > 0 else (None, 0.0) if s < 0 else (None, None) for s in self.signs]
        result = minimize(loss, np.zeros(X.shape[1] + 1), jac=True, method="L-BFGS-B", bounds=bounds + [(None, None)])
        self.coef_, self.intercept_ = result.x[None, :-1], result.x[-1:]
        return self

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        from scipy.special import expit

        p = expit(X @ self.coef_[0] + self.intercept_[0])
        return np.stack([1.0 - p, p], axis=1)


def fit(X: np.ndarray, y: np.ndarray, signs: tuple[int, ...] | None = None):
    """Standardise ``X`` and fit the abstention model (as ``qa-search fit-answers`` does); ``signs`` bound each
    coefficient's sign (None: free)."""
    if signs is None:
        return fit_logistic(X, y, C)
    from sklearn.preprocessing import StandardScaler

    scaler = StandardScaler().fit(X)
    return scaler, SignedLogistic(C, signs).fit(scaler.transform(X), y)


#: L2 strength of the question-form model: a few hundred closed-class words, a few thousand questions (0.1-1 measured alike).
FORM_C = 0.3


def form_words() -> list[str]:
    """The words the question-form model reads: scikit-learn's English stop words and negated contractions' stems.

    Closed-class words (question words, negations, quantifiers, pronouns) say how a
    question is put, not what it is about, so what they learn carries to articles
    the model never saw; content words learned each article's share of
    unanswerable questions and did worse out of fold (docs/answers.md).
    """
    from sklearn.feature_extraction.text import ENGLISH_STOP_WORDS

    return sorted(ENGLISH_STOP_WORDS | {"didn", "doesn", "isn", "wasn", "weren", "aren", "won", "hasn", "haven",
                                        "hadn", "couldn", "wouldn", "shouldn"})


def fit_question_form(questions: list[str], y: np.ndarray) -> dict:
    """The question-form model (:meth:`AnswerPolicy.question_form_score`) fitted on ``questions``: intercept, weights."""
    from sklearn.feature_extraction.text import CountVectorizer
    from sklearn.linear_model import LogisticRegression

    vectorizer = CountVectorizer(vocabulary=form_words(), binary=True)  # the policy's _FORM_TOKEN tokens
    model = LogisticRegression(C=FORM_C, max_iter=3000).fit(vectorizer.transform(questions), y)
    weights = {w: round(float(c), 6) for w, c in zip(vectorizer.get_feature_names_out(), model.coef_[0])
               if round(float(c), 6) != 0.0}  # words no question used stay at 0: left out
    return {"intercept": round(float(model.intercept_[0]), 6), "weights": weights}


def question_form_scores(form: dict, questions: list[str]) -> np.ndarray:
    """``form``'s log-odds of each question, as the pipeline computes it."""
    policy = AnswerPolicy(question_form=form)
    return np.array([policy.question_form_score(q) for q in questions])


def question_form_out_of_fold(questions: list[str], y: np.ndarray, groups: np.ndarray, folds: int) -> np.ndarray:
    """Each question's form score from a model fitted on the other folds' articles.

    The abstention model is fitted on these, not on in-sample scores: a model
    scoring the questions it was fitted on looks surer than it will be on new ones.
    """
    from sklearn.model_selection import GroupKFold

    scores = np.zeros(len(questions))
    for train, test in GroupKFold(n_splits=min(folds, len(set(groups)))).split(questions, y, groups):
        form = fit_question_form([questions[i] for i in train], y[train])
        scores[test] = question_form_scores(form, [questions[i] for i in test])
    return scores


def fold_features(X: np.ndarray, y: np.ndarray, groups: np.ndarray, questions: list[str], names: tuple[str, ...],
                  train: np.ndarray, test: np.ndarray, folds: int) -> tuple[np.ndarray, np.ndarray]:
    """One outer fold's training and test features, the question form stacked without seeing the test articles.

    Training rows get out-of-fold scores within the training articles; test rows
    the scores of a model fitted on all training articles, as a policy fitted with
    the feature scores a new question with the model fitted on every tune article.
    """
    X_train, X_test = X[train].copy(), X[test].copy()
    if "question_form" in names:
        j = names.index("question_form")
        train_questions = [questions[i] for i in train]
        X_train[:, j] = question_form_out_of_fold(train_questions, y[train], groups[train], folds)
        X_test[:, j] = question_form_scores(fit_question_form(train_questions, y[train]), [questions[i] for i in test])
    return X_train, X_test


def article_interval(statistic, groups: np.ndarray, *, resamples: int = 1000, seed: int = 0) -> tuple[float, float]:
    """The 95% interval of ``statistic(question indices)`` when whole articles are resampled with replacement.

    The questions of one article share its paragraphs and its writers, so they are
    not independent: resampling questions would give too narrow an interval. With
    a few articles the interval is wide, which is the honest width. ``statistic``
    returns NaN for a resample it cannot score (one class only); those are left out.
    Percentile bootstrap (scipy.stats.bootstrap), seeded.
    """
    from scipy.stats import bootstrap

    articles, inverse = np.unique(groups, return_inverse=True)
    members = [np.flatnonzero(inverse == k) for k in range(len(articles))]

    def on_articles(chosen: np.ndarray) -> float:
        return statistic(np.concatenate([members[int(k)] for k in chosen]))

    result = bootstrap((np.arange(len(articles)),), on_articles, n_resamples=resamples, vectorized=False,
                       method="percentile", rng=np.random.default_rng(seed))
    values = result.bootstrap_distribution[np.isfinite(result.bootstrap_distribution)]
    low, high = np.quantile(values, [0.025, 0.975])
    return float(low), float(high)


def auroc_on(y: np.ndarray, scores: np.ndarray, idx: np.ndarray) -> float:
    """AUROC of ``scores`` for ``y`` on the questions ``idx``; NaN where they hold one class only."""
    from sklearn.metrics import roc_auc_score

    return float(roc_auc_score(y[idx], scores[idx])) if len(set(y[idx])) == 2 else math.nan


def false_answers_at_keep(y: np.ndarray, scores: np.ndarray, idx: np.ndarray, keep: float = KEEP) -> float:
    """The false-answer rate on the questions ``idx`` where ``keep`` of their answerable ones keep an answer."""
    yy, ss = y[idx], scores[idx]
    if len(set(yy)) < 2:
        return math.nan
    return false_answer_rate_at_keep(ss, yy, keep)


def judged(records, preds, scores, threshold) -> dict:
    """:func:`abstention_figures` at ``threshold``, and the official v2.0 EM/F1 of the answers it keeps."""
    y = np.array([int(r["answerable"]) for r in records])
    final = [p if k else None for p, k in zip(preds, scores >= threshold)]
    v2 = squad_v2_scores(final, [r["answers"] for r in records])
    return {**abstention_figures(y, scores, threshold), "threshold": threshold,
            **{k: (round(v, 2) if isinstance(v, float) else v) for k, v in v2.items()}}


def abstention_features(records: list[dict], policy: AnswerPolicy, folds: int, names: tuple[str, ...] = DEFAULT_FEATURES,
                        lexical: LexicalEvidence | None = None,
                        similarity: Similarity | None = None) -> tuple[np.ndarray, list[str | None]]:
    """:func:`features_of`, with ``question_form`` (when named) scored out of fold over ``folds`` article groups.

    What the shipped model is fitted on, and what :func:`cross_validate` reports the
    single-feature AUROCs of (each of its folds stacks the question form again, on
    its own training articles: :func:`fold_features`).
    """
    X, preds = features_of(records, policy, names, lexical, similarity)
    if "question_form" in names:
        y = np.array([int(r["answerable"]) for r in records])
        X[:, names.index("question_form")] = question_form_out_of_fold(
            [r["question"] for r in records], y, np.array([r["title"] for r in records]), folds)
    return X, preds


def cross_validate(records: list[dict], X: np.ndarray, preds: list[str | None], folds: int,
                   names: tuple[str, ...] = DEFAULT_FEATURES, signs: tuple[int, ...] | None = None) -> dict:
    """Grouped cross-validation of the abstention model on ``X`` (:func:`abstention_features` of ``records``)."""
    from sklearn.metrics import roc_auc_score
    from sklearn.model_selection import GroupKFold

    y = np.array([int(r["answerable"]) for r in records])
    groups = np.array([r["title"] for r in records])
    questions = [r["question"] for r in records]
    out_of_fold = np.zeros(len(records))
    per_fold = []
    for k, (train, test) in enumerate(GroupKFold(n_splits=folds).split(X, y, groups)):
        X_train, X_test = fold_features(X, y, groups, questions, names, train, test, folds)
        scaler, model = fit(X_train, y[train], signs)
        train_scores = model.predict_proba(scaler.transform(X_train))[:, 1]
        threshold = keep_threshold(train_scores, y[train])
        scores = model.predict_proba(scaler.transform(X_test))[:, 1]
        out_of_fold[test] = scores
        row = judged([records[i] for i in test], [preds[i] for i in test], scores, threshold)
        row["fold"] = k
        row["articles"] = sorted(set(groups[test]))
        per_fold.append(row)
    single = {}
    for j, name in enumerate(names):
        if len(set(X[:, j])) > 1:
            single[name] = float(roc_auc_score(y, X[:, j]))
    pooled = judged(records, preds, out_of_fold, float(np.mean([f["threshold"] for f in per_fold])))
    pooled["auroc"] = float(roc_auc_score(y, out_of_fold))
    # The figure: false answers where exactly KEEP of the answerable questions keep an answer (out of fold).
    pooled["false_answer_rate_at_keep"] = false_answers_at_keep(y, out_of_fold, np.arange(len(y)))
    # How far these move with the sample of articles (the questions of one article are not independent).
    pooled["auroc_interval"] = article_interval(lambda idx: auroc_on(y, out_of_fold, idx), groups)
    # The trade a user makes with abstain_below: false answers at other shares of answers kept (out of fold).
    pooled["operating_points"] = [{"keep": k, "false_answer_rate": false_answers_at_keep(y, out_of_fold, np.arange(len(y)), k)}
                                  for k in OPERATING_KEEPS]
    pooled["false_answer_rate_at_keep_interval"] = article_interval(
        lambda idx: false_answers_at_keep(y, out_of_fold, idx), groups)
    return {"folds": per_fold, "pooled_out_of_fold": pooled, "single_feature_auroc": single,
            "mean_fold_auroc": float(np.mean([f["auroc"] for f in per_fold if f["auroc"] is not None])),
            "mean_fold_false_answer_rate": float(np.mean([f["false_answer_rate"] for f in per_fold])),
            "mean_fold_recall": float(np.mean([f["recall"] for f in per_fold]))}


def heldout_report(records: list[dict], policy: AnswerPolicy, grid_n: tuple[int, ...] = GRID_N,
                   lexical: LexicalEvidence | None = None, thresholds: dict[float, float] | None = None,
                   similarity: Similarity | None = None) -> dict:
    """End-to-end F1 of ``policy`` on held-out answerable questions against the oracle.

    ``thresholds``: other answerability thresholds (keyed by the share of answerable
    tune questions each keeps), each reported with its held-out share kept and F1.
    """
    answerable = [r for r in records if r["answerable"] and r["answers"]]
    golds = [r["answers"] for r in answerable]
    # the shipped selection's answers, and what the abstention reads
    X, ours = features_of(answerable, policy, lexical=lexical, similarity=similarity)
    oracle = [r["oracle"] for r in answerable]
    before = [previous_rule(r) for r in answerable]
    f1 = squad_v2_scores(ours, golds)["f1"]
    f1_oracle = squad_v2_scores(oracle, golds)["f1"]
    f1_before = squad_v2_scores(before, golds)["f1"]
    # For information only (the selection is chosen on tune): the same grid on these questions.
    grid = {}
    for n, w, t in itertools.product(grid_n, GRID_WEIGHT, GRID_TEMPERATURE):
        other = AnswerPolicy(paragraphs=n, paragraph_weight=w, temperature=t)
        grid[(n, w, t)] = squad_v2_scores([(c[0].text if (c := choose(r, other)) else None) for r in answerable], golds)["f1"]
    best_n, best_w, best_t = max(grid, key=grid.get)
    kept = f1_abstaining = None
    points = []
    if policy.abstains:
        scores = np.array([policy.answerability(dict(zip(FEATURES, x))) for x in X])

        def abstaining(threshold: float) -> tuple[float, float]:  # as shipped: an abstention scores 0
            answers = [o if s >= threshold else None for o, s in zip(ours, scores)]
            return float((scores >= threshold).mean()), squad_v2_scores(answers, golds)["f1"]

        kept, f1_abstaining = abstaining(policy.threshold)
        for keep, threshold in (thresholds or {}).items():
            share, f1_at = abstaining(threshold)
            points.append({"tune_keep": keep, "threshold": round(threshold, 4), "kept": round(share, 4),
                           "end_to_end_f1_abstaining": round(f1_at, 2),
                           "ratio": round(f1_at / f1_oracle, 4) if f1_oracle else None})
    gold_in = {n: float(np.mean([r["gold"] in {h["source_id"] for h in r["hits"][:n]} for r in answerable]))
               for n in (1, 3, 5, 10)}
    return {
        "questions": len(answerable),
        "candidates": answerable[0].get("candidates") if answerable else None,
        "end_to_end_f1": round(f1, 2),
        "end_to_end_em": round(squad_v2_scores(ours, golds)["exact"], 2),
        "oracle_f1": round(f1_oracle, 2),
        "ratio": round(f1 / f1_oracle, 4) if f1_oracle else None,
        "previous_rule_f1": round(f1_before, 2),
        "previous_rule_ratio": round(f1_before / f1_oracle, 4) if f1_oracle else None,
        "gold_in_top": gold_in,
        "answered_after_abstention": kept,
        "end_to_end_f1_abstaining": None if f1_abstaining is None else round(f1_abstaining, 2),
        "operating_points": points,
        "heldout_grid_best": {"paragraphs": best_n, "paragraph_weight": best_w, "temperature": best_t,
                              "f1": round(grid[(best_n, best_w, best_t)], 2)},
        "read_top_1_only_f1": round(grid[(1, policy.paragraph_weight, policy.temperature)], 2),
    }


def print_operating_points(thresholds: dict[float, float], tune: list[dict], held: list[dict],
                           off_ratio: float | None) -> None:
    """The trade ``abstain_below`` makes: per share of answerable tune questions kept, the threshold and what it gives."""
    by_keep = {row["keep"]: row["false_answer_rate"] for row in tune}
    held_by = {row["tune_keep"]: row for row in held}
    print("\n| answerable tune questions kept | abstain_below | false answers (tune, out of fold) "
          "| held out: kept / end to end with abstention (of the oracle) |")
    print("|---:|---:|---:|---:|")
    for keep, threshold in thresholds.items():
        h = held_by.get(keep)
        shown = f"{100 * h['kept']:.1f}% / {100 * h['ratio']:.1f}%" if h and h["ratio"] is not None else "-"
        print(f"| {100 * keep:.0f}% | {threshold:.3f} | {100 * by_keep[keep]:.1f}% | {shown} |")
    off = f"100.0% / {100 * off_ratio:.1f}%" if off_ratio is not None else "-"  # every question keeps its best candidate
    print(f"| 100% (abstention off) | 0 | 100.0% | {off} |")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tune", required=True, help="answers_collect.py output on dev-v2.0-tune.json")
    parser.add_argument("--heldout", help="answers_collect.py output on v1.1 articles 24-47")
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--reader", default="minilm-l6-squad-tune-reader")
    parser.add_argument("--reranker", default="minilm-l6-qnli-squad-tune")
    parser.add_argument("--index", default=str(REPO / "indexes/squad-dev"),
                        help="the index the collections were made on: its BM25 document frequencies give "
                             "rare_term_missing (default: %(default)s)")
    parser.add_argument("--bi-encoder", default="all-MiniLM-L6-v2",
                        help="the bi-encoder of the index the collections were made on (dense_similarity is its "
                             "cosine; sentence_similarity is computed with it here)")
    parser.add_argument("--collected-with", metavar="READER",
                        help="the reader --tune was collected with, when it stands in for --reader: one trained the "
                             "same way on other tune articles, so that its span scores are those of a reader that "
                             "never saw the fitting questions (recorded in the policy)")
    parser.add_argument("--out", default=str(REPO / "benchmarks/results/answers_fit.json"))
    parser.add_argument("--features", default=",".join(DEFAULT_FEATURES),
                        help="abstention features, comma-separated (default: pipeline.read.policy.FEATURES but "
                             f"{', '.join(OPT_IN_FEATURES)}; known: {', '.join(FEATURES)})")
    parser.add_argument("--signs", choices=("free", "meaning"), default="free",
                        help="free: unconstrained coefficients (default); meaning: each bound to the sign of its "
                             "feature's meaning (FEATURE_SIGNS)")
    parser.add_argument("--read-paragraphs", type=int, choices=GRID_N, default=SHIPPED.read_paragraphs,
                        help="hits the pipeline reads and moves (default: the shipped %(default)s)")
    parser.add_argument("--read-weight", type=float, default=SHIPPED.read_weight,
                        help="the reader's move (default: the shipped %(default)s)")
    parser.add_argument("--paragraphs", type=int, choices=GRID_N,
                        help="decide the answer on this many of the read hits (default: the fewest within one "
                             "standard error of the best)")
    parser.add_argument("--write-policy", action="store_true", help=f"write the fitted policy to {DEFAULT_POLICY}")
    args = parser.parse_args(argv)

    names = tuple(n.strip() for n in args.features.split(",") if n.strip())
    unknown = [n for n in names if n not in FEATURES]
    if unknown:
        parser.error(f"unknown feature(s) {', '.join(unknown)}; known: {', '.join(FEATURES)}")
    grid_n = tuple(n for n in GRID_N if n <= args.read_paragraphs)
    if args.paragraphs and args.paragraphs not in grid_n:
        parser.error(f"--paragraphs {args.paragraphs} is more than the {args.read_paragraphs} hits read")
    lexical = LexicalEvidence.of_index(SearchIndex.load(args.index).bm25)
    tune = load(args.tune, args.read_paragraphs, args.read_weight)
    heldout = load(args.heldout, args.read_paragraphs, args.read_weight) if args.heldout else []
    similarity = None
    if "sentence_similarity" in names:
        similarity = sentence_similarity_of(BiEncoder.load(args.bi_encoder), tune + heldout)
    selection, grid = tune_selection(tune, args.paragraphs, grid_n)
    print(f"tune: {len(tune)} questions ({sum(r['answerable'] for r in tune)} answerable), "
          f"{len({r['title'] for r in tune})} articles")
    best = max(grid, key=lambda row: row["f1"])
    picked = next(row for row in grid if row["chosen"])
    rule = f"--paragraphs {args.paragraphs}" if args.paragraphs else "one-standard-error rule"
    print(f"selection ({rule}): read {selection.paragraphs}, paragraph weight "
          f"{selection.paragraph_weight}, temperature {selection.temperature}: tune end-to-end F1 {picked['f1']:.2f} "
          f"(best {best['f1']:.2f}, reading {best['paragraphs']}; standard error "
          f"{picked.get('standard_error', 0.0):.2f})")
    signs = tuple(FEATURE_SIGNS[n] for n in names) if args.signs == "meaning" else None
    X, preds = abstention_features(tune, selection, args.folds, names, lexical, similarity)
    cv = cross_validate(tune, X, preds, args.folds, names, signs)
    print(f"\n{'fold':<6}{'q':>6}{'AUROC':>8}{'FAR':>8}{'recall':>8}{'HasAns F1':>11}{'NoAns F1':>10}{'F1':>8}")
    for f in cv["folds"]:
        print(f"{f['fold']:<6}{f['questions']:>6}{f['auroc']:>8.3f}{f['false_answer_rate']:>8.3f}{f['recall']:>8.3f}"
              f"{f.get('HasAns_f1', float('nan')):>11.2f}{f.get('NoAns_f1', float('nan')):>10.2f}{f['f1']:>8.2f}")
    p = cv["pooled_out_of_fold"]
    print(f"{'pooled':<6}{p['questions']:>6}{p['auroc']:>8.3f}{p['false_answer_rate']:>8.3f}{p['recall']:>8.3f}"
          f"{p.get('HasAns_f1', float('nan')):>11.2f}{p.get('NoAns_f1', float('nan')):>10.2f}{p['f1']:>8.2f}")
    print(f"pooled out-of-fold, where {100 * KEEP:.0f}% of answerable questions keep an answer: false-answer rate "
          f"{p['false_answer_rate_at_keep']:.3f}")
    (a_lo, a_hi), (f_lo, f_hi) = p["auroc_interval"], p["false_answer_rate_at_keep_interval"]
    print(f"95% intervals, articles resampled: AUROC {a_lo:.3f}-{a_hi:.3f}, false-answer rate {f_lo:.3f}-{f_hi:.3f}")
    print("single-feature AUROC: " + ", ".join(f"{k} {v:.3f}" for k, v in cv["single_feature_auroc"].items()))

    y = np.array([int(r["answerable"]) for r in tune])
    form = {}
    if "question_form" in names:  # X holds it out of fold (abstention_features); the policy's own on every tune question
        form = {**fit_question_form([r["question"] for r in tune], y), "C": FORM_C,
                "words": "scikit-learn ENGLISH_STOP_WORDS and negated contractions (benchmarks/answers_fit.form_words)"}
    scaler, model = fit(X, y, signs)
    in_sample = model.predict_proba(scaler.transform(X))[:, 1]
    threshold = keep_threshold(in_sample, y)
    thresholds = {k: keep_threshold(in_sample, y, k) for k in OPERATING_KEEPS}
    policy = AnswerPolicy(
        paragraphs=selection.paragraphs,
        paragraph_weight=selection.paragraph_weight,
        temperature=selection.temperature,
        features=names,
        **model_fields(scaler, model),
        threshold=round(threshold, 6),
        question_form=form,
        fitted_for={"reader": args.reader, "reranker": args.reranker, "bi_encoder": args.bi_encoder,
                    **({"collected_with_reader": args.collected_with} if args.collected_with else {}),
                    "data": "SQuAD v2.0 dev questions of the tune articles (dev-v2.0-tune.json)",
                    "articles": sorted({r["title"] for r in tune}),
                    "questions": len(tune), "keep_answerable": KEEP,
                    "coefficient_signs": args.signs, "read_paragraphs": args.read_paragraphs,
                    "read_weight": args.read_weight},
        figures={"cv_mean_fold_auroc": round(cv["mean_fold_auroc"], 4),
                 "cv_pooled_auroc": round(p["auroc"], 4),
                 "cv_mean_fold_false_answer_rate": round(cv["mean_fold_false_answer_rate"], 4),
                 "cv_mean_fold_recall": round(cv["mean_fold_recall"], 4)},
    )
    report = {"selection_grid": grid, "selection": {"paragraphs": selection.paragraphs,
              "paragraph_weight": selection.paragraph_weight, "temperature": selection.temperature},
              "abstention_cv": cv, "policy": json.loads(json.dumps(policy.__dict__, default=dict))}
    if args.heldout:
        held = heldout_report(heldout, policy, grid_n, lexical, thresholds, similarity)
        report["heldout"] = held
        print(f"\nheld-out ({held['questions']} questions, {held['candidates']} candidates): end-to-end F1 "
              f"{held['end_to_end_f1']:.2f} / oracle {held['oracle_f1']:.2f} = {100 * held['ratio']:.1f}%"
              f"  (previous rule {held['previous_rule_f1']:.2f} = {100 * held['previous_rule_ratio']:.1f}%)")
        g = held["heldout_grid_best"]
        print(f"(for information: the best grid point on these held-out questions reads {g['paragraphs']}, weight "
              f"{g['paragraph_weight']}, temperature {g['temperature']}: F1 {g['f1']:.2f}; reading only the top hit: "
              f"{held['read_top_1_only_f1']:.2f})")
        print("gold paragraph in the top 1/3/5/10: " + " / ".join(f"{100 * v:.1f}%" for v in held["gold_in_top"].values()))
        if held["answered_after_abstention"] is not None:
            print(f"answerable held-out questions that keep an answer at the shipped threshold: "
                  f"{100 * held['answered_after_abstention']:.1f}%; end-to-end F1 with the abstentions (scored 0) "
                  f"{held['end_to_end_f1_abstaining']:.2f} = "
                  f"{100 * held['end_to_end_f1_abstaining'] / held['oracle_f1']:.1f}% of the oracle")
    held = report.get("heldout", {})
    print_operating_points(thresholds, p["operating_points"], held.get("operating_points", []), held.get("ratio"))
    # numpy scalars as numbers, not strings (write_json's fallback is str)
    print(f"wrote {write_json(args.out, json.loads(json.dumps(report, default=float)))}")
    if args.write_policy:
        print(f"wrote {policy.save(DEFAULT_POLICY)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
