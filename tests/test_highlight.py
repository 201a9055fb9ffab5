"""Escape-then-mark: paragraph text never becomes markup, highlights and answer spans land on the right characters."""

from __future__ import annotations

import html
import re

from hypothesis import given
from hypothesis import strategies as st

from pipeline.apps.ui.highlight import (
    escape,
    escape_markdown,
    highlight_html,
    question_terms,
    term_spans,
)

TAG = re.compile(r"</?mark[^>]*>")


def visible_text(markup: str) -> str:
    """What a browser shows: marks removed, entities decoded."""
    return html.unescape(TAG.sub("", markup))


def test_script_tag_is_escaped_not_markup():
    out = highlight_html("<script>alert(1)</script> was found", question="What was found?")
    assert "<script" not in out
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in out
    assert visible_text(out) == "<script>alert(1)</script> was found"


def test_img_onerror_is_escaped_including_quotes():
    text = '<img src=x onerror=alert(1)> and <img src="y" onerror=\'alert(2)\'>'
    out = highlight_html(text, question="img onerror")
    assert "<img" not in out and '"y"' not in out and "'alert" not in out
    # The question's words are still marked, inside the escaped text.
    assert '<mark class="qa-term">onerror</mark>' in out
    assert visible_text(out) == text


def test_question_terms_are_marked_with_stemming_and_without_stop_or_question_words():
    out = highlight_html(
        "The Denver Broncos represented the AFC; which team won?",
        question="Which NFL team represents the AFC?",
    )
    assert '<mark class="qa-term">represented</mark>' in out  # stem "repres" matches "represents"
    assert '<mark class="qa-term">AFC</mark>' in out
    assert '<mark class="qa-term">team</mark>' in out
    assert "<mark class=\"qa-term\">The</mark>" not in out  # stop word
    assert "<mark class=\"qa-term\">which</mark>" not in out  # question word
    assert question_terms("Which team?") == frozenset({"team"})


def test_answer_span_with_html_characters_inside_and_around():
    text = 'Tom & Jerry said "<b>Denver & Co</b>" won.'
    start = text.index("<b>")
    end = text.index("</b>") + len("</b>")
    out = highlight_html(text, answer=(start, end))
    assert out.count('<mark class="qa-answer">') == 1
    inner = out.split('<mark class="qa-answer">')[1].split("</mark>")[0]
    assert inner == "&lt;b&gt;Denver &amp; Co&lt;/b&gt;"
    assert out.startswith("Tom &amp; Jerry said &quot;")
    assert visible_text(out) == text


def test_term_overlapping_answer_boundary_is_cut_so_tags_nest():
    text = "Broncos defeated Panthers"
    # The answer starts in the middle of "Broncos" and ends inside "Panthers".
    out = highlight_html(text, question="Broncos Panthers defeated", answer=(3, 20))
    assert out == (
        '<mark class="qa-term">Bro</mark>'
        '<mark class="qa-answer"><mark class="qa-term">ncos</mark> <mark class="qa-term">defeated</mark> '
        '<mark class="qa-term">Pan</mark></mark>'
        '<mark class="qa-term">thers</mark>'
    )
    assert visible_text(out) == text


def test_answer_span_outside_the_text_is_ignored():
    assert highlight_html("short", answer=(2, 99)) == "short"
    assert highlight_html("short", answer=(3, 3)) == "short"
    assert highlight_html("", question="anything", answer=(0, 1)) == ""


def test_term_spans_are_offsets_into_the_raw_text():
    text = "Café owners: cafés & more"
    spans = term_spans(text, "cafés")
    assert spans == [(0, 4), (13, 18)]
    assert [text[s:e] for s, e in spans] == ["Café", "cafés"]


def test_escape_and_escape_markdown():
    assert escape("\"a\" & 'b' <c>") == "&quot;a&quot; &amp; &#x27;b&#x27; &lt;c&gt;"
    assert escape_markdown("Super_Bowl *50* <b>$5</b>") == r"Super\_Bowl \*50\* \<b\>\$5\</b\>"


@given(
    text=st.text(alphabet=st.sampled_from(list("ab <>&\"'/=x é")), max_size=40),
    question=st.text(alphabet=st.sampled_from(list("ab x é")), max_size=10),
    bounds=st.tuples(st.integers(0, 45), st.integers(0, 45)),
)
def test_markup_always_shows_exactly_the_text(text, question, bounds):
    out = highlight_html(text, question=question, answer=bounds)
    assert visible_text(out) == text
    assert "<" not in TAG.sub("", out) and ">" not in TAG.sub("", out)
    opened = 0
    for tag in TAG.findall(out):  # marks are balanced and nest
        opened += -1 if tag.startswith("</") else 1
        assert opened >= 0
    assert opened == 0
