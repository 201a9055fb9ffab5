"""Train / held-out splits that never overlap, kept by article (or group), and grouped folds.

A split is chosen with ``eval_articles`` (SQuAD article numbers, e.g. ``"24-47"``)
or ``eval_split`` (a fraction of the groups, drawn with a seed). Whatever is
chosen, :func:`check_disjoint` refuses a split in which a held-out question is
also a training question, so figures are never reported on trained-on data.

Example::

    >>> from pipeline.train.splits import split_questions                      # doctest: +SKIP
    >>> split = split_questions(questions, eval_articles="20-23")              # doctest: +SKIP
    >>> len(split.train), len(split.eval), split.describe()["eval_articles"]  # doctest: +SKIP
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any, Protocol, Sequence, TypeVar

from pipeline.errors import ConfigError
from pipeline.eval.questions import parse_articles

logger = logging.getLogger(__name__)


class Splittable(Protocol):
    id: str
    text: str
    group: str
    article: int | None


Q = TypeVar("Q", bound=Splittable)


def _ranges(numbers: Sequence[int]) -> str:
    out, run = [], []
    for n in sorted(set(numbers)):
        if run and n == run[-1] + 1:
            run.append(n)
            continue
        if run:
            out.append(f"{run[0]}-{run[-1]}" if len(run) > 1 else str(run[0]))
        run = [n]
    if run:
        out.append(f"{run[0]}-{run[-1]}" if len(run) > 1 else str(run[0]))
    return ",".join(out)


@dataclass
class Split:
    train: list
    eval: list
    settings: dict[str, Any] = field(default_factory=dict)

    def describe(self) -> dict[str, Any]:
        """What the card records: how the split was made, its sizes, and its articles or groups."""
        out = dict(self.settings)
        out.update(train_questions=len(self.train), eval_questions=len(self.eval))
        for name, part in (("train", self.train), ("eval", self.eval)):
            articles = [q.article for q in part if q.article is not None]
            if articles:
                out[f"{name}_articles"] = _ranges(articles)
            out[f"{name}_groups"] = len({q.group for q in part})
        return out


def _by_articles(questions: Sequence[Q], spec: str, flag: str) -> set[int]:
    wanted = set(parse_articles(spec) or [])
    if any(q.article is None for q in questions):
        raise ConfigError(f"{flag} needs a SQuAD questions file (articles are numbered there); use --eval-split FRACTION.")
    known = {q.article for q in questions}
    if not wanted & known:
        raise ConfigError(f"{flag} {spec} selects no question of the file (it has articles {_ranges(known)}).")
    return wanted


def split_questions(
    questions: Sequence[Q],
    *,
    train_articles: str | None = None,
    eval_articles: str | None = None,
    eval_split: float | None = None,
    seed: int = 0,
) -> Split:
    """Split ``questions`` into training and held-out questions; raise :class:`ConfigError` on any overlap."""
    if eval_articles and eval_split is not None:
        raise ConfigError("Pass --eval-articles or --eval-split, not both.")
    train_set = _by_articles(questions, train_articles, "--train-articles") if train_articles else None
    settings: dict[str, Any] = {"seed": seed}
    if eval_articles:
        eval_set = _by_articles(questions, eval_articles, "--eval-articles")
        if train_set is not None and train_set & eval_set:
            raise ConfigError(
                f"The evaluation articles {_ranges(train_set & eval_set)} are also training articles: "
                "an evaluation split must never be trained on."
            )
        held = [q for q in questions if q.article in eval_set]
        rest = [q for q in questions if q.article not in eval_set]
        settings.update(method="articles", eval_articles_asked=eval_articles)
    elif eval_split is not None:
        if not 0.0 < eval_split < 1.0:
            raise ConfigError(f"--eval-split must be a fraction between 0 and 1, got {eval_split}.")
        pool = [q for q in questions if train_set is None or q.article in train_set]
        held, rest = _group_split(pool, eval_split, seed)
        settings.update(method="fraction of groups", eval_split=eval_split)
    else:
        held, rest = [], list(questions)
        settings.update(method="none (no held-out figures)")
    train = [q for q in rest if train_set is None or q.article in train_set]
    if train_articles:
        settings["train_articles_asked"] = train_articles
    if not train:
        raise ConfigError("No training question is left after the evaluation split.")
    check_disjoint(train, held)
    return Split(train, held, settings)


def _group_split(pool: Sequence[Q], fraction: float, seed: int) -> tuple[list[Q], list[Q]]:
    from sklearn.model_selection import GroupShuffleSplit

    groups = [q.group for q in pool]
    if len(set(groups)) < 2:
        raise ConfigError("--eval-split needs questions of at least two groups (articles) to hold one out.")
    train_idx, eval_idx = next(GroupShuffleSplit(n_splits=1, test_size=fraction, random_state=seed).split(pool, groups=groups))
    return [pool[i] for i in sorted(eval_idx)], [pool[i] for i in sorted(train_idx)]


def check_disjoint(train: Sequence[Splittable], held: Sequence[Splittable]) -> None:
    """Refuse (raise :class:`ConfigError`) when a held-out question is also a training question (same id or text)."""
    ids = {q.id for q in train}
    texts = {q.text.strip().lower() for q in train}
    overlap = [q for q in held if q.id in ids or q.text.strip().lower() in texts]
    if overlap:
        raise ConfigError(
            f"The evaluation split overlaps the training split ({len(overlap)} question(s), e.g. {overlap[0].text!r}): "
            "refusing to report figures on questions it trained on."
        )


def group_folds(questions: Sequence[Q], n_folds: int) -> list[tuple[list[Q], list[Q]]]:
    """``n_folds`` (train, held-out) pairs, each group (article) held out exactly once (scikit-learn GroupKFold).

    A held-out question whose text is also a training question of another
    article (SQuAD has a few: "What is the population of Los Angeles?" is
    answerable in one article and unanswerable in another) is left out of that
    fold's held-out questions, so no fold reports figures on a question it
    trained on; the folds are made here, so refusing would leave no way out.
    """
    from sklearn.model_selection import GroupKFold

    groups = [q.group for q in questions]
    if n_folds < 2 or n_folds > len(set(groups)):
        raise ConfigError(f"--folds must be between 2 and the number of articles ({len(set(groups))}), got {n_folds}.")
    folds = []
    for k, (train_idx, eval_idx) in enumerate(GroupKFold(n_splits=n_folds).split(questions, groups=groups)):
        train, held = [questions[i] for i in train_idx], [questions[i] for i in eval_idx]
        ids = {q.id for q in train}
        texts = {q.text.strip().lower() for q in train}
        kept = [q for q in held if q.id not in ids and q.text.strip().lower() not in texts]
        if len(kept) < len(held):
            logger.info("Fold %d: %d held-out question(s) left out, their text is also a training question",
                        k + 1, len(held) - len(kept))
        check_disjoint(train, kept)
        folds.append((train, kept))
    return folds
