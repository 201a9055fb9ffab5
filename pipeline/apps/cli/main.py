"""The ``qa-search`` command: fetch data, build indexes, search, evaluate, fit, train, serve.

Run ``qa-search --help`` (or ``qa-search COMMAND --help``) for the options.
Errors a user can cause print one line (``error: ...``) and exit with status 2.
Each command lives in its own module of this package; this one dispatches.
"""

from __future__ import annotations

import argparse
import logging
import sys
from typing import Sequence

from pipeline.apps.cli import (
    answers,
    build,
    data,
    evaluate,
    policy,
    search,
    serve,
    train,
)
from pipeline.apps.cli.common import Handler
from pipeline.errors import QASearchError

logger = logging.getLogger(__name__)

REGISTRARS = [
    data.register,
    build.register,
    search.register,
    serve.register,
    evaluate.register_eval,
    evaluate.register_eval_reranker,
    policy.register,
    answers.register,
    train.register,
]


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
