"""The scalable index: bm25s against rank-bm25, the passage store, resumable chunked builds, --vectors,
memory-mapped opening and the recall figure in the manifest, on small generated corpora."""

import json

import numpy as np
import pytest

from pipeline.apps.cli import main
from pipeline.errors import IndexMismatchError, QASearchError
from pipeline.index import SearchIndex, add_to_index, build_index
from pipeline.index.bm25 import BM25Index, BM25Tokenizer, TermTable, score_matrix
from pipeline.index.build import Checkpoint
from pipeline.index.dense import ExactNeighbours
from pipeline.index.passages import PassageStore
from pipeline.models.encoder import BiEncoder

WORDS = [f"w{i}" for i in range(400)]


def generated_texts(n: int, seed: int = 0, length: tuple[int, int] = (8, 40)) -> list[str]:
    """Passages of Zipf-distributed words: a few frequent terms, a long tail, like real text."""
    rng = np.random.default_rng(seed)
    p = 1.0 / np.arange(1, len(WORDS) + 1)
    p /= p.sum()
    return [" ".join(rng.choice(WORDS, size=rng.integers(*length), p=p)) for _ in range(n)]


def write_jsonl(path, texts, prefix="d"):
    # A word of its own makes every passage distinct (exact duplicates would be dropped).
    rows = (json.dumps({"id": f"{prefix}{i}", "title": "", "text": f"{t} n{i}"}) + "\n" for i, t in enumerate(texts))
    path.write_text("".join(rows))
    return path


def clustered_vectors(n: int, dim: int = 32, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(32, dim))
    vecs = centres[rng.integers(0, 32, n)] + 0.6 * rng.normal(size=(n, dim))
    return (vecs / np.linalg.norm(vecs, axis=1, keepdims=True)).astype(np.float32)


# -- bm25s against rank-bm25 ------------------------------------------------------------------------


@pytest.mark.parametrize("method", ["robertson", "lucene", "atire"])
def test_score_matrix_equals_bm25s_own_indexer(method):
    import bm25s

    docs = BM25Tokenizer().many(generated_texts(300))
    ref = bm25s.BM25(method=method)
    ref.index(docs, show_progress=False)
    table = TermTable.from_tokens(docs)
    mine = score_matrix(table, k1=1.5, b=0.75, method=method)
    for term, i in table.vocab.items():
        j = ref.vocab_dict[term]
        a, b = slice(mine["indptr"][i], mine["indptr"][i + 1]), slice(ref.scores["indptr"][j], ref.scores["indptr"][j + 1])
        np.testing.assert_array_equal(mine["indices"][a], ref.scores["indices"][b])
        np.testing.assert_allclose(mine["data"][a], ref.scores["data"][b], rtol=1e-6)
    assert mine["num_docs"] == ref.scores["num_docs"] == 300


def test_bm25s_top10_agrees_with_rank_bm25():
    texts = generated_texts(500, seed=1)
    fast = BM25Index.from_texts(texts, engine="bm25s", method="robertson")
    slow = BM25Index.from_texts(texts, engine="rank-bm25")
    rng = np.random.default_rng(2)
    # Words outside the head of the distribution: terms in over half the passages get idf 0 in bm25s's
    # robertson and 0.25 x mean idf in rank-bm25 (SQuAD's stop-word-free stems have almost none).
    tail = [[w for w in t.split() if int(w[1:]) >= 20] for t in texts]
    queries = [" ".join(rng.choice(words, size=3)) for words in tail if len(words) >= 3][:200]
    same = sum([p for p, _ in fast.search(q, 10)] == [p for p, _ in slow.search(q, 10)] for q in queries)
    assert same / len(queries) >= 0.99
    # Where no query term is in more than half of the passages, the scores differ by rank-bm25's constant k1 + 1.
    q = "w150 w200 w300"
    np.testing.assert_allclose(slow.scores(q), fast.scores(q) * 2.5, rtol=1e-4)


def test_bm25_extended_tokenises_only_new_texts(monkeypatch):
    base = BM25Index.from_texts(generated_texts(50))
    seen = []
    original = BM25Tokenizer.many

    def counting(self, texts):
        texts = list(texts)
        seen.extend(texts)
        return original(self, texts)

    monkeypatch.setattr(BM25Tokenizer, "many", counting)
    grown = base.extended(["zebra crossing", "w1 w2 zebra"])
    assert seen == ["zebra crossing", "w1 w2 zebra"]
    assert len(grown) == 52 and grown.search("zebra crossing", 1)[0][0] == 50
    rebuilt = BM25Index.from_texts(generated_texts(50) + ["zebra crossing", "w1 w2 zebra"])
    np.testing.assert_allclose(grown.scores("w3 zebra"), rebuilt.scores("w3 zebra"), rtol=1e-6)


# -- passage store and memory-mapped opening --------------------------------------------------------


def test_passage_store_random_access(tiny_index):
    store = SearchIndex.load(tiny_index).passages
    assert isinstance(store, PassageStore) and len(store) == 6
    assert store[store.position("nile")].text.startswith("The Nile")
    assert [p.id for p in store.many([5, 0])] == [store[5].id, store[0].id]
    assert [p.id for p in store] == [store[i].id for i in range(6)] and store[-1].id == store[5].id
    with pytest.raises(KeyError):
        store.position("atlantis")
    with pytest.raises(IndexError):
        store[6]


def test_index_opens_memory_mapped_and_answers_like_in_memory(tiny_index, tiny_bi_encoder):
    mapped = SearchIndex.load(tiny_index)
    loaded = SearchIndex.load(tiny_index, mmap=False)
    assert isinstance(mapped.bm25.table.terms, np.memmap)
    assert isinstance(mapped.bm25.bm25s_model.scores["data"], np.memmap)
    assert not isinstance(loaded.bm25.table.terms, np.memmap)
    assert mapped.bm25.search("capital of Germany", 3) == loaded.bm25.search("capital of Germany", 3)
    vec = BiEncoder.load(str(tiny_bi_encoder), device="cpu").encode(["river in Egypt"])
    assert mapped.dense.search(vec, 6) == loaded.dense.search(vec, 6)


def test_old_format_index_asks_for_a_rebuild(tmp_path, tiny_index):
    import shutil

    old = tmp_path / "old"
    shutil.copytree(tiny_index, old)
    manifest = json.loads((old / "manifest.json").read_text())
    manifest["format_version"] = 1
    (old / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(IndexMismatchError, match=f"format 1.*qa-search build --corpus PATH --index {old}"):
        SearchIndex.load(old)


# -- resumable build --------------------------------------------------------------------------------


def index_contents(path):
    index = SearchIndex.load(path, mmap=False)
    return (
        [p.to_dict() for p in index.passages],
        {name: np.asarray(getattr(index.bm25.table, name)).tolist() for name in ("terms", "tfs", "doc_ptr", "doc_len")},
        index.bm25.table.vocab,
        index.dense.index.reconstruct_n(0, len(index)),
    )


def test_build_killed_after_a_chunk_resumes_and_matches_a_clean_build(tmp_path, small_corpus, tiny_bi_encoder, monkeypatch):
    clean = tmp_path / "clean"
    build_index(small_corpus, clean, bi_encoder=str(tiny_bi_encoder), chunk_size=2, progress=False)
    out = tmp_path / "idx"
    saves = {"n": 0}
    original = Checkpoint.save

    def dies_after_second_chunk(self):
        saves["n"] += 1
        if saves["n"] == 4:  # the initial state, chunk 0, chunk 1, then chunk 2 dies
            raise KeyboardInterrupt
        original(self)

    monkeypatch.setattr(Checkpoint, "save", dies_after_second_chunk)
    with pytest.raises(KeyboardInterrupt):
        build_index(small_corpus, out, bi_encoder=str(tiny_bi_encoder), chunk_size=2, progress=False)
    assert not out.exists()
    state = json.loads((tmp_path / ".idx.building" / "build-state.json").read_text())
    assert (state["chunks"], state["passages"]) == (2, 4)
    monkeypatch.setattr(Checkpoint, "save", original)
    encoded = []
    encode = BiEncoder.encode

    def counting(self, texts, **kwargs):
        encoded.extend(texts)
        return encode(self, texts, **kwargs)

    monkeypatch.setattr(BiEncoder, "encode", counting)
    report = build_index(small_corpus, out, bi_encoder=str(tiny_bi_encoder), chunk_size=2, progress=False)
    assert report.resumed_chunks == 2
    passages = [json.loads(line)["text"] for line in small_corpus.read_text().splitlines()]
    assert [t for t in encoded if t in passages] == passages[4:]  # only the unfinished chunk was embedded
    assert not (tmp_path / ".idx.building").exists()
    a, b = index_contents(clean), index_contents(out)
    assert a[:3] == b[:3]
    np.testing.assert_array_equal(a[3], b[3])


@pytest.mark.slow
def test_cli_build_killed_with_sigkill_resumes_to_the_same_index(tmp_path, tiny_bi_encoder):
    """A real kill (no clean-up runs), as benchmarks/kill_resume.py does at a million passages."""
    import signal
    import subprocess
    import sys
    import time

    n, chunk = 8_000, 400
    corpus = write_jsonl(tmp_path / "c.jsonl", generated_texts(n, length=(20, 40)))
    np.save(tmp_path / "v.npy", clustered_vectors(n, dim=BiEncoder.load(str(tiny_bi_encoder), device="cpu").dimension))

    def command(index):
        return [sys.executable, "-m", "pipeline.apps.cli", "build", "--corpus", str(corpus), "--index", str(index),
                "--bi-encoder", str(tiny_bi_encoder), "--vectors", str(tmp_path / "v.npy"), "--vectors-check", "0",
                "--chunk-size", str(chunk), "--faiss", "flat", "-q"]

    build_index(corpus, tmp_path / "clean", bi_encoder=str(tiny_bi_encoder), vectors=tmp_path / "v.npy", vectors_check=0,
                chunk_size=chunk, faiss_kind="flat", progress=False)
    proc = subprocess.Popen(command(tmp_path / "idx"), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    state = tmp_path / ".idx.building" / "build-state.json"
    chunks = 0
    while proc.poll() is None and chunks < 3:
        try:
            chunks = json.loads(state.read_text())["chunks"]
        except (OSError, ValueError, KeyError):
            pass
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    assert proc.wait() == -signal.SIGKILL, "the build finished before it could be killed"
    assert not (tmp_path / "idx").exists() and 3 <= json.loads(state.read_text())["chunks"] < n // chunk
    subprocess.run(command(tmp_path / "idx"), check=True, capture_output=True)
    resumed = SearchIndex.load(tmp_path / "idx").manifest.build["resumed_after_chunk"]
    assert resumed >= 3
    a, b = index_contents(tmp_path / "clean"), index_contents(tmp_path / "idx")
    assert a[:3] == b[:3]
    np.testing.assert_array_equal(a[3], b[3])


def test_changed_corpus_discards_the_unfinished_build(tmp_path, tiny_bi_encoder, monkeypatch):
    corpus = write_jsonl(tmp_path / "c.jsonl", generated_texts(6))
    original = Checkpoint.save
    calls = {"n": 0}

    def dies(self):
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt
        original(self)

    monkeypatch.setattr(Checkpoint, "save", dies)
    with pytest.raises(KeyboardInterrupt):
        build_index(corpus, tmp_path / "idx", bi_encoder=str(tiny_bi_encoder), chunk_size=2, progress=False)
    monkeypatch.setattr(Checkpoint, "save", original)
    write_jsonl(corpus, generated_texts(6, seed=5))
    report = build_index(corpus, tmp_path / "idx", bi_encoder=str(tiny_bi_encoder), chunk_size=2, progress=False)
    assert report.resumed_chunks == 0 and len(SearchIndex.load(tmp_path / "idx")) == 6


# -- vectors computed elsewhere ---------------------------------------------------------------------


def small_texts(small_corpus):
    return [json.loads(line)["text"] for line in small_corpus.read_text().splitlines()]


def test_build_from_vector_shards_embeds_nothing(tmp_path, small_corpus, tiny_bi_encoder, monkeypatch):
    encoder = BiEncoder.load(str(tiny_bi_encoder), device="cpu")
    vecs = encoder.encode(small_texts(small_corpus))
    shards = tmp_path / "shards"
    shards.mkdir()
    np.save(shards / "part-2.npy", vecs[4:] * 3.0)  # not normalised: normalised on reading
    np.save(shards / "part-10.npy", vecs[4:4])
    np.save(shards / "part-1.npy", vecs[:4].astype(np.float16))
    out = tmp_path / "idx"
    report = build_index(small_corpus, out, bi_encoder=encoder, vectors=shards, progress=False)
    index = SearchIndex.load(out)
    np.testing.assert_allclose(index.dense.index.reconstruct_n(0, 6), vecs, atol=2e-3)
    assert report.manifest.build["vectors"]["checked"] == 6
    assert index.manifest.bi_encoder["fingerprint"] == encoder.fingerprint()


def test_vectors_from_another_model_or_order_are_refused(tmp_path, small_corpus, tiny_bi_encoder, other_tiny_bi_encoder):
    texts = small_texts(small_corpus)
    other = BiEncoder.load(str(other_tiny_bi_encoder), device="cpu").encode(texts)
    np.save(tmp_path / "other.npy", other)
    with pytest.raises(IndexMismatchError, match="come from another model or are not in passage order"):
        build_index(small_corpus, tmp_path / "a", bi_encoder=str(tiny_bi_encoder), vectors=tmp_path / "other.npy", progress=False)
    mine = BiEncoder.load(str(tiny_bi_encoder), device="cpu").encode(texts)
    np.save(tmp_path / "shuffled.npy", mine[::-1])
    with pytest.raises(IndexMismatchError, match="not in passage order"):
        build_index(small_corpus, tmp_path / "b", bi_encoder=str(tiny_bi_encoder), vectors=tmp_path / "shuffled.npy", progress=False)
    np.save(tmp_path / "short.npy", mine[:5])
    with pytest.raises(QASearchError, match="holds 5 vectors, but the corpus has more passages"):
        build_index(small_corpus, tmp_path / "c", bi_encoder=str(tiny_bi_encoder), vectors=tmp_path / "short.npy", progress=False)
    assert not any(p.name.startswith(".") and p.suffix != ".lock" for p in tmp_path.iterdir())  # nothing to resume
    assert main(["build", "--corpus", str(small_corpus), "--index", str(tmp_path / "d"), "--bi-encoder",
                 str(tiny_bi_encoder), "--vectors", str(tmp_path / "missing.npy"), "-q"]) == 2


def test_add_with_vectors_skips_rows_of_known_passages(tmp_path, small_corpus, tiny_bi_encoder, monkeypatch):
    out = tmp_path / "idx"
    build_index(small_corpus, out, bi_encoder=str(tiny_bi_encoder), progress=False)
    extra = tmp_path / "extra.jsonl"
    texts = ["Paris is the capital and largest city of France.", "Tokyo is the capital of Japan.", "Oslo is in Norway."]
    extra.write_text("".join(json.dumps({"id": i, "text": t}) + "\n" for i, t in zip(["paris", "tokyo", "oslo"], texts)))
    encoder = BiEncoder.load(str(tiny_bi_encoder), device="cpu")
    np.save(tmp_path / "extra.npy", encoder.encode(texts))
    report = add_to_index(out, extra, vectors=tmp_path / "extra.npy", progress=False)
    assert report.passages_added == 2
    index = SearchIndex.load(out)
    np.testing.assert_allclose(index.dense.index.reconstruct_n(6, 2), encoder.encode(texts[1:]), atol=1e-5)
    assert index.passages[index.bm25.search("Oslo Norway", 1)[0][0]].id == "oslo"


def test_add_with_trusted_vectors_loads_no_model_but_checks_their_sidecar(tmp_path, small_corpus, tiny_bi_encoder,
                                                                         other_tiny_bi_encoder, monkeypatch):
    out = tmp_path / "idx"
    build_index(small_corpus, out, bi_encoder=str(tiny_bi_encoder), max_tokens=0, overlap=0, progress=False)
    texts = ["Oslo is the capital of Norway.", "Lima is the capital of Peru."]
    extra = tmp_path / "extra.jsonl"
    extra.write_text("".join(json.dumps({"id": i, "text": t}) + "\n" for i, t in zip(["oslo", "lima"], texts)))
    mine = BiEncoder.load(str(tiny_bi_encoder), device="cpu")
    other = BiEncoder.load(str(other_tiny_bi_encoder), device="cpu")
    np.save(tmp_path / "extra.npy", mine.encode(texts))
    (tmp_path / "wrong").mkdir()
    np.save(tmp_path / "wrong" / "00000.npy", other.encode(texts))
    (tmp_path / "wrong" / "vectors.json").write_text(json.dumps({"model": "other", "fingerprint": other.fingerprint()}))
    monkeypatch.setattr(BiEncoder, "load", classmethod(lambda *a, **k: pytest.fail("the bi-encoder was loaded")))
    with pytest.raises(IndexMismatchError, match="embeds the probe text differently"):
        add_to_index(out, extra, vectors=tmp_path / "wrong", vectors_check=0, progress=False)
    report = add_to_index(out, extra, vectors=tmp_path / "extra.npy", vectors_check=0, progress=False)
    assert report.passages_added == 2
    index = SearchIndex.load(out)
    assert index.passages[index.bm25.search("Lima Peru", 1)[0][0]].id == "lima"


# -- dense index by size, recall in the manifest ----------------------------------------------------


@pytest.mark.parametrize("kind", ["ivf-sq", "hnsw"])
def test_manifest_recall_is_measured_against_exact_search(tmp_path, tiny_bi_encoder, kind):
    n = 3000
    corpus = write_jsonl(tmp_path / "c.jsonl", generated_texts(n, length=(3, 8)))
    vecs = clustered_vectors(n)
    np.save(tmp_path / "v.npy", vecs)
    out = tmp_path / "idx"
    build_index(corpus, out, bi_encoder=str(tiny_bi_encoder), vectors=tmp_path / "v.npy", vectors_check=0,
                faiss_kind=kind, chunk_size=1000, progress=False)
    index = SearchIndex.load(out)
    faiss_info = index.manifest.faiss
    assert faiss_info["kind"] == kind and faiss_info["recall_at_10"] >= 0.95
    key = "nprobe" if kind == "ivf-sq" else "efSearch"
    tried = faiss_info["tried"][key]
    assert tried[str(faiss_info[key])] == faiss_info["recall_at_10"]
    assert all(r < 0.95 for v, r in tried.items() if int(v) < faiss_info[key])  # the smallest setting that reaches it
    # Recompute the figure independently: the same seeded queries, brute-force neighbours, the stored setting.
    rng_sample = np.sort(np.random.default_rng(1).choice(n, size=300, replace=False))
    exact = ExactNeighbours.compute(lambda: [vecs], vecs[rng_sample], k=10)
    brute = np.argsort(-(exact.queries @ vecs.T), axis=1)[:, :10]
    assert exact.recall(brute) == 1.0
    found = index.dense.raw_search(exact.queries, 10)[1]
    assert exact.recall(found) == pytest.approx(faiss_info["recall_at_10"], abs=1e-4)


def test_add_to_a_trained_index_writes_a_delta_and_links_the_main_file(tmp_path, tiny_bi_encoder):
    """--add into an IVF index hard-links the unchanged main file and writes only the new vectors (exact,
    searched and merged by score); past 5% of the main index the delta is merged into it."""
    n = 3000
    corpus = write_jsonl(tmp_path / "c.jsonl", generated_texts(n, length=(3, 8)))
    vecs = clustered_vectors(n, seed=0)
    np.save(tmp_path / "v.npy", vecs)
    out = tmp_path / "idx"
    build_index(corpus, out, bi_encoder=str(tiny_bi_encoder), vectors=tmp_path / "v.npy", vectors_check=0,
                faiss_kind="ivf-sq", chunk_size=1000, max_tokens=0, overlap=0, progress=False)
    before = SearchIndex.load(out)

    def add(count: int, seed: int):
        texts = [f"added passage {seed}-{i} " + t for i, t in enumerate(generated_texts(count, seed=seed))]
        extra = write_jsonl(tmp_path / f"add{seed}.jsonl", texts, prefix=f"a{seed}-")
        new = clustered_vectors(count, seed=seed)
        np.save(tmp_path / f"add{seed}.npy", new)
        add_to_index(out, extra, vectors=tmp_path / f"add{seed}.npy", vectors_check=0, progress=False)
        return new

    first = add(100, 7)
    index = SearchIndex.load(out)
    assert len(index) == n + 100 and int(index.dense.index.ntotal) == n and index.manifest.faiss["delta"] == 100
    main_file = index.data_dir / "dense.faiss"
    assert main_file.stat().st_ino == (before.data_dir / "dense.faiss").stat().st_ino  # linked, not rewritten
    assert (index.data_dir / "dense-delta.faiss").is_file()
    # An added vector is found first for itself; old ones still are.
    hits = index.dense.search(np.vstack([first[:3], vecs[:3]]), 5)
    assert [h[0][0] for h in hits[:3]] == [n, n + 1, n + 2]
    assert [h[0][0] for h in hits[3:]] == [0, 1, 2]
    np.testing.assert_allclose(index.dense.reconstruct_n(n - 1, 2), np.vstack([vecs[-1:], first[:1]]), atol=2e-2)
    second = add(100, 8)  # 200 > 5% of 3,000: merged into the main index
    index = SearchIndex.load(out)
    assert len(index) == n + 200 and int(index.dense.index.ntotal) == n + 200 and index.dense.delta is None
    assert not (index.data_dir / "dense-delta.faiss").exists()
    assert index.dense.search(second[:1], 1)[0][0][0] == n + 100


def test_auto_kind_is_flat_for_small_collections(tiny_index):
    faiss_info = SearchIndex.load(tiny_index).manifest.faiss
    assert faiss_info["requested"] == "auto" and faiss_info["kind"] == "flat" and faiss_info["recall_at_10"] == 1.0


def test_per_query_nprobe_override(tmp_path, tiny_bi_encoder):
    n = 2000
    corpus = write_jsonl(tmp_path / "c.jsonl", generated_texts(n, length=(3, 8)))
    vecs = clustered_vectors(n, seed=3)
    np.save(tmp_path / "v.npy", vecs)
    build_index(corpus, tmp_path / "idx", bi_encoder=str(tiny_bi_encoder), vectors=tmp_path / "v.npy", vectors_check=0,
                faiss_kind="ivf-sq", progress=False)
    index = SearchIndex.load(tmp_path / "idx")
    nlist = index.manifest.faiss["nlist"]
    everything = index.dense.search(vecs[:20], 10, nprobe=nlist, k_factor=50)
    exact = [[int(i) for i in row] for row in np.argsort(-(vecs[:20] @ vecs.T), axis=1)[:, :10]]
    assert [[p for p, _ in row] for row in everything] == exact
    narrow = SearchIndex.load(tmp_path / "idx", nprobe=1).dense
    assert narrow.params()["nprobe"] == 1


# -- ONNX encoder for builds ------------------------------------------------------------------------


def test_onnx_bi_encoder_matches_torch(tmp_path, tiny_bi_encoder, small_corpus, monkeypatch):
    monkeypatch.setenv("QA_SEARCH_CACHE", str(tmp_path / "cache"))
    texts = small_texts(small_corpus)
    torch_vecs = BiEncoder.load(str(tiny_bi_encoder), device="cpu").encode(texts)
    onnx = BiEncoder.load(str(tiny_bi_encoder), device="cpu", backend="onnx")
    assert onnx.backend == "onnx"
    np.testing.assert_allclose(np.sum(onnx.encode(texts, batch_size=4) * torch_vecs, axis=1), 1.0, atol=1e-4)
    int8 = BiEncoder.load(str(tiny_bi_encoder), device="cpu", backend="onnx-int8")
    assert np.sum(int8.encode(texts) * torch_vecs, axis=1).min() > 0.95
    # The fingerprint (model identity) is the PyTorch one whatever the backend.
    assert int8.fingerprint() == onnx.fingerprint()
    report = build_index(small_corpus, tmp_path / "idx", bi_encoder=str(tiny_bi_encoder), encoder_backend="onnx", progress=False)
    assert report.manifest.build["encoder_backend"] == "onnx"
    np.testing.assert_allclose(SearchIndex.load(tmp_path / "idx").dense.index.reconstruct_n(0, 6), torch_vecs, atol=1e-4)


def test_onnx_bi_encoder_refuses_other_pooling(tmp_path, tiny_bi_encoder):
    import shutil

    from pipeline.errors import ConfigError
    from pipeline.models.onnx_encoder import check_supported

    model = tmp_path / "cls"
    shutil.copytree(tiny_bi_encoder, model)
    config = json.loads((model / "1_Pooling" / "config.json").read_text())
    config["pooling_mode"] = "cls"
    (model / "1_Pooling" / "config.json").write_text(json.dumps(config))
    with pytest.raises(ConfigError, match="supports Transformer \\+ mean pooling.*--encoder-backend torch"):
        check_supported(model)


def test_window_tokens_zero_keeps_paragraphs_whole(tmp_path):
    from pipeline.corpus import load_corpus

    long_text = " ".join(generated_texts(1, length=(900, 901)))
    corpus = write_jsonl(tmp_path / "c.jsonl", [long_text])
    assert len(load_corpus(corpus, max_tokens=448, overlap=64).passages) > 1
    whole = load_corpus(corpus, max_tokens=0, overlap=0).passages
    assert len(whole) == 1 and whole[0].id == "d0" and whole[0].text.startswith(long_text[:50])


@pytest.mark.parametrize("kind", ["flat", "hnsw", "ivf-sq"])
def test_similarities_from_stored_vectors_equal_the_search_scores(kind):
    """The blend weighs a candidate's bi-encoder similarity even where the dense list missed it: from the stored vector."""
    from pipeline.index.dense import DenseIndex

    rng = np.random.default_rng(0)
    vectors = rng.normal(size=(1100, 16)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    dense = DenseIndex.build(vectors, kind)
    query = vectors[7] + 0.1 * vectors[9]
    positions = [7, 1099, 3, 500]
    exact = vectors[positions] @ query
    got = dense.similarities(query, positions)
    assert got == pytest.approx(exact, abs=1e-5 if kind != "ivf-sq" else 1e-5)  # ivf-sq keeps exact vectors to re-score
    assert dense.similarities(query, []).shape == (0,)
    if kind == "ivf-sq":  # without exact re-scoring the index keeps no vector to give back
        bare = DenseIndex.create(kind, 16, len(vectors), refine=False)
        bare.train(vectors)
        bare.add(vectors)
        assert bare.similarities(query, positions) is None
