"""Long documents are read whole by the rerank endpoints: chunks that fit the model, max-pooled, truncation stated.

Also the Cohere SDK itself as the client of ``/v1/rerank`` (``cohere.Client``) and
``/v2/rerank`` (``cohere.ClientV2``).
"""

from __future__ import annotations

import numpy as np
import pytest
from conftest import serve_on_loopback
from fastapi.testclient import TestClient

from pipeline.apps.server import ServerSettings, create_app
from pipeline.rerank.chunking import chunk_document, max_pool
from pipeline.rerank.reranker import Reranker

QUESTION = "Which team won Super Bowl 50?"
ANSWER = "The Denver Broncos won Super Bowl 50, beating the Carolina Panthers 24 to 10."
FILLER = ("The museum's garden holds old roses, a fountain and benches painted green, and visitors walk "
          "there in the spring when the weather is mild. ")
LONG = FILLER * 30 + ANSWER  # the answer comes after ~700 tokens


@pytest.fixture(scope="module")
def short_reranker(tiny_cross_encoder) -> Reranker:
    """The tiny random cross-encoder reading 64 tokens, so that short texts need several chunks."""
    return Reranker.load(str(tiny_cross_encoder), device="cpu", max_length=64)


def _tokens(reranker: Reranker, query: str, text: str) -> int:
    return len(reranker.tokenizer(query, text, truncation=False)["input_ids"])


def test_chunks_fit_the_model_and_cover_the_document(short_reranker):
    chunks = chunk_document(short_reranker.tokenizer, QUESTION, LONG, max_length=64, max_chunks=1000)
    assert len(chunks.texts) > 10 and not chunks.truncated
    assert all(_tokens(short_reranker, QUESTION, t) <= 64 for t in chunks.texts)
    assert chunks.texts[-1].endswith("24 to 10.")  # the end of the document is read
    read = " ".join(chunks.texts).split()
    assert set(LONG.split()) <= set(read)
    assert chunks.document_tokens == len(short_reranker.tokenizer(LONG, add_special_tokens=False)["input_ids"])


def test_a_short_document_is_one_chunk_and_caps_say_truncated(short_reranker):
    tok = short_reranker.tokenizer
    one = chunk_document(tok, QUESTION, ANSWER, max_length=64, max_chunks=10)
    assert one.texts == [ANSWER] and not one.truncated
    capped = chunk_document(tok, QUESTION, LONG, max_length=64, max_chunks=3)
    assert len(capped.texts) == 3 and capped.truncated
    cut = chunk_document(tok, QUESTION, LONG, max_length=512, max_chunks=100, max_tokens=100)
    assert cut.truncated and len(tok(" ".join(cut.texts), add_special_tokens=False)["input_ids"]) <= 100
    long_query = chunk_document(tok, "why " * 60, ANSWER, max_length=64, max_chunks=10)
    assert long_query.truncated  # the model will cut the query: said, not silent


def test_max_pool_takes_each_documents_best_chunk():
    best, where = max_pool([0.1, 0.7, 0.2, 0.9, 0.3], [3, 1, 1])
    assert best.tolist() == [0.7, 0.9, 0.3] and where == [1, 0, 0]
    with pytest.raises(ValueError, match="5 scores for 4 chunks"):
        max_pool([0.1] * 5, [2, 2])


@pytest.fixture(scope="module")
def chunk_client(short_reranker):
    app = create_app(None, rerankers={"tiny": short_reranker}, settings=ServerSettings(max_client_pairs=1000))
    with TestClient(app) as c:
        yield c


def test_rerank_scores_a_long_document_by_its_best_chunk(chunk_client, short_reranker):
    docs = [LONG, ANSWER]
    body = chunk_client.post("/v1/rerank", json={"query": QUESTION, "documents": docs}).json()
    by_index = {r["index"]: r for r in body["results"]}
    chunks = chunk_document(short_reranker.tokenizer, QUESTION, LONG, max_length=64, max_chunks=10)
    want = float(np.max(short_reranker.score(QUESTION, chunks.texts)))
    assert by_index[0]["relevance_score"] == pytest.approx(want, abs=1e-5)
    assert by_index[0]["chunks"] == 10 and by_index[0]["truncated"] is True  # Cohere v1's default cap
    assert by_index[0]["document_tokens"] > 600 and by_index[0]["query_tokens"] > 3
    assert by_index[1]["chunks"] == 1 and by_index[1]["truncated"] is False
    more = chunk_client.post("/v1/rerank", json={"query": QUESTION, "documents": docs, "max_chunks_per_doc": 100}).json()
    assert {r["index"]: r["truncated"] for r in more["results"]} == {0: False, 1: False}
    one = chunk_client.post("/v1/rerank", json={"query": QUESTION, "documents": docs, "max_chunks_per_doc": 1}).json()
    first = float(short_reranker.score(QUESTION, chunks.texts[:1])[0])
    assert {r["index"]: r["relevance_score"] for r in one["results"]}[0] == pytest.approx(first, abs=1e-5)


def test_v2_rerank_reads_max_tokens_per_doc(chunk_client):
    body = chunk_client.post("/v2/rerank", json={"model": "tiny", "query": QUESTION, "documents": [LONG, ANSWER]}).json()
    assert body["meta"]["api_version"]["version"] == "2"
    assert {r["index"]: r["truncated"] for r in body["results"]} == {0: False, 1: False}  # 4,096 tokens by default
    cut = chunk_client.post("/v2/rerank", json={"query": QUESTION, "documents": [LONG], "max_tokens_per_doc": 50}).json()
    assert cut["results"][0]["truncated"] is True and cut["results"][0]["chunks"] == 1  # 50 tokens fit one chunk


def test_too_many_chunks_is_413_naming_the_limit(short_reranker):
    app = create_app(None, rerankers={"tiny": short_reranker},
                     settings=ServerSettings(max_documents=10, max_candidates=10, max_client_pairs=20))
    with TestClient(app) as c:
        response = c.post("/v1/rerank", json={"query": QUESTION, "documents": [LONG, LONG, LONG]})
    assert response.status_code == 413
    assert "30 (query, chunk) pairs" in response.json()["detail"] and "max_client_pairs" in response.json()["detail"]


def test_the_cohere_sdk_v1_and_v2_clients(short_reranker):
    """The official SDK as the client, with its own HTTP stack, over a real socket (as a user runs it)."""
    cohere = pytest.importorskip("cohere")
    docs = [ANSWER, FILLER, "Super Bowl 50 was played in Santa Clara."]
    want = short_reranker.score(QUESTION, docs)
    app = create_app(None, rerankers={"tiny": short_reranker}, settings=ServerSettings(max_client_pairs=1000))
    with serve_on_loopback(app) as url:
        v1 = cohere.Client(api_key="unused", base_url=url)
        old = v1.rerank(model="tiny", query=QUESTION, documents=docs, top_n=2, return_documents=True)
        v2 = cohere.ClientV2(api_key="unused", base_url=url)
        new = v2.rerank(model="tiny", query=QUESTION, documents=docs)
    assert [r.index for r in old.results] == list(np.argsort(-want, kind="stable")[:2])
    assert old.results[0].document.text == docs[old.results[0].index]
    assert [r.index for r in new.results] == list(np.argsort(-want, kind="stable"))
    for r in new.results:
        assert r.relevance_score == pytest.approx(float(want[r.index]), abs=1e-5)
    assert new.meta.billed_units.search_units == 1


@pytest.mark.slow
def test_the_answer_at_the_end_of_a_long_document_is_found(standin_reranker):
    """With the stand-in reranker: read whole, the long document that answers beats one that does not."""
    real = Reranker.load(str(standin_reranker), device="cpu")
    app = create_app(None, rerankers={"standin": real}, settings=ServerSettings())
    decoy = FILLER * 31
    with TestClient(app) as c:
        whole = c.post("/v1/rerank", json={"query": QUESTION, "documents": [decoy, LONG]}).json()["results"]
        head = c.post("/v1/rerank", json={"query": QUESTION, "documents": [decoy, LONG],
                                          "max_chunks_per_doc": 1}).json()["results"]
    assert whole[0]["index"] == 1 and whole[0]["relevance_score"] > 0.5
    assert {r["index"]: r["relevance_score"] for r in head}[1] < 0.5  # its first chunk alone does not answer
    assert {r["index"]: r["truncated"] for r in head}[1] is True


def test_score_whole_scores_long_passages_by_their_best_chunk(short_reranker):
    from pipeline.rerank.chunking import score_whole

    pairs = [(QUESTION, ANSWER), (QUESTION, LONG), ("Who?", FILLER)]
    got = score_whole(short_reranker, pairs)
    fits = short_reranker.score_pairs([pairs[0], pairs[2]])
    assert got[0] == pytest.approx(fits[0], abs=1e-6) and got[2] == pytest.approx(fits[1], abs=1e-6)  # unchanged
    chunks = chunk_document(short_reranker.tokenizer, QUESTION, LONG, max_length=64, max_chunks=16)
    assert got[1] == pytest.approx(float(np.max(short_reranker.score(QUESTION, chunks.texts))), abs=1e-6)
    assert got[1] != pytest.approx(float(short_reranker.score_pairs([pairs[1]])[0]), abs=1e-6)  # not the cut pair's


@pytest.mark.slow
def test_the_pipeline_reranks_a_long_paragraph_by_its_answer_late_in_it(tmp_path, minilm_path, standin_reranker):
    """A paragraph whose answer comes after the reranker's limit: read whole, it is flagged and ranked first."""
    import json

    from pipeline import QAPipeline, build_index

    records = [{"id": "long", "title": "Garden", "text": LONG},
               {"id": "decoy", "title": "Garden", "text": FILLER * 2 + "Super Bowl 50 was watched by many people."}]
    corpus = tmp_path / "c.jsonl"
    corpus.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    build_index(corpus, tmp_path / "idx", bi_encoder=str(minilm_path), max_tokens=2000, progress=False)
    qa = QAPipeline.load(tmp_path / "idx", reranker=str(standin_reranker), read=False, device="cpu",
                         rerank_backend="torch", policy="none")
    hits = qa.search(QUESTION, top_k=2, candidates=2).hits
    assert hits[0].source_id == "long" and hits[0].answerable
