"""Answers that hold up: span scores comparable across paragraphs, aggregation, abstention, v2.0 metrics."""

from __future__ import annotations

import json
import math
import re

import numpy as np
import pytest
from conftest import load_benchmark, make_keyword_reader

from pipeline.errors import ConfigError
from pipeline.index.bm25 import BM25Index
from pipeline.read.answers import aggregate, answer_features, decide
from pipeline.read.evidence import (
    MAX_SENTENCES,
    LexicalEvidence,
    dense_similarity,
    sentence_similarity,
)
from pipeline.read.policy import AnswerPolicy
from pipeline.read.reader import Reader, Reading, Span
from pipeline.read.similarity import SentenceSimilarity
from pipeline.results import Hit

QUESTION = "Is Zürich a café town?"
SHORT = "Visit Zürich — café culture, said the guide."
FILLER = " ".join(f"Sentence number {i} talks about nothing in particular." for i in range(12))
LONG = FILLER + " " + SHORT + " " + FILLER


@pytest.fixture(scope="module")
def zurich_reader(tmp_path_factory, minilm_path):
    return make_keyword_reader(tmp_path_factory.mktemp("kw-zurich-answers"), minilm_path, "Zürich", "café")


def test_span_scores_are_the_same_in_a_short_and_a_long_paragraph(zurich_reader):
    reader = Reader.load(str(zurich_reader))
    short, long = reader.spans([(QUESTION, SHORT), (QUESTION, LONG)])
    assert short.best.text == long.best.text == "Zürich — café"
    # start logit 4 + end logit 4, whatever else the paragraph holds
    assert short.best.score == pytest.approx(8.0, abs=1e-3)
    assert long.best.score == pytest.approx(short.best.score, abs=1e-3)
    assert LONG[long.best.start : long.best.end] == "Zürich — café"
    # The per-text softmax share (Reader.read) is diluted by the long paragraph's many spans.
    share_short, share_long = (a.score for a in reader.read(QUESTION, [SHORT, LONG]))
    assert share_long < share_short - 0.05


def test_a_span_in_two_overlapping_windows_counts_once(zurich_reader):
    reader = Reader.load(str(zurich_reader), max_length=64, stride=24)
    text = " ".join(f"Line {i} is filler." for i in range(12)) + " " + SHORT + " " + FILLER
    windows = reader._windows([QUESTION], [text])
    holding = [w for w in windows if any(text[a:b] == "Zürich" for a, b in w.offsets[w.lo : w.hi + 1])]
    assert len(holding) >= 2  # the span sits in the shared stride of two windows
    (reading,) = reader.spans([(QUESTION, text)], top=50)
    keys = [(s.start, s.end) for s in reading.spans]
    assert len(keys) == len(set(keys))
    assert [s.text for s in reading.spans].count("Zürich — café") == 1
    assert reading.null is None  # a SQuAD 1.1 model has no null score


def _hit(hid: str, probability: float | None, fused: int = 1) -> Hit:
    return Hit(id=hid, title=hid, text="", source_id=hid, answerable=None if probability is None else probability >= 0.5,
               probability=probability, ranks={"fused": fused, "rerank": 1})


def test_identical_answers_add_up_their_evidence_across_paragraphs():
    hits = [_hit("tesla#0", 0.6), _hit("tesla#1", 0.6), _hit("other#0", 0.6)]
    readings = [
        Reading([Span("1856", 10, 14, 5.0), Span("July 1856", 5, 14, 3.0)]),
        Reading([Span("1856.", 40, 45, 5.0)]),  # normalises to the same answer
        Reading([Span("1861", 0, 4, 5.5)]),  # the best single span
    ]
    policy = AnswerPolicy(paragraphs=3)
    candidates, per_hit = aggregate(hits, readings, policy)
    assert candidates[0].key == "1856"
    assert [s.id for s in candidates[0].support] == ["tesla#0", "tesla#1"] or [s.id for s in candidates[0].support] == ["tesla#1", "tesla#0"]
    assert candidates[0].score > candidates[1].score and candidates[1].key == "1861"
    assert sum(c.score for c in candidates) == pytest.approx(1.0)
    # each hit's own answer: its best span, with its share of the search's evidence
    assert per_hit[2].text == "1861" and per_hit[2].score > per_hit[0].score
    assert per_hit[0].span_score == 5.0
    # The paragraph probability weighs in: a paragraph the reranker doubts gives less.
    doubted = [_hit("tesla#0", 0.01), _hit("tesla#1", 0.01), _hit("other#0", 0.9)]
    candidates, _ = aggregate(doubted, readings, policy)
    assert candidates[0].key == "1861"


def test_decision_lists_support_and_features_say_who_agrees():
    hits = [_hit("a", 0.9, fused=1), _hit("b", 0.3, fused=2)]
    readings = [Reading([Span("Paris", 0, 5, 6.0)]), Reading([Span("paris", 3, 8, 6.0)])]
    decision = decide(hits, readings, AnswerPolicy(paragraphs=2))
    assert decision.answer.text == "Paris" and decision.answer.id == "a"
    assert [s.id for s in decision.answer.support] == ["a", "b"]
    assert decision.answer.score == pytest.approx(1.0)
    assert decision.answerability is None and decision.reason is None  # no fitted model: never abstains
    feats = answer_features(hits, decision.candidates, 2)
    assert feats["agreement"] == 1.0 and feats["answer_in_top"] == 1.0 and feats["top_agrees"] == 1.0
    assert feats["probability"] == 0.9 and feats["probability_gap"] == pytest.approx(0.6)


TESLA = ("Nikola Tesla was born on 10 July 1856 in Smiljan. His father was an Orthodox priest. "
         "Tesla moved to the United States in 1884.")


def test_lexical_evidence_finds_the_words_an_unanswerable_question_swapped_in():
    lexical = LexicalEvidence()
    start = TESLA.index("1856")
    asked = lexical.features("In what year was Nikola Tesla born?", TESLA, start, start + 4)
    rarity = asked.pop("rare_term_missing")
    assert asked == {"question_coverage": 1.0, "sentence_coverage": 1.0, "missing_terms": 0.0, "negation_mismatch": 0.0}
    assert math.isnan(rarity)  # no index, no document frequencies: unmeasured, so the policy reads it as its mean
    # SQuAD 2.0 style: an entity swapped in (Edison) and a negation the paragraph never states
    swapped = lexical.features("In what year was Thomas Edison not born?", TESLA, start, start + 4)
    assert swapped["question_coverage"] == pytest.approx(1 / 3)  # born; not thomas, edison
    assert swapped["missing_terms"] == 2.0 and swapped["negation_mismatch"] == 1.0
    # the sentence is the one holding the span: "father" and "priest" are in the paragraph, not in it
    father = lexical.features("When was Tesla's father a priest?", TESLA, start, start + 4)
    assert father["question_coverage"] == 1.0 and father["sentence_coverage"] < 0.5
    assert LexicalEvidence.sentence(TESLA, start, start + 4) == "Nikola Tesla was born on 10 July 1856 in Smiljan."
    # initials and abbreviations do not end a sentence (SQuAD's Tesla paragraph: "10 July [O.S. 28 June] 1856")
    wiki = "Tesla was born on 10 July [O.S. 28 June] 1856 in Smiljan. Dr. Milutin, his father, served the U.S. Army."
    at = wiki.index("1856")
    assert lexical.features("In what year was Nikola Tesla born?", wiki, at, at + 4)["sentence_coverage"] == pytest.approx(2 / 3)
    at = wiki.index("father")
    assert LexicalEvidence.sentence(wiki, at, at + 6) == "Dr. Milutin, his father, served the U.S. Army."


def test_a_missing_term_weighs_by_its_rarity_in_the_index(tmp_path):
    corpus = [TESLA, "Thomas Edison, the famous inventor, was born in Ohio.", "The famous Tesla coil.",
              "A famous priest moved.", "Edison was famous."]
    bm25 = BM25Index.from_texts(corpus)
    assert bm25.document_frequencies(["famous", "nikola", "unseen"]) == {"famous": 4, "nikola": 1, "unseen": 0}
    # read from bm25s's score matrix, saved and memory-mapped back, as counted over the postings by rank-bm25
    every = list(bm25.table.vocab)
    bm25.save(tmp_path)
    loaded = BM25Index.load(tmp_path)
    counted = BM25Index.from_texts(corpus, engine="rank-bm25").document_frequencies(every)
    assert loaded.bm25s_model is not None and loaded.document_frequencies(every) == counted == bm25.document_frequencies(every)
    assert counted["famous"] == 4 and counted["edison"] == 2
    lexical = LexicalEvidence.of_index(bm25)
    start = TESLA.index("1856")

    def rarity(question: str) -> float:
        return lexical.features(question, TESLA, start, start + 4)["rare_term_missing"]

    assert rarity("In what year was Nikola Tesla born?") == 0.0  # every term is in the answer's sentence
    assert rarity("In what year was Thomas Edison born?") == 1.0  # the question's rarest term is missing
    # a common word missing weighs less than a name: idf(famous) / idf(nikola) over the index's 5 passages
    expected = math.log(1 + (5 - 4 + 0.5) / (4 + 0.5)) / math.log(1 + (5 - 1 + 0.5) / (1 + 0.5))
    assert rarity("In what year was the famous Nikola Tesla born?") == pytest.approx(expected)
    assert 0 < expected < 0.5
    # "priest" is in the paragraph but not in the answer's sentence
    assert rarity("In what year was the priest Nikola Tesla born?") > 0


def test_answer_features_read_the_answers_paragraph_and_default_without_a_question():
    hits = [Hit(id="t", title="t", text=TESLA, source_id="t", answerable=True, probability=0.9, ranks={"fused": 1})]
    start = TESLA.index("1856")
    decision = decide(hits, [Reading([Span("1856", start, start + 4, 7.0)])], AnswerPolicy(paragraphs=1))
    with_question = answer_features(hits, decision.candidates, 1, "Which year was Marie Curie born?")
    assert with_question["missing_terms"] == 2.0 and with_question["question_coverage"] == pytest.approx(1 / 3)
    assert answer_features(hits, decision.candidates, 1)["question_coverage"] == 1.0


def test_dense_similarity_is_the_first_hits_cosine_bounded_when_the_dense_list_missed_it():
    def hit(hid, dense=None):
        return Hit(id=hid, title=hid, text="", source_id=hid, answerable=None, probability=0.5,
                   scores={"bm25": 3.0, **({"dense": dense} if dense is not None else {})}, ranks={"fused": 1})

    assert dense_similarity([hit("a", 0.71), hit("b", 0.80)]) == pytest.approx(0.71)
    # BM25 alone found the first hit: below every cosine the dense list returned, so its lowest stands in
    assert dense_similarity([hit("a"), hit("b", 0.80), hit("c", 0.62)]) == pytest.approx(0.62)
    # no dense scores (a BM25 search): unmeasured, and a fitted policy reads it as its mean
    assert math.isnan(dense_similarity([hit("a"), hit("b")])) and math.isnan(dense_similarity([]))
    policy = AnswerPolicy(paragraphs=1, features=("span_score", "dense_similarity"), mean=(0.0, 0.6),
                          scale=(1.0, 0.1), coef=(1.0, 2.0), intercept=0.0, threshold=0.5)
    assert policy.answerability({"span_score": 0.0, "dense_similarity": math.nan}) == pytest.approx(0.5)
    assert policy.answerability({"span_score": 0.0, "dense_similarity": 0.7}) == pytest.approx(1 / (1 + math.exp(-2.0)))
    assert policy.answerability({"span_score": 0.0, "dense_similarity": 0.5}) < 0.5
    feats = answer_features([hit("a", 0.71)], [], 1)
    assert feats["dense_similarity"] == pytest.approx(0.71)


def test_sentence_similarity_is_the_answers_paragraphs_closest_sentence_and_can_tip_a_decision():
    asked = []

    def similarity(question, texts):
        asked.append(list(texts))
        return [0.2, 0.7, 0.1][: len(texts)]

    assert sentence_similarity("When was Tesla born?", TESLA, similarity) == pytest.approx(0.7)
    assert asked == [["Nikola Tesla was born on 10 July 1856 in Smiljan.", "His father was an Orthodox priest.",
                      "Tesla moved to the United States in 1884."]]
    assert math.isnan(sentence_similarity("When was Tesla born?", TESLA, None))  # no bi-encoder: unmeasured
    many = " ".join(f"Sentence {i} is here." for i in range(MAX_SENTENCES + 8))
    assert sentence_similarity("q", many, lambda q, texts: [float(len(texts))] * len(texts)) == MAX_SENTENCES
    # in a decision: the same paragraph and span, answered or not by how close its closest sentence is
    hits = [Hit(id="t", title="t", text=TESLA, source_id="t", answerable=True, probability=0.9, ranks={"fused": 1})]
    start = TESLA.index("1856")
    reading = [Reading([Span("1856", start, start + 4, 9.0)])]
    policy = AnswerPolicy(paragraphs=1, features=("sentence_similarity",), mean=(0.5,), scale=(0.1,), coef=(1.0,),
                          intercept=0.0, threshold=0.5)
    close = decide(hits, reading, policy, question="When was Tesla born?", similarity=lambda q, t: [0.7] * len(t))
    assert close.answer.text == "1856" and close.answerability == pytest.approx(1 / (1 + math.exp(-2.0)))
    far = decide(hits, reading, policy, question="When was Edison born?", similarity=lambda q, t: [0.3] * len(t))
    assert far.answer is None and far.candidate.text == "1856"
    assert "how close the question is in meaning to the paragraph's closest sentence (0.30)" in far.reason
    assert decide(hits, reading, policy, question="When was Tesla born?").answerability == pytest.approx(0.5)

    def unused(question, texts):
        raise AssertionError("a policy without sentence_similarity must not run the bi-encoder")

    assert decide(hits, reading, AnswerPolicy(paragraphs=1), question="When?", similarity=unused).answer.text == "1856"


def test_the_latency_benchmarks_policy_without_a_feature_reads_as_that_feature_unmeasured():
    without_feature = load_benchmark("latency_budget").without_feature
    shipped = AnswerPolicy.load()
    assert "sentence_similarity" in shipped.features  # the shipped policy reads it (session 17)
    lean = without_feature(shipped, "sentence_similarity")
    assert "sentence_similarity" not in lean.features and len(lean.coef) == len(shipped.coef) - 1
    features = dict(zip(shipped.features, shipped.mean))
    features.update(span_score=6.0, dense_similarity=0.41, sentence_similarity=math.nan)
    assert lean.answerability(features) == pytest.approx(shipped.answerability(features))
    assert without_feature(lean, "sentence_similarity") is lean


def test_the_bi_encoders_similarities_are_the_cosines_of_its_embeddings(minilm_path):
    from pipeline.models.encoder import BiEncoder

    encoder = BiEncoder.load(str(minilm_path), device="cpu")
    texts = ["Warsaw was founded in the 13th century.", "Bananas are rich in potassium."]
    sims = encoder.similarities("When was Warsaw founded?", texts)
    vectors = encoder.encode(["When was Warsaw founded?", *texts])
    assert sims == pytest.approx((vectors[1:] @ vectors[0]).tolist(), abs=1e-5)
    assert sims[0] > sims[1] and all(-1.0 <= s <= 1.0 for s in sims)
    assert encoder.similarities("When was Warsaw founded?", []) == []
    # the cache a batch of searches and the fit use gives the same figures and encodes each text once
    encoded = []
    cached = SentenceSimilarity(lambda batch: encoded.append(list(batch)) or encoder.encode(batch))
    cached.warm(["When was Warsaw founded?", *texts, texts[0]])
    assert cached("When was Warsaw founded?", texts) == pytest.approx(sims, abs=1e-5)
    assert cached("When was Warsaw founded?", texts[::-1]) == pytest.approx(sims[::-1], abs=1e-5)
    assert encoded == [["When was Warsaw founded?", *texts]]


def test_a_batch_of_searches_encodes_its_answers_sentences_in_one_call(squad2_reader, tiny_index, tiny_cross_encoder):
    from pipeline.qa import QAPipeline

    qa = QAPipeline.load(tiny_index, reranker=str(tiny_cross_encoder), reader=str(squad2_reader), mode="bm25")
    policy = AnswerPolicy(paragraphs=1, features=("sentence_similarity",), mean=(0.5,), scale=(0.1,), coef=(1.0,),
                          intercept=0.0, threshold=0.5)
    qa.answer_policy = policy
    calls = []
    encode = qa.encoder.encode
    qa.encoder.encode = lambda texts, **kw: calls.append(list(texts)) or encode(texts, **kw)
    questions = ["What is the capital of France?", "Which river flows through Vienna?", "Which city has many museums?"]
    results = qa.search_many(questions, threshold=0.0, top_k=10)  # answerability is shown to 4 places
    with_sentences = [c for c in calls if set(c) - set(questions)]
    assert len(with_sentences) == 1 and set(questions) <= set(with_sentences[0])
    for question, result in zip(questions, results):
        best = result.answer or result.candidate
        text = next(h.text for h in result.hits if h.id == best.id)
        closest = max(qa.encoder.similarities(question, LexicalEvidence.sentences(text)))
        assert result.answerability == pytest.approx(policy.answerability({"sentence_similarity": closest}), abs=1e-4)


def test_an_abstention_says_which_features_weighed_most_against_answering():
    from pipeline.read.policy import FEATURE_LABELS, FEATURES

    assert set(FEATURE_LABELS) == set(FEATURES)
    policy = AnswerPolicy(paragraphs=1, features=("span_score", "dense_similarity", "missing_terms"),
                          mean=(8.0, 0.6, 1.0), scale=(2.0, 0.1, 1.0), coef=(0.5, 1.0, -0.5), intercept=0.0,
                          threshold=0.5)
    features = {"span_score": 9.0, "dense_similarity": 0.41, "missing_terms": 3.0}
    pulls = policy.contributions(features)
    assert pulls == pytest.approx({"span_score": 0.25, "dense_similarity": -1.9, "missing_terms": -1.0})
    assert policy.answerability(features) == pytest.approx(1 / (1 + math.exp(-(0.25 - 1.9 - 1.0))))
    assert policy.weighed_against(features) == (
        "how close question and paragraph are in meaning (0.41), the question's terms the paragraph never mentions (3)")
    assert policy.weighed_against(features, most=1).startswith("how close")
    assert policy.weighed_for(features) == "the reader's span score (9)"
    assert policy.weighed_for({**features, "span_score": 8.0}) == ""
    assert policy.weighed_against({**features, "dense_similarity": math.nan, "missing_terms": 0.0}) == ""
    # in a decision: the reason names them after the best candidate
    hits = [Hit(id="t", title="t", text=TESLA, source_id="t", answerable=True, probability=0.9,
                scores={"dense": 0.41}, ranks={"fused": 1})]
    start = TESLA.index("1856")
    decision = decide(hits, [Reading([Span("1856", start, start + 4, 9.0)])], policy,
                      question="In what year was Thomas Edison born?")
    assert decision.answer is None and decision.candidate.text == "1856"
    assert decision.reason.endswith("(best candidate '1856', from the first paragraph; against it most: how close "
                                    "question and paragraph are in meaning (0.41), the question's terms the paragraph "
                                    "never mentions (2)).")


FORM = {"intercept": 0.5, "weights": {"not": -2.0, "never": -1.5, "didn": -1.0, "which": 0.75}}


def test_the_question_form_reads_closed_class_words_and_can_tip_a_decision():
    policy = AnswerPolicy(question_form=FORM)
    assert policy.question_form_score("Which year?") == pytest.approx(1.25)
    # each word once; case, punctuation and a contraction's stem ("didn't" -> "didn") as scikit-learn tokenises
    assert policy.question_form_score("NOT, not... Who didn't win?") == pytest.approx(0.5 - 2.0 - 1.0)
    assert math.isnan(AnswerPolicy().question_form_score("Who did not win?"))  # no weights: unmeasured
    # in a decision: the same paragraph and span, answered or not by the question's wording alone
    hits = [Hit(id="t", title="t", text=TESLA, source_id="t", answerable=True, probability=0.9, scores={},
                ranks={"fused": 1})]
    start = TESLA.index("1856")
    reading = [Reading([Span("1856", start, start + 4, 9.0)])]
    form_policy = AnswerPolicy(paragraphs=1, features=("question_form",), mean=(0.0,), scale=(1.0,), coef=(1.0,),
                               intercept=0.0, threshold=0.5, question_form=FORM)
    asked = decide(hits, reading, form_policy, question="In which year was Nikola Tesla born?")
    assert asked.answer.text == "1856" and asked.answerability == pytest.approx(1 / (1 + math.exp(-1.25)))
    negated = decide(hits, reading, form_policy, question="In what year was Nikola Tesla not born?")
    assert negated.answer is None and negated.candidate.text == "1856"
    assert "how the question is worded (-1.50)" in negated.reason
    # no question: unmeasured, no pull (the fit's mean)
    assert decide(hits, reading, form_policy).answerability == pytest.approx(0.5)
    with pytest.raises(ConfigError, match="uses the question_form feature but has no question_form weights"):
        AnswerPolicy(features=("question_form",), mean=(0.0,), scale=(1.0,), coef=(1.0,))
    with pytest.raises(ConfigError, match="question_form must be a JSON object"):
        AnswerPolicy(question_form=["not"])


def test_answers_fit_question_form_scores_as_scikit_learn_and_stacks_out_of_fold():
    """The pipeline's score is the fitted model's log-odds; the abstention model never sees a test article's labels."""
    from sklearn.feature_extraction.text import CountVectorizer
    from sklearn.linear_model import LogisticRegression

    answers_fit = load_benchmark("answers_fit")
    # opt-in: the shipped policy is fitted on the script's default features, which leave it out
    assert "question_form" not in answers_fit.DEFAULT_FEATURES
    assert AnswerPolicy.load().features == answers_fit.DEFAULT_FEATURES
    rng = np.random.default_rng(0)
    openers = ["What", "Which", "Who", "When did", "How many"]
    questions, y, groups = [], [], []
    for article in range(6):
        for i in range(40):
            negated = rng.random() < 0.5
            # "never" says unanswerable in articles 0-4; in article 5 it says the opposite
            label = int(not negated) if article < 5 else int(negated)
            questions.append(f"{rng.choice(openers)} {'never ' if negated else ''}happened to thing {i} of article "
                             f"{article}? It's, you know, WEIRD: isn't it?")
            y.append(label)
            groups.append(f"article{article}")
    y, groups = np.array(y), np.array(groups)
    form = answers_fit.fit_question_form(questions, y)
    assert set(form["weights"]) <= set(answers_fit.form_words()) and form["weights"]["never"] < -0.5
    vectorizer = CountVectorizer(vocabulary=answers_fit.form_words(), binary=True)
    model = LogisticRegression(C=answers_fit.FORM_C, max_iter=3000).fit(vectorizer.transform(questions), y)
    expected = model.decision_function(vectorizer.transform(questions))
    assert answers_fit.question_form_scores(form, questions) == pytest.approx(expected, abs=1e-4)
    # fold features: article 5 tested, scored by a model of articles 0-4 alone ("never" still reads unanswerable)
    names = ("span_score", "question_form")
    X = np.zeros((len(y), 2))
    test, train = np.nonzero(groups == "article5")[0], np.nonzero(groups != "article5")[0]
    X_train, X_test = answers_fit.fold_features(X, y, groups, questions, names, train, test, folds=5)
    never = np.array(["never" in questions[i] for i in test])
    assert X_test[never, 1].max() < X_test[~never, 1].min()
    assert X_test[:, 0].tolist() == [0.0] * len(test)
    # the test article's labels reach nothing: every one flipped, every feature stays
    flipped = y.copy()
    flipped[test] = 1 - flipped[test]
    X_train_again, X_test_again = answers_fit.fold_features(X, flipped, groups, questions, names, train, test, folds=5)
    assert np.array_equal(X_train_again, X_train) and np.array_equal(X_test_again, X_test)
    # training rows are scored out of fold: a row's own label does not move its score
    flipped = y.copy()
    flipped[train[0]] = 1 - flipped[train[0]]
    X_flipped, _ = answers_fit.fold_features(X, flipped, groups, questions, names, train, test, folds=5)
    assert X_flipped[0, 1] == pytest.approx(X_train[0, 1])
    assert not np.allclose(X_flipped[:, 1], X_train[:, 1])  # ...while the other articles' models see it


SPAN_POLICY = AnswerPolicy(
    paragraphs=3, features=("span_score",), mean=(0.0,), scale=(1.0,), coef=(2.0,), intercept=-2.0, threshold=0.5
)


def test_an_abstention_just_below_the_threshold_shows_the_places_that_tell_them_apart():
    hits = [Hit(id="t", title="t", text=TESLA, source_id="t", answerable=True, probability=0.9, scores={},
                ranks={"fused": 1})]
    start = TESLA.index("1856")
    near = decide(hits, [Reading([Span("1856", start, start + 4, 0.9992)])], SPAN_POLICY, question="When?")
    assert near.answer is None and near.answerability == pytest.approx(0.4996, abs=1e-4)
    assert near.reason.startswith("No paragraph here answers this: answerability 0.4996 is below 0.5000 (")
    far = decide(hits, [Reading([Span("1856", start, start + 4, 0.5)])], SPAN_POLICY, question="When?")
    assert far.reason.startswith("No paragraph here answers this: answerability 0.27 is below 0.50 (")


def test_policy_round_trips_through_json_and_refuses_bad_files(tmp_path):
    path = SPAN_POLICY.save(tmp_path / "policy.json")
    loaded = AnswerPolicy.load(path)
    assert loaded == SPAN_POLICY and loaded.abstains
    assert loaded.answerability({"span_score": 1.0}) == pytest.approx(0.5)
    assert loaded.answerability({"span_score": -2.0}) < 0.01
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(ConfigError, match="not JSON"):
        AnswerPolicy.load(tmp_path / "bad.json")
    (tmp_path / "odd.json").write_text(json.dumps({"features": ["shoe_size"], "mean": [0], "scale": [1], "coef": [1]}))
    with pytest.raises(ConfigError, match="Unknown answer-policy feature"):
        AnswerPolicy.load(tmp_path / "odd.json")
    with pytest.raises(ConfigError, match="No answer policy file"):
        AnswerPolicy.load(tmp_path / "missing.json")
    assert AnswerPolicy.load().paragraphs >= 1  # the shipped one loads
    form_policy = AnswerPolicy(features=("question_form",), mean=(0.0,), scale=(1.0,), coef=(1.0,), threshold=0.5,
                               question_form=FORM)
    assert AnswerPolicy.load(form_policy.save(tmp_path / "form.json")) == form_policy


@pytest.fixture(scope="module")
def squad2_reader(tmp_path_factory, minilm_path):
    """A no-answer model known only by its name (like deepset/electra-base-squad2): no flag in its config."""
    directory = tmp_path_factory.mktemp("hub") / "electra-base-squad2"
    return make_keyword_reader(directory, minilm_path, "capital", "France", cls_weight=0.5)


def test_a_squad2_reader_by_name_drives_abstention(squad2_reader, tiny_index, tiny_cross_encoder):
    from pipeline.qa import QAPipeline

    reader = Reader.load(str(squad2_reader))
    assert reader.allow_no_answer  # from the name alone
    (answered, unanswerable) = reader.spans(
        [("capital?", "Paris is the capital and largest city of France."), ("capital?", "Berlin has many museums.")]
    )
    assert answered.null == pytest.approx(4.0, abs=1e-3)  # [CLS] start + end logit
    assert answered.best.text == "capital and largest city of France"
    assert answered.best.score == pytest.approx(8.0 - 4.0, abs=1e-3)  # span score relative to the null score
    assert unanswerable.best.score == pytest.approx(-4.0, abs=1e-3)  # every span is below the null score

    qa = QAPipeline.load(tiny_index, reranker=str(tiny_cross_encoder), reader=str(squad2_reader), mode="bm25",
                         answer_policy=None)
    qa.answer_policy = SPAN_POLICY
    # the pipeline's lexical evidence knows the index's document frequencies: a name no passage holds is the rarest
    paris = "Paris is the capital and largest city of France."
    assert qa.lexical.features("What is the capital of Narnia?", paris, 0, 5)["rare_term_missing"] == 1.0
    ok = qa.search("What is the capital of France?", threshold=0.0)
    assert ok.answer is not None and ok.answer.text == "capital and largest city of France"
    assert ok.no_answer_reason is None and ok.answerability > 0.5
    # A generated unanswerable question: no paragraph read holds both words the reader answers with, so no span
    # beats the null score by the policy's margin ("capital of Spain" at best, level with the null score).
    none = qa.search("Which river flows through Vienna?", threshold=0.0)
    assert none.answer is None and none.answerability < 0.5
    assert none.no_answer_reason.startswith("No paragraph here answers this")
    assert "against it most: the reader's span score (" in none.no_answer_reason  # the policy's one feature, why
    assert re.search(r"given by 1 of the first [23] paragraphs;", none.no_answer_reason)  # decided on 3 (or fewer hits)
    assert none.candidate is not None  # still viewable on request
    assert not any(h.answerable for h in none.hits)
    shown = none.to_dict()
    assert shown["answer"] is None and shown["no_answer_reason"] and shown["candidate"]["text"]
    forced = qa.search("Which river flows through Vienna?", threshold=0.0, abstain=False)
    assert forced.answer is not None and forced.answer.text == none.candidate.text


# --------------------------------------------------------------------------- SQuAD v2.0 metrics


def test_v2_metrics_match_hand_computed_values():
    from pipeline.eval.squad_metrics import squad_v2_scores

    predictions = ["Denver Broncos", "the Panthers", None, "1856", None]
    answers = [["Denver Broncos"], ["Carolina Panthers"], ["50"], [], []]
    out = squad_v2_scores(predictions, answers)
    # HasAns: EM 1, 0, 0 ; F1 1, 2*(1/1)*(1/2)/(1.5)=2/3, 0
    assert out["HasAns_total"] == 3 and out["NoAns_total"] == 2
    assert out["HasAns_exact"] == pytest.approx(100 / 3, abs=1e-6)
    assert out["HasAns_f1"] == pytest.approx(100 * (1 + 2 / 3) / 3, abs=1e-6)
    # NoAns: "1856" is a false answer (0), the abstention is right (1)
    assert out["NoAns_exact"] == pytest.approx(50.0) and out["NoAns_f1"] == pytest.approx(50.0)
    assert out["exact"] == pytest.approx(100 * 2 / 5) and out["f1"] == pytest.approx(100 * (1 + 2 / 3 + 1) / 5)
    assert out["total"] == 5
    with pytest.raises(ConfigError, match="2 predictions for 1 questions"):
        squad_v2_scores(["a", "b"], [["a"]])


def test_answers_fit_scores_an_abstention_on_an_answerable_question_as_zero(tmp_path):
    """benchmarks/answers_fit.py's held-out report: the best candidate counts whatever the policy says; as shipped, an abstention scores 0."""
    answers_fit = load_benchmark("answers_fit")
    text = "Tesla was born in 1856."
    start = text.index("1856")

    def record(qid: str, span_score: float) -> dict:
        return {"id": qid, "question": "When was Tesla born?", "title": "Tesla", "answerable": True, "answers": ["1856"],
                "gold": "p", "oracle": "1856", "candidates": 15,
                "hits": [{"id": "p", "source_id": "p", "probability": 0.9, "scores": {"final": 0.9, "rerank": 0.9},
                          "ranks": {"final": 1, "fused": 1}, "text": text}],
                "readings": [{"spans": [{"text": "1856", "start": start, "end": start + 4, "score": span_score}],
                              "null": None}]}

    path = tmp_path / "heldout.jsonl"
    path.write_text("\n".join(json.dumps(record(q, s)) for q, s in (("sure", 10.0), ("unsure", 1.0))) + "\n")
    policy = AnswerPolicy(paragraphs=1, features=("span_score",), mean=(0.0,), scale=(1.0,), coef=(1.0,),
                          intercept=-5.0, threshold=0.5)
    report = answers_fit.heldout_report(answers_fit.load(str(path)), policy, thresholds={0.85: 0.5, 0.95: 0.01})
    assert report["end_to_end_f1"] == 100.0 and report["oracle_f1"] == 100.0
    assert report["answered_after_abstention"] == 0.5
    assert report["end_to_end_f1_abstaining"] == 50.0
    # the operating points (abstain_below): the unsure question's answerability is 0.018
    assert [(p["tune_keep"], p["kept"], p["end_to_end_f1_abstaining"]) for p in report["operating_points"]] == [
        (0.85, 0.5, 50.0), (0.95, 1.0, 100.0)]
    # features_of: a search without dense scores has dense_similarity NaN, filled with the others' mean (none: 0)
    records = answers_fit.load(str(path))
    X, _ = answers_fit.features_of(records, policy, ("span_score", "dense_similarity"))
    assert X[:, 1].tolist() == [0.0, 0.0] and X[:, 0].tolist() == [10.0, 1.0]
    records[0]["hit_objs"][0].scores["dense"] = 0.7
    X, _ = answers_fit.features_of(records, policy, ("span_score", "dense_similarity"))
    assert X[:, 1].tolist() == [0.7, 0.7]
    # rare_term_missing reads the collection's index (answers_fit.py --index): "Tesla" is in the answer's sentence
    lexical = LexicalEvidence.of_index(BM25Index.from_texts([text, "Edison was born in Ohio.", "Ohio is a state."]))
    X, _ = answers_fit.features_of(records, policy, ("rare_term_missing",), lexical)
    assert X[:, 0].tolist() == [0.0, 0.0]
    records[1]["question"] = "When was Edison born?"  # the question's rarest term is not in the answer's sentence
    X, _ = answers_fit.features_of(records, policy, ("rare_term_missing",), lexical)
    assert X[:, 0].tolist() == [0.0, 1.0]


def test_answers_fit_interval_resamples_whole_articles():
    """The pooled AUROC's interval: articles are resampled whole, so it holds the figure and widens when articles disagree."""
    answers_fit = load_benchmark("answers_fit")
    rng = np.random.default_rng(0)
    groups = np.repeat([f"article{k}" for k in range(8)], 40)
    y = np.tile([1, 0], 160)
    everything = np.arange(len(y))

    # every article separates its questions perfectly: every resample scores 1
    perfect = y + rng.uniform(0, 0.5, len(y))
    assert answers_fit.article_interval(lambda idx: answers_fit.auroc_on(y, perfect, idx), groups) == pytest.approx((1.0, 1.0))

    # half the articles rank their answerable questions first, half last: the pooled AUROC sits inside a wide interval
    flipped = np.isin(groups, [f"article{k}" for k in range(4)])
    mixed = np.where(flipped, 1 - y, y) + rng.uniform(0, 0.5, len(y))
    pooled = answers_fit.auroc_on(y, mixed, everything)
    low, high = answers_fit.article_interval(lambda idx: answers_fit.auroc_on(y, mixed, idx), groups, seed=1)
    assert low < pooled < high and high - low > 0.3
    # the same seed gives the same interval
    assert answers_fit.article_interval(lambda idx: answers_fit.auroc_on(y, mixed, idx), groups, seed=1) == (low, high)

    # one class only: no AUROC, no false-answer rate (left out of the resamples)
    assert np.isnan(answers_fit.auroc_on(y, mixed, np.flatnonzero(y == 1)))
    assert np.isnan(answers_fit.false_answers_at_keep(y, mixed, np.flatnonzero(y == 0)))
    # where 85% of the answerable keep an answer, every unanswerable question of a flipped article is answered
    assert answers_fit.false_answers_at_keep(y, mixed, np.flatnonzero(flipped)) == 1.0
