"""Training questions for the reranker, and hard negatives mined from an index.

A questions file is SQuAD v1.1/v2.0 JSON, or JSON Lines with one question a line::

    {"question": "Who won?", "positive_ids": ["Super_Bowl_50#0"], "negative_ids": ["Super_Bowl_50#3"]}

Ids are passage ids of the index (a paragraph id, or a window id ``ID~wN``).
SQuAD questions find their gold paragraph in the index the way ``qa-search eval``
does (by id, else by text). Unanswerable SQuAD v2.0 questions have no positive:
the paragraph they were written on is their first negative.

Example::

    >>> from pipeline.train.data import load_training_questions, mine_negatives   # doctest: +SKIP
    >>> questions = load_training_questions("dev-v1.1.json", index)                # doctest: +SKIP
    >>> pairs = mine_negatives(index, encoder, questions, bm25=1, dense=1)         # doctest: +SKIP
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Sequence

from pipeline.config import SearchSettings
from pipeline.corpus import clean_text
from pipeline.errors import CorpusError
from pipeline.eval.evaluation import gold_paragraphs
from pipeline.eval.questions import load_questions
from pipeline.index import SearchIndex
from pipeline.models.encoder import BiEncoder
from pipeline.retrieve import Retriever

#: Negatives are mined from each first-stage list on its own.
BM25_ONLY = SearchSettings(mode="bm25")
DENSE_ONLY = SearchSettings(mode="dense")

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class TrainQuestion:
    """A question with the index passages that answer it (``positives``) and that do not (``negatives``).

    ``group`` is what a split keeps together (the SQuAD article title, or the
    title of the first positive passage); ``article`` is the SQuAD article number.
    """

    id: str
    text: str
    group: str
    positives: tuple[str, ...] = ()
    negatives: tuple[str, ...] = ()
    article: int | None = None

    @property
    def answerable(self) -> bool:
        return bool(self.positives)


@dataclass(frozen=True)
class Pair:
    """One training example: question, passage text, label 1 (answers) or 0."""

    question: str
    passage: str
    label: int
    kind: str = "positive"  # positive | given | bm25 | dense | unanswerable


@dataclass
class PairSet:
    pairs: list[Pair] = field(default_factory=list)

    def counts(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for p in self.pairs:
            out[p.kind] = out.get(p.kind, 0) + 1
        return out


def _read_text(path: Path) -> str:
    if not path.is_file():
        raise CorpusError("no such questions file", path=str(path))
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise CorpusError(f"not UTF-8 text ({exc})", path=str(path)) from exc
    if not text.strip():
        raise CorpusError("the questions file is empty: nothing to train on", path=str(path))
    return text


def is_squad(text: str) -> bool:
    """``True`` when the file's text is one JSON object with a ``data`` list (SQuAD format)."""
    try:
        data = json.loads(text)
    except json.JSONDecodeError:
        return False
    return isinstance(data, dict) and isinstance(data.get("data"), list)


class _PassageLookup:
    """Index passages by id, and a paragraph id to its first window."""

    def __init__(self, index: SearchIndex):
        self.by_id = {p.id: i for i, p in enumerate(index.passages)}
        self.by_source: dict[str, int] = {}
        for i, p in enumerate(index.passages):
            self.by_source.setdefault(p.source_id, i)

    def position(self, passage_id: str) -> int | None:
        found = self.by_id.get(passage_id)
        return found if found is not None else self.by_source.get(passage_id)


def _squad_questions(path: Path, index: SearchIndex) -> list[TrainQuestion]:
    questions = load_questions(path)
    if not questions:
        raise CorpusError("the questions file holds no questions: nothing to train on", path=str(path))
    golds, missing = gold_paragraphs(index, questions)
    _refuse_missing(path, index, [(q.id, q.gold_id) for q in missing])
    texts = {p.source_id: clean_text(p.text) for p in index.passages if p.id == p.source_id}
    by_text = {t: s for s, t in texts.items()}
    out = []
    for q in questions:
        if q.answerable:
            out.append(TrainQuestion(q.id, q.text, q.title, positives=(golds[q.id],), article=q.article))
        else:  # the paragraph it was written on, found by text (v2.0 files order some articles differently)
            context = clean_text(q.context)
            own_id = q.gold_id if texts.get(q.gold_id) == context else by_text.get(context)
            own = (own_id,) if own_id else ()
            out.append(TrainQuestion(q.id, q.text, q.title, negatives=own, article=q.article))
    return out


def _jsonl_questions(path: Path, text: str, index: SearchIndex) -> list[TrainQuestion]:
    lookup = _PassageLookup(index)
    out: list[TrainQuestion] = []
    unknown: list[tuple[str, str]] = []
    for line_no, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            raise CorpusError(f"not JSON ({exc.msg})", path=str(path), line=line_no) from exc
        if not isinstance(record, dict) or not isinstance(record.get("question"), str) or not record["question"].strip():
            raise CorpusError('each line needs a "question" string', path=str(path), line=line_no)
        positives, negatives = record.get("positive_ids", []), record.get("negative_ids", []) or []
        if not isinstance(positives, list) or not isinstance(negatives, list):
            raise CorpusError('"positive_ids" and "negative_ids" must be lists of passage ids', path=str(path), line=line_no)
        if not positives and not negatives:
            raise CorpusError('a question needs "positive_ids" (or "negative_ids" for an unanswerable one)',
                              path=str(path), line=line_no)
        qid = str(record.get("id", f"line{line_no}"))
        for pid in map(str, [*positives, *negatives]):
            if lookup.position(pid) is None:
                unknown.append((qid, pid))
        first = lookup.position(str((positives or negatives)[0]))
        group = str(record.get("group") or (index.passages[first].title if first is not None else ""))
        out.append(TrainQuestion(qid, record["question"].strip(), group, tuple(map(str, positives)),
                                 tuple(map(str, negatives))))
    _refuse_missing(path, index, unknown)
    if not out:
        raise CorpusError("the questions file holds no questions: nothing to train on", path=str(path))
    return out


def _refuse_missing(path: Path, index: SearchIndex, missing: Sequence[tuple[str, str]]) -> None:
    if missing:
        qid, pid = missing[0]
        raise CorpusError(
            f"{len(missing)} gold/negative id(s) are not in the index {index.path}, e.g. {pid!r} of question {qid!r}; "
            "train with the index built from the same corpus",
            path=str(path),
        )


def load_training_questions(path: str | Path, index: SearchIndex) -> list[TrainQuestion]:
    """The questions of a SQuAD JSON or JSON Lines file, with their passages checked against ``index``."""
    path = Path(path).expanduser()
    text = _read_text(path)
    if is_squad(text):
        return _squad_questions(path, index)
    return _jsonl_questions(path, text, index)


def _first_new(ranked: Iterable[int], index: SearchIndex, skip: set[str], n: int) -> list[str]:
    chosen: list[str] = []
    for position in ranked:
        source = index.passages[position].source_id
        if source in skip:
            continue
        skip.add(source)
        chosen.append(source)
        if len(chosen) == n:
            break
    return chosen


def mine_negatives(
    index: SearchIndex,
    encoder: BiEncoder | None,
    questions: Sequence[TrainQuestion],
    *,
    bm25: int = 1,
    dense: int = 1,
    depth: int = 20,
    batch_size: int = 64,
    progress: bool = False,
) -> list[TrainQuestion]:
    """Each question with up to ``bm25`` + ``dense`` more negatives: the best-ranked non-gold paragraphs.

    BM25's picks come first; a dense pick is never one already chosen.
    """
    from tqdm.auto import tqdm

    if dense and encoder is None:
        raise ValueError("dense negatives need a bi-encoder")
    retriever = Retriever(index, encoder)
    out: list[TrainQuestion] = []
    bar = tqdm(total=len(questions), desc="Mining negatives", unit="question", disable=not progress)
    for start in range(0, len(questions), batch_size):
        batch = questions[start : start + batch_size]
        texts = [q.text for q in batch]
        none = [[] for _ in batch]
        b_lists = [r.candidates for r in retriever.retrieve_many(texts, depth, BM25_ONLY)] if bm25 else none
        d_lists = [r.candidates for r in retriever.retrieve_many(texts, depth, DENSE_ONLY)] if dense else none
        for q, b_cands, d_cands in zip(batch, b_lists, d_lists):
            skip = {index.passages[i].source_id for i in _positions(index, q.positives)} | set(q.positives)
            skip |= {index.passages[i].source_id for i in _positions(index, q.negatives)}
            mined_b = _first_new((c.position for c in b_cands), index, skip, bm25) if bm25 else []
            mined_d = _first_new((c.position for c in d_cands), index, skip, dense) if dense else []
            out.append(_with_mined(q, mined_b, mined_d))
        bar.update(len(batch))
    bar.close()
    return out


@dataclass(frozen=True)
class MinedQuestion(TrainQuestion):
    bm25_negatives: tuple[str, ...] = ()
    dense_negatives: tuple[str, ...] = ()


def _with_mined(q: TrainQuestion, bm25: list[str], dense: list[str]) -> MinedQuestion:
    return MinedQuestion(q.id, q.text, q.group, q.positives, q.negatives, q.article, tuple(bm25), tuple(dense))


def _positions(index: SearchIndex, ids: Sequence[str]) -> list[int]:
    lookup = {p.id: i for i, p in enumerate(index.passages)} if ids else {}
    return [lookup[i] for i in ids if i in lookup]


def training_pairs(index: SearchIndex, questions: Sequence[TrainQuestion]) -> PairSet:
    """(question, passage, label) pairs: positives 1, given, mined and unanswerable-question negatives 0."""
    lookup = _PassageLookup(index)

    def text(pid: str) -> str:
        position = lookup.position(pid)
        if position is None:  # checked when the file was read
            raise CorpusError(f"passage {pid!r} is not in the index {index.path}")
        return index.passages[position].text

    out = PairSet()
    for q in questions:
        for pid in q.positives:
            out.pairs.append(Pair(q.text, text(pid), 1, "positive"))
        for pid in q.negatives:
            out.pairs.append(Pair(q.text, text(pid), 0, "given" if q.answerable else "unanswerable"))
        for pid in getattr(q, "bm25_negatives", ()):
            out.pairs.append(Pair(q.text, text(pid), 0, "bm25"))
        for pid in getattr(q, "dense_negatives", ()):
            out.pairs.append(Pair(q.text, text(pid), 0, "dense"))
    return out
