"""``qa-search fit-policy``: fit the ranking policy (pipeline/rank) for a reranker on tune questions."""

from __future__ import annotations

import argparse
from pathlib import Path

from pipeline.apps.cli.common import add_pipeline_options, pipeline_settings
from pipeline.models.resolve import display_name

DEFAULT_FEATURES = "rerank_probability,fused"


def _cmd_fit_policy(args: argparse.Namespace) -> int:
    from pipeline.errors import ConfigError
    from pipeline.eval.questions import load_questions, sample_questions
    from pipeline.qa import QAPipeline
    from pipeline.rank.fit import collect
    from pipeline.rank.policy import FEATURES

    names = [n.strip() for n in args.features.split(",") if n.strip()]
    unknown = [n for n in names if n not in FEATURES]
    if unknown or not names:
        raise ConfigError(f"Unknown --features {', '.join(unknown) or '(none)'}; valid values: {', '.join(FEATURES)}.")
    if args.rows:
        return _fit_from_rows(args, names)
    questions = sample_questions(load_questions(args.questions, args.articles), args.sample, args.seed)
    qa = QAPipeline.load(args.index, **(pipeline_settings(args) | {"read": False}))
    depth = qa.settings.candidates
    triples = collect(qa, questions, depth, batch_size=args.batch_size, progress=not args.quiet)
    fitted = {"questions_file": Path(args.questions).name, "index": Path(args.index).name,
              "articles": args.articles, "sample": args.sample,
              "seed": args.seed if args.sample else None, "candidates": depth,
              "rerank_backend": qa.reranker.describe(), "mode": qa.settings.mode.value,
              "dense_weight": qa.settings.dense_weight}
    return _fit_and_save(args, triples, names, reranker=qa.reranker.name, fusion=qa.settings.fusion.value,
                         fitted=fitted)


def _fit_from_rows(args: argparse.Namespace, names: list[str]) -> int:
    """Fit on the rows ``benchmarks/policy_rows.py`` saved (no search), their first ``--candidates`` per question."""
    import json

    from pipeline.errors import ConfigError

    path = Path(args.rows)
    meta_path = path.with_suffix(".meta.json")
    if not path.is_file() or not meta_path.is_file():
        raise ConfigError(f"--rows needs {path} and {meta_path} (written by benchmarks/policy_rows.py).")
    meta = json.loads(meta_path.read_text(encoding="utf-8"))
    depth = args.candidates or meta["candidates"]
    if depth > meta["candidates"]:
        raise ConfigError(f"--candidates {depth} is deeper than the rows ({meta['candidates']}).")
    triples = []
    for line in path.read_text(encoding="utf-8").splitlines():
        q = json.loads(line)
        hits = sorted(q["hits"], key=lambda h: h["ranks"].get("fused", 10**6))[:depth]
        triples.append((q["id"], q["gold"], hits))
    fitted = {"questions_file": Path(meta["questions"]).name, "index": Path(meta["index"]).name,
              "rows_file": path.name, "candidates": depth}
    fitted |= {key: meta.get(key) for key in ("articles", "sample", "seed", "backend")}
    return _fit_and_save(args, triples, names, reranker=meta["reranker"], fusion=meta.get("fusion", "weighted"),
                         fitted=fitted)


def _fit_and_save(args: argparse.Namespace, triples: list, names: list[str], *, reranker: str, fusion: str,
                  fitted: dict) -> int:
    """Fit the policy on ``(question id, gold id, hits)`` triples, write it to ``--out`` and say so."""
    from pipeline.rank.calibration import ALLOWED
    from pipeline.rank.fit import fit_policy, rows_of

    policy = fit_policy(rows_of(triples), reranker=display_name(reranker), names=names, C=args.C, fusion=fusion,
                        fitted=fitted)
    policy.save(args.out)
    weights = ", ".join(f"{k} {v:+.3f}" for k, v in policy.coef.items())
    use = (f"--calibration {args.out} (Hit.probability; the blend still orders) or --policy {args.out} (orders too)"
           if set(policy.coef) <= ALLOWED else f"--policy {args.out}")
    print(f"Fitted on {policy.fitted['rows']} candidates of {policy.fitted['questions']} questions: "
          f"intercept {policy.intercept:+.3f}, {weights}. Wrote {args.out}; use it with {use}")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    fp = sub.add_parser(
        "fit-policy",
        help="fit the ranking policy (the calibrated probability that orders and flags hits) for a reranker",
        description="Search SQuAD questions as the pipeline does (reranker, backend, candidates), then fit the "
        "logistic ranking policy (reranker logit + retrieval features -> probability that the paragraph answers) "
        "on every candidate (1 = the gold paragraph) and write it as JSON. Fit on tune questions only. "
        "Load it with --policy FILE (or QA_SEARCH_POLICY).",
    )
    add_pipeline_options(fp)
    fp.add_argument("--questions", required=True, metavar="FILE", help="SQuAD v1.1 or v2.0 JSON file")
    fp.add_argument("--articles", metavar="RANGES", help="article indices to fit on, e.g. 0-23 (default all)")
    fp.add_argument("--sample", type=int, metavar="N", help="fit on a fixed random sample of N questions")
    fp.add_argument("--seed", type=int, default=0, help="seed of --sample (default 0)")
    fp.add_argument("--features", default=DEFAULT_FEATURES,
                    help=f"comma-separated policy features (default {DEFAULT_FEATURES})")
    fp.add_argument("--batch-size", type=int, default=16, help="questions searched per batch (default 16)")
    fp.add_argument("--C", type=float, default=1.0, help="inverse regularisation of the logistic fit (default 1)")
    fp.add_argument("--rows", metavar="FILE", help="fit on the rows benchmarks/policy_rows.py saved instead of "
                    "searching again (their first --candidates per question)")
    fp.add_argument("--out", required=True, metavar="FILE", help="where to write the policy (JSON)")
    fp.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    fp.set_defaults(handler=_cmd_fit_policy)
