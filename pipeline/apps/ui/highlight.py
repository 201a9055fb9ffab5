"""Paragraph text as safe HTML, with the question's terms and the answer span marked.

Everything here works on the *raw* text: matches and the answer span are found
as character offsets into the original string, the text is cut at those
offsets, each piece is HTML-escaped on its own, and only then are the
``<mark>`` tags put around the pieces. Nothing from the paragraph can become
markup, and an answer span is never shifted by escaping (``&`` becoming
``&amp;``) or broken by a highlight that overlaps it.

Question terms are matched the way BM25 matches them (lower case, stop words
out, Snowball stems), so "represented" in a question marks "representing" in a
paragraph.

Example::

    >>> from pipeline.apps.ui.highlight import highlight_html
    >>> highlight_html("Denver <b>Broncos</b> won", question="Who won?")
    'Denver &lt;b&gt;Broncos&lt;/b&gt; <mark class="qa-term">won</mark>'
    >>> highlight_html("A & B won", answer=(0, 5))
    '<mark class="qa-answer">A &amp; B</mark> won'
"""

from __future__ import annotations

import html
import re
from typing import Iterable

from pipeline.index.bm25 import BM25Tokenizer, TokenizerSettings

TERM_CLASS = "qa-term"
ANSWER_CLASS = "qa-answer"
_WORD = re.compile(r"\w+", re.UNICODE)
#: Question words: BM25 keeps them, but marking every "which" or "how" in a paragraph helps nobody.
QUESTION_WORDS = frozenset("what which who whom whose when where why how did does do".split())
_MARKDOWN_SPECIAL = re.compile(r"([\\`*_{}\[\]()#+\-.!|<>~$:])")


def escape(text: str) -> str:
    """``text`` with ``& < > " '`` replaced by entities: safe inside HTML elements and attributes."""
    return html.escape(text, quote=True)


def escape_markdown(text: str) -> str:
    """``text`` with Markdown's special characters backslash-escaped, for Streamlit labels and captions."""
    return _MARKDOWN_SPECIAL.sub(r"\\\1", text)


def question_terms(question: str, settings: TokenizerSettings = TokenizerSettings()) -> frozenset[str]:
    """The question's BM25 terms (lower-cased, stop words and question words removed, stemmed)."""
    tokenizer = BM25Tokenizer(settings)
    return frozenset(tokenizer(question or "")) - frozenset(tokenizer(" ".join(QUESTION_WORDS)))


def term_spans(
    text: str, question: str, settings: TokenizerSettings = TokenizerSettings()
) -> list[tuple[int, int]]:
    """``(start, end)`` offsets of the words of ``text`` whose BM25 term is one of the question's."""
    terms = question_terms(question, settings)
    if not terms:
        return []
    tokenizer = BM25Tokenizer(settings)
    spans = []
    for match in _WORD.finditer(text):
        stems = tokenizer(match.group())
        if stems and stems[0] in terms:
            spans.append(match.span())
    return spans


def _marked(text: str, start: int, end: int, spans: Iterable[tuple[int, int]], css: str) -> str:
    """``text[start:end]`` escaped, with the parts of ``spans`` inside it wrapped in ``<mark class=css>``."""
    out, pos = [], start
    for s, e in sorted(spans):
        s, e = max(s, pos), min(e, end)
        if s >= e:
            continue
        out.append(escape(text[pos:s]))
        out.append(f'<mark class="{css}">{escape(text[s:e])}</mark>')
        pos = e
    out.append(escape(text[pos:end]))
    return "".join(out)


def highlight_html(
    text: str,
    *,
    question: str | None = None,
    answer: tuple[int, int] | None = None,
    settings: TokenizerSettings = TokenizerSettings(),
) -> str:
    """``text`` as escaped HTML with question terms in ``<mark class="qa-term">`` and the answer in ``<mark class="qa-answer">``.

    ``answer`` is a ``(start, end)`` character span of ``text`` (as in
    :class:`pipeline.results.Answer`); a span outside the text or empty is
    ignored. Term marks inside the answer are nested in its mark, and a term
    that straddles an answer boundary is cut there, so the tags always nest.
    """
    text = text or ""
    spans = term_spans(text, question, settings) if question else []
    if answer is not None:
        a_start, a_end = int(answer[0]), int(answer[1])
        if 0 <= a_start < a_end <= len(text):
            return (
                _marked(text, 0, a_start, spans, TERM_CLASS)
                + f'<mark class="{ANSWER_CLASS}">'
                + _marked(text, a_start, a_end, spans, TERM_CLASS)
                + "</mark>"
                + _marked(text, a_end, len(text), spans, TERM_CLASS)
            )
    return _marked(text, 0, len(text), spans, TERM_CLASS)
