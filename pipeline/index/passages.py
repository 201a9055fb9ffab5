"""The passage file of an index: one JSON object a line, in index order."""

from __future__ import annotations

import json
from pathlib import Path

from pipeline.corpus import Passage
from pipeline.errors import IndexMismatchError

FILE_NAME = "passages.jsonl"


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
