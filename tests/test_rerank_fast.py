"""Fast reranking (issue 5): backends agree with PyTorch fp32, the score cache skips the model,
the cascade keeps the right candidates, exported models are cached on disk and rebuilt when damaged."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest

import pipeline.rerank.onnx_export as onnx_export
from pipeline.config import LoadSettings, PipelineConfig, RerankBackend
from pipeline.errors import ConfigError
from pipeline.rerank.backends import choose_backend
from pipeline.rerank.cascade import Cascade
from pipeline.rerank.reranker import (
    BATCH_LENGTH_RATIO,
    Reranker,
    length_batches,
    to_probabilities,
)

QUESTION = "How many people live in Berlin?"
PASSAGES = [
    "Berlin has 3.5 million people.",
    "Berlin is well known for its museums and its long history as a capital city of Europe.",
    "The Nile is a major river flowing north through Egypt.",
    "Paris is the capital and largest city of France, with about two million inhabitants in the city proper.",
    "Mount Everest is the highest mountain above sea level.",
    "Rome " * 300,  # longer than any limit: truncated, never a crash
]
ONNX_BACKENDS = ["onnx", "onnx-int8"]


@pytest.fixture(scope="module")
def onnx_cache(tmp_path_factory):
    return tmp_path_factory.mktemp("onnx-cache")


def load(path, backend, cache_dir, **kw) -> Reranker:
    return Reranker.load(str(path), device="cpu", backend=backend, cache_dir=cache_dir, progress=False, **kw)


class CountingEngine:
    """The real engine, counting the batches it is given."""

    def __init__(self, engine):
        self.engine, self.calls, self.rows = engine, 0, 0
        self.backend, self.input_names = engine.backend, engine.input_names

    def __call__(self, features):
        self.calls += 1
        self.rows += len(features["input_ids"])
        return self.engine(features)


@pytest.mark.parametrize("fixture", ["tiny_cross_encoder", "tiny_electra_cross_encoder"])
def test_torch_backend_matches_sentence_transformers_cross_encoder(fixture, request):
    from sentence_transformers import CrossEncoder

    path = request.getfixturevalue(fixture)
    ce = CrossEncoder(str(path), device="cpu")
    ours = Reranker.load(str(path), device="cpu", backend="torch")
    assert ours.backend is RerankBackend.TORCH
    assert ours.max_length == ce.max_seq_length
    expected = ce.predict([(QUESTION, p) for p in PASSAGES], convert_to_numpy=True)
    np.testing.assert_allclose(ours.score(QUESTION, PASSAGES), expected, atol=1e-5)


def test_standin_max_length_matches_cross_encoder(standin_reranker):
    from sentence_transformers import CrossEncoder

    assert Reranker.load(str(standin_reranker), device="cpu", backend="torch").max_length == CrossEncoder(
        str(standin_reranker), device="cpu"
    ).max_seq_length


#: The spread fixture: random weights of std 0.2 (not 0.02), so that different pairs get different
#: representations, then a head rescaled to logits of std 1.5 on the test pairs. With the default init every
#: probability sits within ~0.01 of 0.5 (any tolerance passes anything), and rescaling such a head only
#: amplifies int8 noise.
SPREAD_INIT = 0.2
SPREAD_LOGIT_STD = 1.5


def spread_head_copy(source: Path, out: Path) -> Path:
    """A copy of a tiny random one-logit cross-encoder whose last linear layer is scaled and shifted to
    logits of mean 0 and std SPREAD_LOGIT_STD on (QUESTION, PASSAGES): probabilities spread over 0..1."""
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(source))
    model = AutoModelForSequenceClassification.from_pretrained(str(source)).eval()
    head = [m for m in model.modules() if isinstance(m, torch.nn.Linear) and m.out_features == 1][-1]
    logits = reference_probabilities(source, model=model, tokenizer=tok, raw=True)
    scale = SPREAD_LOGIT_STD / float(np.std(logits))
    with torch.no_grad():
        head.weight.mul_(scale)
        head.bias.copy_((head.bias - float(np.mean(logits))) * scale)
    model.save_pretrained(out)
    tok.save_pretrained(out)
    return out


def reference_probabilities(path: Path, *, model=None, tokenizer=None, raw: bool = False) -> np.ndarray:
    """P(answers) of every (QUESTION, passage) straight from transformers: one padded batch, sigmoid of the
    logit; nothing of the project's reranker (tokenising, batching, engines, to_probabilities) is used."""
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    tokenizer = tokenizer or AutoTokenizer.from_pretrained(str(path))
    model = model or AutoModelForSequenceClassification.from_pretrained(str(path)).eval()
    batch = tokenizer([QUESTION] * len(PASSAGES), PASSAGES, truncation="longest_first", max_length=512,
                      padding=True, return_tensors="pt")
    with torch.no_grad():
        logits = model(**batch).logits[:, 0]
    return (logits if raw else torch.sigmoid(logits)).numpy().astype(np.float64)


@pytest.fixture(scope="module", params=["bert", "electra"])
def spread_cross_encoder(request, tmp_path_factory, minilm_path):
    from conftest import make_tiny_cross_encoder

    root = tmp_path_factory.mktemp(f"spread-{request.param}")
    source = make_tiny_cross_encoder(root / "random", minilm_path, arch=request.param, initializer_range=SPREAD_INIT)
    path = spread_head_copy(source, root / "spread")
    reference = reference_probabilities(path)
    assert np.ptp(reference) > 0.6 and reference.min() < 0.35 and reference.max() > 0.9, reference
    return path, reference


#: int8 against fp32: each probability within INT8_ATOL (the spread is 0.7-0.85; int8 moves these by up to
#: 0.07, and the real MiniLM stand-in's by up to ~0.1), and pairs more than CLEARLY_APART apart keep their order.
INT8_ATOL = 0.1
CLEARLY_APART = 0.15


@pytest.mark.parametrize("backend", ["torch", *ONNX_BACKENDS])
def test_backends_give_the_transformers_probabilities(backend, spread_cross_encoder, onnx_cache):
    path, reference = spread_cross_encoder
    model = load(path, backend, onnx_cache)
    assert model.backend.value == backend
    got = model.score(QUESTION, PASSAGES).astype(np.float64)
    if backend != "onnx-int8":  # fp32 everywhere: the same numbers (ONNX Runtime's fused kernels: ~1e-4)
        np.testing.assert_allclose(got, reference, atol=5e-4)
        return
    np.testing.assert_allclose(got, reference, atol=INT8_ATOL)
    for i in range(len(PASSAGES)):
        for j in range(len(PASSAGES)):
            if reference[i] - reference[j] > CLEARLY_APART:
                assert got[i] > got[j], (i, j, reference, got)


def test_int8_keeps_the_standin_ranking(standin_reranker, onnx_cache):
    reference = load(standin_reranker, "torch", onnx_cache).score(QUESTION, PASSAGES)
    got = load(standin_reranker, "onnx-int8", onnx_cache).score(QUESTION, PASSAGES)
    assert int(np.argmax(got)) == int(np.argmax(reference)) == 0
    np.testing.assert_allclose(got, reference, atol=0.1)  # int8 moves MiniLM probabilities by up to ~0.1 here


def test_int8_scores_a_pair_the_same_whatever_is_scored_with_it(standin_reranker, onnx_cache):
    """Dynamic int8 scales activations over the whole batch: each pair runs alone, so its batch cannot move it."""
    model = load(standin_reranker, "onnx-int8", onnx_cache, cache_size=0)
    alone = model.score(QUESTION, PASSAGES[:1])  # "Berlin has 3.5 million people."
    for other in ("Paris has 2.1 million people.", "Rome rome rome rome rome 999."):  # same length: one batch
        assert model.score(QUESTION, [PASSAGES[0], other])[0] == alone[0]  # in one int8 batch: 0.733 and 0.749


@pytest.mark.parametrize("backend", ["torch", *ONNX_BACKENDS])
def test_nli_models_give_entailment_probability_under_every_backend(backend, tiny_nli_cross_encoder, onnx_cache):
    torch_model = load(tiny_nli_cross_encoder, "torch", onnx_cache)
    pairs = [(QUESTION, p) for p in PASSAGES]
    logits = torch_model.logits(pairs)
    assert logits.shape == (len(PASSAGES), 3)
    expected = to_probabilities(logits, 1)  # label 1 is "entailment" in the fixture
    model = load(tiny_nli_cross_encoder, backend, onnx_cache)
    assert model.positive == 1
    got = model.score_pairs(pairs)
    np.testing.assert_allclose(got, expected, atol=1e-5 if backend != "onnx-int8" else 0.02)


def test_batching_by_length_does_not_change_scores(tiny_cross_encoder):
    one_by_one = Reranker.load(str(tiny_cross_encoder), device="cpu", backend="torch", batch_size=1, cache_size=0)
    batched = Reranker.load(str(tiny_cross_encoder), device="cpu", backend="torch", batch_size=4, cache_size=0)
    counting = CountingEngine(batched.engine)
    batched.engine = counting
    texts = PASSAGES + ["Berlin is big.", "Rome is old.", "Madrid is in Spain."]
    np.testing.assert_allclose(batched.score(QUESTION, texts), one_by_one.score(QUESTION, texts), atol=1e-5)
    assert counting.rows == len(texts) and 2 <= counting.calls < len(texts)  # the three short ones share a batch


def test_length_batches_bound_padding_and_batch_size():
    lengths = [300, 50, 290, 280, 120, 118, 117, 116, 115, 60, 52, 51]
    order = sorted(range(len(lengths)), key=lambda i: -lengths[i])
    batches = length_batches(order, lengths, batch_size=3)
    assert sorted(i for b in batches for i in b) == list(range(len(lengths)))
    assert all(len(b) <= 3 for b in batches)
    for b in batches:
        longest = max(lengths[i] for i in b)
        assert all(lengths[i] >= BATCH_LENGTH_RATIO * longest for i in b)
    assert [len(b) for b in batches] == [3, 3, 2, 1, 3]
    padded = sum(len(b) * max(lengths[i] for i in b) for b in batches)
    assert padded <= sum(lengths) / BATCH_LENGTH_RATIO


def test_score_cache_returns_identical_scores_without_the_model(tiny_cross_encoder):
    reranker = Reranker.load(str(tiny_cross_encoder), device="cpu", backend="torch", cache_size=100)
    counting = CountingEngine(reranker.engine)
    reranker.engine = counting
    first = reranker.score(QUESTION, PASSAGES)
    assert counting.rows == len(PASSAGES)
    again = reranker.score(QUESTION, PASSAGES)
    assert counting.rows == len(PASSAGES)  # nothing recomputed
    np.testing.assert_array_equal(again, first)
    # A refined search: two new passages, the rest from the cache, in the caller's order.
    more = reranker.score(QUESTION, ["Madrid is the capital of Spain."] + PASSAGES[::-1] + ["Berlin is big."])
    assert counting.rows == len(PASSAGES) + 2
    np.testing.assert_array_equal(more[1:-1], first[::-1])
    # Another question is another key.
    reranker.score("Where is the Nile?", PASSAGES[:2])
    assert counting.rows == len(PASSAGES) + 4
    assert reranker.cache.stats.hits == 2 * len(PASSAGES)


def test_score_cache_is_bounded_and_can_be_off(tiny_cross_encoder):
    small = Reranker.load(str(tiny_cross_encoder), device="cpu", backend="torch", cache_size=2)
    small.score(QUESTION, PASSAGES)
    assert len(small.cache) == 2
    off = Reranker.load(str(tiny_cross_encoder), device="cpu", backend="torch", cache_size=0)
    counting = CountingEngine(off.engine)
    off.engine = counting
    off.score(QUESTION, PASSAGES)
    off.score(QUESTION, PASSAGES)
    assert counting.rows == 2 * len(PASSAGES) and len(off.cache) == 0


def test_cascade_keeps_the_first_stages_best_and_ranks_pruned_after_kept(tiny_cross_encoder, tiny_electra_cross_encoder):
    first = Reranker.load(str(tiny_cross_encoder), device="cpu", backend="torch", cache_size=0)
    main = Reranker.load(str(tiny_electra_cross_encoder), device="cpu", backend="torch", cache_size=0)
    counting = CountingEngine(main.engine)
    main.engine = counting
    cascade = Cascade(first, main, keep=2)
    other = "Which river flows through Egypt?"
    pairs = [(QUESTION, p) for p in PASSAGES] + [(other, p) for p in PASSAGES[:4]]
    first_scores = first.score_pairs(pairs)
    got = cascade.score_pairs(pairs)
    assert counting.rows == 4  # two per question reach the main reranker
    for question, indices in ((QUESTION, range(0, 6)), (other, range(6, 10))):
        indices = list(indices)
        expected_kept = sorted(indices, key=lambda i: -first_scores[i])[:2]
        _, kept = cascade.kept(pairs)
        assert sorted(i for i in kept if i in indices) == sorted(expected_kept)
        np.testing.assert_allclose(got[expected_kept], main.score_pairs([pairs[i] for i in expected_kept]), atol=1e-6)
        pruned = [i for i in indices if i not in expected_kept]
        assert max(got[pruned]) < min(got[expected_kept])
        assert np.all(got[pruned] <= first_scores[pruned])
    assert cascade.name == main.name
    with pytest.raises(ConfigError, match="cascade_keep"):
        Cascade(first, main, keep=0)


def test_export_cache_is_reused_and_damaged_entries_rebuilt(tiny_cross_encoder, tmp_path, monkeypatch, caplog):
    real_export = onnx_export._export
    exports = []

    def counting_export(*args, **kwargs):
        exports.append(args[2])
        return real_export(*args, **kwargs)

    monkeypatch.setattr(onnx_export, "_export", counting_export)
    scores = load(tiny_cross_encoder, "onnx", tmp_path).score(QUESTION, PASSAGES)
    assert exports == ["fp32"]
    entry = onnx_export.entry_dir(tiny_cross_encoder, "fp32", tmp_path)
    assert (entry / "model.onnx").is_file() and (entry / "meta.json").is_file()
    assert [p.name for p in tmp_path.iterdir()] == [entry.name]  # no staging folder left behind

    np.testing.assert_array_equal(load(tiny_cross_encoder, "onnx", tmp_path).score(QUESTION, PASSAGES), scores)
    assert exports == ["fp32"]  # second load: reused

    model = entry / "model.onnx"
    model.write_bytes(model.read_bytes()[: model.stat().st_size // 2])  # truncated by a crash or a full disk
    with caplog.at_level(logging.WARNING, logger="pipeline.rerank.onnx_export"):
        np.testing.assert_allclose(load(tiny_cross_encoder, "onnx", tmp_path).score(QUESTION, PASSAGES), scores, atol=1e-6)
    assert exports == ["fp32", "fp32"] and "damaged" in caplog.text

    (entry / "meta.json").unlink()  # an export interrupted before its last write
    load(tiny_cross_encoder, "onnx", tmp_path)
    assert exports == ["fp32", "fp32", "fp32"]

    assert onnx_export.entry_dir(tiny_cross_encoder, "int8", tmp_path) != entry  # settings are part of the key


def test_export_cache_key_follows_the_model_files(tiny_cross_encoder, tmp_path):
    import shutil

    copy = tmp_path / "model"
    shutil.copytree(tiny_cross_encoder, copy)
    before = onnx_export.cache_key(copy, "fp32")
    assert onnx_export.cache_key(copy, "fp32") == before
    (copy / "config.json").write_text((copy / "config.json").read_text() + "\n")
    assert onnx_export.cache_key(copy, "fp32") != before


def test_default_cache_dir_honours_qa_search_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("QA_SEARCH_CACHE", str(tmp_path))
    assert onnx_export.default_cache_dir() == tmp_path / "onnx"


def test_auto_backend_choice_and_fallback(monkeypatch, caplog):
    import pipeline.rerank.backends as rerank_backends

    assert choose_backend("auto", "cpu") is RerankBackend.ONNX_INT8
    assert choose_backend("auto", "cuda") is RerankBackend.TORCH
    assert choose_backend("onnx", "cpu") is RerankBackend.ONNX
    monkeypatch.setattr(rerank_backends, "onnx_available", lambda: False)
    with caplog.at_level(logging.WARNING, logger="pipeline.rerank.backends"):
        assert choose_backend("auto", "cpu") is RerankBackend.TORCH
    assert "onnxruntime" in caplog.text
    with pytest.raises(ConfigError, match="--rerank-backend torch"):
        choose_backend("onnx-int8", "cpu")


def test_config_settings_parse_and_validate():
    assert PipelineConfig().load.rerank_backend is RerankBackend.AUTO
    assert LoadSettings(rerank_backend="ONNX-int8").rerank_backend is RerankBackend.ONNX_INT8
    with pytest.raises(ConfigError, match="valid values: auto, torch, onnx, onnx-int8"):
        LoadSettings(rerank_backend="tensorrt")
    env = {"QA_SEARCH_RERANK_BACKEND": "torch", "QA_SEARCH_THREADS": "3"}
    cfg = PipelineConfig.from_env(env)
    assert cfg.load.rerank_backend is RerankBackend.TORCH and cfg.load.threads == 3
    assert cfg.to_dict()["rerank_backend"] == "torch"
    with pytest.raises(ConfigError, match="QA_SEARCH_THREADS"):
        PipelineConfig.from_env({"QA_SEARCH_THREADS": "many"})
    for bad in ({"threads": 0}, {"score_cache_size": -1}, {"cascade_keep": 0}, {"int8_rescore": -1}):
        with pytest.raises(ConfigError):
            LoadSettings(**bad)


def test_cli_passes_the_fast_settings():
    from pipeline.apps.cli import build_parser, pipeline_settings

    args = build_parser().parse_args(
        ["search", "q", "--rerank-backend", "onnx", "--threads", "2", "--cascade-reranker", "x", "--cascade-keep", "5",
         "--int8-rescore", "0"]
    )
    settings = pipeline_settings(args)
    assert settings["rerank_backend"] == "onnx" and settings["threads"] == 2
    assert settings["cascade_reranker"] == "x" and settings["cascade_keep"] == 5 and settings["int8_rescore"] == 0
    assert pipeline_settings(build_parser().parse_args(["search", "q"]))["rerank_backend"] is None
    with pytest.raises(SystemExit):
        build_parser().parse_args(["search", "q", "--rerank-backend", "fast"])


def test_pipeline_uses_and_records_the_backend(tiny_index, tiny_cross_encoder, tiny_electra_cross_encoder, tmp_path, monkeypatch):
    from pipeline.qa import QAPipeline

    monkeypatch.setenv("QA_SEARCH_CACHE", str(tmp_path))
    qa = QAPipeline.load(tiny_index, reranker=str(tiny_cross_encoder), rerank_backend="onnx", read=False)
    plain = QAPipeline.load(tiny_index, reranker=str(tiny_cross_encoder), rerank_backend="torch", read=False)
    result, reference = qa.search("What is the capital of France?"), plain.search("What is the capital of France?")
    assert result.settings["rerank_backend"] == "onnx" and reference.settings["rerank_backend"] == "torch"
    assert [h.id for h in result.hits] == [h.id for h in reference.hits]
    np.testing.assert_allclose([h.probability for h in result.hits], [h.probability for h in reference.hits], atol=1e-5)
    assert (tmp_path / "onnx").is_dir()

    cascaded = QAPipeline.load(tiny_index, reranker=str(tiny_electra_cross_encoder), rerank_backend="torch",
                               cascade_reranker=str(tiny_cross_encoder), cascade_keep=2, read=False)
    out = cascaded.search("What is the capital of France?")
    assert out.settings["rerank_backend"] == f"{tiny_cross_encoder.name} torch -> top 2 torch"  # no server path
    assert len(out.hits) == 6


def test_default_on_cpu_screens_in_int8_and_rescores_the_first_hits_in_fp32(tiny_index, tiny_cross_encoder, tmp_path,
                                                                            monkeypatch):
    from pipeline.qa import QAPipeline

    monkeypatch.setenv("QA_SEARCH_CACHE", str(tmp_path))
    qa = QAPipeline.load(tiny_index, reranker=str(tiny_cross_encoder), device="cpu", int8_rescore=3, read=False)
    result = qa.search("What is the capital of France?")
    assert result.settings["rerank_backend"] == "onnx-int8 -> top 3 onnx"
    fp32 = Reranker.load(str(tiny_cross_encoder), device="cpu", backend="torch")
    first = result.hits[:3]  # the first three places of the final order carry fp32's scores
    expected = fp32.score("What is the capital of France?", [h.text for h in first])
    np.testing.assert_allclose([h.scores["rerank"] for h in first], expected, atol=1e-5)
    int8 = Reranker.load(str(tiny_cross_encoder), device="cpu", backend="onnx-int8", cache_dir=tmp_path)
    rest = result.hits[3:]  # the others keep the int8 screen's
    np.testing.assert_allclose([h.scores["rerank"] for h in rest],
                               int8.score("What is the capital of France?", [h.text for h in rest]), atol=1e-6)
    assert QAPipeline.load(tiny_index, reranker=str(tiny_cross_encoder), device="cpu", int8_rescore=0, read=False).search(
        "What is the capital of France?").settings["rerank_backend"] == "onnx-int8"


def test_cascade_counts_a_question_asked_twice_in_one_call_once(tiny_cross_encoder, tiny_electra_cross_encoder):
    first = Reranker.load(str(tiny_cross_encoder), device="cpu", cache_size=0)
    main = Reranker.load(str(tiny_electra_cross_encoder), device="cpu", cache_size=0)
    cascade = Cascade(first, main, keep=2)
    once = cascade.score(QUESTION, PASSAGES)
    twice = cascade.score_pairs([(QUESTION, p) for p in PASSAGES] * 2)
    np.testing.assert_allclose(twice, np.concatenate([once, once]), atol=1e-6)
