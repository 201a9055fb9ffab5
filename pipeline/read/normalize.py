"""The official SQuAD answer normalisation (the v1.1 and v2.0 evaluation scripts' ``normalize_answer``).

Lower case, drop punctuation and the articles a/an/the, squash white space.
Answers that normalise alike are the same answer: the pipeline adds up their
evidence across paragraphs, the evaluation scores them as equal.

    >>> normalize_answer("The  Denver Broncos!")
    'denver broncos'
"""

from __future__ import annotations

import re
import string

_ARTICLES = re.compile(r"\b(a|an|the)\b", re.UNICODE)
_PUNCTUATION = frozenset(string.punctuation)


def normalize_answer(text: str) -> str:
    """``text`` as the official SQuAD scripts compare it."""
    text = "".join(ch for ch in text.lower() if ch not in _PUNCTUATION)
    return " ".join(_ARTICLES.sub(" ", text).split())
