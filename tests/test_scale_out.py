"""The Ray extra's parts that need no cluster: lazy imports, the error without Ray, scaling settings, shard bookkeeping."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
from conftest import REPO

from pipeline.apps.cli.main import main
from pipeline.errors import ConfigError
from pipeline.scale_out.cluster import RAY_EXTRA, require_ray
from pipeline.scale_out.ray_build import (
    ShardPlan,
    open_work_directory,
    shard_name,
    write_shard,
)
from pipeline.scale_out.scaling import RayScaling


def test_no_single_process_command_imports_ray():
    code = (
        "import sys\n"
        "import pipeline, pipeline.apps.cli.main, pipeline.apps.server, pipeline.scale_out.ray_build, pipeline.scale_out.remote\n"
        "from pipeline.apps.cli.main import build_parser\n"
        "build_parser().parse_args(['serve', '--ray'])\n"
        "assert 'ray' not in sys.modules, 'ray was imported'\n"
    )
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr


@pytest.fixture
def without_ray(monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` now raises ImportError


def test_require_ray_names_the_extra(without_ray):
    with pytest.raises(ConfigError, match=r"--ray needs Ray, which is not installed: pip install 'qa-search\[ray\]'"):
        require_ray()


@pytest.mark.parametrize("argv", [
    ["build", "--ray", "--corpus", "corpus.jsonl", "--index", "ix"],
    ["serve", "--ray", "--index", "ix"],
])
def test_cli_with_ray_flag_but_no_ray_says_what_to_install(without_ray, argv, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err == f"error: --ray needs Ray, which is not installed: {RAY_EXTRA}"


def test_build_ray_refuses_add(capsys):
    assert main(["build", "--ray", "--add", "more.jsonl", "--index", "ix"]) == 2
    assert "--ray builds a new index" in capsys.readouterr().err


def test_scaling_from_flags_and_env():
    env = {"QA_SEARCH_RAY_RERANKER_REPLICAS": "3", "QA_SEARCH_RAY_REPLICA_CPUS": "0.5", "QA_SEARCH_RAY_READER_REPLICAS": "2"}
    scaling = RayScaling.from_env(env, reader_replicas=4, retrieval_replicas=None)
    assert (scaling.reranker_replicas, scaling.replica_cpus, scaling.reader_replicas, scaling.retrieval_replicas) == (3, 0.5, 4, 1)
    assert scaling.replicas(3, 0) == {"num_replicas": 3}
    auto = RayScaling(reranker_max_replicas=8).replicas(2, 8)["autoscaling_config"]
    assert (auto["min_replicas"], auto["max_replicas"], auto["target_ongoing_requests"]) == (2, 8, 2.0)
    with pytest.raises(ConfigError, match="QA_SEARCH_RAY_RERANKER_REPLICAS must be a whole number"):
        RayScaling.from_env({"QA_SEARCH_RAY_RERANKER_REPLICAS": "two"})
    with pytest.raises(ConfigError, match="reranker_replicas must be a positive whole number"):
        RayScaling(reranker_replicas=0)
    with pytest.raises(ConfigError, match=r"reranker_max_replicas \(2\) must be 0 \(no autoscaling\) or at least reranker_replicas \(3\)"):
        RayScaling(reranker_replicas=3, reranker_max_replicas=2)


def test_shard_plan_counts_only_complete_shards(tmp_path):
    plan = ShardPlan(tmp_path, passages=10, shard_size=4)
    assert (plan.count, plan.rows(2), plan.missing()) == (3, (8, 10), [0, 1, 2])
    write_shard(tmp_path / shard_name(0), np.ones((4, 3)))
    write_shard(tmp_path / shard_name(1), np.ones((3, 3)))  # one row short: not done
    (tmp_path / shard_name(2)).write_bytes(b"not an array")
    assert plan.missing() == [1, 2]
    assert np.load(tmp_path / shard_name(0)).dtype == np.float32


def test_work_directory_keeps_shards_only_for_the_same_inputs(tmp_path):
    work = tmp_path / "work"
    key = {"corpus": "abc", "shard_size": 4}
    open_work_directory(work, key)
    write_shard(work / shard_name(0), np.ones((4, 3)))
    (work / "00001.npy.tmp").write_bytes(b"half written")
    open_work_directory(work, key)
    assert sorted(p.name for p in work.iterdir()) == ["00000.npy", "shards.json"]
    open_work_directory(work, {**key, "corpus": "changed"})
    assert sorted(p.name for p in work.iterdir()) == ["shards.json"]


def test_serve_on_ray_refuses_replicas_the_cluster_cannot_place():
    from types import SimpleNamespace

    from pipeline.apps.server.ray_serve import check_fits
    from pipeline.config import PipelineConfig

    two_cpus = SimpleNamespace(cluster_resources=lambda: {"CPU": 2.0})
    config = PipelineConfig.of()
    check_fits(two_cpus, config, RayScaling(replica_cpus=0.25, reranker_replicas=2), gpus=0)  # 0.25 + 4 x 0.25
    with pytest.raises(ConfigError, match=r"The replicas need 2\.5 CPUs and 0 GPUs, the Ray cluster has 2 CPUs and 0 GPUs"):
        check_fits(two_cpus, config, RayScaling(replica_cpus=0.5, reranker_replicas=2), gpus=0)
    with pytest.raises(ConfigError, match="2 GPUs, the Ray cluster has 2 CPUs and 0 GPUs"):
        check_fits(two_cpus, config, RayScaling(replica_cpus=0.1), gpus=1)
    check_fits(two_cpus, PipelineConfig.of(rerank=False, read=False), RayScaling(replica_cpus=0.5), gpus=1)


def test_the_ingress_asks_the_retrieval_deployment_only_for_terms_it_has_not_kept():
    from pipeline.scale_out.remote import RemoteTermStatistics

    frequencies = {"tesla": 3, "born": 40, "year": 55, "edison": 2}
    asked: list[list[str]] = []

    def call(method, terms):
        assert method == "document_frequencies"
        asked.append(terms)
        return {t: frequencies.get(t, 0) for t in terms}

    stats = RemoteTermStatistics(call, {"stemmer": "english", "passages": 100}, size=3)
    assert stats.document_frequencies(["tesla", "born", "tesla"]) == {"born": 40, "tesla": 3}
    assert stats.document_frequencies(["born", "year", "unseen"]) == {"born": 40, "unseen": 0, "year": 55}
    assert asked == [["born", "tesla"], ["unseen", "year"]]  # "born" was kept
    assert stats.document_frequencies(["tesla"]) == {"tesla": 3}  # the least recent of four kept in three: asked again
    assert asked[-1] == ["tesla"] and len(stats) == 100 and stats.stemmer == "english"
    assert stats.document_frequencies(["year", "unseen"]) == {"unseen": 0, "year": 55} and len(asked) == 3


def test_the_ingress_asks_the_retrieval_deployment_for_the_closest_sentence():
    import math

    from pipeline.scale_out.remote import EncoderName

    asked = []

    def call(method, query, texts):
        asked.append((method, query, texts))
        return [0.25 * (i + 1) for i in range(len(texts))]

    encoder = EncoderName("all-MiniLM-L6-v2", call)
    assert encoder.similarities("When?", ("One.", "Two.")) == [0.25, 0.5]
    assert asked == [("similarities", "When?", ["One.", "Two."])]  # a list travels, whatever the caller passed
    # an index without a bi-encoder: unmeasured, and the deployment is not asked
    assert all(math.isnan(s) for s in EncoderName(None, call).similarities("When?", ["One."])) and len(asked) == 1
