"""Hit.probability under the blend: the final score calibrated (pipeline/rank/calibration.py), or the reranker's."""

import json
import logging
import math

import pytest

from pipeline import QAPipeline
from pipeline.config import SearchSettings
from pipeline.errors import ConfigError
from pipeline.rank.calibration import (
    DEFAULT_FILE,
    FinalCalibration,
    Platt,
    calibrated,
    find_calibration,
    load_calibration,
)
from pipeline.rank.policy import Policy, logit

PLATT = Policy(reranker=None, coef={"rerank_logit": 2.0}, intercept=-1.0)
FINAL = FinalCalibration(reranker=None, reader=None, rerank_weight=0.5, read_weight=0.08,
                         with_reading=Platt({"final": 3.0, "first": 2.0}, -5.0),
                         without_reading=Platt({"final": 8.0, "first": 1.0}, -6.0), similarity_weight=0.5)


def sigmoid(z: float) -> float:
    return 1 / (1 + math.exp(-z))


def test_platt_scaling_on_hand_computed_values():
    assert calibrated(PLATT, 0.5) == pytest.approx(1 / (1 + math.exp(1.0)))
    assert calibrated(PLATT, 0.9) == pytest.approx(1 / (1 + math.exp(-(2 * math.log(9) - 1))))
    assert calibrated(None, 0.37) == 0.37


def test_final_score_calibration_on_hand_computed_values():
    finals = [1.1, 0.8, 0.4]
    assert FINAL.probabilities(finals, read=True) == pytest.approx(
        [sigmoid(3 * 1.1 + 2 - 5), sigmoid(3 * 0.8 - 5), sigmoid(3 * 0.4 - 5)])
    assert FINAL.probabilities(finals, read=False) == pytest.approx(
        [sigmoid(8 * 1.1 + 1 - 6), sigmoid(8 * 0.8 - 6), sigmoid(8 * 0.4 - 6)])
    assert FINAL.probabilities([], read=True) == []


def test_final_score_calibration_refuses_weights_that_would_break_the_order():
    with pytest.raises(ValueError, match="negative weight would give a hit a lower probability"):
        Platt({"final": 3.0, "first": -1.0}, 0.0)
    with pytest.raises(ValueError, match="unknown feature.*fused; valid values: final, first"):
        Platt({"fused": 1.0}, 0.0)


def test_a_final_score_calibration_says_which_searches_it_holds_for():
    assert FINAL.mismatch(similarity_weight=0.5, rerank_weight=0.5, read_weight=0.08, reader="/m/reader") is None
    # not read: the other weights
    assert FINAL.mismatch(similarity_weight=0.5, rerank_weight=0.5, read_weight=0.0, reader=None) is None
    assert FINAL.mismatch(similarity_weight=0.5, rerank_weight=0.7, read_weight=0.08, reader=None) == (
        "fitted for rerank_weight 0.5, this search uses 0.7")
    assert FINAL.mismatch(similarity_weight=0.5, rerank_weight=0.5, read_weight=0.2, reader="/m/reader") == (
        "fitted for read_weight 0.08, this search uses 0.2")
    named = FinalCalibration(**{**FINAL.__dict__, "reader": "/shared/models/the-reader"})
    assert named.mismatch(similarity_weight=0.5, rerank_weight=0.5, read_weight=0.08, reader="elsewhere/the-reader") is None
    assert "fitted with the reader the-reader, this search reads with other" in named.mismatch(
        similarity_weight=0.5, rerank_weight=0.5, read_weight=0.08, reader="/m/other")
    three = FinalCalibration(**{**FINAL.__dict__, "read_paragraphs": 3})
    assert three.mismatch(similarity_weight=0.5, rerank_weight=0.5, read_weight=0.08, reader="/m/reader", read_paragraphs=3) is None
    assert three.mismatch(similarity_weight=0.5, rerank_weight=0.5, read_weight=0.08, reader="/m/reader", read_paragraphs=5) == (
        "fitted with 3 paragraphs read, this search reads 5")
    assert three.mismatch(similarity_weight=0.5, rerank_weight=0.5, read_weight=0.0, reader=None,
                          read_paragraphs=5) is None  # not read
    assert FinalCalibration.from_dict(three.to_dict()).read_paragraphs == 3
    # a file of before read_paragraphs: the count it recorded among its fitting facts
    recorded = {**{k: v for k, v in FINAL.to_dict().items() if k != "read_paragraphs"}, "fitted": {"paragraphs_read": 2}}
    assert FinalCalibration.from_dict(recorded).read_paragraphs == 2
    # a file fitted before the blend took fused scores relative to the best one (no "blend" in it) does not hold
    before = FinalCalibration.from_dict({k: v for k, v in FINAL.to_dict().items() if k != "blend"})
    assert before.mismatch(similarity_weight=0.5, rerank_weight=0.5, read_weight=0.08, reader=None).startswith(
        "fitted on another blend (min-max over candidates; this version blends relative to the best fused score, plus")
    # nor one fitted before the blend weighed the bi-encoder's similarity
    unweighed = FinalCalibration.from_dict({**FINAL.to_dict(), "blend": "relative to the best fused score"})
    assert "fitted on another blend (relative to the best fused score;" in unweighed.mismatch(
        rerank_weight=0.5, read_weight=0.08, reader=None)
    weighed = FinalCalibration.from_dict(FINAL.to_dict())
    assert weighed.similarity_weight == 0.5
    assert weighed.mismatch(rerank_weight=0.5, read_weight=0.08, reader=None, similarity_weight=0.5) is None
    assert weighed.mismatch(rerank_weight=0.5, read_weight=0.08, reader=None, similarity_weight=0.2) == (
        "fitted for similarity_weight 0.5, this search uses 0.2")
    assert weighed.mismatch(rerank_weight=0.5, read_weight=0.08, reader=None, similarity_weight=0.5,
                            similarity=False) == (
        "fitted with the bi-encoder's similarity in the blend, and this search has none (no dense scores)")


def test_finding_a_calibration(tmp_path, caplog):
    assert find_calibration("none", "any/model") is None
    assert find_calibration(None, "any/model") is None  # the shipped one is for the stand-in reranker only
    path = PLATT.save(tmp_path / "platt.json")
    assert find_calibration(str(path), "any/model") == PLATT
    final = FINAL.save(tmp_path / "final.json")
    assert find_calibration(str(final), "any/model") == FINAL  # round trip
    with_retrieval = Policy(reranker=None, coef={"rerank_logit": 1.0, "fused": 2.0}, intercept=0.0).save(tmp_path / "p.json")
    with pytest.raises(ConfigError, match="weighs fused; a calibration uses only rerank_logit, rerank_probability"):
        find_calibration(str(with_retrieval), "any/model")
    other = Policy(reranker="/models/other-reranker", coef={"rerank_logit": 1.2}, intercept=-0.5).save(tmp_path / "o.json")
    with caplog.at_level(logging.WARNING):
        assert find_calibration(str(other), "/models/mine") is None
    assert "fitted for the reranker /models/other-reranker, not /models/mine" in caplog.text
    with pytest.raises(ConfigError, match="No calibration file at .*missing.json; fit one with: python benchmarks/"):
        find_calibration(str(tmp_path / "missing.json"), "any/model")
    broken = tmp_path / "broken.json"
    broken.write_text(json.dumps({**FINAL.to_dict(), "with_reading": {"weights": {"final": -2.0}, "intercept": 0}}))
    with pytest.raises(ConfigError, match="broken.json is not a valid final-score calibration .*negative weight"):
        load_calibration(broken)
    (tmp_path / "junk.json").write_text("{not json")
    with pytest.raises(ConfigError, match="junk.json is not JSON"):
        load_calibration(tmp_path / "junk.json")


def test_the_shipped_calibration_is_a_monotone_one_for_the_standins(standin_reranker, standin_reader):
    found = find_calibration(None, str(standin_reranker))
    assert isinstance(found, FinalCalibration) and load_calibration(DEFAULT_FILE) == found
    shipped = SearchSettings()
    assert found.mismatch(rerank_weight=shipped.rerank_weight, read_weight=shipped.read_weight,
                          reader=str(standin_reader), read_paragraphs=shipped.read_paragraphs,
                          similarity_weight=shipped.similarity_weight) is None
    for platt in (found.with_reading, found.without_reading):
        assert platt.weights["final"] > 0 and platt.weights["first"] >= 0
    assert find_calibration(None, "cross-encoder/qnli-electra-base") is None  # fitted for the stand-in only
    standin_platt = find_calibration(str(DEFAULT_FILE.parents[2] / "benchmarks/policies/minilm-l6-qnli-squad-tune-platt.json"),
                                     str(standin_reranker))
    assert set(standin_platt.coef) == {"rerank_logit"} and standin_platt.coef["rerank_logit"] > 0


def load(tiny_index, tiny_cross_encoder, calibration, **extra):
    return QAPipeline.load(tiny_index, reranker=str(tiny_cross_encoder), device="cpu", rerank_backend="torch",
                           calibration=calibration, **{"read": False, **extra})


QUESTION = "What is the capital of Germany?"


def test_the_pipeline_flags_by_the_calibrated_final_score_and_orders_as_before(tiny_index, tiny_cross_encoder, tmp_path):
    plain = load(tiny_index, tiny_cross_encoder, "none")
    final = load(tiny_index, tiny_cross_encoder, str(FINAL.save(tmp_path / "final.json")))
    before, after = plain.search(QUESTION, top_k=6, candidates=6), final.search(QUESTION, top_k=6, candidates=6)
    assert [h.id for h in after.hits] == [h.id for h in before.hits]
    assert [h.scores for h in after.hits] == [h.scores for h in before.hits]
    assert [h.probability for h in before.hits] == [h.scores["rerank"] for h in before.hits]
    want = FINAL.probabilities([h.scores["final"] for h in after.hits], read=False)
    assert [h.probability for h in after.hits] == pytest.approx(want)
    probabilities = [h.probability for h in after.hits]
    assert probabilities == sorted(probabilities, reverse=True)  # a hit shown above another is never less probable
    assert all(0.0 <= p <= 1.0 for p in probabilities)
    assert [h.answerable for h in after.hits] == [p >= 0.5 for p in probabilities]
    assert before.settings["calibration"] == "none (the reranker's probability)"
    assert after.settings["calibration"] == "final score, Platt scaling fitted for any reranker"
    # another blend weight: the calibration does not hold, so the reranker's probability stays, and the result says why
    other = final.search(QUESTION, top_k=6, candidates=6, rerank_weight=0.8)
    assert [h.probability for h in other.hits] == [h.scores["rerank"] for h in other.hits]
    assert other.settings["calibration"] == ("none (the reranker's probability: the calibration was fitted for "
                                             "rerank_weight 0.5, this search uses 0.8)")
    # a BM25 search has no bi-encoder similarity for the blend to add: its final scores are on another scale
    bm25 = final.search(QUESTION, top_k=6, candidates=6, mode="bm25")
    assert all("dense" not in h.scores for h in bm25.hits)
    assert [h.probability for h in bm25.hits] == [h.scores["rerank"] for h in bm25.hits]
    assert bm25.settings["calibration"].endswith("fitted with the bi-encoder's similarity in the blend, and this "
                                                 "search has none (no dense scores))")


def test_a_search_that_reads_uses_the_weights_fitted_after_the_readers_move(tiny_index, tiny_cross_encoder,
                                                                             tiny_reader, tmp_path):
    qa = load(tiny_index, tiny_cross_encoder, str(FINAL.save(tmp_path / "final.json")), read=True,
              reader=str(tiny_reader), reader_backend="torch")
    result = qa.search(QUESTION, top_k=6, candidates=6, abstain=False, read_weight=FINAL.read_weight)
    assert "read" in result.hits[0].scores or "read" in result.hits[1].scores  # the reader's move happened
    want = FINAL.probabilities([h.scores["final"] for h in result.hits], read=True)
    assert [h.probability for h in result.hits] == pytest.approx(want)
    not_moved = qa.search(QUESTION, top_k=6, candidates=6, abstain=False, read_weight=0.0)
    want = FINAL.probabilities([h.scores["final"] for h in not_moved.hits], read=False)
    assert [h.probability for h in not_moved.hits] == pytest.approx(want)


def test_the_reranker_only_platt_file_still_works(tiny_index, tiny_cross_encoder, tmp_path):
    platt = load(tiny_index, tiny_cross_encoder, str(PLATT.save(tmp_path / "platt.json")))
    result = platt.search(QUESTION, top_k=6, candidates=6)
    for hit in result.hits:
        assert hit.probability == pytest.approx(sigmoid(2.0 * logit(hit.scores["rerank"]) - 1.0), abs=1e-9)
        assert hit.answerable == (hit.probability >= 0.5)
    assert result.settings["calibration"] == "Platt scaling fitted for any reranker"
