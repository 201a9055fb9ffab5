"""Long paragraphs become overlapping windows of at most a model's token limit."""

from __future__ import annotations

import re
from typing import Any, Protocol


class Tokenizer(Protocol):  # the part of a Hugging Face fast tokenizer we use
    def __call__(self, text: str, **kwargs: Any) -> Any: ...


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
        # verbose=False: counting the tokens of a long paragraph is the point, not an overflow to warn about
        offsets = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True, verbose=False)["offset_mapping"]
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
