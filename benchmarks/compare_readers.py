"""Held-out figures of several readers on the same questions, each on its question's own paragraph.

The split and the sample are those of ``qa-search train reader`` (the same questions files, article
ranges and seed give the same held-out questions as a training card's), so a trained reader can be
compared with another one, e.g. the stand-in, on the questions its card reports. Each ``--reader`` is
read twice when it has a null head: forced to answer (its spans alone) and abstaining when its null score
beats its best span (as `pipeline.read.Reader` does by default). Prints a table, writes JSON.

    PYTHONPATH=$PWD python benchmarks/compare_readers.py \\
        --questions ../shared/data/dev-v1.1.json --questions ../shared/data/dev-v2.0-tune.json \\
        --train-articles 0-23 --eval-articles 24-47 \\
        --reader ../shared/models/minilm-l6-squad-tune-reader --reader models/noans-reader \\
        --out benchmarks/results/compare_readers.json
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pipeline.eval.questions import seeded_sample  # noqa: E402
from pipeline.files import write_json  # noqa: E402
from pipeline.models.resolve import resolve_model  # noqa: E402
from pipeline.read.reader import wants_no_answer  # noqa: E402
from pipeline.train.reader import ReaderSettings, heldout_figures, load_reader_examples  # noqa: E402
from pipeline.train.splits import split_questions  # noqa: E402


def has_null_head(name: str) -> bool:
    """Whether the reader was trained to say "no answer" (read from its config, without loading its weights)."""
    from transformers import AutoConfig

    config = AutoConfig.from_pretrained(resolve_model(name, role="reader").path, local_files_only=True)
    return wants_no_answer(config, name)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--questions", action="append", required=True, help="SQuAD v1.1/v2.0 JSON; repeat")
    parser.add_argument("--train-articles", default=None)
    parser.add_argument("--eval-articles", required=True)
    parser.add_argument("--sample", type=int, default=300)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--reader", action="append", required=True, help="model name or path; repeat")
    parser.add_argument("--out")
    args = parser.parse_args(argv)

    settings = ReaderSettings(seed=args.seed, eval_sample=args.sample)
    examples = load_reader_examples(args.questions)
    split = split_questions(examples, train_articles=args.train_articles, eval_articles=args.eval_articles,
                            seed=settings.seed)
    held = seeded_sample(split.eval, settings.eval_sample, settings.seed)
    rows = []
    for name in args.reader:
        readings = [False, True] if has_null_head(name) else [False]
        for abstains in readings:
            started = time.time()
            figures = heldout_figures(name, held, settings, allow_no_answer=abstains, device="cpu")
            rows.append({"reader": name, "abstains": abstains, "seconds": round(time.time() - started, 1), **figures})
    print(f"{len(held)} held-out questions (articles {args.eval_articles}, seed {args.seed}), each on its own paragraph")
    print(f"{'reader':<60} {'abstains':>8} {'EM':>7} {'F1':>7} {'answered':>9} {'F1 answered':>11}")
    for row in rows:
        has = row.get("HasAns", {})
        answered = has.get("answered", 0)
        on_answered = has["f1"] * has["total"] / answered if answered else 0.0
        print(f"{row['reader'][-60:]:<60} {str(row['abstains']):>8} {has.get('exact', 0):>7.2f} {has.get('f1', 0):>7.2f}"
              f" {answered:>4}/{has.get('total', 0):<4} {on_answered:>11.2f}")
    if args.out:
        write_json(args.out, {"split": split.describe(), "sample": len(held), "seed": args.seed, "rows": rows})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
