"""The passage store of an index: an SQLite file with random access by position and by id.

``passages.sqlite`` has one table, ``passages(pos, id, title, text,
source_id, start, metadata)``; ``pos`` is the passage's position in the BM25
and FAISS indexes (the primary key), ``id`` is unique (SQLite keeps a B-tree
on it). Opening a store reads nothing but the file header, so a million
passages open in milliseconds; ``store[i]`` and ``store.position(id)`` are
single indexed look-ups, and no dict of ids is held in Python memory.

Example::

    >>> import tempfile, pathlib
    >>> from pipeline.corpus import Passage, text_digest
    >>> from pipeline.index.passages import PassageStore, PassageWriter
    >>> path = pathlib.Path(tempfile.mkdtemp()) / "passages.sqlite"
    >>> with PassageWriter(path) as w:
    ...     w.append([Passage("a", "T", "Alpha.", "a"), Passage("b", "T", "Beta.", "b")])
    >>> store = PassageStore.open(path)
    >>> store[1].text, store.position("a"), len(store)
    ('Beta.', 0, 2)
"""

from __future__ import annotations

import json
import sqlite3
import threading
from pathlib import Path
from typing import Iterable, Iterator, Sequence

from pipeline.corpus import Passage, text_digest
from pipeline.errors import IndexMismatchError

FILE_NAME = "passages.sqlite"
_SCHEMA = """
CREATE TABLE IF NOT EXISTS passages (
    pos INTEGER PRIMARY KEY,
    id TEXT NOT NULL UNIQUE,
    title TEXT NOT NULL,
    text TEXT NOT NULL,
    source_id TEXT NOT NULL,
    start INTEGER NOT NULL,
    metadata TEXT,
    text_hash BLOB NOT NULL
);
CREATE INDEX IF NOT EXISTS passages_text_hash ON passages (text_hash);
"""
_COLUMNS = "id, title, text, source_id, start, metadata"


def _row_to_passage(row: tuple) -> Passage:
    pid, title, text, source_id, start, metadata = row
    return Passage(pid, title, text, source_id, start, json.loads(metadata) if metadata else {})


class PassageWriter:
    """Appends passages to a store, one transaction per :meth:`append`; usable as a context manager."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self._db = sqlite3.connect(self.path)
        self._db.execute("PRAGMA journal_mode=DELETE")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.executescript(_SCHEMA)
        self._db.commit()

    def __len__(self) -> int:
        (n,) = self._db.execute("SELECT COALESCE(MAX(pos) + 1, 0) FROM passages").fetchone()
        return int(n)

    def append(self, passages: Iterable[Passage]) -> int:
        """Add ``passages`` after the last one, atomically; returns how many were added."""
        start = len(self)
        rows = [
            (
                start + i, p.id, p.title, p.text, p.source_id, p.start,
                json.dumps(p.metadata, ensure_ascii=False) if p.metadata else None, text_digest(p.text),
            )
            for i, p in enumerate(passages)
        ]
        with self._db:
            self._db.executemany(f"INSERT INTO passages (pos, {_COLUMNS}, text_hash) VALUES (?, ?, ?, ?, ?, ?, ?, ?)", rows)
        return len(rows)

    def truncate(self, count: int) -> None:
        """Drop every passage at position ``count`` or later (an unfinished chunk of a resumed build)."""
        with self._db:
            self._db.execute("DELETE FROM passages WHERE pos >= ?", (count,))

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> "PassageWriter":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class PassageStore:
    """Read-only random access to an index's passages: ``store[i]``, ``len(store)``, ``store.position(id)``.

    Iterating reads the passages in position order, in pages; the store is
    safe to share between threads (a lock serialises the SQLite calls).
    """

    PAGE = 2000

    def __init__(self, db: sqlite3.Connection, path: Path, count: int):
        self._db = db
        self._lock = threading.Lock()
        self.path = path
        self._count = count

    @classmethod
    def open(cls, path: str | Path) -> "PassageStore":
        path = Path(path)
        try:
            db = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True, check_same_thread=False)
            (count,) = db.execute("SELECT COALESCE(MAX(pos) + 1, 0) FROM passages").fetchone()
        except sqlite3.DatabaseError as exc:
            raise IndexMismatchError(f"{path} is not a readable passage store ({exc}); rebuild the index.") from exc
        return cls(db, path, int(count))

    def __len__(self) -> int:
        return self._count

    def _query(self, sql: str, args: tuple) -> list[tuple]:
        with self._lock:
            return self._db.execute(sql, args).fetchall()

    def __getitem__(self, item):
        if isinstance(item, slice):
            return [self[i] for i in range(*item.indices(self._count))]
        i = int(item)
        if i < 0:
            i += self._count
        if not 0 <= i < self._count:
            raise IndexError(f"passage position {item} out of range (0..{self._count - 1})")
        rows = self._query(f"SELECT {_COLUMNS} FROM passages WHERE pos = ?", (i,))
        if not rows:
            raise IndexMismatchError(f"{self.path} has no passage at position {i}; rebuild the index.")
        return _row_to_passage(rows[0])

    def many(self, positions: Sequence[int]) -> list[Passage]:
        """The passages at ``positions`` (in that order), with one query."""
        wanted = [int(p) for p in positions]
        found: dict[int, Passage] = {}
        for start in range(0, len(wanted), 500):
            part = wanted[start : start + 500]
            marks = ",".join("?" * len(part))
            for row in self._query(f"SELECT pos, {_COLUMNS} FROM passages WHERE pos IN ({marks})", tuple(part)):
                found[row[0]] = _row_to_passage(row[1:])
        missing = [p for p in wanted if p not in found]
        if missing:
            raise IndexError(f"no passage at position(s) {missing[:5]}")
        return [found[p] for p in wanted]

    def position(self, passage_id: str) -> int:
        """The position of the passage with this id; ``KeyError`` if there is none."""
        rows = self._query("SELECT pos FROM passages WHERE id = ?", (passage_id,))
        if not rows:
            raise KeyError(passage_id)
        return int(rows[0][0])

    def has_text(self, text: str) -> bool:
        """Whether a passage with exactly this text is stored (looked up by its digest)."""
        return bool(self._query("SELECT 1 FROM passages WHERE text_hash = ? LIMIT 1", (text_digest(text),)))

    def text_of(self, passage_id: str) -> str | None:
        rows = self._query("SELECT text FROM passages WHERE id = ?", (passage_id,))
        return rows[0][0] if rows else None

    def __iter__(self) -> Iterator[Passage]:
        for start in range(0, self._count, self.PAGE):
            rows = self._query(
                f"SELECT {_COLUMNS} FROM passages WHERE pos >= ? AND pos < ? ORDER BY pos", (start, start + self.PAGE)
            )
            yield from (_row_to_passage(r) for r in rows)

    def close(self) -> None:
        with self._lock:
            self._db.close()
