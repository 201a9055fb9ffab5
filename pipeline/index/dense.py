"""The vector index: FAISS over L2-normalised bi-encoder embeddings (cosine similarity).

Kinds: ``flat`` (exact inner product), ``hnsw`` (graph, approximate, fast on
large collections) and ``ivf-pq`` (compressed, for collections too large for
memory as floats). Files are written with ``faiss.write_index``, FAISS's own
binary format (no pickle).

Example::

    >>> import numpy as np
    >>> from pipeline.index.dense import DenseIndex
    >>> vecs = np.eye(3, dtype="float32")
    >>> DenseIndex.build(vecs, "flat").search(vecs[1:2], k=1)[0][0][0]
    1
"""

from __future__ import annotations

import logging
import math
from pathlib import Path

import faiss
import numpy as np

from pipeline.config import FaissKind
from pipeline.errors import ConfigError

logger = logging.getLogger(__name__)

FILE_NAME = "dense.faiss"
SIMILARITY = "cosine (inner product of L2-normalised vectors)"
HNSW_M = 32
HNSW_EF_SEARCH = 128


def _ivf_pq_params(n: int, dim: int) -> tuple[int, int]:
    """(nlist, m) for IVF-PQ: about 4*sqrt(n) lists, sub-vectors of 8 dimensions where they divide evenly."""
    if n < 1024:
        raise ConfigError(
            f"ivf-pq needs at least 1,024 passages to train its quantisers ({n} given); use --faiss flat or hnsw."
        )
    nlist = max(1, min(int(4 * math.sqrt(n)), n // 39))
    m = next(m for m in (dim // 8, dim // 4, dim // 2, dim) if m and dim % m == 0)
    return nlist, m


class DenseIndex:
    def __init__(self, index: "faiss.Index", kind: FaissKind):
        self.index = index
        self.kind = kind

    @property
    def dimension(self) -> int:
        return int(self.index.d)

    def __len__(self) -> int:
        return int(self.index.ntotal)

    @classmethod
    def build(cls, vectors: np.ndarray, kind: str | FaissKind = FaissKind.FLAT) -> "DenseIndex":
        kind = FaissKind.parse(kind)
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        n, dim = vectors.shape
        if kind is FaissKind.FLAT:
            index = faiss.IndexFlatIP(dim)
        elif kind is FaissKind.HNSW:
            index = faiss.IndexHNSWFlat(dim, HNSW_M, faiss.METRIC_INNER_PRODUCT)
            index.hnsw.efSearch = HNSW_EF_SEARCH
        else:
            nlist, m = _ivf_pq_params(n, dim)
            quantizer = faiss.IndexFlatIP(dim)
            index = faiss.IndexIVFPQ(quantizer, dim, nlist, m, 8, faiss.METRIC_INNER_PRODUCT)
            logger.info("Training IVF-PQ (nlist=%d, m=%d) on %d vectors", nlist, m, n)
            index.train(vectors)
            index.nprobe = min(16, nlist)
        if n:
            index.add(vectors)
        return cls(index, kind)

    def params(self) -> dict:
        if self.kind is FaissKind.HNSW:
            return {"M": HNSW_M, "efSearch": HNSW_EF_SEARCH}
        if self.kind is FaissKind.IVF_PQ:
            ivf = faiss.extract_index_ivf(self.index)
            return {"nlist": int(ivf.nlist), "nprobe": int(ivf.nprobe)}
        return {}

    def add(self, vectors: np.ndarray) -> None:
        if len(vectors):
            self.index.add(np.ascontiguousarray(vectors, dtype=np.float32))

    def search(self, queries: np.ndarray, k: int) -> list[list[tuple[int, float]]]:
        """For each query vector, the ``k`` best (passage position, cosine) pairs."""
        k = min(k, len(self))
        if k <= 0:
            return [[] for _ in range(len(queries))]
        scores, ids = self.index.search(np.ascontiguousarray(queries, dtype=np.float32), k)
        return [[(int(i), float(s)) for i, s in zip(row_ids, row_scores) if i >= 0] for row_ids, row_scores in zip(ids, scores)]

    def save(self, directory: str | Path) -> Path:
        path = Path(directory) / FILE_NAME
        faiss.write_index(self.index, str(path))
        return path

    @classmethod
    def load(cls, directory: str | Path, kind: str | FaissKind) -> "DenseIndex":
        index = faiss.read_index(str(Path(directory) / FILE_NAME))
        kind = FaissKind.parse(kind)
        if kind is FaissKind.HNSW:
            index.hnsw.efSearch = HNSW_EF_SEARCH
        elif kind is FaissKind.IVF_PQ:
            faiss.extract_index_ivf(index).nprobe = min(16, faiss.extract_index_ivf(index).nlist)
        return cls(index, kind)
