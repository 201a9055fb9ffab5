"""SQuAD exact match and F1 for the reader, with the official answer normalisation.

The scoring is torchmetrics' SQuAD metric (lower case, strip punctuation and
the articles a/an/the, squash white space; the maximum over all gold answers
of each question, less any that normalises to nothing, as the v2.0 script
leaves them out), so the figures compare with published SQuAD numbers.

* :func:`squad_scores`: predictions against gold answers (end-to-end
  evaluation passes the pipeline's best answers here).
* :func:`oracle_reader_metrics`: the reader on each question's gold paragraph
  alone, the "oracle" that shows how good the reader is when retrieval is
  perfect.

Example::

    >>> from pipeline.eval.squad_metrics import squad_scores
    >>> squad_scores(["the Denver Broncos", "Panthers"], [["Denver Broncos"], ["Carolina Panthers"]]).exact_match
    50.0
"""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import asdict, dataclass
from typing import Any, Protocol, Sequence

from pipeline.errors import ConfigError
from pipeline.read.normalize import normalize_answer
from pipeline.read.reader import Reader


class GoldQuestion(Protocol):
    """What the oracle needs of a question (``pipeline.eval.questions.Question`` has it)."""

    text: str
    context: str
    answers: Sequence[str]


@dataclass
class ReaderMetrics:
    """Exact match and F1 in percent over ``questions`` questions, and the reader's milliseconds per question."""

    exact_match: float
    f1: float
    questions: int
    ms_per_question: float | None = None
    answered: int | None = None  # questions the reader gave any answer for

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def squad_scores(predictions: Sequence[str | None], answers: Sequence[Sequence[str]]) -> ReaderMetrics:
    """SQuAD EM/F1 (0..100) of ``predictions`` (``None`` = no answer) against each question's gold ``answers``."""
    from torchmetrics.functional.text.squad import squad

    if len(predictions) != len(answers):
        raise ConfigError(f"{len(predictions)} predictions for {len(answers)} questions.")
    if not predictions:
        raise ConfigError("No questions to score.")
    if any(not gold for gold in answers):
        raise ConfigError("Every question needs at least one gold answer (SQuAD 2.0 unanswerable questions are not scored).")
    # A gold answer that normalises to nothing (SQuAD v1.1 dev holds "." as one) would match no answer at
    # all, scoring an abstention as right: left out, as the official v2.0 script leaves it out.
    answers = [[a for a in gold if normalize_answer(a)] or list(gold) for gold in answers]
    preds = [{"prediction_text": p or "", "id": str(i)} for i, p in enumerate(predictions)]
    target = [{"answers": {"answer_start": [0] * len(g), "text": list(g)}, "id": str(i)} for i, g in enumerate(answers)]
    out = squad(preds, target)
    return ReaderMetrics(
        exact_match=round(float(out["exact_match"]), 2),
        f1=round(float(out["f1"]), 2),
        questions=len(predictions),
        answered=sum(1 for p in predictions if p),
    )


def oracle_reader_metrics(reader: Reader, questions: Sequence[GoldQuestion], *, chunk: int = 64) -> ReaderMetrics:
    """The reader on each question's gold paragraph: SQuAD EM/F1 and reading milliseconds per question.

    Questions without gold answers are skipped. ``chunk`` questions go to
    :meth:`Reader.read_pairs` at a time.
    """
    scored = [q for q in questions if q.answers]
    predictions: list[str | None] = []
    started = time.perf_counter()
    for i in range(0, len(scored), chunk):
        part = scored[i : i + chunk]
        answers = reader.read_pairs([(q.text, q.context) for q in part])
        predictions.extend(a.text if a else None for a in answers)
    elapsed_ms = (time.perf_counter() - started) * 1000.0
    metrics = squad_scores(predictions, [q.answers for q in scored])
    metrics.ms_per_question = round(elapsed_ms / max(len(scored), 1), 2)
    return metrics


def _tokens(text: str) -> list[str]:
    return normalize_answer(text).split() if text else []


def _f1(gold: str, prediction: str) -> float:
    gold_toks, pred_toks = _tokens(gold), _tokens(prediction)
    if not gold_toks or not pred_toks:
        return float(gold_toks == pred_toks)  # no answer is right only against no answer
    common = Counter(gold_toks) & Counter(pred_toks)
    same = sum(common.values())
    if same == 0:
        return 0.0
    precision, recall = same / len(pred_toks), same / len(gold_toks)
    return 2 * precision * recall / (precision + recall)


def squad_v2_scores(predictions: Sequence[str | None], answers: Sequence[Sequence[str]]) -> dict[str, float | int]:
    """SQuAD v2.0 exact match / F1 (0..100) as the official v2.0 script reports them.

    ``answers[i]`` empty = unanswerable question (right only when the prediction
    is ``None`` or empty); otherwise the maximum over gold answers, with the
    official normalisation. Keys: ``exact``, ``f1``, ``total`` and the same
    with ``HasAns_`` / ``NoAns_`` for the answerable / unanswerable questions.
    (torchmetrics' SQuAD metric is v1.1 only: it has no unanswerable questions.)
    """
    if len(predictions) != len(answers):
        raise ConfigError(f"{len(predictions)} predictions for {len(answers)} questions.")
    if not predictions:
        raise ConfigError("No questions to score.")
    exact, f1, has = [], [], []
    for prediction, gold in zip(predictions, answers):
        golds = [a for a in gold if normalize_answer(a)] or [""]
        pred = prediction or ""
        exact.append(max(float(normalize_answer(g) == normalize_answer(pred)) for g in golds))
        f1.append(max(_f1(g, pred) for g in golds))
        has.append(golds != [""])
    out: dict[str, float | int] = {
        "exact": 100.0 * sum(exact) / len(exact),
        "f1": 100.0 * sum(f1) / len(f1),
        "total": len(exact),
    }
    for prefix, keep in (("HasAns", True), ("NoAns", False)):
        idx = [i for i, h in enumerate(has) if h == keep]
        if idx:
            out[f"{prefix}_exact"] = 100.0 * sum(exact[i] for i in idx) / len(idx)
            out[f"{prefix}_f1"] = 100.0 * sum(f1[i] for i in idx) / len(idx)
            out[f"{prefix}_total"] = len(idx)
    return out
