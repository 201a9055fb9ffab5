"""The HTTP API (pipeline/server.py) on tiny random models: endpoints, limits, access, batching (fuzzing: test_server_fuzz.py)."""

from __future__ import annotations

import asyncio
import json
import threading
import time

import httpx
import numpy as np
import pytest
from conftest import serve_on_loopback
from fastapi.testclient import TestClient

from pipeline.apps.server import ServerSettings, create_app
from pipeline.config import PipelineConfig
from pipeline.errors import ConfigError
from pipeline.qa import QAPipeline
from pipeline.rerank.batching import MicroBatcher
from pipeline.rerank.reranker import Reranker

QUESTION = "What is the capital of Germany?"
DOCS = [
    "Paris is the capital and largest city of France.",
    "Berlin is the capital of Germany and has 3.7 million people.",
    "Mount Everest is the highest mountain above sea level.",
    "The Nile is a major river flowing north through Egypt.",
]


@pytest.fixture(scope="module")
def reranker(tiny_cross_encoder) -> Reranker:
    return Reranker.load(str(tiny_cross_encoder), device="cpu")


@pytest.fixture(scope="module")
def pipeline(tiny_index, tiny_cross_encoder, tiny_reader) -> QAPipeline:
    return QAPipeline.load(tiny_index, reranker=str(tiny_cross_encoder), reader=str(tiny_reader), device="cpu")


@pytest.fixture(scope="module")
def make_app(pipeline, reranker):
    def make(rerankers=None, **settings):
        return create_app(pipeline, rerankers=rerankers or {"tiny": reranker}, settings=ServerSettings(**settings))

    return make


@pytest.fixture(scope="module")
def client(make_app):
    with TestClient(make_app()) as c:
        yield c


def direct(reranker: Reranker, query: str, docs: list[str]) -> np.ndarray:
    return np.asarray(reranker.score(query, docs), dtype=np.float64)


def gather(app, calls: list[tuple[str, dict]], headers=None) -> list[httpx.Response]:
    """Send all ``(path, json)`` calls concurrently to the ASGI app, on one event loop."""

    async def run():
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test", headers=headers) as c:
            return await asyncio.gather(*(c.post(path, json=body) for path, body in calls))

    return asyncio.run(run())


# --------------------------------------------------------------------------- health, models


def test_health_ready_and_models(client, tiny_index):
    assert client.get("/healthz").json() == {"status": "ok"}
    ready = client.get("/readyz")
    assert ready.status_code == 200
    assert ready.json() == {"status": "ready", "index": {"name": tiny_index.name, "passages": 6}, "models": ["tiny"]}
    models = client.get("/v1/models").json()
    assert [m["id"] for m in models["data"]] == ["tiny"]
    assert models["data"][0]["default"] is True and models["data"][0]["max_length"] == 512


def test_readyz_waits_for_background_loading_and_reports_failure(pipeline, reranker):
    release = threading.Event()

    def slow_loader():
        release.wait(10)
        return pipeline

    with TestClient(create_app(slow_loader, settings=ServerSettings())) as c:
        assert c.get("/healthz").status_code == 200
        loading = c.get("/readyz")
        assert loading.status_code == 503 and loading.json()["status"] == "loading"
        busy = c.post("/v1/rerank", json={"query": QUESTION, "documents": DOCS})
        assert busy.status_code == 503 and "loading" in busy.json()["detail"]
        release.set()
        for _ in range(100):
            if c.get("/readyz").status_code == 200:
                break
            time.sleep(0.05)
        assert c.get("/readyz").json()["models"] == [pipeline.reranker.name.rsplit("/", 1)[-1]]
        assert c.post("/v1/rerank", json={"query": QUESTION, "documents": DOCS}).status_code == 200

    def broken_loader():
        raise ConfigError("no such index here")

    with TestClient(create_app(broken_loader, settings=ServerSettings())) as c:
        for _ in range(100):
            if c.get("/readyz").json()["status"] != "loading":
                break
            time.sleep(0.05)
        failed = c.get("/readyz")
        assert failed.status_code == 503 and failed.json() == {"status": "failed", "detail": "no such index here"}
        down = c.post("/v1/score", json={"text_1": "q", "text_2": ["d"]})
        assert down.status_code == 503 and "no such index here" in down.json()["detail"]


# --------------------------------------------------------------------------- /v1/search


def test_search_matches_the_python_api(client, pipeline):
    response = client.post("/v1/search", json={"query": "capital of Germany", "top_k": 3, "mode": "bm25"})
    assert response.status_code == 200
    body = response.json()
    expected = pipeline.search("capital of Germany", top_k=3, mode="bm25").to_dict()
    assert [h["id"] for h in body["hits"]] == [h["id"] for h in expected["hits"]]
    for got, want in zip(body["hits"], expected["hits"]):
        assert set(got) == set(want)  # every field of the Python result, `answer` included
        assert got["probability"] == pytest.approx(want["probability"], abs=1e-5)
        assert got["answerable"] == want["answerable"]  # probability >= 0.5, unless the search abstained
    assert body["answerable"] == any(h["answerable"] for h in body["hits"])
    # the reader's spans flow through unchanged
    assert [h["answer"] and h["answer"]["text"] for h in body["hits"]] == [
        h["answer"] and h["answer"]["text"] for h in expected["hits"]
    ]
    assert (body["answer"] or {}).get("text") == (expected["answer"] or {}).get("text")
    for hit in body["hits"]:
        if hit["answer"]:
            assert hit["text"][hit["answer"]["start"] : hit["answer"]["end"]] == hit["answer"]["text"]
    assert body["settings"]["mode"] == "bm25" and body["settings"]["top_k"] == 3
    for name in ("index", "reranker", "reader", "bi_encoder"):
        assert "/" not in body["settings"][name]  # no server paths


def test_search_threshold_sets_answerable(client):
    none = client.post("/v1/search", json={"query": "capital of Italy", "threshold": 1.0}).json()
    assert none["answerable"] is False and not any(h["answerable"] for h in none["hits"])
    every = client.post("/v1/search", json={"query": "capital of Italy", "threshold": 0.0, "abstain": False}).json()
    assert every["answerable"] is True and all(h["answerable"] for h in every["hits"])


@pytest.mark.parametrize(
    "body, status, words",
    [
        ({"query": "x", "mode": "fuzzy"}, 422, "'bm25', 'dense' or 'hybrid'"),
        ({"query": "x", "top_k": 101}, 422, "less than or equal to 100"),
        ({"query": "x", "top_k": 0}, 422, "greater than or equal to 1"),
        ({"query": "x", "candidates": 501}, 422, "less than or equal to 500"),
        ({"query": "x", "threshold": 1.5}, 422, "less than or equal to 1"),
        ({"query": "x", "topk": 3}, 422, "Extra inputs"),
        ({"query": "   "}, 422, "empty"),
        ({"query": ""}, 422, "at least 1 character"),
        ({"query": 42}, 422, "valid string"),
        ({}, 422, "Field required"),
        ({"query": "x" * 2001}, 413, "query: 2,001 characters sent; the limit is 2,000 (max_query_chars)"),
    ],
)
def test_search_rejects_bad_input(client, body, status, words):
    response = client.post("/v1/search", json=body)
    assert response.status_code == status
    assert words in json.dumps(response.json())


def test_search_without_an_index(reranker):
    with TestClient(create_app(None, rerankers={"tiny": reranker}, settings=ServerSettings())) as c:
        response = c.post("/v1/search", json={"query": "x"})
        assert response.status_code == 404 and "without an index" in response.json()["detail"]
        assert c.get("/readyz").json()["index"] is None


# --------------------------------------------------------------------------- /v1/rerank


def test_rerank_sorts_by_the_models_scores(client, reranker):
    body = client.post("/v1/rerank", json={"query": QUESTION, "documents": DOCS}).json()
    want = direct(reranker, QUESTION, DOCS)
    results = body["results"]
    assert sorted(r["index"] for r in results) == list(range(len(DOCS)))
    scores = [r["relevance_score"] for r in results]
    assert scores == sorted(scores, reverse=True)
    for r in results:
        assert r["relevance_score"] == pytest.approx(want[r["index"]], abs=1e-5)
        assert 0.0 <= r["relevance_score"] <= 1.0
        assert "document" not in r
    assert body["model"] == "tiny"
    assert body["usage"]["total_tokens"] > 4 * len(DOCS)
    assert body["meta"]["billed_units"] == {"search_units": 1}
    assert body["id"]


def test_rerank_top_n_documents_objects_and_model(client):
    docs = [DOCS[0], {"text": DOCS[1], "title": "ignored"}, DOCS[2]]
    full = client.post("/v1/rerank", json={"query": QUESTION, "documents": docs}).json()["results"]
    top = client.post(
        "/v1/rerank", json={"model": "tiny", "query": QUESTION, "documents": docs, "top_n": 2, "return_documents": True}
    ).json()["results"]
    assert [r["index"] for r in top] == [r["index"] for r in full[:2]]
    texts = [DOCS[0], DOCS[1], DOCS[2]]
    assert [r["document"]["text"] for r in top] == [texts[r["index"]] for r in top]
    everything = client.post("/v1/rerank", json={"query": QUESTION, "documents": docs, "top_n": 1000}).json()
    assert len(everything["results"]) == 3


def test_rerank_bills_one_search_unit_per_hundred_documents(client):
    body = client.post("/v1/rerank", json={"query": "q", "documents": [f"doc {i}" for i in range(150)], "top_n": 1})
    assert body.json()["meta"]["billed_units"]["search_units"] == 2


def test_unknown_model_is_404_naming_the_served_ones(client):
    response = client.post("/v1/rerank", json={"model": "cohere-rerank-v3", "query": "q", "documents": ["d"]})
    assert response.status_code == 404
    assert "'cohere-rerank-v3'" in response.json()["detail"] and "tiny" in response.json()["detail"]


def test_two_models_are_served_by_name(pipeline, reranker, tiny_nli_cross_encoder):
    nli = Reranker.load(str(tiny_nli_cross_encoder), device="cpu")
    app = create_app(pipeline, rerankers={"tiny": reranker, "nli": nli}, settings=ServerSettings(default_model="nli"))
    with TestClient(app) as c:
        default = c.post("/v1/score", json={"text_1": QUESTION, "text_2": DOCS}).json()
        assert default["model"] == "nli"
        assert [d["score"] for d in default["data"]] == pytest.approx(direct(nli, QUESTION, DOCS), abs=1e-5)
        tiny = c.post("/v1/score", json={"model": "tiny", "text_1": QUESTION, "text_2": DOCS}).json()
        assert [d["score"] for d in tiny["data"]] == pytest.approx(direct(reranker, QUESTION, DOCS), abs=1e-5)


# --------------------------------------------------------------------------- /v1/score


def test_score_pairs_one_text_1_with_every_text_2(client, reranker):
    body = client.post("/v1/score", json={"text_1": QUESTION, "text_2": DOCS}).json()
    assert [d["index"] for d in body["data"]] == list(range(len(DOCS)))  # request order, not sorted
    assert [d["score"] for d in body["data"]] == pytest.approx(direct(reranker, QUESTION, DOCS), abs=1e-5)
    assert body["object"] == "list" and body["data"][0]["object"] == "score"
    assert body["usage"]["completion_tokens"] == 0 and body["usage"]["prompt_tokens"] > 0
    single = client.post("/v1/score", json={"text_1": QUESTION, "text_2": DOCS[1]}).json()
    assert single["data"][0]["score"] == pytest.approx(body["data"][1]["score"], abs=1e-5)


def test_score_lists_pair_element_wise(client, reranker):
    queries = ["Where is Paris?", QUESTION, "How high is Everest?"]
    docs = DOCS[:3]
    body = client.post("/v1/score", json={"text_1": queries, "text_2": docs}).json()
    want = reranker.score_pairs(list(zip(queries, docs)))
    assert [d["score"] for d in body["data"]] == pytest.approx(want, abs=1e-5)
    mismatch = client.post("/v1/score", json={"text_1": queries[:2], "text_2": docs})
    assert mismatch.status_code == 422
    assert "text_1 has 2 texts and text_2 has 3" in json.dumps(mismatch.json())


# --------------------------------------------------------------------------- limits and bad input


@pytest.fixture(scope="module")
def small_limits(make_app):
    app = make_app(max_documents=3, max_document_chars=50, max_query_chars=20, max_body_bytes=2000)
    with TestClient(app) as c:
        yield c


@pytest.mark.parametrize(
    "path, body, message",
    [
        ("/v1/rerank", {"query": "q", "documents": ["d"] * 4}, "documents: 4 items sent; the limit is 3 (max_documents)"),
        ("/v1/rerank", {"query": "q", "documents": ["d", "x" * 51]},
         "documents.1: 51 characters sent; the limit is 50 (max_document_chars)"),
        ("/v1/rerank", {"query": "q", "documents": [{"text": "x" * 60}]},
         "documents.0: 60 characters sent; the limit is 50 (max_document_chars)"),
        ("/v1/rerank", {"query": "q" * 21, "documents": ["d"]}, "query: 21 characters sent; the limit is 20 (max_query_chars)"),
        ("/v1/score", {"text_1": "q", "text_2": ["d"] * 4}, "text_2: 4 items sent; the limit is 3 (max_documents)"),
        ("/v1/score", {"text_1": "q" * 25, "text_2": ["d"]}, "text_1.0: 25 characters sent; the limit is 20 (max_query_chars)"),
        ("/v1/score", {"text_1": "q", "text_2": "d" * 70}, "text_2.0: 70 characters sent; the limit is 50 (max_document_chars)"),
        ("/v1/search", {"query": "q" * 30}, "query: 30 characters sent; the limit is 20 (max_query_chars)"),
    ],
)
def test_size_limits_get_413_naming_the_limit(small_limits, path, body, message):
    response = small_limits.post(path, json=body)
    assert response.status_code == 413
    detail = response.json()["detail"]
    assert message in [d["msg"] for d in detail]
    assert "input" not in detail[0]  # oversized input is never echoed back


def test_body_size_limit(small_limits):
    big = json.dumps({"query": "q", "documents": ["word " * 9] * 60})
    declared = small_limits.post("/v1/rerank", content=big, headers={"Content-Type": "application/json"})
    assert declared.status_code == 413
    assert declared.json()["detail"] == f"The request body is {len(big):,} bytes; the limit is 2,000 bytes (max_body_bytes)."

    def chunks():  # no Content-Length: the limit applies while reading
        for i in range(0, len(big), 500):
            yield big[i : i + 500].encode()

    streamed = small_limits.post("/v1/rerank", content=chunks(), headers={"Content-Type": "application/json"})
    assert streamed.status_code == 413 and "max_body_bytes" in streamed.json()["detail"]


@pytest.mark.parametrize(
    "content, content_type",
    [
        ('{"query": "q", "documents": ["d"]', "application/json"),
        ("not json at all", "application/json"),
        ('["q", "d"]', "application/json"),
        ("query=q&documents=d", "application/x-www-form-urlencoded"),
        ('{"query": "q", "documents": "just one string"}', "application/json"),
        ('{"query": "q", "documents": [1, 2]}', "application/json"),
        ('{"query": "q", "documents": [{"title": "no text"}]}', "application/json"),
        ('{"query": "q", "documents": []}', "application/json"),
        ('{"query": "q", "documents": ["   "]}', "application/json"),
        ('{"query": "\\ud800", "documents": ["d"]}', "application/json"),
        ('{"query": "q", "documents": ["d"], "top_n": 0}', "application/json"),
        ('{"query": "q", "documents": ["d"], "top_n": "many"}', "application/json"),
        ('{"query": "q", "documents": ["d"], "model": ""}', "application/json"),
    ],
)
def test_malformed_requests_get_422(client, content, content_type):
    response = client.post("/v1/rerank", content=content, headers={"Content-Type": content_type})
    assert response.status_code == 422, response.text
    assert response.json()["detail"]


def test_nan_threshold_is_rejected(client):
    response = client.post("/v1/search", content='{"query": "q", "threshold": NaN}', headers={"Content-Type": "application/json"})
    assert response.status_code == 422


# --------------------------------------------------------------------------- access


def test_api_key_is_required_when_set(make_app):
    with TestClient(make_app(api_key="s3cret-key")) as c:
        body = {"query": "q", "documents": ["d"]}
        missing = c.post("/v1/rerank", json=body)
        assert missing.status_code == 401 and missing.headers["www-authenticate"] == "Bearer"
        assert c.post("/v1/rerank", json=body, headers={"Authorization": "Bearer wrong"}).status_code == 401
        assert c.post("/v1/rerank", json=body, headers={"Authorization": "Basic s3cret-key"}).status_code == 401
        assert c.get("/v1/models").status_code == 401
        assert c.post("/v1/search", json={"query": "q"}).status_code == 401
        ok = {"Authorization": "Bearer s3cret-key"}
        assert c.post("/v1/rerank", json=body, headers=ok).status_code == 200
        assert c.post("/v1/score", json={"text_1": "q", "text_2": ["d"]}, headers=ok).status_code == 200
        assert c.get("/healthz").status_code == 200 and c.get("/readyz").status_code == 200


def test_cors_is_off_unless_configured(client, make_app):
    preflight = {"Origin": "https://app.example", "Access-Control-Request-Method": "POST"}
    assert "access-control-allow-origin" not in client.options("/v1/rerank", headers=preflight).headers
    with TestClient(make_app(cors_origins=("https://app.example",))) as c:
        allowed = c.options("/v1/rerank", headers=preflight)
        assert allowed.headers["access-control-allow-origin"] == "https://app.example"
        other = c.options("/v1/rerank", headers={**preflight, "Origin": "https://evil.example"})
        assert "access-control-allow-origin" not in other.headers


def test_settings_from_env():
    env = {
        "QA_SEARCH_API_KEY": "key-from-env",
        "QA_SEARCH_CORS_ORIGINS": "https://a.example, https://b.example",
        "QA_SEARCH_SERVER_MAX_DOCUMENTS": "7",
        "QA_SEARCH_SERVER_BATCHING": "off",
        "QA_SEARCH_SERVER_BATCH_MAX_WAIT_MS": "2.5",
    }
    s = ServerSettings.from_env(env, max_documents=9, port=None)
    assert (s.api_key, s.max_documents, s.batching, s.batch_max_wait_ms, s.port) == ("key-from-env", 9, False, 2.5, 8000)
    assert s.cors_origins == ("https://a.example", "https://b.example")
    assert s.host == "127.0.0.1" and s.is_loopback() and "key-from-env" not in repr(s)
    with pytest.raises(ConfigError, match="QA_SEARCH_SERVER_MAX_TOP_K must be a whole number, got 'lots'"):
        ServerSettings.from_env({"QA_SEARCH_SERVER_MAX_TOP_K": "lots"})
    with pytest.raises(ConfigError, match="max_documents must be a positive whole number"):
        ServerSettings(max_documents=0)
    assert not ServerSettings(host="0.0.0.0").is_loopback()


# --------------------------------------------------------------------------- concurrency and micro-batching


def _rerank_calls(n: int) -> list[tuple[str, dict]]:
    return [("/v1/rerank", {"query": f"question {i} about {DOCS[i % 4][:12]}", "documents": DOCS[i % 3 :]}) for i in range(n)]


@pytest.mark.parametrize("batching", [True, False])
def test_parallel_requests_get_their_own_scores(make_app, reranker, batching):
    app = make_app(batching=batching, batch_max_pairs=64, batch_max_wait_ms=20)
    calls = _rerank_calls(24) + [("/v1/score", {"text_1": "q", "text_2": DOCS})]
    responses = gather(app, calls)
    assert [r.status_code for r in responses] == [200] * len(calls)
    for (path, body), response in zip(calls[:-1], responses):
        want = direct(reranker, body["query"], body["documents"])
        got = {r["index"]: r["relevance_score"] for r in response.json()["results"]}
        assert [got[i] for i in range(len(want))] == pytest.approx(want, abs=1e-5)
    stats = app.state.service.rerank_batchers["tiny"].stats
    assert stats.items == len(calls)
    if batching:
        assert stats.calls < stats.items  # requests shared model calls
    else:
        assert stats.calls == stats.items


def test_parallel_searches_share_calls_and_match_direct_results(make_app, pipeline):
    app = make_app(batch_max_wait_ms=20)
    questions = ["capital of France", "highest mountain", "river in Egypt", "capital of Spain"] * 3
    calls = [("/v1/search", {"query": q, "top_k": 2}) for q in questions] + [
        ("/v1/search", {"query": "capital of Italy", "mode": "bm25", "top_k": 1})
    ]
    responses = gather(app, calls)
    assert all(r.status_code == 200 for r in responses)
    for (_, body), response in zip(calls, responses):
        want = pipeline.search(body["query"], **{k: v for k, v in body.items() if k != "query"})
        assert [h["id"] for h in response.json()["hits"]] == [h.id for h in want.hits]
    stats = app.state.service.search_batcher.stats
    assert stats.calls < stats.items == len(calls)


class PoisonedReranker(Reranker):
    """The tiny model, but any batch holding the text POISON fails (as a model crash would)."""

    def score_pairs(self, pairs, groups=None):
        if any("POISON" in p for _, p in pairs):
            raise RuntimeError("simulated model failure")
        return super().score_pairs(pairs, groups)


def test_a_failing_request_does_not_fail_its_batch(make_app, reranker):
    poisoned = PoisonedReranker(reranker.model, "poisoned")
    app = make_app(rerankers={"poisoned": poisoned}, batch_max_wait_ms=50)
    calls = _rerank_calls(8)
    calls.insert(3, ("/v1/rerank", {"query": "q", "documents": ["fine", "POISON pill"]}))
    responses = gather(app, calls)
    statuses = [r.status_code for r in responses]
    assert statuses == [200, 200, 200, 500, 200, 200, 200, 200, 200]
    assert "server log" in responses[3].json()["detail"]
    for (path, body), response in zip(calls, responses):
        if response.status_code == 200:
            want = direct(reranker, body["query"], body["documents"])
            got = {r["index"]: r["relevance_score"] for r in response.json()["results"]}
            assert [got[i] for i in range(len(want))] == pytest.approx(want, abs=1e-5)
    stats = app.state.service.rerank_batchers["poisoned"].stats
    assert stats.retried_alone == len(calls)  # they had shared the failed call, then ran alone
    after = gather(app, [("/v1/rerank", {"query": "q", "documents": ["d"]})])[0]
    assert after.status_code == 200  # the server carries on


def test_micro_batcher_groups_by_key_and_respects_max_batch():
    seen: list[tuple[object, list[int]]] = []

    def fn(key, items):
        seen.append((key, list(items)))
        return [(key, x * 10) for x in items]

    batcher = MicroBatcher(fn, max_batch=4, max_wait_ms=30)

    async def run():
        return await asyncio.gather(*(batcher.submit(i, key=i % 2) for i in range(10)))

    results = asyncio.run(run())
    assert results == [(i % 2, i * 10) for i in range(10)]
    assert all(len(items) <= 4 for _, items in seen)
    assert all(all(x % 2 == key for x in items) for key, items in seen)
    assert sum(len(items) for _, items in seen) == 10 and len(seen) < 10
    with pytest.raises(ValueError, match="max_batch"):
        MicroBatcher(fn, max_batch=0)


# --------------------------------------------------------------------------- OpenAPI and fuzzing


def test_openapi_documents_every_field_and_limit(small_limits):
    schema = small_limits.get("/openapi.json").json()
    components = schema["components"]["schemas"]
    rerank = components["RerankRequest"]["properties"]
    assert rerank["documents"]["maxItems"] == 3
    assert rerank["documents"]["items"]["anyOf"][0]["maxLength"] == 50
    assert rerank["query"]["maxLength"] == 20
    assert components["SearchRequest"]["properties"]["top_k"]["anyOf"][0]["maximum"] == 100
    for name in ("RerankRequest", "ScoreRequest", "SearchRequest"):
        for field_name, prop in components[name]["properties"].items():
            assert prop.get("description"), f"{name}.{field_name} has no description"
    assert set(schema["paths"]) >= {"/v1/search", "/v1/rerank", "/v1/score", "/v1/models", "/healthz", "/readyz"}
    assert "HTTPBearer" in schema["components"]["securitySchemes"]


# --------------------------------------------------------------------------- a real socket and real weights


def test_uvicorn_serves_on_loopback(make_app):
    with serve_on_loopback(make_app()) as url, httpx.Client(base_url=url, timeout=30) as c:
        assert c.get("/readyz").status_code == 200
        body = c.post("/v1/rerank", json={"query": QUESTION, "documents": DOCS}).json()
        assert len(body["results"]) == 4


def test_serve_command_reports_a_missing_index(tmp_path, capsys):
    from pipeline.apps.cli import main

    assert main(["serve", "--index", str(tmp_path / "nope"), "--port", "1"]) == 2
    assert "error:" in capsys.readouterr().err


@pytest.mark.slow
def test_standin_reranker_ranks_the_answer_first(pipeline, standin_reranker):
    real = Reranker.load(str(standin_reranker), device="cpu")
    with TestClient(create_app(pipeline, rerankers={"standin": real}, settings=ServerSettings())) as c:
        body = c.post("/v1/rerank", json={"query": QUESTION, "documents": DOCS, "top_n": 1}).json()
        assert body["results"][0]["index"] == 1 and body["results"][0]["relevance_score"] > 0.5


# --------------------------------------------------------------------------- abstention, same fields everywhere

ABSTAINS = {"paragraphs": 2, "features": ["probability"], "mean": [0.0], "scale": [1.0], "coef": [0.0],
            "intercept": -5.0, "threshold": 0.5}  # answerability 0.007 for every search: it always abstains


def test_an_abstention_carries_the_same_fields_in_python_http_and_cli(tmp_path, tiny_index, tiny_cross_encoder,
                                                                      tiny_reader, reranker, capsys):
    from pipeline.apps.cli import main

    policy = tmp_path / "abstains.json"
    policy.write_text(json.dumps(ABSTAINS), encoding="utf-8")
    qa = QAPipeline.load(tiny_index, reranker=str(tiny_cross_encoder), reader=str(tiny_reader), device="cpu",
                         answer_policy=str(policy))
    want = qa.search(QUESTION).to_dict()
    assert want["answer"] is None and want["answerability"] < 0.5 and want["candidate"]["text"]
    assert want["no_answer_reason"].startswith("No paragraph here answers this: answerability 0.01 is below 0.50")
    with TestClient(create_app(qa, rerankers={"tiny": reranker}, settings=ServerSettings())) as c:
        http = c.post("/v1/search", json={"query": QUESTION}).json()
    assert main(["search", QUESTION, "--index", str(tiny_index), "--reranker", str(tiny_cross_encoder), "--reader",
                 str(tiny_reader), "--device", "cpu", "--answer-policy", str(policy), "--json"]) == 0
    cli = json.loads(capsys.readouterr().out)
    for got in (http, cli):
        assert (got["answer"], got["answerability"], got["no_answer_reason"]) == (
            None, want["answerability"], want["no_answer_reason"])
        assert got["candidate"]["text"] == want["candidate"]["text"]
        assert not any(h["answerable"] for h in got["hits"])
        assert got["evidence"] == want["evidence"] and want["evidence"]["probability"] is not None
    # abstain_below moves the threshold for one search, the same way everywhere: at 0 every search answers
    kept = qa.search(QUESTION, abstain_below=0.0).to_dict()
    assert kept["answer"]["text"] == want["candidate"]["text"] and kept["no_answer_reason"] is None
    assert kept["settings"]["answer_policy"].endswith("threshold 0.00 (abstain_below; the policy's 0.50)")
    with TestClient(create_app(qa, rerankers={"tiny": reranker}, settings=ServerSettings())) as c:
        http = c.post("/v1/search", json={"query": QUESTION, "abstain_below": 0.0}).json()
        refused = c.post("/v1/search", json={"query": QUESTION, "abstain_below": 1.5})
    assert refused.status_code == 422 and "abstain_below" in refused.text
    assert main(["search", QUESTION, "--index", str(tiny_index), "--reranker", str(tiny_cross_encoder), "--reader",
                 str(tiny_reader), "--device", "cpu", "--answer-policy", str(policy), "--abstain-below", "0",
                 "--json"]) == 0
    cli = json.loads(capsys.readouterr().out)
    for got in (http, cli):
        assert (got["answer"]["text"], got["answerability"], got["no_answer_reason"]) == (
            kept["answer"]["text"], kept["answerability"], None)
    # out of range: the setting says which values it takes
    with pytest.raises(ConfigError, match="abstain_below must be between 0 and 1, got 2"):
        qa.search(QUESTION, abstain_below=2)
    assert PipelineConfig.from_env({"QA_SEARCH_ABSTAIN_BELOW": "0.3"}).search.abstain_below == 0.3
