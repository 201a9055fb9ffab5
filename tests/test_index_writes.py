"""Index files from strangers and index writes under failure (issue 17: findings 5 and 11).

Each test fails on the write path that renamed the old index aside and the new one in (a window with
no index, no lock, hidden leftovers shown in the picker), or on a loader that trusted the files.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import threading
from pathlib import Path

import faiss
import numpy as np
import pytest

from pipeline.errors import IndexMismatchError
from pipeline.index import SearchIndex, add_to_index, build_index
from pipeline.index.staging import IndexLockedError, writer_lock

REPO = Path(__file__).resolve().parents[1]


def _add_corpus(tmp_path: Path, name: str, texts: list[str]) -> Path:
    path = tmp_path / f"{name}.jsonl"
    path.write_text("".join(json.dumps({"id": f"{name}-{i}", "title": name, "text": t}) + "\n" for i, t in enumerate(texts)))
    return path


@pytest.fixture
def index_copy(tmp_path, tiny_index) -> Path:
    out = tmp_path / "indexes" / "idx"
    shutil.copytree(tiny_index, out)
    return out


# --------------------------------------------------------------------------- 5: untrusted index files


def test_faiss_file_of_another_kind_is_refused_before_any_search(index_copy):
    index = SearchIndex.load(index_copy)
    assert index.manifest.faiss["kind"] == "flat"
    hnsw = faiss.IndexHNSWFlat(index.dense.dimension, 8, faiss.METRIC_INNER_PRODUCT)
    hnsw.add(np.eye(len(index), index.dense.dimension, dtype=np.float32))
    faiss.write_index(hnsw, str(index.data_dir / "dense.faiss"))
    with pytest.raises(IndexMismatchError, match="holds a FAISS IndexHNSWFlat, but the manifest says flat"):
        SearchIndex.load(index_copy)


def test_faiss_file_larger_than_its_passages_allow_is_not_parsed(index_copy, monkeypatch):
    data = SearchIndex.load(index_copy).data_dir
    with open(data / "dense.faiss", "r+b") as fh:  # sparse: no disk is used
        fh.truncate(2**31)
    monkeypatch.setattr(faiss, "read_index", lambda *a, **k: pytest.fail("FAISS parsed an oversized file"))
    with pytest.raises(IndexMismatchError, match="more than 6 passages can take"):
        SearchIndex.load(index_copy)


def test_term_table_with_pickled_or_misshapen_arrays_is_refused(index_copy):
    bm25 = SearchIndex.load(index_copy).data_dir / "bm25"
    good = np.load(bm25 / "doc_ptr.npy")
    np.save(bm25 / "doc_ptr.npy", np.array([{"x": 1}], dtype=object), allow_pickle=True)
    with pytest.raises(IndexMismatchError, match="unreadable term table.*Python objects"):
        SearchIndex.load(index_copy)
    np.save(bm25 / "doc_ptr.npy", good[:-1])
    with pytest.raises(IndexMismatchError, match="damaged term table \\(the passage pointers do not cover the terms\\)"):
        SearchIndex.load(index_copy)
    np.save(bm25 / "doc_ptr.npy", good.astype(np.float64))
    with pytest.raises(IndexMismatchError, match="damaged term table \\(doc_ptr is float64"):
        SearchIndex.load(index_copy)


def test_vocabulary_larger_than_its_postings_is_not_read(index_copy, monkeypatch):
    bm25 = SearchIndex.load(index_copy).data_dir / "bm25"
    vocab = bm25 / "vocab.index.json"
    with open(vocab, "r+b") as fh:
        fh.truncate(2**30)  # sparse; a reader that loads it whole would take a GiB
    real_read = Path.read_text

    def read_text(self, *args, **kwargs):
        if self.name == "vocab.index.json":
            pytest.fail("the oversized vocabulary was read")
        return real_read(self, *args, **kwargs)

    monkeypatch.setattr(Path, "read_text", read_text)
    with pytest.raises(IndexMismatchError, match="more than its .* postings can name"):
        SearchIndex.load(index_copy)


def test_bm25s_matrix_that_does_not_fit_the_table_is_refused(index_copy):
    bm25 = SearchIndex.load(index_copy).data_dir / "bm25"
    indptr = np.load(bm25 / "indptr.csc.index.npy")
    np.save(bm25 / "indptr.csc.index.npy", np.concatenate([indptr, indptr[-1:] + 10**6]))
    with pytest.raises(IndexMismatchError, match="BM25 matrix that does not fit its term table"):
        SearchIndex.load(index_copy)


def test_manifest_cannot_point_the_data_directory_outside_the_index(index_copy, tmp_path):
    manifest = json.loads((index_copy / "manifest.json").read_text())
    shutil.copytree(SearchIndex.load(index_copy).data_dir, tmp_path / "elsewhere")
    for escape in ("../elsewhere", str(tmp_path / "elsewhere"), "v-1/../../elsewhere"):
        manifest["directory"] = escape
        (index_copy / "manifest.json").write_text(json.dumps(manifest))
        with pytest.raises(IndexMismatchError, match="not a version directory of this index"):
            SearchIndex.load(index_copy)


# --------------------------------------------------------------------------- 11: index writes


def test_an_index_is_readable_at_every_step_of_a_rewrite(index_copy, tmp_path, tiny_bi_encoder, monkeypatch):
    """Between any two file-system steps of ``--add``, the index opens: old or new, never missing or mixed."""
    seen: list[int] = []
    real_rename, real_replace = Path.rename, os.replace

    def opens() -> None:
        seen.append(len(SearchIndex.load(index_copy)))

    def rename(self, target):
        opens()
        result = real_rename(self, target)
        opens()
        return result

    def replace(src, dst):
        opens()
        real_replace(src, dst)
        opens()

    monkeypatch.setattr(Path, "rename", rename)
    monkeypatch.setattr(os, "replace", replace)
    add_to_index(index_copy, _add_corpus(tmp_path, "more", ["Lyon is a city in France.", "Porto is in Portugal."]),
                 bi_encoder=str(tiny_bi_encoder), progress=False)
    assert seen and set(seen) <= {6, 8} and seen[-1] == 8


def test_a_reader_keeps_its_version_while_the_index_is_replaced(index_copy, tmp_path, tiny_bi_encoder):
    reader = SearchIndex.load(index_copy)
    first = reader.data_dir
    for n in range(2):
        add_to_index(index_copy, _add_corpus(tmp_path, f"more{n}", [f"Extra paragraph number {n} about Lisbon."]),
                     bi_encoder=str(tiny_bi_encoder), progress=False)
    assert len(SearchIndex.load(index_copy)) == 8
    # The reader opened before both writes still reads its own files.
    assert len(reader) == 6 and reader.passages[0].text and reader.bm25.search("Berlin", 3)
    assert reader.dense.search(np.ones((1, reader.dense.dimension), np.float32), 3)[0]
    # Versions: the current one and the one before it are kept; older ones are removed.
    versions = sorted(p.name for p in index_copy.iterdir() if p.name.startswith("v-"))
    assert len(versions) == 2 and first.name not in versions


def test_a_kill_before_the_manifest_switch_leaves_the_old_index(index_copy, tmp_path, tiny_bi_encoder, monkeypatch):
    before = SearchIndex.load(index_copy)
    ids = [before.passages[i].id for i in range(len(before))]

    def killed(src, dst):
        raise KeyboardInterrupt

    monkeypatch.setattr(os, "replace", killed)
    with pytest.raises(KeyboardInterrupt):
        add_to_index(index_copy, _add_corpus(tmp_path, "more", ["Lyon is a city in France."]),
                     bi_encoder=str(tiny_bi_encoder), progress=False)
    monkeypatch.undo()
    after = SearchIndex.load(index_copy)
    assert [after.passages[i].id for i in range(len(after))] == ids
    # The next writer removes the orphaned version and finishes normally.
    add_to_index(index_copy, _add_corpus(tmp_path, "again", ["Porto is in Portugal."]),
                 bi_encoder=str(tiny_bi_encoder), progress=False)
    versions = [p.name for p in index_copy.iterdir() if p.name.startswith("v-")]
    assert len(versions) == 2 and len(SearchIndex.load(index_copy)) == 7


def test_a_second_writer_gets_a_clear_error_and_the_first_loses_nothing(index_copy, tmp_path, tiny_bi_encoder):
    holder = subprocess.Popen(
        [sys.executable, "-c",
         "import sys; from pipeline.index.staging import writer_lock\n"
         f"with writer_lock({str(index_copy)!r}):\n    print('held', flush=True); sys.stdin.read()"],
        cwd=REPO, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(IndexLockedError, match="Another qa-search process is writing the index .*idx"):
            add_to_index(index_copy, _add_corpus(tmp_path, "more", ["Lyon is a city in France."]),
                         bi_encoder=str(tiny_bi_encoder), progress=False)
        with pytest.raises(IndexLockedError):
            build_index(_add_corpus(tmp_path, "other", ["Only this."]), index_copy, bi_encoder=str(tiny_bi_encoder),
                        progress=False)
        assert len(SearchIndex.load(index_copy)) == 6
    finally:
        holder.communicate("")
    # The lock dies with its holder: the next writer goes ahead.
    add_to_index(index_copy, _add_corpus(tmp_path, "more", ["Lyon is a city in France."]),
                 bi_encoder=str(tiny_bi_encoder), progress=False)
    assert len(SearchIndex.load(index_copy)) == 7


def test_concurrent_writers_in_threads_never_interleave(index_copy, tmp_path, tiny_bi_encoder):
    corpora = [_add_corpus(tmp_path, f"t{n}", [f"Thread {n} wrote this paragraph about Vienna."]) for n in range(2)]
    outcomes: list[str] = []

    def write(corpus):
        try:
            add_to_index(index_copy, corpus, bi_encoder=str(tiny_bi_encoder), progress=False)
            outcomes.append("added")
        except IndexLockedError:
            outcomes.append("locked")

    with writer_lock(index_copy):  # hold it so both threads meet a held lock at least once
        threads = [threading.Thread(target=write, args=(c,)) for c in corpora]
        [t.start() for t in threads]
        [t.join() for t in threads]
    assert outcomes == ["locked", "locked"]
    assert len(SearchIndex.load(index_copy)) == 6


def test_an_index_left_half_swapped_by_an_older_writer_is_recovered_on_open(index_copy):
    aside = index_copy.with_name(f".{index_copy.name}.old-1a2b3c4d")
    index_copy.rename(aside)
    assert len(SearchIndex.load(index_copy)) == 6
    assert index_copy.is_dir() and not aside.exists()


def test_picker_lists_no_hidden_directories(index_copy, monkeypatch):
    from pipeline.apps.ui import page

    parent = index_copy.parent
    for hidden in (".idx.old-1a2b3c4d", ".idx.staging-x1", ".idx.building"):
        shutil.copytree(index_copy, parent / hidden)
    monkeypatch.setattr(page, "INDEXES_DIR", parent)
    assert page.built_indexes() == [str(index_copy)]
