"""Questions of a SQuAD-format file (v1.1 or v2.0) with their gold paragraph, selected by article.

A question's gold paragraph id is ``"{title}#{paragraph index}"``, the id the
SQuAD corpus reader (:mod:`pipeline.corpus`) gives that paragraph in an index.
SQuAD v2.0 questions marked ``is_impossible`` have no answer in their paragraph:
:attr:`Question.answerable` is ``False`` for them.

Example::

    >>> from pipeline.eval.questions import load_questions, parse_articles
    >>> parse_articles("24-47,50")[:2]
    [24, 25]
    >>> qs = load_questions("data/dev-v1.1.json", articles="24-47")   # doctest: +SKIP
    >>> len(qs), qs[0].gold_id                                           # doctest: +SKIP
    (4874, 'Economic_inequality#0')
"""

from __future__ import annotations

import json
import random
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence, TypeVar

from pipeline.corpus import squad_paragraph_id
from pipeline.errors import ConfigError, CorpusError

_RANGE = re.compile(r"^\s*(\d+)\s*(?:-\s*(\d+))?\s*$")
T = TypeVar("T")


@dataclass(frozen=True)
class Question:
    """One question with where its answer lives."""

    id: str
    text: str
    title: str
    article: int
    paragraph: int
    context: str
    answers: tuple[str, ...] = field(default_factory=tuple)
    answerable: bool = True

    @property
    def gold_id(self) -> str:
        """Id of the paragraph that holds the answer (the corpus reader's SQuAD id)."""
        return squad_paragraph_id(self.title, self.paragraph)


def parse_articles(spec: str | None) -> list[int] | None:
    """``"24-47"`` / ``"0-23,30"`` → sorted article indices; ``None`` or ``""`` → ``None`` (all)."""
    if spec is None or not str(spec).strip():
        return None
    chosen: set[int] = set()
    for part in str(spec).split(","):
        match = _RANGE.match(part)
        if not match:
            raise ConfigError(f"Bad article range {part.strip()!r} in {spec!r}; use e.g. 24-47 or 0-23,30.")
        low = int(match.group(1))
        high = int(match.group(2)) if match.group(2) is not None else low
        if high < low:
            raise ConfigError(f"Bad article range {part.strip()!r}: the end is before the start.")
        chosen.update(range(low, high + 1))
    return sorted(chosen)


def load_questions(path: str | Path, articles: str | Sequence[int] | None = None) -> list[Question]:
    """Every question of the SQuAD-format file at ``path``, of the chosen articles (all by default).

    Raises :class:`CorpusError` for a file that is not SQuAD format and
    :class:`ConfigError` when an asked-for article does not exist.
    """
    path = Path(path).expanduser()
    if not path.is_file():
        raise CorpusError("no such questions file", path=str(path))
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CorpusError(f"not a SQuAD JSON file ({exc})", path=str(path)) from exc
    documents = data.get("data") if isinstance(data, dict) else None
    if not isinstance(documents, list):
        raise CorpusError('not SQuAD format: expected an object with a "data" list', path=str(path))
    wanted = parse_articles(articles) if isinstance(articles, str) or articles is None else sorted(set(articles))
    if wanted is not None:
        missing = [a for a in wanted if not 0 <= a < len(documents)]
        if missing:
            raise ConfigError(
                f"{path} has articles 0-{len(documents) - 1}; asked for {missing[0]}"
                + (f" and {len(missing) - 1} more" if len(missing) > 1 else "")
                + "."
            )
    questions: list[Question] = []
    for a in wanted if wanted is not None else range(len(documents)):
        article = documents[a]
        try:
            title = article["title"]
            for p, paragraph in enumerate(article["paragraphs"]):
                for qa in paragraph["qas"]:
                    impossible = bool(qa.get("is_impossible", False))
                    questions.append(
                        Question(
                            id=str(qa["id"]),
                            text=qa["question"],
                            title=title,
                            article=a,
                            paragraph=p,
                            context=paragraph["context"],
                            answers=tuple(ans["text"] for ans in qa.get("answers", [])),
                            answerable=not impossible,
                        )
                    )
        except (KeyError, TypeError) as exc:
            raise CorpusError(f"article {a} is not SQuAD format (missing {exc})", path=str(path)) from exc
    return questions


#: File endings read as JSON Lines of labelled questions by :func:`load_labelled_questions`.
JSONL_SUFFIXES = (".jsonl", ".ndjson")


def load_labelled_questions(path: str | Path, articles: str | Sequence[int] | None = None) -> list[Question]:
    """Questions known to have an answer or not: a SQuAD v2.0 file (:func:`load_questions`), or JSON Lines.

    A ``.jsonl`` file has one question per line, written against a deployment's own
    documents: ``{"question": "...", "answerable": true, "group": "the document it was
    written against"}``, with an optional ``"id"`` and ``"answers"`` (a list of strings).
    The group is what cross-validation keeps whole (an article in SQuAD), so a fit is
    never measured on questions of a document it was fitted on.

    >>> import tempfile, os
    >>> with tempfile.NamedTemporaryFile("w", suffix=".jsonl", delete=False) as f:
    ...     _ = f.write('{"question": "Who founded Rome?", "answerable": true, "group": "Rome"}\\n')
    >>> [(q.text, q.title, q.answerable) for q in load_labelled_questions(f.name)]
    [('Who founded Rome?', 'Rome', True)]
    >>> os.remove(f.name)
    """
    path = Path(path).expanduser()
    if path.suffix.lower() not in JSONL_SUFFIXES:
        return load_questions(path, articles)
    if articles is not None:
        raise ConfigError("--articles picks articles of a SQuAD file; a JSON Lines file of questions has groups, "
                          "and every line is used.")
    if not path.is_file():
        raise CorpusError("no such questions file", path=str(path))
    questions: list[Question] = []
    groups: dict[str, int] = {}
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            item = json.loads(line)
        except json.JSONDecodeError as exc:
            raise CorpusError(f"line {number} is not JSON ({exc})", path=str(path)) from exc
        if not isinstance(item, dict):
            raise CorpusError(f"line {number} is not a JSON object", path=str(path))
        text, group, answerable = item.get("question"), item.get("group"), item.get("answerable")
        if not isinstance(text, str) or not text.strip():
            raise CorpusError(f'line {number} needs a non-empty "question"', path=str(path))
        if not isinstance(answerable, bool):
            raise CorpusError(f'line {number} needs "answerable": true or false', path=str(path))
        if not isinstance(group, str) or not group.strip():
            raise CorpusError(f'line {number} needs a non-empty "group" (the document the question was written '
                              "against)", path=str(path))
        answers = item.get("answers", [])
        if not isinstance(answers, list) or not all(isinstance(a, str) for a in answers):
            raise CorpusError(f'line {number}: "answers" must be a list of strings', path=str(path))
        questions.append(Question(id=str(item.get("id", number)), text=text, title=group,
                                  article=groups.setdefault(group, len(groups)), paragraph=0, context="",
                                  answers=tuple(answers), answerable=answerable))
    if not questions:
        raise CorpusError("no questions in the file", path=str(path))
    return questions


def seeded_sample(items: Sequence[T], n: int | None, seed: int) -> list[T]:
    """``n`` of ``items`` drawn with ``seed``, in their original order (all of them when ``n`` is ``None`` or too big).

    Evaluation samples, training sets and held-out samples are all drawn this way, so the same seed
    gives the same questions to a training card and to a benchmark that compares models on them.
    """
    if n is None or n >= len(items):
        return list(items)
    keep = sorted(random.Random(seed).sample(range(len(items)), n))
    return [items[i] for i in keep]


def sample_questions(questions: Sequence[Question], n: int | None, seed: int = 0) -> list[Question]:
    """A fixed random sample of ``n`` questions (all of them when ``n`` is ``None`` or not smaller), in file order."""
    if n is not None and n < 1 and n < len(questions):
        raise ConfigError(f"--sample must be a positive whole number, got {n}.")
    return seeded_sample(questions, n, seed)
