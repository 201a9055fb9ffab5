"""Build an index from a corpus in chunks (resumable), or add a corpus to one without re-embedding.

An index directory holds ``manifest.json`` and, in the version directory
it names, ``passages.sqlite`` (the passage store), ``bm25/`` (the term table
and bm25s's score matrix) and ``dense.faiss``; none of them is a pickle.

A build streams the corpus in chunks of ``chunk_size`` passages. For each
chunk it appends the passages to the store, tokenises them into a term-table
chunk and embeds them (or takes their rows of ``--vectors``), then records
the chunk as finished in ``build-state.json``. All of this happens in
``.NAME.building/`` beside the target: an interrupted build run again with the
same corpus and settings continues after its last finished chunk. When every
chunk is done, the BM25 matrix and the FAISS index are assembled from the
chunks, the manifest is written last, and the finished files are published
as a new version of the index (:mod:`pipeline.index.staging`: one atomic
rename of the manifest; the old index stays readable throughout). A writer
holds the index's lock from start to end, so two builds or ``--add`` runs into
one index never interleave.

``add_to_index`` copies the passage store, appends the new passages, appends
their terms to the stored term table (old passages are not re-tokenised),
recomputes the BM25 matrix, and writes only the new vectors to FAISS (an
exact delta beside the unchanged, hard-linked main file; see
:meth:`~pipeline.index.dense.DenseIndex.extended`). With ``--vectors``,
``--vectors-check 0`` and no windows it loads no model at all.

Example::

    >>> from pipeline.index import build_index
    >>> build_index("data/dev-v1.1.json", "indexes/squad-dev")     # doctest: +SKIP
"""

from __future__ import annotations

import json
import logging
import shutil
import time
from dataclasses import dataclass, field
from itertools import islice
from pathlib import Path
from typing import Iterable, Iterator

import numpy as np
from tqdm.auto import tqdm

from pipeline.config import DEFAULT_BI_ENCODER, BM25Engine, EncoderBackend, FaissKind
from pipeline.corpus import (
    CorpusReport,
    Passage,
    corpus_checksum,
    iter_passages,
    open_corpus,
)
from pipeline.errors import CorpusError, QASearchError
from pipeline.index.bm25 import DEFAULT_METHOD, BM25Index, BM25Tokenizer, TermTable
from pipeline.index.dense import SIMILARITY, dense_from_vectors
from pipeline.index.manifest import Manifest, utc_now
from pipeline.index.passages import FILE_NAME as PASSAGES_FILE
from pipeline.index.passages import PassageWriter
from pipeline.index.search_index import SearchIndex
from pipeline.index.staging import (
    check_target,
    publish,
    staged_directory,
    work_directory,
    writer_lock,
)
from pipeline.index.vectors import VectorSource, write_shard
from pipeline.models.encoder import BiEncoder

logger = logging.getLogger(__name__)

STATE_FILE = "build-state.json"
DEFAULT_CHUNK_SIZE = 10_000
#: Window size for a bi-encoder that does not say how many tokens it reads.
LEGACY_WINDOW_TOKENS = 448
DEFAULT_VECTORS_CHECK = 8


@dataclass
class BuildReport:
    """What a build or an ``add`` did."""

    index_path: str
    manifest: Manifest
    corpus: CorpusReport
    passages_added: int
    seconds: float
    resumed_chunks: int = 0

    @property
    def passages_per_second(self) -> float:
        return self.passages_added / self.seconds if self.seconds > 0 else 0.0


@dataclass
class Checkpoint:
    """``build-state.json``: the settings a build was started with and how many chunks it finished."""

    directory: Path
    key: dict
    chunks: int = 0
    passages: int = 0
    vectors_checked: int = 0
    seconds: dict = field(default_factory=dict)

    @classmethod
    def open(cls, directory: Path, key: dict, *, resume: bool) -> "Checkpoint":
        """Continue the build in ``directory`` if it was started with ``key``; otherwise start afresh."""
        path = directory / STATE_FILE
        if resume and path.is_file():
            try:
                data = json.loads(path.read_text(encoding="utf-8"))
            except ValueError:
                data = {}
            if data.get("key") == key:
                logger.info("Resuming the build in %s after chunk %d (%d passages)", directory, data["chunks"], data["passages"])
                return cls(directory, key, data["chunks"], data["passages"], data.get("vectors_checked", 0), data.get("seconds", {}))
            logger.info("Discarding the unfinished build in %s (it was started with other settings)", directory)
        if directory.exists():
            shutil.rmtree(directory)
        (directory / "index").mkdir(parents=True)
        (directory / "chunks" / "vectors").mkdir(parents=True)
        state = cls(directory, key)
        state.save()
        return state

    def save(self) -> None:
        data = {
            "key": self.key, "chunks": self.chunks, "passages": self.passages,
            "vectors_checked": self.vectors_checked, "seconds": self.seconds,
        }
        tmp = self.directory / (STATE_FILE + ".tmp")
        tmp.write_text(json.dumps(data, indent=2), encoding="utf-8")
        tmp.replace(self.directory / STATE_FILE)

    def add_seconds(self, stage: str, seconds: float) -> None:
        self.seconds[stage] = round(self.seconds.get(stage, 0.0) + seconds, 3)


@dataclass(frozen=True)
class RecordedModel:
    """The bi-encoder as an index's manifest records it (name, dimension, probe fingerprint), not loaded."""

    name: str
    dimension: int
    probe: tuple[float, ...]
    tokenizer: None = None

    @classmethod
    def of(cls, manifest: Manifest) -> "RecordedModel":
        info = manifest.bi_encoder
        return cls(info["name"], int(info["dimension"]), tuple(info["fingerprint"]))

    def fingerprint(self) -> list[float]:
        return list(self.probe)


def _batched(items: Iterable[Passage], size: int) -> Iterator[list[Passage]]:
    iterator = iter(items)
    while batch := list(islice(iterator, size)):
        yield batch


def _load_encoder(bi_encoder: str | BiEncoder, device: str | None, backend: str | EncoderBackend, progress: bool,
                  allow_download: bool = True) -> BiEncoder:
    if isinstance(bi_encoder, BiEncoder):
        return bi_encoder
    return BiEncoder.load(bi_encoder, device=device, backend=backend, progress=progress, allow_download=allow_download)


def encoder_window(encoder: BiEncoder, asked: int | None = None) -> int:
    """Window size in tokens for ``encoder``: ``asked``, or (``None``) what it reads of a passage.

    A window longer than the bi-encoder's ``max_seq_length`` (less its special
    tokens) would be embedded only up to that limit, its tail never seen by
    dense retrieval, so the default is the limit itself (254 for
    all-MiniLM-L6-v2) and a longer ``asked`` is logged.
    """
    limit = encoder.max_seq_length
    special = 2
    tokenizer = getattr(encoder, "tokenizer", None)
    try:
        special = int(tokenizer.num_special_tokens_to_add(pair=False))
    except (AttributeError, TypeError):
        pass
    reads = limit - special if limit else None
    if asked is None:
        return reads if reads and reads > 0 else LEGACY_WINDOW_TOKENS
    if reads and asked > reads:
        logger.warning("Windows of %d tokens are longer than the bi-encoder %s reads (%d): dense retrieval will not see "
                       "the end of long windows; --window-tokens %d fits it.", asked, encoder.name, reads, reads)
    return asked


def _encoder_info(encoder: BiEncoder) -> dict:
    return {
        "name": encoder.name,
        "dimension": encoder.dimension,
        "max_seq_length": encoder.max_seq_length,
        "fingerprint": encoder.fingerprint(),
    }


def _check_rows(source: VectorSource, encoder: BiEncoder, start: int, chunk: list[Passage], count: int) -> int:
    """Spot-check ``count`` rows of ``source`` for the passages ``chunk`` (at ``start``); returns how many were checked."""
    if count <= 0:
        return 0
    picks = np.unique(np.linspace(0, len(chunk) - 1, num=min(count, len(chunk))).astype(int))
    source.check_passages(encoder, [start + int(i) for i in picks], [chunk[i].text for i in picks], [chunk[i].id for i in picks])
    return len(picks)


def _vectors_key(path: str | Path | None) -> dict | None:
    if path is None:
        return None
    source = Path(path).expanduser().resolve()
    return {"path": str(source), "mtime": source.stat().st_mtime_ns, "rows": len(VectorSource.open(source))}


def build_index(
    corpus: str | Path,
    index: str | Path,
    *,
    bi_encoder: str | BiEncoder = DEFAULT_BI_ENCODER,
    faiss_kind: str | FaissKind = FaissKind.AUTO,
    bm25_engine: str | BM25Engine = BM25Engine.BM25S,
    bm25_method: str = DEFAULT_METHOD,
    vectors: str | Path | None = None,
    vectors_check: int = DEFAULT_VECTORS_CHECK,
    fmt: str = "auto",
    strict: bool = True,
    max_tokens: int | None = None,
    overlap: int = 64,
    batch_size: int = 32,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
    resume: bool = True,
    encoder_backend: str | EncoderBackend = EncoderBackend.TORCH,
    device: str | None = None,
    progress: bool = True,
) -> BuildReport:
    """Read ``corpus`` in chunks and write a complete index to ``index`` (replacing an older one atomically).

    ``vectors``: precomputed passage embeddings (a ``.npy`` or a folder of
    shards, one row per passage in corpus order; see
    :mod:`pipeline.index.vectors`); ``vectors_check`` passages of the first
    chunk and one of every later chunk are re-embedded to check them (0: off).
    ``resume``: continue an interrupted build of the same corpus with the same
    settings (default); ``False`` starts afresh. ``encoder_backend``: ``torch``,
    ``onnx`` or ``onnx-int8`` for embedding the passages (queries are always
    embedded with the model as loaded for search). ``max_tokens``: paragraphs
    longer than this many bi-encoder tokens become windows sharing ``overlap``
    tokens (``None``: what the bi-encoder reads, :func:`encoder_window`; 0 keeps
    paragraphs whole).
    """
    started = time.perf_counter()
    final = Path(index).expanduser()
    with writer_lock(final):
        check_target(final)
        kind = FaissKind.parse(faiss_kind)
        engine = BM25Engine.parse(bm25_engine)
        if chunk_size < 1:
            raise QASearchError(f"--chunk-size must be at least 1 ({chunk_size} given).")
        encoder = _load_encoder(bi_encoder, device, encoder_backend, progress)
        info = _encoder_info(encoder)
        max_tokens = encoder_window(encoder, max_tokens)
        root, corpus_fmt, files = open_corpus(corpus, fmt)
        checksum = corpus_checksum(files, root)
        source = VectorSource.open(vectors) if vectors is not None else None
        if source is not None:
            source.check_model(encoder)
            if source.dimension != encoder.dimension:
                raise QASearchError(
                    f"--vectors {source.path} has {source.dimension}-d vectors, but the bi-encoder {encoder.name!r} makes "
                    f"{encoder.dimension}-d vectors."
                )
        tokenizer = BM25Tokenizer()
        key = {
            "corpus": checksum, "format": corpus_fmt.value, "strict": strict, "bi_encoder": info["name"],
            "fingerprint": info["fingerprint"], "windows": [max_tokens, overlap], "chunk_size": chunk_size,
            "tokenizer": BM25Index(TermTable.empty(), engine=BM25Engine.RANK_BM25).settings_dict()["tokenizer"],
            "vectors": _vectors_key(vectors),
            "encoder_backend": None if vectors is not None else EncoderBackend.parse(encoder_backend).value,
        }
        final.parent.mkdir(parents=True, exist_ok=True)
        work = work_directory(final)
        state = Checkpoint.open(work, key, resume=resume)
        resumed = state.chunks
        out, chunk_dir = work / "index", work / "chunks"
        vocab: dict[str, int] = TermTable.load(chunk_dir / f"{state.chunks - 1:05d}").vocab if state.chunks else {}
        report = CorpusReport()
        bar = (lambda fs: tqdm(fs, desc="Reading corpus", unit="file")) if progress else None
        stream = iter_passages(
            root, corpus_fmt, report=report, strict=strict, tokenizer=encoder.tokenizer,
            max_tokens=max_tokens, overlap=overlap, progress=bar,
        )
        try:
            with PassageWriter(out / PASSAGES_FILE) as writer:
                writer.truncate(state.passages)
                chunks = tqdm(_batched(stream, chunk_size), desc="Chunks", unit="chunk", disable=not progress)
                for number, chunk in enumerate(chunks):
                    if number < state.chunks:
                        continue
                    start = state.passages
                    texts = [p.text for p in chunk]
                    t0 = time.perf_counter()
                    writer.append(chunk)
                    t1 = time.perf_counter()
                    table = TermTable.from_tokens(tokenizer.many(texts), vocab)
                    table.save(chunk_dir / f"{number:05d}")
                    t2 = time.perf_counter()
                    if source is None:
                        write_shard(chunk_dir / "vectors" / f"{number:05d}.npy", encoder.encode(texts, batch_size=batch_size))
                    else:
                        if len(source) < start + len(chunk):
                            raise QASearchError(
                                f"--vectors {source.path} holds {len(source)} vectors, but the corpus has more passages "
                                f"(at least {start + len(chunk)}); they must be one row per passage, in corpus order."
                            )
                        state.vectors_checked += _check_rows(
                            source, encoder, start, chunk, vectors_check if number == 0 else min(1, vectors_check)
                        )
                    t3 = time.perf_counter()
                    state.add_seconds("store", t1 - t0)
                    state.add_seconds("tokenise", t2 - t1)
                    state.add_seconds("embed" if source is None else "check_vectors", t3 - t2)
                    state.chunks, state.passages = number + 1, start + len(chunk)
                    state.save()
            if state.passages == 0:
                raise CorpusError("the corpus holds no text to index", path=str(corpus))
            if source is not None and len(source) != state.passages:
                raise QASearchError(
                    f"--vectors {source.path} holds {len(source)} vectors for {state.passages} passages; "
                    "they must be one row per passage, in corpus order."
                )
            t0 = time.perf_counter()
            table = TermTable.concat([TermTable.load(chunk_dir / f"{c:05d}") for c in range(state.chunks)])
            bm25 = BM25Index(table, engine=engine, method=bm25_method)
            bm25.save(out)
            del table, bm25
            t1 = time.perf_counter()
            dense, recall = dense_from_vectors(source or VectorSource.open(chunk_dir / "vectors"), kind, progress=progress)
            dense.save(out)
            t2 = time.perf_counter()
            state.add_seconds("bm25_matrix", t1 - t0)
            state.add_seconds("faiss", t2 - t1)
            manifest = Manifest(
                passages=state.passages,
                paragraphs=report.paragraphs,
                bi_encoder=info,
                faiss={"kind": dense.kind.value, "requested": kind.value, **dense.params(), **recall},
                bm25=BM25Index.load(out, mmap=True).settings_dict(),
                corpus={"path": str(corpus), "format": report.format, "sha256": checksum, "report": report.to_dict()},
                windows={"max_tokens": max_tokens, "overlap": overlap},
                similarity=SIMILARITY,
                build={
                    "chunk_size": chunk_size, "chunks": state.chunks, "resumed_after_chunk": resumed,
                "encoder_backend": key["encoder_backend"],
                    "vectors": None if source is None else {"path": str(source.path), "checked": state.vectors_checked},
                    "seconds": {**state.seconds, "total_this_run": round(time.perf_counter() - started, 2)},
                },
            )
            manifest.save(out)
        except QASearchError:
            shutil.rmtree(work, ignore_errors=True)  # bad input: nothing worth resuming
            raise
        publish(out, final)
        shutil.rmtree(work, ignore_errors=True)
        seconds = time.perf_counter() - started
        logger.info("Built %s: %d passages in %.1f s", final, state.passages, seconds)
        return BuildReport(str(final), manifest, report, state.passages, seconds, resumed)


def add_to_index(
    index: str | Path,
    corpus: str | Path,
    *,
    bi_encoder: str | BiEncoder | None = None,
    vectors: str | Path | None = None,
    vectors_check: int = DEFAULT_VECTORS_CHECK,
    fmt: str = "auto",
    strict: bool = True,
    batch_size: int = 32,
    encoder_backend: str | EncoderBackend = EncoderBackend.TORCH,
    device: str | None = None,
    progress: bool = True,
) -> BuildReport:
    """Append the passages of ``corpus`` to an existing index, tokenising and embedding only the new ones.

    ``vectors``: one row per passage of ``corpus`` as a build of it alone
    would index them (corpus order); rows of passages already in the index are
    skipped with them.
    """
    started = time.perf_counter()
    final = Path(index).expanduser()
    with writer_lock(final):
        current = SearchIndex.load(final)
        manifest = current.manifest
        source = VectorSource.open(vectors) if vectors is not None else None
        if source is not None and not vectors_check and bi_encoder is None and not manifest.windows["max_tokens"]:
            # Trusted vectors, no windows: nothing needs the model, so it is not loaded (about 10 s at
            # every --add); the vectors' sidecar is checked against the model identity the index records.
            encoder = RecordedModel.of(manifest)
        else:
            # A name taken from the index's manifest is never downloaded (it is someone else's choice of model).
            encoder = _load_encoder(bi_encoder or manifest.bi_encoder["name"], device, encoder_backend, progress,
                                    allow_download=bi_encoder is not None)
            current.check_encoder(encoder)
        if source is not None:
            source.check_model(encoder)
        root, corpus_fmt, files = open_corpus(corpus, fmt)
        report = CorpusReport()
        bar = (lambda fs: tqdm(fs, desc="Reading corpus", unit="file")) if progress else None
        new: list[Passage] = []
        rows: list[int] = []
        stream = iter_passages(
            root, corpus_fmt, report=report, strict=strict, tokenizer=encoder.tokenizer,
            max_tokens=manifest.windows["max_tokens"], overlap=manifest.windows["overlap"], progress=bar,
        )
        for row, passage in enumerate(stream):
            stored = current.passages.text_of(passage.id)
            if stored is not None and stored != passage.text:
                raise CorpusError(f"passage id {passage.id!r} is already in the index with different text", path=str(corpus))
            if stored is not None or current.passages.has_text(passage.text):
                report.duplicates_removed += 1
                continue
            new.append(passage)
            rows.append(row)
        if source is not None and len(source) != report.passages:
            raise QASearchError(
                f"--vectors {source.path} holds {len(source)} vectors for the {report.passages} passages of {corpus}; "
                "they must be one row per passage, in corpus order."
            )
        texts = [p.text for p in new]
        if source is None:
            logger.info("Embedding %d new passages with %s", len(new), encoder.name)
            vectors_new = encoder.encode(texts, batch_size=batch_size, progress=progress)
        else:
            vectors_new = source.take(rows)
            picks = list(range(0, len(new), max(1, len(new) // max(1, vectors_check))))[:vectors_check] if vectors_check else []
            if picks:
                source.check_passages(encoder, [rows[i] for i in picks], [texts[i] for i in picks], [new[i].id for i in picks])
        with staged_directory(final) as staging:
            shutil.copyfile(current.data_dir / PASSAGES_FILE, staging / PASSAGES_FILE)
            with PassageWriter(staging / PASSAGES_FILE) as writer:
                writer.append(new)
            current.bm25.extended(texts).save(staging)
            dense = current.dense.extended(vectors_new, current.data_dir, staging)
            manifest.faiss["delta"] = len(dense) - int(dense.index.ntotal)
            manifest.passages = len(current) + len(new)
            manifest.paragraphs += report.paragraphs
            manifest.bm25 = BM25Index.load(staging, mmap=True).settings_dict()
            manifest.updated_at = utc_now()
            manifest.directory = "."  # the copy inside the version; publish() writes the pointer
            manifest.additions.append(
                {
                    "path": str(corpus),
                    "sha256": corpus_checksum(files, root),
                    "passages": len(new),
                    "at": manifest.updated_at,
                    "vectors": None if source is None else str(source.path),
                    "report": report.to_dict(),
                }
            )
            manifest.save(staging)
            current.close()
        seconds = time.perf_counter() - started
        logger.info("Added %d passages to %s in %.1f s", len(new), final, seconds)
        return BuildReport(str(final), manifest, report, len(new), seconds)
