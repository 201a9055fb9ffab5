"""Atomic index writes: build beside the target, publish with one rename, one writer at a time.

Layout. ``INDEX/manifest.json`` is the index's pointer: its ``directory``
field names the version directory that holds the data (``INDEX/v-…/``:
``passages.sqlite``, ``bm25/``, ``dense.faiss`` and a copy of the manifest).
An index written before versions existed has its files beside the manifest
(``directory`` ``"."``) and is read the same way.

Publishing a new version (a build over an existing index, or ``--add``):

1. the new files are written and fsynced in a directory beside the target;
2. that directory is renamed into ``INDEX/`` under a fresh ``v-…`` name;
3. ``manifest.json`` is replaced by one ``os.replace`` — the only step a
   reader can observe, and it is atomic: a reader sees the old version or
   the new one, never none;
4. versions other than the new one and the one before it are deleted. The
   previous version is kept so that a reader that read the old manifest a
   moment ago can still open its files.

A kill at any point leaves a readable index: before step 3 the old one
(the orphan ``v-…`` directory is removed by the next writer), after it the
new one. A new index (no ``INDEX`` yet) is assembled whole in a staging
directory and renamed into place in one step.

Writers take ``.INDEX.lock`` beside the index (``filelock``; the OS releases
it if the process dies), so a second ``build``/``--add`` into the same index
fails at once with a clear message instead of losing the first one's work.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import tempfile
import time
import uuid
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from filelock import FileLock, Timeout

from pipeline.errors import IndexMismatchError, QASearchError
from pipeline.index.manifest import FILE_NAME as MANIFEST_FILE

logger = logging.getLogger(__name__)

VERSION_PATTERN = re.compile(r"^v-[0-9]{14}-[0-9a-f]{8}$")
FLAT = "."
LEGACY_FILES = ("passages.sqlite", "bm25", "dense.faiss")


class IndexLockedError(QASearchError):
    """Another process is writing this index."""


def check_target(final: Path) -> None:
    """Refuse to replace a non-empty directory that is not an index."""
    if final.exists() and not (final / MANIFEST_FILE).is_file() and any(final.iterdir()):
        raise QASearchError(f"{final} exists and is not a qa-search index; choose another --index path.")


def work_directory(final: Path) -> Path:
    """The fixed directory beside ``final`` where a resumable build keeps its chunks."""
    return final.with_name(f".{final.name}.building")


def lock_path(final: Path) -> Path:
    return final.with_name(f".{final.name}.lock")


@contextmanager
def writer_lock(final: str | Path) -> Iterator[None]:
    """Hold the index's write lock; a second writer gets :class:`IndexLockedError` at once."""
    final = Path(final).expanduser()
    final.parent.mkdir(parents=True, exist_ok=True)
    path = lock_path(final)
    lock = FileLock(str(path), timeout=0)
    try:
        lock.acquire()
    except Timeout:
        raise IndexLockedError(
            f"Another qa-search process is writing the index {final} (it holds {path}); wait for it to finish, "
            "then run this again."
        ) from None
    try:
        yield
    finally:
        lock.release()


def data_directory(index: Path, directory: str | None) -> Path:
    """The directory holding an index's files, from its manifest's ``directory`` field (checked: no escape)."""
    directory = directory or FLAT
    if directory == FLAT:
        return index
    if not VERSION_PATTERN.match(directory):
        raise IndexMismatchError(
            f"{index / MANIFEST_FILE} names the data directory {directory!r}, which is not a version directory of "
            "this index; rebuild the index."
        )
    return index / directory


def new_version_name() -> str:
    return f"v-{time.strftime('%Y%m%d%H%M%S', time.gmtime())}-{uuid.uuid4().hex[:8]}"


def fsync_tree(root: Path) -> None:
    """Flush every file under ``root`` and the directories themselves to disk."""
    for path in sorted(root.rglob("*"), key=lambda p: len(p.parts), reverse=True):
        if path.is_file():
            with open(path, "rb") as fh:
                os.fsync(fh.fileno())
        elif path.is_dir():
            fsync_directory(path)
    fsync_directory(root)


def fsync_directory(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:  # platforms that cannot open a directory
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _pointer(manifest_file: Path, version: str) -> str:
    data = json.loads(manifest_file.read_text(encoding="utf-8"))
    data["directory"] = version
    return json.dumps(data, indent=2, ensure_ascii=False) + "\n"


def _current_version(final: Path) -> str | None:
    try:
        return json.loads((final / MANIFEST_FILE).read_text(encoding="utf-8")).get("directory") or FLAT
    except (OSError, ValueError):
        return None


def publish(assembled: Path, final: Path) -> str:
    """Make the finished index in ``assembled`` (files + manifest) the current version of ``final``.

    ``assembled`` must sit in ``final``'s parent directory (same file system)
    and is consumed. Call with :func:`writer_lock` held. Returns the version name.
    """
    fsync_tree(assembled)
    version = new_version_name()
    if not final.exists():
        wrap = Path(tempfile.mkdtemp(prefix=f".{final.name}.staging-", dir=final.parent))
        assembled.rename(wrap / version)
        (wrap / MANIFEST_FILE).write_text(_pointer(wrap / version / MANIFEST_FILE, version), encoding="utf-8")
        fsync_tree(wrap)
        wrap.rename(final)
        fsync_directory(final.parent)
        return version
    previous = _current_version(final)
    assembled.rename(final / version)
    fsync_directory(final)
    tmp = final / f".{MANIFEST_FILE}.{uuid.uuid4().hex[:8]}.tmp"
    tmp.write_text(_pointer(final / version / MANIFEST_FILE, version), encoding="utf-8")
    with open(tmp, "rb") as fh:
        os.fsync(fh.fileno())
    os.replace(tmp, final / MANIFEST_FILE)
    fsync_directory(final)
    remove_stale(final, keep={version, previous or version})
    return version


def remove_stale(final: Path, keep: set[str]) -> None:
    """Delete versions not in ``keep``, half-written temporaries, and flat files once a version replaced them.

    Only a writer holding the lock calls this, so nothing it removes is being written.
    """
    if not final.is_dir():
        return
    for entry in final.iterdir():
        name = entry.name
        stale_version = VERSION_PATTERN.match(name) and name not in keep
        temporary = name.startswith(f".{MANIFEST_FILE}.") and name.endswith(".tmp")
        flat_file = name in LEGACY_FILES and FLAT not in keep
        if stale_version or temporary or flat_file:
            logger.info("Removing %s (no longer part of the index)", entry)
            if entry.is_dir():
                shutil.rmtree(entry, ignore_errors=True)
            else:
                entry.unlink(missing_ok=True)
    for sibling in final.parent.glob(f".{final.name}.staging-*"):
        shutil.rmtree(sibling, ignore_errors=True)


def recover(final: Path) -> bool:
    """Put back an index that an older qa-search left half-swapped (only ``.NAME.old-*`` exists). True if it did."""
    if final.exists():
        return False
    olds = sorted(
        (p for p in final.parent.glob(f".{final.name}.old-*") if (p / MANIFEST_FILE).is_file()),
        key=lambda p: p.stat().st_mtime,
    )
    if not olds:
        return False
    try:
        olds[-1].rename(final)
    except OSError:
        return False
    logger.warning("Recovered the index %s from %s, left by an interrupted write", final, olds[-1].name)
    return True


@contextmanager
def staged_directory(final: Path) -> Iterator[Path]:
    """Yield an empty directory beside ``final``; on success it is published as ``final``'s new version.

    Call with :func:`writer_lock` held. On failure the directory is removed and ``final`` is untouched.
    """
    final = final.expanduser()
    check_target(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{final.name}.staging-", dir=final.parent))
    try:
        yield staging
        publish(staging, final)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
