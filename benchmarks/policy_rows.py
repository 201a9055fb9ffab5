"""Collect what a ranking policy is fitted on: every reranked candidate paragraph of each question, with its gold label.

Runs the pipeline as a search with a fitted policy does (its reranker, backend and
cascade, ``--candidates`` deep, each list fused 100 deep, whole paragraphs;
:func:`pipeline.rank.fit.collect`) and writes one JSON line per question:
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

from pipeline import QAPipeline
from pipeline.eval.questions import load_questions, sample_questions
from pipeline.files import write_json
from pipeline.rank.fit import collect


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
    started = time.perf_counter()
    triples = collect(qa, questions, args.candidates, batch_size=args.batch_size)
    out = Path(args.out)
    tmp = out.with_name(f".{out.name}.tmp")
    with tmp.open("w", encoding="utf-8") as fh:
        for qid, gold, hits in triples:
            fh.write(json.dumps({"id": qid, "gold": gold, "hits": [
                {key: h[key] for key in ("source_id", "scores", "ranks")} for h in hits]}) + "\n")
    tmp.replace(out)
    meta = {"index": args.index, "questions": args.questions, "articles": args.articles, "sample": args.sample,
            "seed": args.seed, "candidates": args.candidates, "fusion": qa.settings.fusion.value,
            "reranker": qa.reranker.name if qa.reranker else None,
            "backend": qa.reranker.describe() if qa.reranker else None, "rows": len(triples),
            "seconds": round(time.perf_counter() - started, 1)}
    write_json(out.with_suffix(".meta.json"), meta)
    print(json.dumps(meta))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
