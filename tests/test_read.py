"""The reader stage: span decoding on offsets, windows, answer length, no-answer models, pipeline wiring."""

from __future__ import annotations

import json

import pytest
from conftest import SUPER_BOWL_QUESTION, make_keyword_reader

from pipeline.config import PipelineConfig
from pipeline.errors import ConfigError, ModelNotFoundError
from pipeline.read.reader import Reader

UNICODE_TEXT = "  \n\t Visit Zürich — café culture, said the guide."
UNICODE_QUESTION = "Is Zürich a café town?"


@pytest.fixture(scope="module")
def zurich_reader(tmp_path_factory, minilm_path):
    """Deterministic: the span "Zürich … café" wins wherever both words are in the paragraph."""
    return make_keyword_reader(tmp_path_factory.mktemp("kw-zurich"), minilm_path, "Zürich", "café")


def check_offsets(answer, text):
    assert answer is not None
    assert text[answer.start : answer.end] == answer.text
    assert answer.text == answer.text.strip()
    assert 0.0 <= answer.score <= 1.0


def test_offsets_point_into_the_original_text_with_whitespace_and_unicode(zurich_reader):
    reader = Reader.load(str(zurich_reader))
    (answer,) = reader.read(UNICODE_QUESTION, [UNICODE_TEXT])
    check_offsets(answer, UNICODE_TEXT)
    assert answer.text == "Zürich — café"
    assert answer.start == UNICODE_TEXT.index("Zürich")
    # The question holds both keywords too: a span never starts or ends in the question.
    assert answer.score > 0.5


def test_paragraph_longer_than_the_window_is_answered_from_a_later_window(zurich_reader):
    reader = Reader.load(str(zurich_reader), max_length=64, stride=16)
    text = " ".join(f"Sentence number {i} talks about nothing in particular." for i in range(40)) + " " + UNICODE_TEXT
    assert len(reader.tokenizer(text)["input_ids"]) > 5 * 64
    (answer,) = reader.read(UNICODE_QUESTION, [text])
    check_offsets(answer, text)
    assert answer.text == "Zürich — café"
    assert answer.start == text.index("Zürich")


def test_answer_is_at_most_max_answer_tokens_long(tmp_path, minilm_path):
    reader_dir = make_keyword_reader(tmp_path, minilm_path, "alpha", "omega")
    text = "Here alpha " + "and " * 40 + "omega ends."
    short = Reader.load(str(reader_dir), max_answer_tokens=5)
    (answer,) = short.read("alpha to omega?", [text])
    check_offsets(answer, text)
    assert len(short.tokenizer(answer.text, add_special_tokens=False)["input_ids"]) <= 5
    assert answer.text.startswith("alpha") or answer.text.endswith("omega")
    long = Reader.load(str(reader_dir), max_answer_tokens=60)
    (whole,) = long.read("alpha to omega?", [text])
    assert whole.text == text[text.index("alpha") : text.index("omega") + len("omega")]
    assert whole.score > answer.score


def test_no_answer_model_returns_none_when_cls_wins(tmp_path, minilm_path):
    strong_null = make_keyword_reader(tmp_path / "null", minilm_path, "Zürich", "café", cls_weight=2.0, no_answer=True)
    reader = Reader.load(str(strong_null))
    assert reader.allow_no_answer  # from version_2_with_negative in its config
    assert reader.read(UNICODE_QUESTION, [UNICODE_TEXT]) == [None]
    # The same weights read as a SQuAD 1.1 model still give the span.
    (forced,) = Reader.load(str(strong_null), allow_no_answer=False).read(UNICODE_QUESTION, [UNICODE_TEXT])
    assert forced.text == "Zürich — café"


def test_no_answer_model_answers_when_the_span_beats_the_null_score(tmp_path, minilm_path):
    weak_null = make_keyword_reader(tmp_path, minilm_path, "Zürich", "café", cls_weight=0.25, no_answer=True)
    reader = Reader.load(str(weak_null))
    assert reader.allow_no_answer
    (answer,) = reader.read(UNICODE_QUESTION, [UNICODE_TEXT])
    check_offsets(answer, UNICODE_TEXT)
    assert answer.text == "Zürich — café"


def test_squad1_models_never_compare_with_the_null_score(tmp_path, minilm_path):
    untagged = make_keyword_reader(tmp_path, minilm_path, "Zürich", "café", cls_weight=2.0)
    reader = Reader.load(str(untagged))
    assert not reader.allow_no_answer
    assert reader.read(UNICODE_QUESTION, [UNICODE_TEXT])[0].text == "Zürich — café"


def test_empty_paragraphs_give_none_without_a_crash(zurich_reader):
    reader = Reader.load(str(zurich_reader))
    assert reader.read(UNICODE_QUESTION, []) == []
    answers = reader.read(UNICODE_QUESTION, ["", "   \n", UNICODE_TEXT])
    assert answers[:2] == [None, None]
    assert answers[2].text == "Zürich — café"


def test_batched_pairs_match_one_by_one_reading(tiny_reader):
    reader = Reader.load(str(tiny_reader), batch_size=2, max_length=48, stride=8)
    pairs = [
        ("Where is Paris?", "Paris is the capital and largest city of France."),
        ("How long is the Nile?", "The Nile is a major river flowing north through Egypt. " * 8),
        ("Who?", UNICODE_TEXT),
        ("What is the highest mountain?", "Mount Everest is the highest mountain above sea level."),
    ]
    batched = reader.read_pairs(pairs)
    for (question, text), answer in zip(pairs, batched):
        check_offsets(answer, text)
        (alone,) = reader.read(question, [text])
        assert (alone.start, alone.end) == (answer.start, answer.end)
        assert alone.score == pytest.approx(answer.score, abs=1e-5)


@pytest.mark.parametrize("backend", ["onnx", "onnx-int8"])
def test_onnx_readers_read_what_the_torch_reader_reads(tiny_reader, zurich_reader, backend):
    """The ONNX engines decode the same spans; fp32 gives the same scores, int8 nearly (quantised weights)."""
    text = "Paris is the capital and largest city of France. " + UNICODE_TEXT
    pairs = [(UNICODE_QUESTION, text), ("Where is Paris?", "Paris is the capital and largest city of France.")]
    for model in (zurich_reader, tiny_reader):
        exact = Reader.load(str(model), max_length=48, stride=8)
        other = Reader.load(str(model), max_length=48, stride=8, backend=backend)
        assert (exact.describe(), other.describe()) == ("torch", backend)
        for want, got in zip(exact.spans(pairs, top=3), other.spans(pairs, top=3)):
            if backend == "onnx":
                assert [(s.start, s.end) for s in got.spans] == [(s.start, s.end) for s in want.spans]
                assert [s.score for s in got.spans] == pytest.approx([s.score for s in want.spans], abs=1e-3)
            else:
                if model == zurich_reader:  # a clear winner survives quantisation; a random model's may not
                    assert (got.spans[0].start, got.spans[0].end) == (want.spans[0].start, want.spans[0].end)
                assert abs(got.spans[0].score - want.spans[0].score) < 0.2 * max(1.0, abs(want.spans[0].score))
    (answer,) = Reader.load(str(zurich_reader), backend=backend).read(UNICODE_QUESTION, [UNICODE_TEXT])
    check_offsets(answer, UNICODE_TEXT)
    assert answer.text == "Zürich — café"


def test_the_int8_reader_reads_a_paragraph_the_same_whatever_is_read_with_it(standin_reader):
    """In one padded int8 batch a span's score moved by a whole logit; each window now runs alone."""
    reader = Reader.load(str(standin_reader), backend="onnx-int8")
    question = "Where is Paris?"
    text = "Paris is the capital and largest city of France."
    (alone,) = reader.spans([(question, text)])
    _, batched = reader.spans([("Who wrote Faust?", "Goethe wrote Faust. " * 30), (question, text)])
    assert [(s.start, s.end, s.score) for s in batched.spans] == [(s.start, s.end, s.score) for s in alone.spans]


def test_reader_backend_is_a_load_setting_named_in_results(tiny_index, zurich_reader):
    from pipeline.qa import QAPipeline

    assert PipelineConfig().load.reader_backend.value == "auto"
    assert PipelineConfig.from_env({"QA_SEARCH_READER_BACKEND": "torch"}).load.reader_backend.value == "torch"
    with pytest.raises(ConfigError, match="valid values: auto, torch, onnx, onnx-int8"):
        PipelineConfig.of(reader_backend="gpu")
    qa = QAPipeline.load(tiny_index, rerank=False, reader=str(zurich_reader), device="cpu")
    result = qa.search("Is Zürich a café town?")
    assert result.settings["reader_backend"] == "onnx-int8"  # auto on a CPU
    assert qa.search("Is Zürich a café town?", read=False).settings["reader_backend"] is None


def test_a_model_that_is_not_a_reader_is_refused(tiny_cross_encoder):
    with pytest.raises(ConfigError, match="not an extractive question-answering model"):
        Reader.load(str(tiny_cross_encoder))


def test_missing_reader_names_the_model_and_how_to_supply_it(tiny_index, tiny_cross_encoder):
    from pipeline.qa import QAPipeline

    with pytest.raises(ModelNotFoundError) as info:
        QAPipeline.load(tiny_index, reranker=str(tiny_cross_encoder), reader="nobody/no-such-reader")
    message = str(info.value)
    assert "nobody/no-such-reader" in message and "--reader PATH" in message
    assert "QA_SEARCH_READER" in message and "--no-read" in message


def test_reader_settings_come_from_the_environment():
    assert PipelineConfig.from_env({"QA_SEARCH_READER": "/models/my-reader"}).load.reader == "/models/my-reader"
    assert PipelineConfig().load.reader == "mrm8488/electra-base-finetuned-squadv1" and PipelineConfig().load.read


# --------------------------------------------------------------------------- pipeline and CLI


@pytest.fixture(scope="module")
def capital_reader(tmp_path_factory, minilm_path):
    """Marks "capital … France" (only the Paris passage of small_corpus holds both words)."""
    return make_keyword_reader(tmp_path_factory.mktemp("kw-capital"), minilm_path, "capital", "France")


@pytest.fixture(scope="module")
def reading_pipeline(tiny_index, tiny_cross_encoder, capital_reader):
    from pipeline.qa import QAPipeline
    from pipeline.read.policy import AnswerPolicy

    # hybrid: bm25s returns only passages that share a term with the question, too few for these tests.
    qa = QAPipeline.load(tiny_index, reranker=str(tiny_cross_encoder), reader=str(capital_reader), mode="hybrid")
    qa.answer_policy = AnswerPolicy(paragraphs=3)  # decide on the top 3; no abstention model (the shipped one is fitted)
    return qa


QUESTION = "What is the capital of France?"


def test_pipeline_reads_the_top_hits_and_picks_the_best_answer(reading_pipeline):
    result = reading_pipeline.search(QUESTION, threshold=0.0, top_k=4, read_paragraphs=3)
    assert all(h.answerable for h in result.hits)
    assert [h.answer is not None for h in result.hits] == [True, True, True, False]
    for hit in result.hits[:3]:
        check_offsets(hit.answer, hit.text)
    best = result.answer
    assert best.id == "paris" and best.text == "capital and largest city of France"
    assert [s.id for s in best.support] == ["paris"]
    paris = next(h for h in result.hits if h.id == best.id)
    assert paris.text[best.start : best.end] == best.text
    assert result.timings["read"] >= 0 and result.settings["reader"] == reading_pipeline.reader.name
    assert result.to_dict()["answer"]["id"] == "paris"


def test_pipeline_reads_the_top_hits_whether_or_not_they_pass_the_threshold(reading_pipeline):
    nothing_flagged = reading_pipeline.search(QUESTION, threshold=1.0, read_paragraphs=3)
    assert not nothing_flagged.answerable_hits
    assert [h.answer is not None for h in nothing_flagged.hits[:4]] == [True, True, True, False]
    assert nothing_flagged.answer.text == "capital and largest city of France"
    assert "read" in nothing_flagged.timings


def test_pipeline_without_reranker_reads_the_top_hits(reading_pipeline):
    result = reading_pipeline.search(QUESTION, rerank=False, top_k=5, mode="hybrid", read_paragraphs=3)
    assert [h.answer is not None for h in result.hits] == [True, True, True, False, False]
    # read_paragraphs reads more than the policy decides on; never fewer
    assert [h.answer is not None for h in reading_pipeline.search(QUESTION, rerank=False, top_k=5, mode="hybrid",
                                                                  read_paragraphs=4).hits] == [True] * 4 + [False]
    assert [h.answer is not None for h in reading_pipeline.search(QUESTION, rerank=False, top_k=5, mode="hybrid",
                                                                  read_paragraphs=1).hits] == [True] * 3 + [False] * 2
    assert result.answer.id == "paris"


def test_result_says_when_the_answer_policy_was_fitted_for_another_reading(reading_pipeline, monkeypatch):
    from pipeline.read.policy import AnswerPolicy

    fitted = AnswerPolicy(paragraphs=3, features=("probability",), mean=(0.0,), scale=(1.0,), coef=(0.0,),
                          intercept=5.0, threshold=0.4, fitted_for={"read_paragraphs": 4, "read_weight": 0.06})
    monkeypatch.setattr(reading_pipeline, "answer_policy", fitted)
    same = reading_pipeline.search(QUESTION, read_paragraphs=4, read_weight=0.06)
    assert same.settings["answer_policy"] == "answerability fitted for this reading, threshold 0.40"
    fewer = reading_pipeline.search(QUESTION, read_paragraphs=3, read_weight=0.06)
    assert fewer.settings["answer_policy"] == ("answerability uncalibrated (the answer policy was fitted with 4 "
                                               "paragraphs read, this search reads 3), threshold 0.40")
    unmoved = reading_pipeline.search(QUESTION, read_paragraphs=4, read_weight=0.0)
    assert "fitted for read_weight 0.06, this search uses 0.0" in unmoved.settings["answer_policy"]
    # still decided, and the same answer: the note says how far to trust the answerability
    assert fewer.answer.text == same.answer.text == "capital and largest city of France"
    assert reading_pipeline.search(QUESTION, read=False).settings["answer_policy"] is None


def test_loading_warns_when_the_answer_policy_was_fitted_for_other_models(reading_pipeline, tiny_index,
                                                                          tiny_cross_encoder, capital_reader,
                                                                          tmp_path, caplog):
    from pathlib import Path

    from pipeline.qa import QAPipeline
    from pipeline.read.policy import AnswerPolicy

    models = {"reader": Path(reading_pipeline.reader.name).name, "reranker": Path(reading_pipeline.reranker.name).name,
              "bi_encoder": Path(reading_pipeline.encoder.name).name}

    def load_with(fitted_for):
        AnswerPolicy(paragraphs=1, fitted_for=fitted_for).save(tmp_path / "policy.json")
        caplog.clear()
        with caplog.at_level("WARNING", logger="pipeline.qa"):
            QAPipeline.load(tiny_index, reranker=str(tiny_cross_encoder), reader=str(capital_reader), mode="hybrid",
                            answer_policy=str(tmp_path / "policy.json"))
        return [r.getMessage() for r in caplog.records if "answer policy was fitted" in r.getMessage()]

    assert load_with(models) == []
    assert load_with({k: v for k, v in models.items() if k != "bi_encoder"}) == []  # older policies name none
    (warning,) = load_with({**models, "bi_encoder": "e5-small-v2"})
    assert "bi_encoder e5-small-v2" in warning and "uncalibrated" in warning
    (warning,) = load_with({**models, "reranker": "bge-reranker-base"})
    assert "reranker bge-reranker-base" in warning


def test_reader_switched_off_per_search_and_at_load(reading_pipeline, tiny_index, tiny_cross_encoder):
    from pipeline.qa import QAPipeline

    off = reading_pipeline.search(QUESTION, read=False, threshold=0.0)
    assert off.answer is None and all(h.answer is None for h in off.hits)
    assert "read" not in off.timings and off.settings["reader"] is None
    unloaded = QAPipeline.load(tiny_index, reranker=str(tiny_cross_encoder), read=False)
    assert unloaded.reader is None
    assert unloaded.search(QUESTION, threshold=0.0).answer is None
    with pytest.raises(ConfigError, match="without a reader"):
        unloaded.search(QUESTION, read=True)


def test_cli_prints_the_answer_in_json_and_in_the_table(tiny_index, tiny_cross_encoder, capital_reader, capsys):
    from pipeline.apps.cli import main

    common = ["search", QUESTION, "--index", str(tiny_index), "--reranker", str(tiny_cross_encoder),
              "--reader", str(capital_reader), "--mode", "bm25", "--threshold", "0", "--no-abstain"]
    assert main(common + ["--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["answer"]["text"] == "capital and largest city of France" and out["answer"]["id"] == "paris"
    hit = next(h for h in out["hits"] if h["id"] == "paris")
    assert hit["text"][hit["answer"]["start"] : hit["answer"]["end"]] == hit["answer"]["text"]
    assert main(common) == 0
    table = capsys.readouterr().out
    assert "Answer: capital and largest city of France" in table
    moved = [h["id"] for h in out["hits"] if "read" in h["scores"]]  # the read hits' span scores moved them
    assert moved and table.count("reader span") == len(moved)
    assert main(common + ["--no-read", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["answer"] is None and all(h["answer"] is None for h in out["hits"])


# --------------------------------------------------------------------------- real weights


@pytest.mark.slow
def test_standin_reader_answers_the_super_bowl_question(standin_reader, squad_dev_path):
    paragraph = json.loads(squad_dev_path.read_text(encoding="utf-8"))["data"][0]["paragraphs"][0]["context"]
    (answer,) = Reader.load(str(standin_reader)).read(SUPER_BOWL_QUESTION, [paragraph])
    assert answer.text == "Denver Broncos"
    assert paragraph[answer.start : answer.end] == answer.text


@pytest.mark.slow
def test_end_to_end_best_answer_on_squad(tmp_path, squad_slice, minilm_path, standin_reranker, standin_reader):
    from pipeline.index import build_index
    from pipeline.qa import QAPipeline

    build_index(squad_slice, tmp_path / "index", bi_encoder=str(minilm_path), progress=False)
    qa = QAPipeline.load(tmp_path / "index", reranker=str(standin_reranker), reader=str(standin_reader))
    result = qa.search(SUPER_BOWL_QUESTION, top_k=5)
    assert result.answer is not None and result.answer.text == "Denver Broncos"
    hit = next(h for h in result.hits if h.id == result.answer.id)
    assert hit.answerable and hit.text[result.answer.start : result.answer.end] == "Denver Broncos"


# --------------------------------------------------------------------------- SQuAD metrics


def test_squad_scores_use_the_official_normalisation_and_all_gold_answers():
    from pipeline.eval.squad_metrics import squad_scores

    scores = squad_scores(["The Denver Broncos!", "Panthers", None], [["Denver Broncos"], ["x", "Carolina Panthers"], ["50"]])
    assert scores.exact_match == pytest.approx(100 / 3, abs=0.01)
    assert scores.f1 == pytest.approx((100 + 100 * 2 * 0.5 * 1 / 1.5) / 3, abs=0.01)  # F1 of 1 token in 2 gold tokens
    assert scores.questions == 3 and scores.answered == 2
    with pytest.raises(ConfigError, match="2 predictions for 1 questions"):
        squad_scores(["a", "b"], [["a"]])


def test_no_answer_never_matches_a_gold_answer_that_normalises_to_nothing():
    from pipeline.eval.squad_metrics import squad_scores, squad_v2_scores

    # SQuAD v1.1 dev question 57340d124776f419006617bf lists "." among its gold answers
    golds = [["elimination of French power", "."]]
    for abstained in (None, ""):
        scores = squad_scores([abstained], golds)
        assert (scores.exact_match, scores.f1) == (0.0, 0.0)
        v2 = squad_v2_scores([abstained], golds)
        assert (v2["exact"], v2["f1"]) == (0.0, 0.0)
    assert squad_scores(["French power elimination"], golds).f1 == pytest.approx(100 * 2 * 0.75 * 1 / 1.75, abs=0.01)
    assert squad_scores(["elimination of French power"], golds).exact_match == 100.0


def test_oracle_reads_each_gold_paragraph(zurich_reader):
    from types import SimpleNamespace

    from pipeline.eval.squad_metrics import oracle_reader_metrics

    questions = [
        SimpleNamespace(text=UNICODE_QUESTION, context=UNICODE_TEXT, answers=["Zürich — café", "Zürich"]),
        SimpleNamespace(text=UNICODE_QUESTION, context="Lunch in Zürich at a café.", answers=["a café"]),
        SimpleNamespace(text="unscored", context="no gold answers", answers=[]),
    ]
    metrics = oracle_reader_metrics(Reader.load(str(zurich_reader)), questions)
    # Second paragraph: the reader says "Zürich at a café"; gold "a café" -> normalised "cafe" vs "zurich at cafe".
    assert metrics.questions == 2 and metrics.exact_match == 50.0
    assert metrics.f1 == pytest.approx((100 + 100 * 2 * (1 / 3) / (1 / 3 + 1)) / 2, abs=0.01)
    assert metrics.ms_per_question > 0
