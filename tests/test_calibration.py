"""Hit.probability under the blend: the reranker's probability through a fitted Platt scaling (pipeline/rank/calibration.py)."""

import logging
import math

import pytest

from pipeline import QAPipeline
from pipeline.errors import ConfigError
from pipeline.rank.calibration import calibrated, find_calibration
from pipeline.rank.policy import Policy, logit

PLATT = Policy(reranker=None, coef={"rerank_logit": 2.0}, intercept=-1.0)


def test_platt_scaling_on_hand_computed_values():
    assert calibrated(PLATT, 0.5) == pytest.approx(1 / (1 + math.exp(1.0)))
    assert calibrated(PLATT, 0.9) == pytest.approx(1 / (1 + math.exp(-(2 * math.log(9) - 1))))
    assert calibrated(None, 0.37) == 0.37


def test_finding_a_calibration(tmp_path, caplog):
    assert find_calibration("none", "any/model") is None
    assert find_calibration(None, "any/model") is None  # the default: the reranker's own probability
    path = PLATT.save(tmp_path / "platt.json")
    assert find_calibration(str(path), "any/model") == PLATT
    with_retrieval = Policy(reranker=None, coef={"rerank_logit": 1.0, "fused": 2.0}, intercept=0.0).save(tmp_path / "p.json")
    with pytest.raises(ConfigError, match="weighs fused; a calibration uses only rerank_logit, rerank_probability"):
        find_calibration(str(with_retrieval), "any/model")
    other = Policy(reranker="/models/other-reranker", coef={"rerank_logit": 1.2}, intercept=-0.5).save(tmp_path / "o.json")
    with caplog.at_level(logging.WARNING):
        assert find_calibration(str(other), "/models/mine") is None
    assert "fitted for the reranker /models/other-reranker, not /models/mine" in caplog.text
    with pytest.raises(ConfigError, match="No ranking policy file at"):
        find_calibration(str(tmp_path / "missing.json"), "any/model")


def test_the_standins_platt_file_is_a_monotone_calibration_for_it(standin_reranker):
    from conftest import REPO

    found = find_calibration(str(REPO / "benchmarks/policies/minilm-l6-qnli-squad-tune-platt.json"), str(standin_reranker))
    assert found is not None and found.matches(str(standin_reranker))
    assert set(found.coef) == {"rerank_logit"} and found.coef["rerank_logit"] > 0  # monotone: the order stays


def test_the_pipeline_flags_by_the_calibrated_probability_and_orders_as_before(tiny_index, tiny_cross_encoder, tmp_path):
    path = PLATT.save(tmp_path / "platt.json")
    plain = QAPipeline.load(tiny_index, reranker=str(tiny_cross_encoder), read=False, device="cpu",
                            rerank_backend="torch", calibration="none")
    platt = QAPipeline.load(tiny_index, reranker=str(tiny_cross_encoder), read=False, device="cpu",
                            rerank_backend="torch", calibration=str(path))
    question = "What is the capital of Germany?"
    before, after = plain.search(question, top_k=6, candidates=6), platt.search(question, top_k=6, candidates=6)
    assert [h.id for h in after.hits] == [h.id for h in before.hits]  # the blend still uses the reranker's probability
    assert [h.scores for h in after.hits] == [h.scores for h in before.hits]
    for hit in after.hits:
        want = 1 / (1 + math.exp(-(2.0 * logit(hit.scores["rerank"]) - 1.0)))
        assert hit.probability == pytest.approx(want, abs=1e-9)
        assert hit.answerable == (hit.probability >= 0.5)
    assert before.settings["calibration"] == "none (the reranker's probability)"
    assert after.settings["calibration"] == "Platt scaling fitted for any reranker"
