"""``qa-search search``: one question, a readable table (or ``--json``)."""

from __future__ import annotations

import argparse
import json

from pipeline.apps.cli.common import add_pipeline_options, pipeline_settings
from pipeline.results import STAGES


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
    sure = f", answerability {result.answerability:.2f}" if result.answerability is not None else ""
    if result.answer is not None:
        a = result.answer
        others = f" and {len(a.support) - 1} more" if len(a.support) > 1 else ""
        console.print(
            f"[bold]Answer:[/bold] [bold yellow]{escape(a.text)}[/bold yellow] "
            f"[dim](evidence {a.score:.2f}{sure}, from {escape(a.id)}{others})[/dim]"
        )
    elif result.settings.get("reader"):
        console.print(f"[bold]No answer:[/bold] {escape(result.no_answer_reason or 'no answer found.')}")
        if result.candidate is not None:
            console.print(f"[dim]best candidate, not trusted: {escape(result.candidate.text)} (from {escape(result.candidate.id)})[/dim]")
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
            f"{stage} {hit.scores[stage]:.3f} (#{hit.ranks[stage]})" for stage in STAGES if stage in hit.scores
        )
        if "read" in hit.scores:  # the reader's best span score, part of "final" (the reader's move)
            scores += f"\nreader span {hit.scores['read']:.2f}"
        table.add_row(str(rank), verdict, passage, scores)
    console.print(table, markup=True)
    timing = ", ".join(f"{k} {v:.0f} ms" for k, v in result.timings.items())
    console.print(f"[dim]{timing}[/dim]")
    if result.hits and result.hits[0].probability is not None and not result.answerable_hits:
        console.print("No paragraph in this collection answers this question; the closest are shown.")


def _cmd_search(args: argparse.Namespace) -> int:
    from pipeline.qa import QAPipeline

    qa = QAPipeline.load(args.index, **pipeline_settings(args))
    result = qa.search(args.question, top_k=args.top_k)
    if args.json:
        print(json.dumps(result.to_dict(), indent=2, ensure_ascii=False))
    else:
        _print_table(result)
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    search = sub.add_parser("search", help="ask a question against an index")
    search.add_argument("question", help="the question, in quotes")
    add_pipeline_options(search)
    search.add_argument("--top-k", type=int, default=10, help="hits to show (default 10)")
    search.add_argument("--json", action="store_true", help="print the result as JSON")
    search.set_defaults(handler=_cmd_search)
