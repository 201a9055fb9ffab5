"""How much should the bi-encoder's similarity weigh in the blend? Tune and held out, side by side.

The answer policy's strongest signal is the bi-encoder's similarity of question
and paragraph (docs/answers.md); before session 13 the order used it only
through the fused score. This replays answers collections
(benchmarks/answers_collect.py) with each hit's ``final`` recomputed for another
``similarity_weight``: ``final + (weight - collected weight) * similarity``,
where the collected weight is the record's ``similarity_weight`` (0 for
collections made before the blend weighed it, whose hits the dense list missed
take the lowest similarity of the list, an upper bound of their own; newer
collections carry every hit's own), then the reader's move as shipped
(:func:`pipeline.rank.reading.read_order`, ``read_paragraphs`` and ``read_weight``
of :class:`~pipeline.config.SearchSettings`), and prints MRR@10 and Recall@1 of
the gold paragraph with the paired difference against weight 0. A collection
holds each question's first 10 hits of its own order: a weight far from the
collected one cannot bring up a paragraph outside them.

The choice rule is read_weight.py's: the best weight on **tune** (the smaller on a
tie within one paired standard error of 0 counts as no gain). Held-out rows are
printed for every weight so that the curve is visible; they are not a choice.

    python benchmarks/blend_dense.py --tune results/answers-v2-tune.jsonl \\
        --heldout results/answers-v1-heldout.jsonl --out benchmarks/results/blend_dense.json
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import read_weight  # noqa: E402

from pipeline.config import SearchSettings  # noqa: E402
from pipeline.files import write_json  # noqa: E402
from pipeline.read.evidence import dense_scores  # noqa: E402

SHIPPED = SearchSettings()
GRID = (0.0, 0.05, 0.1, 0.2, 0.3, 0.5, 1.0)


def cosines(hits: list[dict]) -> list[float]:
    """Each hit's dense score (:func:`pipeline.read.evidence.dense_scores`: the list's lowest for a hit it missed; 0 without any)."""
    return [0.0 if math.isnan(c) else c for c in dense_scores([h["scores"] for h in hits])]


def with_cosine(records: list[dict], weight: float) -> list[dict]:
    """Copies of ``records`` whose hits' ``final`` scores weigh the similarity by ``weight`` instead of as collected."""
    return [{**r, "hits": [{**h, "scores": {**h["scores"],
                                            "final": h["scores"]["final"] + (weight - r.get("similarity_weight", 0.0)) * c}}
                           for h, c in zip(r["hits"], cosines(r["hits"]))]} for r in records]


def reciprocal_ranks(records: list[dict], weight: float) -> np.ndarray:
    """Per question: reciprocal rank of the gold paragraph in the top 10 after the shipped move (0 if absent)."""
    return read_weight.reciprocal_ranks(with_cosine(records, weight), SHIPPED.read_weight, SHIPPED.read_paragraphs)


def table(records: list[dict], grid: tuple[float, ...]) -> list[dict]:
    base = reciprocal_ranks(records, 0.0)
    return [read_weight.row(reciprocal_ranks(records, weight), base, weight, SHIPPED.read_paragraphs) for weight in grid]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tune", required=True, help="answers_collect.py output on tune questions")
    parser.add_argument("--heldout", help="answers_collect.py output on held-out questions")
    parser.add_argument("--grid", type=float, nargs="+", default=list(GRID))
    parser.add_argument("--out", help="write the tables and the choice here (JSON)")
    args = parser.parse_args(argv)
    grid = tuple(sorted(set(args.grid) | {0.0}))
    report: dict = {"read_paragraphs": SHIPPED.read_paragraphs, "read_weight": SHIPPED.read_weight}
    for name in ("tune", "heldout"):
        path = getattr(args, name)
        if not path:
            continue
        records = read_weight.load(path)
        rows = report[name] = table(records, grid)
        print(f"\n{name}: {len(records)} answerable questions ({path})")
        print(f"{'weight':>7} {'MRR@10':>8} {'R@1':>7} {'diff':>7} {'SE':>6}")
        for r in rows:
            print(f"{r['weight']:>7.2f} {100 * r['mrr@10']:>8.2f} {100 * r['recall@1']:>7.2f} "
                  f"{100 * r['diff']:>+7.2f} {100 * r['paired_se']:>6.2f}")
    best = max(report["tune"], key=lambda r: (r["diff"] > r["paired_se"], r["diff"], -r["weight"]))
    report["chosen_weight"] = best["weight"] if best["diff"] > best["paired_se"] else 0.0
    print(f"\nchosen on tune: weight {report['chosen_weight']} (a gain must exceed its paired standard error)")
    if args.out:
        write_json(args.out, report)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
