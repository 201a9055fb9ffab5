"""Load test of the HTTP API: throughput and latency with micro-batching on and off, in one run.

Starts ``qa-search serve`` on loopback (127.0.0.1, a free port) in a subprocess, once
with micro-batching and once without, sends the same bounded burst of concurrent
``/v1/rerank`` and ``/v1/search`` requests to each (httpx, async), and reports
throughput, p50/p95 latency and errors; prints a table and writes JSON. Exits 1 if
any request failed. Only loopback traffic; the burst is bounded in count and time.

Rerank requests pair a SQuAD dev question with its own paragraph and
``--documents - 1`` other paragraphs of the same article; search requests ask
SQuAD dev questions against the index and run the whole pipeline (retrieve,
rerank, and read unless ``--no-read``).

    nice -n 10 python benchmarks/api_load.py --index indexes/squad-dev \\
        --reranker ../shared/models/minilm-l6-qnli-squad-tune --requests 200 --concurrency 16

``--overload`` runs the overload test instead (issue 17): one server, first an unloaded
baseline (one client, small requests one after another), then ``--clients`` (64)
concurrent clients for ``--duration`` seconds: one sends maximum-size reranks
(``--max-documents``) back to back, one is a slowloris (a body trickling in a byte a
second), a few greedy ones share one API key and send large reranks in parallel (they
should get 429), and the rest send small reranks (and some searches) with a pause
between. It reports the small requests' p95 loaded vs unloaded (the goal: at most 3x),
every status by kind of client, whether every 429/503 had ``Retry-After``, 500s and
hangs (requests unanswered within ``--hang-s``), and the machine's load average.
Exits 1 on any 500 or hang.

    nice -n 10 python benchmarks/api_load.py --overload --index indexes/squad-dev --no-read
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import random
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("QA_SEARCH_SHARED", REPO.parent / "shared"))
sys.path.insert(0, str(REPO))

from pipeline.files import write_json  # noqa: E402


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def make_requests(squad: Path, n: int, rerank_share: float, documents: int, top_k: int, candidates: int,
                  seed: int) -> list[tuple[str, dict]]:
    data = json.loads(squad.read_text(encoding="utf-8"))["data"]
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        article = rng.choice(data)
        paragraphs = article["paragraphs"]
        gold = rng.randrange(len(paragraphs))
        question = rng.choice(paragraphs[gold]["qas"])["question"]
        if rng.random() < rerank_share:
            others = [i for i in range(len(paragraphs)) if i != gold]
            picked = [gold] + rng.sample(others, min(documents - 1, len(others)))
            rng.shuffle(picked)
            out.append(("/v1/rerank", {"query": question, "documents": [paragraphs[i]["context"] for i in picked],
                                       "top_n": 3}))
        else:
            out.append(("/v1/search", {"query": question, "top_k": top_k, "candidates": candidates}))
    return out


class Server:
    """``qa-search serve`` in a subprocess on loopback; stopped on exit."""

    def __init__(self, args: argparse.Namespace, batching: bool):
        self.port = free_port()
        cmd = [sys.executable, "-m", "pipeline.apps.cli", "serve", "--index", args.index, "--reranker", args.reranker,
               "--host", "127.0.0.1", "--port", str(self.port), "--batch-wait-ms", str(args.batch_wait_ms)]
        cmd += ["--no-read"] if args.no_read else ["--reader", args.reader]
        if args.device:
            cmd += ["--device", args.device]
        if not batching:
            cmd.append("--no-batching")
        if getattr(args, "batch_max_pairs", None):
            cmd += ["--batch-max-pairs", str(args.batch_max_pairs)]
        env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false",
               "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", "")}
        env.pop("QA_SEARCH_API_KEY", None)
        self.proc = subprocess.Popen(cmd, cwd=REPO, env=env)
        self.url = f"http://127.0.0.1:{self.port}"

    def wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"the server exited with status {self.proc.returncode}")
            try:
                if httpx.get(f"{self.url}/readyz", timeout=2).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.5)
        raise TimeoutError(f"the server was not ready within {timeout:.0f} s")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def __enter__(self) -> "Server":
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


async def burst(url: str, requests: list[tuple[str, dict]], concurrency: int, time_limit: float) -> dict:
    semaphore = asyncio.Semaphore(concurrency)
    latencies: dict[str, list[float]] = {"/v1/rerank": [], "/v1/search": []}
    errors: list[str] = []

    async def one(client: httpx.AsyncClient, path: str, body: dict) -> None:
        async with semaphore:
            start = time.perf_counter()
            try:
                response = await client.post(path, json=body)
                if response.status_code != 200:
                    errors.append(f"{path} {response.status_code} {response.text[:200]}")
                    return
            except httpx.HTTPError as exc:
                errors.append(f"{path} {type(exc).__name__}: {exc}")
                return
            latencies[path].append((time.perf_counter() - start) * 1000.0)

    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(base_url=url, timeout=300, limits=limits) as client:
        started = time.perf_counter()
        await asyncio.wait_for(asyncio.gather(*(one(client, p, b) for p, b in requests)), time_limit)
        wall = time.perf_counter() - started
    everything = latencies["/v1/rerank"] + latencies["/v1/search"]
    return {
        "requests": len(requests),
        "ok": len(everything),
        "errors": len(errors),
        "error_samples": errors[:5],
        "wall_s": round(wall, 3),
        "throughput_rps": round(len(everything) / wall, 3),
        "p50_ms": round(percentile(everything, 50), 1),
        "p95_ms": round(percentile(everything, 95), 1),
        "by_endpoint": {
            path: {"n": len(v), "p50_ms": round(percentile(v, 50), 1), "p95_ms": round(percentile(v, 95), 1)}
            for path, v in latencies.items() if v
        },
    }


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    if len(values) == 1:
        return values[0]
    return statistics.quantiles(values, n=100, method="inclusive")[int(q) - 1]


def run_mode(args, batching: bool, requests: list[tuple[str, dict]]) -> dict:
    with Server(args, batching) as server:
        server.wait_ready(args.startup_timeout)
        warm = requests[: args.warmup]
        asyncio.run(burst(server.url, warm, args.concurrency, args.time_limit))
        result = asyncio.run(burst(server.url, requests, args.concurrency, args.time_limit))
        with httpx.Client(base_url=server.url, timeout=10) as c:
            result["models"] = [m["id"] for m in c.get("/v1/models").json()["data"]]
    result["batching"] = batching
    return result


# --------------------------------------------------------------------------- overload (issue 17)


class Tally:
    """Latencies and statuses of one kind of client."""

    def __init__(self) -> None:
        self.latencies: list[float] = []
        self.statuses: dict[str, int] = {}
        self.missing_retry_after = 0

    def add(self, status: str, ms: float | None = None, retry_after: str | None = None) -> None:
        self.statuses[status] = self.statuses.get(status, 0) + 1
        if status == "200" and ms is not None:
            self.latencies.append(ms)
        if status in ("429", "503") and not retry_after:
            self.missing_retry_after += 1

    def summary(self) -> dict:
        return {"statuses": dict(sorted(self.statuses.items())), "n_ok": len(self.latencies),
                "p50_ms": round(percentile(self.latencies, 50), 1), "p95_ms": round(percentile(self.latencies, 95), 1),
                "missing_retry_after": self.missing_retry_after}


async def timed_post(client: httpx.AsyncClient, tally: Tally, path: str, body: dict, token: str, hang_s: float) -> None:
    start = time.perf_counter()
    try:
        response = await asyncio.wait_for(
            client.post(path, json=body, headers={"Authorization": f"Bearer {token}"}), hang_s)
    except asyncio.TimeoutError:
        tally.add("hang")
        return
    except httpx.HTTPError as exc:
        tally.add(type(exc).__name__)
        return
    tally.add(str(response.status_code), (time.perf_counter() - start) * 1000.0, response.headers.get("retry-after"))


async def slowloris(port: int, tally: Tally, stop: float, hang_s: float) -> None:
    """A client that announces a large body and sends one byte a second; the server should answer 408."""
    while time.monotonic() < stop:
        started = time.perf_counter()
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"POST /v1/rerank HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer slowloris\r\n"
                     b"Content-Type: application/json\r\nContent-Length: 100000\r\n\r\n{")
        await writer.drain()

        async def trickle() -> None:
            while True:
                await asyncio.sleep(1.0)
                writer.write(b" ")
                await writer.drain()

        dripping = asyncio.ensure_future(trickle())
        try:
            line = await asyncio.wait_for(reader.readline(), hang_s)
            status = line.split()[1].decode() if len(line.split()) > 1 else "closed"
            tally.add(status, (time.perf_counter() - started) * 1000.0)
        except asyncio.TimeoutError:
            tally.add("hang")
        except (ConnectionError, OSError):
            tally.add("closed")
        finally:
            dripping.cancel()
            writer.close()


def overload_requests(squad: Path, seed: int, max_documents: int) -> dict:
    data = json.loads(squad.read_text(encoding="utf-8"))["data"]
    rng = random.Random(seed)
    paragraphs = [p["context"] for a in data for p in a["paragraphs"]]
    questions = [q["question"] for a in data for p in a["paragraphs"] for q in p["qas"]]

    def rerank(n: int) -> dict:
        return {"query": rng.choice(questions), "documents": rng.sample(paragraphs, n), "top_n": 3}

    return {"small": [rerank(4) for _ in range(400)], "big": rerank(max_documents), "greedy": rerank(500),
            "search": [{"query": rng.choice(questions), "top_k": 5, "candidates": 20} for _ in range(100)]}


async def overload_burst(url: str, port: int, args, reqs: dict) -> dict:
    tallies = {kind: Tally() for kind in ("small", "search", "big", "greedy", "slowloris")}
    stop = time.monotonic() + args.duration
    limits = httpx.Limits(max_connections=args.clients + 8, max_keepalive_connections=args.clients + 8)
    rng = random.Random(args.seed + 1)

    async with httpx.AsyncClient(base_url=url, timeout=None, limits=limits) as client:
        async def small(i: int) -> None:
            kind = "search" if i % 8 == 0 else "small"
            await asyncio.sleep(rng.random() * args.think_s)
            n = 0
            while time.monotonic() < stop:
                body = reqs["search"][n % 100] if kind == "search" else reqs["small"][(i * 7 + n) % 400]
                await timed_post(client, tallies[kind], "/v1/search" if kind == "search" else "/v1/rerank", body,
                                 f"small-{i}", args.hang_s)
                n += 1
                await asyncio.sleep(args.think_s)

        async def loop(kind: str, token: str) -> None:
            while time.monotonic() < stop:
                await timed_post(client, tallies[kind], "/v1/rerank", reqs[kind], token, args.hang_s)
                await asyncio.sleep(0.05)

        greedy = max(1, min(6, args.clients // 10))
        tasks = [loop("big", "big")] + [loop("greedy", "greedy") for _ in range(greedy)]
        tasks.append(slowloris(port, tallies["slowloris"], stop, args.hang_s))
        tasks += [small(i) for i in range(args.clients - len(tasks))]
        await asyncio.gather(*tasks)
    return {kind: t.summary() for kind, t in tallies.items()}


async def unloaded(url: str, args, reqs: dict) -> dict:
    tallies = {"small": Tally(), "search": Tally()}
    async with httpx.AsyncClient(base_url=url, timeout=None) as client:
        for body in reqs["small"][:5] + reqs["search"][:2]:  # warm-up, not counted
            await client.post("/v1/search" if "candidates" in body else "/v1/rerank", json=body)
        for body in reqs["small"][:args.baseline]:
            await timed_post(client, tallies["small"], "/v1/rerank", body, "alone", args.hang_s)
        for body in reqs["search"][:max(args.baseline // 3, 5)]:
            await timed_post(client, tallies["search"], "/v1/search", body, "alone", args.hang_s)
    return {kind: t.summary() for kind, t in tallies.items()}


def overload_main(args) -> int:
    reqs = overload_requests(Path(args.squad), args.seed, args.max_documents)
    load_before = os.getloadavg()
    with Server(args, batching=True) as server:
        server.wait_ready(args.startup_timeout)
        base = asyncio.run(unloaded(server.url, args, reqs))
        loaded = asyncio.run(overload_burst(server.url, server.port, args, reqs))
    load_after = os.getloadavg()
    ratios = {kind: round(loaded[kind]["p95_ms"] / base[kind]["p95_ms"], 2) if base[kind]["p95_ms"] else None
              for kind in ("small", "search")}
    bad = sum(t["statuses"].get(s, 0) for t in loaded.values() for s in ("500", "hang"))
    missing = sum(t["missing_retry_after"] for t in loaded.values())
    print(f"\noverload: {args.clients} clients for {args.duration:.0f} s (1 x {args.max_documents}-document reranks, "
          f"1 slowloris, greedy clients on one key, the rest small reranks/searches every {args.think_s:g} s); "
          f"batch_max_pairs {args.batch_max_pairs}; load average {load_before[0]:.1f} before, {load_after[0]:.1f} after "
          f"on {os.cpu_count()} CPUs")
    print(f"{'client':<10}{'ok':>6}{'p50 ms':>9}{'p95 ms':>9}{'unloaded p95':>14}{'ratio':>7}  statuses")
    for kind, t in loaded.items():
        unl = base.get(kind, {}).get("p95_ms")
        ratio = ratios.get(kind)
        print(f"{kind:<10}{t['n_ok']:>6}{t['p50_ms']:>9.0f}{t['p95_ms']:>9.0f}"
              f"{'' if unl is None else f'{unl:.0f}':>14}{'' if ratio is None else f'{ratio:.2f}x':>7}  {t['statuses']}")
    print(f"429/503 without Retry-After: {missing}; 500s and hangs: {bad}")
    report = {
        "benchmark": "api_load --overload",
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "machine": {"platform": platform.platform(), "cpus": os.cpu_count(), "python": platform.python_version(),
                    "loadavg_before": load_before, "loadavg_after": load_after},
        "settings": {k: v for k, v in vars(args).items() if k not in ("out",)},
        "unloaded": base, "loaded": loaded, "p95_ratio_loaded_unloaded": ratios,
        "missing_retry_after": missing, "errors_500_or_hang": bad,
    }
    out = write_json(args.out, report)
    print(f"wrote {out}")
    return 1 if bad or missing else 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--index", default="indexes/squad-dev")
    parser.add_argument("--reranker", default=os.environ.get("QA_SEARCH_RERANKER")
                        or str(SHARED / "models" / "minilm-l6-qnli-squad-tune"))
    parser.add_argument("--reader", default=os.environ.get("QA_SEARCH_READER")
                        or str(SHARED / "models" / "minilm-l6-squad-tune-reader"), help="reader for search requests")
    parser.add_argument("--no-read", action="store_true", help="search without the reader (no answer spans)")
    parser.add_argument("--squad", default=str(SHARED / "data" / "dev-v1.1.json"), help="SQuAD JSON for the questions")
    parser.add_argument("--requests", type=int, default=200, help="requests per mode (default 200)")
    parser.add_argument("--concurrency", type=int, default=16, help="requests in flight at once (default 16)")
    parser.add_argument("--rerank-share", type=float, default=0.75, help="share of rerank requests (rest: search)")
    parser.add_argument("--documents", type=int, default=10, help="documents per rerank request (default 10)")
    parser.add_argument("--top-k", type=int, default=5)
    parser.add_argument("--candidates", type=int, default=20, help="candidates per search request (default 20)")
    parser.add_argument("--batch-wait-ms", type=float, default=5.0)
    parser.add_argument("--warmup", type=int, default=8, help="uncounted requests first (default 8)")
    parser.add_argument("--device", help="cpu, cuda, ... (default: the server's choice)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--time-limit", type=float, default=600, help="seconds allowed per burst (default 600)")
    parser.add_argument("--startup-timeout", type=float, default=300)
    parser.add_argument("--out", default="benchmarks/results/api_load.json")
    parser.add_argument("--overload", action="store_true", help="run the overload test (see above) instead")
    parser.add_argument("--clients", type=int, default=64, help="overload: concurrent clients (default 64)")
    parser.add_argument("--duration", type=float, default=45, help="overload: seconds of load (default 45)")
    parser.add_argument("--think-s", type=float, default=2.0, help="overload: pause of each small client (default 2)")
    parser.add_argument("--max-documents", type=int, default=1000, help="overload: the big client's documents")
    parser.add_argument("--baseline", type=int, default=30, help="overload: unloaded small requests (default 30)")
    parser.add_argument("--hang-s", type=float, default=60, help="overload: a request unanswered this long hangs")
    parser.add_argument("--batch-max-pairs", type=int, default=None, help="the server's batch_max_pairs")
    args = parser.parse_args(argv)
    if args.overload:
        if args.out == "benchmarks/results/api_load.json":
            args.out = "benchmarks/results/api_overload.json"
        return overload_main(args)
    if not 1 <= args.requests <= 10_000 or not 1 <= args.concurrency <= 256:
        parser.error("--requests must be 1..10000 and --concurrency 1..256")

    requests = make_requests(Path(args.squad), args.requests, args.rerank_share, args.documents, args.top_k,
                             args.candidates, args.seed)
    results = [run_mode(args, batching, requests) for batching in (False, True)]
    off, on = results
    ratio = on["throughput_rps"] / off["throughput_rps"] if off["throughput_rps"] else float("nan")

    print(f"\n{args.requests} requests ({sum(p == '/v1/rerank' for p, _ in requests)} rerank x {args.documents} docs, "
          f"{sum(p == '/v1/search' for p, _ in requests)} search x {args.candidates} candidates), "
          f"{args.concurrency} concurrent, reranker {Path(args.reranker).name}, "
          f"reader {'off' if args.no_read else Path(args.reader).name}")
    header = f"{'batching':<9}{'req/s':>8}{'p50 ms':>9}{'p95 ms':>9}{'rerank p50':>12}{'search p50':>12}{'errors':>8}"
    print(header)
    print("-" * len(header))
    for r in results:
        ep = r["by_endpoint"]
        print(f"{'on' if r['batching'] else 'off':<9}{r['throughput_rps']:>8.2f}{r['p50_ms']:>9.0f}{r['p95_ms']:>9.0f}"
              f"{ep.get('/v1/rerank', {}).get('p50_ms', float('nan')):>12.0f}"
              f"{ep.get('/v1/search', {}).get('p50_ms', float('nan')):>12.0f}{r['errors']:>8}")
    print(f"throughput ratio on/off: {ratio:.2f}x")

    report = {
        "benchmark": "api_load",
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "machine": {"platform": platform.platform(), "cpus": os.cpu_count(), "python": platform.python_version()},
        "settings": {k: v for k, v in vars(args).items() if k not in ("out",)},
        "results": {"batching_off": off, "batching_on": on},
        "throughput_ratio_on_off": round(ratio, 3),
    }
    out = write_json(args.out, report)
    print(f"wrote {out}")
    failed = off["errors"] + on["errors"]
    if failed:
        print(f"{failed} request(s) failed", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
