"""Retrieval, reranking and answerability quality of a :class:`~pipeline.qa.QAPipeline` on SQuAD questions.

For each question whose gold paragraph is in the index, every mode produces a
ranking of *paragraphs* (hits map to paragraphs through ``Hit.source_id``;
windows of one long paragraph count once, at the best-ranked window):

* ``bm25``, ``dense``, ``hybrid``: the retriever alone (no reranker), top 100;
* ``rerank``: the pipeline's ``candidates`` hybrid candidates (as a search
  retrieves them: each retriever's top ``candidates``, fused) reordered by the
  cross-encoder, followed by the paragraphs of the hybrid top 100 not already
  listed, in hybrid order (the reranker cannot bring back what retrieval
  missed; fusing shorter lists can order the candidates slightly differently
  from the top of the depth-100 hybrid list).

Recall@1/5/10/20/100, MRR@10 and nDCG@10 are computed with ``ranx``
(one relevant paragraph per question, binary relevance).

**Answerability** looks at the reranker's top paragraph per question. Its
flag (``probability >= threshold``) is a binary prediction of "the top
paragraph answers the question"; the truth is "the top paragraph is the gold
paragraph of an answerable question". ``precision`` = correct flagged tops /
flagged tops, ``recall`` = correct flagged tops / correct tops,
``answered_correctly`` = correct flagged tops / answerable questions (what a
user sees: a flagged, right paragraph). ``best_threshold`` maximises F1 of
that prediction over the evaluated questions (scikit-learn's
``precision_recall_curve``). For SQuAD v2.0 files, unanswerable questions
(``is_impossible``) should get no flagged paragraph: ``false_answer_rate`` is
the share of them whose top paragraph is flagged, and ``auroc`` is the area
under the ROC curve of the top probability separating answerable from
unanswerable questions.
"""

from __future__ import annotations

import logging
import time
import warnings
from dataclasses import dataclass, field
from typing import Any, Iterable, Sequence

import numpy as np
from tqdm.auto import tqdm

from pipeline.corpus import clean_text
from pipeline.errors import ConfigError, QASearchError
from pipeline.eval.questions import Question
from pipeline.eval.reliability import reliability_metrics
from pipeline.results import Hit, SearchResult

logger = logging.getLogger(__name__)

MODES = ("bm25", "dense", "hybrid", "rerank")
RECALL_KS = (1, 5, 10, 20, 100)
METRICS = tuple(f"recall@{k}" for k in RECALL_KS) + ("mrr@10", "ndcg@10")
DEPTH = max(RECALL_KS)


class MissingGoldError(QASearchError):
    """Questions whose gold paragraph is not in the index (evaluating them would be meaningless)."""


def parse_modes(spec: str | Sequence[str]) -> list[str]:
    """``"bm25,rerank"`` → ``["bm25", "rerank"]`` in canonical order; unknown names list the valid ones."""
    names = [m.strip().lower() for m in (spec.split(",") if isinstance(spec, str) else spec) if m.strip()]
    unknown = [m for m in names if m not in MODES]
    if unknown or not names:
        raise ConfigError(f"Unknown mode(s) {', '.join(unknown) or '(none)'}; valid modes: {', '.join(MODES)}.")
    return [m for m in MODES if m in names]


def paragraph_ranking(hits: Iterable[Hit]) -> list[str]:
    """Paragraph ids (``source_id``) best first; a paragraph's later windows are dropped."""
    seen: dict[str, None] = {}
    for hit in hits:
        seen.setdefault(hit.source_id, None)
    return list(seen)


def extend_ranking(head: Sequence[str], tail: Sequence[str]) -> list[str]:
    """``head`` then the items of ``tail`` not already in it, in order."""
    seen = dict.fromkeys(head)
    for item in tail:
        seen.setdefault(item, None)
    return list(seen)


def retrieval_metrics(
    golds: dict[str, str], rankings: dict[str, Sequence[str]], metrics: Sequence[str] = METRICS
) -> dict[str, float]:
    """Mean ``metrics`` over questions (ranx), given each question's gold paragraph and ranking.

    A question with an empty ranking scores 0 on every metric.
    """
    from ranx import Qrels, Run, evaluate

    if not golds:
        raise ConfigError("No questions to evaluate.")
    missing = set(golds) - set(rankings)
    if missing:
        raise ValueError(f"{len(missing)} question(s) have no ranking, e.g. {sorted(missing)[0]!r}")
    qrels = Qrels({q: {gold: 1} for q, gold in golds.items()})
    # Strictly decreasing scores keep the given order (ranx ranks by score).
    run = Run({q: {doc: float(len(rankings[q]) - r) for r, doc in enumerate(rankings[q])} for q in golds})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # numba's "unsafe cast" notes on ranx's JIT-compiled kernels
        scores = evaluate(qrels, run, list(metrics), make_comparable=True)
    if isinstance(scores, float):  # one metric
        scores = {metrics[0]: scores}
    return {m: float(scores[m]) for m in metrics}


@dataclass
class TopHit:
    """The reranker's top paragraph for one question."""

    question_id: str
    answerable: bool  # the question has an answer (SQuAD v2.0 ``is_impossible`` is False)
    correct: bool  # the top paragraph is the question's gold paragraph (never for unanswerable ones)
    probability: float
    flagged: bool  # probability >= threshold


def answerability_metrics(tops: Sequence[TopHit], threshold: float) -> tuple[dict[str, Any], dict[str, list[float]]]:
    """Figures of the answerable flag on the top paragraphs (see the module doc), and the PR curve."""
    from sklearn.metrics import precision_recall_curve, roc_auc_score

    answerable = [t for t in tops if t.answerable]
    unanswerable = [t for t in tops if not t.answerable]
    flagged = sum(t.flagged for t in tops)
    correct = sum(t.correct for t in tops)
    true_pos = sum(t.correct and t.flagged for t in tops)
    precision = true_pos / flagged if flagged else 0.0
    recall = true_pos / correct if correct else 0.0
    out: dict[str, Any] = {
        "threshold": threshold,
        "questions": len(tops),
        "answerable_questions": len(answerable),
        "top_is_gold": correct,
        "flagged": flagged,
        "true_positives": true_pos,
        "precision": precision,
        "recall": recall,
        "f1": 2 * precision * recall / (precision + recall) if precision + recall else 0.0,
        "answered_correctly": true_pos / len(answerable) if answerable else 0.0,
        "best_threshold": None,
        "best_f1": None,
        "best_precision": None,
        "best_recall": None,
        "unanswerable_questions": len(unanswerable),
        "false_answer_rate": None,
        "auroc": None,
    }
    curve: dict[str, list[float]] = {"precision": [], "recall": []}
    labels = np.array([t.correct for t in tops], dtype=int)
    probs = np.array([t.probability for t in tops], dtype=float)
    if 0 < labels.sum() < len(labels):
        prec, rec, thresholds = precision_recall_curve(labels, probs)
        f1 = np.divide(2 * prec * rec, prec + rec, out=np.zeros_like(prec), where=(prec + rec) > 0)
        best = int(np.argmax(f1[:-1]))  # the last point (recall 0) has no threshold
        out.update(
            best_threshold=float(thresholds[best]),
            best_f1=float(f1[best]),
            best_precision=float(prec[best]),
            best_recall=float(rec[best]),
        )
        curve = {"precision": prec.tolist(), "recall": rec.tolist()}
    if unanswerable:
        out["false_answer_rate"] = sum(t.flagged for t in unanswerable) / len(unanswerable)
        if answerable:
            out["auroc"] = float(roc_auc_score([int(t.answerable) for t in tops], probs))
    return out, curve


@dataclass
class EvalResult:
    """What :func:`evaluate` measured; :meth:`to_json` is ``metrics.json``."""

    modes: dict[str, dict[str, float]]
    answerability: dict[str, Any] | None
    config: dict[str, Any]
    pr_curve: dict[str, list[float]] = field(default_factory=dict)
    reader: dict[str, Any] | None = None
    reliability: dict[str, Any] | None = None
    #: One record per question of the reranked search (``answers.jsonl``): what it ranked first and answered.
    questions: list[dict[str, Any]] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"modes": self.modes, "answerability": self.answerability, "config": self.config}
        if self.reader is not None:
            out["reader"] = self.reader
        if self.reliability is not None:
            out["reliability"] = self.reliability
        return out


def gold_paragraphs(index, questions: Sequence[Question]) -> tuple[dict[str, str], list[Question]]:
    """Each answerable question's gold paragraph id in ``index``, and the questions whose gold is not there.

    The gold is found by id (``title#paragraph``); a paragraph the index
    stored under another id (an exact duplicate of an earlier one) is found by
    its text.
    """
    sources = {p.source_id for p in index.passages}
    by_text = {clean_text(p.text): p.source_id for p in index.passages if p.id == p.source_id}
    golds: dict[str, str] = {}
    missing: list[Question] = []
    for q in questions:
        if not q.answerable:
            continue
        if q.gold_id in sources:
            golds[q.id] = q.gold_id
        elif clean_text(q.context) in by_text:
            golds[q.id] = by_text[clean_text(q.context)]
        else:
            missing.append(q)
    return golds, missing


def _batches(items: Sequence[Any], size: int) -> Iterable[Sequence[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def evaluate(
    qa,
    questions: Sequence[Question],
    *,
    modes: Sequence[str] = MODES,
    candidates: int | None = None,
    batch_size: int = 32,
    allow_missing: bool = False,
    read: bool = False,
    progress: bool = True,
) -> EvalResult:
    """Run every mode over ``questions`` and measure it.

    Args:
        qa: a loaded :class:`~pipeline.qa.QAPipeline` (with a reranker when
            ``rerank`` is among ``modes``).
        candidates: hybrid candidates the reranker reorders (default: the
            pipeline's ``candidates``).
        allow_missing: count and report questions whose gold paragraph is not
            in the index instead of raising :class:`MissingGoldError`.
        read: also measure the pipeline's reader (exact match / F1): end to
            end (the best answer of the reranked search, reading the answerable
            hits among the ``candidates``) and oracle (the reader on the gold
            paragraph alone).
    """
    modes = parse_modes(modes)
    candidates = candidates or qa.settings.candidates
    if "rerank" in modes and qa.reranker is None:
        raise ConfigError("The rerank mode needs a reranker; load the pipeline with one, or leave rerank out of --modes.")
    if read and (qa.reader is None or "rerank" not in modes):
        raise ConfigError("Reader figures need a reader (--reader NAME|PATH) and the rerank mode in --modes.")
    golds, missing = gold_paragraphs(qa.index, questions)
    if missing and not allow_missing:
        example = missing[0]
        raise MissingGoldError(
            f"{len(missing)} question(s) have their gold paragraph outside the index, e.g. {example.id} "
            f"({example.gold_id}); evaluate with the index built from the same questions file, "
            "or pass --allow-missing to skip and count them."
        )
    kept = [q for q in questions if q.id in golds or not q.answerable]
    if not golds:
        raise ConfigError("None of the chosen questions has its gold paragraph in the index.")
    rankings: dict[str, dict[str, list[str]]] = {m: {} for m in modes}
    seconds = dict.fromkeys(modes, 0.0)
    tops: list[TopHit] = []
    shown: tuple[list[float], list[int], list[int]] = ([], [], [])  # every shown hit: probability, is gold, place
    predictions: dict[str, str | None] = {}
    candidates_read: dict[str, str | None] = {}
    calibrations: set[str] = set()  # what made Hit.probability, as each search recorded it
    records: list[dict[str, Any]] = []  # per question: what the reranked search did
    answerability: dict[str, float | None] = {}
    retrieval = [m for m in modes if m != "rerank"]
    if "rerank" in modes and "hybrid" not in retrieval:
        retrieval.append("hybrid")  # the reranked list continues with the hybrid ranks
    bar = tqdm(total=len(kept), desc="questions", unit="q", disable=not progress)
    for batch in _batches(kept, batch_size):
        texts = [q.text for q in batch]
        for mode in retrieval:
            start = time.perf_counter()
            results = qa.search_many(texts, mode=mode, rerank=False, read=False, top_k=DEPTH)
            seconds[mode] = seconds.get(mode, 0.0) + time.perf_counter() - start
            for q, result in zip(batch, results):
                rankings.setdefault(mode, {})[q.id] = paragraph_ranking(result.hits)
        if "rerank" in modes:
            start = time.perf_counter()
            results = qa.search_many(
                texts, mode="hybrid", rerank=True, read=read, candidates=candidates, top_k=candidates
            )
            seconds["rerank"] += time.perf_counter() - start
            for q, result in zip(batch, results):
                predictions[q.id] = result.answer.text if result.answer else None
                calibrations.add(str(result.settings.get("calibration")))
                best = result.answer or result.candidate  # what the search answers with abstention off
                candidates_read[q.id] = best.text if best else None
                answerability[q.id] = result.answerability
                rankings["rerank"][q.id] = extend_ranking(paragraph_ranking(result.hits), rankings["hybrid"][q.id])
                records.append(_question_record(q, result, golds.get(q.id), rankings["rerank"][q.id], read))
                tops.append(_top_hit(q, result, golds.get(q.id), qa.settings.threshold))
                if q.id in golds:
                    for place, hit in enumerate(result.hits[: qa.settings.top_k], start=1):
                        if hit.probability is not None:
                            shown[0].append(float(hit.probability))
                            shown[1].append(int(hit.source_id == golds[q.id]))
                            shown[2].append(place)
        bar.update(len(batch))
    bar.close()
    per_mode = {m: retrieval_metrics(golds, rankings[m]) for m in modes}
    answerability, curve = (None, {})
    if tops:
        answerability, curve = answerability_metrics(tops, qa.settings.threshold)
    reader_figures = None
    if read:
        logger.info("Reading the gold paragraphs (oracle)")
        reader_figures = reader_metrics(qa.reader, [q for q in kept if q.id in golds], predictions, candidates_read)
        threshold = qa.settings.abstain_below if qa.settings.abstain_below is not None else qa.answer_policy.threshold
        reader_figures["answers"] = answer_metrics(kept, predictions, answerability, threshold)
    config = {
        "questions": len(kept),
        "answerable_questions": len(golds),
        "unanswerable_questions": len(kept) - len(golds),
        "missing_gold": len(missing),
        "missing_gold_examples": [q.id for q in missing[:10]],
        "modes": list(modes),
        "candidates": candidates if "rerank" in modes else None,
        "depth": DEPTH,
        "seconds": {m: round(s, 2) for m, s in seconds.items() if m in modes},
        "probability": sorted(calibrations) if calibrations else None,
    }
    reliability = reliability_metrics(*shown) if shown[0] else None
    return EvalResult(modes=per_mode, answerability=answerability, config=config, pr_curve=curve, reader=reader_figures,
                      reliability=reliability, questions=records)


def _question_record(question: Question, result: SearchResult, gold: str | None, ranking: Sequence[str],
                     read: bool) -> dict[str, Any]:
    """What one reranked search did for ``question``: its first paragraph, the gold's place, the answer or abstention."""
    top = result.hits[0] if result.hits else None
    record: dict[str, Any] = {
        "id": question.id,
        "question": question.text,
        "answerable": question.answerable,
        "gold": gold,
        "gold_rank": ranking.index(gold) + 1 if gold in ranking else None,
        "top": top.source_id if top else None,
        "top_probability": None if top is None or top.probability is None else round(float(top.probability), 4),
    }
    if read:
        record.update(
            gold_answers=list(question.answers),
            answer=result.answer.text if result.answer else None,
            candidate=result.candidate.text if result.candidate else None,
            answerability=result.answerability,
            no_answer_reason=result.no_answer_reason,
        )
    return record


def reader_metrics(reader, questions: Sequence[Question], predictions: dict[str, str | None],
                   best_candidates: dict[str, str | None] | None = None) -> dict[str, Any]:
    """SQuAD exact match / F1 (fractions 0..1) of the pipeline's answers and of the reader on the gold paragraphs.

    ``end_to_end``: the answers as shipped, an abstention counting as a wrong
    answer; ``best_candidate`` (when given): the answer the search gives with
    abstention off (its best candidate), which measures answer selection alone;
    each with its ratio to the oracle's F1 on the same questions.
    """
    from pipeline.eval.squad_metrics import oracle_reader_metrics, squad_scores

    scored = [q for q in questions if q.answerable and q.answers]
    runs = {"end_to_end": predictions} | ({"best_candidate": best_candidates} if best_candidates is not None else {})
    figures = {name: squad_scores([got.get(q.id) for q in scored], [q.answers for q in scored]).to_dict()
               for name, got in runs.items()}
    figures["oracle"] = oracle_reader_metrics(reader, scored).to_dict()
    for fig in figures.values():
        fig["exact_match"] = round(fig["exact_match"] / 100.0, 4)
        fig["f1"] = round(fig["f1"] / 100.0, 4)
    oracle_f1 = figures["oracle"]["f1"]
    out: dict[str, Any] = {"model": reader.name, **figures}
    for name in runs:
        out[f"{name}_to_oracle_f1"] = round(figures[name]["f1"] / oracle_f1, 4) if oracle_f1 else None
    return out


def answer_metrics(
    questions: Sequence[Question],
    predictions: dict[str, str | None],
    answerability: dict[str, float | None],
    threshold: float | None,
) -> dict[str, Any]:
    """Figures of the search's answer and its abstention, over answerable and (SQuAD v2.0) unanswerable questions.

    ``recall``: answerable questions that got an answer; ``false_answer_rate``:
    unanswerable ones that got one (both at the shipped threshold); ``auroc``:
    the answerability score separating the two; ``v2``: the official v2.0
    script's exact/f1 with HasAns_/NoAns_ splits (unanswerable questions count
    as right when there is no answer).
    """
    from sklearn.metrics import roc_auc_score

    from pipeline.eval.squad_metrics import squad_v2_scores

    scored = [q for q in questions if q.id in predictions and (q.answers or not q.answerable)]
    if not scored:
        return {}
    has = [q for q in scored if q.answerable]
    no = [q for q in scored if not q.answerable]
    out: dict[str, Any] = {
        "threshold": threshold,
        "recall": sum(predictions[q.id] is not None for q in has) / len(has) if has else None,
        "false_answer_rate": sum(predictions[q.id] is not None for q in no) / len(no) if no else None,
        "auroc": None,
        "v2": {k: (round(v, 2) if isinstance(v, float) else v) for k, v in squad_v2_scores(
            [predictions[q.id] for q in scored], [list(q.answers) if q.answerable else [] for q in scored]
        ).items()},
    }
    scores = [answerability.get(q.id) for q in scored]
    if has and no and all(s is not None for s in scores):
        out["auroc"] = float(roc_auc_score([int(q.answerable) for q in scored], scores))
    return out


def _top_hit(question: Question, result: SearchResult, gold: str | None, threshold: float) -> TopHit:
    if not result.hits:
        return TopHit(question.id, question.answerable, False, 0.0, False)
    top = result.hits[0]
    probability = float(top.probability or 0.0)
    return TopHit(
        question_id=question.id,
        answerable=question.answerable,
        correct=question.answerable and gold is not None and top.source_id == gold,
        probability=probability,
        flagged=probability >= threshold,
    )
