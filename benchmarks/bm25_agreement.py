"""bm25s against rank-bm25 on the SQuAD collection: how often is the top-10 identical?

Builds both engines over all 2,067 SQuAD dev paragraphs (the same tokenizer,
the same term table), runs every question of the chosen articles through both
and counts the questions whose ten best passages (in order) are the same.
Each bm25s method (robertson, lucene, atire) is measured on the tune articles
(0-23), the best one is chosen there, and only that one is reported on the
held-out articles (24-47). Also times one query of each engine.

    PYTHONPATH=. python benchmarks/bm25_agreement.py --corpus ../shared/data/dev-v1.1.json \\
        --out benchmarks/results/bm25_agreement.json
"""

from __future__ import annotations

import argparse
import statistics
import time

from pipeline.corpus import load_corpus
from pipeline.eval.questions import load_questions
from pipeline.files import write_json
from pipeline.index.bm25 import METHODS, BM25Index, BM25Tokenizer, TermTable


def agreement(a: BM25Index, b: BM25Index, questions, k: int = 10) -> tuple[float, float, float]:
    same, times_a, times_b = 0, [], []
    for q in questions:
        t0 = time.perf_counter()
        top_a = [p for p, _ in a.search(q.text, k)]
        t1 = time.perf_counter()
        top_b = [p for p, _ in b.search(q.text, k)]
        t2 = time.perf_counter()
        same += top_a == top_b
        times_a.append(t1 - t0)
        times_b.append(t2 - t1)
    return same / len(questions), statistics.median(times_a) * 1000, statistics.median(times_b) * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--corpus", default="../shared/data/dev-v1.1.json")
    parser.add_argument("--tune", default="0-23")
    parser.add_argument("--held-out", default="24-47")
    parser.add_argument("--out", help="write the figures as JSON here")
    args = parser.parse_args()

    passages = load_corpus(args.corpus).passages
    table = TermTable.from_tokens(BM25Tokenizer().many(p.text for p in passages))
    reference = BM25Index(table, engine="rank-bm25")
    tune, held = load_questions(args.corpus, args.tune), load_questions(args.corpus, args.held_out)
    rows = {}
    print(f"{len(passages)} passages; top-10 identical to rank-bm25's (share of questions)\n")
    print(f"| method | tune ({len(tune)} q) | rank-bm25 p50 ms | bm25s p50 ms |\n|---|---:|---:|---:|")
    for method in METHODS:
        fast = BM25Index(table, engine="bm25s", method=method)
        share, ms_ref, ms_fast = agreement(reference, fast, tune)
        rows[method] = {"tune": share, "rank_bm25_p50_ms": ms_ref, "bm25s_p50_ms": ms_fast}
        print(f"| {method} | {share:.4f} | {ms_ref:.2f} | {ms_fast:.2f} |")
    chosen = max(METHODS, key=lambda m: rows[m]["tune"])
    held_share, _, _ = agreement(reference, BM25Index(table, engine="bm25s", method=chosen), held)
    rows[chosen]["held_out"] = held_share
    print(f"\nChosen on tune: {chosen}; held-out ({len(held)} q): {held_share:.4f} identical top-10")
    if args.out:
        write_json(args.out, {"passages": len(passages), "methods": rows, "chosen": chosen})


if __name__ == "__main__":
    main()
