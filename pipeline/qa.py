"""``QAPipeline``: question in, answerable paragraphs and their answers out (retrieve → fuse → rerank → read).

Example::

    >>> from pipeline import QAPipeline
    >>> qa = QAPipeline.load("indexes/squad-dev", reranker="../shared/models/minilm-l6-qnli-squad-tune")  # doctest: +SKIP
    >>> result = qa.search("Which NFL team represented the AFC at Super Bowl 50?")                         # doctest: +SKIP
    >>> result.hits[0].title, result.hits[0].answerable                                                    # doctest: +SKIP
    ('Super_Bowl_50', True)
    >>> result.answer.text, result.answer.id                                                               # doctest: +SKIP
    ('Denver Broncos', 'Super_Bowl_50#0')

Reading: the reader reads the first ``read_paragraphs`` hits of the blended
order (5 as shipped; whether or not they pass the threshold). Each read hit
gets ``answer`` (its best span), and its span score moves it (``read_weight``,
:mod:`pipeline.rank.reading`). The answer is decided on the order after the
move, from its first read hits (the answer policy's ``paragraphs``: 1 as
shipped): identical answers add up their evidence across them and the
search's ``answer`` is the one with most, unless the answer
policy abstains (then ``answer`` is ``None``, ``no_answer_reason`` says why,
``candidate`` keeps the best candidate and no hit is ``answerable``); see
:mod:`pipeline.read.answers`.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any, Sequence

from pipeline.config import (
    LoadSettings,
    PipelineConfig,
    RerankBackend,
    RetrievalMode,
    SearchSettings,
)
from pipeline.errors import ConfigError, ModelNotFoundError, QueryError
from pipeline.index import SearchIndex
from pipeline.models.device import pick_device
from pipeline.models.encoder import BiEncoder
from pipeline.rank.calibration import (
    Calibration,
    FinalCalibration,
    calibrated,
    describe,
    find_calibration,
)
from pipeline.rank.policy import Policy, find_policy
from pipeline.rank.reading import place_by_final, read_first, reorder_by_reading
from pipeline.read.answers import Decision, aggregate, decide
from pipeline.read.evidence import LexicalEvidence, Similarity, compared_sentences
from pipeline.read.policy import AnswerPolicy
from pipeline.read.reader import Reader, Reading
from pipeline.read.similarity import SentenceSimilarity
from pipeline.rerank.backends import choose_backend
from pipeline.rerank.blend import blended_scores
from pipeline.rerank.blend import describe as describe_blend
from pipeline.rerank.cascade import Cascade, ExactFirst
from pipeline.rerank.chunking import score_whole
from pipeline.rerank.depth import rerank_depth
from pipeline.rerank.reranker import Reranker
from pipeline.results import Hit, SearchResult
from pipeline.retrieve import Candidate, Retriever
from pipeline.retrieve.retriever import LIST_DEPTH

logger = logging.getLogger(__name__)

def check_question(question: Any, max_chars: int) -> str:
    """The question, trimmed; :class:`QueryError` if it is not text, empty or too long."""
    if not isinstance(question, str):
        raise QueryError(f"The question must be text, got {type(question).__name__}.")
    text = question.strip()
    if not text:
        raise QueryError("The question is empty: type a question.")
    if len(text) > max_chars:
        raise QueryError(f"The question is {len(text):,} characters long; the limit is {max_chars:,}.")
    return text


def _abstained(decision: Decision | None) -> bool:
    """Whether the answer policy withheld the answer it found (no hit may then be flagged answerable)."""
    return decision is not None and decision.answer is None and decision.candidate is not None


def _short_name(name: str | None) -> str | None:
    """A model's last path part (``sentence-transformers/all-MiniLM-L6-v2`` -> ``all-MiniLM-L6-v2``): how policies name models."""
    return Path(name).name if name else None


def load_reranker(config: LoadSettings) -> Reranker | Cascade:
    """The reranker the settings ask for: backend, threads, score cache, int8 rescoring, optional cascade."""

    def one(name: str, backend: RerankBackend) -> Reranker:
        return Reranker.load(
            name,
            device=config.device,
            max_length=config.max_length,
            batch_size=config.batch_size,
            trust_remote_code=config.trust_remote_code,
            backend=backend,
            threads=config.threads,
            cache_size=config.score_cache_size,
        )

    backend = choose_backend(config.rerank_backend, pick_device(config.device))
    main: Reranker | Cascade = one(config.reranker, backend)
    if backend is RerankBackend.ONNX_INT8 and config.int8_rescore:
        # int8 screens every candidate; fp32 re-scores the best few (a search: the first few of its final order).
        main = Cascade(main, one(config.reranker, RerankBackend.ONNX), config.int8_rescore)
    if not config.cascade_reranker:
        return main
    return Cascade(one(config.cascade_reranker, backend), main, config.cascade_keep)


def load_reader(config: LoadSettings) -> Reader:
    """The reader the settings ask for, on its backend (``reader_backend``)."""
    try:
        return Reader.load(config.reader, device=config.device, trust_remote_code=config.trust_remote_code,
                           backend=config.reader_backend, threads=config.threads)
    except ModelNotFoundError as exc:
        raise ModelNotFoundError(f"{str(exc).rstrip('.')}, or pass --no-read (read=False) to search without answers.") from exc


def open_index(index: str | Path, config: LoadSettings) -> tuple[SearchIndex, BiEncoder]:
    """Open ``index`` and its bi-encoder: ``config.bi_encoder`` if set, else the one its manifest names.

    A bi-encoder named by the index (someone else's file) is never downloaded and never runs code.
    """
    search_index = SearchIndex.load(index)
    chosen = bool(config.bi_encoder)
    encoder = BiEncoder.load(
        config.bi_encoder or search_index.manifest.bi_encoder["name"],
        device=config.device,
        trust_remote_code=config.trust_remote_code and chosen,
        allow_download=chosen,
    )
    search_index.check_encoder(encoder)
    return search_index, encoder


class QAPipeline:
    """Retrieve candidates (BM25, dense or hybrid), rerank them with a cross-encoder, flag answerable ones, read answers.

    Build with :meth:`load`; :meth:`search` answers one question,
    :meth:`search_many` several at once (dense encoding and reranking batched).
    """

    def __init__(
        self,
        index: SearchIndex,
        *,
        encoder: BiEncoder | None,
        reranker: Reranker | Cascade | None,
        reader: Reader | None = None,
        config: PipelineConfig | None = None,
        answer_policy: AnswerPolicy | None = None,
        policy: Policy | None = None,
    ):
        self.index = index
        self.encoder = encoder
        self.reranker = reranker
        self.reader = reader
        self.config = config or PipelineConfig()
        self.retriever = Retriever(index, encoder)
        self.answer_policy = answer_policy or AnswerPolicy.load(self.config.load.answer_policy)
        # one stemmer (the index's) and the index's document frequencies for every search's abstention features
        self.lexical = LexicalEvidence.of_index(index.bm25)
        if policy is None and reranker is not None:
            policy = find_policy(self.config.load.policy, reranker.name, self.config.search.fusion.value)
        self.policy: Policy | None = policy  # None: the blend of rerank_weight orders the hits
        # under the blend, Hit.probability is the final score through this (pipeline/rank/calibration.py)
        self.calibration: Calibration | None = (
            find_calibration(self.config.load.calibration, reranker.name) if reranker is not None else None
        )

    @property
    def settings(self) -> SearchSettings:
        """The search settings every search starts from (a search's keyword overrides change its own copy)."""
        return self.config.search

    @classmethod
    def load(
        cls,
        index: str | Path,
        *,
        config: PipelineConfig | None = None,
        **settings: Any,
    ) -> "QAPipeline":
        """Open the index and load its models.

        ``settings`` are fields of :class:`~pipeline.config.LoadSettings` (``reranker=``,
        ``rerank=False``, ``reader=``, ``read=False``, ``rerank_backend=``, ...) or of
        :class:`~pipeline.config.SearchSettings` (the defaults of every search: ``mode=``,
        ``candidates=``, ...), applied over ``config`` or, without one, over the defaults and the
        ``QA_SEARCH_*`` environment variables.
        """
        config = PipelineConfig.from_env(**settings) if config is None else config.replace(**settings)
        load = config.load
        search_index, encoder = open_index(index, load)
        reranker = load_reranker(load) if load.rerank else None
        reader = load_reader(load) if load.read else None
        policy = AnswerPolicy.load(load.answer_policy)
        fitted = dict(policy.fitted_for)
        loaded = {"reader": reader, "reranker": reranker, "bi_encoder": encoder}
        roles = [role for role in loaded if role in fitted or role != "bi_encoder"]  # older policies name no bi-encoder
        if reader is not None and fitted and any(
            _short_name(fitted.get(role)) != _short_name(getattr(loaded[role], "name", None)) for role in roles
        ):
            logger.warning(
                "The answer policy was fitted for %s; with other models its answerability is uncalibrated "
                "(refit it with qa-search fit-answers).", ", ".join(f"{role} {fitted.get(role)}" for role in roles),
            )
        return cls(search_index, encoder=encoder, reranker=reranker, reader=reader, config=config, answer_policy=policy)

    def search(self, question: str, **overrides: Any) -> SearchResult:
        """Answer one question.

        ``overrides`` are :class:`~pipeline.config.SearchSettings` fields (``top_k``, ``candidates``,
        ``mode``, ``threshold``, ``rerank``, ``read``, ...); a load-time setting (``reranker=``, ...)
        is a :class:`ConfigError` that says so.
        """
        return self.search_many([question], **overrides)[0]

    def search_many(self, questions: Sequence[str], **overrides: Any) -> list[SearchResult]:
        """Answer several questions; same ``overrides`` as :meth:`search`."""
        started = time.perf_counter()
        cfg = self.config.search_with(**overrides)
        if isinstance(questions, str):
            raise QueryError("search_many takes a list of questions; use search() for one.")
        texts = [check_question(q, cfg.max_query_chars) for q in questions]
        use_reranker = cfg.rerank and self.reranker is not None
        if cfg.rerank and self.reranker is None and "rerank" in overrides:
            raise ConfigError("Reranking was asked for, but this pipeline was loaded without a reranker.")
        if cfg.read and self.reader is None and "read" in overrides:
            raise ConfigError("Reading answers was asked for, but this pipeline was loaded without a reader.")
        depth = max(cfg.candidates, cfg.top_k) if use_reranker else cfg.top_k
        policy = self.policy_for(cfg) if use_reranker else None
        # reranked searches fuse each list at a fixed depth, so a paragraph's final score does not depend on `candidates`
        retrieved = self.retriever.retrieve_many(texts, depth, cfg, list_depth=LIST_DEPTH if use_reranker else 0)
        if use_reranker:  # early stop: fewer candidates where BM25 and the bi-encoder agree on the best paragraph
            for found in retrieved:
                found.candidates = found.candidates[: rerank_depth(found.candidates, cfg, self._source_of)]
        probabilities: list[list[float] | None] = [None] * len(texts)
        rerank_ms = 0.0
        exact = self._exact_first() if use_reranker else None
        if use_reranker:
            start = time.perf_counter()
            pairs = [(r.question, self.index.passages[c.position].text) for r in retrieved for c in r.candidates]
            # the int8 screen scores every candidate; fp32 then goes to what the final order puts first (below)
            scorer = exact.screen if exact is not None and exact.screen is not None else self.reranker
            flat = score_whole(scorer, pairs).tolist()  # a long passage: its best chunk's probability
            rerank_ms = (time.perf_counter() - start) * 1000.0 / max(len(texts), 1)
            offset = 0
            for i, found in enumerate(retrieved):
                probabilities[i] = flat[offset : offset + len(found.candidates)]
                offset += len(found.candidates)
        exact_ids: list[set[str]] = [set() for _ in texts]  # per question: the windows re-scored in fp32
        if exact is not None:
            start = time.perf_counter()
            for found, probs, done in zip(retrieved, probabilities, exact_ids):
                if probs is not None:
                    self._rescore_first(found.question, found.candidates, probs, cfg, policy, exact, done)
            rerank_ms += (time.perf_counter() - start) * 1000.0 / max(len(texts), 1)
        hits = [self._hits(found.candidates, probs, cfg, policy) for found, probs in zip(retrieved, probabilities)]
        reading = cfg.read and self.reader is not None
        decisions: list[Decision | None] = [None] * len(texts)
        # the reader's span scores move the hits it read, in the blend's order only (a fitted policy orders alone)
        read_weight = cfg.read_weight if use_reranker and policy is None else 0.0
        read_ms, readings = self._read(texts, hits, read_weight, self._paragraphs_read(cfg)) if reading else (None, [])
        if exact is not None and read_ms is not None and read_weight > 0:
            for question, shown, done in zip(texts, hits, exact_ids):
                # the reader's move can bring up a screened hit
                self._rescore_first_read(question, shown, cfg, exact, done)
        if read_ms is not None:  # the answer, on the final order; its evidence (the closest sentence) counts as reading
            start = time.perf_counter()
            self._decide(texts, hits, readings, decisions, cfg.abstain, cfg.abstain_below)
            read_ms += (time.perf_counter() - start) * 1000.0 / max(len(texts), 1)
        answer_policy = self._describe_answer_policy(cfg, read_weight) if read_ms is not None else None
        total_ms = (time.perf_counter() - started) * 1000.0 / max(len(texts), 1)
        results = []
        for found, probs, shown, decision in zip(retrieved, probabilities, hits, decisions):
            calibration = None
            if probs is not None and policy is None:
                calibration = self._calibrate(shown, cfg, reading and read_weight > 0, _abstained(decision))
            timings = dict(found.timings)
            if probs is not None:
                timings["rerank"] = rerank_ms
            if read_ms is not None:
                timings["read"] = read_ms
            timings["total"] = total_ms
            results.append(
                SearchResult(
                    query=found.question,
                    hits=shown,
                    timings={k: round(v, 3) for k, v in timings.items()},
                    settings={**self._settings(cfg, probs is not None, reading, policy),
                              "calibration": calibration,
                              "answer_policy": answer_policy,
                              "reranked_candidates": len(found.candidates) if probs is not None else 0},
                    answer=decision.answer if decision else None,
                    answerability=None if decision is None or decision.answerability is None else round(decision.answerability, 4),
                    no_answer_reason=decision.reason if decision else None,
                    candidate=decision.candidate if decision else None,
                    evidence={k: round(float(v), 6) for k, v in decision.features.items()} if decision else {},
                )
            )
        return results

    def _source_of(self, position: int) -> str:
        return self.index.passages[position].source_id

    def _exact_first(self) -> ExactFirst | None:
        """With the int8 screen (``int8_rescore``): its fp32 reranker and how many first hits must carry fp32 scores.

        The screen alone scores the candidates, and fp32 only what the final order puts
        first. Behind a cascade with a small first model, the cascade scores them as
        it does, and the first hits are re-scored in fp32 on top (repeats come from
        the score cache).
        """
        reranker = self.reranker
        if isinstance(reranker, Cascade) and reranker.first.name == reranker.main.name:
            return ExactFirst(reranker.main, reranker.keep, screen=reranker.first)
        if isinstance(reranker, Cascade) and isinstance(reranker.main, Cascade):  # a small first model, then the screen
            inner = reranker.main
            if inner.first.name == inner.main.name:
                return ExactFirst(inner.main, inner.keep)
        return None

    def _rescore_first(self, question: str, cands: list[Candidate], probs: list[float], cfg: SearchSettings,
                       policy: Policy | None, exact: ExactFirst, done: set[str]) -> None:
        """Re-score in fp32 every window of the first ``exact.places`` paragraphs of the final order, until they all have.

        The int8 probabilities order the candidates first; each round re-scores in
        fp32 the windows of the paragraphs now in the first places and orders again
        (a paragraph can drop, and another come up); it ends when the first places
        hold only fp32-scored paragraphs, usually after one round. ``probs`` is
        updated in place; ``done`` gets the passage ids re-scored.
        """
        source = [self._source_of(c.position) for c in cands]
        ids = [self.index.passages[c.position].id for c in cands]
        while True:
            paragraphs, _, _, order = self._ordered(cands, probs, cfg, policy)
            firsts = {source[paragraphs[p][0]] for p in order[: exact.places]}
            todo = [j for j, s in enumerate(source) if s in firsts and ids[j] not in done]
            if not todo:
                return
            fresh = score_whole(exact.reranker, [(question, self.index.passages[cands[j].position].text) for j in todo])
            for j, value in zip(todo, fresh):
                probs[j] = float(value)
                done.add(ids[j])

    def _rescore_first_read(self, question: str, shown: list[Hit], cfg: SearchSettings, exact: ExactFirst,
                            done: set[str]) -> None:
        """After the reader's move: re-score in fp32 a hit it brought to the first places, until they all have.

        The blend is linear in the probability, so the final score moves by
        ``rerank_weight`` × the change; the reader's evidence and answers stay.
        """
        while True:
            todo = [h for h in shown[: exact.places] if h.id not in done and "final" in h.scores]
            if not todo:
                return
            fresh = score_whole(exact.reranker, [(question, h.text) for h in todo])
            for hit, value in zip(todo, fresh):
                change = float(value) - hit.scores["rerank"]
                hit.scores["rerank"] = hit.probability = float(value)
                hit.scores["final"] = round(hit.scores["final"] + cfg.rerank_weight * change, 6)
                hit.answerable = hit.probability >= cfg.threshold  # _decide and _calibrate may set both again
                done.add(hit.id)
            place_by_final(shown)

    def _describe_answer_policy(self, cfg: SearchSettings, read_weight: float) -> str:
        """What decided the answer, as recorded in ``settings["answer_policy"]``; says so when the reading differs from the fit."""
        policy = self.answer_policy
        if not policy.abstains:
            return f"best answer of the first {policy.paragraphs} paragraph(s) read; no answerability model"
        why = policy.mismatch(read_paragraphs=self._paragraphs_read(cfg), read_weight=read_weight)
        threshold = f"threshold {policy.threshold:.2f}"
        if cfg.abstain_below is not None:
            threshold = f"threshold {cfg.abstain_below:.2f} (abstain_below; the policy's {policy.threshold:.2f})"
        if why is not None:
            logger.info("The answer policy was %s: its answerability is uncalibrated for this search.", why)
            return f"answerability uncalibrated (the answer policy was {why}), {threshold}"
        return f"answerability fitted for this reading, {threshold}"

    def _paragraphs_read(self, cfg: SearchSettings) -> int:
        """How many first hits a search reads: ``read_paragraphs``, and never fewer than the answer policy decides on."""
        return max(cfg.read_paragraphs, self.answer_policy.paragraphs)

    def _read(self, questions: list[str], hits: list[list[Hit]], read_weight: float,
              paragraphs: int) -> tuple[float | None, list[dict[int, Reading]]]:
        """Read each question's first hits, give each its own best span as ``answer``, and move them.

        The reader reads the first ``paragraphs`` hits (:meth:`_paragraphs_read`);
        with ``read_weight`` > 0 their span scores move them in ``hits``
        (:mod:`pipeline.rank.reading`). All questions' pairs go to the reader in
        one batch. Returns milliseconds per question (``None``
        when nothing was read: no hits) and, per question, each read hit's
        reading keyed by ``id(hit)``.
        """
        policy = self.answer_policy
        chosen = [shown[:paragraphs] for shown in hits]
        pairs = [(q, h.text) for q, read in zip(questions, chosen) for h in read]
        if not pairs:
            return None, []
        start = time.perf_counter()
        readings = self.reader.spans(pairs)
        offset, read_of = 0, []
        for shown, read in zip(hits, chosen):
            own = readings[offset : offset + len(read)]
            offset += len(read)
            for hit, reading in zip(read, own):  # each read hit's own best span (moves it; shown on it)
                hit.answer = aggregate([hit], [reading], policy)[1][0]
            if read_weight > 0:
                reorder_by_reading(shown, read_weight)
            read_of.append({id(hit): reading for hit, reading in zip(read, own)})
        return (time.perf_counter() - start) * 1000.0 / max(len(questions), 1), read_of

    def _decide(self, questions: list[str], hits: list[list[Hit]], read_of: list[dict[int, Reading]],
                decisions: list[Decision | None], abstain: bool, threshold: float | None = None) -> None:
        """Each question's answer (or abstention), decided on the read hits in their final order; fills ``decisions``."""
        policy = self.answer_policy
        orders = [read_first(shown, lambda hit, seen=reading_of: id(hit) in seen)
                  for shown, reading_of in zip(hits, read_of)]
        similarity = self._sentence_similarity(questions, orders, read_of, policy)
        for i, (question, shown, reading_of, ordered) in enumerate(zip(questions, hits, read_of, orders)):
            decided = [reading_of[id(hit)] for hit in ordered[: policy.paragraphs] if id(hit) in reading_of]
            decision = decide(ordered, decided, policy, abstain=abstain, question=question, lexical=self.lexical,
                              threshold=threshold, similarity=similarity)
            for hit, answer in zip(ordered, decision.hit_answers):
                hit.answer = answer
            if decision.answer is None and decision.candidate is not None:
                for hit in shown:  # abstained: no paragraph here answers this
                    if hit.answerable is not None:
                        hit.answerable = False
            decisions[i] = decision

    def _sentence_similarity(self, questions: list[str], orders: list[list[Hit]], read_of: list[dict[int, Reading]],
                             policy: AnswerPolicy) -> Similarity | None:
        """The bi-encoder's similarities for ``sentence_similarity``, or None when the policy does not read it.

        In one process, every question and every sentence of the paragraphs the answers can come from (the first
        ``policy.paragraphs`` read hits) are encoded in one call, not one call a question; under Ray the retrieval
        deployment holds the bi-encoder, and its ``similarities`` answers each question.
        """
        if "sentence_similarity" not in policy.features or self.encoder is None:
            return None
        if not hasattr(self.encoder, "encode"):
            return getattr(self.encoder, "similarities", None)
        similarity = SentenceSimilarity(lambda texts: self.encoder.encode(texts, batch_size=64))
        similarity.warm([*questions, *(sentence for ordered, reading_of in zip(orders, read_of)
                                       for hit in ordered[: policy.paragraphs] if id(hit) in reading_of
                                       for sentence in compared_sentences(hit.text))])
        return similarity

    def _paragraphs(self, cands: list[Candidate], probs: list[float] | None) -> list[tuple[int, dict, dict]]:
        """One entry per source paragraph, in retrieval order: (its best window, best score and rank per stage).

        The best window is the one the reranker scores highest (max-pooling), else
        the best-ranked one; the paragraph keeps its best score and rank in each list.
        """
        groups: dict[str, list[int]] = {}
        for i, cand in enumerate(cands):
            groups.setdefault(self.index.passages[cand.position].source_id, []).append(i)
        out = []
        for members in groups.values():
            best = max(members, key=lambda i: (probs[i], -i)) if probs is not None else members[0]
            scores, ranks = dict(cands[best].scores), dict(cands[best].ranks)
            for i in members:
                for stage, value in cands[i].scores.items():
                    scores[stage] = max(scores.get(stage, value), value)
                for stage, rank in cands[i].ranks.items():
                    ranks[stage] = min(ranks.get(stage, rank), rank)
            out.append((best, scores, ranks))
        return out

    def policy_for(self, cfg: SearchSettings) -> Policy | None:
        """The fitted ranking policy of a search with ``cfg``, or ``None`` for the blend of ``rerank_weight``.

        A policy fitted on hybrid candidates of one fusion weighs their fused
        score on that fusion's scale; a BM25-only or dense-only search, or
        another fusion, is ordered by the reranker's probability alone.
        """
        policy = self.policy
        if policy is None or policy.is_reranker_only or all(name.startswith("rerank_") for name in policy.coef):
            return policy
        if cfg.mode is RetrievalMode.HYBRID and policy.fusion in (None, cfg.fusion.value):
            return policy
        return Policy.reranker_only(policy.reranker)

    def _ordered(self, cands: list[Candidate], probs: list[float], cfg: SearchSettings, policy: Policy | None,
                 ) -> tuple[list[tuple[int, dict, dict]], list[float], list[float], list[int]]:
        """One question's paragraphs, their reranker probability, final score, and the final order (indices, best first)."""
        paragraphs = self._paragraphs(cands, probs)
        raw = [probs[best] for best, _, _ in paragraphs]
        if policy is not None:
            final = [policy.probability(raw[p], scores, ranks) for p, (_, scores, ranks) in enumerate(paragraphs)]
        else:
            final = blended_scores(raw, [scores["fused"] for _, scores, _ in paragraphs], cfg.rerank_weight,
                                   similarities=[scores.get("dense") for _, scores, _ in paragraphs],
                                   similarity_weight=cfg.similarity_weight)
        return paragraphs, raw, final, sorted(range(len(paragraphs)), key=lambda p: (-final[p], p))

    def _hits(self, cands: list[Candidate], probs: list[float] | None, cfg: SearchSettings,
              policy: Policy | None = None) -> list[Hit]:
        """The top ``top_k`` paragraphs, best first: one hit per source paragraph, showing its best window.

        After reranking, hits are ordered by ``scores["final"]`` (place: ``ranks["final"]``):
        the blend of ``rerank_weight`` by default, or a fitted ranking policy's
        calibrated probability, which is then also ``probability`` and flags the
        hits; ``scores``/``ranks["rerank"]`` keep the reranker's own probability and
        the paragraph's rank by it alone. With the int8 screen, the first paragraphs
        were re-scored in fp32 before (:meth:`_rescore_first`).
        """
        if probs is not None:
            paragraphs, raw, final, order = self._ordered(cands, probs, cfg, policy)
            by_probability = {p: rank for rank, p in enumerate(sorted(order, key=lambda p: (-raw[p], p)), start=1)}
        else:
            paragraphs = self._paragraphs(cands, probs)
            order = list(range(len(paragraphs)))
        hits: list[Hit] = []
        for place, p in enumerate(order[: cfg.top_k], start=1):
            best, scores, ranks = paragraphs[p]
            passage = self.index.passages[cands[best].position]
            probability = None
            if probs is not None:
                # with a policy its calibrated probability; with the blend, the reranker's until _calibrate
                probability = max(0.0, float(final[p])) if policy is not None else float(raw[p])
                scores["rerank"], ranks["rerank"] = float(raw[p]), by_probability[p]
                scores["final"], ranks["final"] = round(float(final[p]), 6), place
            hits.append(
                Hit(
                    id=passage.id,
                    title=passage.title,
                    text=passage.text,
                    source_id=passage.source_id,
                    answerable=None if probability is None else probability >= cfg.threshold,
                    probability=probability,
                    scores=scores,
                    ranks=ranks,
                    metadata=dict(passage.metadata),
                )
            )
        return hits

    def _calibrate(self, shown: list[Hit], cfg: SearchSettings, moved: bool, abstained: bool) -> str:
        """Set the blend's hits' ``probability`` and ``answerable`` from the calibration, in their final order.

        ``moved``: the reader's move changed the final scores. Returns what made
        ``Hit.probability``, as recorded in ``settings["calibration"]``: the
        calibration, or why the reranker's own probability was kept.
        """
        calibration = self.calibration
        if calibration is None or not shown or any("final" not in h.scores for h in shown):
            return describe(None)
        if isinstance(calibration, FinalCalibration):
            why = calibration.mismatch(rerank_weight=cfg.rerank_weight, read_weight=cfg.read_weight if moved else 0.0,
                                       reader=self.reader.name if moved and self.reader else None,
                                       read_paragraphs=self._paragraphs_read(cfg),
                                       similarity_weight=cfg.similarity_weight,
                                       similarity=all("dense" in h.scores for h in shown))
            if why is not None:
                return f"none (the reranker's probability: the calibration was {why})"
            probabilities = calibration.probabilities([h.scores["final"] for h in shown], read=moved)
        else:
            probabilities = [calibrated(calibration, h.scores["rerank"]) for h in shown]
        for hit, probability in zip(shown, probabilities):
            hit.probability = float(probability)
            hit.answerable = not abstained and probability >= cfg.threshold
        return describe(calibration)

    def _settings(self, cfg: SearchSettings, reranked: bool, read: bool, policy: Policy | None) -> dict[str, Any]:
        return {
            "mode": cfg.mode.value,
            "fusion": cfg.fusion.value if cfg.mode is RetrievalMode.HYBRID else None,
            "candidates": cfg.candidates,
            "agreed_candidates": cfg.agreed_candidates,
            "read_weight": cfg.read_weight if read and reranked and policy is None else 0.0,
            "top_k": cfg.top_k,
            "threshold": cfg.threshold,
            "bi_encoder": self.encoder.name if self.encoder else None,
            "reranker": self.reranker.name if reranked and self.reranker else None,
            "reader": self.reader.name if read and self.reader else None,
            "rerank_backend": self.reranker.describe() if reranked and self.reranker else None,
            "reader_backend": self.reader.describe() if read and self.reader else None,
            "policy": (policy.describe() if policy else describe_blend(cfg.rerank_weight, cfg.similarity_weight))
            if reranked and self.reranker else None,
            "index": str(self.index.path),
        }
