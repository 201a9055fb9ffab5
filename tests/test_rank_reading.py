"""The reader's span scores move the paragraphs it read (pipeline/rank/reading.py); the answer comes from the new order."""

import dataclasses

import pytest
from conftest import load_benchmark

from pipeline import QAPipeline
from pipeline.config import SearchSettings
from pipeline.errors import ConfigError
from pipeline.rank.reading import (
    read_adjusted,
    read_first,
    read_order,
    reorder_by_reading,
)
from pipeline.rerank.blend import blended_scores
from pipeline.results import Answer, Hit


def _hit(name: str, final: float, span: float | None) -> Hit:
    answer = None if span is None else Answer("x", 0, 1, 0.5, span)
    return Hit(name, name, "x", name, True, 0.5, scores={"final": final}, ranks={"final": 0}, answer=answer)


def test_read_adjusted_on_hand_computed_values():
    assert read_adjusted([0.75, 0.65, 0.58], [3.5, 8.2, None], 0.08) == pytest.approx([1.03, 1.306, 0.58])
    assert read_order([0.75, 0.65, 0.58], [3.5, 8.2, None], 0.08) == [1, 0, 2]
    assert read_order([0.75, 0.65, 0.58], [3.5, 8.2, None], 0.0) == [0, 1, 2]  # weight 0: the blend's order
    with pytest.raises(ValueError, match="3 final scores for 2 span scores"):
        read_adjusted([0.1, 0.2, 0.3], [1.0, 2.0], 0.1)


def test_a_weak_span_moves_a_read_paragraph_down_and_unread_ones_keep_their_scores():
    hits = [_hit("a", 0.75, 3.5), _hit("b", 0.65, 8.2), _hit("c", 0.58, None), _hit("d", 0.40, None)]
    reorder_by_reading(hits, 0.08)
    assert [h.id for h in hits] == ["b", "a", "c", "d"]
    assert [h.ranks["final"] for h in hits] == [1, 2, 3, 4]
    assert hits[0].scores == {"final": pytest.approx(1.306), "read": 8.2}
    assert hits[2].scores == {"final": 0.58} and "read" not in hits[3].scores
    # a negative span score can send a read paragraph below one that was not read
    hits = [_hit("a", 0.75, -3.0), _hit("b", 0.65, 1.0), _hit("c", 0.58, None)]
    reorder_by_reading(hits, 0.08)
    assert [h.id for h in hits] == ["b", "c", "a"]
    finals = [h.scores["final"] for h in hits]
    assert finals == sorted(finals, reverse=True)  # a client reproduces the order from scores["final"]


def test_the_answer_is_decided_on_the_read_hits_first_in_their_new_order():
    assert read_first(["b", "c", "a"], lambda h: h in {"a", "b"}) == ["b", "a", "c"]
    assert read_first([2, 0, 1], lambda i: i < 3) == [2, 0, 1]  # all read: the order itself


def test_read_weight_and_read_paragraphs_are_checked():
    assert (SearchSettings().read_weight, SearchSettings().read_paragraphs) == (0.06, 4)
    with pytest.raises(ConfigError, match="read_weight must be a number from 0 to 10"):
        SearchSettings(read_weight=-0.1)
    with pytest.raises(ConfigError, match="read_paragraphs"):
        SearchSettings(read_paragraphs=0)


@pytest.fixture(scope="module")
def reading_qa(tiny_index, tiny_cross_encoder, tiny_reader):
    return QAPipeline.load(tiny_index, reranker=str(tiny_cross_encoder), reader=str(tiny_reader), device="cpu",
                           rerank_backend="torch", reader_backend="torch")


def test_the_pipeline_moves_read_hits_by_their_span_score_and_answers_from_the_new_order(reading_qa):
    question = "What is the capital of Germany?"
    still = reading_qa.search(question, top_k=6, candidates=6, read_weight=0.0, read_paragraphs=3)
    moved = reading_qa.search(question, top_k=6, candidates=6, read_weight=10.0, read_paragraphs=3)
    assert still.settings["read_weight"] == 0.0 and moved.settings["read_weight"] == 10.0
    # weight 0: the blend's order, no reader score in it
    blend = blended_scores([h.probability for h in still.hits], [h.scores["fused"] for h in still.hits], 0.5,
                           similarities=[h.scores["dense"] for h in still.hits], similarity_weight=0.5)
    assert [h.scores["final"] for h in still.hits] == pytest.approx(blend, abs=1e-6)
    assert all("read" not in h.scores for h in still.hits)
    # the read hits (the first read_paragraphs) carry their span score and final = blend + weight * span
    blended = {h.id: h.scores["final"] for h in still.hits}
    movers = [h for h in moved.hits if "read" in h.scores]
    assert {h.id for h in movers} == {h.id for h in still.hits[:3] if h.answer is not None}
    assert len(movers) > 1  # more than the answer policy's one paragraph was read
    for hit in movers:
        assert hit.scores["read"] == pytest.approx(hit.answer.span_score, abs=1e-4)
        assert hit.scores["final"] == pytest.approx(blended[hit.id] + 10.0 * hit.answer.span_score, abs=1e-3)
    finals = [h.scores["final"] for h in moved.hits]
    assert finals == sorted(finals, reverse=True) and [h.ranks["final"] for h in moved.hits] == list(range(1, 7))
    assert sorted(h.id for h in moved.hits) == sorted(h.id for h in still.hits)
    # the answer is decided after the move, on the first read hits of the new order (the policy reads 1 of them)
    assert reading_qa.answer_policy.paragraphs == 1
    for result in (still, moved):
        chosen = result.answer or result.candidate
        first_read = next(h for h in result.hits if h.answer is not None)
        assert chosen.id == first_read.id and [s.id for s in chosen.support] == [first_read.id]


def test_the_fitting_replay_orders_and_answers_as_the_pipeline_does(reading_qa):
    """benchmarks/answers_fit.py fits the answer policy on collections replayed through the move: the replay is the pipeline."""
    from dataclasses import asdict

    answers_fit = load_benchmark("answers_fit")
    settings = {"top_k": 6, "candidates": 6}
    for question in ("What is the capital of Germany?", "Which river flows through Paris?", "Where is the Colosseum?"):
        blended = reading_qa.search(question, read=False, **settings)  # what benchmarks/answers_collect.py stores
        readings = reading_qa.reader.spans([(question, h.text) for h in blended.hits[:5]])
        record = answers_fit.parse({
            "hits": [{"id": h.id, "source_id": h.source_id, "probability": h.probability, "scores": h.scores,
                      "ranks": h.ranks, "text": h.text} for h in blended.hits],
            "readings": [asdict(r) for r in readings],
        })
        answers_fit.move(record, 3, 10.0)
        shipped = reading_qa.search(question, read_paragraphs=3, read_weight=10.0, **settings)
        read = {h.id for h in blended.hits[:3]}
        assert [h.id for h in record["hit_objs"]] == [h.id for h in read_first(shipped.hits, lambda h: h.id in read)]
        (chosen, *_) = answers_fit.choose(record, reading_qa.answer_policy)
        assert chosen.text == (shipped.answer or shipped.candidate).text


def test_a_fitted_policy_is_not_moved_by_the_reader(reading_qa):
    from pipeline.rank.policy import Policy

    policy = Policy(reranker=None, coef={"rerank_logit": 1.0, "fused": 3.0}, intercept=-1.0)
    saved, reading_qa.policy = reading_qa.policy, policy
    try:
        result = reading_qa.search("What is the capital of Germany?", top_k=6, candidates=6, read_weight=10.0)
    finally:
        reading_qa.policy = saved
    assert result.settings["read_weight"] == 0.0 and all("read" not in h.scores for h in result.hits)
    probs = [h.probability for h in result.hits]
    assert probs == sorted(probs, reverse=True)  # the policy's probability alone orders


def test_a_screened_hit_the_reader_brings_first_is_rescored_in_fp32(reading_qa, tiny_cross_encoder, tmp_path):
    """With the int8 screen the reader's move can put the second read paragraph (int8 only) first: it gets fp32's score."""
    from pipeline.rerank.cascade import Cascade
    from pipeline.rerank.reranker import Reranker

    def one(backend):
        return Reranker.load(str(tiny_cross_encoder), device="cpu", backend=backend, cache_dir=tmp_path, progress=False)

    fp32 = one("onnx")
    torch_reranker, policy = reading_qa.reranker, reading_qa.answer_policy
    reading_qa.reranker = Cascade(one("onnx-int8"), fp32, 1)
    reading_qa.answer_policy = dataclasses.replace(policy, paragraphs=2)  # the second read hit can overtake the first
    try:
        moved_up = 0
        for question in ("What is the capital of Germany?", "Which city is the capital of Spain?",
                         "What is the capital of Italy?", "Which river flows north through Egypt?",
                         "What is the largest city of France?", "When was Rome founded?"):
            before = reading_qa.search(question, top_k=6, candidates=6, agreed_candidates=0, read_weight=0.0)
            after = reading_qa.search(question, top_k=6, candidates=6, agreed_candidates=0, read_weight=10.0)
            first = after.hits[0]
            assert first.scores["rerank"] == pytest.approx(float(fp32.score(question, [first.text])[0]), abs=1e-6)
            finals = [h.scores["final"] for h in after.hits]
            assert finals == sorted(finals, reverse=True) and [h.ranks["final"] for h in after.hits] == list(range(1, 7))
            moved_up += first.id != before.hits[0].id
        assert moved_up  # the reader's move did bring another paragraph first
    finally:
        reading_qa.reranker, reading_qa.answer_policy = torch_reranker, policy


def test_blend_dense_replay_adds_the_cosine_and_bounds_a_hit_the_dense_list_missed(monkeypatch):
    """benchmarks/blend_dense.py: final + weight * cosine, then the shipped move; a BM25-only hit takes the list's lowest."""
    from conftest import REPO

    monkeypatch.syspath_prepend(str(REPO / "benchmarks"))  # it imports its neighbours, as when run as a script
    blend_dense = load_benchmark("blend_dense")

    def hit(hid, final, dense=None):
        return {"id": hid, "source_id": hid, "scores": {"final": final, **({"dense": dense} if dense is not None else {})}}

    hits = [hit("a", 0.90, 0.30), hit("b", 0.80, 0.70), hit("c", 0.85)]
    assert blend_dense.cosines(hits) == [0.30, 0.70, 0.30]
    same_span = [{"spans": [{"text": "x", "start": 0, "end": 1, "score": 5.0}], "null": None}] * 3
    record = {"id": "q", "answerable": True, "gold": "b", "hits": hits, "readings": same_span}
    # equal span scores: the move keeps the order, so the cosine alone decides; at 0.5 "b" (0.80 + 0.35) passes "a"
    assert blend_dense.reciprocal_ranks([record], 0.0).tolist() == [1 / 3]
    assert blend_dense.reciprocal_ranks([record], 0.5).tolist() == [1.0]
    rows = blend_dense.table([record], (0.0, 0.5))
    assert rows[0]["diff"] == 0.0 and rows[1]["diff"] == pytest.approx(2 / 3) and rows[1]["recall@1"] == 1.0
    # a collection whose final scores already weigh the similarity by 0.5: weight 0 takes it out again
    weighed = {**record, "similarity_weight": 0.5,
               "hits": [hit("a", 0.90 + 0.15, 0.30), hit("b", 0.80 + 0.35, 0.70), hit("c", 0.85 + 0.15, 0.30)]}
    assert blend_dense.reciprocal_ranks([weighed], 0.5).tolist() == [1.0]
    assert blend_dense.reciprocal_ranks([weighed], 0.0).tolist() == pytest.approx([1 / 3])
