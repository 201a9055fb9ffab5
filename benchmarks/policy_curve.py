"""Choose the ranking policy on tune questions: feature sets and candidate depths, cross-validated by question.

Reads the rows of ``benchmarks/policy_rows.py`` (tune articles only), and for each
feature set fits the logistic policy with 5 folds grouped by *article* (scikit-learn
``GroupKFold``: a question is always scored by a policy fitted on other articles),
then ranks each question's first ``depth`` candidates by the out-of-fold
probability. Baselines on the same questions: the hybrid (fused) order, the
reranker's probability alone, and the blend the pipeline used before
(0.5 x probability + 0.5 x min-max of the fused scores over the candidates).
Prints a table (MRR@10, Recall@1 with ranx; ECE) and writes JSON.

    python benchmarks/policy_curve.py --rows tune-rows.jsonl --out benchmarks/results/policy_curve.json
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

import numpy as np

from pipeline.config import SearchSettings
from pipeline.files import write_json
from pipeline.rank.fit import matrix, rows_of
from pipeline.rerank.blend import blended_scores

SETS = {
    "reranker alone": ("rerank_logit",),
    "reranker + fused": ("rerank_logit", "fused"),
    "reranker probability + fused": ("rerank_probability", "fused"),
    "reranker + fused + fused rank": ("rerank_logit", "fused", "fused_log_rank"),
    "reranker + list ranks": ("rerank_logit", "bm25_log_rank", "bm25_found", "dense_log_rank", "dense_found"),
    "all": ("rerank_logit", "fused", "fused_log_rank", "bm25_log_rank", "bm25_found", "dense_log_rank",
            "dense_found", "dense_cosine"),
}


def load(path: str) -> list[dict]:
    return [json.loads(line) for line in Path(path).read_text(encoding="utf-8").splitlines() if line.strip()]


def figures(questions: list[dict], scores: dict[str, list[float]], depth: int) -> dict[str, float]:
    """MRR@10 and Recall@1 (ranx) of each question's first ``depth`` hits ordered by ``scores``."""
    from ranx import Qrels, Run, evaluate

    qrels = Qrels({q["id"]: {q["gold"]: 1} for q in questions})
    run = {}
    for q in questions:
        hits = q["hits"][:depth]
        values = scores[q["id"]][:depth]
        # ties keep the retrieval order: a tiny decreasing bonus by fused rank
        run[q["id"]] = {h["source_id"]: float(v) - 1e-9 * i for i, (h, v) in enumerate(zip(hits, values))} or {"-": 0.0}
    m = evaluate(qrels, Run(run), ["mrr@10", "recall@1"])
    return {"mrr@10": round(100 * m["mrr@10"], 2), "recall@1": round(100 * m["recall@1"], 2)}


def main(argv: list[str] | None = None) -> int:
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import GroupKFold

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", required=True, help="JSON Lines of benchmarks/policy_rows.py (tune articles)")
    parser.add_argument("--depths", default="10,20,30")
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--C", type=float, default=1.0)
    parser.add_argument("--out", default=None)
    args = parser.parse_args(argv)

    questions = load(args.rows)
    for q in questions:  # the retrieval order (fused rank) is the order the hits are kept in
        q["hits"].sort(key=lambda h: h["ranks"].get("fused", 10**6))
    rows = rows_of((q["id"], q["gold"], q["hits"]) for q in questions)
    article = {q["id"]: q["gold"].split("#")[0] for q in questions}
    groups = np.array([article[r.question_id] for r in rows])
    owners = [(q["id"], len(q["hits"])) for q in questions]

    def per_question(values: np.ndarray) -> dict[str, list[float]]:
        out, offset = {}, 0
        for qid, n in owners:
            out[qid] = values[offset : offset + n].tolist()
            offset += n
        return out

    depths = [int(d) for d in args.depths.split(",")]
    table = []
    fused = per_question(np.array([r.features["fused"] for r in rows]))
    prob = per_question(np.array([1 / (1 + math.exp(-r.features["rerank_logit"])) for r in rows]))
    weight, similarity_weight = SearchSettings().rerank_weight, SearchSettings().similarity_weight
    # rows record the cosine of the paragraphs the dense list found; the others add nothing here
    cosine = per_question(np.array([r.features["dense_cosine"] if r.features["dense_found"] else np.nan for r in rows]))
    for depth in depths:
        blend = {q: blended_scores(prob[q][:depth], fused[q][:depth], weight,
                                   similarities=[None if math.isnan(c) else c for c in cosine[q][:depth]],
                                   similarity_weight=similarity_weight) for q in prob}
        table.append({"order": "hybrid (fused)", "depth": depth, **figures(questions, fused, depth)})
        table.append({"order": "blend (shipped rerank_weight)", "depth": depth, **figures(questions, blend, depth)})
    for name, names in SETS.items():
        x, y = matrix(rows, names)
        oof = np.zeros(len(rows))
        for train, test in GroupKFold(args.folds).split(x, y, groups):
            model = LogisticRegression(C=args.C, max_iter=5000).fit(x[train], y[train])
            oof[test] = model.predict_proba(x[test])[:, 1]
        scores = per_question(oof)
        for depth in depths:
            table.append({"order": f"policy: {name}", "depth": depth, **figures(questions, scores, depth)})
    print(f"{len(questions)} tune questions, out-of-fold ({args.folds} folds grouped by article)")
    print("| order | depth | MRR@10 | R@1 |\n|---|---:|---:|---:|")
    for row in table:
        print(f"| {row['order']} | {row['depth']} | {row['mrr@10']:.2f} | {row['recall@1']:.2f} |")
    if args.out:
        write_json(args.out, {"rows": args.rows, "questions": len(questions), "table": table})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
