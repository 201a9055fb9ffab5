import gzip
import hashlib
import json
import pickle

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


PICKLE_HEADERS = tuple(b"\x80" + bytes([protocol]) for protocol in range(2, 6))  # PROTO opcode, protocols 2-5


def _json_lines(data: bytes) -> None:
    lines = [line for line in data.decode("utf-8").splitlines() if line.strip()]
    assert lines, "no JSON lines"
    for line in lines:
        json.loads(line)


def _npy(path) -> None:
    np.load(path, allow_pickle=False)  # object arrays (pickled) raise ValueError


def _npz(path) -> None:
    with np.load(path, allow_pickle=False) as archive:
        for name in archive.files:
            archive[name]


def _faiss(path) -> None:
    import faiss

    faiss.read_index(str(path))


def _sqlite(path) -> None:
    import sqlite3

    assert path.read_bytes()[:16] == b"SQLite format 3\x00", "not an SQLite database"
    with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as db:
        assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"


def _arrow(path) -> None:
    import pyarrow as pa

    try:
        with pa.memory_map(str(path)) as source:
            pa.ipc.open_file(source).read_all()
    except pa.ArrowInvalid:
        with pa.memory_map(str(path)) as source:
            pa.ipc.open_stream(source).read_all()


def _parquet(path) -> None:
    import pyarrow.parquet as pq

    pq.read_table(str(path))


#: Every format an index may hold, by file-name ending; each reader raises on anything else.
INDEX_FORMATS = {
    ".json": lambda path: json.loads(path.read_bytes().decode("utf-8")),
    ".jsonl": lambda path: _json_lines(path.read_bytes()),
    ".jsonl.gz": lambda path: _json_lines(gzip.decompress(path.read_bytes())),
    ".faiss": _faiss,
    ".npy": _npy,
    ".npz": _npz,
    ".sqlite": _sqlite,
    ".sqlite3": _sqlite,
    ".db": _sqlite,
    ".arrow": _arrow,
    ".feather": _arrow,
    ".parquet": _parquet,
}


def check_index_file(path) -> None:
    """Parse ``path`` with the reader of its format; fail for a pickle (even gzipped) or an unknown format."""
    raw = path.read_bytes()
    data = gzip.decompress(raw) if raw[:2] == b"\x1f\x8b" else raw
    if data.startswith(PICKLE_HEADERS):
        pytest.fail(f"{path.name} is a pickle")
    ending = next((e for e in sorted(INDEX_FORMATS, key=len, reverse=True) if path.name.endswith(e)), None)
    if ending is None:
        pytest.fail(f"{path.name}: not a known index file format ({', '.join(INDEX_FORMATS)})")
    try:
        INDEX_FORMATS[ending](path)
    except Exception as exc:  # noqa: BLE001  (any reader's error: the file is not what its name says)
        pytest.fail(f"{path.name} is not a valid {ending} file: {type(exc).__name__}: {exc}")


def test_index_files_are_known_formats_not_pickles(tiny_index):
    files = sorted(p for p in tiny_index.rglob("*") if p.is_file())
    assert {"manifest.json", "passages.sqlite", "dense.faiss", "data.csc.index.npy", "terms.npy"} <= {p.name for p in files}
    for path in files:
        check_index_file(path)


@pytest.mark.parametrize(
    "name, content",
    [
        ("bm25.jsonl.gz", gzip.compress(pickle.dumps([["capital", "france"]]))),  # gzip hides the pickle header
        ("manifest.json", pickle.dumps({"passages": 6}, protocol=2)),
        ("passages.jsonl", pickle.dumps([{"id": "a"}], protocol=0)),  # protocol 0 has no header
        ("store.pkl", b"anything"),  # unknown format
        ("dense.faiss", b"not a faiss index"),
    ],
    ids=lambda value: value if isinstance(value, str) else "",
)
def test_index_file_check_rejects_pickles_and_unknown_formats(tmp_path, name, content):
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(pytest.fail.Exception, match=name.replace(".", r"\.")):
        check_index_file(path)


def test_index_file_check_rejects_pickled_numpy_arrays(tmp_path):
    path = tmp_path / "ids.npy"
    np.save(path, np.array([{"id": "a"}], dtype=object), allow_pickle=True)
    with pytest.raises(pytest.fail.Exception, match="ids.npy is not a valid .npy file"):
        check_index_file(path)
    np.save(path, np.arange(3))
    check_index_file(path)


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
    assert [p.name for p in tmp_path.iterdir() if p.name != ".pq.lock"] == []  # no staging directory left behind


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
    assert sorted(p.name for p in tmp_path.iterdir()) == [".idx.building", ".idx.lock", "idx"]
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
    data = SearchIndex.load(broken).data_dir
    assert data.parent == broken and data.name.startswith("v-")  # the files live in the version the manifest names
    (data / "dense.faiss").unlink()
    with pytest.raises(IndexMismatchError, match="incomplete \\(missing dense.faiss\\)"):
        SearchIndex.load(broken)
    shutil.rmtree(broken)
    shutil.copytree(tiny_index, broken)
    with PassageWriter(data / "passages.sqlite") as writer:
        writer.append([Passage("extra", "", "extra", "extra")])
    with pytest.raises(IndexMismatchError, match="inconsistent \\(manifest 6, passages 7, bm25 6, faiss 6\\)"):
        SearchIndex.load(broken)
    (broken / "manifest.json").write_text("{not json")
    with pytest.raises(IndexMismatchError, match="not valid JSON"):
        SearchIndex.load(broken)
