"""``qa-search eval`` (retrieval, reranking, answerability, reader) and ``qa-search eval-reranker`` (sentence pairs)."""

from __future__ import annotations

import argparse
import json

from pipeline.apps.cli.common import add_pipeline_options, pipeline_settings
from pipeline.errors import QASearchError
from pipeline.rerank.blend import describe as describe_blend


def _cmd_eval(args: argparse.Namespace) -> int:
    from pipeline.eval.evaluation import evaluate, parse_modes
    from pipeline.eval.questions import load_questions, sample_questions
    from pipeline.eval.report import add_run_config, markdown_report, write_outputs
    from pipeline.qa import QAPipeline

    modes = parse_modes(args.modes)
    questions = sample_questions(load_questions(args.questions, args.articles), args.sample, args.seed)
    settings = pipeline_settings(args)
    read = bool(args.reader) and not args.no_read
    settings["read"] = read  # reader figures only when a reader is named: --reader NAME|PATH
    if "rerank" not in modes:
        settings["rerank"] = False  # no need to load a cross-encoder
    qa = QAPipeline.load(args.index, **settings)
    result = evaluate(
        qa,
        questions,
        modes=modes,
        candidates=args.candidates,
        batch_size=args.batch_size,
        allow_missing=args.allow_missing,
        read=read,
        progress=not args.quiet,
    )
    cfg = qa.settings
    add_run_config(
        result,
        index=str(args.index),
        questions_file=str(args.questions),
        articles=args.articles,
        sample=args.sample,
        seed=args.seed if args.sample else None,
        bi_encoder=qa.encoder.name if qa.encoder else None,
        reranker=qa.reranker.name if qa.reranker else None,
        reader=qa.reader.name if qa.reader else None,
        threshold=cfg.threshold,
        fusion=cfg.fusion.value,
        rrf_k=cfg.rrf_k,
        dense_weight=cfg.dense_weight,
        rerank_weight=cfg.rerank_weight,
        policy=qa.policy.describe() if qa.policy else describe_blend(cfg.rerank_weight, cfg.similarity_weight),
        settings=qa.config.to_dict(),
    )
    print(markdown_report(result))
    if args.out:
        paths = write_outputs(result, args.out)
        print(f"Wrote {', '.join(str(p) for p in paths.values())}")
    return 0


def register_eval(sub: argparse._SubParsersAction) -> None:
    from pipeline.eval.evaluation import MODES

    ev = sub.add_parser(
        "eval",
        help="measure retrieval, reranking and answerability on SQuAD questions (Recall@k, MRR@10, nDCG@10)",
        description="Recall@1/5/10/20/100, MRR@10 and nDCG@10 of each mode (ranx), answerability of the reranker's "
        "top paragraph, for SQuAD v1.1/v2.0 questions whose gold paragraph is in the index.",
    )
    add_pipeline_options(ev)
    ev.add_argument("--questions", required=True, metavar="FILE", help="SQuAD v1.1 or v2.0 JSON file")
    ev.add_argument("--articles", metavar="RANGES", help="article indices, e.g. 24-47 or 0-23,30 (default all)")
    ev.add_argument("--modes", default=",".join(MODES), help=f"comma-separated, of {', '.join(MODES)} (default all)")
    ev.add_argument("--sample", type=int, metavar="N", help="evaluate a fixed random sample of N questions (same for every mode)")
    ev.add_argument("--seed", type=int, default=0, help="seed of --sample (default 0)")
    ev.add_argument("--batch-size", type=int, default=32, help="questions searched per batch (default 32)")
    ev.add_argument("--allow-missing", action="store_true", help="skip (and count) questions whose gold paragraph is not in the index")
    ev.add_argument("--out", metavar="DIR", help="write report.md, metrics.json, plot.png and answers.jsonl (one line per question) here")
    ev.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    ev.set_defaults(handler=_cmd_eval)


def _cmd_eval_reranker(args: argparse.Namespace) -> int:
    from pipeline.config import PipelineConfig
    from pipeline.eval.pairs import evaluate_pairs, read_pairs
    from pipeline.eval.questions import load_questions
    from pipeline.rerank.reranker import Reranker

    keep = None
    if args.articles:
        if not args.questions:
            raise QASearchError("--articles needs --questions SQUAD.json to tell which questions belong to those articles.")
        keep = {q.text for q in load_questions(args.questions, args.articles)}
    pairs = read_pairs(args.pairs, limit=args.limit, questions=keep)
    cfg = PipelineConfig.from_env(reranker=args.reranker, threshold=args.threshold, device=args.device)
    load = cfg.load
    reranker = Reranker.load(load.reranker, device=load.device, max_length=load.max_length, batch_size=load.batch_size)
    figures = evaluate_pairs(reranker, pairs, threshold=cfg.search.threshold, progress=not args.quiet)
    figures.update(reranker=reranker.name, pairs_file=str(args.pairs), limit=args.limit, articles=args.articles)
    if args.json:
        print(json.dumps(figures, indent=2))
    else:
        print(
            f"{reranker.name} on {figures['pairs']} pairs of {args.pairs} (lines {figures['first_line']}-"
            f"{figures['last_line']}): accuracy {100 * figures['accuracy']:.2f}%, F1 {100 * figures['f1']:.2f}% "
            f"at threshold {figures['threshold']}"
            + (f", ROC AUC {figures['auroc']:.4f}" if figures["auroc"] is not None else "")
        )
    return 0


def register_eval_reranker(sub: argparse._SubParsersAction) -> None:
    ev = sub.add_parser("eval-reranker", help="accuracy and F1 of a cross-encoder on QNLI-format pairs")
    ev.add_argument("--pairs", required=True, metavar="TSV", help="QNLI-format file: index, question, sentence, label")
    ev.add_argument("--reranker", metavar="NAME|PATH", help="cross-encoder (default $QA_SEARCH_RERANKER or cross-encoder/qnli-electra-base)")
    ev.add_argument("--threshold", type=float, help="probability counted as entailment (default 0.5)")
    ev.add_argument("--limit", type=int, metavar="N", help="evaluate the first N pairs (after --articles)")
    ev.add_argument("--questions", metavar="FILE", help="SQuAD file whose --articles select the pairs' questions")
    ev.add_argument("--articles", metavar="RANGES", help="keep pairs whose question is in these articles of --questions")
    ev.add_argument("--device", help="cpu, cuda, ... (default: cuda when available)")
    ev.add_argument("--json", action="store_true", help="print the figures as JSON")
    ev.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    ev.set_defaults(handler=_cmd_eval_reranker)
