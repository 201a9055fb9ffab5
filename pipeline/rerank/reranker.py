"""The reranker: a cross-encoder's probability that a passage answers a question.

Any sentence-transformers cross-encoder plugs in by name or path. Its raw
outputs become a probability in 0..1:

* one logit (QNLI, MS MARCO, STSb, Quora, BGE, jina, mxbai rerankers): sigmoid;
* several labels (NLI: contradiction / entailment / neutral, in whatever
  order the model's ``id2label`` gives): softmax, then the entailment label's
  probability; two unnamed labels take label 1 as "answers".

Pairs longer than the model's token limit are truncated by its tokenizer
(longest side first), so long text never crashes a model; callers that must
read long passages whole split them first (:mod:`pipeline.rerank.chunking`).

Speed (see docs/fast-rerank.md): the model runs on one of several backends
(:class:`~pipeline.config.RerankBackend`: PyTorch fp32, ONNX Runtime fp32,
ONNX Runtime int8; ``auto`` picks int8 on a CPU), pairs are sorted by token
length and batched so that little padding is computed, and an LRU
:class:`~pipeline.rerank.score_cache.ScoreCache` remembers the probabilities of
pairs already scored.

Example::

    >>> from pipeline.rerank.reranker import Reranker
    >>> r = Reranker.load("../shared/models/minilm-l6-qnli-squad-tune")            # doctest: +SKIP
    >>> r.score("How many people live in Berlin?", ["Berlin has 3.5 million people."])  # doctest: +SKIP
    array([0.78], dtype=float32)
"""

from __future__ import annotations

import dataclasses
import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Hashable, Mapping, Sequence

import numpy as np

from pipeline.config import RerankBackend
from pipeline.errors import ConfigError
from pipeline.models.device import default_threads, pick_device
from pipeline.models.resolve import canonical_name, inside, resolve_model
from pipeline.models.tokens import model_token_limit
from pipeline.rerank.backends import Engine, OnnxEngine, TorchEngine, choose_backend
from pipeline.rerank.score_cache import ScoreCache

logger = logging.getLogger(__name__)

ENTAILMENT_NAMES = ("entailment", "entail", "entailed")
NOT_ENTAILMENT_MARKERS = ("not", "non", "contradict", "neutral")


def positive_label(id2label: Mapping[int, str], num_labels: int) -> int | None:
    """Index of the label meaning "the passage answers / entails"; ``None`` for one-logit models."""
    if num_labels == 1:
        return None
    names = {int(i): str(n).lower() for i, n in id2label.items()}
    for index, name in names.items():
        if any(e in name for e in ENTAILMENT_NAMES) and not any(m in name for m in NOT_ENTAILMENT_MARKERS):
            return index
    if num_labels == 2:
        return 1
    raise ConfigError(
        f"Cannot tell which of the labels {sorted(names.values())} means 'answers the question'; "
        "use a one-logit cross-encoder or an NLI model with an 'entailment' label."
    )


def to_probabilities(logits: np.ndarray, positive: int | None) -> np.ndarray:
    """Sigmoid of one logit, or the softmax probability of label ``positive``."""
    logits = np.asarray(logits, dtype=np.float64)
    if positive is None:
        return (1.0 / (1.0 + np.exp(-logits.reshape(-1)))).astype(np.float32)
    logits = logits.reshape(len(logits), -1)
    shifted = logits - logits.max(axis=1, keepdims=True)
    exp = np.exp(shifted)
    return (exp[:, positive] / exp.sum(axis=1)).astype(np.float32)


def transformer_dir(model_path: str | Path) -> Path:
    """The folder holding the Hugging Face model of a sentence-transformers cross-encoder (often the root)."""
    root = Path(model_path)
    try:
        modules = json.loads((root / "modules.json").read_text(encoding="utf-8"))
        sub = next((m.get("path", "") for m in modules if str(m.get("type", "")).endswith("Transformer")), "")
    except (OSError, ValueError, AttributeError, TypeError):
        sub = ""
    # Never a folder outside the model's own (a crafted modules.json with "../elsewhere").
    return root / sub if sub and inside(root, str(sub)) and (root / sub / "config.json").is_file() else root


def configured_max_length(model_path: str | Path) -> int | None:
    """``max_seq_length`` saved in the cross-encoder's ``sentence_bert_config.json``, if any."""
    try:
        value = json.loads((Path(model_path) / "sentence_bert_config.json").read_text(encoding="utf-8")).get("max_seq_length")
    except (OSError, ValueError, AttributeError):
        return None
    return int(value) if value else None


def pad_batch(rows: Sequence[Mapping[str, list[int]]], names: Sequence[str], pad_id: int, left: bool = False) -> dict[str, np.ndarray]:
    """Pad token rows to the batch's longest (not the model's limit): ids with ``pad_id``, masks and types with 0."""
    width = max(len(r["input_ids"]) for r in rows)
    out = {}
    for name in names:
        fill = pad_id if name == "input_ids" else 0
        array = np.full((len(rows), width), fill, dtype=np.int64)
        for i, row in enumerate(rows):
            values = row[name]
            if left:
                array[i, width - len(values):] = values
            else:
                array[i, : len(values)] = values
        out[name] = array
    return out


#: A batch ends where a pair is shorter than this fraction of the batch's longest pair, so padding stays
#: under ~10% of the computed tokens (a question's 20 SQuAD candidates in one batch pad to 1.8x their tokens).
BATCH_LENGTH_RATIO = 0.9


def length_batches(order: Sequence[int], lengths: Sequence[int], batch_size: int,
                   ratio: float = BATCH_LENGTH_RATIO) -> list[list[int]]:
    """Split ``order`` (indices sorted longest first) into batches of at most ``batch_size`` similar lengths."""
    batches: list[list[int]] = []
    for i in order:
        if batches and len(batches[-1]) < batch_size and lengths[i] >= ratio * lengths[batches[-1][0]]:
            batches[-1].append(i)
        else:
            batches.append([i])
    return batches


@dataclass(frozen=True)
class RerankModel:
    """What :meth:`Reranker.load` loads: the engine, its tokenizer and config, the token limit, the weights' path."""

    engine: Engine
    tokenizer: Any
    config: Any
    max_length: int
    identity: str


class Reranker:
    """Scores (question, passage) pairs with a cross-encoder; :meth:`score` gives probabilities.

    Build with :meth:`load`. ``backend`` is the engine actually used (``auto``
    resolved), ``cache`` the LRU of probabilities already computed.
    """

    def __init__(self, model: "RerankModel", name: str, *, batch_size: int = 32, cache_size: int = 0):
        self.model = model
        self.name = canonical_name(name)
        self.batch_size = batch_size
        self.positive = positive_label(model.config.id2label, model.config.num_labels)
        self.cache = ScoreCache(cache_size)

    # The loaded parts, by name (``engine`` is swappable, e.g. for a counting wrapper in tests).
    @property
    def engine(self) -> Engine:
        return self.model.engine

    @engine.setter
    def engine(self, value: Engine) -> None:
        self.model = dataclasses.replace(self.model, engine=value)

    @property
    def tokenizer(self):
        return self.model.tokenizer

    @property
    def config(self):
        return self.model.config

    @property
    def identity(self) -> str:
        return f"{self.model.identity}|{self.backend.value}|{self.max_length}"

    @classmethod
    def load(
        cls,
        name: str,
        *,
        device: str | None = None,
        max_length: int | None = None,
        batch_size: int = 32,
        trust_remote_code: bool = False,
        backend: RerankBackend | str = RerankBackend.TORCH,
        threads: int | None = None,
        cache_size: int = 10_000,
        cache_dir: str | Path | None = None,
        progress: bool = True,
    ) -> "Reranker":
        """Load a cross-encoder by name or path on ``backend`` (exported to ONNX on first use, then cached on disk).

        The default here is the exact PyTorch fp32 path; the pipeline's default (``PipelineConfig.rerank_backend``
        ``auto``) is the fast one, see :func:`pipeline.qa.load_reranker`.
        """
        from transformers import AutoConfig, AutoTokenizer

        resolved = resolve_model(name, role="reranker")
        model_dir = transformer_dir(resolved.path)
        device = pick_device(device)
        chosen = choose_backend(backend, device)
        threads = threads or default_threads()
        tokenizer = AutoTokenizer.from_pretrained(str(model_dir), trust_remote_code=trust_remote_code)
        config = AutoConfig.from_pretrained(str(model_dir), trust_remote_code=trust_remote_code)
        limit = model_token_limit(tokenizer, config)
        length = min(max_length or configured_max_length(resolved.path) or limit, limit)
        if chosen is RerankBackend.TORCH:
            engine: Engine = TorchEngine.load(str(model_dir), device=device, threads=threads,
                                              trust_remote_code=trust_remote_code)
        else:
            engine = OnnxEngine.load(str(model_dir), chosen, device=device, threads=threads,
                                     trust_remote_code=trust_remote_code, cache_dir=cache_dir, progress=progress)
        logger.info("Reranker %s: %d label(s), max %d tokens, backend %s, %d threads",
                    name, config.num_labels, length, chosen.value, threads)
        loaded = RerankModel(engine, tokenizer, config, length, str(Path(resolved.path).resolve()))
        return cls(loaded, name, batch_size=batch_size, cache_size=cache_size)

    @property
    def max_length(self) -> int:
        return self.model.max_length

    @property
    def backend(self) -> RerankBackend:
        return self.engine.backend

    def describe(self) -> str:
        """The backend, as recorded in search results."""
        return self.backend.value

    def logits(self, pairs: Sequence[tuple[str, str]], groups: Sequence[Hashable] | None = None) -> np.ndarray:
        """Raw model outputs, one row per pair, computed in length-sorted batches.

        ``groups`` labels each pair with its request: pairs of different requests never share a model batch.
        """
        if not pairs:
            return np.zeros((0,), dtype=np.float32)
        encoded = self.tokenizer(
            [q for q, _ in pairs], [p for _, p in pairs],
            truncation="longest_first", max_length=self.max_length, padding=False,
        )
        names = [n for n in self.engine.input_names if n in encoded]
        rows = [{n: encoded[n][i] for n in names} for i in range(len(pairs))]
        # One request's pairs per batch (one question's, when no requests are named): int8 quantises
        # activations with one scale per batch, so a pair's score must not depend on which other searches
        # share the call (a server batching requests, two clients asking the same question). A request's
        # pairs share batches whatever their questions (a /v1/score call with 1,000 different text_1 is a
        # few batches, not 1,000). Longest first, so neighbours have similar lengths.
        by_question: dict[Hashable, list[int]] = {}
        for i, (question, _) in enumerate(pairs):
            by_question.setdefault(question if groups is None else ("group", groups[i]), []).append(i)
        lengths = [len(r["input_ids"]) for r in rows]
        pad_id = self.tokenizer.pad_token_id or 0
        left = getattr(self.tokenizer, "padding_side", "right") == "left"
        out: np.ndarray | None = None
        batches = [b for g in by_question.values() for b in length_batches(sorted(g, key=lambda i: -lengths[i]), lengths, self.batch_size)]
        for chunk in batches:
            logits = self.engine(pad_batch([rows[i] for i in chunk], names, pad_id, left))
            if out is None:
                out = np.zeros((len(pairs),) + logits.shape[1:], dtype=np.float32)
            out[chunk] = logits
        assert out is not None
        return out

    def score_pairs(self, pairs: Sequence[tuple[str, str]], groups: Sequence[Hashable] | None = None) -> np.ndarray:
        """Probability (0..1) that each passage answers its question (cached pairs are not recomputed).

        ``groups`` (one label per pair, e.g. the request it came from) keeps requests that share this call
        apart: a pair is batched, and deduplicated, only with pairs of its own group.
        """
        if not pairs:
            return np.zeros((0,), dtype=np.float32)
        if groups is not None and len(groups) != len(pairs):
            raise ValueError(f"{len(groups)} group labels for {len(pairs)} pairs")
        if not self.cache.capacity:
            return to_probabilities(self.logits(pairs, groups), self.positive)
        keys = [ScoreCache.key(self.identity, q, p) for q, p in pairs]
        out = np.zeros(len(pairs), dtype=np.float32)
        todo: dict[tuple[Hashable, tuple[str, str, str]], list[int]] = {}
        for i, key in enumerate(keys):
            value = self.cache.get(key)
            if value is None:
                todo.setdefault((None if groups is None else groups[i], key), []).append(i)
            else:
                out[i] = value
        if todo:
            firsts = [positions[0] for positions in todo.values()]
            fresh = to_probabilities(
                self.logits([pairs[i] for i in firsts], None if groups is None else [groups[i] for i in firsts]),
                self.positive,
            )
            for ((_, key), positions), value in zip(todo.items(), fresh):
                out[positions] = value
                self.cache.put(key, float(value))
        return out

    def score(self, query: str, texts: Sequence[str]) -> np.ndarray:
        return self.score_pairs([(query, t) for t in texts])
