"""The reader: marks the answer span inside a paragraph with an extractive QA model.

Any Hugging Face extractive question-answering model plugs in by name or path
(``AutoModelForQuestionAnswering`` with a fast tokenizer: BERT, ELECTRA,
RoBERTa, DeBERTa, ...). Transformers 5 has no question-answering pipeline,
so the span decoding is ours:

* the question goes first; a paragraph longer than ``max_length`` tokens is
  read in overlapping windows (``stride`` tokens shared by neighbours);
* a span starts and ends inside the paragraph's tokens of one window (never
  the question, special tokens or padding), ``start <= end``, at most
  ``max_answer_tokens`` tokens; its *span score* is start logit + end logit;
  the best span over all windows wins;
* its character offsets come from the fast tokenizer's offset mapping into
  the text we were given, so ``text[answer.start:answer.end] == answer.text``.

``Answer.score`` (0..1) is the best span's share of a softmax over the span
scores of every candidate span of that text (all windows; plus the null score
for no-answer models): the probability the model gives that span among all
spans it could have picked. It rises with the span score, so within a text the
best span always has the highest score; across texts it says how sure the
reader is.

:meth:`Reader.spans` gives, per text, its best spans (``top`` of them) with a
*span score* that means the same in every paragraph: start logit + end logit
of that span alone (minus the text's null score for no-answer models), never
normalised over the other spans of the text, so a long paragraph's many spans
do not dilute it. A span that two overlapping windows both hold is counted
once (at its better score). The pipeline combines these with the paragraph
probability across paragraphs (:mod:`pipeline.read.answers`).

No-answer (SQuAD 2.0-style) models: the null score of a window is the start +
end logit at its first (CLS) token. When no-answer is on and the lowest null
score over the windows of a text beats its best span, the reader returns
``None`` for that text. ``allow_no_answer=None`` (automatic) turns it on when
the model's config says ``version_2_with_negative: true`` (or
``allow_no_answer: true``), or when its name or path mentions SQuAD 2
(``squad2``, ``squad_v2``, ``squad-v2``, ``squadv2``); SQuAD 1.1 models have
an untrained CLS position, so comparing with it would throw answers away.

Example::

    >>> from pipeline.read.reader import Reader
    >>> r = Reader.load("../shared/models/minilm-l6-squad-tune-reader")          # doctest: +SKIP
    >>> r.read("Who won?", ["The Denver Broncos won the game."])[0].text         # doctest: +SKIP
    'Denver Broncos'
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from typing import Sequence

import numpy as np

from pipeline.config import RerankBackend
from pipeline.errors import ConfigError
from pipeline.models.device import pick_device
from pipeline.models.resolve import canonical_name, resolve_model
from pipeline.models.tokens import model_token_limit
from pipeline.read.engines import TorchSpans, load_engine
from pipeline.results import Answer

logger = logging.getLogger(__name__)

#: Questions are cut to this many tokens so that the paragraph keeps most of each window.
MAX_QUESTION_TOKENS = 64

_SQUAD2_NAME = re.compile(r"squad[-_ ]?v?2", re.IGNORECASE)


def wants_no_answer(config, name: str) -> bool:
    """Whether a model was trained to say "no answer" (see the module docstring for the rule)."""
    for flag in ("version_2_with_negative", "allow_no_answer"):
        value = getattr(config, flag, None)
        if value is not None:
            return bool(value)
    names = (name, str(getattr(config, "_name_or_path", "") or ""), str(getattr(config, "finetuning_task", "") or ""))
    return any(_SQUAD2_NAME.search(n) for n in names)


def best_span(start: np.ndarray, end: np.ndarray, max_tokens: int) -> tuple[float, int, int, float]:
    """Best ``(score, i, j, logsumexp)`` over spans ``i <= j < i + max_tokens`` of ``start``/``end`` logits.

    ``logsumexp`` is taken over every such span's score (the softmax normaliser).
    """
    n = len(start)
    width = min(max_tokens, n)
    # scores[k, i] = start[i] + end[i + k]: the span of k + 1 tokens starting at i.
    scores = np.full((width, n), -np.inf, dtype=np.float64)
    for k in range(width):
        scores[k, : n - k] = start[: n - k] + end[k:]
    flat = int(np.argmax(scores))
    k, i = divmod(flat, n)
    top = float(scores[k, i])
    finite = scores[np.isfinite(scores)]
    lse = top + float(np.log(np.exp(finite - top).sum()))
    return top, i, i + k, lse


@dataclass
class _Window:
    sample: int  # index of the (question, text) pair
    features: dict  # model inputs, unpadded
    offsets: list  # (char start, char end) per token
    lo: int  # first paragraph token
    hi: int  # last paragraph token
    cls: int  # index of the CLS token (null answer)


@dataclass
class _Best:
    score: float = -np.inf
    window: _Window | None = None
    i: int = 0
    j: int = 0


@dataclass
class Span:
    """One candidate answer span of a text: ``text == source[start:end]``.

    ``score`` is start + end logit of the span, minus the text's null score
    for a no-answer model: it does not depend on the text's other spans, so it
    compares across texts.
    """

    text: str
    start: int
    end: int
    score: float


@dataclass
class Reading:
    """What the reader saw in one text: its best spans (best first) and the null score.

    ``null`` is the lowest (start + end logit at [CLS]) over the text's windows
    for a no-answer model, ``None`` for a SQuAD 1.1 model (its [CLS] was never
    trained). Span scores are already relative to it.
    """

    spans: list[Span]
    null: float | None = None

    @property
    def best(self) -> Span | None:
        return self.spans[0] if self.spans else None


def top_spans(start: np.ndarray, end: np.ndarray, max_tokens: int, top: int) -> list[tuple[float, int, int]]:
    """The ``top`` best ``(score, i, j)``, best first, over spans ``i <= j < i + max_tokens``."""
    n = len(start)
    width = min(max_tokens, n)
    scores = np.full((width, n), -np.inf, dtype=np.float64)
    for k in range(width):
        scores[k, : n - k] = start[: n - k] + end[k:]
    flat = scores.ravel()
    count = min(top, int(np.isfinite(flat).sum()))
    if count <= 0:
        return []
    picked = np.argpartition(-flat, count - 1)[:count]
    picked = picked[np.argsort(-flat[picked], kind="stable")]
    out = []
    for f in picked:
        k, i = divmod(int(f), n)
        out.append((float(flat[f]), i, i + k))
    return out


class Reader:
    """Extracts answer spans with an extractive QA model; build with :meth:`load`."""

    def __init__(
        self,
        model,
        tokenizer,
        name: str,
        *,
        max_length: int = 384,
        stride: int = 128,
        max_answer_tokens: int = 30,
        batch_size: int = 16,
        allow_no_answer: bool | None = None,
        engine=None,
        config=None,
    ):
        """``model``: a PyTorch ``…ForQuestionAnswering`` model; or ``None`` with an ``engine`` (see
        :mod:`pipeline.read.engines`) and the model's ``config``."""
        if not getattr(tokenizer, "is_fast", False):
            raise ConfigError(f"The reader {name} needs a fast tokenizer (tokenizer.json) for character offsets.")
        if engine is None and model is None:
            raise ConfigError(f"The reader {name} needs a model or an engine to run it.")
        config = config if config is not None else model.config
        limit = model_token_limit(tokenizer, config)
        if max_length < 32:
            raise ConfigError(f"The reader's max_length must be at least 32 tokens, got {max_length}.")
        if not 0 <= stride < max_length // 2:
            raise ConfigError(f"The reader's stride must be between 0 and max_length/2 ({max_length // 2}), got {stride}.")
        if max_answer_tokens < 1 or batch_size < 1:
            raise ConfigError("The reader's max_answer_tokens and batch_size must be positive whole numbers.")
        self.model = model
        self.config = config
        self.engine = engine if engine is not None else TorchSpans(model)
        self.tokenizer = tokenizer
        self.name = canonical_name(name)
        self.max_length = min(max_length, limit)
        self.stride = stride
        self.max_answer_tokens = max_answer_tokens
        self.batch_size = batch_size
        self.allow_no_answer = wants_no_answer(config, name) if allow_no_answer is None else allow_no_answer
        self.input_names = [n for n in tokenizer.model_input_names if n in ("input_ids", "attention_mask", "token_type_ids")]

    @classmethod
    def load(
        cls,
        name: str,
        *,
        device: str | None = None,
        max_length: int = 384,
        stride: int = 128,
        max_answer_tokens: int = 30,
        batch_size: int = 16,
        allow_no_answer: bool | None = None,
        trust_remote_code: bool = False,
        backend: RerankBackend | str = RerankBackend.TORCH,
        threads: int | None = None,
    ) -> "Reader":
        """Load an extractive QA model by Hub id or path (resolved offline first, like every model here).

        ``backend``: ``torch`` (here the default: the exact PyTorch path), ``onnx``, ``onnx-int8`` or
        ``auto`` (the pipeline's default, ``reader_backend``: ONNX Runtime int8 on a CPU); see
        :mod:`pipeline.read.engines`.
        """
        from transformers import AutoConfig, AutoTokenizer

        resolved = resolve_model(name, role="reader")
        config = AutoConfig.from_pretrained(resolved.path, local_files_only=True, trust_remote_code=trust_remote_code)
        architectures = getattr(config, "architectures", None) or []
        if architectures and not any(a.endswith("ForQuestionAnswering") for a in architectures):
            raise ConfigError(
                f"The reader {name} is a {', '.join(architectures)}, not an extractive question-answering model "
                "(…ForQuestionAnswering); pass a SQuAD-style reader."
            )
        tokenizer = AutoTokenizer.from_pretrained(resolved.path, local_files_only=True, trust_remote_code=trust_remote_code)
        engine = load_engine(str(resolved.path), backend, device=pick_device(device), threads=threads,
                             trust_remote_code=trust_remote_code, config=config)
        reader = cls(
            getattr(engine, "model", None),
            tokenizer,
            name,
            max_length=max_length,
            stride=stride,
            max_answer_tokens=max_answer_tokens,
            batch_size=batch_size,
            allow_no_answer=allow_no_answer,
            engine=engine,
            config=config,
        )
        logger.info(
            "Reader %s: windows of %d tokens, stride %d, answers up to %d tokens, no-answer %s",
            name, reader.max_length, stride, max_answer_tokens, "on" if reader.allow_no_answer else "off",
        )
        return reader

    # ------------------------------------------------------------------ public API

    def describe(self) -> str:
        """What runs the model: ``torch``, ``onnx`` or ``onnx-int8`` (recorded in search results)."""
        return self.engine.backend.value

    def read(self, question: str, texts: Sequence[str]) -> list[Answer | None]:
        """The best answer span in each text (``None``: empty text, or the model says no answer)."""
        return self.read_pairs([(question, t) for t in texts])

    def read_pairs(self, pairs: Sequence[tuple[str, str]]) -> list[Answer | None]:
        """Like :meth:`read` for many (question, text) pairs at once: one batched pass over all windows."""
        answers: list[Answer | None] = [None] * len(pairs)
        todo = [k for k, (q, t) in enumerate(pairs) if q and q.strip() and t and t.strip()]
        if not todo:
            return answers
        windows = self._windows([pairs[k][0] for k in todo], [pairs[k][1] for k in todo])
        logits = self._logits(windows)
        best = [_Best() for _ in todo]
        normaliser: list[list[float]] = [[] for _ in todo]
        nulls: list[list[float]] = [[] for _ in todo]
        for window, (start, end) in zip(windows, logits):
            if window.hi < window.lo:
                continue
            score, i, j, lse = best_span(start[window.lo : window.hi + 1], end[window.lo : window.hi + 1], self.max_answer_tokens)
            normaliser[window.sample].append(lse)
            nulls[window.sample].append(float(start[window.cls] + end[window.cls]))
            if score > best[window.sample].score:
                best[window.sample] = _Best(score, window, window.lo + i, window.lo + j)
        for s, k in enumerate(todo):
            answers[k] = self._answer(pairs[k][1], best[s], normaliser[s], nulls[s])
        return answers

    def spans(self, pairs: Sequence[tuple[str, str]], *, top: int = 20) -> list[Reading]:
        """Each (question, text) pair's best ``top`` spans, scored to compare across texts (see :class:`Span`).

        One batched pass over all windows, like :meth:`read_pairs`. An empty
        text gets no spans. No-answer models keep every span, even those below
        the null score (their scores are then negative); deciding is the
        caller's job.
        """
        if top < 1:
            raise ConfigError(f"top must be a positive whole number, got {top}.")
        readings = [Reading([], None) for _ in pairs]
        todo = [k for k, (q, t) in enumerate(pairs) if q and q.strip() and t and t.strip()]
        if not todo:
            return readings
        windows = self._windows([pairs[k][0] for k in todo], [pairs[k][1] for k in todo])
        logits = self._logits(windows)
        found: list[dict[tuple[int, int], float]] = [{} for _ in todo]
        nulls: list[list[float]] = [[] for _ in todo]
        for window, (start, end) in zip(windows, logits):
            if window.hi < window.lo:
                continue
            text = pairs[todo[window.sample]][1]
            nulls[window.sample].append(float(start[window.cls] + end[window.cls]))
            lo, hi = window.lo, window.hi + 1
            for score, i, j in top_spans(start[lo:hi], end[lo:hi], self.max_answer_tokens, top):
                span = self._trim(text, int(window.offsets[lo + i][0]), int(window.offsets[lo + j][1]))
                if span is not None and score > found[window.sample].get(span, -np.inf):
                    found[window.sample][span] = score  # a span two windows share counts once
        for s, k in enumerate(todo):
            text = pairs[k][1]
            null = min(nulls[s]) if self.allow_no_answer and nulls[s] else None
            shift = null if null is not None else 0.0
            best = sorted(found[s].items(), key=lambda item: -item[1])[:top]
            readings[k] = Reading([Span(text[a:b], a, b, score - shift) for (a, b), score in best], null)
        return readings

    # ------------------------------------------------------------------ internals

    @staticmethod
    def _trim(text: str, start: int, end: int) -> tuple[int, int] | None:
        while start < end and text[start].isspace():
            start += 1
        while end > start and text[end - 1].isspace():
            end -= 1
        return (start, end) if end > start else None

    def _answer(self, text: str, best: _Best, normaliser: list[float], nulls: list[float]) -> Answer | None:
        if best.window is None:
            return None
        terms = list(normaliser)
        if self.allow_no_answer:
            null = min(nulls)
            if null > best.score:
                return None
            terms.append(null)
        top = max(terms)
        log_z = top + float(np.log(np.sum(np.exp(np.asarray(terms) - top))))
        start = int(best.window.offsets[best.i][0])
        end = int(best.window.offsets[best.j][1])
        while start < end and text[start].isspace():
            start += 1
        while end > start and text[end - 1].isspace():
            end -= 1
        if end <= start:
            return None
        score = float(np.clip(np.exp(best.score - log_z), 0.0, 1.0))
        return Answer(text=text[start:end], start=start, end=end, score=score)

    def _clip_questions(self, questions: list[str], limit: int) -> tuple[list[str], int]:
        """Questions cut to ``limit`` tokens (at a token boundary of the string), and the longest one's length."""
        encoded = self.tokenizer(questions, add_special_tokens=False, return_offsets_mapping=True)
        out, longest = [], 0
        for question, offsets in zip(questions, encoded["offset_mapping"]):
            out.append(question[: offsets[limit - 1][1]] if len(offsets) > limit else question)
            longest = max(longest, min(len(offsets), limit))
        return out, longest

    def _windows(self, questions: list[str], texts: list[str]) -> list[_Window]:
        specials = self.tokenizer.num_special_tokens_to_add(pair=True)
        # The question takes at most half a window; the stride at most half of what is left for the paragraph.
        limit = min(MAX_QUESTION_TOKENS, (self.max_length - specials) // 2)
        questions, longest = self._clip_questions([q.strip() for q in questions], limit)
        room = self.max_length - specials - longest
        stride = min(self.stride, room // 2)
        encoded = self.tokenizer(
            questions,
            texts,
            truncation="only_second",
            max_length=self.max_length,
            stride=stride,
            return_overflowing_tokens=True,
            return_offsets_mapping=True,
            padding=False,
        )
        cls_id = self.tokenizer.cls_token_id
        windows = []
        for w, sample in enumerate(encoded["overflow_to_sample_mapping"]):
            sequence = encoded.sequence_ids(w)
            context = [t for t, s in enumerate(sequence) if s == 1]
            ids = encoded["input_ids"][w]
            windows.append(
                _Window(
                    sample=int(sample),
                    features={n: encoded[n][w] for n in self.input_names if n in encoded},
                    offsets=encoded["offset_mapping"][w],
                    lo=context[0] if context else 1,
                    hi=context[-1] if context else 0,
                    cls=ids.index(cls_id) if cls_id is not None and cls_id in ids else 0,
                )
            )
        return windows

    def _logits(self, windows: list[_Window]) -> list[tuple[np.ndarray, np.ndarray]]:
        """Start and end logits of every window (unpadded), batched by length to limit padding."""
        out: list[tuple[np.ndarray, np.ndarray] | None] = [None] * len(windows)
        order = sorted(range(len(windows)), key=lambda w: len(windows[w].features["input_ids"]))
        for b in range(0, len(order), self.batch_size):
            chunk = order[b : b + self.batch_size]
            batch = self.tokenizer.pad([windows[w].features for w in chunk], return_tensors="np")
            starts, ends = self.engine({k: batch[k] for k in batch.keys()})
            for row, w in enumerate(chunk):
                n = len(windows[w].features["input_ids"])
                out[w] = (starts[row, :n], ends[row, :n])
        return out  # type: ignore[return-value]
