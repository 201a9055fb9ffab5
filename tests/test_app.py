"""The Streamlit UI (app.py) driven with Streamlit's AppTest: states a person sees, from the real app script."""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import pytest
from conftest import REPO, SUPER_BOWL_QUESTION
from streamlit.testing.v1 import AppTest

from pipeline.index import build_index

APP = str(REPO / "app.py")
TIMEOUT = 600  # seconds per script run: loading real weights on a busy 2-core machine
PAYLOADS = {
    "script": "<script>alert(1)</script> The capital of Atlantis is Poseidonia.",
    "img": '<img src=x onerror=alert(1)> Poseidonia is the capital of Atlantis, on the coast.',
}


def start(monkeypatch, index: Path, reranker: Path | str | None = None, reader: Path | str | None = None,
          **env: str) -> AppTest:
    monkeypatch.setenv("QA_SEARCH_INDEX", str(index))
    if reranker is not None:
        monkeypatch.setenv("QA_SEARCH_RERANKER", str(reranker))
    if reader is not None:
        monkeypatch.setenv("QA_SEARCH_READER", str(reader))
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    at = AppTest.from_file(APP, default_timeout=TIMEOUT)
    at.run()
    assert not at.exception, at.exception
    return at


def ask(at: AppTest, question: str) -> AppTest:
    at.text_input(key="question").set_value(question)
    next(b for b in at.button if b.label == "Search").click()
    at.run()
    assert not at.exception, at.exception
    return at


def plain(markdown: str) -> str:
    """A message as the visitor reads it: the page escapes Markdown in every message it shows."""
    return re.sub(r"\\(.)", r"\1", markdown)


def cards(at: AppTest) -> list[str]:
    return [h.value for h in at.html if 'class="qa-card' in h.value]


def card_id(card: str) -> str:
    return card.split('data-id="', 1)[1].split('"', 1)[0]


def answering_ids(at: AppTest) -> list[str]:
    return [card_id(c) for c in cards(at) if "qa-card qa-yes" in c]


# --------------------------------------------------------------------------- fast: tiny random models


@pytest.fixture(scope="module")
def payload_index(tmp_path_factory, tiny_bi_encoder) -> Path:
    root = tmp_path_factory.mktemp("payload")
    corpus = root / "payload.jsonl"
    corpus.write_text("".join(json.dumps({"id": k, "title": f"<b>{k}</b>", "text": v}) + "\n" for k, v in PAYLOADS.items()))
    out = root / "index"
    build_index(corpus, out, bi_encoder=str(tiny_bi_encoder), progress=False)
    return out


def test_missing_index_shows_how_to_build_it(monkeypatch, tmp_path):
    at = start(monkeypatch, tmp_path / "no-such-index")
    assert len(at.error) == 1
    assert "No index at" in plain(at.error[0].value) and "no-such-index" in plain(at.error[0].value)
    assert any("qa-search build --corpus PATH --index" in c.value for c in at.code)
    assert not at.main.text_input  # no question box without an index


def test_index_from_command_line_and_sidebar_picker(monkeypatch, tmp_path, tiny_index, tiny_cross_encoder, tiny_reader):
    # indexes/ under the working directory holds one built index; the app starts on a missing one.
    (tmp_path / "indexes").mkdir()
    (tmp_path / "indexes" / "small").symlink_to(tiny_index, target_is_directory=True)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "argv", ["app.py", "--index", "indexes/missing"])
    at = start(monkeypatch, tmp_path / "ignored-because-argv-wins", tiny_cross_encoder, tiny_reader)
    assert "indexes/missing" in plain(at.error[0].value)
    picker = at.selectbox(key="index")
    assert picker.options == ["indexes/missing", "indexes/small"]
    picker.set_value("indexes/small").run()
    assert not at.error
    assert any("6 passages" in c.value for c in at.caption)


def test_missing_reranker_model_shows_its_message(monkeypatch, tiny_index, tiny_reader):
    at = start(monkeypatch, tiny_index, "no-such-org/no-such-reranker", tiny_reader)
    assert len(at.error) == 1 and "no-such-org/no-such-reranker" in plain(at.error[0].value)
    # Switching the reranker off recovers without it.
    at.toggle(key="rerank").set_value(False).run()
    assert not at.error and at.text_input(key="question")


def test_missing_reader_model_shows_its_message(monkeypatch, tiny_index, tiny_cross_encoder):
    at = start(monkeypatch, tiny_index, tiny_cross_encoder, "no-such-org/no-such-reader")
    assert len(at.error) == 1 and "no-such-org/no-such-reader" in plain(at.error[0].value)
    at.toggle(key="read").set_value(False).run()
    assert not at.error and at.text_input(key="question")


def test_empty_and_too_long_questions_get_a_message(monkeypatch, tiny_index, tiny_cross_encoder, tiny_reader):
    at = start(monkeypatch, tiny_index, tiny_cross_encoder, tiny_reader)
    ask(at, "   ")
    assert [plain(w.value) for w in at.warning] == ["The question is empty: type a question."]
    assert not cards(at)
    # The box takes at most 500 characters (QA_SEARCH_UI_MAX_QUESTION_CHARS; the pipeline refuses longer ones).
    assert at.text_input(key="question").max_chars == 500
    ask(at, "capital " * 400)
    assert not at.exception and len(at.text_input(key="question").value) <= 500


def test_reranker_off_shows_retrieval_order_without_verdicts(monkeypatch, tiny_index, tiny_cross_encoder, tiny_reader):
    at = start(monkeypatch, tiny_index, tiny_cross_encoder, tiny_reader)
    at.toggle(key="rerank").set_value(False).run()
    ask(at, "What is the capital of Germany?")
    assert "reranker is off" in at.info[0].value
    shown = cards(at)
    assert len(shown) == 6 and all("qa-badge\">retrieved" in c for c in shown)
    assert "answer probability" not in "".join(shown)
    assert "rerank" not in "".join(shown).split("qa-stages")[1]


def test_html_payloads_in_paragraphs_and_titles_are_escaped(monkeypatch, payload_index, tiny_cross_encoder, tiny_reader):
    at = start(monkeypatch, payload_index, tiny_cross_encoder, tiny_reader, QA_SEARCH_THRESHOLD="0")
    ask(at, "What is the capital of Atlantis?")
    shown = re.sub(r"</?mark[^>]*>", "", "".join(cards(at)))  # the random reader's answer marks cut the text
    assert len(cards(at)) == 2
    assert "<script" not in shown and "<img" not in shown and "<b>script" not in shown
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in shown
    assert "&lt;img src=x onerror=alert(1)&gt;" in shown
    assert "&lt;b&gt;script&lt;/b&gt;" in shown  # the title too


def test_an_abstention_is_said_plainly_and_the_best_candidate_is_one_click_away(monkeypatch, tmp_path, payload_index,
                                                                                  tiny_cross_encoder, tiny_reader):
    # An answer policy whose answerability is always 0.007, below its threshold: every search abstains.
    policy = tmp_path / "always-abstains.json"
    policy.write_text(json.dumps({"paragraphs": 2, "features": ["probability"], "mean": [0.0], "scale": [1.0],
                                  "coef": [0.0], "intercept": -5.0, "threshold": 0.5}), encoding="utf-8")
    at = start(monkeypatch, payload_index, tiny_cross_encoder, tiny_reader, QA_SEARCH_ANSWER_POLICY=str(policy))
    ask(at, "What is the capital of Atlantis?")
    said = [plain(w.value) for w in at.warning]
    assert any(w.startswith("**No answer.** No paragraph here answers this: answerability 0.01 is below 0.50") for w in said)
    assert not any('qa-best-label">Answer<' in h.value for h in at.html)  # no answer is shown as if trusted
    assert "Show the best candidate anyway" in [e.label for e in at.expander]
    assert any("Best candidate (not trusted)" in h.value for h in at.html)
    assert not answering_ids(at)  # and no paragraph is flagged as answering
    # the sidebar's slider starts at the policy's threshold; at 0 the same search answers
    assert at.slider(key="abstain_below").value == 0.5
    at.slider(key="abstain_below").set_value(0.0).run()
    assert not any(plain(w.value).startswith("**No answer.**") for w in at.warning)
    assert any('qa-best-label">Answer<' in h.value for h in at.html)
    # an operator's QA_SEARCH_ABSTAIN_BELOW is where the slider starts, and what an untouched slider searches with
    at = start(monkeypatch, payload_index, tiny_cross_encoder, tiny_reader, QA_SEARCH_ANSWER_POLICY=str(policy),
               QA_SEARCH_ABSTAIN_BELOW="0")
    ask(at, "What is the capital of Atlantis?")
    assert at.slider(key="abstain_below").value == 0.0
    assert any('qa-best-label">Answer<' in h.value for h in at.html)


def test_an_answer_says_what_weighed_for_and_against_it(monkeypatch, tmp_path, payload_index, tiny_cross_encoder,
                                                         tiny_reader):
    # Always answers (intercept 5); the reranker's probability pulls for it, a term no paragraph mentions against.
    policy = tmp_path / "explains.json"
    policy.write_text(json.dumps({"paragraphs": 2, "features": ["probability", "missing_terms"], "mean": [0.0, 0.0],
                                  "scale": [1.0, 1.0], "coef": [2.0, -1.0], "intercept": 5.0, "threshold": 0.5}),
                      encoding="utf-8")
    at = start(monkeypatch, payload_index, tiny_cross_encoder, tiny_reader, QA_SEARCH_ANSWER_POLICY=str(policy))
    ask(at, "What is the capital of Atlantis under the sea?")
    assert any('qa-best-label">Answer<' in h.value for h in at.html)
    why = next(e for e in at.expander if e.label == "Why this answer")
    said = plain(" ".join(m.value for m in why.markdown))
    assert re.fullmatch(r"Answerability 0\.\d\d\. For it most: the top paragraph's reranker probability \(0\.\d\d\)\. "
                        r"Against it most: the question's terms the paragraph never mentions \(\d\)\.", said), said
    # a policy that cannot abstain has nothing to explain
    no_model = tmp_path / "no-model.json"
    no_model.write_text(json.dumps({"paragraphs": 2}), encoding="utf-8")
    at = start(monkeypatch, payload_index, tiny_cross_encoder, tiny_reader, QA_SEARCH_ANSWER_POLICY=str(no_model))
    ask(at, "What is the capital of Atlantis under the sea?")
    assert any('qa-best-label">Answer<' in h.value for h in at.html)
    assert "Why this answer" not in [e.label for e in at.expander]


# --------------------------------------------------------------------------- slow: real MiniLM + stand-in reranker


@pytest.mark.slow
def test_gold_paragraph_first_and_repeat_is_cached(monkeypatch, squad_slice_index, standin_reranker, standin_reader):
    at = start(monkeypatch, squad_slice_index, standin_reranker, standin_reader)
    assert SUPER_BOWL_QUESTION in at.pills(key="example").options  # its gold paragraph is in this slice
    ask(at, SUPER_BOWL_QUESTION)
    assert answering_ids(at)[0] == "Super_Bowl_50#0"
    first = cards(at)[0]
    assert "<mark class=\"qa-term\">AFC</mark>" in first
    for stage in ("BM25", "dense", "fused", "rerank"):
        assert f"{stage} " in first.split('class="qa-stages"')[1]
    probability = float(first.split("answer probability <b>")[1].split("<")[0])
    assert 0.5 <= probability <= 1.0
    timings = at.sidebar.html[0].value
    assert "Rerank" in timings and "Total" in timings
    # The same question again is answered from the cache: the very same timings come back.
    ask(at, SUPER_BOWL_QUESTION)
    assert at.sidebar.html[0].value == timings
    assert answering_ids(at)[0] == "Super_Bowl_50#0"


@pytest.mark.slow
def test_example_pill_runs_its_search(monkeypatch, squad_slice_index, standin_reranker, standin_reader):
    at = start(monkeypatch, squad_slice_index, standin_reranker, standin_reader)
    at.pills(key="example").set_value(SUPER_BOWL_QUESTION).run()
    assert at.text_input(key="question").value == SUPER_BOWL_QUESTION
    assert answering_ids(at)[0] == "Super_Bowl_50#0"


@pytest.mark.slow
def test_no_paragraph_answers_at_threshold_one(monkeypatch, squad_slice_index, standin_reranker, standin_reader):
    at = start(monkeypatch, squad_slice_index, standin_reranker, standin_reader)
    at.slider(key="threshold").set_value(1.0).run()
    ask(at, SUPER_BOWL_QUESTION)
    # The top paragraphs are still read (an answer or an abstention shows above them), none is flagged.
    assert not answering_ids(at)
    assert any("No paragraph reaches the answerable threshold 1.00" in c.value for c in at.caption)
    answer_parts = ("Why this answer", "Show the best candidate anyway")  # the answer's own, above the paragraphs
    labels = [e.label for e in at.expander if e.label not in answer_parts]
    assert len(labels) == 10 and all(label.startswith("Does not answer") for label in labels)
    assert cards(at)[0].count('data-id="Super_Bowl_50#0"') == 1  # the closest one is still offered, first


@pytest.mark.slow
def test_best_answer_shown_and_marked_in_its_paragraph(monkeypatch, squad_slice_index, standin_reranker, standin_reader):
    at = start(monkeypatch, squad_slice_index, standin_reranker, standin_reader)
    ask(at, SUPER_BOWL_QUESTION)
    best = next(h.value for h in at.html if "qa-best" in h.value)
    assert "Denver Broncos" in best
    assert '<mark class="qa-answer">Denver Broncos</mark>' in cards(at)[0]
