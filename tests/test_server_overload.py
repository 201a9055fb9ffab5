"""The HTTP API under overload (issue 17 #7): admission by pairs, 429/503 with Retry-After, deadlines,
dropping the work of clients that left, a body-receive timeout, fair turns, big requests split."""

from __future__ import annotations

import asyncio
import json
import time

import httpx
import pytest

from pipeline.apps.server import ServerSettings, create_app
from pipeline.rerank.reranker import Reranker

QUESTION = "What is the capital of Germany?"


@pytest.fixture(scope="module")
def base(tiny_cross_encoder) -> Reranker:
    return Reranker.load(str(tiny_cross_encoder), device="cpu", backend="torch", cache_size=0)


class Slow(Reranker):
    """The tiny model, ``delay`` seconds slower per call, remembering every text it scored."""

    delay = 0.0

    def __init__(self, base: Reranker, delay: float):
        super().__init__(base.model, "tiny", cache_size=0)
        self.delay = delay
        self.seen: list[str] = []
        self.calls = 0

    def score_pairs(self, pairs, groups=None):
        self.calls += 1
        self.seen.extend(p for _, p in pairs)
        time.sleep(self.delay)
        return super().score_pairs(pairs, groups)


class CountingEngine:
    def __init__(self, engine):
        self.engine, self.calls = engine, 0
        self.backend, self.input_names = engine.backend, engine.input_names

    def __call__(self, features):
        self.calls += 1
        return self.engine(features)


def app_with(reranker, **settings):
    return create_app(None, rerankers={"tiny": reranker}, settings=ServerSettings(**settings))


async def post_all(app, calls):
    """``calls``: (delay s, path, json, token); all sent concurrently; returns (response, finished at)."""
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test", timeout=30) as client:
        async def one(delay, path, body, token):
            await asyncio.sleep(delay)
            response = await client.post(path, json=body, headers={"Authorization": f"Bearer {token}"})
            return response, time.perf_counter()

        return await asyncio.gather(*(one(*c) for c in calls))


def docs(n: int, tag: str) -> list[str]:
    return [f"{tag} document number {i} about Berlin." for i in range(n)]


def test_overload_gets_429_for_a_greedy_client_and_503_when_full_with_retry_after(base):
    # Each batch takes 0.5 s, so alice's admitted pairs are still pending when bob's arrive 10 ms later, even when a
    # loaded CI machine wakes bob's tasks late (with 0.05 s, bob was once admitted after alice's had finished).
    app = app_with(Slow(base, 0.5), max_documents=100, max_candidates=100, max_client_pairs=300,
                   max_pending_pairs=500, batch_max_pairs=100)
    calls = [(0, "/v1/rerank", {"query": QUESTION, "documents": docs(100, f"a{i}")}, "alice") for i in range(6)]
    calls += [(0.01, "/v1/rerank", {"query": QUESTION, "documents": docs(100, f"b{i}")}, "bob") for i in range(3)]
    responses = [r for r, _ in asyncio.run(post_all(app, calls))]
    statuses = [r.status_code for r in responses]
    assert set(statuses) <= {200, 429, 503}, statuses
    alice, bob = statuses[:6], statuses[6:]
    assert alice.count(200) == 3 and alice.count(429) == 3  # alice may hold 300 pairs, no more
    assert 503 in bob and 200 in bob  # the server holds 500 in all
    for r in responses:
        if r.status_code in (429, 503):
            assert int(r.headers["Retry-After"]) >= 1 and "Retry later" in r.json()["detail"]
    state = app.state.service.admission
    assert state.pending == 0 and not state.by_client  # everything admitted was released


def test_a_client_at_its_limit_is_refused_before_its_body_is_read(base):
    """A client holding its whole share gets 429 at once, for any body: the server never reads or parses it
    (a greedy client resending large bodies cannot keep the event loop busy with JSON)."""
    from pipeline.apps.server.middleware import client_id

    app = app_with(base, max_client_pairs=50, max_documents=50, max_candidates=50)
    admission = app.state.service.admission
    greedy = client_id({"headers": [(b"authorization", b"Bearer greedy")]})
    admission.by_client[greedy] = 50

    async def send(token: str, body: bytes):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            return await client.post("/v1/rerank", content=body, headers={"Authorization": f"Bearer {token}",
                                                                            "Content-Type": "application/json"})

    refused = asyncio.run(send("greedy", b"{not json"))
    assert refused.status_code == 429 and int(refused.headers["Retry-After"]) >= 1
    assert "max_client_pairs" in refused.json()["detail"] and admission.refused[429] == 1
    assert asyncio.run(send("other", b"{not json")).status_code == 422  # others' bodies are still read
    del admission.by_client[greedy]
    assert asyncio.run(send("greedy", json.dumps({"query": QUESTION, "documents": ["a", "b"]}).encode())).status_code == 200


def test_a_rerank_over_batch_max_pairs_does_not_hold_up_small_ones(base):
    slow = Slow(base, 0.03)
    app = app_with(slow, batch_max_pairs=50)
    calls = [(0, "/v1/rerank", {"query": QUESTION, "documents": docs(1000, "big")}, "big"),
             (0.05, "/v1/rerank", {"query": QUESTION, "documents": docs(4, "small")}, "small")]
    (big, big_done), (small, small_done) = asyncio.run(post_all(app, calls))
    assert big.status_code == small.status_code == 200
    assert small_done < big_done  # it ran between the big request's chunks
    assert slow.calls >= 20  # 1,000 pairs in chunks of at most 50
    assert len(big.json()["results"]) == 1000


def test_a_chunked_rerank_through_a_cascade_gets_its_scores_alone_with_one_rescoring(base, tiny_electra_cross_encoder):
    """A request split into chunks is screened chunk by chunk, then its own best ``keep`` are re-scored once:
    the same scores as the cascade alone, whatever ``batch_max_pairs`` (before, every chunk kept its own top
    ``keep``, so a 1,000-document request re-scored hundreds of pairs and its scores depended on the chunking)."""
    from pipeline.rerank.cascade import Cascade

    main = Reranker.load(str(tiny_electra_cross_encoder), device="cpu", backend="torch", cache_size=0)
    documents = docs(40, "many") + docs(2, "many")  # two repeated documents take one place each
    expected = Cascade(base, main, keep=3).score(QUESTION, documents)
    for size in (4, 7, 64):
        rescoring = Slow(Reranker(main.model, "tiny", cache_size=0), 0.0)
        app = create_app(None, rerankers={"tiny": Cascade(base, rescoring, keep=3)},
                         settings=ServerSettings(batch_max_pairs=size))
        ((response, _),) = asyncio.run(post_all(app, [(0, "/v1/rerank", {"query": QUESTION, "documents": documents,
                                                                              "top_n": len(documents)}, "c")]))
        assert response.status_code == 200
        got = {r["index"]: r["relevance_score"] for r in response.json()["results"]}
        assert [got[i] for i in range(len(documents))] == pytest.approx(expected.tolist(), abs=1e-6)
        assert rescoring.calls == 1 and len(rescoring.seen) == 3


def test_score_with_many_different_text_1_is_a_few_model_calls(base):
    counted = Reranker(base.model, "tiny", cache_size=0)
    counted.engine = CountingEngine(counted.engine)
    app = app_with(counted)
    n = 200
    body = {"text_1": [f"question {i}?" for i in range(n)], "text_2": [f"answer {i}." for i in range(n)]}
    (response, _), = asyncio.run(post_all(app, [(0, "/v1/score", body, "k")]))
    assert response.status_code == 200 and len(response.json()["data"]) == n
    assert counted.engine.calls <= 2 * -(-n // counted.batch_size)  # a few batches, not one per text_1


def test_a_request_past_its_deadline_gets_503_with_retry_after(base):
    app = app_with(Slow(base, 0.6), request_timeout_s=0.2)
    (response, _), = asyncio.run(post_all(app, [(0, "/v1/rerank", {"query": QUESTION, "documents": docs(3, "x")}, "k")]))
    assert response.status_code == 503 and int(response.headers["Retry-After"]) >= 1
    assert "request_timeout_s" in response.json()["detail"]


async def raw_request(app, body: bytes, *, leave_after: float | None = None, stall: bool = False):
    """Drive the ASGI app directly: send ``body`` (or half of it, then nothing), optionally hang up."""
    sent = []
    chunks = [body[: len(body) // 2], body[len(body) // 2:]] if stall else [body]

    async def receive():
        if chunks:
            chunk = chunks.pop(0)
            return {"type": "http.request", "body": chunk, "more_body": stall}
        if stall:
            await asyncio.sleep(3600)
        if leave_after is not None:
            await asyncio.sleep(leave_after)
            return {"type": "http.disconnect"}
        await asyncio.sleep(3600)

    async def send(message):
        sent.append(message)

    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST", "scheme": "http",
             "path": "/v1/rerank", "raw_path": b"/v1/rerank", "query_string": b"", "root_path": "",
             "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                         (b"authorization", b"Bearer leaver")],
             "client": ("10.0.0.9", 5555), "server": ("test", 80)}
    await app(scope, receive, send)
    return sent


def test_the_work_of_a_client_that_left_is_never_run(base):
    slow = Slow(base, 0.4)
    app = app_with(slow)

    async def scenario():
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test", timeout=30) as client:
            busy = asyncio.ensure_future(client.post("/v1/rerank", json={"query": QUESTION, "documents": ["first"]}))
            await asyncio.sleep(0.1)  # the model is now busy with "first" for 0.4 s
            body = json.dumps({"query": QUESTION, "documents": ["LEFT-BEHIND"]}).encode()
            sent = await asyncio.wait_for(raw_request(app, body, leave_after=0.1), 5)
            assert (await busy).status_code == 200
            await asyncio.sleep(0.6)  # time for a queued call, had it stayed queued
            return sent

    sent = asyncio.run(scenario())
    assert "LEFT-BEHIND" not in slow.seen
    assert not [m for m in sent if m["type"] == "http.response.start" and m["status"] == 200]
    assert app.state.service.admission.pending == 0


def test_a_body_that_never_finishes_arriving_gets_408(base):
    app = app_with(base, body_timeout_s=0.3)
    body = json.dumps({"query": QUESTION, "documents": ["a", "b"]}).encode()
    started = time.perf_counter()
    sent = asyncio.run(asyncio.wait_for(raw_request(app, body, stall=True), 5))
    assert time.perf_counter() - started < 3
    start = next(m for m in sent if m["type"] == "http.response.start")
    assert start["status"] == 408


def test_fair_gate_alternates_kinds():
    from pipeline.rerank.batching import FairGate

    gate = FairGate(1)
    order = []

    async def work(kind, n):
        async with gate.turn(kind):
            order.append(f"{kind}{n}")
            await asyncio.sleep(0.01)

    async def scenario():
        tasks = [asyncio.ensure_future(work("rerank", i)) for i in range(4)]
        await asyncio.sleep(0)
        tasks += [asyncio.ensure_future(work("search", i)) for i in range(2)]
        await asyncio.gather(*tasks)

    asyncio.run(scenario())
    assert order[:5] == ["rerank0", "rerank1", "search0", "rerank2", "search1"]


def test_fair_queue_serves_the_least_served_client_first():
    from pipeline.rerank.batching import FairQueue, _Pending

    async def scenario():
        queue = FairQueue()
        loop = asyncio.get_running_loop()
        for n in range(3):
            queue.put_nowait(_Pending(f"big{n}", None, 128, loop.create_future(), "big"))
        for n in range(3):
            queue.put_nowait(_Pending(f"small{n}", None, 4, loop.create_future(), f"s{n}"))
        return [queue.get_nowait().item for _ in range(6)]

    order = asyncio.run(scenario())
    # Items are taken by finish tag (served + weight): the small ones, queued after the big client's three
    # chunks, still go first (each would finish after 4 pairs, the big chunk after 128); then the big ones.
    assert order == ["small0", "small1", "small2", "big0", "big1", "big2"]


def test_fair_queue_lets_a_small_item_pass_big_lanes_level_with_it():
    """A client returning with a small item, level with two busy big clients, waits for no big chunk (before,
    ties went to the older lanes, so a small request waited for a chunk of each big client, twice per cascade)."""
    from pipeline.rerank.batching import FairQueue, _Pending

    async def scenario():
        queue = FairQueue()
        loop = asyncio.get_running_loop()
        for n in range(4):
            queue.put_nowait(_Pending(f"big{n}", None, 8, loop.create_future(), "big"))
            queue.put_nowait(_Pending(f"greedy{n}", None, 8, loop.create_future(), "greedy"))
        served = [queue.get_nowait().item for _ in range(2)]
        queue.put_nowait(_Pending("small", None, 4, loop.create_future(), "small"))
        return served, queue.get_nowait().item

    served, next_item = asyncio.run(scenario())
    assert sorted(served) == ["big0", "greedy0"] and next_item == "small"
