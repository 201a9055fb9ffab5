"""The vector index: FAISS over L2-normalised bi-encoder embeddings (cosine similarity).

Kinds (``FaissKind``):

* ``flat``: exact inner product; the right choice below about 100,000 passages.
* ``hnsw``: a graph (``M`` = 32), approximate; ``efSearch`` trades speed for recall.
* ``ivf-sq``: inverted lists with an 8-bit scalar quantiser, trained on a
  sample; ``nprobe`` trades speed for recall; the best ``k × k_factor``
  candidates are re-scored exactly (``IndexRefineFlat``, FAISS's ``RFlat``).
* ``ivf-pq``: inverted lists with product quantisation (8-d sub-vectors),
  the smallest on disk; also re-scored exactly unless ``refine`` is off.
* ``auto`` (the default): ``flat`` below :data:`AUTO_FLAT_BELOW` passages,
  ``ivf-sq`` above, as the FAISS guidelines advise.

``nprobe`` / ``efSearch`` / ``k_factor`` are set per index (stored in the
manifest, chosen at build time as the smallest ``nprobe`` that reaches
:data:`TARGET_RECALL` recall@10 against exact search) and can be overridden
per query (:meth:`DenseIndex.search`). Files are FAISS's own binary format
(no pickle), opened memory-mapped (``IO_FLAG_MMAP_IFC``), so opening reads
nothing but the headers and the OS pages vectors in as queries touch them.

Vectors added to a trained index (``qa-search build --add``) go to a small
exact *delta* (``dense-delta.faiss``, flat) beside the main file, which is
not rewritten: an add costs its own vectors, not the whole index. A search
merges both by score. When the delta passes :data:`DELTA_MERGE_SHARE` of the
main index it is merged into it (one full rewrite).

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
import os
import shutil
from pathlib import Path
from typing import Callable, Iterable, Sequence

import faiss
import numpy as np

from pipeline.config import FaissKind
from pipeline.errors import ConfigError, IndexMismatchError

logger = logging.getLogger(__name__)

FILE_NAME = "dense.faiss"
DELTA_FILE = "dense-delta.faiss"
#: The delta is merged into the main index once it holds more than this share of its vectors.
DELTA_MERGE_SHARE = 0.05
SIMILARITY = "cosine (inner product of L2-normalised vectors)"
HNSW_M = 32
HNSW_EF_SEARCH = 128
AUTO_FLAT_BELOW = 100_000
TARGET_RECALL = 0.95
NPROBE_CANDIDATES = (4, 8, 16, 32, 64, 128, 256, 512, 1024)
EF_CANDIDATES = (32, 64, 128, 256, 512)
DEFAULT_K_FACTOR = 4
RECALL_QUERIES = 300
RECALL_NOISE = 0.05
TRAIN_POINTS_PER_LIST = 40
SINGLE_THREAD_BELOW = 8
MAX_TRAIN = 200_000


def resolve_kind(kind: str | FaissKind, n: int) -> FaissKind:
    """``auto`` → ``flat`` below :data:`AUTO_FLAT_BELOW` passages, else ``ivf-sq``."""
    kind = FaissKind.parse(kind)
    if kind is FaissKind.AUTO:
        return FaissKind.FLAT if n < AUTO_FLAT_BELOW else FaissKind.IVF_SQ
    return kind


def ivf_lists(n: int) -> int:
    """About 4·sqrt(n) inverted lists, with at least 39 training points each."""
    return max(1, min(int(4 * math.sqrt(n)), n // 39))


def train_size(kind: FaissKind, n: int) -> int:
    """How many vectors (a sample) the kind is trained on; 0 for kinds with no training."""
    if kind not in (FaissKind.IVF_PQ, FaissKind.IVF_SQ):
        return 0
    return min(n, max(TRAIN_POINTS_PER_LIST * ivf_lists(n), 10_000), MAX_TRAIN)


def _pq_m(dim: int) -> int:
    return next(m for m in (dim // 8, dim // 4, dim // 2, dim) if m and dim % m == 0)


class DenseIndex:
    """A FAISS index (``index``: the main one, of ``kind``) and the exact delta of vectors added since it was built."""

    def __init__(self, index: "faiss.Index", kind: FaissKind, params: dict | None = None,
                 delta: "faiss.Index | None" = None):
        self.index = index
        self.kind = kind
        self.params_: dict = dict(params or {})
        self.delta = delta

    @property
    def dimension(self) -> int:
        return int(self.index.d)

    def __len__(self) -> int:
        return int(self.index.ntotal) + (int(self.delta.ntotal) if self.delta is not None else 0)

    def reconstruct_n(self, start: int, n: int) -> np.ndarray:
        """Stored vectors ``start .. start + n`` (the main index, then the delta)."""
        main = int(self.index.ntotal)
        parts = []
        if start < main:
            parts.append(self.index.reconstruct_n(start, min(n, main - start)))
        rest = start + n - max(start, main)
        if rest > 0 and self.delta is not None:
            parts.append(self.delta.reconstruct_n(max(start, main) - main, rest))
        return np.concatenate(parts) if parts else np.zeros((0, self.dimension), np.float32)

    def similarities(self, query: np.ndarray, positions: Sequence[int]) -> np.ndarray | None:
        """The inner product of one query vector with the stored vectors at ``positions`` (the index's similarity).

        Exact for flat and HNSW indexes and for IVF kinds built with exact re-scoring
        (their stored full vectors); ``None`` where the index keeps no vector it can
        give back (an IVF index without re-scoring).
        """
        query = np.asarray(query, dtype=np.float32).reshape(-1)
        main = int(self.index.ntotal)
        # one ``reconstruct`` per position, not :meth:`reconstruct_n`: on an IVF index without a direct map that
        # scans every inverted list (per search, at any size) and gives the quantised vector, not the stored one
        try:
            vectors = np.stack([self.index.reconstruct(int(p)) if p < main else self.delta.reconstruct(int(p) - main)
                                for p in positions]) if len(positions) else np.zeros((0, self.dimension), np.float32)
        except RuntimeError:  # FAISS: "reconstruct not implemented" / no direct map
            return None
        return vectors @ query

    # -- building -----------------------------------------------------------------------------------

    @classmethod
    def create(cls, kind: str | FaissKind, dim: int, n: int, *, refine: bool = True) -> "DenseIndex":
        """An empty index of ``kind`` for about ``n`` vectors (IVF kinds still need :meth:`train`)."""
        kind = resolve_kind(kind, n)
        params: dict = {}
        if kind is FaissKind.FLAT:
            index = faiss.IndexFlatIP(dim)
        elif kind is FaissKind.HNSW:
            index = faiss.IndexHNSWFlat(dim, HNSW_M, faiss.METRIC_INNER_PRODUCT)
            params = {"M": HNSW_M, "efSearch": HNSW_EF_SEARCH}
        else:
            if n < 1024:
                raise ConfigError(
                    f"{kind.value} needs at least 1,024 passages to train its quantisers ({n} given); use --faiss flat or hnsw."
                )
            nlist = ivf_lists(n)
            quantizer = faiss.IndexFlatIP(dim)
            if kind is FaissKind.IVF_PQ:
                index = faiss.IndexIVFPQ(quantizer, dim, nlist, _pq_m(dim), 8, faiss.METRIC_INNER_PRODUCT)
            else:
                index = faiss.IndexIVFScalarQuantizer(quantizer, dim, nlist, faiss.ScalarQuantizer.QT_8bit, faiss.METRIC_INNER_PRODUCT)
            index.cp.niter = 10
            index.nprobe = min(16, nlist)
            params = {"nlist": nlist, "nprobe": int(index.nprobe)}
            if refine:
                index = faiss.IndexRefineFlat(index)
                index.k_factor = DEFAULT_K_FACTOR
                params["k_factor"] = DEFAULT_K_FACTOR
        return cls(index, kind, params)

    @property
    def needs_training(self) -> bool:
        return not self.index.is_trained

    def train(self, sample: np.ndarray) -> None:
        sample = np.ascontiguousarray(sample, dtype=np.float32)
        logger.info("Training %s (%s) on %d vectors", self.kind.value, self.params_, len(sample))
        self.index.train(sample)

    @classmethod
    def build(cls, vectors: np.ndarray, kind: str | FaissKind = FaissKind.FLAT) -> "DenseIndex":
        """An index of ``vectors`` in memory (trained on them where the kind needs it)."""
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        dense = cls.create(kind, vectors.shape[1], len(vectors))
        if dense.needs_training:
            dense.train(vectors[: train_size(dense.kind, len(vectors))])
        dense.add(vectors)
        return dense

    def add(self, vectors: np.ndarray) -> None:
        """Add to the main index (a build). See :meth:`extended` for adding to a saved index."""
        if len(vectors):
            self.index.add(np.ascontiguousarray(vectors, dtype=np.float32))

    def extended(self, vectors: np.ndarray, source: Path, out: Path) -> "DenseIndex":
        """Write this index plus ``vectors`` into ``out``; ``source`` holds this index's files.

        A flat index, or a delta past :data:`DELTA_MERGE_SHARE`, is rewritten whole; otherwise the main
        file is hard-linked (copied where links are impossible) and only the delta is written.
        """
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        held = int(self.delta.ntotal) if self.delta is not None else 0
        if self.kind is FaissKind.FLAT or held + len(vectors) > DELTA_MERGE_SHARE * self.index.ntotal:
            merged = faiss.read_index(str(source / FILE_NAME))
            if held:
                merged.add(self.delta.reconstruct_n(0, held))
            if len(vectors):
                merged.add(vectors)
            out_index = DenseIndex(merged, self.kind, self.params_)
            out_index.save(out)
            return out_index
        delta = faiss.IndexFlatIP(self.dimension)
        if held:
            delta.add(self.delta.reconstruct_n(0, held))
        if len(vectors):
            delta.add(vectors)
        link_or_copy(source / FILE_NAME, out / FILE_NAME)
        faiss.write_index(delta, str(out / DELTA_FILE))
        return DenseIndex(self.index, self.kind, self.params_, delta)

    # -- searching ----------------------------------------------------------------------------------

    def _search_params(self, nprobe: int | None, ef_search: int | None, k_factor: float | None):
        if self.kind is FaissKind.HNSW:
            return faiss.SearchParametersHNSW(efSearch=int(ef_search or self.params_.get("efSearch", HNSW_EF_SEARCH)))
        if self.kind in (FaissKind.IVF_PQ, FaissKind.IVF_SQ):
            ivf = faiss.SearchParametersIVF(nprobe=int(nprobe or self.params_.get("nprobe", 16)))
            if isinstance(self.index, faiss.IndexRefine):
                factor = float(k_factor or self.params_.get("k_factor", DEFAULT_K_FACTOR))
                return faiss.IndexRefineSearchParameters(k_factor=factor, base_index_params=ivf)
            return ivf
        return None

    def raw_search(self, queries: np.ndarray, k: int, **overrides) -> tuple[np.ndarray, np.ndarray]:
        queries = np.ascontiguousarray(queries, dtype=np.float32)
        params = self._search_params(overrides.get("nprobe"), overrides.get("ef_search"), overrides.get("k_factor"))
        # A few queries gain nothing from OpenMP, and on a busy CPU its thread barriers cost far more
        # than the search (measured: 56 ms with 2 threads vs 1.5 ms with 1 for one query on 10k vectors).
        threads = faiss.omp_get_max_threads()
        if len(queries) < SINGLE_THREAD_BELOW:
            faiss.omp_set_num_threads(1)
        try:
            if params is None:
                scores, ids = self.index.search(queries, k)
            else:
                scores, ids = self.index.search(queries, k, params=params)
            if self.delta is None or not self.delta.ntotal:
                return scores, ids
            d_scores, d_ids = self.delta.search(queries, min(k, int(self.delta.ntotal)))
            d_ids = np.where(d_ids >= 0, d_ids + int(self.index.ntotal), -1)
            scores, ids = np.concatenate([scores, d_scores], axis=1), np.concatenate([ids, d_ids], axis=1)
            scores = np.where(ids >= 0, scores, -np.inf)
            order = np.argsort(-scores, axis=1, kind="stable")[:, :k]
            return np.take_along_axis(scores, order, 1), np.take_along_axis(ids, order, 1)
        finally:
            faiss.omp_set_num_threads(threads)

    def search(
        self,
        queries: np.ndarray,
        k: int,
        *,
        nprobe: int | None = None,
        ef_search: int | None = None,
        k_factor: float | None = None,
    ) -> list[list[tuple[int, float]]]:
        """For each query vector, the ``k`` best (passage position, cosine) pairs.

        ``nprobe`` (IVF kinds), ``ef_search`` (HNSW) and ``k_factor`` (exact
        re-scoring depth) override the index's settings for this call.
        """
        k = min(k, len(self))
        if k <= 0:
            return [[] for _ in range(len(queries))]
        scores, ids = self.raw_search(queries, k, nprobe=nprobe, ef_search=ef_search, k_factor=k_factor)
        return [[(int(i), float(s)) for i, s in zip(row_ids, row_scores) if i >= 0] for row_ids, row_scores in zip(ids, scores)]

    def params(self) -> dict:
        return dict(self.params_)

    def set_params(self, **values) -> None:
        """Change the index's own ``nprobe`` / ``efSearch`` / ``k_factor`` (the defaults of :meth:`search`)."""
        for key, value in values.items():
            if value is not None:
                self.params_[key] = value

    # -- recall against exact search ----------------------------------------------------------------

    def tune(
        self,
        exact: "ExactNeighbours",
        *,
        target: float = TARGET_RECALL,
    ) -> dict:
        """Measure recall@10 against exact search; for IVF/HNSW pick the smallest nprobe/efSearch reaching ``target``.

        Returns the figures stored in the manifest (``recall_at_10`` at the
        chosen setting, and every setting tried).
        """
        if self.kind is FaissKind.FLAT:
            recall = exact.recall(self.raw_search(exact.queries, exact.k)[1])
            return {"recall_at_10": round(recall, 4), "recall_queries": len(exact.queries), "tried": {}}
        key, values = ("efSearch", EF_CANDIDATES) if self.kind is FaissKind.HNSW else ("nprobe", NPROBE_CANDIDATES)
        if key == "nprobe":
            values = tuple(v for v in values if v <= self.params_["nlist"]) or (self.params_["nlist"],)
        tried: dict[str, float] = {}
        chosen, recall = values[-1], 0.0
        for value in values:
            arg = {"ef_search": value} if key == "efSearch" else {"nprobe": value}
            recall = exact.recall(self.raw_search(exact.queries, exact.k, **arg)[1])
            tried[str(value)] = round(recall, 4)
            if recall >= target:
                chosen = value
                break
        self.params_[key] = chosen
        logger.info("Dense %s: %s=%s gives recall@10 %.3f against exact search", self.kind.value, key, chosen, recall)
        return {"recall_at_10": tried[str(chosen)], "recall_queries": len(exact.queries), "tried": {key: tried}}

    # -- files --------------------------------------------------------------------------------------

    def save(self, directory: str | Path) -> Path:
        path = Path(directory) / FILE_NAME
        faiss.write_index(self.index, str(path))
        if self.delta is not None and self.delta.ntotal:
            faiss.write_index(self.delta, str(Path(directory) / DELTA_FILE))
        return path

    @classmethod
    def load(cls, directory: str | Path, kind: str | FaissKind, params: dict | None = None, *, mmap: bool = True,
             passages: int | None = None) -> "DenseIndex":
        """Open ``dense.faiss``; memory-mapped (read-only) unless ``mmap=False`` (needed to add vectors).

        The file comes from whoever built the index, so before FAISS parses it
        its size is bounded by what ``passages`` vectors can take
        (:func:`max_file_bytes`), and after, its index type must be the one
        the manifest's ``kind`` makes; either mismatch is an
        :class:`IndexMismatchError`, never a crash later in a search.
        """
        path = Path(directory) / FILE_NAME
        kind = FaissKind.parse(kind)
        if passages is not None:
            size, limit = path.stat().st_size, max_file_bytes(passages)
            if size > limit:
                raise IndexMismatchError(
                    f"{path} is {size:,} bytes, more than {passages:,} passages can take ({limit:,}); it does not belong "
                    "to this index: rebuild the index."
                )
        try:
            index = faiss.read_index(str(path), faiss.IO_FLAG_MMAP_IFC if mmap else 0)
        except RuntimeError as exc:
            raise IndexMismatchError(f"{path} is not a readable FAISS index ({str(exc).splitlines()[0]}); rebuild the index.") from exc
        found = index_kind(index)
        if found is not kind:
            raise IndexMismatchError(
                f"{path} holds a FAISS {type(index).__name__}, but the manifest says {kind.value}; rebuild the index."
            )
        delta = None
        delta_path = Path(directory) / DELTA_FILE
        if delta_path.is_file():
            if passages is not None and delta_path.stat().st_size > max_file_bytes(passages):
                raise IndexMismatchError(f"{delta_path} is larger than {passages:,} passages can take; rebuild the index.")
            try:
                delta = faiss.read_index(str(delta_path), faiss.IO_FLAG_MMAP_IFC if mmap else 0)
            except RuntimeError as exc:
                raise IndexMismatchError(f"{delta_path} is not a readable FAISS index; rebuild the index.") from exc
            if index_kind(delta) is not FaissKind.FLAT or delta.d != index.d:
                raise IndexMismatchError(f"{delta_path} is not a flat index of {index.d}-d vectors; rebuild the index.")
        return cls(index, kind, params, delta)


def link_or_copy(source: Path, target: Path) -> None:
    """Hard-link ``source`` at ``target`` (files of a published version never change), else copy it."""
    try:
        os.link(source, target)
    except OSError:
        shutil.copyfile(source, target)


def max_file_bytes(passages: int, max_dim: int = 8192) -> int:
    """A generous upper bound on ``dense.faiss`` for ``passages`` vectors of at most ``max_dim`` float32 values.

    Each vector may be stored twice (IVF codes plus the exact copy for re-scoring)
    plus graph links and ids; the fixed part covers quantiser centroids and headers.
    """
    return 64 * 2**20 + 4 * 2**10 * max_dim + passages * (2 * 4 * max_dim + 2048)


def index_kind(index: "faiss.Index") -> FaissKind | None:
    """The :class:`FaissKind` an opened FAISS index was built as (inner-product metric), or None."""
    if isinstance(index, faiss.IndexRefineFlat):
        index = faiss.downcast_index(index.base_index)
    if index.metric_type != faiss.METRIC_INNER_PRODUCT:
        return None
    if isinstance(index, faiss.IndexHNSWFlat):
        return FaissKind.HNSW
    if isinstance(index, faiss.IndexIVFPQ):
        return FaissKind.IVF_PQ
    if isinstance(index, faiss.IndexIVFScalarQuantizer):
        return FaissKind.IVF_SQ
    if isinstance(index, faiss.IndexFlat):
        return FaissKind.FLAT
    return None


class ExactNeighbours:
    """Exact top-k of a query sample over every vector (read in chunks), for recall figures.

    The queries are a seeded sample of the stored vectors with Gaussian noise
    (σ = :data:`RECALL_NOISE` per dimension, then re-normalised): near the data
    like real questions, but not the stored points themselves.
    """

    def __init__(self, queries: np.ndarray, neighbours: np.ndarray, k: int):
        self.queries, self.neighbours, self.k = queries, neighbours, k

    @classmethod
    def compute(
        cls,
        chunks: Callable[[], Iterable[np.ndarray]],
        sample: np.ndarray,
        *,
        k: int = 10,
        seed: int = 0,
    ) -> "ExactNeighbours":
        rng = np.random.default_rng(seed)
        queries = np.asarray(sample, dtype=np.float32) + rng.normal(0, RECALL_NOISE, sample.shape).astype(np.float32)
        queries /= np.linalg.norm(queries, axis=1, keepdims=True)
        best_s = np.full((len(queries), k), -np.inf, dtype=np.float32)
        best_i = np.full((len(queries), k), -1, dtype=np.int64)
        offset = 0
        for chunk in chunks():
            chunk = np.ascontiguousarray(chunk, dtype=np.float32)
            scores = queries @ chunk.T
            kk = min(k, chunk.shape[0])
            part = np.argpartition(-scores, kk - 1, axis=1)[:, :kk]
            s = np.concatenate([best_s, np.take_along_axis(scores, part, 1)], axis=1)
            i = np.concatenate([best_i, part + offset], axis=1)
            order = np.argsort(-s, axis=1, kind="stable")[:, :k]
            best_s, best_i = np.take_along_axis(s, order, 1), np.take_along_axis(i, order, 1)
            offset += chunk.shape[0]
        return cls(queries, best_i, k)

    def recall(self, found: np.ndarray) -> float:
        hits = sum(len(set(f[: self.k].tolist()) & set(t[t >= 0].tolist())) for f, t in zip(found, self.neighbours))
        return hits / float(max(1, int((self.neighbours >= 0).sum())))


def dense_from_vectors(source, kind: str | FaissKind = FaissKind.AUTO, *, chunk: int = 65536, progress: bool = False) -> tuple[DenseIndex, dict]:
    """Build a FAISS index from a vector source (``len``, ``dimension``, ``chunks(size)``, ``sample(n, seed=)``).

    Trains on a seeded sample where the kind needs it, adds the vectors chunk
    by chunk (memory bounded by one chunk plus the index), then measures
    recall@10 against exact search and tunes ``nprobe`` / ``efSearch``
    (:meth:`DenseIndex.tune`). Returns the index and the recall figures.
    """
    from tqdm.auto import tqdm

    n = len(source)
    dense = DenseIndex.create(kind, source.dimension, n)
    if dense.needs_training:
        dense.train(source.sample(train_size(dense.kind, n), seed=0))
    total = (n + chunk - 1) // chunk
    for block in tqdm(source.chunks(chunk), total=total, desc="Indexing vectors", unit="chunk", disable=not progress):
        dense.add(block)
    exact = ExactNeighbours.compute(lambda: source.chunks(chunk), source.sample(min(RECALL_QUERIES, n), seed=1), k=min(10, n))
    return dense, dense.tune(exact)
