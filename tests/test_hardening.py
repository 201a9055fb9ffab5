"""Hardening (issue 17): each test here failed on the code before its fix."""

from __future__ import annotations

import sys
import threading
import time

import numpy as np
import pytest

from pipeline.rerank.score_cache import ScoreCache

# --------------------------------------------------------------------------- 9: the score cache under threads


class YieldingKey(tuple):
    def __hash__(self):
        time.sleep(0)
        return tuple.__hash__(self)


def test_score_cache_survives_concurrent_get_and_put():
    """Batcher threads and Streamlit sessions share one cache: get/put from many threads never raise and
    the counters add up (before the lock, ``move_to_end`` raised KeyError on an entry evicted meanwhile)."""
    cache = ScoreCache(2)
    # Keys that give the GIL away while hashed, as a longer key or a busy process would: the interleavings
    # that raise happen within a second instead of once a day.
    keys = [YieldingKey(ScoreCache.key("m", "q", str(i))) for i in range(3)]
    errors: list[BaseException] = []
    rounds = 800
    start = threading.Barrier(8)

    def work(offset: int) -> None:
        start.wait()
        try:
            for n in range(rounds):
                key = keys[(n + offset) % len(keys)]
                if cache.get(key) is None:
                    cache.put(key, 0.5)
        except BaseException as exc:  # noqa: BLE001 - collected for the assertion
            errors.append(exc)

    old = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)  # switch threads as often as possible, so a race shows in a short test
    try:
        threads = [threading.Thread(target=work, args=(i * 3,)) for i in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    finally:
        sys.setswitchinterval(old)
    assert not errors, f"{type(errors[0]).__name__}: {errors[0]}"
    assert len(cache) <= 2
    assert cache.stats.hits + cache.stats.misses == 8 * rounds


# --------------------------------------------------------------------------- 8: requests sharing a batch

QUESTION = "How many people live in Berlin?"
REQUEST_A = ["Berlin has 3.5 million people.", "The Nile flows north through Egypt.", "Paris is the capital of France."]
REQUEST_B = ["Berlin is a city of 3.7 million inhabitants in Germany, its capital and largest city.",
             "Mount Everest is the highest mountain.", "Berlin " * 40]


def _clear_caches(reranker):
    for part in (reranker, getattr(reranker, "first", None), getattr(reranker, "main", None)):
        if getattr(part, "cache", None) is not None:
            part.cache.clear()


def _alone_and_shared(reranker, items):
    """Each request's scores when scored alone, and when all share one call (caches emptied before each)."""
    from pipeline.apps.server.service import score_batch

    _clear_caches(reranker)
    shared = [scores for scores, _ in score_batch(reranker, items)]
    alone = []
    for item in items:
        _clear_caches(reranker)
        alone.append(score_batch(reranker, [item])[0][0])
    return alone, shared


def test_cascade_keeps_each_requests_own_top_k_when_batched(tiny_cross_encoder, tiny_electra_cross_encoder):
    """Two clients asking the same question in one micro-batch: each gets the scores it gets alone (before,
    the cascade kept the question's best ``keep`` across both, capping the other client's pairs)."""
    from pipeline.rerank.cascade import Cascade
    from pipeline.rerank.reranker import Reranker

    first = Reranker.load(str(tiny_cross_encoder), device="cpu", backend="torch", cache_size=0)
    main = Reranker.load(str(tiny_electra_cross_encoder), device="cpu", backend="torch", cache_size=0)
    cascade = Cascade(first, main, keep=1)
    items = [[(QUESTION, p) for p in REQUEST_A], [(QUESTION, p) for p in REQUEST_B]]
    alone, shared = _alone_and_shared(cascade, items)
    for mine, together in zip(alone, shared):
        np.testing.assert_allclose(together, mine, atol=1e-6)
    # Each request's own best first-stage pair got the main reranker's score.
    for item, scores in zip(items, shared):
        best = int(np.argmax(first.score_pairs(item)))
        np.testing.assert_allclose(scores[best], main.score_pairs([item[best]])[0], atol=1e-6)


@pytest.mark.parametrize("cache_size", [0, 100])
def test_int8_scores_do_not_depend_on_who_shares_the_batch(tiny_cross_encoder, tmp_path, cache_size):
    """int8 quantises activations with one scale per model batch: pairs of different requests never share one."""
    from pipeline.rerank.reranker import Reranker

    int8 = Reranker.load(str(tiny_cross_encoder), device="cpu", backend="onnx-int8", cache_dir=tmp_path,
                         progress=False, cache_size=cache_size)
    items = [[(QUESTION, p) for p in REQUEST_A], [(QUESTION, p) for p in REQUEST_B]]
    alone, shared = _alone_and_shared(int8, items)
    for mine, together in zip(alone, shared):
        np.testing.assert_array_equal(together, mine)


# --------------------------------------------------------------------------- 10: server paths never reach clients


def test_cascade_description_and_public_names_hide_server_paths(tiny_cross_encoder, tiny_electra_cross_encoder, tmp_path):
    from pipeline.apps.server.service import public_name
    from pipeline.models.resolve import display_name
    from pipeline.rerank.cascade import Cascade
    from pipeline.rerank.reranker import Reranker

    first = Reranker.load(str(tiny_cross_encoder), device="cpu", backend="torch", cache_size=0)
    main = Reranker.load(str(tiny_electra_cross_encoder), device="cpu", backend="torch", cache_size=0)
    described = Cascade(first, main, keep=2).describe()
    assert described == f"{tiny_cross_encoder.name} torch -> top 2 torch"
    assert str(tiny_cross_encoder.parent) not in described
    # A path that does not exist (any more) on the server is still a path.
    assert public_name("/srv/models/private-reranker") == "private-reranker"
    assert public_name("./models/private-reranker") == "private-reranker"
    assert public_name(str(tmp_path)) == tmp_path.name
    assert display_name("cross-encoder/qnli-electra-base") == "cross-encoder/qnli-electra-base"


def test_search_response_names_no_server_path(tiny_index, tiny_cross_encoder, tiny_electra_cross_encoder):
    from fastapi.testclient import TestClient

    from pipeline.apps.server import ServerSettings, create_app
    from pipeline.qa import QAPipeline
    from pipeline.rerank.cascade import Cascade
    from pipeline.rerank.reranker import Reranker

    qa = QAPipeline.load(tiny_index, reranker=str(tiny_electra_cross_encoder), read=False, device="cpu",
                         rerank_backend="torch")
    first = Reranker.load(str(tiny_cross_encoder), device="cpu", backend="torch")
    qa.reranker = Cascade(first, qa.reranker, keep=2)
    with TestClient(create_app(qa, settings=ServerSettings())) as client:
        response = client.post("/v1/search", json={"query": "What is the capital of Germany?"})
    assert response.status_code == 200
    for secret in (tiny_index.parent, tiny_cross_encoder.parent, tiny_electra_cross_encoder.parent):
        assert str(secret) not in response.text
    assert response.json()["settings"]["rerank_backend"] == f"{tiny_cross_encoder.name} torch -> top 2 torch"


# --------------------------------------------------------------------------- 4: opening someone else's index


def _crafted_index(tmp_path, tiny_index, bi_encoder_name: str):
    import json
    import shutil

    index = tmp_path / "sent-index"
    shutil.copytree(tiny_index, index)
    manifest = json.loads((index / "manifest.json").read_text())
    manifest["bi_encoder"]["name"] = bi_encoder_name
    manifest["bi_encoder"]["trust_remote_code"] = True  # a manifest has no say in this
    (index / "manifest.json").write_text(json.dumps(manifest))
    return index


def test_an_index_never_makes_its_bi_encoder_download(tmp_path, tiny_index, monkeypatch):
    import pipeline.models.resolve as resolve
    from pipeline.errors import ModelNotFoundError
    from pipeline.qa import QAPipeline

    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("TRANSFORMERS_OFFLINE", raising=False)
    asked = []
    monkeypatch.setattr(resolve, "_from_hub", lambda repo_id: asked.append(repo_id))
    index = _crafted_index(tmp_path, tiny_index, "attacker/forty-gigabyte-model")
    with pytest.raises(ModelNotFoundError, match="never downloads"):
        QAPipeline.load(index, rerank=False, read=False, device="cpu")
    assert asked == []


def test_an_index_naming_a_model_with_custom_code_runs_none_of_it(tmp_path, tiny_index, tiny_bi_encoder):
    """Even with trust_remote_code on for the operator's own models, the index's bi-encoder gets it off."""
    import json
    import shutil

    from pipeline.errors import QASearchError
    from pipeline.qa import QAPipeline

    model = tmp_path / "evil-model"
    shutil.copytree(tiny_bi_encoder, model)
    ran = tmp_path / "code-ran"
    (model / "evil_st.py").write_text(f"open({str(ran)!r}, 'w').write('pwned')\nclass Evil:\n    pass\n")
    modules = json.loads((model / "modules.json").read_text())
    modules[0]["type"] = "evil_st.Evil"
    (model / "modules.json").write_text(json.dumps(modules))
    index = _crafted_index(tmp_path, tiny_index, str(model))
    with pytest.raises(QASearchError, match="custom code"):
        QAPipeline.load(index, rerank=False, read=False, device="cpu", trust_remote_code=True)
    assert not ran.exists()


def test_version_floors_make_opening_an_index_run_no_code():
    """sentence-transformers < 6 imports a local model's custom module classes whatever trust_remote_code
    says; torch < 2.6 unpickles weights with weights_only=False by default."""
    import re

    import tomllib
    from conftest import REPO
    from packaging.version import Version

    deps = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"]
    floors = {}
    for dep in deps:
        m = re.match(r"([A-Za-z0-9_.-]+)\s*>=\s*([0-9.]+)", dep)
        if m:
            floors[m.group(1).lower()] = Version(m.group(2))
    assert floors["sentence-transformers"] >= Version("6.0")
    assert floors["torch"] >= Version("2.6")
    assert floors["transformers"] >= Version("5.0")


# --------------------------------------------------------------------------- 6: the ONNX export cache


def test_export_cache_key_follows_content_not_size_and_mtime(tiny_cross_encoder, tmp_path):
    import os
    import shutil

    import pipeline.rerank.onnx_export as onnx_export

    copy = tmp_path / "model"
    shutil.copytree(tiny_cross_encoder, copy)
    before = onnx_export.cache_key(copy, "fp32")
    weights = next(p for p in copy.iterdir() if p.suffix in (".safetensors", ".bin"))
    stat = weights.stat()
    data = bytearray(weights.read_bytes())
    data[-1] ^= 0xFF  # same size, and the modification time is put back: a swapped file
    weights.write_bytes(bytes(data))
    os.utime(weights, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert onnx_export.cache_key(copy, "fp32") != before


def test_export_cache_key_follows_library_versions(tiny_cross_encoder, monkeypatch):
    import pipeline.rerank.onnx_export as onnx_export

    before = onnx_export.cache_key(tiny_cross_encoder, "int8")
    real = onnx_export.export_versions()
    monkeypatch.setattr(onnx_export, "export_versions", lambda: {**real, "onnxruntime": "0.0.1"})
    assert onnx_export.cache_key(tiny_cross_encoder, "int8") != before


def test_export_cache_dir_is_owner_only_and_a_shared_one_is_refused(tiny_cross_encoder, tmp_path):
    import stat

    import pipeline.rerank.onnx_export as onnx_export
    from pipeline.errors import ConfigError

    fresh = tmp_path / "fresh" / "onnx"
    onnx_export.onnx_model_file(tiny_cross_encoder, "fp32", cache_dir=fresh, progress=False)
    assert stat.S_IMODE(fresh.stat().st_mode) == 0o700
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o777)  # anyone on the machine could plant an "export" here
    with pytest.raises(ConfigError, match="chmod 700"):
        onnx_export.onnx_model_file(tiny_cross_encoder, "fp32", cache_dir=shared, progress=False)
    assert list(shared.iterdir()) == []


def test_a_racing_export_never_replaces_an_entry_in_use(tiny_cross_encoder, tmp_path, monkeypatch):
    """Two processes find no entry and both export; the second to finish keeps the first's entry (which may
    already be open in an ONNX Runtime session) instead of deleting it."""
    import os

    import pipeline.rerank.onnx_export as onnx_export

    path = onnx_export.onnx_model_file(tiny_cross_encoder, "fp32", cache_dir=tmp_path, progress=False)
    in_use = os.open(path, os.O_RDONLY)  # as an ONNX Runtime session loading it holds it
    real_valid = onnx_export._valid
    looked = []

    def first_look_misses(entry):
        looked.append(entry)
        return False if len(looked) == 1 else real_valid(entry)  # it looked before the first entry was in place

    monkeypatch.setattr(onnx_export, "_valid", first_look_misses)
    try:
        again = onnx_export.onnx_model_file(tiny_cross_encoder, "fp32", cache_dir=tmp_path, progress=False)
        assert os.fstat(in_use).st_nlink == 1  # still the entry's file, not deleted under its reader
    finally:
        os.close(in_use)
    assert again == path and len(looked) == 2
    assert [p.name for p in tmp_path.iterdir()] == [path.parent.name]  # nothing left behind


# --------------------------------------------------------------------------- 1: what a visitor can learn or fetch


def test_missing_forbidden_and_non_model_paths_get_one_message(tmp_path):
    """The message for a path tells nothing about what exists there (a file, a folder, nothing)."""
    from pipeline.errors import ModelNotFoundError
    from pipeline.models.resolve import resolve_model

    (tmp_path / "passwd").write_text("root:x:0:0")
    (tmp_path / "ssh").mkdir()
    (tmp_path / "ssh" / "id_rsa").write_text("secret")
    messages = []
    for name in ("missing", "passwd", "ssh", "ssh/id_rsa"):
        with pytest.raises(ModelNotFoundError) as info:
            resolve_model(str(tmp_path / name), role="reranker")
        messages.append(str(info.value).replace(str(tmp_path / name), "PATH"))
    assert len(set(messages)) == 1, messages


HUB_LISTING = {  # the files of a typical Hub cross-encoder repository, with sizes
    "config.json": 700, "model.safetensors": 438_000_000, "pytorch_model.bin": 438_000_000,
    "tf_model.h5": 438_000_000, "flax_model.msgpack": 438_000_000, "rust_model.ot": 438_000_000,
    "onnx/model.onnx": 438_000_000, "openvino/openvino_model.bin": 438_000_000, "tokenizer.json": 700_000,
    "tokenizer_config.json": 300, "vocab.txt": 230_000, "special_tokens_map.json": 100, "README.md": 3000,
    "modeling_custom.py": 2000, "sentence_bert_config.json": 50, "modules.json": 200, "1_Pooling/config.json": 200,
}


def test_a_hub_download_fetches_only_the_files_a_model_needs(monkeypatch):
    import pipeline.models.resolve as resolve

    chosen = resolve.needed_files(HUB_LISTING)
    assert "model.safetensors" in chosen and "tokenizer.json" in chosen and "1_Pooling/config.json" in chosen
    for unwanted in ("pytorch_model.bin", "tf_model.h5", "flax_model.msgpack", "rust_model.ot", "onnx/model.onnx",
                     "openvino/openvino_model.bin", "modeling_custom.py"):
        assert unwanted not in chosen
    # Weights only as a pickle: that one file, nothing else heavy.
    old = {k: v for k, v in HUB_LISTING.items() if k != "model.safetensors"}
    assert [f for f in resolve.needed_files(old) if old[f] > 1_000_000] == ["pytorch_model.bin"]

    calls = []
    monkeypatch.setattr(resolve, "hub_listing", lambda repo_id: HUB_LISTING)
    monkeypatch.setattr(resolve, "snapshot", lambda repo_id, files: calls.append((repo_id, sorted(files))) or "/x")
    monkeypatch.setenv("QA_SEARCH_MAX_DOWNLOAD_BYTES", "100000000")
    assert resolve._from_hub("acme/huge") is None and calls == []  # over the cap: nothing fetched
    monkeypatch.setenv("QA_SEARCH_MAX_DOWNLOAD_BYTES", "1000000000")
    assert resolve._from_hub("acme/fine") == "/x"
    assert calls == [("acme/fine", sorted(chosen))]


# --------------------------------------------------------------------------- 2: the UI's shared, bounded resources


def test_resource_pool_loads_each_key_once_under_concurrency_and_stays_bounded():
    from pipeline.apps.ui.resources import ResourcePool

    pool = ResourcePool("model", capacity=2)
    started = threading.Barrier(6)
    loads = []

    def load(key):
        loads.append(key)
        time.sleep(0.05)
        return f"model {key}"

    def ask():
        started.wait()
        assert pool.get("a", lambda: load("a")) == "model a"

    threads = [threading.Thread(target=ask) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert loads == ["a"]
    pool.get("b", lambda: load("b"))
    pool.get("a", lambda: load("a"))  # used: "b" is now the least recent
    pool.get("c", lambda: load("c"))
    assert list(pool) == ["a", "c"] and loads == ["a", "b", "c"]


def test_search_gate_bounds_concurrent_searches():
    from pipeline.apps.ui.resources import SearchGate

    gate = SearchGate(limit=2, wait_s=0.05)
    assert gate.enter() and gate.enter()
    assert not gate.enter()  # a third visitor is told to retry
    gate.leave()
    assert gate.enter()


# --------------------------------------------------------------------------- 1, 2, 3, 10: the web page for strangers


def _page(monkeypatch, index, reranker, reader, **env):
    from test_app import start

    for name in [n for n in __import__("os").environ if n.startswith("QA_SEARCH_UI_")]:
        monkeypatch.delenv(name)
    return start(monkeypatch, index, reranker, reader, **env)


def _everything_shown(at) -> str:
    parts = []
    for kind in ("caption", "markdown", "error", "warning", "info", "html", "text_input", "selectbox"):
        for element in getattr(at, kind):
            if kind == "selectbox":  # its value stays on the server; the browser gets the option labels
                parts.extend(str(o) for o in element.options)
            else:
                parts.append(str(getattr(element, "value", "")))
    return "\n".join(parts)


def test_page_offers_the_operators_models_only_and_shows_no_server_path(
        monkeypatch, tiny_index, tiny_cross_encoder, tiny_electra_cross_encoder, tiny_reader):
    at = _page(monkeypatch, tiny_index, tiny_cross_encoder, tiny_reader,
               QA_SEARCH_UI_RERANKERS=f"{tiny_cross_encoder},{tiny_electra_cross_encoder}")
    assert not [t for t in at.text_input if t.key in ("reranker", "reader", "reranker_free", "reader_free")]
    assert at.selectbox(key="reranker").options == [tiny_cross_encoder.name, tiny_electra_cross_encoder.name]
    shown = _everything_shown(at)
    for secret in (tiny_cross_encoder.parent, tiny_reader.parent, tiny_index.parent):
        assert str(secret) not in shown
    assert f"reranker {tiny_cross_encoder.name}" in shown.replace("\\", "")


def test_page_free_text_takes_only_a_hub_id(monkeypatch, tiny_index, tiny_cross_encoder, tiny_reader):
    at = _page(monkeypatch, tiny_index, tiny_cross_encoder, tiny_reader, QA_SEARCH_UI_FREE_TEXT="1")
    typed = at.text_input(key="reranker_free")
    assert typed.max_chars == 96
    typed.set_value("/root/.ssh").run()
    assert not at.exception and not at.error
    assert any("Only a Hugging Face model id" in c.value for c in at.caption)


def test_page_toggles_share_one_loaded_index(monkeypatch, tmp_path, tiny_index, tiny_cross_encoder, tiny_reader):
    import shutil

    from pipeline.index.search_index import SearchIndex

    index = tmp_path / "own-copy"
    shutil.copytree(tiny_index, index)
    real = SearchIndex.load.__func__
    opened = []

    def counting(cls, path, *args, **kwargs):
        opened.append(str(path))
        return real(cls, path, *args, **kwargs)

    monkeypatch.setattr(SearchIndex, "load", classmethod(counting))
    at = _page(monkeypatch, index, tiny_cross_encoder, tiny_reader)
    for toggle, value in (("rerank", False), ("read", False), ("rerank", True), ("read", True)):
        at.toggle(key=toggle).set_value(value).run()
        assert not at.exception and not at.error
    assert opened == [str(index)]


def test_page_bounds_what_a_session_asks_for(monkeypatch, tiny_index, tiny_cross_encoder, tiny_reader):
    from test_app import ask

    from pipeline.qa import QAPipeline

    asked = []
    real = QAPipeline.search

    def recording(self, question, **overrides):
        asked.append(dict(overrides, question=question))
        return real(self, question, **overrides)

    monkeypatch.setattr(QAPipeline, "search", recording)
    at = _page(monkeypatch, tiny_index, tiny_cross_encoder, tiny_reader, QA_SEARCH_UI_MAX_CANDIDATES="20",
               QA_SEARCH_UI_MAX_TOP_K="5", QA_SEARCH_UI_MAX_QUESTION_CHARS="100")
    assert at.text_input(key="question").max_chars == 100
    assert at.slider(key="candidates").max == 20 and at.slider(key="top_k").max == 5
    at.slider(key="candidates").set_value(500)
    at.slider(key="top_k").set_value(50)
    ask(at, "Which city is the capital of Germany, bounded?")
    assert asked and asked[-1]["candidates"] <= 20 and asked[-1]["top_k"] <= 5
    ask(at, "capital " * 20)  # 160 characters
    assert len(asked[-1]["question"]) <= 100 or "the limit is 100" in at.warning[0].value.replace("\\", "")


def test_page_says_busy_when_every_search_slot_is_taken(monkeypatch, tiny_index, tiny_cross_encoder, tiny_reader):
    from test_app import ask

    from pipeline.apps.ui.resources import SearchGate

    monkeypatch.setattr(SearchGate, "enter", lambda self: False)
    at = _page(monkeypatch, tiny_index, tiny_cross_encoder, tiny_reader)
    ask(at, "Is the server busy right now?")
    assert [w.value for w in at.warning] == ["The server is busy with other searches; try again in a moment."]


@pytest.mark.parametrize("where", ["search", "load"])
def test_page_shows_one_sentence_for_an_unexpected_error(monkeypatch, caplog, where, tiny_index, tiny_cross_encoder,
                                                         tiny_reader, tmp_path):
    import shutil

    from test_app import ask

    from pipeline.qa import QAPipeline
    from pipeline.read.reader import Reader

    def explode(*args, **kwargs):
        raise RuntimeError("kaboom in /srv/secret/model with *markdown*")

    index, reader = tiny_index, tiny_reader
    if where == "load":
        index, reader = tmp_path / "fresh-index", tmp_path / "fresh-reader"  # nothing loaded yet for these
        shutil.copytree(tiny_index, index)
        shutil.copytree(tiny_reader, reader)
        monkeypatch.setattr(Reader, "load", classmethod(explode))
    else:
        monkeypatch.setattr(QAPipeline, "search", explode)
    with caplog.at_level("ERROR"):
        at = _page(monkeypatch, index, tiny_cross_encoder, reader)
        if where == "search":
            ask(at, "Will this search explode?")
    assert not at.exception
    assert [e.value for e in at.error] == ["Something went wrong on the server; it has been logged. Try again, or try other settings."]
    assert "kaboom" not in _everything_shown(at)
    assert "kaboom" in caplog.text


def test_demo_listens_on_loopback_and_stays_offline_with_the_stand_ins(tmp_path):
    import subprocess

    import tomllib
    from conftest import REPO

    index = tmp_path / "idx"
    index.mkdir()
    (index / "manifest.json").write_text("{}")
    models = tmp_path / "shared" / "models"
    (models / "minilm-l6-qnli-squad-tune").mkdir(parents=True)
    dry = subprocess.run(["make", "-n", "-C", str(REPO), "demo", f"INDEX={index}", f"SHARED={tmp_path / 'shared'}"],
                         capture_output=True, text=True, check=True).stdout
    line = next(x for x in dry.splitlines() if "streamlit run" in x)
    assert "--server.address 127.0.0.1" in line and line.startswith("HF_HUB_OFFLINE=1 ")
    config = tomllib.loads((REPO / ".streamlit" / "config.toml").read_text())
    assert config["server"]["address"] == "127.0.0.1" and config["client"]["showErrorDetails"] == "none"


# --------------------------------------------------------------------------- 5: untrusted model folders and corpora


def test_folder_corpus_never_follows_a_symlink_out_of_the_folder(tmp_path):
    from pipeline.corpus.readers import corpus_files
    from pipeline.corpus.records import CorpusFormat

    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.txt").write_text("the server's private notes")
    corpus = tmp_path / "corpus"
    (corpus / "inner").mkdir(parents=True)
    (corpus / "a.txt").write_text("Paris is the capital of France.")
    (corpus / "inner" / "b.md").write_text("Berlin is the capital of Germany.")
    (corpus / "link-inside.txt").symlink_to(corpus / "a.txt")
    (corpus / "link-out.txt").symlink_to(outside / "secret.txt")
    (corpus / "dir-out").symlink_to(outside, target_is_directory=True)
    for fmt in (CorpusFormat.FOLDER, CorpusFormat.JSONL):
        names = [str(p.relative_to(corpus)) for p in corpus_files(corpus, fmt)]
        assert "link-out.txt" not in names and not any(n.startswith("dir-out") for n in names)
        assert "a.txt" in names and "inner/b.md" in names


def test_model_folder_modules_json_cannot_point_outside_it(tmp_path, tiny_cross_encoder):
    import json
    import shutil

    from pipeline.errors import ModelNotFoundError
    from pipeline.models.resolve import resolve_model
    from pipeline.rerank.reranker import transformer_dir

    elsewhere = tmp_path / "someone-elses-model"
    shutil.copytree(tiny_cross_encoder, elsewhere)
    model = tmp_path / "sent-model"
    model.mkdir()
    (model / "config.json").write_text((tiny_cross_encoder / "config.json").read_text())
    (model / "modules.json").write_text(json.dumps(
        [{"idx": 0, "name": "0", "path": "../someone-elses-model", "type": "sentence_transformers.models.Transformer"}]))
    with pytest.raises(ModelNotFoundError, match="outside"):
        resolve_model(str(model), role="reranker")
    assert transformer_dir(model) == model  # never the folder outside


def test_readyz_and_503_give_the_load_failure_without_server_paths():
    from fastapi.testclient import TestClient

    from pipeline.apps.server import ServerSettings, create_app
    from pipeline.errors import IndexNotFoundError

    def broken_loader():
        raise IndexNotFoundError("No index at /srv/private/indexes/customers (no manifest.json).")

    with TestClient(create_app(broken_loader, settings=ServerSettings())) as client:
        for _ in range(100):
            if client.get("/readyz").json()["status"] != "loading":
                break
            time.sleep(0.05)
        ready = client.get("/readyz")
        down = client.post("/v1/score", json={"text_1": "q", "text_2": ["d"]})
    assert ready.json()["detail"] == "No index at customers (no manifest.json)."
    assert "/srv/private" not in ready.text and "/srv/private" not in down.text
