"""Held-out MRR@10 of several rerankers on the same questions and candidates (e.g. a trained one vs the stand-in).

For a seeded sample of the questions of ``--articles`` the hybrid (BM25 + dense, RRF k=60) top
``--candidates`` are retrieved once and ordered by each reranker alone (PyTorch fp32), then measured with
ranx: MRR@10 with its standard error, Recall@1 and Recall@5; the paired difference of each reranker's
reciprocal ranks against the first one has its own standard error. The hybrid order is the baseline.

    PYTHONPATH=$PWD python benchmarks/compare_rerankers.py --index indexes/squad-dev \\
        --questions ../shared/data/dev-v1.1.json --articles 24-47 --sample 300 \\
        --reranker ../shared/models/minilm-l6-qnli-squad-tune --reranker models/my-reranker \\
        --out benchmarks/results/compare_rerankers.json
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pipeline.eval.questions import parse_articles, seeded_sample  # noqa: E402
from pipeline.files import write_json  # noqa: E402
from pipeline.index import SearchIndex  # noqa: E402
from pipeline.models.encoder import BiEncoder  # noqa: E402
from pipeline.rerank.reranker import Reranker  # noqa: E402
from pipeline.train.data import load_training_questions  # noqa: E402
from pipeline.train.reranker import (  # noqa: E402
    figures_of,
    rankings,
    reciprocal_ranks,
    standard_error,
)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--index", required=True)
    parser.add_argument("--questions", required=True)
    parser.add_argument("--articles", default="24-47")
    parser.add_argument("--sample", type=int, default=300)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--candidates", type=int, default=20)
    parser.add_argument("--reranker", action="append", required=True, help="repeat; the first is the reference")
    parser.add_argument("--out")
    args = parser.parse_args(argv)

    index = SearchIndex.load(args.index)
    encoder = BiEncoder.load(index.manifest.bi_encoder["name"], device="cpu")
    wanted = set(parse_articles(args.articles) or [])
    questions = [q for q in load_training_questions(args.questions, index) if q.article in wanted and q.answerable]
    questions = seeded_sample(questions, args.sample or None, args.seed)
    models = {path: Reranker.load(path, device="cpu", cache_size=0, progress=False) for path in args.reranker}
    started = time.time()
    golds, ranked = rankings(index, encoder, questions, {p: m.score for p, m in models.items()},
                             candidates=args.candidates, progress=True)
    reference = reciprocal_ranks(golds, ranked[args.reranker[0]])
    rows, per_question = {}, {}
    for name in ["hybrid", *args.reranker]:
        figures = figures_of(golds, ranked[name])
        mine = reciprocal_ranks(golds, ranked[name])
        figures["mrr@10_minus_first"] = sum(mine[q] - reference[q] for q in golds) / len(golds)
        figures["mrr@10_minus_first_se"] = standard_error([mine[q] - reference[q] for q in golds])
        rows[name] = figures
        per_question[name] = reciprocal_ranks(golds, ranked[name])
    print(f"{len(golds)} questions of articles {args.articles} (sample {args.sample}, seed {args.seed}), "
          f"hybrid top {args.candidates}, {time.time() - started:.0f} s")
    print("| order | MRR@10 | ± SE | Recall@1 | Recall@5 | MRR@10 − first (± SE) |\n|---|---|---|---|---|---|")
    for name, f in rows.items():
        print(f"| {name} | {100 * f['mrr@10']:.2f} | {100 * f['mrr@10_se']:.2f} | {100 * f['recall@1']:.2f} | "
              f"{100 * f['recall@5']:.2f} | {100 * f['mrr@10_minus_first']:+.2f} ± {100 * f['mrr@10_minus_first_se']:.2f} |")
    if args.out:
        write_json(args.out, {"questions": len(golds), "args": vars(args), "figures": rows,
                              "reciprocal_ranks": per_question})
    return 0


if __name__ == "__main__":
    sys.exit(main())
