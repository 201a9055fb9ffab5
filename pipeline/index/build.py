"""Build an index from a corpus, or add a corpus to one, without re-embedding what is there.

An index directory holds ``passages.jsonl``, ``bm25.jsonl.gz``, ``dense.faiss``
and ``manifest.json``; none of them is a pickle. A build (or ``add``) writes a
new directory beside the target and swaps it in with renames only at the end,
so a failed or interrupted build leaves the previous index as it was.

Example::

    >>> from pipeline.index import build_index
    >>> build_index("data/dev-v1.1.json", "indexes/squad-dev")     # doctest: +SKIP
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from pipeline.config import DEFAULT_BI_ENCODER, FaissKind
from pipeline.corpus import CorpusReport, Passage, load_corpus
from pipeline.errors import CorpusError
from pipeline.index.bm25 import BM25Index
from pipeline.index.dense import SIMILARITY, DenseIndex
from pipeline.index.manifest import Manifest, utc_now
from pipeline.index.passages import FILE_NAME as PASSAGES_FILE
from pipeline.index.passages import write_passages
from pipeline.index.search_index import SearchIndex
from pipeline.index.staging import staged_directory
from pipeline.models.encoder import BiEncoder

logger = logging.getLogger(__name__)


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
    chosen = bi_encoder is not None
    if bi_encoder is None:
        bi_encoder = manifest.bi_encoder["name"]
    encoder = bi_encoder if isinstance(bi_encoder, BiEncoder) else BiEncoder.load(
        bi_encoder, device=device, allow_download=chosen)  # the manifest's name: never downloaded
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
