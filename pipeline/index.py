"""Build, extend and open a search index: passages + BM25 + FAISS + manifest in one directory.

An index directory holds ``passages.jsonl``, ``bm25.jsonl.gz``, ``dense.faiss``
and ``manifest.json``; none of them is a pickle. A build (or ``add``) writes a
new directory beside the target and swaps it in with renames only at the end,
so a failed or interrupted build leaves the previous index as it was.

Example::

    >>> from pipeline.index import build_index, SearchIndex
    >>> build_index("data/dev-v1.1.json", "indexes/squad-dev")     # doctest: +SKIP
    >>> SearchIndex.load("indexes/squad-dev").manifest.passages      # doctest: +SKIP
    2067
"""

from __future__ import annotations

import json
import logging
import shutil
import tempfile
import time
import uuid
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np
from tqdm.auto import tqdm

from .bm25 import BM25Index
from .bm25 import FILE_NAME as BM25_FILE
from .config import DEFAULT_BI_ENCODER, FaissKind
from .corpus import CorpusReport, Passage, load_corpus
from .dense import FILE_NAME as DENSE_FILE
from .dense import SIMILARITY, DenseIndex
from .encoder import BiEncoder
from .errors import CorpusError, IndexMismatchError, IndexNotFoundError, QASearchError
from .manifest import FILE_NAME as MANIFEST_FILE
from .manifest import Manifest, utc_now

logger = logging.getLogger(__name__)

PASSAGES_FILE = "passages.jsonl"
INDEX_FILES = (MANIFEST_FILE, PASSAGES_FILE, BM25_FILE, DENSE_FILE)
FINGERPRINT_MIN_COSINE = 0.999


@dataclass
class BuildReport:
    """What a build or an ``add`` did."""

    index_path: str
    manifest: Manifest
    corpus: CorpusReport
    passages_added: int
    seconds: float

    @property
    def passages_per_second(self) -> float:
        return self.passages_added / self.seconds if self.seconds > 0 else 0.0


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


def read_passages(path: Path) -> list[Passage]:
    passages = []
    with path.open("r", encoding="utf-8") as fh:
        for number, line in enumerate(fh, start=1):
            try:
                passages.append(Passage.from_dict(json.loads(line)))
            except (ValueError, KeyError, TypeError) as exc:
                raise IndexMismatchError(f"{path}:{number}: damaged passage record ({exc}); rebuild the index.") from exc
    return passages


def write_passages(path: Path, passages: list[Passage]) -> None:
    with path.open("w", encoding="utf-8") as fh:
        for passage in passages:
            fh.write(json.dumps(passage.to_dict(), ensure_ascii=False) + "\n")


@contextmanager
def staged_directory(final: Path) -> Iterator[Path]:
    """Yield an empty directory beside ``final``; on success it replaces ``final``, on failure it is removed."""
    final = final.expanduser()
    if final.exists() and not (final / MANIFEST_FILE).is_file() and any(final.iterdir()):
        raise QASearchError(f"{final} exists and is not a qa-search index; choose another --index path.")
    final.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{final.name}.building-", dir=final.parent))
    try:
        yield staging
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    old = None
    if final.exists():
        old = final.with_name(f".{final.name}.old-{uuid.uuid4().hex[:8]}")
        final.rename(old)
    try:
        staging.rename(final)
    except BaseException:
        if old is not None:
            old.rename(final)
        shutil.rmtree(staging, ignore_errors=True)
        raise
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def _encode(encoder: BiEncoder, passages: list[Passage], batch_size: int, progress: bool) -> np.ndarray:
    logger.info("Embedding %d passages with %s", len(passages), encoder.name)
    return encoder.encode([p.text for p in passages], batch_size=batch_size, progress=progress)


def _add_vectors(dense: DenseIndex, vectors: np.ndarray, progress: bool, chunk: int = 4096) -> None:
    for start in tqdm(range(0, len(vectors), chunk), desc="Indexing vectors", unit="chunk", disable=not progress):
        dense.add(vectors[start : start + chunk])


def build_index(
    corpus: str | Path,
    index: str | Path,
    *,
    bi_encoder: str | BiEncoder = DEFAULT_BI_ENCODER,
    faiss_kind: str | FaissKind = FaissKind.FLAT,
    fmt: str = "auto",
    strict: bool = True,
    max_tokens: int = 448,
    overlap: int = 64,
    batch_size: int = 32,
    device: str | None = None,
    progress: bool = True,
) -> BuildReport:
    """Read ``corpus`` and write a complete index to ``index`` (replacing an older one atomically)."""
    started = time.perf_counter()
    kind = FaissKind.parse(faiss_kind)
    encoder = bi_encoder if isinstance(bi_encoder, BiEncoder) else BiEncoder.load(bi_encoder, device=device)
    bar = (lambda files: tqdm(files, desc="Reading corpus", unit="file")) if progress else None
    corpus_data = load_corpus(
        corpus, fmt, strict=strict, tokenizer=encoder.tokenizer, max_tokens=max_tokens, overlap=overlap, progress=bar
    )
    passages = corpus_data.passages
    if not passages:
        raise CorpusError("the corpus holds no text to index", path=str(corpus))
    final = Path(index)
    with staged_directory(final) as staging:
        write_passages(staging / PASSAGES_FILE, passages)
        texts = (p.text for p in tqdm(passages, desc="BM25 tokenising", unit="passage", disable=not progress))
        bm25 = BM25Index.from_texts(texts)
        bm25.save(staging)
        vectors = _encode(encoder, passages, batch_size, progress)
        dense = DenseIndex.build(vectors[:0] if kind is not FaissKind.IVF_PQ else vectors, kind)
        if kind is not FaissKind.IVF_PQ:
            _add_vectors(dense, vectors, progress)
        dense.save(staging)
        manifest = Manifest(
            passages=len(passages),
            paragraphs=corpus_data.report.paragraphs,
            bi_encoder={
                "name": encoder.name,
                "dimension": encoder.dimension,
                "max_seq_length": encoder.max_seq_length,
                "fingerprint": encoder.fingerprint(),
            },
            faiss={"kind": kind.value, **dense.params()},
            bm25=bm25.settings_dict(),
            corpus={
                "path": str(corpus),
                "format": corpus_data.report.format,
                "sha256": corpus_data.checksum,
                "report": corpus_data.report.to_dict(),
            },
            windows={"max_tokens": max_tokens, "overlap": overlap},
            similarity=SIMILARITY,
        )
        manifest.corpus["build_seconds"] = round(time.perf_counter() - started, 2)
        manifest.save(staging)
    seconds = time.perf_counter() - started
    logger.info("Built %s: %d passages in %.1f s", final, len(passages), seconds)
    return BuildReport(str(final), manifest, corpus_data.report, len(passages), seconds)


def add_to_index(
    index: str | Path,
    corpus: str | Path,
    *,
    bi_encoder: str | BiEncoder | None = None,
    fmt: str = "auto",
    strict: bool = True,
    batch_size: int = 32,
    device: str | None = None,
    progress: bool = True,
) -> BuildReport:
    """Append the passages of ``corpus`` to an existing index, embedding only the new ones."""
    started = time.perf_counter()
    current = SearchIndex.load(index)
    manifest = current.manifest
    if bi_encoder is None:
        bi_encoder = manifest.bi_encoder["name"]
    encoder = bi_encoder if isinstance(bi_encoder, BiEncoder) else BiEncoder.load(bi_encoder, device=device)
    current.check_encoder(encoder)
    bar = (lambda files: tqdm(files, desc="Reading corpus", unit="file")) if progress else None
    corpus_data = load_corpus(
        corpus,
        fmt,
        strict=strict,
        tokenizer=encoder.tokenizer,
        max_tokens=manifest.windows["max_tokens"],
        overlap=manifest.windows["overlap"],
        exclude_texts={p.text for p in current.passages},
        progress=bar,
    )
    known = {p.id: p.text for p in current.passages}
    new: list[Passage] = []
    for passage in corpus_data.passages:
        if passage.id in known:
            if known[passage.id] == passage.text:
                corpus_data.report.duplicates_removed += 1
                continue
            raise CorpusError(f"passage id {passage.id!r} is already in the index with different text", path=str(corpus))
        new.append(passage)
    final = Path(index)
    with staged_directory(final) as staging:
        write_passages(staging / PASSAGES_FILE, current.passages + new)
        bm25 = current.bm25.extended(p.text for p in new)
        bm25.save(staging)
        vectors = _encode(encoder, new, batch_size, progress)
        _add_vectors(current.dense, vectors, progress)
        current.dense.save(staging)
        manifest.passages = len(current.passages) + len(new)
        manifest.paragraphs += corpus_data.report.paragraphs
        manifest.updated_at = utc_now()
        manifest.additions.append(
            {
                "path": str(corpus),
                "sha256": corpus_data.checksum,
                "passages": len(new),
                "at": manifest.updated_at,
                "report": corpus_data.report.to_dict(),
            }
        )
        manifest.save(staging)
    seconds = time.perf_counter() - started
    logger.info("Added %d passages to %s in %.1f s", len(new), final, seconds)
    return BuildReport(str(final), manifest, corpus_data.report, len(new), seconds)
