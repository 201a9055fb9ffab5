"""``build --ray`` and ``serve --ray`` on a real local Ray cluster, with the tiny models.

Each test starts its own cluster (``ray.init(num_cpus=2)`` for the build, a
two-node :class:`ray.cluster_utils.Cluster` for serving) and shuts it down at
the end. Skipped when Ray (the ``[ray]`` extra) is not installed.
"""

from __future__ import annotations

import json
import random
import time

import httpx
import numpy as np
import pytest

ray = pytest.importorskip("ray", reason="Ray is not installed: pip install 'qa-search[ray]'")

from pipeline import QAPipeline  # noqa: E402
from pipeline.index import SearchIndex, build_index  # noqa: E402
from pipeline.scale_out import ray_build  # noqa: E402
from pipeline.scale_out.ray_build import build_index_on_ray, shard_name  # noqa: E402

pytestmark = [pytest.mark.ray, pytest.mark.slow, pytest.mark.timeout(600), pytest.mark.filterwarnings("ignore::DeprecationWarning")]

WORDS = ("river mountain capital city king queen war treaty river bridge castle music opera painter "
         "science atom planet comet ocean island desert forest engine railway harbour market").split()
QUERIES = ["capital city of the river", "painter and the opera", "planet comet atom", "railway harbour market", "king war"]


@pytest.fixture(scope="module")
def generated_corpus(tmp_path_factory):
    """70 paragraphs of seeded random words, as JSON Lines."""
    rng = random.Random(7)
    path = tmp_path_factory.mktemp("ray-corpus") / "generated.jsonl"
    with path.open("w", encoding="utf-8") as f:
        for i in range(70):
            text = " ".join(rng.choice(WORDS) for _ in range(rng.randint(8, 30))) + f" number {i}."
            f.write(json.dumps({"id": f"p{i}", "title": f"T{i % 9}", "text": text}) + "\n")
    return path


@pytest.fixture
def local_ray():
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield ray
    ray.shutdown()


def stored_vectors(index) -> np.ndarray:
    dense = SearchIndex.load(index).dense.index
    return dense.reconstruct_n(0, dense.ntotal)


def test_build_on_ray_matches_the_local_build(local_ray, generated_corpus, tiny_bi_encoder, tmp_path):
    local = tmp_path / "local"
    build_index(generated_corpus, local, bi_encoder=str(tiny_bi_encoder), progress=False)
    report = build_index_on_ray(generated_corpus, tmp_path / "on-ray", bi_encoder=str(tiny_bi_encoder), actors=2,
                                shard_size=16, batch_size=8, progress=False)
    assert (report.shards, report.shards_embedded, report.shards_resumed) == (5, 5, 0)
    a, b = SearchIndex.load(local), SearchIndex.load(tmp_path / "on-ray")
    assert [p.id for p in a.passages] == [p.id for p in b.passages]
    va, vb = stored_vectors(local), stored_vectors(tmp_path / "on-ray")
    assert va.shape == vb.shape == (70, va.shape[1])
    assert float(np.min(np.sum(va * vb, axis=1))) >= 0.9999
    qa_local = QAPipeline.load(local, rerank=False, read=False)
    qa_ray = QAPipeline.load(tmp_path / "on-ray", rerank=False, read=False)
    for mode in ("bm25", "dense", "hybrid"):
        for query in QUERIES:
            want = [h.id for h in qa_local.search(query, mode=mode, top_k=10).hits]
            assert [h.id for h in qa_ray.search(query, mode=mode, top_k=10).hits] == want, (mode, query)
    assert not ray_build.work_directory_for(tmp_path / "on-ray").exists(), "shards are removed after a build"


def test_an_interrupted_build_embeds_only_the_missing_shards(local_ray, generated_corpus, tiny_bi_encoder, tmp_path,
                                                             monkeypatch):
    real_write, calls = ray_build.write_shard, []

    def write_then_fail(path, vectors):
        calls.append(path.name)
        if len(calls) == 3:
            raise KeyboardInterrupt  # the third shard never lands, as if the build were stopped
        real_write(path, vectors)

    monkeypatch.setattr(ray_build, "write_shard", write_then_fail)
    work = tmp_path / "shards"
    options = dict(bi_encoder=str(tiny_bi_encoder), actors=1, shard_size=16, batch_size=8, work_dir=work, progress=False)
    with pytest.raises(KeyboardInterrupt):
        build_index_on_ray(generated_corpus, tmp_path / "index", **options)
    assert sorted(p.name for p in work.glob("*.npy")) == [shard_name(0), shard_name(1)]
    assert not (tmp_path / "index").exists()
    before = {n: (work / shard_name(n)).stat().st_mtime_ns for n in (0, 1)}
    monkeypatch.setattr(ray_build, "write_shard", real_write)
    report = build_index_on_ray(generated_corpus, tmp_path / "index", keep_shards=True, **options)
    assert (report.shards_resumed, report.shards_embedded) == (2, 3)
    assert {n: (work / shard_name(n)).stat().st_mtime_ns for n in (0, 1)} == before, "kept shards were rewritten"
    local = tmp_path / "local"
    build_index(generated_corpus, local, bi_encoder=str(tiny_bi_encoder), progress=False)
    assert float(np.min(np.sum(stored_vectors(local) * stored_vectors(tmp_path / "index"), axis=1))) >= 0.9999
    # Other inputs (here another shard size) never reuse the shards.
    report = build_index_on_ray(generated_corpus, tmp_path / "index", **{**options, "shard_size": 32})
    assert (report.shards_resumed, report.shards_embedded) == (0, 3)


# --------------------------------------------------------------------------- serve --ray

API_KEY = "test-key"
AUTH = {"Authorization": f"Bearer {API_KEY}"}


def free_port() -> int:
    import socket

    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def generated_index(generated_corpus, tiny_bi_encoder, tmp_path_factory):
    out = tmp_path_factory.mktemp("ray-index") / "generated"
    build_index(generated_corpus, out, bi_encoder=str(tiny_bi_encoder), progress=False)
    return out


@pytest.fixture(scope="module")
def model_options(tiny_cross_encoder, tiny_reader):
    return {"reranker": str(tiny_cross_encoder), "reader": str(tiny_reader), "device": "cpu", "rerank_backend": "torch"}


@pytest.fixture
def two_nodes():
    """A head and a worker node on loopback; the test's Serve app and the cluster are shut down afterwards."""
    from ray import serve
    from ray.cluster_utils import Cluster

    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 2, "include_dashboard": False})
    cluster.add_node(num_cpus=2)
    ray.init(address=cluster.address, log_to_driver=False)
    yield cluster
    serve.shutdown()
    ray.shutdown()
    cluster.shutdown()


def start(index, options, settings, **scaling):
    from pipeline.apps.server.ray_serve import start_on_ray
    from pipeline.scale_out.scaling import RayScaling

    start_on_ray(str(index), options, settings, RayScaling(replica_cpus=0.25, **scaling))
    base = f"http://127.0.0.1:{settings.port}"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:  # /readyz turns 200 once the app has reached every deployment
        try:
            if httpx.get(base + "/readyz", timeout=10).status_code == 200:
                return base
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    raise AssertionError("the Ray app never became ready")


VOLATILE = {"id", "created", "timings"}


def comparable(value):
    """A response body without ids, creation times and timings, floats rounded to 5 places."""
    if isinstance(value, dict):
        return {k: comparable(v) for k, v in value.items() if k not in VOLATILE}
    if isinstance(value, list):
        return [comparable(v) for v in value]
    if isinstance(value, float):
        return round(value, 5)
    return value


def same(a, b, tol: float = 1e-4) -> bool:
    """Equal structures, numbers within ``tol``: a fused score computed in another process may differ in its
    last float32 digits (0.189955 rounds to 0.18995 on one side and 0.18996 on the other)."""
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(same(a[k], b[k], tol) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(same(x, y, tol) for x, y in zip(a, b))
    if isinstance(a, float) or isinstance(b, float):
        return isinstance(a, (int, float)) and isinstance(b, (int, float)) and abs(a - b) <= tol
    return a == b


def test_serve_on_ray_answers_like_the_single_process_server(two_nodes, generated_index, model_options):
    from fastapi.testclient import TestClient

    from pipeline.apps.server import ServerSettings, create_app

    settings = ServerSettings(api_key=API_KEY, port=free_port(), max_query_chars=200)
    base = start(generated_index, model_options, settings, reranker_replicas=2)
    local = TestClient(create_app(QAPipeline.load(generated_index, **model_options), settings=settings))
    local.__enter__()
    requests = [("GET", "/readyz", None), ("GET", "/v1/models", None)]
    for mode in ("bm25", "dense", "hybrid"):
        for query in QUERIES:
            requests.append(("POST", "/v1/search", {"query": query, "mode": mode, "top_k": 10, "candidates": 20}))
    requests += [
        ("POST", "/v1/search", {"query": QUERIES[0], "rerank": False, "read": False}),
        ("POST", "/v1/rerank", {"query": QUERIES[1], "documents": WORDS[:12], "top_n": 5, "return_documents": True}),
        ("POST", "/v1/score", {"text_1": QUERIES[2], "text_2": WORDS[:6]}),
        ("POST", "/v1/search", {"query": "x" * 201}),  # over a limit: 413 naming it
        ("POST", "/v1/search", {"query": QUERIES[0], "top_k": 0}),  # invalid: 422
        ("POST", "/v1/rerank", {"query": QUERIES[1], "documents": [], "model": "no-such-model"}),
    ]
    with httpx.Client(base_url=base, headers=AUTH, timeout=60) as client:
        for method, path, body in requests:
            got = client.request(method, path, json=body)
            want = local.request(method, path, json=body, headers=AUTH)
            assert got.status_code == want.status_code, (path, body, got.text)
            assert same(comparable(got.json()), comparable(want.json())), (path, body)
        searched = client.post("/v1/search", json={"query": QUERIES[0], "top_k": 10}).json()
        assert len(searched["hits"]) == 10 and searched["hits"][0]["probability"] is not None
        assert searched["settings"]["reader"] is not None
        assert client.post("/v1/search", json={"query": QUERIES[0]}, headers={"Authorization": "Bearer wrong"}).status_code == 401
    local.__exit__(None, None, None)


def reranker_replicas() -> list:
    names = [a for a in ray.util.list_named_actors(all_namespaces=True) if "Reranker" in a["name"]]
    return [ray.get_actor(a["name"], namespace=a["namespace"]) for a in names]


def test_a_reranker_replica_killed_mid_load_gives_retries_or_503_and_recovers(two_nodes, generated_index, model_options):
    from concurrent.futures import ThreadPoolExecutor

    from ray import serve

    from pipeline.apps.server import ServerSettings

    settings = ServerSettings(port=free_port())
    base = start(generated_index, {**model_options, "read": False}, settings, reranker_replicas=2)
    assert len(reranker_replicas()) == 2
    body = {"query": QUERIES[1], "documents": WORDS * 2}

    def one(_):
        started = time.monotonic()
        response = httpx.post(base + "/v1/rerank", json=body, timeout=90)
        return response.status_code, response.json(), time.monotonic() - started

    with ThreadPoolExecutor(6) as pool:
        futures = [pool.submit(one, i) for i in range(60)]
        while sum(f.done() for f in futures) < 6:
            time.sleep(0.05)
        ray.kill(reranker_replicas()[0], no_restart=True)
        results = [f.result(timeout=120) for f in futures]
    statuses = [status for status, _, _ in results]
    assert set(statuses) <= {200, 503}, statuses
    assert statuses.count(200) >= 30
    for status, payload, seconds in results:
        assert seconds < 60
        if status == 503:
            assert "retry" in payload["detail"]
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        deployment = serve.status().applications["qa-search"].deployments["Reranker"]
        if deployment.status == "HEALTHY" and deployment.replica_states.get("RUNNING") == 2:
            break
        time.sleep(1)
    else:
        raise AssertionError(f"the reranker did not recover: {deployment}")
    assert one(0)[0] == 200
