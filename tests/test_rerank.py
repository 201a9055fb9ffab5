import numpy as np
import pytest
import torch

from pipeline.errors import ConfigError
from pipeline.rerank.reranker import (
    Reranker,
    model_token_limit,
    positive_label,
    to_probabilities,
)


def _raw_logits(model_dir, pairs):
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(model_dir))
    model = AutoModelForSequenceClassification.from_pretrained(str(model_dir)).eval()
    batch = tok([q for q, _ in pairs], [p for _, p in pairs], padding=True, truncation=True, return_tensors="pt")
    with torch.inference_mode():
        return model(**batch).logits.numpy()


PAIRS = [("How many people live in Berlin?", "Berlin has 3.7 million people."),
         ("How many people live in Berlin?", "Rome was founded in 753 BC."),
         ("Where is the Nile?", "The Nile flows north through Egypt.")]


def test_one_logit_model_gives_sigmoid(tiny_cross_encoder):
    reranker = Reranker.load(str(tiny_cross_encoder), device="cpu")
    probs = reranker.score_pairs(PAIRS)
    expected = 1 / (1 + np.exp(-_raw_logits(tiny_cross_encoder, PAIRS)[:, 0]))
    assert probs == pytest.approx(expected, abs=1e-5)
    assert ((probs > 0) & (probs < 1)).all()
    assert reranker.score_pairs([]).shape == (0,)


def test_nli_model_gives_entailment_probability(tiny_nli_cross_encoder):
    reranker = Reranker.load(str(tiny_nli_cross_encoder), device="cpu")
    assert reranker.positive == 1  # contradiction, entailment, neutral
    logits = _raw_logits(tiny_nli_cross_encoder, PAIRS)
    softmax = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    assert reranker.score_pairs(PAIRS) == pytest.approx(softmax[:, 1], abs=1e-5)


def test_label_detection_variants():
    assert positive_label({0: "LABEL_0"}, 1) is None
    assert positive_label({0: "entailment", 1: "neutral", 2: "contradiction"}, 3) == 0
    assert positive_label({0: "not_entailment", 1: "entailment"}, 2) == 1
    assert positive_label({0: "ENTAILMENT", 1: "NOT_ENTAILMENT"}, 2) == 0
    assert positive_label({0: "LABEL_0", 1: "LABEL_1"}, 2) == 1
    with pytest.raises(ConfigError, match="Cannot tell which of the labels"):
        positive_label({0: "a", 1: "b", 2: "c"}, 3)


def test_to_probabilities():
    assert to_probabilities(np.array([0.0, 100.0]), None) == pytest.approx([0.5, 1.0])
    probs = to_probabilities(np.array([[0.0, np.log(3.0), 0.0]]), 1)
    assert probs == pytest.approx([0.6])


def test_long_text_is_truncated_not_crashing(tiny_electra_cross_encoder):
    reranker = Reranker.load(str(tiny_electra_cross_encoder), device="cpu")
    assert reranker.max_length == 512
    long_text = "word " * 5000
    probs = reranker.score("question?", [long_text, "short"])
    assert probs.shape == (2,) and np.isfinite(probs).all()
    short = Reranker.load(str(tiny_electra_cross_encoder), device="cpu", max_length=64)
    assert short.max_length == 64
    assert short.score("q", [long_text]).shape == (1,)


def test_token_limit_falls_back_to_position_embeddings():
    class Tok:
        model_max_length = int(1e30)

    class Cfg:
        max_position_embeddings = 514
        model_type = "roberta"

    assert model_token_limit(Tok(), Cfg()) == 512
    Tok.model_max_length = 256
    assert model_token_limit(Tok(), Cfg()) == 256
