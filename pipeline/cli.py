"""The ``qa-search`` command: fetch data, build indexes, search.

Run ``qa-search --help`` (or ``qa-search COMMAND --help``) for the options.
Errors a user can cause print one line (``error: ...``) and exit with status 2.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from typing import Callable, Sequence

from .config import DEFAULT_BI_ENCODER, DEFAULT_READER, FaissKind, FusionMethod, RerankBackend, RetrievalMode
from .errors import QASearchError

logger = logging.getLogger("pipeline.cli")

Handler = Callable[[argparse.Namespace], int]


def _choices(enum) -> list[str]:
    return [m.value for m in enum]


# --------------------------------------------------------------------------- data


def _cmd_data_fetch(args: argparse.Namespace) -> int:
    from .data import fetch_dataset

    path = fetch_dataset(args.name, args.dest, from_file=args.from_file, progress=not args.quiet)
    print(f"{path} (sha256 verified)")
    return 0


def register_data(sub: argparse._SubParsersAction) -> None:
    from .data import DATASETS

    data = sub.add_parser("data", help="fetch public data sets")
    data_sub = data.add_subparsers(dest="data_command", required=True)
    fetch = data_sub.add_parser("fetch", help="download (or copy) a data set and verify its sha256")
    fetch.add_argument("name", choices=sorted(DATASETS), help="data set name")
    fetch.add_argument("--from", dest="from_file", metavar="FILE", help="copy from this local file instead of downloading")
    fetch.add_argument("--dest", default="data", help="directory to write into (default: data)")
    fetch.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    fetch.set_defaults(handler=_cmd_data_fetch)


# --------------------------------------------------------------------------- build


def _cmd_build(args: argparse.Namespace) -> int:
    from .index import add_to_index, build_index

    progress = not args.quiet
    if args.add:
        report = add_to_index(
            args.index,
            args.add,
            bi_encoder=args.bi_encoder,
            fmt=args.format,
            strict=not args.skip_bad_records,
            batch_size=args.batch_size,
            device=args.device,
            progress=progress,
        )
        verb = "Added"
    else:
        if not args.corpus:
            raise QASearchError("Pass --corpus PATH to build an index, or --add PATH to extend one.")
        report = build_index(
            args.corpus,
            args.index,
            bi_encoder=args.bi_encoder or DEFAULT_BI_ENCODER,
            faiss_kind=args.faiss,
            fmt=args.format,
            strict=not args.skip_bad_records,
            max_tokens=args.window_tokens,
            overlap=args.window_overlap,
            batch_size=args.batch_size,
            device=args.device,
            progress=progress,
        )
        verb = "Built"
    print(
        f"{verb} {report.index_path}: {report.passages_added} passages in {report.seconds:.1f} s "
        f"({report.passages_per_second:.1f}/s); index now holds {report.manifest.passages} passages."
    )
    print(f"Corpus: {report.corpus.summary()}.")
    for bad in report.corpus.bad_records[:20]:
        print(f"  skipped {bad.path}:{bad.line}: {bad.reason}", file=sys.stderr)
    return 0


def register_build(sub: argparse._SubParsersAction) -> None:
    build = sub.add_parser("build", help="build a BM25 + FAISS index from a corpus (or --add to one)")
    build.add_argument("--corpus", metavar="PATH", help="SQuAD JSON, JSON Lines, a folder of .txt/.md, or WikiExtractor output")
    build.add_argument("--index", required=True, metavar="DIR", help="index directory, e.g. indexes/squad-dev")
    build.add_argument("--add", metavar="PATH", help="append this corpus to the existing index (old passages are not re-embedded)")
    build.add_argument("--format", default="auto", choices=["auto", "squad", "jsonl", "folder", "wikiextractor"])
    build.add_argument("--bi-encoder", metavar="NAME|PATH", help=f"sentence-transformers model (default {DEFAULT_BI_ENCODER})")
    build.add_argument("--faiss", default="flat", choices=_choices(FaissKind), help="FAISS index kind (default flat)")
    build.add_argument("--window-tokens", type=int, default=448, help="split longer paragraphs into windows of this many tokens")
    build.add_argument("--window-overlap", type=int, default=64, help="tokens shared by consecutive windows")
    build.add_argument("--batch-size", type=int, default=32)
    build.add_argument("--device", help="cpu, cuda, ... (default: cuda when available)")
    build.add_argument("--skip-bad-records", action="store_true", help="skip malformed records (counted and listed) instead of stopping")
    build.add_argument("-q", "--quiet", action="store_true", help="no progress bars")
    build.set_defaults(handler=_cmd_build)


# --------------------------------------------------------------------------- search


def add_pipeline_options(parser: argparse.ArgumentParser) -> None:
    """Options every command that loads a :class:`QAPipeline` shares."""
    parser.add_argument("--index", default="indexes/squad-dev", metavar="DIR", help="index directory (default indexes/squad-dev)")
    parser.add_argument("--mode", choices=_choices(RetrievalMode), help="retrieval mode (default hybrid)")
    parser.add_argument("--fusion", choices=_choices(FusionMethod), help="hybrid fusion (default weighted)")
    parser.add_argument("--reranker", metavar="NAME|PATH", help="cross-encoder (default $QA_SEARCH_RERANKER or cross-encoder/qnli-electra-base)")
    parser.add_argument("--no-rerank", action="store_true", help="skip the cross-encoder")
    parser.add_argument("--reader", metavar="NAME|PATH", help=f"extractive QA model that marks the answer (default $QA_SEARCH_READER or {DEFAULT_READER})")
    parser.add_argument("--no-read", action="store_true", help="skip the reader (no answer spans)")
    parser.add_argument("--bi-encoder", metavar="NAME|PATH", help="bi-encoder (default: the one the index was built with)")
    parser.add_argument("--candidates", type=int, help="candidates the reranker scores (default 50)")
    parser.add_argument("--threshold", type=float, help="probability at which a paragraph answers (default 0.5)")
    parser.add_argument("--device", help="cpu, cuda, ... (default: cuda when available)")
    parser.add_argument(
        "--rerank-backend", choices=_choices(RerankBackend),
        help="cross-encoder engine: auto (default: ONNX Runtime int8 on a CPU, PyTorch on a GPU), "
        "torch (plain fp32), onnx, onnx-int8 ($QA_SEARCH_RERANK_BACKEND)",
    )
    parser.add_argument("--int8-rescore", type=int, metavar="N",
                        help="with onnx-int8/auto on a CPU, re-score each question's best N in fp32 (default 3; 0 = off)")
    parser.add_argument("--threads", type=int, help="CPU threads of the reranker (default: physical cores; $QA_SEARCH_THREADS)")
    parser.add_argument("--cascade-reranker", metavar="NAME|PATH", help="small cross-encoder that prunes candidates first (default: off)")
    parser.add_argument("--cascade-keep", type=int, help="candidates the cascade passes to the main reranker (default 10)")
    parser.add_argument("--dense-weight", type=float, help="dense weight of --fusion weighted (default 0.4)")
    parser.add_argument("--rrf-k", type=int, help="k of reciprocal rank fusion (default 60)")
    parser.add_argument("--rerank-weight", type=float,
                        help="weight of the reranker probability against the fused score in the final order (default 0.5; 1 = reranker alone)")


def pipeline_settings(args: argparse.Namespace) -> dict:
    return {
        "mode": args.mode,
        "fusion": args.fusion,
        "reranker": args.reranker,
        "rerank": False if args.no_rerank else None,
        "reader": args.reader,
        "read": False if args.no_read else None,
        "bi_encoder": args.bi_encoder,
        "candidates": args.candidates,
        "threshold": args.threshold,
        "device": args.device,
        "rerank_backend": args.rerank_backend,
        "threads": args.threads,
        "int8_rescore": args.int8_rescore,
        "cascade_reranker": args.cascade_reranker,
        "cascade_keep": args.cascade_keep,
        "dense_weight": args.dense_weight,
        "rrf_k": args.rrf_k,
        "rerank_weight": args.rerank_weight,
    }


def _marked(text: str, answer, limit: int = 400) -> str:
    """``text`` (cut to ``limit`` characters) as Rich markup: escaped, with the answer span in bold yellow."""
    from rich.markup import escape

    if answer is None or answer.end > limit:
        return escape(text if len(text) <= limit else text[:limit] + "…")
    tail = text[answer.end : limit] + ("…" if len(text) > limit else "")
    return f"{escape(text[: answer.start])}[bold yellow]{escape(answer.text)}[/bold yellow]{escape(tail)}"


def _print_table(result) -> None:
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    console = Console()
    if result.answer is not None:
        a = result.answer
        console.print(f"[bold]Answer:[/bold] [bold yellow]{escape(a.text)}[/bold yellow] [dim](span {a.score:.2f}, from {escape(a.id)})[/dim]")
    elif result.settings.get("reader"):
        console.print("[dim]No answer found in the paragraphs shown.[/dim]")
    table = Table(title=f"Q: {escape(result.query)}", show_lines=True, expand=True)
    table.add_column("#", justify="right", width=3)
    table.add_column("answers?", width=9)
    table.add_column("passage", ratio=1)
    table.add_column("scores", width=28)
    for rank, hit in enumerate(result.hits, start=1):
        if hit.probability is None:
            verdict = "-"
        else:
            verdict = f"{'[green]yes' if hit.answerable else '[dim]no'} {hit.probability:.2f}"
        passage = f"[bold]{escape(hit.title)}[/bold] [dim]({escape(hit.id)})[/dim]\n{_marked(hit.text, hit.answer)}"
        if hit.answer is not None:
            passage += f"\n[bold]answer:[/bold] {escape(hit.answer.text)} [dim]({hit.answer.score:.2f})[/dim]"
        scores = "\n".join(
            f"{stage} {hit.scores[stage]:.3f} (#{hit.ranks[stage]})" for stage in ("bm25", "dense", "fused", "rerank") if stage in hit.scores
        )
        table.add_row(str(rank), verdict, passage, scores)
    console.print(table, markup=True)
    timing = ", ".join(f"{k} {v:.0f} ms" for k, v in result.timings.items())
    console.print(f"[dim]{timing}[/dim]")
    if result.hits and result.hits[0].probability is not None and not result.answerable_hits:
        console.print("No paragraph in this collection answers this question; the closest are shown.")


def _cmd_search(args: argparse.Namespace) -> int:
    from .qa import QAPipeline

    qa = QAPipeline.load(args.index, **pipeline_settings(args))
    result = qa.search(args.question, top_k=args.top_k)
    if args.json:
        print(json.dumps(result.to_dict(), indent=2, ensure_ascii=False))
    else:
        _print_table(result)
    return 0


def register_search(sub: argparse._SubParsersAction) -> None:
    search = sub.add_parser("search", help="ask a question against an index")
    search.add_argument("question", help="the question, in quotes")
    add_pipeline_options(search)
    search.add_argument("--top-k", type=int, default=10, help="hits to show (default 10)")
    search.add_argument("--json", action="store_true", help="print the result as JSON")
    search.set_defaults(handler=_cmd_search)


# --------------------------------------------------------------------------- serve


def _cmd_serve(args: argparse.Namespace) -> int:
    from .server import ServerSettings, serve

    settings = ServerSettings.from_env(
        host=args.host,
        port=args.port,
        cors_origins=args.cors_origin,
        batching=False if args.no_batching else None,
        batch_max_wait_ms=args.batch_wait_ms,
        batch_max_pairs=args.batch_max_pairs,
        max_query_chars=args.max_query_chars,
        max_documents=args.max_documents,
        max_document_chars=args.max_document_chars,
        max_top_k=args.max_top_k,
        max_candidates=args.max_candidates,
        max_body_bytes=args.max_body_bytes,
        max_concurrency=args.max_concurrency,
    )
    serve(args.index, pipeline_settings(args), settings)
    return 0


def register_serve(sub: argparse._SubParsersAction) -> None:
    serve = sub.add_parser(
        "serve",
        help="serve search, rerank and score over HTTP (FastAPI + Uvicorn)",
        description="HTTP API: POST /v1/search, /v1/rerank (Cohere/Jina shape), /v1/score (vLLM shape); "
        "GET /v1/models, /healthz, /readyz; OpenAPI at /docs. Set QA_SEARCH_API_KEY to require "
        "'Authorization: Bearer <key>'. Every limit can also be set as QA_SEARCH_SERVER_<NAME>.",
    )
    add_pipeline_options(serve)
    serve.add_argument("--host", help="address to bind (default 127.0.0.1: this machine only)")
    serve.add_argument("--port", type=int, help="port (default 8000)")
    serve.add_argument("--cors-origin", action="append", metavar="ORIGIN",
                       help="allow browser calls from this origin (repeatable; default: CORS off)")
    serve.add_argument("--no-batching", action="store_true", help="score every request alone (no micro-batching)")
    serve.add_argument("--batch-wait-ms", type=float, help="how long a request waits for others to share a batch (default 5)")
    serve.add_argument("--batch-max-pairs", type=int, help="most (query, document) pairs in one shared call (default 128)")
    serve.add_argument("--max-query-chars", type=int, help="longest query (default 2000)")
    serve.add_argument("--max-documents", type=int, help="most documents per rerank/score call (default 1000)")
    serve.add_argument("--max-document-chars", type=int, help="longest document (default 20000)")
    serve.add_argument("--max-top-k", type=int, help="largest top_k a search may ask for (default 100)")
    serve.add_argument("--max-candidates", type=int, help="largest candidates a search may ask for (default 500)")
    serve.add_argument("--max-body-bytes", type=int, help="largest request body (default 8 MiB)")
    serve.add_argument("--max-concurrency", type=int, help="connections served at once, more get 503 (default 256)")
    serve.set_defaults(handler=_cmd_serve)


# --------------------------------------------------------------------------- eval


def _cmd_eval(args: argparse.Namespace) -> int:
    from .eval_report import add_run_config, markdown_report, write_outputs
    from .evaluation import evaluate, parse_modes
    from .qa import QAPipeline
    from .questions import load_questions, sample_questions

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
    cfg = qa.config
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
    )
    print(markdown_report(result))
    if args.out:
        paths = write_outputs(result, args.out)
        print(f"Wrote {', '.join(str(p) for p in paths.values())}")
    return 0


def register_eval(sub: argparse._SubParsersAction) -> None:
    from .evaluation import MODES

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
    ev.add_argument("--out", metavar="DIR", help="write report.md, metrics.json and plot.png here")
    ev.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    ev.set_defaults(handler=_cmd_eval)


def _cmd_eval_reranker(args: argparse.Namespace) -> int:
    from .config import PipelineConfig
    from .pairs import evaluate_pairs, read_pairs
    from .questions import load_questions
    from .rerank import Reranker

    keep = None
    if args.articles:
        if not args.questions:
            raise QASearchError("--articles needs --questions SQUAD.json to tell which questions belong to those articles.")
        keep = {q.text for q in load_questions(args.questions, args.articles)}
    pairs = read_pairs(args.pairs, limit=args.limit, questions=keep)
    cfg = PipelineConfig.from_env(reranker=args.reranker, threshold=args.threshold, device=args.device)
    reranker = Reranker.load(cfg.reranker, device=cfg.device, max_length=cfg.max_length, batch_size=cfg.batch_size)
    figures = evaluate_pairs(reranker, pairs, threshold=cfg.threshold, progress=not args.quiet)
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


# --------------------------------------------------------------------------- main

REGISTRARS = [register_data, register_build, register_search, register_serve]
REGISTRARS += [register_eval, register_eval_reranker]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="qa-search", description="Retrieve-and-rerank question answering search.")
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more log output (-vv for debug)")
    sub = parser.add_subparsers(dest="command", required=True)
    for register in REGISTRARS:
        register(sub)
    return parser


def _quiet_model_loading() -> None:
    """Hide transformers' per-load weight progress bars; the CLI shows its own progress."""
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    level = logging.WARNING if args.verbose == 0 else logging.INFO if args.verbose == 1 else logging.DEBUG
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")
    handler: Handler = args.handler
    if args.verbose == 0 and args.command != "data":
        _quiet_model_loading()
    try:
        return handler(args)
    except QASearchError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
