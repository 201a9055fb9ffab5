"""A cross-encoder's accuracy on labelled (question, sentence) pairs in GLUE QNLI format.

QNLI files are tab-separated with a header ``index  question  sentence  label``
(label ``entailment`` when the sentence answers the question, else
``not_entailment``). Quotes are ordinary characters in these files, so they are
read with ``csv.QUOTE_NONE``; a row with the wrong number of fields or an
unknown label is an error naming its line.

Example::

    >>> from pipeline.eval.pairs import read_pairs, evaluate_pairs         # doctest: +SKIP
    >>> pairs = read_pairs("../shared/data/QNLI-dev.tsv", limit=500)   # doctest: +SKIP
    >>> evaluate_pairs(reranker, pairs, threshold=0.5)["accuracy"]     # doctest: +SKIP
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Collection, Sequence

import numpy as np
from tqdm.auto import tqdm

from pipeline.errors import ConfigError, CorpusError

LABELS = {"entailment": 1, "not_entailment": 0}
COLUMNS = ("question", "sentence", "label")


@dataclass(frozen=True)
class Pair:
    line: int
    question: str
    sentence: str
    label: int  # 1: the sentence answers the question


def read_pairs(path: str | Path, *, limit: int | None = None, questions: Collection[str] | None = None) -> list[Pair]:
    """Labelled pairs of a QNLI-format TSV, in file order.

    Args:
        limit: keep at most this many pairs (after the ``questions`` filter).
        questions: keep only pairs whose question (trimmed) is one of these.
    """
    path = Path(path).expanduser()
    if not path.is_file():
        raise CorpusError("no such pairs file", path=str(path))
    if limit is not None and limit < 1:
        raise ConfigError(f"--limit must be a positive whole number, got {limit}.")
    wanted = {q.strip() for q in questions} if questions is not None else None
    pairs: list[Pair] = []
    with path.open(encoding="utf-8", newline="") as fh:
        reader = csv.reader(fh, delimiter="\t", quoting=csv.QUOTE_NONE)
        header = [h.strip().lower() for h in next(reader, [])]
        if not set(COLUMNS) <= set(header):
            raise CorpusError(f"expected a header with the columns {', '.join(COLUMNS)}; got {header}", path=str(path), line=1)
        where = {name: header.index(name) for name in COLUMNS}
        for row in reader:
            line = reader.line_num
            if not row or not any(cell.strip() for cell in row):
                continue
            if len(row) != len(header):
                raise CorpusError(f"expected {len(header)} tab-separated fields, got {len(row)}", path=str(path), line=line)
            label = row[where["label"]].strip()
            if label not in LABELS:
                raise CorpusError(f"unknown label {label!r}; expected one of {', '.join(LABELS)}", path=str(path), line=line)
            question = row[where["question"]].strip()
            if wanted is not None and question not in wanted:
                continue
            pairs.append(Pair(line, question, row[where["sentence"]].strip(), LABELS[label]))
            if limit is not None and len(pairs) >= limit:
                break
    if not pairs:
        raise CorpusError("no labelled pairs to evaluate (after the filters)", path=str(path))
    return pairs


def evaluate_pairs(
    reranker, pairs: Sequence[Pair], *, threshold: float = 0.5, chunk: int = 256, progress: bool = True
) -> dict[str, Any]:
    """Accuracy and F1 (of the ``entailment`` class) of ``reranker`` at ``threshold``, with ROC AUC."""
    from sklearn.metrics import (
        accuracy_score,
        f1_score,
        precision_score,
        recall_score,
        roc_auc_score,
    )

    probabilities: list[float] = []
    with tqdm(total=len(pairs), desc="pairs", unit="pair", disable=not progress) as bar:
        for start in range(0, len(pairs), chunk):
            batch = pairs[start : start + chunk]
            probabilities.extend(reranker.score_pairs([(p.question, p.sentence) for p in batch]).tolist())
            bar.update(len(batch))
    labels = np.array([p.label for p in pairs])
    probs = np.array(probabilities)
    predicted = (probs >= threshold).astype(int)
    return {
        "pairs": len(pairs),
        "positives": int(labels.sum()),
        "threshold": threshold,
        "accuracy": float(accuracy_score(labels, predicted)),
        "f1": float(f1_score(labels, predicted, zero_division=0)),
        "precision": float(precision_score(labels, predicted, zero_division=0)),
        "recall": float(recall_score(labels, predicted, zero_division=0)),
        "auroc": float(roc_auc_score(labels, probs)) if 0 < labels.sum() < len(labels) else None,
        "first_line": pairs[0].line,
        "last_line": pairs[-1].line,
    }
