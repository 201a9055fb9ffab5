"""An opened index: passages, BM25, FAISS and the manifest, checked against each other.

Example::

    >>> from pipeline.index import SearchIndex
    >>> SearchIndex.load("indexes/squad-dev").manifest.passages      # doctest: +SKIP
    2080
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from pipeline.corpus import Passage
from pipeline.errors import IndexMismatchError, IndexNotFoundError
from pipeline.index.bm25 import FILE_NAME as BM25_FILE
from pipeline.index.bm25 import BM25Index
from pipeline.index.dense import FILE_NAME as DENSE_FILE
from pipeline.index.dense import DenseIndex
from pipeline.index.manifest import FILE_NAME as MANIFEST_FILE
from pipeline.index.manifest import Manifest
from pipeline.index.passages import FILE_NAME as PASSAGES_FILE
from pipeline.index.passages import read_passages
from pipeline.models.encoder import BiEncoder

INDEX_FILES = (MANIFEST_FILE, PASSAGES_FILE, BM25_FILE, DENSE_FILE)
FINGERPRINT_MIN_COSINE = 0.999


class SearchIndex:
    """An opened index: the passages, the BM25 index, the FAISS index and the manifest."""

    def __init__(self, path: Path, manifest: Manifest, passages: list[Passage], bm25: BM25Index, dense: DenseIndex):
        self.path = path
        self.manifest = manifest
        self.passages = passages
        self.bm25 = bm25
        self.dense = dense
        self._positions = {p.id: i for i, p in enumerate(passages)}

    def __len__(self) -> int:
        return len(self.passages)

    def position(self, passage_id: str) -> int:
        return self._positions[passage_id]

    @classmethod
    def load(cls, path: str | Path) -> "SearchIndex":
        """Open the index at ``path``, checking that its files are there and agree with each other."""
        path = Path(path).expanduser()
        if not path.is_dir():
            raise IndexNotFoundError(
                f"No index at {path}; build one with: qa-search build --corpus PATH --index {path}"
            )
        manifest = Manifest.load(path)
        missing = [name for name in INDEX_FILES if not (path / name).is_file()]
        if missing:
            raise IndexMismatchError(f"The index at {path} is incomplete (missing {', '.join(missing)}); rebuild it.")
        passages = read_passages(path / PASSAGES_FILE)
        bm25 = BM25Index.load(path)
        dense = DenseIndex.load(path, manifest.faiss["kind"])
        counts = {"manifest": manifest.passages, "passages": len(passages), "bm25": len(bm25), "faiss": len(dense)}
        if len(set(counts.values())) != 1:
            detail = ", ".join(f"{k} {v}" for k, v in counts.items())
            raise IndexMismatchError(f"The index at {path} is inconsistent ({detail}); rebuild it.")
        if dense.dimension != manifest.bi_encoder["dimension"]:
            raise IndexMismatchError(
                f"The FAISS index at {path} has dimension {dense.dimension}, the manifest "
                f"{manifest.bi_encoder['dimension']}; rebuild it."
            )
        return cls(path, manifest, passages, bm25, dense)

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
