"""Quality of the latency levers on tune questions, replayed from one collection (how the defaults were chosen).

``collect``: for each question, the fused top ``--depth`` candidate windows (shipped
hybrid retrieval) with their retrieval ranks, and each window's reranker probability
in ONNX Runtime int8 *and* fp32 (long windows scored by their best chunk, as the
pipeline does). ``replay``: every combination of candidate depth, early stop (rerank
only 10 when BM25's and the bi-encoder's first paragraph agree) and fp32 re-score
depth is replayed on that file as the pipeline orders hits (int8 screen, fp32 for the
best ``keep``, the others capped below them; max-pooled paragraphs; the blend), giving
MRR@10, its paired standard error against the best combination that re-scores at least
the first hit in fp32, the mean pairs reranked
and an ELECTRA-base time estimate from per-pair costs (``--int8-ms``, ``--fp32-ms``,
``--fixed-ms``: measured by benchmarks/latency_budget.py). Fit on tune articles only.

    python benchmarks/latency_levers.py collect --index indexes/squad-dev --questions data/dev-v1.1.json \\
        --articles 0-23 --sample 1000 --seed 0 --reranker ../shared/models/minilm-l6-qnli-squad-tune \\
        --out results/levers-tune.jsonl
    python benchmarks/latency_levers.py replay results/levers-tune.jsonl --out benchmarks/results/latency_levers.json
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pipeline.config import SearchSettings  # noqa: E402
from pipeline.files import write_json  # noqa: E402
from pipeline.rerank.blend import blended_scores  # noqa: E402
from pipeline.retrieve.retriever import LIST_DEPTH  # noqa: E402

#: The shipped blend weights, replayed for every combination (read once, not per question).
RERANK_WEIGHT = SearchSettings().rerank_weight
SIMILARITY_WEIGHT = SearchSettings().similarity_weight


def collect(args: argparse.Namespace) -> None:
    from tqdm.auto import tqdm

    from pipeline import QAPipeline
    from pipeline.eval.evaluation import gold_paragraphs
    from pipeline.eval.questions import load_questions, sample_questions
    from pipeline.rerank.chunking import score_whole
    from pipeline.rerank.reranker import Reranker

    qa = QAPipeline.load(args.index, read=False, rerank=False)
    questions = sample_questions(load_questions(args.questions, args.articles), args.sample, args.seed)
    golds, _ = gold_paragraphs(qa.index, questions)
    questions = [q for q in questions if q.id in golds]
    int8 = Reranker.load(args.reranker, backend="onnx-int8", cache_size=0)
    fp32 = Reranker.load(args.reranker, backend="onnx", cache_size=0)
    out = Path(args.out)
    tmp = out.with_name(f".{out.name}.tmp")
    with tmp.open("w", encoding="utf-8") as fh:
        for start in tqdm(range(0, len(questions), 25), unit="batch"):
            batch = questions[start : start + 25]
            found = qa.retriever.retrieve_many([q.text for q in batch], args.depth, SearchSettings(), list_depth=LIST_DEPTH)
            pairs = [(f.question, qa.index.passages[c.position].text) for f in found for c in f.candidates]
            p8, p32 = score_whole(int8, pairs).tolist(), score_whole(fp32, pairs).tolist()
            i = 0
            for q, f in zip(batch, found):
                cands = []
                for c in f.candidates:
                    cands.append({"sid": qa.index.passages[c.position].source_id, "scores": c.scores,
                                  "ranks": c.ranks, "p8": p8[i], "p32": p32[i]})
                    i += 1
                fh.write(json.dumps({"id": q.id, "gold": golds[q.id], "cands": cands}) + "\n")
    tmp.replace(out)


def screened(p8: list[float], p32: list[float], keep: int) -> list[float]:
    """The int8 screen with fp32 for the best ``keep`` (others capped just below the lowest of those), as the cascade."""
    if keep == 0:
        return list(p8)
    kept = sorted(range(len(p8)), key=lambda i: (-p8[i], i))[:keep]
    floor = min(p32[i] for i in kept)
    return [p32[i] if i in kept else min(p8[i], float(np.nextafter(floor, -1))) for i in range(len(p8))]


def replay_one(record: dict, depth: int, keep: int, agreed: int, top_k: int = 10) -> tuple[float, int]:
    """(reciprocal rank of the gold paragraph in the top 10, candidates reranked) of one question."""
    cands = record["cands"]
    firsts = {stage: c["sid"] for c in cands for stage in ("bm25", "dense") if c["ranks"].get(stage) == 1}
    n = min(depth, len(cands))
    if agreed and len(firsts) == 2 and firsts["bm25"] == firsts["dense"]:
        n = min(n, max(agreed, top_k))
    cands = cands[:n]
    probs = screened([c["p8"] for c in cands], [c["p32"] for c in cands], keep)
    best: dict[str, list[float]] = {}
    for c, p in zip(cands, probs):
        entry = best.setdefault(c["sid"], [-1.0, -1e9, -1e9])
        entry[0], entry[1] = max(entry[0], p), max(entry[1], c["scores"]["fused"])
        entry[2] = max(entry[2], c["scores"].get("dense", -1e9))
    sources = list(best)
    # a collection made before searches gave every candidate its similarity lacks it where the dense list missed
    final = blended_scores([best[s][0] for s in sources], [best[s][1] for s in sources], RERANK_WEIGHT,
                           similarities=[best[s][2] if best[s][2] > -1e9 else None for s in sources],
                           similarity_weight=SIMILARITY_WEIGHT)
    order = [sources[i] for i in sorted(range(len(sources)), key=lambda i: (-final[i], i))]
    rank = order[:10].index(record["gold"]) + 1 if record["gold"] in order[:10] else 0
    return (1.0 / rank if rank else 0.0), n


def replay(args: argparse.Namespace) -> None:
    records = [json.loads(line) for line in Path(args.collection).read_text().splitlines() if line.strip()]
    grid = {}
    for depth in (10, 12, 15, 20):
        for agreed in (0, 10):
            for keep in (0, 1, 2, 3):
                if agreed and depth <= agreed:
                    continue
                rows = [replay_one(r, depth, keep, agreed) for r in records]
                rr = np.array([x[0] for x in rows])
                pairs = np.array([x[1] for x in rows])
                ms = args.fixed_ms + args.int8_ms * pairs + args.fp32_ms * keep
                grid[(depth, agreed, keep)] = (rr, pairs, ms)
    # The best is chosen among combinations that keep the first hit's score fp32's (issue 15); int8 alone is shown too.
    best = max((k for k in grid if k[2] >= 1), key=lambda k: grid[k][0].mean())
    print(f"{len(records)} questions; best: {best[0]} candidates, early stop {best[1] or 'off'}, re-score {best[2]}\n")
    print("| candidates | early stop | fp32 re-score | MRR@10 | vs best (paired SE) | pairs reranked | est. p50 / p90 ms |")
    print("|---:|---:|---:|---:|---:|---:|---:|")
    out = []
    for (depth, agreed, keep), (rr, pairs, ms) in sorted(grid.items(), key=lambda kv: np.percentile(kv[1][2], 50)):
        diff = rr - grid[best][0]
        row = {"candidates": depth, "agreed_candidates": agreed, "int8_rescore": keep, "mrr@10": float(rr.mean()),
               "diff": float(diff.mean()), "paired_se": float(diff.std() / np.sqrt(len(diff))),
               "pairs": float(pairs.mean()), "est_p50_ms": float(np.percentile(ms, 50)),
               "est_p90_ms": float(np.percentile(ms, 90))}
        out.append(row)
        print(f"| {depth} | {agreed or 'off'} | {keep} | {100 * row['mrr@10']:.2f} | {100 * row['diff']:+.2f} "
              f"({100 * row['paired_se']:.2f}) | {row['pairs']:.1f} | {row['est_p50_ms']:.0f} / {row['est_p90_ms']:.0f} |")
    if args.out:
        write_json(args.out, {"collection": Path(args.collection).name, "questions": len(records), "rows": out})


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    c = sub.add_parser("collect", help="candidates with int8 and fp32 probabilities, one JSON line per question")
    c.add_argument("--index", required=True)
    c.add_argument("--questions", required=True)
    c.add_argument("--articles", default="0-23")
    c.add_argument("--sample", type=int, default=1000)
    c.add_argument("--seed", type=int, default=0)
    c.add_argument("--depth", type=int, default=20)
    c.add_argument("--reranker", required=True)
    c.add_argument("--out", required=True)
    r = sub.add_parser("replay", help="MRR@10 and estimated time of every lever combination")
    r.add_argument("collection")
    r.add_argument("--int8-ms", type=float, default=73.0, help="ELECTRA-base int8 ms per pair")
    r.add_argument("--fp32-ms", type=float, default=173.0, help="ELECTRA-base fp32 ms per pair")
    r.add_argument("--fixed-ms", type=float, default=235.0, help="retrieval + reading ms per question")
    r.add_argument("--out")
    args = parser.parse_args(argv)
    if args.command == "collect":
        collect(args)
    else:
        replay(args)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
