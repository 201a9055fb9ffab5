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

``--metrics`` takes a ``qa-search eval`` run's ``metrics.json`` instead: its
``reliability`` section (every shown hit of the reranked search as shipped, with
the reader when the run reads), so that the diagram is of the headline run itself:

    python benchmarks/calibration.py --metrics eval-out/heldout/metrics.json --plot docs/reliability.png
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pipeline.eval.reliability import calibration_error, reliability_bins  # noqa: E402
from pipeline.files import write_json  # noqa: E402


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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--collection", type=Path, help="JSON Lines from benchmarks/answers_collect.py")
    source.add_argument("--metrics", type=Path, help="metrics.json of a qa-search eval run (its reliability section)")
    parser.add_argument("--top", type=int, default=None, help="only the top N hits of each question (default: all shown)")
    parser.add_argument("--bins", type=int, default=10)
    parser.add_argument("--out", type=Path)
    parser.add_argument("--plot", type=Path)
    args = parser.parse_args(argv)

    if args.metrics:
        measured = json.loads(args.metrics.read_text(encoding="utf-8")).get("reliability")
        if not measured:
            parser.error(f"{args.metrics} has no reliability section (run qa-search eval with the rerank mode)")
        rows, ece, hits = measured["bins"], measured["ece_shown"], measured["hits"]
        questions = json.loads(args.metrics.read_text(encoding="utf-8"))["config"]["answerable_questions"]
        print(f"{questions} questions, {hits} hits (all shown), {len(rows)} bins: ECE {ece:.4f} "
              f"(first three {measured['ece_top3']:.4f}, first hit {measured['ece_first']:.4f})\n")
    else:
        probs, labels, questions = load_hits(args.collection, args.top)
        ece = calibration_error(probs, labels, args.bins)
        rows, hits = reliability_bins(probs, labels, args.bins), len(probs)
        print(f"{questions} questions, {hits} hits ({'all shown' if args.top is None else f'top {args.top}'}), "
              f"{args.bins} bins: ECE {ece:.4f}\n")
    print("| probability | hits | mean probability | share that is the gold paragraph |")
    print("|---|---:|---:|---:|")
    for row in rows:
        if row["hits"]:
            print(f"| {row['low']:.1f}-{row['high']:.1f} | {row['hits']} | {row['mean_probability']:.3f} | {row['gold_share']:.3f} |")
    if args.out:
        source = (args.metrics or args.collection).name
        write_json(args.out, {"source": source, "questions": questions, "hits": hits,
                              "top": args.top, "bins": rows, "ece": ece})
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
