"""The index manifest: what an index holds and how it was built (``manifest.json``)."""

from __future__ import annotations

import json
import platform
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import Any

from pipeline.errors import IndexMismatchError, IndexNotFoundError

FILE_NAME = "manifest.json"
FORMAT_VERSION = 3
READABLE_FORMATS = (2, 3)  # 2: files beside the manifest; 3: ``directory`` names the version holding them


def library_versions() -> dict[str, str]:
    versions = {"python": platform.python_version()}
    for dist in ("qa-search", "faiss-cpu", "bm25s", "rank-bm25", "sentence-transformers", "torch", "transformers", "numpy"):
        try:
            versions[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            versions[dist] = "not installed"
    return versions


def utc_now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


@dataclass
class Manifest:
    """Everything needed to check that an index is whole and used with the right models.

    ``bi_encoder`` has ``name``, ``dimension``, ``max_seq_length`` and
    ``fingerprint`` (the embedding of a probe text, which identifies the model
    whatever path it is loaded from).
    """

    passages: int
    paragraphs: int
    bi_encoder: dict[str, Any]
    faiss: dict[str, Any]
    bm25: dict[str, Any]
    corpus: dict[str, Any]
    windows: dict[str, Any]
    similarity: str
    versions: dict[str, str] = field(default_factory=library_versions)
    created_at: str = field(default_factory=utc_now)
    updated_at: str | None = None
    additions: list[dict[str, Any]] = field(default_factory=list)
    build: dict[str, Any] = field(default_factory=dict)
    directory: str = "."
    format_version: int = FORMAT_VERSION

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def save(self, directory: str | Path) -> Path:
        path = Path(directory) / FILE_NAME
        path.write_text(json.dumps(self.to_dict(), indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
        return path

    @classmethod
    def load(cls, directory: str | Path) -> "Manifest":
        path = Path(directory) / FILE_NAME
        if not path.is_file():
            raise IndexNotFoundError(
                f"No index at {directory} (no {FILE_NAME}); build one with: "
                f"qa-search build --corpus PATH --index {directory}"
            )
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise IndexMismatchError(f"{path} is not valid JSON ({exc}); rebuild the index.") from exc
        version = data.get("format_version")
        if version not in READABLE_FORMATS:
            raise IndexMismatchError(
                f"{path} has index format {version!r}; this qa-search reads formats "
                f"{', '.join(map(str, READABLE_FORMATS))}: rebuild the index "
                f"with: qa-search build --corpus PATH --index {directory}"
            )
        known = set(cls.__dataclass_fields__)
        try:
            return cls(**{k: v for k, v in data.items() if k in known})
        except TypeError as exc:
            raise IndexMismatchError(f"{path} is incomplete ({exc}); rebuild the index.") from exc
