"""Two-stage reranking: a small, fast cross-encoder prunes, the main one scores the best few.

For each question, :class:`Cascade` scores every candidate with ``first`` and
passes only its best ``keep`` to ``main``. Kept candidates get the main
reranker's probability. Pruned ones are ranked after every kept one: their
probability is the first stage's, capped just below the lowest kept
probability of that question, so they never outrank (or read as more
answerable than) a passage the main reranker saw. It has the same
``score_pairs`` / ``score`` interface as :class:`~pipeline.rerank.reranker.Reranker`.

The same class, with the int8 and the fp32 copies of one model, is the default
on a CPU (``int8_rescore``): int8 screens all candidates, fp32 re-scores each
question's best few. The HTTP rerank endpoints use it so; a search re-scores in
fp32 what its final order puts first instead (:class:`ExactFirst`). A cascade with a *different*, smaller first model is off by
default (``cascade_reranker=None``): no small reranker with measured quality
exists here yet, see docs/fast-rerank.md.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Hashable, Sequence

import numpy as np

from pipeline.errors import ConfigError
from pipeline.models.resolve import display_name
from pipeline.rerank.reranker import Reranker


@dataclass(frozen=True)
class ExactFirst:
    """With the int8 screen: the fp32 reranker, and how many first hits of the final order must carry its scores.

    A search scores every candidate with ``screen`` (the int8 model) and re-scores
    in fp32 the paragraphs the final order puts in the first ``places``
    (``QAPipeline._rescore_first``), rather than the screen's own best by int8
    probability, which retrieval evidence can outrank. ``screen`` is ``None`` behind
    a cascade with a small first model: the cascade scores the candidates then.
    """

    reranker: Reranker
    places: int
    screen: Reranker | None = None


class Cascade:
    """``first`` prunes each question's candidates to ``keep``; ``main`` scores those."""

    def __init__(self, first: Reranker, main: Reranker, keep: int):
        if keep < 1:
            raise ConfigError(f"cascade_keep must be a positive whole number, got {keep!r}.")
        self.first = first
        self.main = main
        self.keep = keep

    # What the pipeline reads of a reranker.
    @property
    def name(self) -> str:
        return self.main.name

    @property
    def backend(self):
        return self.main.backend

    def describe(self) -> str:
        """How the scores are made, e.g. ``onnx-int8 -> top 3 onnx`` (recorded in search results)."""
        # Recorded in every result (and sent to API clients): a local path shows only its last part.
        same = self.first.name == self.main.name
        first = self.first.describe() if same else f"{display_name(self.first.name)} {self.first.describe()}"
        return f"{first} -> top {self.keep} {self.main.describe()}"

    @property
    def max_length(self) -> int:
        return self.main.max_length

    @property
    def tokenizer(self):
        """The main reranker's tokenizer (token counts and the chunking of long documents follow the main model)."""
        return self.main.tokenizer

    def kept(self, pairs: Sequence[tuple[str, str]],
             groups: Sequence[Hashable] | None = None) -> tuple[np.ndarray, list[int]]:
        """First-stage probabilities and the indices (into ``pairs``) that go on to the main reranker.

        The best ``keep`` are chosen per question *of each group* (request): a request sharing the call
        never takes another's places.
        """
        first = self.first.score_pairs(pairs, groups)
        return first, self.select(pairs, first, groups)

    def select(self, pairs: Sequence[tuple[str, str]], first: np.ndarray,
               groups: Sequence[Hashable] | None = None) -> list[int]:
        """The indices (into ``pairs``) of each question's best ``keep`` by first-stage probability, per group."""
        by_question: dict[tuple[Hashable, str], list[int]] = {}
        for i, (question, _) in enumerate(pairs):
            by_question.setdefault(_label(groups, i, question), []).append(i)
        keep: list[int] = []
        for indices in by_question.values():
            ranked = sorted(indices, key=lambda i: (-first[i], i))
            keep.extend(ranked[: self.keep])
        return sorted(keep)

    def score_pairs(self, pairs: Sequence[tuple[str, str]], groups: Sequence[Hashable] | None = None) -> np.ndarray:
        """Probabilities like :meth:`Reranker.score_pairs`; ``groups`` labels each pair with its request.

        Pairs of different groups are scored as if each group were alone (its own top ``keep``, its own cap,
        its own model batches), so clients whose requests share a server batch never change each other's scores.
        """
        if not pairs:
            return np.zeros((0,), dtype=np.float32)
        if groups is not None and len(groups) != len(pairs):
            raise ValueError(f"{len(groups)} group labels for {len(pairs)} pairs")
        # The same pair twice in one group (e.g. a question asked twice in one search_many call) must not take
        # two places of its ``keep``: score each distinct pair once.
        positions: dict[tuple[Hashable, str, str], list[int]] = {}
        for i, pair in enumerate(pairs):
            positions.setdefault((None if groups is None else groups[i], pair[0], pair[1]), []).append(i)
        if len(positions) < len(pairs):
            distinct = self.score_pairs([(q, p) for _, q, p in positions],
                                        None if groups is None else [g for g, _, _ in positions])
            out = np.zeros(len(pairs), dtype=np.float32)
            for value, where in zip(distinct, positions.values()):
                out[where] = value
            return out
        first, keep = self.kept(pairs, groups)
        main = self.main.score_pairs([pairs[i] for i in keep], None if groups is None else [groups[i] for i in keep])
        return self.combine(pairs, first, keep, main, groups)

    def combine(self, pairs: Sequence[tuple[str, str]], first: np.ndarray, keep: Sequence[int], main: np.ndarray,
                groups: Sequence[Hashable] | None = None) -> np.ndarray:
        """The cascade's probabilities from both stages' scores: ``main`` for the kept pairs, the first stage's
        capped just below the lowest kept probability of the same question (and group) for the others.

        Split from :meth:`score_pairs` so that a server can run the two stages as separate batched calls
        (every chunk of a large request screened first, then its own best ``keep`` re-scored).
        """
        out = np.array(first, dtype=np.float32)
        out[list(keep)] = main
        floor: dict[tuple[Hashable, str], float] = {}
        for i, value in zip(keep, main):
            label = _label(groups, i, pairs[i][0])
            floor[label] = min(floor.get(label, 1.0), float(value))
        kept = set(keep)
        for i, (question, _) in enumerate(pairs):
            if i not in kept:
                cap = np.nextafter(np.float32(floor[_label(groups, i, question)]), np.float32(-1.0))
                out[i] = max(np.float32(0.0), min(out[i], cap))
        return out

    def score(self, query: str, texts: Sequence[str]) -> np.ndarray:
        return self.score_pairs([(query, t) for t in texts])


def _label(groups: Sequence[Hashable] | None, i: int, question: str) -> tuple[Hashable, str]:
    """Pair ``i``'s (request, question): the unit whose top ``keep`` the cascade picks."""
    return (None if groups is None else groups[i], question)
