"""An opened index: passages, BM25, FAISS and the manifest, checked against each other.

Opening reads the manifest and file headers only: the passage store is
SQLite, the BM25 matrix and term table are memory-mapped ``.npy`` files and
FAISS is read with ``IO_FLAG_MMAP_IFC``, so a million passages open in well
under a second and pages come in as queries touch them.

Example::

    >>> from pipeline.index import SearchIndex
    >>> SearchIndex.load("indexes/squad-dev").manifest.passages      # doctest: +SKIP
    2067
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from pipeline.config import BM25Engine
from pipeline.errors import IndexMismatchError, IndexNotFoundError
from pipeline.index.bm25 import DIR_NAME as BM25_DIR
from pipeline.index.bm25 import TABLE_FILE as BM25_TABLE
from pipeline.index.bm25 import BM25Index
from pipeline.index.dense import FILE_NAME as DENSE_FILE
from pipeline.index.dense import DenseIndex
from pipeline.index.manifest import Manifest
from pipeline.index.passages import FILE_NAME as PASSAGES_FILE
from pipeline.index.passages import PassageStore
from pipeline.index.staging import data_directory, recover
from pipeline.models.encoder import BiEncoder

DATA_FILES = (PASSAGES_FILE, f"{BM25_DIR}/{BM25_TABLE}", DENSE_FILE)
FINGERPRINT_MIN_COSINE = 0.999


class SearchIndex:
    """An opened index: the passage store, the BM25 index, the FAISS index and the manifest.

    ``index.passages[i]`` is the passage at position ``i`` (the position BM25
    and FAISS return); ``index.position(id)`` goes the other way. ``data_dir``
    is the version directory the files were opened from: an index republished
    while this one is open does not change what it reads.
    """

    def __init__(self, path: Path, manifest: Manifest, passages: PassageStore, bm25: BM25Index, dense: DenseIndex,
                 data_dir: Path | None = None):
        self.path = path
        self.data_dir = data_dir or path
        self.manifest = manifest
        self.passages = passages
        self.bm25 = bm25
        self.dense = dense

    def __len__(self) -> int:
        return len(self.passages)

    def position(self, passage_id: str) -> int:
        return self.passages.position(passage_id)

    @classmethod
    def load(
        cls,
        path: str | Path,
        *,
        bm25_engine: str | BM25Engine | None = None,
        mmap: bool = True,
        nprobe: int | None = None,
        ef_search: int | None = None,
    ) -> "SearchIndex":
        """Open the index at ``path``, checking that its files are there and agree with each other.

        ``bm25_engine`` overrides the engine it was built with (``rank-bm25``
        opens any index); ``nprobe`` / ``ef_search`` override the FAISS search
        settings stored in the manifest; ``mmap=False`` reads everything into memory.
        """
        path = Path(path).expanduser()
        if not path.is_dir() and not recover(path):
            raise IndexNotFoundError(
                f"No index at {path}; build one with: qa-search build --corpus PATH --index {path}"
            )
        manifest = Manifest.load(path)
        data = data_directory(path, manifest.directory)
        missing = [name for name in DATA_FILES if not (data / name).is_file()]
        if missing:
            raise IndexMismatchError(
                f"The index at {path} is incomplete (missing {', '.join(missing)}); rebuild it with: "
                f"qa-search build --corpus PATH --index {path}"
            )
        passages = PassageStore.open(data / PASSAGES_FILE)
        bm25 = BM25Index.load(data, engine=bm25_engine, mmap=mmap)
        params = {k: manifest.faiss[k] for k in ("nlist", "nprobe", "efSearch", "k_factor", "M") if k in manifest.faiss}
        dense = DenseIndex.load(data, manifest.faiss["kind"], params, mmap=mmap, passages=manifest.passages)
        dense.set_params(nprobe=nprobe, efSearch=ef_search)
        counts = {"manifest": manifest.passages, "passages": len(passages), "bm25": len(bm25), "faiss": len(dense)}
        if len(set(counts.values())) != 1:
            detail = ", ".join(f"{k} {v}" for k, v in counts.items())
            raise IndexMismatchError(f"The index at {path} is inconsistent ({detail}); rebuild it.")
        if dense.dimension != manifest.bi_encoder["dimension"]:
            raise IndexMismatchError(
                f"The FAISS index at {path} has dimension {dense.dimension}, the manifest "
                f"{manifest.bi_encoder['dimension']}; rebuild it."
            )
        return cls(path, manifest, passages, bm25, dense, data)

    def close(self) -> None:
        self.passages.close()

    def check_encoder(self, encoder: BiEncoder) -> None:
        """Raise :class:`IndexMismatchError` unless ``encoder`` is the model the index was built with."""
        built = self.manifest.bi_encoder
        hint = f"load it with the bi-encoder {built['name']!r} or rebuild the index with {encoder.name!r}"
        if encoder.dimension != built["dimension"]:
            raise IndexMismatchError(
                f"The index at {self.path} holds {built['dimension']}-d vectors from {built['name']!r}, but "
                f"{encoder.name!r} makes {encoder.dimension}-d vectors: {hint}."
            )
        stored = np.asarray(built["fingerprint"], dtype=np.float32)
        cosine = float(np.dot(stored, np.asarray(encoder.fingerprint(), dtype=np.float32)))
        if cosine < FINGERPRINT_MIN_COSINE:
            raise IndexMismatchError(
                f"The index at {self.path} was built with {built['name']!r}, and {encoder.name!r} embeds text "
                f"differently (probe cosine {cosine:.3f}): {hint}."
            )
