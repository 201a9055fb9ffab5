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

import hashlib
import json
import logging
import re
import unicodedata
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Protocol

from .config import _ChoiceEnum
from .errors import CorpusError

logger = logging.getLogger(__name__)

TEXT_SUFFIXES = (".txt", ".md", ".markdown")
_WIKI_FILE = re.compile(r"^wiki_\d+(\.json|\.jsonl)?$")
_MD_HEADING = re.compile(r"^\s{0,3}#{1,6}\s+(.*)$")
MAX_BAD_RECORDS_KEPT = 100


class CorpusFormat(_ChoiceEnum):
    """Corpus format."""

    AUTO = "auto"
    SQUAD = "squad"
    JSONL = "jsonl"
    FOLDER = "folder"
    WIKIEXTRACTOR = "wikiextractor"


@dataclass(frozen=True)
class Passage:
    """One retrievable unit: a paragraph, or a window of a long paragraph."""

    id: str
    title: str
    text: str
    source_id: str
    start: int = 0
    metadata: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "Passage":
        return cls(
            id=str(data["id"]),
            title=str(data.get("title", "")),
            text=str(data["text"]),
            source_id=str(data.get("source_id", data["id"])),
            start=int(data.get("start", 0)),
            metadata=dict(data.get("metadata") or {}),
        )


@dataclass
class BadRecord:
    path: str
    line: int | None
    reason: str


@dataclass
class CorpusReport:
    """What reading a corpus did, counted."""

    format: str = ""
    files: int = 0
    records: int = 0
    paragraphs: int = 0
    passages: int = 0
    duplicates_removed: int = 0
    empty_skipped: int = 0
    headings_skipped: int = 0
    windows_added: int = 0
    bad_record_count: int = 0
    bad_records: list[BadRecord] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def summary(self) -> str:
        parts = [
            f"{self.passages} passages from {self.paragraphs} paragraphs in {self.files} file(s)",
            f"{self.duplicates_removed} duplicate(s) removed",
            f"{self.empty_skipped} empty skipped",
        ]
        if self.windows_added:
            parts.append(f"{self.windows_added} extra window(s) from long paragraphs")
        if self.headings_skipped:
            parts.append(f"{self.headings_skipped} heading line(s) used as titles")
        if self.bad_record_count:
            parts.append(f"{self.bad_record_count} malformed record(s) SKIPPED")
        return "; ".join(parts)


@dataclass
class Corpus:
    passages: list[Passage]
    report: CorpusReport
    checksum: str


@dataclass
class _Record:
    id: str | None
    title: str
    text: str
    metadata: dict[str, Any]
    path: str
    line: int | None


class Tokenizer(Protocol):  # the part of a Hugging Face fast tokenizer we use
    def __call__(self, text: str, **kwargs: Any) -> Any: ...


def squad_paragraph_id(title: str, paragraph: int) -> str:
    """The id of paragraph ``paragraph`` of SQuAD article ``title``: ``"{title}#{paragraph}"``.

    The SQuAD reader gives paragraphs this id and the evaluation maps each question's
    gold paragraph to it, so both must come from here.
    """
    return f"{title}#{paragraph}"


def clean_text(text: str) -> str:
    """Unicode NFC, every run of white space collapsed to one space, trimmed."""
    return " ".join(unicodedata.normalize("NFC", text).split())


def text_id(title: str, text: str) -> str:
    """A stable id for a record that has none: a hash of its title and text."""
    return hashlib.sha1(f"{title}\n{text}".encode("utf-8")).hexdigest()[:16]


def detect_format(path: Path) -> CorpusFormat:
    if path.is_dir():
        if any(_WIKI_FILE.match(p.name) for p in path.rglob("wiki_*")):
            return CorpusFormat.WIKIEXTRACTOR
        return CorpusFormat.FOLDER
    if _WIKI_FILE.match(path.name):
        return CorpusFormat.WIKIEXTRACTOR
    suffix = path.suffix.lower()
    if suffix in (".jsonl", ".ndjson"):
        return CorpusFormat.JSONL
    if suffix == ".json":
        # SQuAD files are one JSON object with a "data" list; JSON Lines has one object a line.
        with path.open("rb") as fh:
            first_line = fh.readline()
        try:
            obj = json.loads(first_line)
        except ValueError:
            return CorpusFormat.SQUAD
        return CorpusFormat.SQUAD if isinstance(obj, dict) and "data" in obj else CorpusFormat.JSONL
    if suffix in TEXT_SUFFIXES:
        return CorpusFormat.FOLDER
    raise CorpusError(
        "cannot tell the corpus format from the name; pass --format with one of: "
        + ", ".join(f.value for f in CorpusFormat if f is not CorpusFormat.AUTO),
        path=str(path),
    )


def corpus_files(path: Path, fmt: CorpusFormat) -> list[Path]:
    """The files a corpus is read from, in a fixed order."""
    if path.is_file():
        return [path]
    if fmt is CorpusFormat.WIKIEXTRACTOR:
        return sorted(p for p in path.rglob("wiki_*") if p.is_file() and _WIKI_FILE.match(p.name))
    if fmt is CorpusFormat.FOLDER:
        return sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in TEXT_SUFFIXES)
    return sorted(p for p in path.rglob("*") if p.is_file())


def corpus_checksum(files: Iterable[Path], root: Path) -> str:
    """sha256 over every file's relative path and bytes."""
    digest = hashlib.sha256()
    for file in files:
        rel = file.name if root.is_file() else str(file.relative_to(root))
        digest.update(rel.encode("utf-8") + b"\0")
        with file.open("rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                digest.update(chunk)
    return digest.hexdigest()


# --------------------------------------------------------------------------- readers


def _read_text(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise CorpusError(f"not UTF-8 text ({exc.reason} at byte {exc.start})", path=str(path)) from exc


def _read_squad(path: Path) -> Iterator[_Record | BadRecord]:
    try:
        data = json.loads(_read_text(path))
    except json.JSONDecodeError as exc:
        raise CorpusError(f"invalid JSON: {exc.msg}", path=str(path), line=exc.lineno) from exc
    articles = data.get("data") if isinstance(data, dict) else None
    if not isinstance(articles, list):
        raise CorpusError('not SQuAD format: expected an object with a "data" list', path=str(path))
    for a, article in enumerate(articles):
        title = article.get("title") if isinstance(article, dict) else None
        paragraphs = article.get("paragraphs") if isinstance(article, dict) else None
        if not isinstance(title, str) or not isinstance(paragraphs, list):
            yield BadRecord(str(path), a + 1, f'article {a} needs a "title" string and a "paragraphs" list')
            continue
        for p, paragraph in enumerate(paragraphs):
            context = paragraph.get("context") if isinstance(paragraph, dict) else None
            if not isinstance(context, str):
                yield BadRecord(str(path), a + 1, f'article {a} ({title}) paragraph {p} has no "context" string')
                continue
            yield _Record(squad_paragraph_id(title, p), title, context, {"article": a, "paragraph": p}, str(path), a + 1)


def _json_lines(path: Path) -> Iterator[tuple[int, str]]:
    with path.open("rb") as fh:
        for number, raw in enumerate(fh, start=1):
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                raise CorpusError(f"not UTF-8 text ({exc.reason})", path=str(path), line=number) from exc
            if line.strip():
                yield number, line


def _json_objects(path: Path) -> Iterator[tuple[int, dict[str, Any]] | BadRecord]:
    """Each non-blank line parsed as a JSON object, or a :class:`BadRecord` saying why it is not one."""
    for number, line in _json_lines(path):
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as exc:
            yield BadRecord(str(path), number, f"invalid JSON: {exc.msg}")
            continue
        if not isinstance(obj, dict):
            yield BadRecord(str(path), number, "expected a JSON object")
            continue
        yield number, obj


def _read_jsonl(path: Path) -> Iterator[_Record | BadRecord]:
    for item in _json_objects(path):
        if isinstance(item, BadRecord):
            yield item
            continue
        number, obj = item
        text, title, rid = obj.get("text"), obj.get("title", ""), obj.get("id")
        if not isinstance(text, str):
            yield BadRecord(str(path), number, 'missing "text" string')
            continue
        if title is None:
            title = ""
        if not isinstance(title, str):
            yield BadRecord(str(path), number, '"title" must be a string')
            continue
        if rid is not None and (isinstance(rid, bool) or not isinstance(rid, (str, int))):
            yield BadRecord(str(path), number, '"id" must be a string or an integer')
            continue
        metadata = {k: v for k, v in obj.items() if k not in ("id", "title", "text")}
        yield _Record(None if rid is None else str(rid), title, text, metadata, str(path), number)


def _split_paragraphs(text: str) -> list[str]:
    return [p for p in re.split(r"\n\s*\n", text.replace("\r\n", "\n")) if p.strip()]


def _read_text_file(path: Path, root: Path) -> Iterator[_Record | BadRecord]:
    rel = path.name if root.is_file() else str(path.relative_to(root))
    body = _read_text(path)
    title = path.stem
    index = 0
    for paragraph in _split_paragraphs(body):
        heading = _MD_HEADING.match(paragraph) if path.suffix.lower() != ".txt" else None
        if heading and "\n" not in paragraph.strip():
            # A heading alone is structure, not content: it titles what follows.
            title = heading.group(1).strip() or title
            yield _Record(None, title, "", {"heading": True}, str(path), None)
            continue
        yield _Record(f"{rel}#{index}", title, paragraph, {"path": rel}, str(path), None)
        index += 1


def _read_wikiextractor(path: Path) -> Iterator[_Record | BadRecord]:
    for item in _json_objects(path):
        if isinstance(item, BadRecord):
            yield item
            continue
        number, obj = item
        if not isinstance(obj.get("text"), str) or obj.get("id") is None:
            yield BadRecord(str(path), number, 'expected an object with "id" and "text"')
            continue
        title = str(obj.get("title") or "")
        meta = {k: obj[k] for k in ("url", "revid") if k in obj}
        paragraphs = [p for p in obj["text"].split("\n") if p.strip()]
        if paragraphs and clean_text(paragraphs[0]) == clean_text(title):
            paragraphs = paragraphs[1:]  # WikiExtractor repeats the title as the first line
        for i, paragraph in enumerate(paragraphs):
            yield _Record(f"{obj['id']}#{i}", title, paragraph, dict(meta), str(path), number)


# --------------------------------------------------------------------------- windows


def split_windows(text: str, tokenizer: Tokenizer | None, max_tokens: int, overlap: int) -> list[tuple[int, int]]:
    """Character spans of overlapping windows of at most ``max_tokens`` tokens.

    Windows start and end on word boundaries. Without a tokenizer, a word
    counts as one token. Text that fits gives one span covering all of it.
    """
    words = [(m.start(), m.end()) for m in re.finditer(r"\S+", text)]
    if not words:
        return [(0, len(text))]
    if tokenizer is None:
        counts = [1] * len(words)
    else:
        offsets = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)["offset_mapping"]
        counts = [0] * len(words)
        w = 0
        for start, end in offsets:
            if end <= start:
                continue
            while w < len(words) - 1 and start >= words[w][1]:
                w += 1
            counts[w] += 1
        counts = [max(c, 1) for c in counts]
    if sum(counts) <= max_tokens:
        return [(0, len(text))]
    spans: list[tuple[int, int]] = []
    first = 0
    while first < len(words):
        last, used = first, 0
        while last < len(words) and (used + counts[last] <= max_tokens or last == first):
            used += counts[last]
            last += 1
        spans.append((words[first][0], words[last - 1][1]))
        if last >= len(words):
            break
        # Step back so the next window repeats about `overlap` tokens.
        back, kept = last, 0
        while back - 1 > first and kept + counts[back - 1] <= overlap:
            back -= 1
            kept += counts[back]
        first = back
    return spans


# --------------------------------------------------------------------------- load


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
    root = Path(path).expanduser()
    if not root.exists():
        raise CorpusError("no such file or directory", path=str(root))
    fmt = CorpusFormat.parse(fmt)
    if fmt is CorpusFormat.AUTO:
        fmt = detect_format(root)
    files = corpus_files(root, fmt)
    if not files:
        raise CorpusError(f"no {fmt.value} files found", path=str(root))
    report = CorpusReport(format=fmt.value, files=len(files))
    seen_texts: set[str] = set(exclude_texts or ())
    seen_ids: dict[str, str] = {}
    passages: list[Passage] = []
    iterator: Iterable[Path] = progress(files) if progress else files
    for file in iterator:
        if fmt is CorpusFormat.SQUAD:
            records: Iterator[_Record | BadRecord] = _read_squad(file)
        elif fmt is CorpusFormat.JSONL:
            records = _read_jsonl(file)
        elif fmt is CorpusFormat.WIKIEXTRACTOR:
            records = _read_wikiextractor(file)
        else:
            records = _read_text_file(file, root)
        for record in records:
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
            pid = record.id if record.id is not None else text_id(title, text)
            if pid in seen_ids:
                if seen_ids[pid] == text:
                    report.duplicates_removed += 1
                    continue
                message = f"duplicate id {pid!r} with different text"
                if strict:
                    raise CorpusError(message, path=record.path, line=record.line)
                report.bad_record_count += 1
                report.bad_records.append(BadRecord(record.path, record.line, message))
                continue
            if text in seen_texts:
                report.duplicates_removed += 1
                continue
            seen_texts.add(text)
            seen_ids[pid] = text
            report.paragraphs += 1
            spans = split_windows(text, tokenizer, max_tokens, overlap)
            if len(spans) == 1:
                passages.append(Passage(pid, title, text, pid, 0, record.metadata))
            else:
                report.windows_added += len(spans) - 1
                for w, (start, end) in enumerate(spans):
                    passages.append(Passage(f"{pid}~w{w}", title, text[start:end], pid, start, record.metadata))
    report.passages = len(passages)
    logger.info("Read %s: %s", root, report.summary())
    return Corpus(passages, report, corpus_checksum(files, root))
