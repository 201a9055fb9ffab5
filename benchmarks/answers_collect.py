"""Collect what answer selection and abstention are tuned on: each question's hits and reader spans.

Runs the pipeline (shipped search defaults: hybrid, 20 candidates, reranked) on a
fixed sample of SQuAD questions, reads the top ``--paragraphs`` hits of each with
:meth:`Reader.spans`, and writes one JSON line per question: the question (id,
title, answerable, gold answers, gold paragraph found by context text), its hits
(id, source_id, probability, scores, ranks, text) and the readings of the read hits. Both
benchmarks/answers_fit.py (tune) and the held-out figures work from these files,
so the models run once.

    HF_HUB_OFFLINE=1 PYTHONPATH=$PWD nice -n 10 python benchmarks/answers_collect.py \\
        --index /tmp/answers/squad-dev --questions ../shared/data/dev-v2.0-tune.json --sample 1500 \\
        --out benchmarks/results/answers-v2-tune.jsonl
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import random
import sys
from dataclasses import asdict
from pathlib import Path

from tqdm.auto import tqdm

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("QA_SEARCH_SHARED", REPO.parent / "shared"))
sys.path.insert(0, str(REPO))

from pipeline.corpus import clean_text  # noqa: E402
from pipeline.eval.questions import load_questions, sample_questions  # noqa: E402
from pipeline.qa import QAPipeline  # noqa: E402

#: Characters of a paragraph's start that identify it (a long paragraph's first window starts with them too).
PREFIX = 200


def gold_finder(passages):
    """``context -> source_id`` of the indexed paragraph with that text, matched by its start.

    By text, not position (four v2.0 tune articles order their paragraphs
    differently from v1.1), and by the start so that a paragraph cut into
    windows is found by its first window.
    """
    by_start = {}
    for p in passages:
        if p.id == p.source_id or p.id.endswith("~w0"):
            by_start.setdefault(p.text[:PREFIX], p.source_id)
    return lambda context: by_start.get(clean_text(context)[:PREFIX])


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--index", required=True)
    parser.add_argument("--questions", required=True)
    parser.add_argument("--articles", default=None)
    parser.add_argument("--sample", type=int, default=None)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--reranker", default=str(SHARED / "models/minilm-l6-qnli-squad-tune"))
    parser.add_argument("--reader", default=str(SHARED / "models/minilm-l6-squad-tune-reader"))
    parser.add_argument("--paragraphs", type=int, default=5, help="hits read per question")
    parser.add_argument("--top-spans", type=int, default=20)
    parser.add_argument("--candidates", type=int, default=None, help="reranked candidates (default: the shipped setting)")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--out", required=True)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)

    questions = sample_questions(load_questions(args.questions, args.articles), args.sample, args.seed)
    qa = QAPipeline.load(args.index, reranker=args.reranker, reader=args.reader)
    gold_of = gold_finder(qa.index.passages)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    done = set()
    if out.exists():  # resume
        done = {json.loads(line)["id"] for line in out.read_text().splitlines() if line.strip()}
    todo = [q for q in questions if q.id not in done]
    # In a fixed random order, so that a run stopped early still covers every article.
    random.Random(args.seed).shuffle(todo)
    with out.open("a", encoding="utf-8") as f, tqdm(total=len(todo), unit="q") as bar:
        for b in range(0, len(todo), args.batch):
            batch = todo[b : b + args.batch]
            overrides = {"candidates": args.candidates} if args.candidates else {}
            results = qa.search_many([q.text for q in batch], read=False, **overrides)
            pairs = [(r.query, h.text) for r in results for h in r.hits[: args.paragraphs]]
            readings = qa.reader.spans(pairs, top=args.top_spans)
            # The oracle: the reader on the gold paragraph alone (answerable questions).
            oracle = qa.reader.spans([(q.text, q.context) for q in batch], top=1)
            k = 0
            for q, r in zip(batch, results):
                read = r.hits[: args.paragraphs]
                record = {
                    "id": q.id,
                    "question": q.text,
                    "title": q.title,
                    "answerable": q.answerable,
                    "answers": list(q.answers),
                    "gold": gold_of(q.context),
                    "hits": [
                        {"id": h.id, "source_id": h.source_id, "probability": h.probability, "scores": h.scores,
                         "ranks": h.ranks, "text": h.text}
                        for h in r.hits
                    ],
                    "readings": [asdict(x) for x in readings[k : k + len(read)]],
                    "null_head": qa.reader.allow_no_answer,
                    "oracle": oracle[batch.index(q)].best.text if q.answerable and oracle[batch.index(q)].best else None,
                    "candidates": args.candidates or qa.settings.candidates,
                    # the blend's weight of the bi-encoder similarity in each hit's "final" (blend_dense.py replays others)
                    "similarity_weight": qa.settings.similarity_weight,
                }
                k += len(read)
                f.write(json.dumps(record) + "\n")
            f.flush()
            bar.update(len(batch))
    return 0


if __name__ == "__main__":
    sys.exit(main())
