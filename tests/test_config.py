import pytest

from pipeline.config import (
    LOAD_FIELDS,
    SEARCH_FIELDS,
    SHARED_FIELDS,
    LoadSettings,
    PipelineConfig,
    RetrievalMode,
    SearchSettings,
    env_value,
)
from pipeline.errors import ConfigError


def test_mode_parse_errors_list_valid_values():
    assert SearchSettings(mode="BM25").mode is RetrievalMode.BM25
    with pytest.raises(ConfigError, match="Unknown retrieval mode 'sparse'; valid values: bm25, dense, hybrid"):
        SearchSettings(mode="sparse")
    with pytest.raises(ConfigError, match="valid values: rrf, weighted"):
        SearchSettings(fusion="max")


@pytest.mark.parametrize(
    "field,value,message",
    [("threshold", 1.5, "threshold must be between 0 and 1"), ("top_k", 0, "top_k must be a positive"),
     ("candidates", -3, "candidates must be a positive"), ("dense_weight", -0.1, "dense_weight"),
     ("rerank_weight", True, "rerank_weight must be between 0 and 1")],
)
def test_invalid_values(field, value, message):
    with pytest.raises(ConfigError, match=message):
        SearchSettings(**{field: value})
    with pytest.raises(ConfigError, match=message):
        PipelineConfig.of(**{field: value})


def test_env_then_overrides():
    env = {"QA_SEARCH_RERANKER": "/models/ce", "QA_SEARCH_THRESHOLD": "0.7"}
    cfg = PipelineConfig.from_env(env)
    assert cfg.load.reranker == "/models/ce" and cfg.search.threshold == 0.7
    cfg = PipelineConfig.from_env(env, reranker="other", threshold=None)
    assert cfg.load.reranker == "other" and cfg.search.threshold == 0.7
    with pytest.raises(ConfigError, match="Unknown setting"):
        PipelineConfig.from_env({}, colour="blue")
    assert cfg.replace(top_k=3).search.top_k == 3
    with pytest.raises(ConfigError, match="Unknown setting"):
        cfg.replace(topk=3)


def test_every_setting_has_one_home_and_the_shared_ones_are_the_stage_switches():
    assert SHARED_FIELDS == {"rerank", "read"}
    assert {"reranker", "reader", "rerank_backend", "threads", "device"} <= LOAD_FIELDS - SEARCH_FIELDS
    assert {"mode", "candidates", "top_k", "threshold", "rerank_weight"} <= SEARCH_FIELDS - LOAD_FIELDS
    assert "policy" in LOAD_FIELDS - SEARCH_FIELDS
    cfg = PipelineConfig.of(rerank=False)
    assert cfg.load.rerank is False and cfg.search.rerank is False and cfg.to_dict()["rerank"] is False


def test_a_load_time_setting_cannot_change_per_search():
    cfg = PipelineConfig.of(top_k=7)
    assert cfg.search_with(top_k=3).top_k == 3 and cfg.search_with().top_k == 7
    with pytest.raises(ConfigError, match=r"reranker is fixed when the pipeline loads .*QAPipeline.load\(index, reranker=...\)"):
        cfg.search_with(reranker="other/model")
    with pytest.raises(ConfigError, match="rerank_backend, threads are fixed when the pipeline loads"):
        cfg.search_with(threads=2, rerank_backend="torch")
    with pytest.raises(ConfigError, match="Unknown setting"):
        cfg.search_with(colour="blue")


def test_the_one_env_parser_names_the_variable():
    assert env_value("X", " 3 ", int) == 3 and env_value("X", "0.25", float) == 0.25
    assert env_value("X", "off", bool) is False and env_value("X", "Yes", bool) is True
    assert env_value("X", "some/path", str) == "some/path"
    with pytest.raises(ConfigError, match="QA_SEARCH_THREADS must be a whole number, got 'many'"):
        PipelineConfig.from_env({"QA_SEARCH_THREADS": "many"})
    with pytest.raises(ConfigError, match="X must be true or false"):
        env_value("X", "maybe", bool)
    assert LoadSettings().threads is None and PipelineConfig.from_env({"QA_SEARCH_THREADS": "2"}).load.threads == 2
