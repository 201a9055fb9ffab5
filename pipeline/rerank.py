"""The reranker: a cross-encoder's probability that a passage answers a question.

Any sentence-transformers cross-encoder plugs in by name or path. Its raw
outputs become a probability in 0..1:

* one logit (QNLI, MS MARCO, STSb, Quora, BGE, jina, mxbai rerankers): sigmoid;
* several labels (NLI: contradiction / entailment / neutral, in whatever
  order the model's ``id2label`` gives): softmax, then the entailment label's
  probability; two unnamed labels take label 1 as "answers".

Pairs longer than the model's token limit are truncated by its tokenizer
(longest side first), so long text never crashes a model.

Example::

    >>> from pipeline.rerank import Reranker
    >>> r = Reranker.load("../shared/models/minilm-l6-qnli-squad-tune")            # doctest: +SKIP
    >>> r.score("How many people live in Berlin?", ["Berlin has 3.5 million people."])  # doctest: +SKIP
    array([0.78], dtype=float32)
"""

from __future__ import annotations

import logging
from typing import Mapping, Sequence

import numpy as np

from .encoder import pick_device
from .errors import ConfigError
from .models import canonical_name, resolve_model

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


def model_token_limit(tokenizer, config) -> int:
    """The longest input the model takes: the tokenizer's limit when sane, else its position embeddings."""
    positions = getattr(config, "max_position_embeddings", None) or 512
    if getattr(config, "model_type", "") in ("roberta", "xlm-roberta", "camembert"):
        positions -= 2  # RoBERTa offsets its positions by the padding index
    limit = getattr(tokenizer, "model_max_length", None)
    if not limit or limit > 100_000:
        return int(positions)
    return int(min(limit, positions))


class Reranker:
    """Scores (question, passage) pairs with a cross-encoder; :meth:`score` gives probabilities."""

    def __init__(self, model, name: str, *, batch_size: int = 32):
        self.model = model
        self.name = canonical_name(name)
        self.batch_size = batch_size
        self.positive = positive_label(model.config.id2label, model.num_labels)

    @classmethod
    def load(
        cls,
        name: str,
        *,
        device: str | None = None,
        max_length: int | None = None,
        batch_size: int = 32,
        trust_remote_code: bool = False,
    ) -> "Reranker":
        from sentence_transformers import CrossEncoder

        resolved = resolve_model(name, role="reranker")
        model = CrossEncoder(
            resolved.path, device=pick_device(device), trust_remote_code=trust_remote_code, local_files_only=True
        )
        limit = model_token_limit(model.tokenizer, model.config)
        model.max_seq_length = min(max_length, limit) if max_length else min(model.max_seq_length or limit, limit)
        logger.info("Reranker %s: %d label(s), max %d tokens", name, model.num_labels, model.max_seq_length)
        return cls(model, name, batch_size=batch_size)

    @property
    def max_length(self) -> int:
        return int(self.model.max_seq_length)

    def logits(self, pairs: Sequence[tuple[str, str]]) -> np.ndarray:
        import torch

        if not pairs:
            return np.zeros((0,), dtype=np.float32)
        out = self.model.predict(
            [(q, p) for q, p in pairs],
            batch_size=self.batch_size,
            activation_fn=torch.nn.Identity(),
            show_progress_bar=False,
            convert_to_numpy=True,
        )
        return np.asarray(out, dtype=np.float32)

    def score_pairs(self, pairs: Sequence[tuple[str, str]]) -> np.ndarray:
        """Probability (0..1) that each passage answers its question."""
        if not pairs:
            return np.zeros((0,), dtype=np.float32)
        return to_probabilities(self.logits(pairs), self.positive)

    def score(self, query: str, texts: Sequence[str]) -> np.ndarray:
        return self.score_pairs([(query, t) for t in texts])
