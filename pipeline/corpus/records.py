"""The records a corpus is read into: passages, the build report, malformed records."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from pipeline.config import ChoiceEnum


class CorpusFormat(ChoiceEnum):
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
class Record:
    id: str | None
    title: str
    text: str
    metadata: dict[str, Any]
    path: str
    line: int | None
