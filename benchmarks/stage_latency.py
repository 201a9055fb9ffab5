"""Per-stage search latency (p50/p95 ms): BM25, dense, fusion, rerank, over a fixed sample of held-out questions.

Each question is searched alone (one query at a time, as the UI does) with the
full pipeline (hybrid + rerank); the same questions are also searched with
BM25 alone and with hybrid retrieval without the reranker, the baselines of
the ratios. Stage times come from ``SearchResult.timings``.

    PYTHONPATH=$PWD python benchmarks/stage_latency.py --index indexes/squad-dev \\
        --questions ../shared/data/dev-v1.1.json --reranker ../shared/models/minilm-l6-qnli-squad-tune \\
        --sample 40 --out benchmarks/results/stage_latency.json
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pipeline.eval.questions import load_questions, sample_questions  # noqa: E402
from pipeline.files import write_json  # noqa: E402
from pipeline.qa import QAPipeline  # noqa: E402

STAGES = ("bm25", "dense", "fusion", "rerank", "total")


def percentiles(values: list[float]) -> dict[str, float]:
    arr = np.asarray(values, dtype=float)
    return {"p50": float(np.percentile(arr, 50)), "p95": float(np.percentile(arr, 95)), "mean": float(arr.mean())}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--index", default="indexes/squad-dev")
    parser.add_argument("--questions", required=True, help="SQuAD file the questions come from")
    parser.add_argument("--articles", default="24-47", help="held-out articles (default 24-47)")
    parser.add_argument("--sample", type=int, default=40, help="questions timed (default 40)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--reranker", help="cross-encoder (default $QA_SEARCH_RERANKER or the product default)")
    parser.add_argument("--candidates", type=int, default=20, help="candidates reranked per query (default 20)")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--out", help="JSON file for the figures")
    args = parser.parse_args(argv)

    qa = QAPipeline.load(args.index, reranker=args.reranker, candidates=args.candidates, read=False)
    questions = [q.text for q in sample_questions(load_questions(args.questions, args.articles), args.sample, args.seed)]
    runs = {
        "bm25 only": dict(mode="bm25", rerank=False),
        "hybrid, no rerank": dict(mode="hybrid", rerank=False),
        "hybrid + rerank": dict(mode="hybrid", rerank=True),
    }
    timings: dict[str, dict[str, list[float]]] = {name: {s: [] for s in STAGES} for name in runs}
    for q in questions[: args.warmup]:
        for overrides in runs.values():
            qa.search(q, **overrides)
    for i, q in enumerate(questions, start=1):
        for name, overrides in runs.items():  # interleaved so load changes hit every setting alike
            result = qa.search(q, **overrides)
            for stage in STAGES:
                if stage in result.timings:
                    timings[name][stage].append(result.timings[stage])
        print(f"\r{i}/{len(questions)} questions", end="", file=sys.stderr)
    print(file=sys.stderr)

    full = timings["hybrid + rerank"]
    total_p50 = percentiles(full["total"])["p50"]
    figures = {
        name: {stage: percentiles(values) for stage, values in stages.items() if values} for name, stages in timings.items()
    }
    share = {stage: float(np.median(np.array(full[stage]) / np.array(full["total"]))) for stage in STAGES[:-1]}
    bm25_p50 = figures["bm25 only"]["total"]["p50"]
    ratios = {name: figures[name]["total"]["p50"] / bm25_p50 for name in runs}
    print(f"\n{len(questions)} questions of articles {args.articles}, one at a time; reranker {qa.reranker.name}, "
          f"{args.candidates} candidates; {os.cpu_count()} cores\n")
    print("| stage (hybrid + rerank) | p50 ms | p95 ms | median share of total |")
    print("|---|---:|---:|---:|")
    for stage in STAGES:
        f = figures["hybrid + rerank"][stage]
        print(f"| {stage} | {f['p50']:.2f} | {f['p95']:.2f} | {share.get(stage, 1.0):.1%} |")
    print("\n| setting | total p50 ms | total p95 ms | p50 vs bm25 only |")
    print("|---|---:|---:|---:|")
    for name in runs:
        f = figures[name]["total"]
        print(f"| {name} | {f['p50']:.1f} | {f['p95']:.1f} | {ratios[name]:.2f}x |")
    if args.out:
        write_json(args.out, {
            "questions": len(questions), "articles": args.articles, "seed": args.seed, "candidates": args.candidates,
            "reranker": qa.reranker.name, "bi_encoder": qa.encoder.name, "cpu_count": os.cpu_count(),
            "machine": platform.machine(), "python": platform.python_version(),
            "settings": figures, "share_of_total_p50": share, "total_p50_vs_bm25_only": ratios, "total_p50_ms": total_p50,
        })
    return 0


if __name__ == "__main__":
    sys.exit(main())
