"""Tune hybrid fusion on the TUNE articles (0-23 by default): RRF k and weighted fusion's dense weight vs BM25 alone.

BM25 and dense top-``depth`` lists are retrieved once per question through the
public pipeline API (``mode="bm25"`` / ``"dense"``, no reranker), then re-fused
offline with :mod:`pipeline.retrieve.fusion` for every setting; the pipeline's own
hybrid run with its configured fusion is measured too, as the baseline, so the
offline fusion can be checked against it (same figures for the same setting).

    PYTHONPATH=$PWD python benchmarks/tune_fusion.py --questions ../shared/data/dev-v1.1.json \\
        --index indexes/squad-dev --articles 0-23 --out benchmarks/results/tune_fusion.json
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pipeline.eval.evaluation import (  # noqa: E402
    DEPTH,
    gold_paragraphs,
    paragraph_ranking,
    retrieval_metrics,
)
from pipeline.eval.questions import load_questions, sample_questions  # noqa: E402
from pipeline.files import write_json  # noqa: E402
from pipeline.qa import QAPipeline  # noqa: E402
from pipeline.retrieve.fusion import reciprocal_rank_fusion, weighted_fusion  # noqa: E402

SHOWN = ("recall@1", "recall@5", "recall@20", "mrr@10", "ndcg@10")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--index", default="indexes/squad-dev")
    parser.add_argument("--questions", required=True)
    parser.add_argument("--articles", default="0-23", help="TUNE articles only (default 0-23)")
    parser.add_argument("--sample", type=int, help="a fixed sample of N questions")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--rrf-k", default="1,10,30,60,100", help="RRF k values to try")
    parser.add_argument("--dense-weights", default="0.1,0.2,0.3,0.4,0.5,0.6", help="weighted-fusion dense weights to try")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--out", help="JSON file for the figures")
    args = parser.parse_args(argv)

    qa = QAPipeline.load(args.index, rerank=False, read=False)
    questions = sample_questions(load_questions(args.questions, args.articles), args.sample, args.seed)
    golds, missing = gold_paragraphs(qa.index, questions)
    questions = [q for q in questions if q.id in golds]
    source = {p.id: p.source_id for p in qa.index.passages}
    lists: dict[str, dict[str, list[tuple[str, float]]]] = {"bm25": {}, "dense": {}}
    pipeline_hybrid: dict[str, list[str]] = {}
    started = time.perf_counter()
    for start in range(0, len(questions), args.batch_size):
        batch = questions[start : start + args.batch_size]
        texts = [q.text for q in batch]
        for mode in ("bm25", "dense"):
            for q, result in zip(batch, qa.search_many(texts, mode=mode, rerank=False, top_k=DEPTH)):
                lists[mode][q.id] = [(h.id, h.scores[mode]) for h in result.hits]
        for q, result in zip(batch, qa.search_many(texts, mode="hybrid", rerank=False, top_k=DEPTH)):
            pipeline_hybrid[q.id] = paragraph_ranking(result.hits)
        print(f"\r{start + len(batch)}/{len(questions)} questions", end="", file=sys.stderr)
    print(file=sys.stderr)
    retrieval_s = time.perf_counter() - started

    def ranking(fused: list[tuple[str, float]]) -> list[str]:
        return list(dict.fromkeys(source[pid] for pid, _ in fused[:DEPTH]))

    rows: dict[str, dict[str, float]] = {}
    rows["bm25"] = retrieval_metrics(golds, {q: ranking(v) for q, v in lists["bm25"].items()})
    rows["dense"] = retrieval_metrics(golds, {q: ranking(v) for q, v in lists["dense"].items()})
    rows[f"pipeline hybrid ({qa.settings.fusion.value})"] = retrieval_metrics(golds, pipeline_hybrid)
    for k in [int(x) for x in args.rrf_k.split(",")]:
        runs = {
            q.id: ranking(reciprocal_rank_fusion({m: [d for d, _ in lists[m][q.id]] for m in lists}, k=k)) for q in questions
        }
        rows[f"rrf k={k}"] = retrieval_metrics(golds, runs)
    for w in [float(x) for x in args.dense_weights.split(",")]:
        runs = {
            q.id: ranking(weighted_fusion({m: lists[m][q.id] for m in lists}, {"bm25": 1 - w, "dense": w}))
            for q in questions
        }
        rows[f"weighted dense_weight={w}"] = retrieval_metrics(golds, runs)

    base = rows["bm25"]["mrr@10"]
    print(f"\n{len(questions)} questions of articles {args.articles} ({len(missing)} without gold in the index); "
          f"retrieval {retrieval_s:.0f} s on {os.cpu_count()} cores\n")
    print("| setting | " + " | ".join(SHOWN) + " | MRR@10 / BM25 |")
    print("|---|" + "---:|" * (len(SHOWN) + 1))
    for name, scores in rows.items():
        print(f"| {name} | " + " | ".join(f"{100 * scores[m]:.2f}" for m in SHOWN) + f" | {scores['mrr@10'] / base:.3f} |")
    if args.out:
        write_json(args.out, {
            "questions": len(questions), "articles": args.articles, "sample": args.sample, "seed": args.seed,
            "cpu_count": os.cpu_count(), "settings": rows,
        })
    return 0


if __name__ == "__main__":
    sys.exit(main())
