"""``qa-search fit-answers``: refit the answer policy's abstention for the models a deployment runs."""

from __future__ import annotations

import argparse
from pathlib import Path

from pipeline.apps.cli.common import add_pipeline_options, pipeline_settings


def _cmd_fit_answers(args: argparse.Namespace) -> int:
    from pipeline.eval.questions import (
        JSONL_SUFFIXES,
        load_labelled_questions,
        sample_questions,
    )
    from pipeline.files import write_json
    from pipeline.qa import QAPipeline
    from pipeline.read.fit import (
        FITTABLE,
        check_features,
        collect_answer_rows,
        fit_answer_policy,
        require_scikit_learn,
    )

    require_scikit_learn()  # before the searches, not after
    names = check_features([n.strip() for n in (args.features or ",".join(FITTABLE)).split(",") if n.strip()])
    questions = sample_questions(load_labelled_questions(args.questions, args.articles), args.sample, args.seed)
    qa = QAPipeline.load(args.index, **pipeline_settings(args))
    rows, skipped = collect_answer_rows(qa, questions, names, batch_size=args.batch_size, progress=not args.quiet)
    cfg = qa.settings
    fitted_for = {"reader": qa.reader.name, "reranker": qa.reranker.name if qa.reranker is not None else None,
                  "bi_encoder": qa.encoder.name, "read_paragraphs": cfg.read_paragraphs,
                  "read_weight": cfg.read_weight, "data": Path(args.questions).name,
                  "index": Path(args.index).name, "sample": args.sample, "seed": args.seed if args.sample else None}
    fitted = fit_answer_policy(rows, qa.answer_policy, names, folds=args.folds, keep=args.keep, fitted_for=fitted_for)
    fitted.policy.save(args.out)
    if args.report:
        write_json(args.report, {"folds": fitted.folds, "pooled_out_of_fold": fitted.pooled,
                                 "skipped_without_candidate": skipped, "features": list(names)})
    pooled = fitted.pooled
    groups = "groups" if Path(args.questions).suffix.lower() in JSONL_SUFFIXES else "articles"
    print(f"{'fold':<6}{'questions':>10}{'AUROC':>8}{'false answers':>15}{'recall':>8}")
    for fold in fitted.folds:
        auroc = "-" if fold["auroc"] is None else f"{fold['auroc']:.3f}"
        print(f"{fold['fold']:<6}{fold['questions']:>10}{auroc:>8}{fold['false_answer_rate']:>15.3f}"
              f"{fold['recall']:>8.3f}")
    print(f"Out of fold, {pooled['questions']} questions of {pooled['articles']} {groups} ({pooled['answerable']} "
          f"answerable; {skipped} without a candidate left out): AUROC {pooled['auroc']:.3f}, false answers "
          f"{100 * pooled['false_answer_rate_at_keep']:.1f}% where {100 * args.keep:.0f}% of the answerable keep one.")
    print(f"Wrote {args.out} (threshold {fitted.policy.threshold:.3f}); use it with --answer-policy {args.out} "
          "(or QA_SEARCH_ANSWER_POLICY).")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    fa = sub.add_parser(
        "fit-answers",
        help="refit the answer policy (when a search abstains) for the models you run, on SQuAD v2.0-style questions",
        description="Search and read SQuAD v2.0-format questions (some is_impossible) as the pipeline does, then fit "
        "the abstention model (a logistic regression over the answer policy's features) with cross-validation "
        "grouped by article, and write the policy as JSON. Its threshold keeps --keep of the answerable questions' "
        "answers. Fit on questions the models were not trained on. Load it with --answer-policy FILE.",
    )
    add_pipeline_options(fa)
    fa.add_argument("--questions", required=True, metavar="FILE",
                    help="SQuAD v2.0 JSON file with answerable and unanswerable (is_impossible) questions, or a .jsonl "
                    'file of {"question": ..., "answerable": true|false, "group": "the document it was written '
                    'against"} per line')
    fa.add_argument("--articles", metavar="RANGES", help="article indices to fit on, e.g. 0-23 (default all)")
    fa.add_argument("--sample", type=int, metavar="N", help="fit on a fixed random sample of N questions")
    fa.add_argument("--seed", type=int, default=0, help="seed of --sample (default 0)")
    fa.add_argument("--features", metavar="A,B,...",
                    help="comma-separated features of the abstention model (default: all that a search measures)")
    fa.add_argument("--folds", type=int, default=5, help="cross-validation folds, grouped by article (default 5)")
    fa.add_argument("--keep", type=float, default=0.85,
                    help="share of answerable questions that keep an answer at the threshold (default 0.85)")
    fa.add_argument("--batch-size", type=int, default=16, help="questions searched per batch (default 16)")
    fa.add_argument("--out", required=True, metavar="FILE", help="where to write the answer policy (JSON)")
    fa.add_argument("--report", metavar="FILE", help="also write the cross-validation figures (JSON)")
    fa.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    fa.set_defaults(handler=_cmd_fit_answers)
