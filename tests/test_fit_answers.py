"""``qa-search fit-answers``: refitting the answer policy's abstention on questions with and without an answer."""

from __future__ import annotations

import json
import math
import re

import pytest

from pipeline.apps.cli.main import main
from pipeline.errors import ConfigError
from pipeline.read.fit import (
    FITTABLE,
    AnswerRow,
    collect_answer_rows,
    fit_answer_policy,
)
from pipeline.read.policy import FEATURES, AnswerPolicy

# Six articles of two paragraphs. Each paragraph has two questions it answers, in its own words, and
# two written against it as SQuAD 2.0's crowd did: its words with a swapped-in name no paragraph holds.
TOPICS = [
    ("Lisbon", "Lisbon is the capital of Portugal and lies on the river Tagus.",
     "The Lisbon earthquake of 1755 destroyed most of the city and its harbour."),
    ("Oslo", "Oslo is the capital of Norway and sits at the head of a long fjord.",
     "The Oslo opera house opened in 2008 on the waterfront of the fjord."),
    ("Cairo", "Cairo is the capital of Egypt and stands on the banks of the Nile.",
     "The Cairo citadel was built by Saladin in the twelfth century on a hill."),
    ("Lima", "Lima is the capital of Peru and was founded by Francisco Pizarro.",
     "The Lima cathedral was rebuilt several times after earthquakes shook the city."),
    ("Hanoi", "Hanoi is the capital of Vietnam and lies on the Red River delta.",
     "The Hanoi old quarter has narrow streets named after the goods once sold there."),
    ("Quito", "Quito is the capital of Ecuador and lies high in the Andes mountains.",
     "The Quito old town was among the first places named a world heritage site."),
]
FOREIGN = ["Zorvath", "Quennick", "Brastoval", "Moltrey"]


def v2_file(path, articles=TOPICS, impossible=True):
    data = []
    for a, (title, first, second) in enumerate(articles):
        paragraphs = []
        for p, context in enumerate((first, second)):
            words = context.rstrip(".").split()
            qas = [
                {"id": f"{a}-{p}-a0", "question": f"What is {' '.join(words[:4])}?",
                 "answers": [{"text": words[-1], "answer_start": context.rfind(words[-1])}], "is_impossible": False},
                {"id": f"{a}-{p}-a1", "question": f"Which {' '.join(words[1:6])}?",
                 "answers": [{"text": words[0], "answer_start": 0}], "is_impossible": False},
            ]
            if impossible:
                qas += [
                    {"id": f"{a}-{p}-n{k}", "question": f"Which {FOREIGN[(a + p + k) % 4]} {' '.join(words[2:5])}?",
                     "answers": [], "is_impossible": True}
                    for k in range(2)
                ]
            paragraphs.append({"context": context, "qas": qas})
        data.append({"title": title, "paragraphs": paragraphs})
    path.write_text(json.dumps({"version": "v2.0", "data": data}), encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def fit_data(tmp_path_factory, tiny_bi_encoder):
    from pipeline.index import build_index

    root = tmp_path_factory.mktemp("fit-answers")
    questions = v2_file(root / "v2.json")
    index = root / "index"
    build_index(questions, index, bi_encoder=str(tiny_bi_encoder), progress=False)
    return questions, index


@pytest.fixture(scope="module")
def fit_pipeline(fit_data, tiny_cross_encoder, tiny_reader):
    from pipeline.qa import QAPipeline

    return QAPipeline.load(fit_data[1], reranker=str(tiny_cross_encoder), reader=str(tiny_reader))


def test_a_search_shows_the_evidence_its_answerability_came_from(fit_pipeline):
    result = fit_pipeline.search("What is the capital of Norway?")
    assert set(result.evidence) == set(FEATURES)  # every feature, those the policy does not read too
    assert result.answerability == pytest.approx(fit_pipeline.answer_policy.answerability(result.evidence), abs=1e-4)
    bm25 = fit_pipeline.search("What is the capital of Norway?", mode="bm25")
    assert math.isnan(bm25.evidence["dense_similarity"])
    as_json = json.dumps(bm25.to_dict(), allow_nan=False)  # JSON has no NaN: unmeasured is null
    assert json.loads(as_json)["evidence"]["dense_similarity"] is None
    assert fit_pipeline.search("What is the capital of Norway?", read=False).evidence == {}


def test_the_refit_learns_the_swapped_in_names_and_the_pipeline_abstains_with_it(fit_data, fit_pipeline, tmp_path):
    from pipeline.eval.questions import load_questions

    questions = load_questions(fit_data[0])
    shipped = fit_pipeline.answer_policy
    rows, skipped = collect_answer_rows(fit_pipeline, questions, FITTABLE, progress=False)
    assert fit_pipeline.answer_policy is shipped  # the collecting policy was for those searches only
    assert skipped == 0 and len(rows) == len(questions) == 48
    fitted = fit_answer_policy(rows, shipped, FITTABLE, folds=3, fitted_for={"reader": "tiny"})
    # the tiny models are random: what separates the questions is the name no paragraph mentions
    assert fitted.pooled["auroc"] > 0.9
    assert len(fitted.folds) == 3 and {a for f in fitted.folds for a in f["articles"]} == {t[0] for t in TOPICS}
    for fold in fitted.folds:  # no article is both fitted and measured on
        assert fold["auroc"] is not None and 0.0 <= fold["false_answer_rate"] <= 1.0
    policy = fitted.policy
    assert policy.features == FITTABLE and 0.0 < policy.threshold < 1.0
    assert (policy.paragraphs, policy.temperature) == (shipped.paragraphs, shipped.temperature)
    assert policy.fitted_for["reader"] == "tiny" and policy.fitted_for["questions"] == 48
    path = policy.save(tmp_path / "policy.json")
    assert AnswerPolicy.load(path) == policy
    fit_pipeline.answer_policy = AnswerPolicy.load(path)
    try:
        unanswerable = fit_pipeline.search("Which Vorlanth is the capital of Portugal?")
        answerable = fit_pipeline.search("What is the capital of Portugal and lies on the river?")
    finally:
        fit_pipeline.answer_policy = shipped
    assert unanswerable.answer is None and "No paragraph here answers this" in unanswerable.no_answer_reason
    assert answerable.answer is not None and answerable.answerability > unanswerable.answerability


def test_cli_fit_answers_writes_a_policy_that_search_loads(fit_data, tiny_cross_encoder, tiny_reader, tmp_path,
                                                           capsys):
    questions, index = fit_data
    out, report = tmp_path / "answers.json", tmp_path / "report.json"
    code = main(["fit-answers", "--index", str(index), "--questions", str(questions), "--reranker",
                 str(tiny_cross_encoder), "--reader", str(tiny_reader), "--folds", "3", "--out", str(out),
                 "--report", str(report), "-q"])
    printed = capsys.readouterr().out
    assert code == 0, printed
    assert "Out of fold, 48 questions of 6 articles (24 answerable; 0 without a candidate left out)" in printed
    assert f"use it with --answer-policy {out}" in printed
    policy = AnswerPolicy.load(out)
    assert policy.fitted_for["read_paragraphs"] > 0 and policy.fitted_for["data"] == "v2.json"
    figures = json.loads(report.read_text(encoding="utf-8"))
    assert len(figures["folds"]) == 3
    assert figures["pooled_out_of_fold"]["auroc"] == pytest.approx(policy.figures["cv_pooled_auroc"], abs=1e-4)
    code = main(["search", "Which Vorlanth is the capital of Portugal?", "--index", str(index), "--reranker",
                 str(tiny_cross_encoder), "--reader", str(tiny_reader), "--answer-policy", str(out), "--json"])
    assert code == 0
    result = json.loads(capsys.readouterr().out)
    assert result["answer"] is None and result["evidence"]["missing_terms"] >= 1


@pytest.mark.parametrize("extra, message", [
    (["--folds", "7"], "--folds 7 needs at least 2 folds and as many articles (or groups); the questions come from 6."),
    (["--features", "share,bogus"], "Unknown answer-policy feature(s) bogus; valid values: probability,"),
    (["--features", "question_form"], "Unknown answer-policy feature(s) question_form"),
    (["--keep", "1.5"], "--keep must be between 0 and 1"),
    (["--no-read"], "Fitting the answer policy needs a reader; do not pass --no-read."),
])
def test_cli_fit_answers_errors_exit_2_with_a_message(fit_data, tiny_cross_encoder, tiny_reader, tmp_path, capsys,
                                                      extra, message):
    questions, index = fit_data
    out = tmp_path / "answers.json"
    code = main(["fit-answers", "--index", str(index), "--questions", str(questions), "--reranker",
                 str(tiny_cross_encoder), "--reader", str(tiny_reader), "--folds", "3", "--out", str(out), "-q",
                 *extra])
    assert code == 2
    assert message in capsys.readouterr().err
    assert not out.exists()


def test_fitting_needs_questions_without_an_answer(tmp_path, fit_data, tiny_cross_encoder, tiny_reader, capsys):
    answerable_only = v2_file(tmp_path / "v1-like.json", impossible=False)
    code = main(["fit-answers", "--index", str(fit_data[1]), "--questions", str(answerable_only), "--reranker",
                 str(tiny_cross_encoder), "--reader", str(tiny_reader), "--folds", "3",
                 "--out", str(tmp_path / "p.json"), "-q"])
    assert code == 2
    assert "needs questions with an answer and questions without one" in capsys.readouterr().err
    rows = [AnswerRow(str(i), "A" if i % 2 else "B", bool(i % 3), {"share": float(i)}) for i in range(12)]
    # one article of unanswerable questions only: the fold that measures it trains on answerable ones alone
    segregated = [AnswerRow(str(i), f"g{i % 3}", i % 3 != 0, {"share": float(i % 5)}) for i in range(30)]
    with pytest.raises(ConfigError, match="Fold \\d's training articles hold only answerable questions; use fewer --folds"):
        fit_answer_policy(segregated, AnswerPolicy(), ("share",), folds=3)
    with pytest.raises(ConfigError, match="No search measured dense_similarity"):
        fit_answer_policy([AnswerRow(r.question_id, r.group, r.answerable, {**r.features, "dense_similarity": math.nan})
                           for r in rows], AnswerPolicy(), ("share", "dense_similarity"), folds=2)


def test_the_cli_fit_and_the_benchmark_that_fitted_the_shipped_policy_agree():
    """fit-answers and benchmarks/answers_fit.py share the model, the folds and the threshold rule."""
    import numpy as np
    from conftest import load_benchmark

    answers_fit = load_benchmark("answers_fit")
    rng = np.random.default_rng(0)
    n, names = 240, ("share", "span_score", "missing_terms")
    y = rng.random(n) < 0.5
    X = np.column_stack([rng.normal(y * 0.8, 1.0), rng.normal(y * 0.5, 1.0), rng.poisson(2 - y)]).astype(float)
    groups = [f"article-{i % 8}" for i in range(n)]
    rows = [AnswerRow(str(i), groups[i], bool(y[i]), dict(zip(names, X[i]))) for i in range(n)]
    fitted = fit_answer_policy(rows, AnswerPolicy(paragraphs=1), names, folds=4)
    records = [{"answerable": bool(y[i]), "title": groups[i], "question": "q", "answers": ["x"] if y[i] else []}
               for i in range(n)]
    cv = answers_fit.cross_validate(records, X, ["x"] * n, 4, names)
    assert fitted.pooled["auroc"] == pytest.approx(cv["pooled_out_of_fold"]["auroc"], abs=1e-9)
    assert fitted.pooled["false_answer_rate_at_keep"] == pytest.approx(
        cv["pooled_out_of_fold"]["false_answer_rate_at_keep"], abs=1e-9)
    assert [f["articles"] for f in fitted.folds] == [f["articles"] for f in cv["folds"]]
    scaler, model = answers_fit.fit(X, y.astype(int))
    assert fitted.policy.coef == answers_fit.model_fields(scaler, model)["coef"]
    assert fitted.policy.threshold == round(answers_fit.keep_threshold(model.predict_proba(scaler.transform(X))[:, 1],
                                                                       y.astype(int)), 6)


def test_questions_about_your_own_documents_fit_from_json_lines(fit_data, fit_pipeline, tiny_cross_encoder, tiny_reader,
                                                                tmp_path, capsys):
    """A deployment's own questions, one JSON object a line with its group; the same questions fit the same."""
    from pipeline.eval.questions import load_labelled_questions, load_questions

    squad = load_questions(fit_data[0])
    lines = tmp_path / "mine.jsonl"
    lines.write_text("".join(json.dumps({"id": q.id, "question": q.text, "answerable": q.answerable, "group": q.title,
                                         "answers": list(q.answers)}) + "\n\n" for q in squad), encoding="utf-8")
    mine = load_labelled_questions(lines)
    assert [(q.id, q.text, q.title, q.answerable, q.answers) for q in mine] == [
        (q.id, q.text, q.title, q.answerable, q.answers) for q in squad]
    fits = []
    for questions in (squad, mine):
        rows, _ = collect_answer_rows(fit_pipeline, questions, FITTABLE, progress=False)
        fits.append(fit_answer_policy(rows, fit_pipeline.answer_policy, FITTABLE, folds=3))
    assert fits[0].policy == fits[1].policy and fits[0].pooled == fits[1].pooled
    assert main(["fit-answers", "--index", str(fit_data[1]), "--questions", str(lines), "--reranker",
                 str(tiny_cross_encoder), "--reader", str(tiny_reader), "--folds", "3",
                 "--out", str(tmp_path / "mine-policy.json"), "-q"]) == 0
    assert "48 questions of 6 groups" in capsys.readouterr().out


@pytest.mark.parametrize("lines, message", [
    (['{"question": "Who?", "answerable": true, "group": "a"}', "not json"], "line 2 is not JSON"),
    (['{"question": "Who?", "answerable": "yes", "group": "a"}'], 'line 1 needs "answerable": true or false'),
    (['{"question": "Who?", "answerable": false}'], 'line 1 needs a non-empty "group" (the document'),
    (['{"question": " ", "answerable": false, "group": "a"}'], 'line 1 needs a non-empty "question"'),
    (['{"question": "Who?", "answerable": true, "group": "a", "answers": "Remus"}'],
     'line 1: "answers" must be a list of strings'),
    ([""], "no questions in the file"),
])
def test_a_malformed_json_lines_file_says_which_line(tmp_path, lines, message):
    from pipeline.errors import CorpusError
    from pipeline.eval.questions import load_labelled_questions

    path = tmp_path / "bad.jsonl"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    with pytest.raises(CorpusError, match=re.escape(message)):
        load_labelled_questions(path)
    with pytest.raises(ConfigError, match="--articles picks articles of a SQuAD file"):
        load_labelled_questions(path, "0-3")
