import pytest

from pipeline.config import PipelineConfig, RetrievalMode
from pipeline.errors import ConfigError


def test_mode_parse_errors_list_valid_values():
    assert PipelineConfig(mode="BM25").mode is RetrievalMode.BM25
    with pytest.raises(ConfigError, match="Unknown retrieval mode 'sparse'; valid values: bm25, dense, hybrid"):
        PipelineConfig(mode="sparse")
    with pytest.raises(ConfigError, match="valid values: rrf, weighted"):
        PipelineConfig(fusion="max")


@pytest.mark.parametrize(
    "field,value,message",
    [("threshold", 1.5, "threshold must be between 0 and 1"), ("top_k", 0, "top_k must be a positive"),
     ("candidates", -3, "candidates must be a positive"), ("dense_weight", -0.1, "dense_weight")],
)
def test_invalid_values(field, value, message):
    with pytest.raises(ConfigError, match=message):
        PipelineConfig(**{field: value})


def test_env_then_overrides():
    env = {"QA_SEARCH_RERANKER": "/models/ce", "QA_SEARCH_THRESHOLD": "0.7"}
    cfg = PipelineConfig.from_env(env)
    assert cfg.reranker == "/models/ce" and cfg.threshold == 0.7
    cfg = PipelineConfig.from_env(env, reranker="other", threshold=None)
    assert cfg.reranker == "other" and cfg.threshold == 0.7
    with pytest.raises(ConfigError, match="Unknown setting"):
        PipelineConfig.from_env({}, colour="blue")
    assert cfg.replace(top_k=3).top_k == 3
    with pytest.raises(ConfigError, match="Unknown setting"):
        cfg.replace(topk=3)
