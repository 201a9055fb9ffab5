"""Would the bi-encoder's cosine, added to the blended score, order the hits better? Tune and held out, side by side.

The answer policy's strongest signal is the bi-encoder's similarity of question
and paragraph (docs/answers.md); the order uses it only through the fused score.
This replays answers collections (benchmarks/answers_collect.py) with each hit's
``final + weight * cosine`` (a hit the dense list did not retrieve takes the
lowest cosine of the list, an upper bound of its own), then the reader's move as
shipped (:func:`pipeline.rank.reading.read_order`, ``read_paragraphs`` and
``read_weight`` of :class:`~pipeline.config.SearchSettings`), and prints MRR@10
and Recall@1 of the gold paragraph with the paired difference against weight 0.

The choice rule is read_weight.py's: the best weight on **tune** (the smaller on a
tie within one paired standard error of 0 counts as no gain). Held-out rows are
printed for every weight so that the curve is visible; they are not a choice.

    python benchmarks/blend_dense.py --tune results/answers-v2-tune.jsonl \\
        --heldout results/answers-v1-heldout.jsonl --out benchmarks/results/blend_dense.json
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from answers_fit import paired_gap, read_span_scores  # noqa: E402
from read_weight import load  # noqa: E402

from pipeline.config import SearchSettings  # noqa: E402
from pipeline.rank.reading import read_order  # noqa: E402

SHIPPED = SearchSettings()
GRID = (0.0, 0.05, 0.1, 0.2, 0.3, 0.5, 1.0)


def cosines(hits: list[dict]) -> list[float]:
    """Each hit's dense score; the lowest of the list for a hit the dense list did not retrieve (0 without any)."""
    known = [h["scores"]["dense"] for h in hits if h["scores"].get("dense") is not None]
    floor = min(known) if known else 0.0
    return [h["scores"]["dense"] if h["scores"].get("dense") is not None else floor for h in hits]


def reciprocal_ranks(records: list[dict], weight: float) -> np.ndarray:
    """Per question: reciprocal rank of the gold paragraph in the top 10 (0 if absent)."""
    out = []
    for r in records:
        hits = r["hits"]
        final = [h["scores"]["final"] + weight * c for h, c in zip(hits, cosines(hits))]
        spans, _ = read_span_scores(r, SHIPPED.read_paragraphs)
        ids = [hits[i]["source_id"] for i in read_order(final, spans, SHIPPED.read_weight)][:10]
        out.append(1.0 / (ids.index(r["gold"]) + 1) if r["gold"] in ids else 0.0)
    return np.array(out)


def table(records: list[dict], grid: tuple[float, ...]) -> list[dict]:
    base = reciprocal_ranks(records, 0.0)
    rows = []
    for weight in grid:
        rr = reciprocal_ranks(records, weight)
        gain, se = paired_gap(rr, base)
        rows.append({"weight": weight, "mrr@10": float(rr.mean()), "recall@1": float((rr == 1.0).mean()),
                     "diff": gain, "paired_se": se})
    return rows


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
        records = load(path)
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
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
