"""Does mixing the reranker's probability with the fused retrieval score beat reranking alone?

For a fixed sample of questions, the pipeline reranks the hybrid top ``--candidates`` once (public
API: ``search_many(rerank=True)``; each hit carries its fused score and reranker probability). The
candidates are then re-ordered offline for every weight ``w`` in
``score = w * probability + (1 - w) * fused score / the question's best fused score``
(:func:`pipeline.rerank.blend.blended_order`, the pipeline's blend; ``w = 1`` is the reranker
alone, ``w = 0`` the hybrid order), followed by the rest of the hybrid top 100, and measured with
the same metrics as ``qa-search eval``. The probability is the reranker's own
(``scores["rerank"]``), as the shipped search settings make it (early stop included).

    PYTHONPATH=$PWD python benchmarks/tune_rerank_fusion.py --index indexes/squad-dev \\
        --questions ../shared/data/dev-v1.1.json --reranker ../shared/models/minilm-l6-qnli-squad-tune \\
        --articles 0-23 --sample 1000 --candidates 15 --out benchmarks/results/tune_rerank_fusion.json
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pipeline.eval.evaluation import (  # noqa: E402
    DEPTH,
    extend_ranking,
    gold_paragraphs,
    paragraph_ranking,
    retrieval_metrics,
)
from pipeline.eval.questions import load_questions, sample_questions  # noqa: E402
from pipeline.files import write_json  # noqa: E402
from pipeline.qa import QAPipeline  # noqa: E402
from pipeline.rerank.blend import blended_order  # noqa: E402

SHOWN = ("recall@1", "recall@5", "mrr@10", "ndcg@10")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--index", default="indexes/squad-dev")
    parser.add_argument("--questions", required=True)
    parser.add_argument("--reranker")
    parser.add_argument("--articles", default="0-23")
    parser.add_argument("--sample", type=int, default=300)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--candidates", type=int, default=10)
    parser.add_argument("--weights", default="0,0.2,0.25,0.3,0.35,0.4,0.45,0.5,0.55,0.6,0.7,0.8,1")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--out")
    args = parser.parse_args(argv)

    qa = QAPipeline.load(args.index, reranker=args.reranker, read=False)
    questions = sample_questions(load_questions(args.questions, args.articles), args.sample, args.seed)
    golds, _ = gold_paragraphs(qa.index, questions)
    questions = [q for q in questions if q.id in golds]
    cands: dict[str, list[tuple[str, float, float]]] = {}  # question -> (paragraph, fused, probability)
    tails: dict[str, list[str]] = {}
    for start in range(0, len(questions), args.batch_size):
        batch = questions[start : start + args.batch_size]
        texts = [q.text for q in batch]
        hybrid = qa.search_many(texts, mode="hybrid", rerank=False, read=False, top_k=DEPTH)
        reranked = qa.search_many(
            texts, mode="hybrid", rerank=True, read=False, candidates=args.candidates, top_k=args.candidates
        )
        for q, h, r in zip(batch, hybrid, reranked):
            tails[q.id] = paragraph_ranking(h.hits)
            cands[q.id] = [(hit.source_id, hit.scores["fused"], hit.scores["rerank"]) for hit in r.hits]
        print(f"\r{start + len(batch)}/{len(questions)}", end="", file=sys.stderr)
    print(file=sys.stderr)

    rows = {}
    for w in [float(x) for x in args.weights.split(",")]:
        runs = {}
        for qid, items in cands.items():
            order = blended_order([p for _, _, p in items], [f for _, f, _ in items], w)
            runs[qid] = extend_ranking(list(dict.fromkeys(items[i][0] for i in order)), tails[qid])
        rows[w] = retrieval_metrics(golds, runs)
    print(f"\n{len(questions)} questions of articles {args.articles} (sample {args.sample}, seed {args.seed}); "
          f"hybrid top {args.candidates} ({qa.settings.fusion.value} fusion) reranked by {qa.reranker.name}\n")
    print("| reranker weight w | " + " | ".join(SHOWN) + " |")
    print("|---|" + "---:|" * len(SHOWN))
    for w, scores in rows.items():
        name = f"{w:g}" + (" (hybrid order)" if w == 0 else " (reranker alone)" if w == 1 else "")
        print(f"| {name} | " + " | ".join(f"{100 * scores[m]:.2f}" for m in SHOWN) + " |")
    if args.out:
        write_json(args.out, {
            "questions": len(questions), "articles": args.articles, "sample": args.sample, "seed": args.seed,
            "candidates": args.candidates, "fusion": qa.settings.fusion.value, "reranker": qa.reranker.name,
            "cpu_count": os.cpu_count(), "weights": {str(w): s for w, s in rows.items()},
        })
    return 0


if __name__ == "__main__":
    sys.exit(main())
