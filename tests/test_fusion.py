import pytest

from pipeline.retrieve.fusion import min_max, reciprocal_rank_fusion, weighted_fusion


def test_rrf_hand_computed():
    fused = dict(reciprocal_rank_fusion({"bm25": ["a", "b", "c"], "dense": ["b", "d"]}, k=60))
    assert fused["a"] == pytest.approx(1 / 61)
    assert fused["b"] == pytest.approx(1 / 62 + 1 / 61)
    assert fused["c"] == pytest.approx(1 / 63)
    assert fused["d"] == pytest.approx(1 / 62)


def test_rrf_order_and_deterministic_ties():
    ranked = reciprocal_rank_fusion({"x": ["a", "b"], "y": ["b", "a"]}, k=60)
    # a and b tie exactly; ties break by id.
    assert [d for d, _ in ranked] == ["a", "b"]
    ranked = reciprocal_rank_fusion({"x": ["a", "b", "c"], "y": ["c", "b", "a"], "z": ["b"]}, k=1)
    assert ranked[0][0] == "b"


def test_rrf_k_changes_how_much_top_ranks_dominate():
    lists = {"x": ["a", "b", "c", "d"], "y": ["d", "c", "b", "a"], "z": ["a"]}
    assert reciprocal_rank_fusion(lists, k=0)[0][0] == "a"
    with pytest.raises(ValueError):
        reciprocal_rank_fusion(lists, k=-1)


def test_min_max_and_weighted_fusion():
    assert min_max([("a", 2.0), ("b", 4.0), ("c", 3.0)]) == {"a": 0.0, "b": 1.0, "c": 0.5}
    assert min_max([("a", 5.0), ("b", 5.0)]) == {"a": 1.0, "b": 1.0}
    scored = {"bm25": [("a", 10.0), ("b", 0.0)], "dense": [("b", 0.9), ("c", 0.5)]}
    fused = dict(weighted_fusion(scored, {"bm25": 0.3, "dense": 0.7}))
    assert fused == pytest.approx({"a": 0.3, "b": 0.7, "c": 0.0})
    assert [d for d, _ in weighted_fusion(scored, {"bm25": 0.8, "dense": 0.2})][0] == "a"
    with pytest.raises(ValueError, match="no weight for list"):
        weighted_fusion(scored, {"bm25": 1.0})
