"""Reliability of ``Hit.probability``: does a paragraph shown with probability p answer the question p of the time?

Reads a collection made by ``benchmarks/answers_collect.py`` (shipped search settings; every
hit shown, with its probability, and the question's gold paragraph) and bins the hits by their
probability: per bin, how many hits, their mean probability and the share that is the gold
paragraph. Expected calibration error (ECE, equal-width bins, weighted by hits) comes from
torchmetrics' ``binary_calibration_error``. Hits of the top ``--top`` places only (default: all
shown). The label is "this is the paragraph the question was written on", so a paragraph that
also answers but is not the gold one counts as a miss: the figure is a lower bound on how often
high-probability hits answer. Prints a table, writes JSON and a reliability diagram (PNG).

    python benchmarks/calibration.py --collection results/answers-v1-heldout.jsonl \\
        --out benchmarks/results/calibration.json --plot docs/reliability.png
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np


def load_hits(path: Path, top: int | None) -> tuple[np.ndarray, np.ndarray, int]:
    """(probabilities, labels, questions) of the shown hits of every answerable question with a known gold paragraph."""
    probs, labels, questions = [], [], 0
    for line in path.read_text(encoding="utf-8").splitlines():
        if not line.strip():
            continue
        record = json.loads(line)
        if not record.get("answerable", True) or not record.get("gold"):
            continue
        questions += 1
        for hit in record["hits"][:top]:
            if hit.get("probability") is None:
                continue
            probs.append(float(hit["probability"]))
            labels.append(int(hit["source_id"] == record["gold"]))
    return np.asarray(probs), np.asarray(labels), questions


def reliability(probs: np.ndarray, labels: np.ndarray, bins: int) -> list[dict]:
    edges = np.linspace(0.0, 1.0, bins + 1)
    which = np.clip(np.digitize(probs, edges[1:-1], right=True), 0, bins - 1)
    rows = []
    for b in range(bins):
        inside = which == b
        rows.append({"low": float(edges[b]), "high": float(edges[b + 1]), "hits": int(inside.sum()),
                     "mean_probability": float(probs[inside].mean()) if inside.any() else None,
                     "gold_share": float(labels[inside].mean()) if inside.any() else None})
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--collection", type=Path, required=True, help="JSON Lines from benchmarks/answers_collect.py")
    parser.add_argument("--top", type=int, default=None, help="only the top N hits of each question (default: all shown)")
    parser.add_argument("--bins", type=int, default=10)
    parser.add_argument("--out", type=Path)
    parser.add_argument("--plot", type=Path)
    args = parser.parse_args(argv)

    import torch
    from torchmetrics.functional.classification import binary_calibration_error

    probs, labels, questions = load_hits(args.collection, args.top)
    ece = float(binary_calibration_error(torch.tensor(probs), torch.tensor(labels), n_bins=args.bins, norm="l1"))
    rows = reliability(probs, labels, args.bins)
    print(f"{questions} questions, {len(probs)} hits ({'all shown' if args.top is None else f'top {args.top}'}), "
          f"{args.bins} bins: ECE {ece:.4f}\n")
    print("| probability | hits | mean probability | share that is the gold paragraph |")
    print("|---|---:|---:|---:|")
    for row in rows:
        if row["hits"]:
            print(f"| {row['low']:.1f}-{row['high']:.1f} | {row['hits']} | {row['mean_probability']:.3f} | {row['gold_share']:.3f} |")
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps({"collection": args.collection.name, "questions": questions, "hits": len(probs),
                                        "top": args.top, "bins": rows, "ece": ece}, indent=2) + "\n", encoding="utf-8")
    if args.plot:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        used = [r for r in rows if r["hits"]]
        fig, ax = plt.subplots(figsize=(4.5, 4.5))
        ax.plot([0, 1], [0, 1], "--", color="grey", label="perfect calibration")
        ax.plot([r["mean_probability"] for r in used], [r["gold_share"] for r in used], "o-", label="hits")
        ax.set_xlabel("Hit.probability (bin mean)")
        ax.set_ylabel("share that is the gold paragraph")
        ax.set_title(f"Reliability, held-out hits (ECE {ece:.3f})")
        ax.legend(loc="upper left")
        fig.tight_layout()
        args.plot.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(args.plot, dpi=110)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
