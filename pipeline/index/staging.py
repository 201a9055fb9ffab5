"""Atomic index writes: build in a directory beside the target, swap it in at the end."""

from __future__ import annotations

import shutil
import tempfile
import uuid
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from pipeline.errors import QASearchError
from pipeline.index.manifest import FILE_NAME as MANIFEST_FILE


def check_target(final: Path) -> None:
    """Refuse to replace a non-empty directory that is not an index."""
    if final.exists() and not (final / MANIFEST_FILE).is_file() and any(final.iterdir()):
        raise QASearchError(f"{final} exists and is not a qa-search index; choose another --index path.")


def swap_in(staging: Path, final: Path) -> None:
    """Replace ``final`` by ``staging`` with renames only (the old index is readable until the last moment)."""
    old = None
    if final.exists():
        old = final.with_name(f".{final.name}.old-{uuid.uuid4().hex[:8]}")
        final.rename(old)
    try:
        staging.rename(final)
    except BaseException:
        if old is not None:
            old.rename(final)
        raise
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def work_directory(final: Path) -> Path:
    """The fixed directory beside ``final`` where a resumable build keeps its chunks."""
    return final.with_name(f".{final.name}.building")


@contextmanager
def staged_directory(final: Path) -> Iterator[Path]:
    """Yield an empty directory beside ``final``; on success it replaces ``final``, on failure it is removed."""
    final = final.expanduser()
    check_target(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{final.name}.staging-", dir=final.parent))
    try:
        yield staging
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    try:
        swap_in(staging, final)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
