"""The headline figures in the docs are made with the shipped defaults: the command printed above them changes none."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest

from pipeline.config import SearchSettings

ROOT = Path(__file__).resolve().parents[1]
#: What a headline command may say: which data and sample, which stand-in models (named in the text), where to write.
#: Not --no-read: the reader moves the paragraphs it reads (read_weight), so the shipped order needs it.
ALLOWED = {"--index", "--questions", "--articles", "--sample", "--seed", "--reranker", "--reader", "--modes", "--out"}


def _headline_command(path: Path, heading: str) -> list[str]:
    text = path.read_text(encoding="utf-8")
    start = text.index(heading)
    block = re.search(r"```bash\n(.*?)```", text[start:], re.S)
    assert block, f"no command under {heading!r} in {path.name}"
    return shlex.split(block.group(1).replace("\\\n", " "))


@pytest.mark.parametrize("doc,heading", [("docs/evaluation.md", "### Headline: the shipped defaults"),
                                         ("README.md", "### Retrieval and reranking")])
def test_the_headline_command_uses_the_shipped_defaults(doc, heading):
    words = _headline_command(ROOT / doc, heading)
    assert words[:2] == ["qa-search", "eval"]
    flags = {w for w in words if w.startswith("--")}
    assert flags <= ALLOWED, f"{doc}: the headline command changes {sorted(flags - ALLOWED)} from the shipped defaults"
    assert "--articles" in flags and words[words.index("--articles") + 1] == "24-47"  # held-out articles only


def test_the_documented_candidates_are_the_shipped_default():
    text = (ROOT / "docs/evaluation.md").read_text(encoding="utf-8")
    section = text[text.index("### Headline: the shipped defaults"):]
    assert f"the shipped {SearchSettings().candidates} candidates" in section[:3000]
