"""Collect what a ranking policy is fitted on: every reranked candidate paragraph of each question, with its gold label.

Runs the pipeline as a search does (its reranker, backend and cascade,
``--candidates`` deep, whole paragraphs) and writes one JSON line per question:
its id, its gold paragraph, and each hit's ``probability``, ``scores`` and
``ranks`` (bm25, dense, fused, rerank). ``benchmarks/policy_curve.py`` compares
feature sets and depths on them, and ``qa-search fit-policy --rows FILE`` fits the
policy on them, without reranking again.

    python benchmarks/policy_rows.py --index indexes/squad-dev --questions data/dev-v1.1.json \\
        --articles 0-23 --sample 1000 --seed 0 --candidates 30 \\
        --reranker ../shared/models/minilm-l6-qnli-squad-tune --out tune-rows.jsonl
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from pathlib import Path

from tqdm.auto import tqdm

from pipeline import QAPipeline
from pipeline.eval.evaluation import gold_paragraphs
from pipeline.eval.questions import load_questions, sample_questions


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--index", required=True)
    parser.add_argument("--questions", required=True, help="SQuAD v1.1/v2.0 JSON")
    parser.add_argument("--articles", required=True, help="article numbers, e.g. 0-23 (fit on tune articles only)")
    parser.add_argument("--sample", type=int, default=None)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--candidates", type=int, default=30)
    parser.add_argument("--reranker", default=None)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--out", required=True)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)

    settings = {"read": False}
    if args.reranker:
        settings["reranker"] = args.reranker
    qa = QAPipeline.load(args.index, **settings)
    questions = sample_questions(load_questions(args.questions, args.articles), args.sample, args.seed)
    golds, _ = gold_paragraphs(qa.index, questions)
    kept = [q for q in questions if q.id in golds]
    out = Path(args.out)
    tmp = out.with_name(f".{out.name}.tmp")
    started = time.perf_counter()
    with tmp.open("w", encoding="utf-8") as fh:
        for start in tqdm(range(0, len(kept), args.batch_size), unit="batch", desc="questions"):
            batch = kept[start : start + args.batch_size]
            results = qa.search_many([q.text for q in batch], candidates=args.candidates, top_k=args.candidates,
                                     read=False)
            for q, result in zip(batch, results):
                fh.write(json.dumps({
                    "id": q.id, "gold": golds[q.id],
                    "hits": [{"source_id": h.source_id, "probability": h.probability, "scores": h.scores,
                              "ranks": h.ranks} for h in result.hits],
                }) + "\n")
    tmp.replace(out)
    meta = {"index": args.index, "questions": args.questions, "articles": args.articles, "sample": args.sample,
            "seed": args.seed, "candidates": args.candidates, "fusion": qa.settings.fusion.value,
            "reranker": qa.reranker.name if qa.reranker else None,
            "backend": qa.reranker.describe() if qa.reranker else None, "rows": len(kept),
            "seconds": round(time.perf_counter() - started, 1)}
    out.with_suffix(".meta.json").write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")
    print(json.dumps(meta))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
