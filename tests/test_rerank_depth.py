"""Early stop: the reranker scores fewer candidates when BM25 and the bi-encoder agree on the best paragraph."""

from __future__ import annotations

import json

import pytest

from pipeline import QAPipeline, build_index
from pipeline.config import SearchSettings
from pipeline.errors import ConfigError
from pipeline.rerank.depth import first_stages_agree, rerank_depth
from pipeline.retrieve import Candidate

SOURCES = {0: "a#0", 1: "a#0", 2: "b#0", 3: "c#0"}  # positions 0 and 1: two windows of one paragraph


def source_of(position: int) -> str:
    return SOURCES[position]


def test_agreement_is_by_source_paragraph_not_by_window():
    # BM25's first is window 0, the bi-encoder's first is window 1 of the same paragraph: they agree.
    cands = [Candidate(0, ranks={"bm25": 1, "dense": 3}), Candidate(1, ranks={"dense": 1}), Candidate(2, ranks={"bm25": 2})]
    assert first_stages_agree(cands, source_of)
    other = [Candidate(2, ranks={"bm25": 1}), Candidate(3, ranks={"dense": 1, "bm25": 2})]
    assert not first_stages_agree(other, source_of)
    # One list's first candidate is not among them (or one retriever found nothing): no agreement.
    assert not first_stages_agree([Candidate(2, ranks={"bm25": 1, "dense": 2})], source_of)


def test_depth_follows_the_settings():
    agree = [Candidate(0, ranks={"bm25": 1, "dense": 1})] + [Candidate(2, ranks={"bm25": i}) for i in range(2, 21)]
    split = [Candidate(2, ranks={"bm25": 1}), Candidate(3, ranks={"dense": 1})] + [Candidate(2) for _ in range(18)]
    cfg = SearchSettings(candidates=20, agreed_candidates=5, top_k=10)
    assert rerank_depth(agree, cfg, source_of) == 10  # never fewer than the hits shown
    assert rerank_depth(agree, cfg.replace(top_k=3), source_of) == 5
    assert rerank_depth(split, cfg, source_of) == 20
    assert rerank_depth(agree, cfg.replace(agreed_candidates=0), source_of) == 20  # switched off
    assert rerank_depth(agree, cfg.replace(mode="bm25"), source_of) == 20  # one retriever cannot agree with itself
    with pytest.raises(ConfigError, match="agreed_candidates must be a whole number >= 0"):
        cfg.replace(agreed_candidates=-1)


QUESTION = "Which lighthouse keeper painted the orange gulls of Varnholm?"


@pytest.fixture(scope="module")
def agreeing_qa(tmp_path_factory, tiny_bi_encoder, tiny_cross_encoder):
    """30 paragraphs, one of them the question's own words: both retrievers put it first."""
    words = ["lighthouse", "keeper", "painted", "orange", "gulls", "Varnholm"]  # each in a few paragraphs
    records = [{"id": "varnholm", "title": "Varnholm", "text": QUESTION}] + [
        {"id": f"p{i}", "title": f"T{i}", "text": f"Paragraph {i} tells of the {words[i % 6]} of town {i}."}
        for i in range(30)
    ]
    root = tmp_path_factory.mktemp("agree")
    corpus = root / "c.jsonl"
    corpus.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    build_index(corpus, root / "idx", bi_encoder=str(tiny_bi_encoder), progress=False)
    return QAPipeline.load(root / "idx", reranker=str(tiny_cross_encoder), read=False, device="cpu", rerank_backend="torch")


def test_the_pipeline_reranks_fewer_candidates_when_the_first_stages_agree(agreeing_qa, monkeypatch):
    scored: list[int] = []
    score_pairs = agreeing_qa.reranker.score_pairs
    monkeypatch.setattr(agreeing_qa.reranker, "score_pairs", lambda pairs, *a, **k: scored.append(len(pairs)) or score_pairs(pairs, *a, **k))
    found = agreeing_qa.retriever.retrieve_many([QUESTION], 20, agreeing_qa.settings)[0]
    assert found.candidates[0].ranks == {"bm25": 1, "dense": 1, "fused": 1}  # the premise: both put it first
    result = agreeing_qa.search(QUESTION, candidates=20, agreed_candidates=10, top_k=10)
    assert scored == [10] and result.settings["agreed_candidates"] == 10 and result.settings["reranked_candidates"] == 10
    assert result.hits[0].source_id == "varnholm"
    assert all(h.probability is not None for h in result.hits) and len(result.hits) == 10
    scored.clear()
    agreeing_qa.search(QUESTION, candidates=20, agreed_candidates=0, top_k=10)
    agreeing_qa.search(QUESTION, candidates=20, agreed_candidates=10, top_k=10, mode="bm25")
    assert scored == [20, 20]
