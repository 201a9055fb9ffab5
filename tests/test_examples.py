"""The UI's example questions get the answer their top paragraph gives (real stand-in models, SQuAD paragraphs)."""

from __future__ import annotations

import pytest

from pipeline.apps.ui.page import SQUAD_EXAMPLES
from pipeline.read.normalize import normalize_answer

TESLA = "In what year was Nikola Tesla born?"
CHLOROPLAST = "What is the primary purpose of chloroplasts?"


@pytest.fixture(scope="module")
def examples_index(tmp_path_factory, squad_dev_path, minilm_path):
    """The app's default corpus: every SQuAD v1.1 dev paragraph, indexed as ``make index`` does (about 1 min on 2 cores).

    Not a slice of the examples' articles: BM25's statistics, the rarity of a missing
    question term and the competing paragraphs all depend on the whole index, and a
    policy change once left Tesla answered on a slice but abstaining on the full index.
    """
    from pipeline.index import build_index

    out = tmp_path_factory.mktemp("squad-examples") / "index"
    build_index(squad_dev_path, out, bi_encoder=str(minilm_path), progress=False)
    return out


@pytest.fixture(scope="module")
def answered(examples_index, standin_reranker, standin_reader):
    """Every example the UI offers on that index, searched with the shipped settings: (pipeline, {question: result})."""
    from pipeline.apps.ui.page import examples_for
    from pipeline.qa import QAPipeline

    qa = QAPipeline.load(examples_index, reranker=str(standin_reranker), reader=str(standin_reader))
    examples = examples_for(qa)
    assert sorted(examples) == sorted(SQUAD_EXAMPLES)
    return qa, dict(zip(examples, qa.search_many(examples)))


def example_params(known_failures: dict[str, str], skip: tuple[str, ...] = ()) -> list:
    """The UI's example questions as test parameters, each known failure a strict xfail with its reason."""
    return [
        pytest.param(q, marks=pytest.mark.xfail(strict=True, reason=known_failures[q])) if q in known_failures else q
        for q in SQUAD_EXAMPLES
        if q not in skip
    ]


@pytest.mark.slow
@pytest.mark.parametrize("question", example_params({}))
def test_every_ui_example_gets_the_answer_its_top_paragraph_gives(answered, question):
    """The answer chosen (shown, or behind "Show the best candidate anyway" when the search abstains)."""
    qa, results = answered
    result = results[question]
    chosen = result.answer or result.candidate
    assert chosen is not None, result.no_answer_reason
    top = result.hits[0]
    (reading,) = qa.reader.spans([(question, top.text)], top=1)
    assert normalize_answer(chosen.text) == normalize_answer(reading.best.text)
    assert top.id in [s.id for s in chosen.support]
    if question == TESLA:
        assert top.source_id.startswith("Nikola_Tesla#")
        assert chosen.text == "1856"  # not 1861, the year of a later paragraph


@pytest.mark.slow
# Chloroplast has no right answer to give: its gold paragraph #0 ("main role is to conduct photosynthesis") is a
# candidate on the full SQuAD dev index (the bi-encoder's first, BM25's 51st) but the stand-in reranker gives it 0.004 and it is shown 8th, so the
# answer comes from another paragraph (still the one shown first, tested above).
# Tesla abstained from the depth-independent blend (2026-12-04) until the answer policy weighed the bi-encoder's
# similarity (session 12; docs/answers.md).
@pytest.mark.parametrize("question", example_params({}, skip=(CHLOROPLAST,)))
def test_no_ui_example_with_a_right_answer_abstains(answered, question):
    _, results = answered
    result = results[question]
    assert result.answer is not None, result.no_answer_reason
