"""How far the reader's span score should move the paragraphs it read: chosen on tune, reported held out.

Replays answers collections (benchmarks/answers_collect.py: each question's hits in
the shipped blended order, with the reader's spans of the first hits) through
:func:`pipeline.rank.reading.read_adjusted`, the function the pipeline uses: the
first ``--paragraphs`` hits (the answer policy's, 2 as shipped) get ``final +
weight * best span score`` and every hit is sorted again. For each weight of the
grid it prints MRR@10 and Recall@1 of the gold paragraph on the **tune** collection
with the paired difference against weight 0; the weight with the best tune MRR@10
(the smaller on a tie) is chosen, and only that weight and 0 are then measured on
the **held-out** collection. Answerable questions whose gold paragraph is known
count; a gold paragraph outside the top 10 counts 0.

    python benchmarks/read_weight.py --tune results/answers-v2-tune.jsonl \\
        --heldout results/answers-v1-heldout.jsonl --out benchmarks/results/read_weight.json
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pipeline.rank.reading import read_order  # noqa: E402
from pipeline.read.answers import AnswerPolicy  # noqa: E402


def load(path: str) -> list[dict]:
    """The answerable questions of a collection whose gold paragraph is known."""
    records = [json.loads(line) for line in Path(path).read_text(encoding="utf-8").splitlines() if line.strip()]
    return [r for r in records if r.get("answerable") and r.get("gold")]


def reciprocal_ranks(records: list[dict], weight: float, paragraphs: int) -> np.ndarray:
    """Per question: reciprocal rank of the gold paragraph in the top 10 after the reader's move (0 if absent)."""
    out = []
    for r in records:
        hits, readings = r["hits"], r["readings"]
        spans = [
            max((s["score"] for s in readings[i]["spans"]), default=None) if i < min(paragraphs, len(readings)) else None
            for i in range(len(hits))
        ]
        order = read_order([h["scores"]["final"] for h in hits], spans, weight)
        ids = [hits[i]["source_id"] for i in order][:10]
        out.append(1.0 / (ids.index(r["gold"]) + 1) if r["gold"] in ids else 0.0)
    return np.array(out)


def row(rr: np.ndarray, base: np.ndarray, weight: float) -> dict:
    diff = rr - base
    return {"weight": weight, "mrr@10": float(rr.mean()), "recall@1": float((rr == 1.0).mean()),
            "diff": float(diff.mean()), "paired_se": float(diff.std() / np.sqrt(len(diff)))}


def print_row(name: str, r: dict) -> None:
    print(f"| {name} | {r['weight']:.2f} | {100 * r['mrr@10']:.2f} | {100 * r['recall@1']:.2f} | "
          f"{100 * r['diff']:+.2f} ({100 * r['paired_se']:.2f}) |")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tune", required=True, help="answers collection of tune questions (chooses the weight)")
    parser.add_argument("--heldout", help="answers collection of held-out questions (reports the chosen weight)")
    parser.add_argument("--paragraphs", type=int, default=AnswerPolicy.load().paragraphs,
                        help="hits read per question (default: the shipped answer policy's)")
    parser.add_argument("--grid", type=float, nargs="+", default=[round(0.01 * i, 2) for i in range(21)])
    parser.add_argument("--out")
    args = parser.parse_args(argv)

    tune = load(args.tune)
    base = reciprocal_ranks(tune, 0.0, args.paragraphs)
    rows = [row(reciprocal_ranks(tune, w, args.paragraphs), base, w) for w in sorted(set(args.grid) | {0.0})]
    chosen = max(rows, key=lambda r: (round(r["mrr@10"], 12), -r["weight"]))
    print(f"Tune: {len(tune)} answerable questions, {args.paragraphs} paragraphs read; chosen weight {chosen['weight']:.2f}\n")
    print("| collection | weight | MRR@10 | Recall@1 | vs weight 0 (paired SE) |")
    print("|---|---:|---:|---:|---:|")
    for r in rows:
        print_row("tune" + (" (chosen)" if r is chosen else ""), r)
    out = {"tune": {"collection": Path(args.tune).name, "questions": len(tune), "rows": rows},
           "paragraphs": args.paragraphs, "chosen": chosen["weight"]}
    if args.heldout:
        held = load(args.heldout)
        base = reciprocal_ranks(held, 0.0, args.paragraphs)
        held_rows = [row(base, base, 0.0), row(reciprocal_ranks(held, chosen["weight"], args.paragraphs), base, chosen["weight"])]
        for r in held_rows:
            print_row(f"held-out ({len(held)} q)", r)
        out["heldout"] = {"collection": Path(args.heldout).name, "questions": len(held), "rows": held_rows}
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(out, indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
