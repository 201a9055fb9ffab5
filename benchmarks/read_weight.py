"""How many paragraphs the reader reads and how far their span scores move them: chosen on tune, reported held out.

Replays answers collections (benchmarks/answers_collect.py: each question's hits in
the shipped blended order, with the reader's spans of the first five hits) through
:func:`pipeline.rank.reading.read_order`, the function the pipeline uses: the
first N hits (``read_paragraphs``) get ``final + weight * best span score`` and
every hit is sorted again. For each N of the grid and each weight it prints
MRR@10 and Recall@1 of the gold paragraph on the **tune** collection, with the
paired difference against not moving (weight 0).

The choice: for each N its best weight (the smaller on a tie); then the *fewest*
paragraphs whose best is within one standard error (paired, per question) of
the best of all, since every paragraph read costs reading time (about 64 ms at
ELECTRA-base size with the int8 reader, benchmarks/latency_budget.py). Only the
chosen setting and weight 0 are then measured on the **held-out** collection.
Answerable questions whose gold paragraph is known count; a gold paragraph
outside the top 10 counts 0.

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

from answers_fit import paired_gap, read_span_scores  # noqa: E402

from pipeline.files import write_json  # noqa: E402
from pipeline.rank.reading import read_order  # noqa: E402


def load(path: str) -> list[dict]:
    """The answerable questions of a collection whose gold paragraph is known."""
    records = [json.loads(line) for line in Path(path).read_text(encoding="utf-8").splitlines() if line.strip()]
    return [r for r in records if r.get("answerable") and r.get("gold")]


def reciprocal_ranks(records: list[dict], weight: float, paragraphs: int) -> np.ndarray:
    """Per question: reciprocal rank of the gold paragraph in the top 10 after the reader's move (0 if absent)."""
    out = []
    for r in records:
        hits = r["hits"]
        spans, _ = read_span_scores(r, paragraphs)
        order = read_order([h["scores"]["final"] for h in hits], spans, weight)
        ids = [hits[i]["source_id"] for i in order][:10]
        out.append(1.0 / (ids.index(r["gold"]) + 1) if r["gold"] in ids else 0.0)
    return np.array(out)


def row(rr: np.ndarray, base: np.ndarray, weight: float, paragraphs: int) -> dict:
    gain, se = paired_gap(rr, base)
    return {"paragraphs": paragraphs, "weight": weight, "mrr@10": float(rr.mean()), "recall@1": float((rr == 1.0).mean()),
            "diff": gain, "paired_se": se}


def print_row(name: str, r: dict) -> None:
    print(f"| {name} | {r['paragraphs']} | {r['weight']:.2f} | {100 * r['mrr@10']:.2f} | {100 * r['recall@1']:.2f} | "
          f"{100 * r['diff']:+.2f} ({100 * r['paired_se']:.2f}) |")


def choose(rows: list[dict], per_question: dict[tuple[int, float], np.ndarray]) -> dict:
    """Each N's best weight; then the fewest N within one paired standard error of the best of all."""
    best_of = {}
    for r in rows:
        n = r["paragraphs"]
        if n not in best_of or (round(r["mrr@10"], 12), -r["weight"]) > (round(best_of[n]["mrr@10"], 12), -best_of[n]["weight"]):
            best_of[n] = r
    best = max(best_of.values(), key=lambda r: (round(r["mrr@10"], 12), -r["paragraphs"]))
    for n in sorted(best_of):
        r = best_of[n]
        r["behind_best"], r["standard_error"] = paired_gap(per_question[(best["paragraphs"], best["weight"])],
                                                           per_question[(n, r["weight"])])
        if r["behind_best"] <= r["standard_error"]:
            return r
    return best


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tune", required=True, help="answers collection of tune questions (chooses the setting)")
    parser.add_argument("--heldout", help="answers collection of held-out questions (reports the chosen setting)")
    parser.add_argument("--paragraphs", type=int, nargs="+", default=[1, 2, 3, 4, 5], help="read_paragraphs to try")
    parser.add_argument("--grid", type=float, nargs="+", default=[round(0.01 * i, 2) for i in range(21)])
    parser.add_argument("--out")
    args = parser.parse_args(argv)

    tune = load(args.tune)
    base = reciprocal_ranks(tune, 0.0, 1)
    rows, per_question = [], {}
    for n in args.paragraphs:
        for w in sorted(set(args.grid) | {0.0}):
            rr = reciprocal_ranks(tune, w, n)
            per_question[(n, w)] = rr
            rows.append(row(rr, base, w, n))
    chosen = choose(rows, per_question)
    print(f"Tune: {len(tune)} answerable questions; chosen: read {chosen['paragraphs']}, weight {chosen['weight']:.2f} "
          f"({100 * chosen['behind_best']:.2f} behind the best, standard error {100 * chosen['standard_error']:.2f})\n")
    print("| collection | paragraphs read | weight | MRR@10 | Recall@1 | vs not moving (paired SE) |")
    print("|---|---:|---:|---:|---:|---:|")
    for r in rows:
        print_row("tune" + (" (chosen)" if r is chosen else ""), r)
    out = {"tune": {"collection": Path(args.tune).name, "questions": len(tune), "rows": rows},
           "chosen": {"paragraphs": chosen["paragraphs"], "weight": chosen["weight"]}}
    if args.heldout:
        held = load(args.heldout)
        base = reciprocal_ranks(held, 0.0, 1)
        moved = reciprocal_ranks(held, chosen["weight"], chosen["paragraphs"])
        held_rows = [row(base, base, 0.0, 1), row(moved, base, chosen["weight"], chosen["paragraphs"])]
        for r in held_rows:
            print_row(f"held-out ({len(held)} q)", r)
        out["heldout"] = {"collection": Path(args.heldout).name, "questions": len(held), "rows": held_rows}
    if args.out:
        write_json(args.out, out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
