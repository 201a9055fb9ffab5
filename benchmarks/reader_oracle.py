"""Reader oracle check: the reader on the gold paragraphs of held-out SQuAD articles.

Decodes every question's gold paragraph with the reader (windows of 384 tokens,
stride 128, answers up to 30 tokens unless told otherwise), scores EM/F1 with
the official SQuAD normalisation (torchmetrics) and compares with the figures
published beside the model (``heldout_metrics.json``): a gap over 2 points
means the span decoding is wrong. It also times reading at ELECTRA-base size
(a randomly initialised model of google/electra-base's shape: hidden 768, 12 layers; its
answers are meaningless, only its speed counts) on the same questions, as a
ratio to the reader under test.

    HF_HUB_OFFLINE=1 PYTHONPATH=$PWD nice -n 10 python benchmarks/reader_oracle.py \\
        --reader ../shared/models/minilm-l6-squad-tune-reader --questions ../shared/data/dev-v1.1.json \\
        --articles 24-47 --out benchmarks/results/reader_oracle.json
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("QA_SEARCH_SHARED", REPO.parent / "shared"))
sys.path.insert(0, str(REPO))

from pipeline.eval.squad_metrics import GoldQuestion, oracle_reader_metrics  # noqa: E402
from pipeline.files import write_json  # noqa: E402
from pipeline.read.reader import Reader  # noqa: E402

TOLERANCE = 2.0  # points of EM / F1


def load_gold(path: Path, articles: range) -> list[GoldQuestion]:
    """(question, gold paragraph, gold answers) of the chosen articles of a SQuAD file."""
    from types import SimpleNamespace

    data = json.loads(path.read_text(encoding="utf-8"))["data"]
    return [
        SimpleNamespace(text=qa["question"], context=p["context"], answers=[a["text"] for a in qa["answers"]])
        for article in (data[i] for i in articles)
        for p in article["paragraphs"]
        for qa in p["qas"]
    ]


def electra_base_reader(like: Reader, **settings) -> Reader:
    """A randomly initialised ELECTRA-base-shaped reader (hidden 768, 12 layers) with ``like``'s tokenizer."""
    import torch
    from transformers import ElectraConfig, ElectraForQuestionAnswering

    torch.manual_seed(0)
    # ElectraConfig()'s defaults are ELECTRA-small (hidden 256); spell out the base shape.
    config = ElectraConfig(vocab_size=like.tokenizer.vocab_size, embedding_size=768, hidden_size=768,
                           num_hidden_layers=12, num_attention_heads=12, intermediate_size=3072)
    model = ElectraForQuestionAnswering(config).eval()
    return Reader(model, like.tokenizer, "electra-base shape (random weights)", **settings)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--reader", default=str(SHARED / "models/minilm-l6-squad-tune-reader"))
    parser.add_argument("--questions", default=str(SHARED / "data/dev-v1.1.json"))
    parser.add_argument("--articles", default="24-47", help="first-last article indices (default: held-out 24-47)")
    parser.add_argument("--limit", type=int, help="only the first N questions (quick runs while developing)")
    parser.add_argument("--max-length", type=int, default=384)
    parser.add_argument("--stride", type=int, default=128)
    parser.add_argument("--max-answer-tokens", type=int, default=30)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--backend", default="torch", choices=["auto", "torch", "onnx", "onnx-int8"],
                        help="what runs the reader (the pipeline's default is auto: ONNX Runtime int8 on a CPU)")
    parser.add_argument("--speed-questions", type=int, default=200, help="questions timed at ELECTRA-base size (0: skip)")
    parser.add_argument("--out", default=str(REPO / "benchmarks/results/reader_oracle.json"))
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)

    first, _, last = args.articles.partition("-")
    questions = load_gold(Path(args.questions), range(int(first), int(last or first) + 1))
    if args.limit:
        questions = questions[: args.limit]
    settings = dict(max_length=args.max_length, stride=args.stride, max_answer_tokens=args.max_answer_tokens,
                    batch_size=args.batch_size)
    reader = Reader.load(args.reader, device="cpu", backend=args.backend, **settings)
    measured = oracle_reader_metrics(reader, questions)

    published_path = Path(args.reader) / "heldout_metrics.json"
    published = json.loads(published_path.read_text()) if published_path.is_file() else None
    rows = [("measured", measured.exact_match, measured.f1, measured.ms_per_question)]
    within = None
    if published and not args.limit:  # the published figures are for all questions: no comparison on a subset
        rows.append(("published", published["EM"], published["F1"], published.get("ms_per_question")))
        within = abs(measured.exact_match - published["EM"]) <= TOLERANCE and abs(measured.f1 - published["F1"]) <= TOLERANCE

    speed = None
    if args.speed_questions:
        timed = questions[: args.speed_questions]
        small = oracle_reader_metrics(reader, timed)
        base = oracle_reader_metrics(electra_base_reader(reader, **settings), timed)
        speed = {
            "questions": len(timed),
            "reader_ms_per_question": small.ms_per_question,
            "electra_base_ms_per_question": base.ms_per_question,
            "ratio_electra_base_to_reader": round(base.ms_per_question / small.ms_per_question, 2),
        }

    print(f"Reader oracle on gold paragraphs: {args.reader}, articles {args.articles}, {measured.questions} questions")
    print(f"windows {args.max_length} tokens, stride {args.stride}, answers <= {args.max_answer_tokens} tokens")
    print(f"{'':<12}{'EM':>8}{'F1':>8}{'ms/q':>9}")
    for name, em, f1, ms in rows:
        print(f"{name:<12}{em:>8.2f}{f1:>8.2f}{(f'{ms:.1f}' if ms is not None else '-'):>9}")
    if within is not None:
        print(f"within {TOLERANCE} points of the published figures: {'yes' if within else 'NO'}")
    if speed:
        print(f"speed on {speed['questions']} questions: reader {speed['reader_ms_per_question']:.1f} ms/q, "
              f"ELECTRA-base shape {speed['electra_base_ms_per_question']:.1f} ms/q "
              f"(x{speed['ratio_electra_base_to_reader']})")

    report = {
        "reader": args.reader,
        "questions_file": args.questions,
        "articles": args.articles,
        "limit": args.limit,
        "settings": settings,
        "measured": measured.to_dict(),
        "published": published,
        "within_tolerance": within,
        "tolerance_points": TOLERANCE,
        "speed": speed,
        "machine": {"python": platform.python_version(), "processor": platform.processor() or platform.machine()},
    }
    out = write_json(args.out, report)
    print(f"wrote {out}")
    return 0 if within in (None, True) else 1


if __name__ == "__main__":
    sys.exit(main())
