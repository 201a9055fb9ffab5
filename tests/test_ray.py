"""``build --ray`` and ``serve --ray`` on a real local Ray cluster, with the tiny models.

Each test starts its own cluster (``ray.init(num_cpus=2)`` for the build, a
two-node :class:`ray.cluster_utils.Cluster` for serving) and shuts it down at
the end. Skipped when Ray (the ``[ray]`` extra) is not installed.
"""

from __future__ import annotations

import json
import random

import numpy as np
import pytest

ray = pytest.importorskip("ray", reason="Ray is not installed: pip install 'qa-search[ray]'")

from pipeline import QAPipeline  # noqa: E402
from pipeline.index import SearchIndex, build_index  # noqa: E402
from pipeline.scale_out import ray_build  # noqa: E402
from pipeline.scale_out.ray_build import build_index_on_ray, shard_name  # noqa: E402

pytestmark = [pytest.mark.ray, pytest.mark.timeout(300)]

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
