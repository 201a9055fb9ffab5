import hashlib
import json

import numpy as np
import pytest

from pipeline.corpus import Passage
from pipeline.errors import (
    CorpusError,
    IndexMismatchError,
    IndexNotFoundError,
    QASearchError,
)
from pipeline.index import SearchIndex, add_to_index, build_index
from pipeline.index.passages import PassageWriter
from pipeline.models.encoder import BiEncoder


def digest_tree(path):
    return {str(p.relative_to(path)): hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(path.rglob("*")) if p.is_file()}


def test_build_writes_complete_manifest(tiny_index, small_corpus):
    index = SearchIndex.load(tiny_index)
    m = index.manifest
    assert m.passages == len(index) == 6
    assert m.bi_encoder["dimension"] == 32 and len(m.bi_encoder["fingerprint"]) == 32
    assert m.faiss["kind"] == "flat" and "cosine" in m.similarity
    assert m.corpus["sha256"] and m.corpus["format"] == "jsonl"
    assert {"faiss-cpu", "rank-bm25", "sentence-transformers", "torch", "python"} <= set(m.versions)
    assert m.created_at


def test_index_files_are_not_pickles(tiny_index):
    files = [p for p in tiny_index.rglob("*") if p.is_file()]
    assert {"manifest.json", "passages.sqlite", "dense.faiss", "data.csc.index.npy", "terms.npy"} <= {p.name for p in files}
    for path in files:
        head = path.read_bytes()[:2]
        assert head[:1] != b"\x80", f"{path.name} looks like a pickle"
        if path.suffix == ".npy":
            np.load(path, allow_pickle=False)  # raises on an object (pickled) array
    json.loads((tiny_index / "manifest.json").read_text())


def test_bm25_finds_the_lexical_match(tiny_index):
    index = SearchIndex.load(tiny_index)
    best, score = index.bm25.search("What is the capital of Germany?", k=3)[0]
    assert index.passages[best].id == "berlin" and score > 0


@pytest.mark.parametrize("kind", ["flat", "hnsw"])
def test_dense_kinds_return_exact_neighbour_for_stored_vector(tmp_path, small_corpus, tiny_bi_encoder, kind):
    out = tmp_path / kind
    build_index(small_corpus, out, bi_encoder=str(tiny_bi_encoder), faiss_kind=kind, progress=False)
    index = SearchIndex.load(out)
    encoder = BiEncoder.load(str(tiny_bi_encoder), device="cpu")
    vec = encoder.encode([index.passages[3].text])
    (pos, score), *_ = index.dense.search(vec, k=2)[0]
    assert pos == 3 and score == pytest.approx(1.0, abs=1e-4)


def test_ivf_pq_refuses_tiny_corpora_with_advice(tmp_path, small_corpus, tiny_bi_encoder):
    with pytest.raises(QASearchError, match="ivf-pq needs at least 1,024 passages.*flat or hnsw"):
        build_index(small_corpus, tmp_path / "pq", bi_encoder=str(tiny_bi_encoder), faiss_kind="ivf-pq", progress=False)
    assert not (tmp_path / "pq").exists()
    assert list(tmp_path.iterdir()) == []  # no staging directory left behind


def test_interrupted_rebuild_leaves_old_index_intact(tmp_path, small_corpus, tiny_bi_encoder, monkeypatch):
    out = tmp_path / "idx"
    build_index(small_corpus, out, bi_encoder=str(tiny_bi_encoder), progress=False)
    before = digest_tree(out)

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr("pipeline.index.dense.DenseIndex.save", interrupted)
    with pytest.raises(KeyboardInterrupt):
        build_index(small_corpus, out, bi_encoder=str(tiny_bi_encoder), progress=False)
    assert digest_tree(out) == before
    # The unfinished build waits beside the index for a resume; the index itself is untouched.
    assert sorted(p.name for p in tmp_path.iterdir()) == [".idx.building", "idx"]
    assert len(SearchIndex.load(out)) == 6


def test_failed_add_leaves_index_intact(tmp_path, small_corpus, tiny_bi_encoder):
    out = tmp_path / "idx"
    build_index(small_corpus, out, bi_encoder=str(tiny_bi_encoder), progress=False)
    before = digest_tree(out)
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"id": "ok", "text": "fine"}\n{oops\n', encoding="utf-8")
    with pytest.raises(CorpusError, match="bad.jsonl:2"):
        add_to_index(out, bad, bi_encoder=str(tiny_bi_encoder), progress=False)
    assert digest_tree(out) == before


def test_build_refuses_to_overwrite_a_non_index_directory(tmp_path, small_corpus, tiny_bi_encoder):
    target = tmp_path / "photos"
    target.mkdir()
    (target / "holiday.jpg").write_bytes(b"\xff\xd8")
    with pytest.raises(QASearchError, match="is not a qa-search index"):
        build_index(small_corpus, target, bi_encoder=str(tiny_bi_encoder), progress=False)
    assert (target / "holiday.jpg").read_bytes() == b"\xff\xd8"


def test_add_appends_without_reembedding_old_passages(tmp_path, small_corpus, tiny_bi_encoder, monkeypatch):
    out = tmp_path / "idx"
    build_index(small_corpus, out, bi_encoder=str(tiny_bi_encoder), progress=False)
    old = SearchIndex.load(out)
    old_vectors = old.dense.index.reconstruct_n(0, len(old))
    extra = tmp_path / "extra.jsonl"
    extra.write_text(
        json.dumps({"id": "tokyo", "title": "Japan", "text": "Tokyo is the capital of Japan."}) + "\n"
        + json.dumps({"id": "paris", "title": "France", "text": "Paris is the capital and largest city of France."}) + "\n",
        encoding="utf-8",
    )
    encoded = []
    original = BiEncoder.encode

    def counting(self, texts, **kwargs):
        encoded.extend(texts)
        return original(self, texts, **kwargs)

    monkeypatch.setattr(BiEncoder, "encode", counting)
    report = add_to_index(out, extra, progress=False)
    assert report.passages_added == 1 and report.corpus.duplicates_removed == 1
    # Only the new passage (and the fingerprint probe) were embedded.
    assert "Tokyo is the capital of Japan." in encoded
    assert not any("Paris" in t for t in encoded)
    new = SearchIndex.load(out)
    assert len(new) == 7 and new.manifest.passages == 7 and len(new.manifest.additions) == 1
    np.testing.assert_array_equal(new.dense.index.reconstruct_n(0, 6), old_vectors)
    best, _ = new.bm25.search("capital of Japan", k=1)[0]
    assert new.passages[best].id == "tokyo"


def test_add_with_conflicting_id_is_refused(tmp_path, small_corpus, tiny_bi_encoder):
    out = tmp_path / "idx"
    build_index(small_corpus, out, bi_encoder=str(tiny_bi_encoder), progress=False)
    extra = tmp_path / "extra.jsonl"
    extra.write_text(json.dumps({"id": "paris", "text": "Paris is in Texas too."}) + "\n", encoding="utf-8")
    with pytest.raises(CorpusError, match="'paris' is already in the index with different text"):
        add_to_index(out, extra, progress=False)


def test_model_mismatch_on_load(tiny_index, other_tiny_bi_encoder, tiny_bi_encoder):
    index = SearchIndex.load(tiny_index)
    index.check_encoder(BiEncoder.load(str(tiny_bi_encoder), device="cpu"))
    with pytest.raises(IndexMismatchError, match="was built with .* embeds text differently"):
        index.check_encoder(BiEncoder.load(str(other_tiny_bi_encoder), device="cpu"))


def test_dimension_mismatch_on_load(tiny_index, minilm_path):
    index = SearchIndex.load(tiny_index)
    with pytest.raises(IndexMismatchError, match="holds 32-d vectors .* makes 384-d vectors"):
        index.check_encoder(BiEncoder.load(str(minilm_path), device="cpu"))


def test_missing_and_damaged_indexes(tmp_path, tiny_index):
    import shutil

    with pytest.raises(IndexNotFoundError, match="qa-search build --corpus PATH --index"):
        SearchIndex.load(tmp_path / "nothing")
    broken = tmp_path / "broken"
    shutil.copytree(tiny_index, broken)
    (broken / "dense.faiss").unlink()
    with pytest.raises(IndexMismatchError, match="incomplete \\(missing dense.faiss\\)"):
        SearchIndex.load(broken)
    shutil.rmtree(broken)
    shutil.copytree(tiny_index, broken)
    with PassageWriter(broken / "passages.sqlite") as writer:
        writer.append([Passage("extra", "", "extra", "extra")])
    with pytest.raises(IndexMismatchError, match="inconsistent \\(manifest 6, passages 7, bm25 6, faiss 6\\)"):
        SearchIndex.load(broken)
    (broken / "manifest.json").write_text("{not json")
    with pytest.raises(IndexMismatchError, match="not valid JSON"):
        SearchIndex.load(broken)
