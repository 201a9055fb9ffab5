"""Passage vectors on disk: one ``.npy`` file or a folder of ``.npy`` shards, in passage order.

This is how embeddings computed elsewhere (a GPU machine, a cluster job that
writes one shard per worker) come into an index: ``qa-search build --vectors
PATH``. A build that embeds passages itself writes its chunks in the same
layout and assembles the FAISS index through the same :class:`VectorSource`.

* A folder's shards are taken in the natural order of their names
  (``part-2.npy`` before ``part-10.npy``); each must be a 2-D float array
  (float32 or float16) of the same width. Nothing is unpickled
  (``allow_pickle=False``) and shards are memory-mapped, so a million
  vectors cost no memory until read.
* Rows are L2-normalised when read (cosine similarity), and a zero row is an
  error.
* An optional sidecar ``vectors.json`` (beside the file, or in the folder)
  may name the model (``{"model": ..., "fingerprint": [...]}``, the
  fingerprint being the model's embedding of
  :data:`pipeline.models.encoder.PROBE_TEXT`); it is checked against the
  index's bi-encoder.
* :meth:`VectorSource.check_passages` re-embeds a few passages with the
  index's bi-encoder and requires cosine ≥ :data:`MIN_CHECK_COSINE`: this
  catches vectors from another model and vectors in another order.

Example::

    >>> import numpy as np, tempfile, pathlib
    >>> from pipeline.index.vectors import VectorSource
    >>> folder = pathlib.Path(tempfile.mkdtemp())
    >>> np.save(folder / "part-0.npy", np.eye(3, 4, dtype="float32"))
    >>> np.save(folder / "part-1.npy", np.ones((2, 4), dtype="float32"))
    >>> src = VectorSource.open(folder)
    >>> len(src), src.dimension, src.read(2, 4).shape
    (5, 4, (2, 4))
"""

from __future__ import annotations

import json
import logging
import re
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np

from pipeline.errors import IndexMismatchError, QASearchError

logger = logging.getLogger(__name__)

META_FILE = "vectors.json"
MIN_CHECK_COSINE = 0.98
MIN_FINGERPRINT_COSINE = 0.999


def _natural_key(path: Path) -> list:
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", path.name)]


def shard_paths(path: Path) -> list[Path]:
    """The ``.npy`` files of ``path`` (itself, or a folder's, in natural name order)."""
    if path.is_file():
        return [path]
    if path.is_dir():
        return sorted(path.glob("*.npy"), key=_natural_key)
    return []


class VectorSource:
    """Rows ``0..len-1`` of one or more memory-mapped ``.npy`` shards, read as normalised float32."""

    def __init__(self, path: Path, shards: list[Path], arrays: list[np.ndarray], meta: dict | None = None):
        self.path = path
        self.shards = shards
        self._arrays = arrays
        self._offsets = np.cumsum([0] + [len(a) for a in arrays])
        self.meta = meta or {}

    @classmethod
    def open(cls, path: str | Path) -> "VectorSource":
        path = Path(path).expanduser()
        shards = shard_paths(path)
        if not shards:
            raise QASearchError(f"--vectors {path}: no such .npy file or folder of .npy shards.")
        arrays = []
        for shard in shards:
            try:
                array = np.load(shard, mmap_mode="r", allow_pickle=False)
            except (ValueError, OSError) as exc:
                raise QASearchError(f"--vectors {shard}: not a readable .npy array ({exc}).") from exc
            if array.ndim != 2 or array.dtype.kind != "f":
                raise QASearchError(
                    f"--vectors {shard}: expected a 2-D float array (passages × dimensions), found {array.dtype} {array.shape}."
                )
            if arrays and array.shape[1] != arrays[0].shape[1]:
                raise QASearchError(
                    f"--vectors {shard}: {array.shape[1]} dimensions, but {shards[0].name} has {arrays[0].shape[1]}."
                )
            arrays.append(array)
        meta_path = path / META_FILE if path.is_dir() else path.with_name(META_FILE)
        meta = json.loads(meta_path.read_text(encoding="utf-8")) if meta_path.is_file() else None
        return cls(path, shards, arrays, meta)

    def __len__(self) -> int:
        return int(self._offsets[-1])

    @property
    def dimension(self) -> int:
        return int(self._arrays[0].shape[1])

    def read(self, start: int, stop: int) -> np.ndarray:
        """Rows ``start:stop`` as normalised float32 (across shard boundaries)."""
        stop = min(stop, len(self))
        parts = []
        for array, offset in zip(self._arrays, self._offsets[:-1]):
            a, b = max(start, offset), min(stop, offset + len(array))
            if a < b:
                parts.append(np.asarray(array[a - offset : b - offset], dtype=np.float32))
        rows = np.concatenate(parts) if parts else np.zeros((0, self.dimension), np.float32)
        return self._normalise(rows, start)

    def _normalise(self, rows: np.ndarray, start: int) -> np.ndarray:
        norms = np.linalg.norm(rows, axis=1, keepdims=True)
        bad = np.flatnonzero((norms[:, 0] == 0) | ~np.isfinite(norms[:, 0]))
        if len(bad):
            raise QASearchError(f"--vectors {self.path}: row {start + int(bad[0])} is zero or not finite.")
        return rows / norms

    def take(self, positions: Sequence[int]) -> np.ndarray:
        """The rows at ``positions`` (any order)."""
        return np.concatenate([self.read(int(p), int(p) + 1) for p in positions]) if len(positions) else np.zeros((0, self.dimension), np.float32)

    def chunks(self, size: int = 65536) -> Iterator[np.ndarray]:
        for start in range(0, len(self), size):
            yield self.read(start, start + size)

    def sample(self, count: int, *, seed: int = 0) -> np.ndarray:
        """``count`` distinct rows chosen at random (seeded), in position order."""
        count = min(count, len(self))
        positions = np.sort(np.random.default_rng(seed).choice(len(self), size=count, replace=False))
        return self.take(positions)

    def check_model(self, encoder) -> None:
        """If the sidecar names a model, it must embed the probe text like ``encoder``."""
        fingerprint = self.meta.get("fingerprint")
        if fingerprint is None:
            return
        cosine = float(np.dot(np.asarray(fingerprint, np.float32), np.asarray(encoder.fingerprint(), np.float32)))
        if len(fingerprint) != encoder.dimension or cosine < MIN_FINGERPRINT_COSINE:
            raise IndexMismatchError(
                f"--vectors {self.path} were made with {self.meta.get('model', 'another model')!r}, which embeds the probe "
                f"text differently from the bi-encoder {encoder.name!r} (cosine {cosine:.3f}); pass --bi-encoder with that model."
            )

    def check_passages(self, encoder, positions: Sequence[int], texts: Sequence[str], ids: Sequence[str]) -> float:
        """Re-embed ``texts`` (the passages at ``positions``) and compare; returns the lowest cosine.

        Raises :class:`IndexMismatchError` naming the first passage whose stored
        vector is not the bi-encoder's embedding of its text.
        """
        if self.dimension != encoder.dimension:
            raise IndexMismatchError(
                f"--vectors {self.path} has {self.dimension}-d vectors, but the bi-encoder {encoder.name!r} makes "
                f"{encoder.dimension}-d vectors."
            )
        if not len(positions):
            return 1.0
        cosines = np.sum(self.take(positions) * encoder.encode(list(texts)), axis=1)
        worst = int(np.argmin(cosines))
        if cosines[worst] < MIN_CHECK_COSINE:
            raise IndexMismatchError(
                f"--vectors {self.path}: row {positions[worst]} (passage {ids[worst]!r}) has cosine {cosines[worst]:.3f} to "
                f"{encoder.name!r}'s embedding of that passage (need ≥ {MIN_CHECK_COSINE}): the vectors come from another "
                f"model or are not in passage order. Pass --vectors-check 0 to skip this check."
            )
        return float(cosines[worst])


def write_shard(path: Path, vectors: np.ndarray) -> None:
    """Write one shard atomically (temporary name, then rename)."""
    tmp = path.with_name(path.name + ".tmp.npy")
    np.save(tmp, np.ascontiguousarray(vectors, dtype=np.float32), allow_pickle=False)
    tmp.replace(path)
