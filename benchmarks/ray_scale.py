"""What Ray buys and costs on this machine: build with 1 vs 2 embedding actors, serve with 1 vs 2 reranker replicas.

Build: the first ``--build-paragraphs`` SQuAD dev paragraphs (a JSON Lines copy in a
temporary folder), embedded by a plain local build, then by ``build --ray`` with 1 and with
2 actors on a local cluster of ``--cpus`` CPUs. Reports passages/s of the embedding step, the
whole build, and the cluster's start time and memory.

Serve: the same load generator and requests as ``benchmarks/api_load.py`` (SQuAD questions;
rerank and search requests), against ``qa-search serve`` (one process, micro-batching on)
and ``qa-search serve --ray`` with 1 and 2 reranker replicas (each a fresh local cluster in
the server's process). Reports throughput and latency under load, the latency of requests
sent one at a time (Ray's per-request overhead), the time until ``/readyz`` and the memory of
the server's whole process tree (Ray's workers and daemons included). Needs the ``[ray]``
extra and psutil. Prints tables and writes JSON; loopback only.

    nice -n 10 python benchmarks/ray_scale.py --index indexes/squad-dev --out benchmarks/results/ray_scale.json
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent))
from api_load import REPO, SHARED, burst, free_port, make_requests  # noqa: E402

from pipeline.files import write_json  # noqa: E402


def tree_rss_mb(pid: int) -> float:
    """Resident memory of a process and all its descendants (Ray's raylet, GCS, workers, replicas)."""
    try:
        proc = psutil.Process(pid)
        procs = [proc, *proc.children(recursive=True)]
    except psutil.NoSuchProcess:
        return float("nan")
    total = 0
    for p in procs:
        try:
            total += p.memory_info().rss
        except psutil.NoSuchProcess:
            pass
    return round(total / 2**20, 1)


def ray_rss_mb() -> float:
    """Resident memory of this machine's Ray processes (raylet, GCS, dashboard agents, workers)."""
    total = 0
    for p in psutil.process_iter(["cmdline", "name"]):
        cmd = " ".join(p.info["cmdline"] or [])
        if "ray/" in cmd or (p.info["name"] or "").startswith("ray::"):
            try:
                total += p.memory_info().rss
            except psutil.NoSuchProcess:
                pass
    return round(total / 2**20, 1)


# --------------------------------------------------------------------------- build


def squad_subset(squad: Path, paragraphs: int, directory: Path) -> Path:
    out = directory / "squad-subset.jsonl"
    rows = []
    for article in json.loads(squad.read_text(encoding="utf-8"))["data"]:
        for i, p in enumerate(article["paragraphs"]):
            rows.append({"id": f"{article['title']}#{i}", "title": article["title"], "text": p["context"]})
    out.write_text("".join(json.dumps(r) + "\n" for r in rows[:paragraphs]), encoding="utf-8")
    return out


def bench_build(args, workdir: Path) -> dict:
    import ray

    from pipeline.index import build_index
    from pipeline.scale_out.ray_build import build_index_on_ray

    corpus = squad_subset(Path(args.squad), args.build_paragraphs, workdir)
    started = time.perf_counter()
    local = build_index(corpus, workdir / "local", bi_encoder=args.bi_encoder, batch_size=args.batch_size, progress=False)
    local_s = time.perf_counter() - started
    passages = local.passages_added
    before = ray_rss_mb()
    started = time.perf_counter()
    ray.init(num_cpus=args.cpus, include_dashboard=False, log_to_driver=False)
    start_s = time.perf_counter() - started
    idle_mb = round(ray_rss_mb() - before, 1)
    runs = {}
    try:
        for actors in (1, 2):
            report = build_index_on_ray(corpus, workdir / f"ray-{actors}", bi_encoder=args.bi_encoder, actors=actors,
                                        batch_size=args.batch_size, shard_size=args.shard_size, progress=False)
            runs[actors] = {
                "embed_s": round(report.embed_seconds, 2),
                "embed_passages_per_s": round(passages / report.embed_seconds, 1),
                "build_s": round(report.build.seconds, 2),
                "cluster_mb_after": round(ray_rss_mb() - before, 1),
            }
    finally:
        ray.shutdown()
    return {
        "passages": passages,
        "local_build_s": round(local_s, 2),
        "local_passages_per_s": round(passages / local_s, 1),
        "ray_start_s": round(start_s, 2),
        "ray_idle_mb": idle_mb,
        "actors": runs,
        "speedup_2_vs_1_actors": round(runs[1]["embed_s"] / runs[2]["embed_s"], 3),
    }


# --------------------------------------------------------------------------- serve


class ServerProcess:
    """``qa-search serve`` (optionally ``--ray``) in a subprocess on loopback; its process tree is stopped on exit."""

    def __init__(self, args, extra: list[str]):
        self.port = free_port()
        cmd = [sys.executable, "-m", "pipeline.apps.cli", "serve", "--index", args.index, "--reranker", args.reranker,
               "--reader", args.reader, "--host", "127.0.0.1", "--port", str(self.port), *extra]
        env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false",
               "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", "")}
        env.pop("QA_SEARCH_API_KEY", None)
        env.pop("RAY_ADDRESS", None)
        self.started = time.perf_counter()
        self.proc = subprocess.Popen(cmd, cwd=REPO, env=env)
        self.url = f"http://127.0.0.1:{self.port}"

    def wait_ready(self, timeout: float) -> float:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"the server exited with status {self.proc.returncode}")
            try:
                if httpx.get(f"{self.url}/readyz", timeout=5).status_code == 200:
                    return time.perf_counter() - self.started
            except httpx.TransportError:
                pass
            time.sleep(0.5)
        raise TimeoutError(f"the server was not ready within {timeout:.0f} s")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(2)  # Ctrl-C: the Ray variant deletes its app and stops its local cluster
            try:
                self.proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def run_server(args, label: str, extra: list[str], requests: list[tuple[str, dict]], sequential: list[tuple[str, dict]]) -> dict:
    server = ServerProcess(args, extra)
    try:
        ready_s = server.wait_ready(args.startup_timeout)
        asyncio.run(burst(server.url, requests[: args.warmup], args.concurrency, args.time_limit))
        alone = asyncio.run(burst(server.url, sequential, 1, args.time_limit))
        loaded = asyncio.run(burst(server.url, requests, args.concurrency, args.time_limit))
        memory = tree_rss_mb(server.proc.pid)
    finally:
        server.stop()
    return {"label": label, "ready_s": round(ready_s, 1), "memory_mb": memory, "one_at_a_time": alone, "under_load": loaded}


def bench_serve(args, report: dict) -> dict:
    requests = make_requests(Path(args.squad), args.requests, args.rerank_share, args.documents, args.top_k,
                             args.candidates, args.seed)
    sequential = make_requests(Path(args.squad), args.sequential, args.rerank_share, args.documents, args.top_k,
                               args.candidates, args.seed + 1)
    runs = report["serve_runs"] = [run_server(args, "single process", [], requests, sequential)]
    write_json(args.out, report)
    for replicas in (1, 2):
        runs.append(run_server(args, f"ray, {replicas} reranker replica(s)",
                               ["--ray", "--reranker-replicas", str(replicas), "--replica-cpus", str(args.replica_cpus)],
                               requests, sequential))
        write_json(args.out, report)
    del report["serve_runs"]
    single = runs[0]
    for run in runs[1:]:
        run["added_latency_p50_ms"] = {
            path: round(run["one_at_a_time"]["by_endpoint"][path]["p50_ms"] - single["one_at_a_time"]["by_endpoint"][path]["p50_ms"], 1)
            for path in single["one_at_a_time"]["by_endpoint"]
            if path in run["one_at_a_time"]["by_endpoint"]
        }
    return {
        "runs": runs,
        "speedup_2_vs_1_replicas": round(runs[2]["under_load"]["throughput_rps"] / runs[1]["under_load"]["throughput_rps"], 3),
        "ray_2_replicas_vs_single_process": round(runs[2]["under_load"]["throughput_rps"] / single["under_load"]["throughput_rps"], 3),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--index", default="indexes/squad-dev", help="index to serve")
    parser.add_argument("--squad", default=str(SHARED / "data" / "dev-v1.1.json"))
    parser.add_argument("--bi-encoder", default="sentence-transformers/all-MiniLM-L6-v2")
    parser.add_argument("--reranker", default=os.environ.get("QA_SEARCH_RERANKER") or str(SHARED / "models" / "minilm-l6-qnli-squad-tune"))
    parser.add_argument("--reader", default=os.environ.get("QA_SEARCH_READER") or str(SHARED / "models" / "minilm-l6-squad-tune-reader"))
    parser.add_argument("--build-paragraphs", type=int, default=400, help="SQuAD paragraphs embedded per build (default 400)")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--shard-size", type=int, default=128)
    parser.add_argument("--cpus", type=int, default=2, help="CPUs of the local Ray cluster for the build (default 2)")
    parser.add_argument("--replica-cpus", type=float, default=0.25,
                        help="CPUs each model replica reserves (default 0.25: 2 reranker replicas, retrieval, reader and the app fit 2 CPUs)")
    parser.add_argument("--requests", type=int, default=100, help="requests under load per server (default 100)")
    parser.add_argument("--sequential", type=int, default=20, help="requests sent one at a time per server (default 20)")
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--rerank-share", type=float, default=0.75)
    parser.add_argument("--documents", type=int, default=10)
    parser.add_argument("--top-k", type=int, default=5)
    parser.add_argument("--candidates", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=8)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--time-limit", type=float, default=900)
    parser.add_argument("--startup-timeout", type=float, default=600)
    parser.add_argument("--skip-build", action="store_true")
    parser.add_argument("--skip-serve", action="store_true")
    parser.add_argument("--out", default="benchmarks/results/ray_scale.json")
    args = parser.parse_args(argv)

    load_before = os.getloadavg()
    report: dict = {
        "benchmark": "ray_scale",
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "machine": {"platform": platform.platform(), "cpus": os.cpu_count(), "python": platform.python_version(),
                    "load_average_before": [round(x, 1) for x in load_before]},
        "settings": {k: v for k, v in vars(args).items() if k != "out"},
    }
    if not args.skip_build:
        with tempfile.TemporaryDirectory(prefix="ray-scale-") as tmp:
            build = report["build"] = bench_build(args, Path(tmp))
        print(f"\nBuild: {build['passages']} passages; local build {build['local_build_s']} s "
              f"({build['local_passages_per_s']}/s); Ray start {build['ray_start_s']} s, idle cluster {build['ray_idle_mb']} MB")
        print(f"{'actors':<8}{'embed s':>9}{'passages/s':>12}{'build s':>9}{'cluster MB':>12}")
        for actors, r in build["actors"].items():
            print(f"{actors:<8}{r['embed_s']:>9.1f}{r['embed_passages_per_s']:>12.1f}{r['build_s']:>9.1f}{r['cluster_mb_after']:>12.0f}")
        print(f"embedding speed-up, 2 vs 1 actors: {build['speedup_2_vs_1_actors']:.2f}x")
        write_json(args.out, report)
    if not args.skip_serve:
        serve = report["serve"] = bench_serve(args, report)
        print(f"\nServe: {args.requests} requests, {args.concurrency} concurrent ({args.rerank_share:.0%} rerank x "
              f"{args.documents} docs, rest search x {args.candidates} candidates); {args.sequential} one at a time")
        header = f"{'server':<30}{'ready s':>8}{'MB':>8}{'req/s':>8}{'p50 ms':>8}{'p95 ms':>8}{'alone p50':>10}{'errors':>7}"
        print(header)
        print("-" * len(header))
        for r in serve["runs"]:
            load, alone = r["under_load"], r["one_at_a_time"]
            print(f"{r['label']:<30}{r['ready_s']:>8.1f}{r['memory_mb']:>8.0f}{load['throughput_rps']:>8.2f}"
                  f"{load['p50_ms']:>8.0f}{load['p95_ms']:>8.0f}{alone['p50_ms']:>10.0f}{load['errors'] + alone['errors']:>7}")
        for r in serve["runs"][1:]:
            print(f"added latency one at a time ({r['label']}): {r['added_latency_p50_ms']}")
        print(f"throughput 2 vs 1 replicas: {serve['speedup_2_vs_1_replicas']:.2f}x; "
              f"Ray with 2 replicas vs single process: {serve['ray_2_replicas_vs_single_process']:.2f}x")
    report["machine"]["load_average_after"] = [round(x, 1) for x in os.getloadavg()]
    print(f"load average before {report['machine']['load_average_before']}, after {report['machine']['load_average_after']}")
    write_json(args.out, report)
    print(f"wrote {args.out}")
    errors = sum(r["under_load"]["errors"] + r["one_at_a_time"]["errors"] for r in report.get("serve", {}).get("runs", []))
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
