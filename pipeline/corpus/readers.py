"""The four corpus formats: detection, the files of a corpus, and one reader per format.

Each reader yields a :class:`~pipeline.corpus.records.Record` per paragraph, or a
:class:`~pipeline.corpus.records.BadRecord` saying why a record is malformed.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
from pathlib import Path
from typing import Any, Iterable, Iterator

from pipeline.corpus.clean import clean_text, squad_paragraph_id
from pipeline.corpus.records import BadRecord, CorpusFormat, Record
from pipeline.errors import CorpusError

logger = logging.getLogger(__name__)

TEXT_SUFFIXES = (".txt", ".md", ".markdown")
_WIKI_FILE = re.compile(r"^wiki_\d+(\.json|\.jsonl)?$")
_MD_HEADING = re.compile(r"^\s{0,3}#{1,6}\s+(.*)$")


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
    """The files a corpus is read from, in a fixed order.

    A folder's files are only those inside it: a symbolic link that leads out of the folder (to
    ``/etc/passwd``, another user's notes) is skipped with a warning, never read into the index.
    """
    if path.is_file():
        return [path]
    if fmt is CorpusFormat.WIKIEXTRACTOR:
        found = (p for p in path.rglob("wiki_*") if p.is_file() and _WIKI_FILE.match(p.name))
    elif fmt is CorpusFormat.FOLDER:
        found = (p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in TEXT_SUFFIXES)
    else:
        found = (p for p in path.rglob("*") if p.is_file())
    root = path.resolve()
    inside = []
    for file in found:
        if file.resolve().is_relative_to(root):
            inside.append(file)
        else:
            logger.warning("Skipping %s: it links to a file outside the corpus folder", file)
    return sorted(inside)


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


def _read_text(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise CorpusError(f"not UTF-8 text ({exc.reason} at byte {exc.start})", path=str(path)) from exc


def _read_squad(path: Path) -> Iterator[Record | BadRecord]:
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
            yield Record(squad_paragraph_id(title, p), title, context, {"article": a, "paragraph": p}, str(path), a + 1)


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


def _read_jsonl(path: Path) -> Iterator[Record | BadRecord]:
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
        yield Record(None if rid is None else str(rid), title, text, metadata, str(path), number)


def _split_paragraphs(text: str) -> list[str]:
    return [p for p in re.split(r"\n\s*\n", text.replace("\r\n", "\n")) if p.strip()]


def _read_text_file(path: Path, root: Path) -> Iterator[Record | BadRecord]:
    rel = path.name if root.is_file() else str(path.relative_to(root))
    body = _read_text(path)
    title = path.stem
    index = 0
    for paragraph in _split_paragraphs(body):
        heading = _MD_HEADING.match(paragraph) if path.suffix.lower() != ".txt" else None
        if heading and "\n" not in paragraph.strip():
            # A heading alone is structure, not content: it titles what follows.
            title = heading.group(1).strip() or title
            yield Record(None, title, "", {"heading": True}, str(path), None)
            continue
        yield Record(f"{rel}#{index}", title, paragraph, {"path": rel}, str(path), None)
        index += 1


def _read_wikiextractor(path: Path) -> Iterator[Record | BadRecord]:
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
            yield Record(f"{obj['id']}#{i}", title, paragraph, dict(meta), str(path), number)


# --------------------------------------------------------------------------- windows


def read_records(file: Path, fmt: CorpusFormat, root: Path) -> Iterator[Record | BadRecord]:
    """The records of one corpus file in format ``fmt`` (``root`` names folder paragraphs)."""
    if fmt is CorpusFormat.SQUAD:
        return _read_squad(file)
    if fmt is CorpusFormat.JSONL:
        return _read_jsonl(file)
    if fmt is CorpusFormat.WIKIEXTRACTOR:
        return _read_wikiextractor(file)
    return _read_text_file(file, root)
