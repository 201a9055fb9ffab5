"""Read a corpus into clean, de-duplicated passages.

Supported inputs (``fmt="auto"`` picks by looking at the path):

* ``squad``: SQuAD-format JSON (``{"data": [{"title", "paragraphs": [{"context"}]}]}``);
  ids are ``"{title}#{paragraph index}"``.
* ``jsonl``: JSON Lines, one ``{"id", "title", "text", ...}`` object a line;
  ``text`` is required, other keys become metadata; a missing id becomes a
  hash of title and text.
* ``folder``: a directory of ``.txt`` / ``.md`` files; paragraphs are split
  on blank lines, ids are ``"{relative path}#{paragraph index}"``.
* ``wikiextractor``: WikiExtractor ``--json`` output (``AA/wiki_00`` ...);
  paragraphs are the lines of each article's text, ids ``"{doc id}#{index}"``.

Whitespace is collapsed, empty paragraphs are counted and skipped, exact
duplicates (same cleaned text) are removed and counted, and paragraphs longer
than ``max_tokens`` become overlapping windows (``source_id`` links each
window to its paragraph, ``start`` gives its character offset there).

A malformed record raises :class:`~pipeline.errors.CorpusError` with its path
and line (or record) number; with ``strict=False`` it is skipped, logged and
counted in :attr:`CorpusReport.bad_records` instead. Nothing is dropped
without being counted.

Example::

    >>> from pipeline.corpus import load_corpus
    >>> corpus = load_corpus("data/dev-v1.1.json")        # doctest: +SKIP
    >>> corpus.report.passages                              # doctest: +SKIP
    2067
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator

from pipeline.corpus.clean import clean_text, text_digest, text_id
from pipeline.corpus.readers import (
    corpus_checksum,
    corpus_files,
    detect_format,
    read_records,
)
from pipeline.corpus.records import (
    BadRecord,
    Corpus,
    CorpusFormat,
    CorpusReport,
    Passage,
)
from pipeline.corpus.windows import Tokenizer, split_windows
from pipeline.errors import CorpusError

logger = logging.getLogger(__name__)

MAX_BAD_RECORDS_KEPT = 100


def open_corpus(path: str | Path, fmt: str | CorpusFormat = CorpusFormat.AUTO) -> tuple[Path, CorpusFormat, list[Path]]:
    """Resolve ``path`` and ``fmt`` (detecting ``auto``) to the corpus root, its format and its files."""
    root = Path(path).expanduser()
    if not root.exists():
        raise CorpusError("no such file or directory", path=str(root))
    fmt = CorpusFormat.parse(fmt)
    if fmt is CorpusFormat.AUTO:
        fmt = detect_format(root)
    files = corpus_files(root, fmt)
    if not files:
        raise CorpusError(f"no {fmt.value} files found", path=str(root))
    return root, fmt, files


def iter_passages(
    path: str | Path,
    fmt: str | CorpusFormat = CorpusFormat.AUTO,
    *,
    report: CorpusReport | None = None,
    strict: bool = True,
    tokenizer: Tokenizer | None = None,
    max_tokens: int = 448,
    overlap: int = 64,
    exclude: Callable[[str], bool] | None = None,
    progress: Callable[[Iterable[Any]], Iterable[Any]] | None = None,
) -> Iterator[Passage]:
    """:func:`load_corpus` as a stream: yields passages one by one and fills ``report`` as it goes.

    Memory stays bounded by the corpus's distinct ids and 16-byte digests of
    its texts (for de-duplication), not by its text. ``exclude(text)`` says
    that a cleaned paragraph text is already indexed (counted as a duplicate).
    ``max_tokens <= 0`` keeps every paragraph whole (no tokenizer call): for
    corpora that are already split, such as DPR's 100-word Wikipedia passages.
    """
    root, fmt, files = open_corpus(path, fmt)
    report = report if report is not None else CorpusReport()
    report.format, report.files = fmt.value, len(files)
    seen_texts: set[bytes] = set()
    seen_ids: dict[str, bytes] = {}
    iterator: Iterable[Path] = progress(files) if progress else files
    for file in iterator:
        for record in read_records(file, fmt, root):
            if isinstance(record, BadRecord):
                if strict:
                    raise CorpusError(
                        record.reason + " (use --skip-bad-records to skip such records)",
                        path=record.path,
                        line=record.line,
                    )
                report.bad_record_count += 1
                if len(report.bad_records) < MAX_BAD_RECORDS_KEPT:
                    report.bad_records.append(record)
                logger.warning("Skipped malformed record %s:%s: %s", record.path, record.line, record.reason)
                continue
            if record.metadata.get("heading"):
                report.headings_skipped += 1
                continue
            report.records += 1
            text, title = clean_text(record.text), clean_text(record.title)
            if not text:
                report.empty_skipped += 1
                continue
            digest = text_digest(text)
            pid = record.id if record.id is not None else text_id(title, text)
            if pid in seen_ids:
                if seen_ids[pid] == digest:
                    report.duplicates_removed += 1
                    continue
                message = f"duplicate id {pid!r} with different text"
                if strict:
                    raise CorpusError(message, path=record.path, line=record.line)
                report.bad_record_count += 1
                report.bad_records.append(BadRecord(record.path, record.line, message))
                continue
            if digest in seen_texts or (exclude is not None and exclude(text)):
                report.duplicates_removed += 1
                continue
            seen_texts.add(digest)
            seen_ids[pid] = digest
            report.paragraphs += 1
            spans = split_windows(text, tokenizer, max_tokens, overlap) if max_tokens > 0 else [(0, len(text))]
            if len(spans) == 1:
                report.passages += 1
                yield Passage(pid, title, text, pid, 0, record.metadata)
            else:
                report.windows_added += len(spans) - 1
                for w, (start, end) in enumerate(spans):
                    report.passages += 1
                    yield Passage(f"{pid}~w{w}", title, text[start:end], pid, start, record.metadata)
    logger.info("Read %s: %s", root, report.summary())


def load_corpus(
    path: str | Path,
    fmt: str | CorpusFormat = CorpusFormat.AUTO,
    *,
    strict: bool = True,
    tokenizer: Tokenizer | None = None,
    max_tokens: int = 448,
    overlap: int = 64,
    exclude_texts: set[str] | None = None,
    progress: Callable[[Iterable[Any]], Iterable[Any]] | None = None,
) -> Corpus:
    """Read, clean, de-duplicate and window the corpus at ``path``.

    Args:
        fmt: a :class:`CorpusFormat` value, or ``"auto"``.
        strict: raise on the first malformed record (default); otherwise skip
            and count it.
        tokenizer: counts tokens for windowing (the bi-encoder's); ``None``
            counts words.
        max_tokens / overlap: window size and the tokens two windows share.
        exclude_texts: cleaned paragraph texts already indexed (for ``--add``):
            they count as duplicates.
        progress: wraps the file iterator (a tqdm factory), optional.
    """
    report = CorpusReport()
    excluded = set(exclude_texts or ())
    passages = list(
        iter_passages(
            path, fmt, report=report, strict=strict, tokenizer=tokenizer, max_tokens=max_tokens, overlap=overlap,
            exclude=excluded.__contains__ if excluded else None, progress=progress,
        )
    )
    _, _, files = open_corpus(path, fmt)
    return Corpus(passages, report, corpus_checksum(files, Path(path).expanduser()))
